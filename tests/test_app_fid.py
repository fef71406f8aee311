"""The FID dock: fid.csv rows, the N warning, a real computation in the window, and cancelling on close."""

import csv
import time

import pytest
from PySide6.QtCore import QTimer, Qt

from tests.helpers import MNIST_DIR, choose, open_window
from workbench.app.fid_panel import FIDPanel
from workbench.core import runs

RUN_TIMEOUT_MS = 180_000


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))   # FID statistics and classifiers
    win = open_window(qtbot, tmp_path)
    return win




def test_fid_csv_upgrades_old_header(tmp_path):
    (tmp_path / "fid.csv").write_text("step,value,extractor,n\n100,12.5,inception,10000\n")  # the older format
    runs.append_fid(tmp_path, 200, 7.25, "domain-abc", 500, 0.5, 0.25)
    runs.append_fid(tmp_path, 300, 6.0, "points", 1000, None, None)

    with open(tmp_path / "fid.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["step", "value", "extractor", "n", "precision", "recall"]
    assert [row["step"] for row in rows] == ["100", "200", "300"]
    assert rows[0]["precision"] == ""
    assert rows[0]["value"] == "12.5"
    assert float(rows[1]["precision"]) == 0.5
    assert float(rows[1]["recall"]) == 0.25
    assert rows[2]["recall"] == ""
    assert [row["value"] for row in runs.read_fid(tmp_path)] == [12.5, 7.25, 6.0]
    assert not list(tmp_path.glob(".fid.csv.*"))   # no temporary file left behind


def test_n_warning_follows_extractor(qtbot):
    panel = FIDPanel()
    qtbot.addWidget(panel)
    assert panel.n_spin.value() == 10_000
    assert panel.n_warning.isHidden()
    panel.n_spin.setValue(500)
    assert not panel.n_warning.isHidden()   # auto means Inception, 2048-d, for image data
    assert "2,048" in panel.n_warning.text()
    choose(panel.extractor_combo, "domain")
    assert panel.n_warning.isHidden()       # 500 >= 128
    panel.n_spin.setValue(100)
    assert "128" in panel.n_warning.text()
    choose(panel.extractor_combo, "points")
    assert panel.n_warning.isHidden()


def test_no_source_is_reported(qtbot):
    panel = FIDPanel()
    qtbot.addWidget(panel)
    assert not panel.start()
    assert "start a run" in panel.notes_label.text()


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"MNIST test split not found at {MNIST_DIR}")
def test_fid_button_mnist_domain(window, qtbot):
    setup = window.setup
    choose(setup.data_combo, "mnist")
    setup.path_edit.setText(str(MNIST_DIR))
    choose(setup.editors["preset"], "dcgan")
    setup.editors["steps"].setText("1000")
    assert window.start_run(paused=True)
    qtbot.waitUntil(lambda: window.state == "paused", timeout=RUN_TIMEOUT_MS)

    panel = window.analysis.fid_panel
    panel.n_spin.setValue(500)
    choose(panel.extractor_combo, "domain")
    ticks = []
    timer = QTimer()
    timer.setInterval(50)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start()
    try:
        qtbot.mouseClick(panel.compute_button, Qt.MouseButton.LeftButton)
        assert panel.job is not None
        qtbot.waitUntil(lambda: panel.job is None, timeout=RUN_TIMEOUT_MS)
    finally:
        timer.stop()

    gaps = [later - earlier for earlier, later in zip(ticks, ticks[1:])]
    assert len(gaps) > 10
    assert max(gaps) < 0.5, f"the GUI thread stalled for {max(gaps):.3f} s"
    assert len(panel.outcomes) == 1, panel.notes_label.text()
    result = panel.outcomes[0].result
    assert result.extractor.startswith("domain-")
    assert result.n_fake == 500
    assert result.value > 0
    assert f"FID {result.value:.3f} at step 0" in panel.result_label.text()
    assert "N 500" in panel.result_label.text()
    assert "precision" in panel.result_label.text()
    assert panel.point_count() == 1
    rows = list(csv.DictReader(open(window.run_info.run_dir + "/fid.csv", newline="")))
    assert len(rows) == 1
    assert rows[0]["step"] == "0"
    assert rows[0]["n"] == "500"
    assert float(rows[0]["value"]) == pytest.approx(result.value)
    assert 0.0 <= float(rows[0]["precision"]) <= 1.0
    assert 0.0 <= float(rows[0]["recall"]) <= 1.0
    window.close()


def test_close_cancels_fid(window, qtbot):
    setup = window.setup
    choose(setup.data_combo, "ring8")
    setup.editors["steps"].setText("100000")
    assert window.start_run()
    qtbot.waitUntil(lambda: window.run_info is not None, timeout=RUN_TIMEOUT_MS)
    panel = window.analysis.fid_panel
    panel.n_spin.setValue(1_000_000)   # long enough to be still running at the close
    assert panel.start()
    qtbot.waitUntil(lambda: panel.progress_bar.value() > 0, timeout=RUN_TIMEOUT_MS)
    job = panel.job
    window.close()
    assert panel.job is None
    assert job.isFinished()
    assert window.thread is None
