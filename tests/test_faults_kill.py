"""Crash safety of run folders: SIGKILL at random moments, and writes that fail.

The kill test runs real training processes and kills them with SIGKILL, often
in the middle of writing a checkpoint (checkpoint_every=1), then resumes every
run folder. To keep 48 trials within seconds, one helper process imports torch
once and forks a fresh training process per trial. The helper runs no torch
operation before it forks, so the children start from a clean state.
"""

from __future__ import annotations

import errno
import json
import os
import random
import select
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.helpers import REPO
from workbench.core import run_index, runs
from workbench.core.config import build_config, config_from_dict
from workbench.core.trainer import Trainer

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the kill test forks training processes")

TRIALS = 48
# Seconds to wait after the first checkpoint before the kill, drawn uniformly.
MAX_KILL_DELAY_S = 0.25
# width 128 makes each checkpoint about 1 MB, so a good share of kills land inside a save.
KILL_CONFIG = dict(data="ring8", preset="dcgan", width=128, batch_size=32, steps=10**6,
                   checkpoint_every=1, sample_every=7, log_every=10**6)

# The helper process. "run DIR SEED" forks a child that trains until killed and prints
# "saved STEP" after each checkpoint. "reap PID" waits for that child and prints its signal.
HELPER = r"""
import json, os, sys
import torch
torch.set_num_threads(1)
from workbench.core import runs
from workbench.core.config import build_config
from workbench.core.trainer import Trainer

CONFIG = json.loads(sys.argv[1])


def train(run_dir, seed):
    trainer = Trainer(build_config(dict(CONFIG, seed=seed)), run_dir)
    runs.write_status(run_dir, "running", 0)
    save = trainer.save_checkpoint

    def save_and_report(path=None):
        result = save(path)
        os.write(1, f"saved {trainer.step}\n".encode())
        return result

    trainer.save_checkpoint = save_and_report
    trainer.run()


os.write(1, b"ready\n")
for line in sys.stdin:
    command, *args = line.split()
    if command == "run":
        pid = os.fork()
        if pid == 0:
            try:
                train(args[0], int(args[1]))
            finally:
                os._exit(1)
        os.write(1, f"pid {pid}\n".encode())
    elif command == "reap":
        _, status = os.waitpid(int(args[0]), 0)
        signal_number = os.WTERMSIG(status) if os.WIFSIGNALED(status) else -1
        os.write(1, f"reaped {args[0]} {signal_number}\n".encode())
"""


class LineReader:
    """Read whole lines from a pipe with a timeout."""

    def __init__(self, stream):
        self.fd = stream.fileno()
        self.buffer = b""

    def next(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(0.0, left))
            if not ready:
                raise TimeoutError(f"no output from the helper process within {timeout} s")
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise EOFError("the helper process exited")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()


