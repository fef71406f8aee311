"""Runs panel, comparison, forks, exports and the torchrun command, on real run folders."""

import os
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtWidgets import QMessageBox

from workbench.app.compare import PALETTE, CompareView
from workbench.app.fork_dialog import ForkDialog
from workbench.app.main_window import MainWindow
from workbench.app.runs_panel import RunsPanel
from workbench.app.torchrun_export import TorchrunDialog, torchrun_command, train_arguments
from workbench.cli import build_parser, gather_train_values
from workbench.core import run_index, runs
from workbench.core.config import build_config
from workbench.core.trainer import Trainer

SMALL = {"data": "ring8", "width": 16, "batch_size": 32, "device": "cpu", "sample_every": 10,
         "checkpoint_every": 10, "log_every": 10}


def train_run(run_dir: Path, steps: int = 20, **values) -> Path:
    config = build_config({**SMALL, "steps": steps, **values})
    trainer = Trainer(config, run_dir)
    try:
        trainer.run()
    finally:
        trainer.close()
    return run_dir


@pytest.fixture
def runs_root(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    return root


@pytest.fixture
def panel(qtbot, runs_root):
    widget = RunsPanel(runs_root)
    qtbot.addWidget(widget)
    return widget


def test_panel_lists_states(panel, runs_root):
    train_run(runs_root / "a-finished", steps=20)
    train_run(runs_root / "b-failed", steps=20, preset="wgan-gp")
    runs.write_status(runs_root / "b-failed", "failed", 20, "training stopped at step 20: loss_d is nan")
    train_run(runs_root / "c-running", steps=20, loss="hinge")
    runs.write_status(runs_root / "c-running", "running", 12)   # this test's process is alive
    panel.refresh()

    assert sorted(panel.run_names()) == ["a-finished", "b-failed", "c-running"]
    assert panel.state_of("a-finished") == "finished"
    assert panel.state_of("b-failed") == "failed"
    assert panel.state_of("c-running") == "running"
    rows = {panel.tree.topLevelItem(i).text(0): [panel.tree.topLevelItem(i).text(c) for c in range(8)]
            for i in range(panel.tree.topLevelItemCount())}
    assert rows["a-finished"] == ["a-finished", "ring8", "custom", "bce", "none", "20 / 20", "-", "finished"]
    assert rows["b-failed"][2:5] == ["wgan-gp", "wasserstein", "gp"]
    assert rows["c-running"][3] == "hinge"
    assert "loss_d is nan" in panel.tree.topLevelItem(
        panel.run_names().index("b-failed")).toolTip(7)


def test_panel_shows_last_fid(panel, runs_root):
    run_dir = train_run(runs_root / "scored", steps=10)
    runs.append_fid(run_dir, 5, 40.5, "inception", 1000)
    runs.append_fid(run_dir, 10, 31.25, "inception", 1000)
    panel.refresh()
    assert panel.tree.topLevelItem(0).text(6) == "31.25 @ 10"


def test_panel_refresh_keeps_ticks(panel, runs_root):
    train_run(runs_root / "one", steps=10)
    panel.refresh()
    panel.set_checked(runs_root / "one", True)
    train_run(runs_root / "two", steps=10)
    panel.refresh()
    assert panel.checked_runs() == [runs_root / "one"]
    assert sorted(panel.run_names()) == ["one", "two"]


def test_panel_rename_and_delete(panel, runs_root, monkeypatch):
    train_run(runs_root / "old", steps=10)
    panel.refresh()
    target = panel.rename_run(runs_root / "old", "new-name")
    assert target == runs_root / "new-name"
    assert panel.run_names() == ["new-name"]
    assert not (runs_root / "old").exists()

    questions = []

    def confirm(*args, **kwargs):
        questions.append(args[2])
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", confirm)
    trashed = panel.delete_run(runs_root / "new-name")
    assert len(questions) == 1
    assert "new-name" in questions[0]
    assert trashed == runs_root / run_index.TRASH_DIR / "new-name"
    assert (trashed / runs.CONFIG_FILE).is_file()
    assert panel.run_names() == []


def test_panel_delete_declined(panel, runs_root, monkeypatch):
    train_run(runs_root / "kept", steps=10)
    panel.refresh()
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: QMessageBox.StandardButton.No)
    assert panel.delete_run(runs_root / "kept") is None
    assert (runs_root / "kept" / runs.CONFIG_FILE).is_file()
    assert panel.run_names() == ["kept"]


def test_panel_rename_rejects_taken(panel, runs_root, qtbot):
    train_run(runs_root / "first", steps=10)
    train_run(runs_root / "second", steps=10)
    panel.refresh()
    assert panel.rename_run(runs_root / "first", "second") is None
    assert "already exists" in panel.message_label.text()
    box = panel.findChild(QMessageBox)
    assert box is not None
    box.close()


