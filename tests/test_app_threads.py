"""Training threads in the window: repeated starts and stops, and a NaN that ends a run."""

import gc
import math
from pathlib import Path

import pytest
import torch
from PySide6.QtWidgets import QMessageBox

from tests.helpers import open_window
from workbench.app.main_window import MainWindow
from workbench.app.worker import default_trainer_factory
from workbench.core import run_index, runs

SMALL_FORM = {"data": "ring8", "steps": "100000", "width": "16", "batch_size": "32", "device": "cpu"}
CYCLES = 50
# Allowed growth of the resident set over the measured cycles: 2.1 MB was measured (Linux, Python
# 3.11, PySide6 6.11.3, 2 shared cores). Qt's caches and the allocator's free lists move it by a
# few MB; a trainer leaked per cycle would add far more.
RSS_SLACK_KB = 20_000


def resident_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("VmRSS missing from /proc/self/status")


@pytest.fixture
def window(qtbot, tmp_path):
    win = open_window(qtbot, tmp_path)
    win.setup.set_values(SMALL_FORM)
    assert win.setup.config is not None, win.setup.problem()
    return win


def start_and_stop(window, qtbot) -> None:
    with qtbot.waitSignal(window.run_started, timeout=30_000):
        assert window.start_run()
    with qtbot.waitSignal(window.run_finished, timeout=30_000):
        window.stop_action.trigger()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc/self/status to read the RSS")
def test_start_stop_fifty_times(window, qtbot):
    for _ in range(5):   # warm-up: first-use allocations of torch, Qt and pyqtgraph
        start_and_stop(window, qtbot)
    gc.collect()
    before = resident_kb()
    for _ in range(CYCLES):
        start_and_stop(window, qtbot)
        assert window.thread is None
        assert window.state == "idle"
    gc.collect()
    after = resident_kb()
    assert after - before < RSS_SLACK_KB, f"RSS grew by {after - before} kB over {CYCLES} runs"
    folders = sorted(p for p in window.runs_dir.iterdir() if p.is_dir())
    assert len(folders) == CYCLES + 5
    states = {run_index.describe_run(folder).state for folder in folders}
    assert states == {"stopped"}


def poisoned_factory(config, run_dir):
    """Build the real trainer, then put a NaN into a generator weight so step 1 fails."""
    trainer = default_trainer_factory(config, run_dir)
    with torch.no_grad():
        next(trainer.generator.parameters()).fill_(math.nan)
    return trainer


# The samples view gets NaN points from the poisoned generator, and pyqtgraph's bounds warn.
@pytest.mark.filterwarnings("ignore:All-NaN slice encountered:RuntimeWarning")
def test_nan_fails_run(qtbot, tmp_path):
    win = MainWindow(runs_dir=tmp_path / "runs", trainer_factory=poisoned_factory)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    win.setup.set_values(SMALL_FORM)
    with qtbot.waitSignal(win.run_started, timeout=30_000) as started:
        win.start_run()
    run_dir = Path(started.args[0].run_dir)
    qtbot.waitUntil(lambda: win.state == "idle", timeout=30_000)

    box = win.findChild(QMessageBox, "trainingFailedBox")
    assert box is not None
    text = box.text()
    assert text.startswith("training stopped at step 1: loss_d is nan")
    assert "NonFiniteError" not in text
    box.close()
    status = runs.read_status(run_dir)
    assert status["state"] == "failed"
    assert status["message"] == text
    assert run_index.describe_run(run_dir).state == "failed"


def test_close_during_fid(window, qtbot):
    with qtbot.waitSignal(window.run_started, timeout=30_000):
        assert window.start_run()
    fid_panel = window.analysis.fid_panel
    fid_panel.extractor_combo.setCurrentIndex(fid_panel.extractor_combo.findData("points"))
    fid_panel.n_spin.setValue(1_000_000)   # large enough to be still computing when the window closes
    assert fid_panel.start()
    job = fid_panel.job
    qtbot.waitUntil(job.isRunning, timeout=5000)

    window.close()
    assert window.thread is None
    assert fid_panel.job is None
    assert not job.isRunning()
