"""The main window driven as a user drives it: real trainer, real run folders."""

import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox

from tests.helpers import MNIST_DIR, choose, open_window
from workbench.app.main_window import MainWindow
from workbench.app.worker import default_trainer_factory
from workbench.core import runs
from workbench.core.trainer import describe_device, resolve_device

RUN_TIMEOUT_MS = 120_000


@pytest.fixture
def window(qtbot, tmp_path):
    win = open_window(qtbot, tmp_path)
    return win


def click(qtbot, window, action):
    qtbot.mouseClick(window.toolbar.widgetForAction(action), Qt.MouseButton.LeftButton)




def type_into(qtbot, editor, text):
    editor.selectAll()
    qtbot.keyClicks(editor, text)


def only_run_dir(window) -> Path:
    folders = [p for p in window.runs_dir.iterdir() if p.is_dir()]
    assert len(folders) == 1, folders
    return folders[0]


def test_ring8_pause_resume_stop(window, qtbot):
    setup = window.setup
    choose(setup.data_combo, "ring8")
    choose(setup.editors["preset"], "wgan-gp")
    # Long enough that the run cannot finish before Pause is clicked on a fast machine.
    type_into(qtbot, setup.editors["steps"], "2000")
    window.sample_spin.setValue(20)
    assert setup.preset_state.text() == "wgan-gp"

    click(qtbot, window, window.start_action)
    qtbot.waitUntil(lambda: window.loss_plot.point_count() >= 100 and window.samples_view.updates >= 3,
                    timeout=RUN_TIMEOUT_MS)
    assert window.state == "running"
    assert len(window.samples_view.real_scatter.data) == 1000
    assert len(window.samples_view.fake_scatter.data) == 64
    assert window.output_stack.currentWidget() is window.critic_plot
    assert not setup.editors["steps"].isEnabled()
    assert setup.status_label.text() == "The settings are locked while a run uses them."

    click(qtbot, window, window.pause_action)
    qtbot.waitUntil(lambda: window.state == "paused", timeout=10_000)
    paused_at = window.last_step
    qtbot.wait(400)
    assert window.last_step == paused_at
    assert window.step_label.text().startswith(f"Step {paused_at} / 2000")

    click(qtbot, window, window.pause_action)
    qtbot.waitUntil(lambda: window.last_step > paused_at + 5, timeout=RUN_TIMEOUT_MS)
    click(qtbot, window, window.stop_action)
    qtbot.waitUntil(lambda: window.state == "idle", timeout=RUN_TIMEOUT_MS)

    run_dir = only_run_dir(window)
    rows = runs.read_metrics(run_dir / "metrics.csv")
    assert [row["step"] for row in rows] == list(range(1, window.last_step + 1))
    np.testing.assert_array_equal(window.history.column("step"), np.arange(1, window.last_step + 1))
    assert sorted(p.name for p in (run_dir / "samples").glob("*.png"))[0] == "step_000100.png"
    assert runs.load_checkpoint(run_dir / "checkpoint.pt")["step"] == window.last_step
    assert window.start_action.isEnabled()
    assert setup.editors["steps"].isEnabled()
    assert setup.status_label.text() == "Ready to start."


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"MNIST test split not found at {MNIST_DIR}")
def test_mnist_dcgan_grid(window, qtbot):
    setup = window.setup
    choose(setup.data_combo, "mnist")
    type_into(qtbot, setup.path_edit, str(MNIST_DIR))
    choose(setup.editors["preset"], "dcgan")
    type_into(qtbot, setup.editors["steps"], "20")
    window.sample_spin.setValue(10)
    assert setup.config is not None, setup.problem()

    click(qtbot, window, window.start_action)
    qtbot.waitUntil(lambda: window.state == "idle", timeout=RUN_TIMEOUT_MS)

    # torchvision's make_grid: 64 images in ceil(sqrt(64)) = 8 columns, 2 px padding around each.
    side = 8 * (28 + 2) + 2
    image = window.samples_view.current_image()
    assert image.shape == (side, side, 3)
    assert image.dtype == np.uint8
    assert window.samples_view.image_item.width() == side
    assert window.samples_view.grid_count() == 3   # steps 0, 10 and 20
    assert window.samples_view.grid_label.text() == "step 20 (3/3)"
    assert (only_run_dir(window) / "samples" / "step_000020.png").is_file()


