"""Presets, coercion and consistency checks of the training configuration."""

import pytest

from workbench.core.config import PRESETS, build_config, config_from_dict, describe_preset
from workbench.core.validation import ConfigError


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_values_applied(preset):
    config = build_config({"data": "ring8"}, preset=preset)
    for name, value in PRESETS[preset].items():
        assert getattr(config, name) == (tuple(value) if name == "betas" else value), name
    assert describe_preset(config) == preset


def test_edited_preset_field_marks_modified():
    config = build_config({"data": "ring8", "preset": "wgan-gp", "lr_g": 3e-4})
    assert describe_preset(config) == "wgan-gp (modified)"
    assert config.lr_g == 3e-4
    assert config.constraint == "gp"


def test_betas_from_list_match_preset():
    config = build_config({"data": "ring8", "preset": "sngan", "betas": [0, 0.9]})
    assert config.betas == (0.0, 0.9)
    assert isinstance(config.betas[0], float)  # Adam rejects an integer 0 beta
    assert describe_preset(config) == "sngan"


@pytest.mark.parametrize("text", ["0.5, 0.999", "0.5 0.999", "(0.5, 0.999)", "[0.5,0.999]"])
def test_betas_typed_in_common_forms(text):
    assert build_config({"data": "ring8", "betas": text}).betas == (0.5, 0.999)


@pytest.mark.parametrize("value, expected", [
    ("0.5", "betas: '0.5' has 1 number; write two, B1 and B2, such as '0.5, 0.999'"),
    ("", "betas: '' has 0 numbers; write two, B1 and B2, such as '0.5, 0.999'"),
    ([0.5, 0.9, 0.1], "betas: '0.5, 0.9, 0.1' has 3 numbers; write two, B1 and B2, such as '0.5, 0.999'"),
])
def test_betas_wrong_count_error(value, expected):
    with pytest.raises(ConfigError) as error:
        build_config({"data": "ring8", "betas": value})
    assert str(error.value) == expected


def test_custom_preset_description():
    assert describe_preset(build_config({"data": "ring8"})) == "custom"


def test_round_trip_through_dict():
    config = build_config({"data": "grid25", "preset": "wgan", "steps": 17, "seed": 4})
    assert config_from_dict(config.to_dict()) == config


def test_batchnorm_with_gp_rejected():
    with pytest.raises(ConfigError) as error:
        build_config({"data": "ring8", "constraint": "gp", "d_norm": "batch"})
    assert error.value.field == "d_norm"


def test_wasserstein_without_constraint_warns():
    config = build_config({"data": "ring8", "loss": "wasserstein", "constraint": "none"})
    assert len(config.warnings()) == 1
    assert "not Lipschitz-bounded" in config.warnings()[0]
    assert build_config({"data": "ring8", "preset": "wgan"}).warnings() == []
