"""Following a run folder that another process writes: tails, the follower and the window."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workbench.app.follow import LineTail, MetricsTail, RunFollower, SampleScanner
from workbench.core import runs

HEADER = ",".join(runs.METRIC_COLUMNS) + "\n"


def metrics_line(step: int, loss_d: float = 0.5) -> str:
    return f"{step},{loss_d},0.7,1.0,2.0,0.6,0.4,,,{step * 0.01}\n"


def append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)


def test_line_tail_waits_for_newline(tmp_path):
    path = tmp_path / "log.txt"
    tail = LineTail(path)
    assert tail.poll() == ([], False)   # no file yet
    append(path, "one\ntw")
    assert tail.poll() == (["one"], False)
    assert tail.offset == 4
    append(path, "o\nthree\n")
    assert tail.poll() == (["two", "three"], False)
    assert tail.poll() == ([], False)


def test_metrics_tail_torn_line(tmp_path):
    path = tmp_path / runs.METRICS_FILE
    append(path, HEADER + metrics_line(1) + metrics_line(2)[:9])
    tail = MetricsTail(path)
    rows, restarted = tail.poll()
    assert [row["step"] for row in rows] == [1]
    assert restarted is False
    assert rows[0]["loss_d"] == 0.5
    assert np.isnan(rows[0]["wasserstein"])
    assert rows[0]["wall_time"] == pytest.approx(0.01)
    append(path, metrics_line(2)[9:] + metrics_line(3))
    rows, _ = tail.poll()
    assert [row["step"] for row in rows] == [2, 3]


def test_metrics_tail_skips_bad_rows(tmp_path):
    path = tmp_path / runs.METRICS_FILE
    append(path, HEADER + "7,1,2\n" + "x,1,2,3,4,5,6,7,8,9\n" + metrics_line(8))
    rows, _ = MetricsTail(path).poll()
    assert [row["step"] for row in rows] == [8]


def test_metrics_tail_file_replaced(tmp_path):
    """A resumed run rewrites metrics.csv atomically (a new inode) with fewer rows."""
    path = tmp_path / runs.METRICS_FILE
    append(path, HEADER + "".join(metrics_line(s) for s in range(1, 6)))
    tail = MetricsTail(path)
    assert len(tail.poll()[0]) == 5
    runs.atomic_write_bytes(path, (HEADER + metrics_line(1) + metrics_line(2)).encode())
    rows, restarted = tail.poll()
    assert restarted is True
    assert [row["step"] for row in rows] == [1, 2]
    append(path, metrics_line(3, loss_d=0.25))
    rows, restarted = tail.poll()
    assert restarted is False
    assert [(row["step"], row["loss_d"]) for row in rows] == [(3, 0.25)]


def test_metrics_tail_truncated_in_place(tmp_path):
    path = tmp_path / runs.METRICS_FILE
    append(path, HEADER + "".join(metrics_line(s) for s in range(1, 6)))
    tail = MetricsTail(path)
    tail.poll()
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(HEADER + metrics_line(1))
    rows, restarted = tail.poll()
    assert restarted is True
    assert [row["step"] for row in rows] == [1]


def test_sample_scanner_new_grids(tmp_path):
    (tmp_path / runs.SAMPLES_DIR).mkdir()
    scanner = SampleScanner(tmp_path)
    assert scanner.poll() == []
    image = Image.new("RGB", (4, 4))
    image.save(runs.sample_path(tmp_path, 20))
    image.save(runs.sample_path(tmp_path, 10))
    assert [step for step, _ in scanner.poll()] == [10, 20]
    assert scanner.poll() == []
    time.sleep(0.01)   # a new folder modification time
    image.save(runs.sample_path(tmp_path, 30))
    (tmp_path / runs.SAMPLES_DIR / ".step_000040.png.123.tmp").write_bytes(b"partial")
    assert [step for step, _ in scanner.poll()] == [30]


def test_follower_emits(qtbot, tmp_path):
    (tmp_path / runs.SAMPLES_DIR).mkdir()
    append(tmp_path / runs.METRICS_FILE, HEADER + metrics_line(1) + metrics_line(2))
    Image.new("RGB", (6, 4), (255, 0, 0)).save(runs.sample_path(tmp_path, 2))
    append(tmp_path / "events.jsonl", json.dumps({"event": "fid", "step": 2}) + "\nnot json\n")
    runs.append_fid(tmp_path, 2, 12.5, "inception", 500)

    follower = RunFollower(tmp_path, interval_ms=50)
    blocks, grids, events, fids = [], [], [], []
    follower.metrics_ready.connect(blocks.append)
    follower.samples_ready.connect(lambda step, grid: grids.append((step, grid)))
    follower.event_ready.connect(events.append)
    follower.fid_ready.connect(fids.append)
    follower.start()
    try:
        assert blocks[0].shape == (2, len(runs.METRIC_COLUMNS))
        assert list(blocks[0][:, 0]) == [1.0, 2.0]
        assert grids[0][0] == 2
        assert grids[0][1].shape == (4, 6, 3)
        assert tuple(grids[0][1][0, 0]) == (255, 0, 0)
        assert events == [{"event": "fid", "step": 2}]
        assert fids == [[{"step": 2, "value": 12.5, "extractor": "inception", "n": 500,
                          "precision": None, "recall": None}]]
        append(tmp_path / runs.METRICS_FILE, metrics_line(3))
        qtbot.waitUntil(lambda: len(blocks) == 2, timeout=2000)
        assert list(blocks[1][:, 0]) == [3.0]
    finally:
        follower.stop()


# The window following a training process ---------------------------------------------------

@pytest.fixture
def training_process(tmp_path):
    """A `python -m workbench train` process on ring8 that runs until the test stops it."""
    run_dir = tmp_path / "runs" / "cluster-job"
    command = [sys.executable, "-m", "workbench", "train", "--data", "ring8", "--width", "16",
               "--batch-size", "32", "--steps", "1000000", "--sample-every", "200", "--device", "cpu",
               "--quiet", "--out", str(run_dir)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               cwd=Path(__file__).resolve().parents[1])
    try:
        yield process, run_dir
    finally:
        if process.poll() is None:
            process.terminate()
        output, _ = process.communicate(timeout=30)
        assert process.returncode in (0, -15), output.decode(errors="replace")


def test_window_follows_process(qtbot, tmp_path, training_process):
    from workbench.app.main_window import MainWindow

    process, run_dir = training_process
    window = MainWindow(runs_dir=run_dir.parent)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)

    metrics = run_dir / runs.METRICS_FILE
    qtbot.waitUntil(lambda: runs.last_metrics_step(metrics) is not None, timeout=60_000)
    assert window.run_browser.open_run(run_dir)
    assert process.poll() is None, "the training process ended early"
    for _ in range(3):   # three times: rows keep arriving, each batch within a second
        rows_before = len(window.history)
        qtbot.waitUntil(lambda: len(window.history) > rows_before, timeout=1000)
    assert window.loss_plot.point_count() == len(window.history)
    steps = window.history.column("step")
    assert list(steps) == list(range(1, len(steps) + 1))
    qtbot.waitUntil(lambda: window.samples_view.grid_count() >= 1, timeout=20_000)
    window.run_browser.stop_following()