def test_close_mid_run_saves_checkpoint(window, qtbot):
    choose(window.setup.data_combo, "ring8")
    type_into(qtbot, window.setup.editors["steps"], "100000")
    click(qtbot, window, window.start_action)
    qtbot.waitUntil(lambda: window.last_step >= 20, timeout=RUN_TIMEOUT_MS)
    thread = window.thread

    window.close()

    assert thread.isFinished()
    assert window.thread is None
    state = runs.load_checkpoint(only_run_dir(window) / "checkpoint.pt")
    assert state["step"] >= 20
    assert state["step"] == window.last_step


def test_invalid_field_disables_start(window, qtbot):
    steps = window.setup.editors["steps"]
    error = window.setup.error_labels["steps"]
    type_into(qtbot, steps, "abc")
    assert not window.start_action.isEnabled()
    assert not window.step_action.isEnabled()
    assert error.isVisibleTo(window)
    assert error.text() == "expected a whole number, got 'abc'"
    assert "Steps: expected a whole number" in window.start_action.toolTip()

    click(qtbot, window, window.start_action)
    assert window.state == "idle"

    type_into(qtbot, steps, "50")
    assert window.start_action.isEnabled()
    assert not error.isVisibleTo(window)


def test_trainer_error_shows_message(window, qtbot):
    def failing_factory(config, run_dir):
        trainer = default_trainer_factory(config, run_dir)
        original = trainer.advance

        def advance():
            if trainer.step == 3:
                raise RuntimeError("simulated failure at step 3")
            return original()

        trainer.advance = advance
        return trainer

    window.trainer_factory = failing_factory
    choose(window.setup.data_combo, "ring8")
    click(qtbot, window, window.start_action)
    qtbot.waitUntil(lambda: window.state == "idle", timeout=RUN_TIMEOUT_MS)

    boxes = [w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox) and w.isVisible()]
    assert len(boxes) == 1
    assert boxes[0].text() == "RuntimeError: simulated failure at step 3"
    assert window.start_action.isEnabled()
    assert window.last_step == 3
    boxes[0].close()


def test_step_once_from_idle(window, qtbot):
    choose(window.setup.data_combo, "grid25")
    click(qtbot, window, window.step_action)
    qtbot.waitUntil(lambda: window.state == "paused" and window.last_step == 1, timeout=RUN_TIMEOUT_MS)
    click(qtbot, window, window.step_action)
    qtbot.waitUntil(lambda: window.last_step == 2, timeout=RUN_TIMEOUT_MS)
    qtbot.wait(200)
    assert window.last_step == 2
    assert window.state == "paused"

    click(qtbot, window, window.save_action)
    qtbot.waitUntil(lambda: (only_run_dir(window) / "checkpoint.pt").is_file(), timeout=RUN_TIMEOUT_MS)
    click(qtbot, window, window.stop_action)
    qtbot.waitUntil(lambda: window.state == "idle", timeout=RUN_TIMEOUT_MS)
    assert runs.load_checkpoint(only_run_dir(window) / "checkpoint.pt")["step"] == 2


def test_log_panel_shows_engine_log(window, qtbot):
    choose(window.setup.data_combo, "spiral")
    type_into(qtbot, window.setup.editors["steps"], "30")
    type_into(qtbot, window.setup.editors["log_every"], "10")
    click(qtbot, window, window.start_action)
    qtbot.waitUntil(lambda: window.state == "idle", timeout=RUN_TIMEOUT_MS)
    text = window.log_panel.toPlainText()
    assert "trainer ready" in text
    assert "step 30/30" in text

    handler = window.log_panel.handler
    window.close()
    assert handler not in logging.getLogger("workbench").handlers


def test_settings_restored(qtbot, tmp_path):
    first = MainWindow(runs_dir=tmp_path / "runs")
    qtbot.addWidget(first)
    first.setup.set_data("ring8")
    first.setup.set_preset("sngan")
    first.setup.set_value("lr_g", 0.0003)
    first.sample_spin.setValue(7)
    first.grad_plot.set_log_scale(True)
    first.close()

    second = MainWindow()
    qtbot.addWidget(second)
    values = second.setup.values()
    assert values["preset"] == "sngan"
    assert values["lr_g"] == "0.0003"
    assert values["n_critic"] == "5"
    assert second.setup.preset_state.text() == "sngan (modified)"
    assert second.sample_spin.value() == 7
    assert second.grad_plot.log_checkbox.isChecked()
    assert second.runs_dir == tmp_path / "runs"