def test_panel_compare_signal(panel, runs_root, qtbot):
    for name in ("r1", "r2", "r3"):
        train_run(runs_root / name, steps=10)
    panel.refresh()
    emitted = []
    panel.compare_changed.connect(emitted.append)
    for name in ("r1", "r2", "r3"):
        panel.set_checked(runs_root / name, True)
    assert sorted(emitted[-1]) == [runs_root / "r1", runs_root / "r2", runs_root / "r3"]
    panel.set_checked(runs_root / "r2", False)
    assert sorted(emitted[-1]) == [runs_root / "r1", runs_root / "r3"]


def test_compare_overlays_three_runs(qtbot, runs_root):
    paths = [train_run(runs_root / f"run{i}", steps=20 + 10 * i, lr_g=1e-4 * (i + 1)) for i in range(3)]
    view = CompareView()
    qtbot.addWidget(view)
    view.set_smoothing(0.0)
    view.set_runs(paths)

    for key in ("loss_d", "loss_g", "grad_norm_d"):
        assert view.curve_count(key) == 3
        colors = {curve.opts["pen"].color().name() for curve in view.curves[key]}
        assert colors == set(PALETTE[:3])
    assert view.curve_count("wasserstein") == 0   # bce writes no Wasserstein estimate
    x, y = view.curves["loss_d"][2].getData()
    expected = runs.read_metrics(paths[2] / runs.METRICS_FILE)
    assert len(x) == 40
    np.testing.assert_array_equal(x, [row["step"] for row in expected])
    np.testing.assert_allclose(y, [row["loss_d"] for row in expected])
    legend_texts = [label.text for _sample, label in view.plots["loss_g"].legend.items]
    assert legend_texts == ["run0", "run1", "run2"]


def test_compare_smoothing_and_wall_time(qtbot, runs_root):
    path = train_run(runs_root / "solo", steps=20)
    view = CompareView()
    qtbot.addWidget(view)
    view.set_smoothing(0.5)
    view.set_x_axis("wall_time")
    view.set_runs([path])
    rows = runs.read_metrics(path / runs.METRICS_FILE)
    x, y = view.curves["loss_g"][0].getData()
    np.testing.assert_allclose(x, [row["wall_time"] for row in rows])
    # Debiased EMA with beta 0.5: s1 = x1, s2 = (0.25 x1 + 0.5 x2) / 0.75.
    first, second = rows[0]["loss_g"], rows[1]["loss_g"]
    assert y[0] == pytest.approx(first)
    assert y[1] == pytest.approx((0.25 * first + 0.5 * second) / 0.75)
    view.set_runs([])
    assert view.curve_count("loss_g") == 0


def test_fork_dialog_records_parent(qtbot, runs_root):
    parent = train_run(runs_root / "base", steps=20, preset="wgan-gp")
    dialog = ForkDialog(parent, runs_root)
    qtbot.addWidget(dialog)
    assert dialog.name_edit.text() == "base-fork-20"
    assert not dialog.setup.editors["seed"].isEnabled()
    dialog.setup.set_value("constraint", "clip")
    dialog.setup.set_value("lr_d", "5e-05")
    dialog.setup.set_value("steps", "30")
    fork = dialog.create_fork()

    assert fork == runs_root / "base-fork-20"
    assert runs.read_parent(fork) == (parent.absolute(), 20)
    saved = runs.read_config(fork)
    assert saved["constraint"] == "clip"
    assert saved["lr_d"] == 5e-05
    assert saved["steps"] == 30
    assert runs.read_status(fork)["state"] == "stopped"


def test_fork_dialog_shows_error(qtbot, runs_root):
    parent = train_run(runs_root / "plain", steps=10)
    dialog = ForkDialog(parent, runs_root)
    qtbot.addWidget(dialog)
    dialog.setup.set_value("constraint", "sn")
    assert dialog.create_fork() is None
    assert "sn" in dialog.error_label.text()
    assert [p.name for p in runs_root.iterdir()] == ["plain"]


def test_fork_continues_training(qtbot, runs_root):
    parent = train_run(runs_root / "parent", steps=20)
    dialog = ForkDialog(parent, runs_root)
    qtbot.addWidget(dialog)
    dialog.setup.set_value("lr_g", "0.0001")
    dialog.setup.set_value("steps", "35")
    fork = dialog.create_fork()

    trainer = Trainer(build_config(runs.read_config(fork)), fork, resume=True)
    try:
        assert trainer.step == 20
        trainer.run()
    finally:
        trainer.close()
    own = [row["step"] for row in runs.read_metrics(fork / runs.METRICS_FILE)]
    assert own == list(range(21, 36))
    joined = [row["step"] for row in run_index.load_metrics_with_parent(fork)]
    assert joined == list(range(1, 36))
    assert run_index.describe_run(fork).state == "finished"


def test_torchrun_command_round_trip(runs_root):
    config = build_config({"data": "mnist:/data/my mnist", "preset": "wgan-gp", "steps": 5000, "lr_g": 3e-4,
                           "betas": (0.5, 0.99), "device": "cuda", "width": 48})
    command = torchrun_command(config, runs_root / "big run", 4)
    assert command[:6] == ["torchrun", "--nproc_per_node", "4", "-m", "workbench", "train"]
    args = build_parser().parse_args(command[5:])
    rebuilt = build_config(gather_train_values(args))
    assert rebuilt == config
    assert args.out == runs_root / "big run"
    # Only settings that differ from the preset are spelled out.
    assert "--loss" not in command
    assert "--n-critic" not in command
    assert command[command.index("--lr-g") + 1] == "0.0003"