@pytest.fixture
def helper():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen([sys.executable, "-c", HELPER, json.dumps(KILL_CONFIG)], cwd=REPO, env=env,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    reader = LineReader(process.stdout)
    try:
        assert reader.next(timeout=120) == "ready"
        yield process, reader
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


def _send(process, text: str) -> None:
    process.stdin.write(text.encode() + b"\n")
    process.stdin.flush()


def _train_and_kill(process, reader, run_dir, seed: int, delay: float) -> int:
    """Start one training process, SIGKILL it ``delay`` s after its first checkpoint.

    Returns the last step the process reported as saved before it died.
    """
    _send(process, f"run {run_dir} {seed}")
    # The helper's "pid" line and the child's first "saved" line may arrive in either order.
    pid = saved = None
    while pid is None or saved is None:
        line = reader.next(timeout=60)
        kind, value = line.split()
        assert kind in ("pid", "saved"), line
        if kind == "pid":
            pid = int(value)
        else:
            saved = int(value)
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    _send(process, f"reap {pid}")
    while True:
        line = reader.next(timeout=60)
        if line.startswith("reaped "):
            break
        assert line.startswith("saved "), line
        saved = int(line.split()[1])
    assert line == f"reaped {pid} {int(signal.SIGKILL)}"
    return saved


def _resume_and_check(run_dir, saved_step: int) -> int:
    """Resume the killed run, train 2 steps and check its files; return the resumed step."""
    config = config_from_dict(runs.read_config(run_dir))
    trainer = Trainer(config, run_dir, resume=True)
    resumed_step = trainer.step
    # Every row up to the checkpoint survives, and nothing after it.
    steps = [row["step"] for row in runs.read_metrics(run_dir / runs.METRICS_FILE)]
    assert steps == list(range(1, resumed_step + 1))
    trainer.run(steps=2)
    trainer.close()
    assert trainer.step == resumed_step + 2
    assert resumed_step >= saved_step
    return resumed_step


def test_sigkill_trials_all_resume(helper, tmp_path, capsys):
    process, reader = helper
    delays = random.Random(20240607)
    mid_save, resumed, killed = 0, 0, 0
    started = time.perf_counter()
    for trial in range(TRIALS):
        run_dir = tmp_path / f"run{trial:02d}"
        saved = _train_and_kill(process, reader, run_dir, seed=trial, delay=delays.uniform(0, MAX_KILL_DELAY_S))
        killed += 1

        # The listing detects that the process is gone.
        assert run_index.describe_run(run_dir).state == "failed"
        if runs.remove_stale_temp_files(run_dir):
            mid_save += 1
        _resume_and_check(run_dir, saved)
        resumed += 1
    elapsed = time.perf_counter() - started
    with capsys.disabled():
        print(f"\n  kill test: {killed} SIGKILLs, {resumed} runs resumed, {mid_save} killed mid-write "
              f"(temporary file left), {elapsed:.1f} s")
    assert resumed == killed == TRIALS


# ----- writes that fail -----------------------------------------------------------

SMALL = dict(data="ring8", preset="dcgan", width=16, batch_size=16, steps=20, checkpoint_every=2,
             sample_every=1000, log_every=1000)


def _fail_with_enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_full_disk_keeps_previous_checkpoint(tmp_path, monkeypatch, failing):
    run_dir = tmp_path / "run"
    trainer = Trainer(build_config(SMALL), run_dir)
    trainer.run(steps=4)
    good = runs.load_checkpoint(run_dir / runs.CHECKPOINT_FILE)

    monkeypatch.setattr(runs.os, failing, _fail_with_enospc)
    with pytest.raises(runs.RunWriteError) as error:
        trainer.run(steps=2)
    monkeypatch.undo()
    trainer.close()

    assert error.value.errno == errno.ENOSPC
    assert str(run_dir / runs.CHECKPOINT_FILE) in str(error.value)
    assert "unchanged" in str(error.value)
    assert isinstance(error.value, OSError)
    assert [p.name for p in run_dir.glob(".*.tmp")] == []
    on_disk = runs.load_checkpoint(run_dir / runs.CHECKPOINT_FILE)
    assert on_disk["step"] == good["step"] == 4
    for key, value in good["generator"].items():
        assert torch.equal(on_disk["generator"][key], value), key

    resumed = Trainer(build_config(SMALL), run_dir, resume=True)
    assert resumed.step == 4
    resumed.run(steps=2)
    resumed.close()
    assert resumed.step == 6


def test_full_disk_on_status_write(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    runs.write_status(run_dir, "running", 3)
    monkeypatch.setattr(runs.os, "replace", _fail_with_enospc)
    with pytest.raises(runs.RunWriteError):
        runs.write_status(run_dir, "finished", 9)
    monkeypatch.undo()
    assert runs.read_status(run_dir)["step"] == 3
    assert [p.name for p in run_dir.iterdir()] == [runs.STATUS_FILE]


def test_status_writer_survives_full_disk(tmp_path, monkeypatch, caplog):
    writer = runs.StatusWriter(tmp_path, interval_s=0.0)
    assert writer.set("running", 1)
    monkeypatch.setattr(runs.os, "replace", _fail_with_enospc)
    assert not writer.set("running", 2)
    writer.heartbeat(3)
    writer.heartbeat(4)
    monkeypatch.undo()
    assert runs.read_status(tmp_path)["step"] == 1
    assert caplog.text.count("cannot update the run status") == 1
    assert writer.set("finished", 5)
    assert runs.read_status(tmp_path)["state"] == "finished"


def test_stale_temp_files_removed(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / runs.SAMPLES_DIR).mkdir(parents=True)
    leftovers = [run_dir / ".checkpoint.pt.abc123.tmp", run_dir / runs.SAMPLES_DIR / ".step_000005.png.x.tmp"]
    for path in leftovers:
        path.write_bytes(b"partial")
    (run_dir / runs.CHECKPOINT_FILE).write_bytes(b"kept")
    removed = runs.remove_stale_temp_files(run_dir)
    assert sorted(removed) == sorted(leftovers)
    assert [p.name for p in run_dir.iterdir() if p.is_file()] == [runs.CHECKPOINT_FILE]