def test_space_toggles_pause(window, qtbot):
    choose(window.setup.data_combo, "ring8")
    click(qtbot, window, window.step_action)
    qtbot.waitUntil(lambda: window.state == "paused" and window.last_step == 1, timeout=RUN_TIMEOUT_MS)
    window.activateWindow()
    qtbot.wait(100)
    if not window.isActiveWindow():
        pytest.skip("the platform did not activate the window (X without a window manager), "
                    "and Qt delivers shortcuts only to the active window")
    window.samples_view.setFocus()
    qtbot.keyClick(window.samples_view, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: window.state == "running", timeout=RUN_TIMEOUT_MS)
    qtbot.keyClick(window.samples_view, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: window.state == "paused", timeout=RUN_TIMEOUT_MS)
    click(qtbot, window, window.stop_action)
    qtbot.waitUntil(lambda: window.state == "idle", timeout=RUN_TIMEOUT_MS)


def test_about_dialog_opens(window, qtbot):
    about = next(a for a in window.menuBar().actions() if a.text() == "&Help").menu().actions()[0]
    about.trigger()
    dialogs = [w for w in QApplication.topLevelWidgets() if w.windowTitle() == "About GAN Workbench"]
    assert len(dialogs) == 1
    assert dialogs[0].isVisible()
    dialogs[0].close()


def test_device_shown_before_run(window):
    assert window.device_label.text() == f"Device: {describe_device(resolve_device('auto'))}"


def test_critic_wording_for_wasserstein(window):
    window.setup.set_preset("wgan")
    assert window.setup.labels["lr_d"].text() == "Critic learning rate"
    assert window.loss_plot.legend.getLabel(window.loss_plot.smooth_curves["loss_d"]).text == "critic loss"
    assert window.output_stack.currentWidget() is window.critic_plot
    window.setup.set_preset("dcgan")
    assert window.setup.labels["lr_d"].text() == "Discriminator learning rate"
    assert window.output_stack.currentWidget() is window.output_plot


def test_smoke_exit_env(tmp_path):
    env = dict(os.environ, GAN_WORKBENCH_SMOKE_EXIT_MS="300", QT_QPA_PLATFORM="offscreen",
               XDG_CONFIG_HOME=str(tmp_path / "config"), HOME=str(tmp_path))
    code = "import sys; from workbench.app.main_window import run_app; sys.exit(run_app(['gan-workbench']))"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "QThread" not in result.stderr
    assert (tmp_path / "config" / "GAN Workbench" / "gan-workbench.ini").is_file()


def test_smoke_exit_rejects_text(tmp_path):
    env = dict(os.environ, GAN_WORKBENCH_SMOKE_EXIT_MS="soon", QT_QPA_PLATFORM="offscreen",
               XDG_CONFIG_HOME=str(tmp_path / "config"))
    code = "import sys; from workbench.app.main_window import run_app; sys.exit(run_app(['gan-workbench']))"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "GAN_WORKBENCH_SMOKE_EXIT_MS must be a whole number of milliseconds, got 'soon'" in result.stderr


def test_status_eta_format():
    from workbench.app.main_window import format_duration

    assert format_duration(3725.4) == "1:02:05"
    assert format_duration(math.nan) == "-"


def test_close_waits_for_slow_step(window, qtbot, monkeypatch):
    import threading

    import workbench.app.main_window as main_window

    monkeypatch.setattr(main_window, "CLOSE_TIMEOUT_MS", 100)
    release, blocked = threading.Event(), threading.Event()

    def slow_factory(config, run_dir):
        trainer = default_trainer_factory(config, run_dir)
        original = trainer.advance

        def advance():
            if trainer.step == 5:
                blocked.set()
                release.wait(timeout=30)   # one step that outlasts the close timeout
            return original()

        trainer.advance = advance
        return trainer

    window.trainer_factory = slow_factory
    choose(window.setup.data_combo, "ring8")
    click(qtbot, window, window.start_action)
    qtbot.waitUntil(blocked.is_set, timeout=RUN_TIMEOUT_MS)

    window.close()
    assert window.isVisible()            # still training, so the close was postponed
    assert window.state == "stopping"
    release.set()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=RUN_TIMEOUT_MS)
    assert window.thread is None
    assert runs.load_checkpoint(only_run_dir(window) / "checkpoint.pt")["step"] == 6