def test_torchrun_command_defaults(runs_root):
    config = build_config({"data": "ring8"})
    assert train_arguments(config, runs_root / "r") == [
        "train", "--data", "ring8", "--preset", "custom", "--out", str(runs_root / "r")]
    with pytest.raises(ValueError, match="nproc_per_node"):
        torchrun_command(config, runs_root / "r", 0)


def test_torchrun_dialog_copies(qtbot, runs_root):
    config = build_config({"data": "ring8", "preset": "sngan", "steps": 300})
    dialog = TorchrunDialog(config, runs_root / "r")
    qtbot.addWidget(dialog)
    dialog.nproc_spin.setValue(8)
    text = dialog.command_edit.toPlainText()
    assert text.startswith("torchrun --nproc_per_node 8 -m workbench train --data ring8 --preset sngan")
    assert "--steps 300" in text
    dialog.copy_to_clipboard()
    from PySide6.QtGui import QGuiApplication
    assert QGuiApplication.clipboard().text() == text
    assert shlex.split(text)[2] == "8"


# The runs features inside the main window ---------------------------------------------------

@pytest.fixture
def window(qtbot, runs_root):
    win = MainWindow(runs_dir=runs_root)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    return win


def test_window_open_run_shows_curves(window, runs_root, qtbot):
    run_dir = train_run(runs_root / "done", steps=30, sample_every=10)
    runs.append_fid(run_dir, 30, 7.5, "inception", 100)
    browser = window.run_browser
    qtbot.waitUntil(lambda: browser.panel.run_names() == ["done"], timeout=3000)
    assert browser.open_run(run_dir)
    assert len(window.history) == 30
    assert window.loss_plot.point_count() == 30
    assert window.samples_view.grid_count() == 3
    assert window.samples_view.grid_label.text() == "step 30 (3/3)"
    x, y = browser.fid_curve.getData()
    assert list(x) == [30]
    assert list(y) == [7.5]
    assert browser.following


def test_window_export_menu(window, runs_root, tmp_path):
    run_dir = train_run(runs_root / "exported", steps=20, sample_every=10)
    browser = window.run_browser
    browser.open_run(run_dir)
    out = tmp_path / "out"
    out.mkdir()
    csv_path = browser.export("csv", out / "m.csv")
    assert csv_path.read_bytes() == (run_dir / runs.METRICS_FILE).read_bytes()
    png_path = browser.export("png", out / "grid.png")
    with Image.open(png_path) as image, Image.open(runs.sample_path(run_dir, 20)) as saved:
        assert image.size == saved.size
        assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(saved.convert("RGB")))
    gif_path = browser.export("gif", out / "progress.gif")
    with Image.open(gif_path) as gif:
        assert gif.n_frames == 2
    toml_path = browser.export("toml", out / "config.toml")
    from workbench.cli import load_config_file
    assert build_config(load_config_file(toml_path)) == build_config(runs.read_config(run_dir))


def test_window_fork_trains(window, runs_root, qtbot):
    parent = train_run(runs_root / "parent", steps=20)
    browser = window.run_browser
    dialog = browser.show_fork_dialog(parent)
    dialog.setup.set_value("loss", "hinge")
    dialog.setup.set_value("steps", "40")
    with qtbot.waitSignal(window.run_finished, timeout=60_000) as finished:
        dialog.accept()
    fork = runs_root / "parent-fork-20"
    assert finished.args[0].reason == "completed"
    assert finished.args[0].step == 40
    assert [row["step"] for row in runs.read_metrics(fork / runs.METRICS_FILE)] == list(range(21, 41))
    assert runs.read_status(fork)["state"] == "finished"
    assert runs.read_config(fork)["loss"] == "hinge"
    browser.panel.refresh()
    assert browser.panel.state_of("parent-fork-20") == "finished"
    # Opening the fork shows the parent's 20 rows, then its own 20.
    browser.open_run(fork)
    assert list(window.history.column("step")) == list(range(1, 41))


def test_window_status_written(window, runs_root, qtbot):
    window.setup.set_values({"data": "ring8", "steps": "100000", "width": "16", "batch_size": "32"})
    with qtbot.waitSignal(window.run_started, timeout=30_000) as started:
        window.start_run()
    run_dir = Path(started.args[0].run_dir)
    status = runs.read_status(run_dir)
    assert status["state"] == "running"
    assert status["pid"] == os.getpid()
    qtbot.waitUntil(lambda: window.last_step >= 5, timeout=30_000)
    with qtbot.waitSignal(window.run_finished, timeout=30_000):
        window.stop_action.trigger()
    status = runs.read_status(run_dir)
    assert status["state"] == "stopped"
    assert status["step"] == runs.last_metrics_step(run_dir / runs.METRICS_FILE)
    assert run_index.describe_run(run_dir).state == "stopped"
