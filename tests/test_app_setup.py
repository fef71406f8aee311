"""The setup panel: form fields, presets and the engine's validation messages."""

import pytest
import torch

from workbench.app.setup_panel import SetupPanel, critic_wording, format_value
from workbench.core.config import FIELD_NAMES, PRESETS, TrainConfig


@pytest.fixture
def panel(qtbot):
    widget = SetupPanel()
    qtbot.addWidget(widget)
    return widget


def test_every_config_field_has_editor(panel):
    assert set(FIELD_NAMES) == set(panel.editors)
    assert set(panel.values()) == set(FIELD_NAMES)


def test_defaults_match_config(panel):
    defaults = TrainConfig()
    assert panel.config == defaults
    assert panel.values()["betas"] == "0.5, 0.999"
    assert panel.values()["lr_g"] == "0.0002"
    assert panel.problem() == ""


def test_preset_fills_form(panel):
    panel.set_preset("wgan-gp")
    values = panel.values()
    assert values["loss"] == "wasserstein"
    assert values["constraint"] == "gp"
    assert values["lr_g"] == "0.0001"
    assert values["betas"] == "0, 0.9"
    assert values["n_critic"] == "5"
    assert panel.preset_state.text() == "wgan-gp"
    for name, value in PRESETS["wgan-gp"].items():
        assert getattr(panel.config, name) == value, name


def test_edit_marks_preset_modified(panel):
    panel.set_preset("dcgan")
    panel.set_value("lr_d", 0.001)
    assert panel.preset_state.text() == "dcgan (modified)"
    assert panel.config.lr_d == 0.001
    panel.set_value("lr_d", 0.0002)
    assert panel.preset_state.text() == "dcgan"


def test_non_preset_edit_keeps_preset(panel):
    panel.set_preset("sngan")
    panel.set_value("steps", 10)
    assert panel.preset_state.text() == "sngan"


def test_field_error_shows_engine_message(panel, qtbot):
    panel.set_value("lr_g", "0")
    assert panel.config is None
    assert panel.errors == {"lr_g": "must be greater than 0, got 0"}
    assert panel.error_labels["lr_g"].text() == "must be greater than 0, got 0"
    assert panel.problem() == "Generator learning rate: must be greater than 0, got 0"
    assert panel.status_label.text() == "Cannot start. Generator learning rate: must be greater than 0, got 0"


def test_consistency_error_at_named_field(panel):
    panel.set_value("constraint", "gp")
    panel.set_value("d_norm", "batch")
    assert panel.config is None
    assert list(panel.errors) == ["d_norm"]
    assert panel.errors["d_norm"].startswith("BatchNorm in the discriminator is invalid with the gradient penalty")


def test_validity_signal(panel, qtbot):
    with qtbot.waitSignal(panel.validity_changed) as blocker:
        panel.set_value("batch_size", "0")
    assert blocker.args == [False, "Batch size: must be at least 1, got 0"]
    with qtbot.waitSignal(panel.validity_changed) as blocker:
        panel.set_value("batch_size", "32")
    assert blocker.args == [True, ""]


def test_missing_folder_is_invalid(panel, tmp_path):
    missing = tmp_path / "nowhere"
    panel.set_data(f"mnist:{missing}")
    assert panel.data_spec() == f"mnist:{missing}"
    assert panel.errors["data"].startswith(f"folder '{missing}' not found")
    assert panel.path_edit.isEnabled()
    panel.set_data(f"mnist:{tmp_path}")
    assert panel.config is not None
    assert panel.config.data == f"mnist:{tmp_path}"


def test_empty_folder_says_what_to_choose(panel):
    panel.set_data("cifar10")
    panel.path_edit.setText("")
    assert panel.errors["data"] == ("no folder chosen; click Browse and choose the folder with torchvision's "
                                    "cifar-10-batches-py (for JPEG folders, choose Image folder)")
    assert panel.config is None
    assert panel.status_label.text().startswith("Cannot start. Data set: no folder chosen")


def test_toy_data_disables_folder(panel):
    panel.set_data("spiral")
    assert panel.data_spec() == "spiral"
    assert not panel.path_edit.isEnabled()
    assert not panel.browse_button.isEnabled()


def test_wasserstein_says_critic(panel):
    panel.set_value("loss", "wasserstein")
    assert panel.labels["lr_d"].text() == "Critic learning rate"
    assert "critic's optimizer" in panel.labels["lr_d"].toolTip()
    assert panel.labels["d_norm"].text() == "Critic normalization"
    panel.set_value("loss", "hinge")
    assert panel.labels["lr_d"].text() == "Discriminator learning rate"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA, so 'cuda' is valid")
def test_unavailable_device_is_invalid(panel):
    panel.set_value("device", "cuda")
    assert panel.errors == {"device": "'cuda' requested but CUDA is not available on this machine; use auto or cpu"}
    panel.set_value("device", "auto")
    assert panel.config.device == "auto"


def test_label_shows_unit_and_range(panel):
    assert panel.labels["batch_size"].text() == "Batch size"
    assert panel.labels["sample_every"].text() == "Sample every (steps)"
    assert panel.editors["batch_size"].toolTip().endswith("Allowed: 1 to 65536.")


def test_set_values_skips_unknown_choice(panel):
    panel.set_values({"loss": "nonsense", "steps": 12, "unknown": 1})
    assert panel.values()["loss"] == "bce"
    assert panel.values()["steps"] == "12"


def test_locked_while_running(panel):
    panel.set_editable(False)
    assert not panel.editors["steps"].isEnabled()
    panel.set_editable(True)
    assert panel.editors["steps"].isEnabled()


def test_format_value():
    assert format_value((0.0, 0.9)) == "0, 0.9"
    assert format_value(5e-05) == "5e-05"
    assert format_value(200) == "200"


def test_critic_wording():
    assert critic_wording("Discriminator updates per step", True) == "Critic updates per step"
    assert critic_wording("Discriminator updates per step", False) == "Discriminator updates per step"


def test_fields_the_settings_ignore_are_greyed_out(panel):
    panel.set_preset("wgan-gp")
    assert panel.editors["gp_weight"].isEnabled()
    assert not panel.editors["clip_value"].isEnabled()
    assert "Not used now: used only with constraint clip." in panel.editors["clip_value"].toolTip()
    assert not panel.editors["image_size"].isEnabled()
    assert not panel.editors["channels"].isEnabled()
    assert panel.editors["betas"].isEnabled()

    panel.set_value("optimizer", "rmsprop")
    assert not panel.editors["betas"].isEnabled()
    assert not panel.labels["betas"].isEnabled()
    assert "only Adam uses betas; the optimizer is rmsprop" in panel.editors["betas"].toolTip()
    panel.set_value("constraint", "clip")
    assert panel.editors["clip_value"].isEnabled()
    assert not panel.editors["gp_weight"].isEnabled()

    panel.set_value("optimizer", "adam")
    assert panel.editors["betas"].isEnabled()
    assert "Not used now" not in panel.editors["betas"].toolTip()


def test_ignored_field_with_a_bad_value_stays_editable(panel, tmp_path):
    # The engine checks every field, so a bad value must stay reachable to be fixed.
    panel.set_value("betas", "0.5")
    panel.set_value("optimizer", "rmsprop")
    assert panel.editors["betas"].isEnabled()
    assert panel.config is None
    panel.set_value("betas", "0.5, 0.999")
    assert not panel.editors["betas"].isEnabled()
    assert panel.config is not None and panel.config.optimizer == "rmsprop"

    panel.set_data(f"folder:{tmp_path}")
    assert panel.editors["image_size"].isEnabled()
    assert panel.editors["channels"].isEnabled()
