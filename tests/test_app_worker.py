"""The training thread's protocol, with a fast stand-in trainer so timing is predictable."""

import math
import time

import numpy as np
import pytest

from workbench.app.worker import EMIT_INTERVAL_S, RunSummary, TrainingThread, default_trainer_factory
from workbench.core import runs
from workbench.core.config import build_config

THREAD_TIMEOUT_MS = 30_000


class FakeTrainer:
    """Implements the part of workbench.core.trainer.Trainer the thread uses."""

    def __init__(self, config, run_dir, step_seconds=0.0, fail_at=None):
        self.config, self.run_dir = config, run_dir
        self.step = 0
        self.is_image = False
        self.device_name = "fake"
        self.step_seconds = step_seconds
        self.fail_at = fail_at
        self.saved_at: list[int] = []
        self.sampled_at: list[int] = []
        self.closed = False

    @property
    def finished(self):
        return self.step >= self.config.steps

    def train_step(self):
        if self.step_seconds:
            time.sleep(self.step_seconds)
        if self.fail_at == self.step:
            raise ValueError("loss_d: became NaN")
        self.step += 1
        return {"step": self.step, "loss_d": 0.5 * self.step, "loss_g": -1.0, "wall_time": 0.0}

    def advance(self):
        return [self.train_step()]

    def flush_metrics(self):
        return []

    def flush_after_error(self, error):
        return []

    def samples(self):
        self.sampled_at.append(self.step)
        return np.full((4, 2), self.step, dtype=np.float32)

    def real_points(self, n=1000):
        return np.zeros((n, 2), dtype=np.float32)

    def save_checkpoint(self):
        self.saved_at.append(self.step)
        return f"checkpoint-{self.step}.pt"

    def close(self):
        self.closed = True


class Recorder:
    def __init__(self, thread):
        self.blocks, self.samples, self.states, self.failures, self.checkpoints = [], [], [], [], []
        self.summary = None
        thread.metrics_ready.connect(self.blocks.append)
        thread.samples_ready.connect(lambda step, points: self.samples.append(step))
        thread.state_changed.connect(self.states.append)
        thread.run_failed.connect(self.failures.append)
        thread.checkpoint_saved.connect(self.checkpoints.append)
        thread.run_ended.connect(lambda summary: setattr(self, "summary", summary))

    @property
    def steps(self):
        return [int(step) for block in self.blocks for step in block[:, 0]]


def start(qtbot, steps, sample_every=50, start_paused=False, **fake_options):
    trainers = []

    def factory(config, run_dir):
        trainers.append(FakeTrainer(config, run_dir, **fake_options))
        return trainers[-1]

    thread = TrainingThread(build_config({"data": "ring8", "steps": steps}), "run-folder",
                            sample_every=sample_every, start_paused=start_paused, trainer_factory=factory)
    recorder = Recorder(thread)
    thread.start()
    return thread, recorder, trainers


def finish(qtbot, thread, recorder):
    qtbot.waitUntil(lambda: recorder.summary is not None, timeout=THREAD_TIMEOUT_MS)
    assert thread.wait(THREAD_TIMEOUT_MS)


def test_metrics_arrive_in_batches(qtbot):
    started = time.monotonic()
    thread, recorder, trainers = start(qtbot, steps=600, step_seconds=0.001)
    finish(qtbot, thread, recorder)
    elapsed = time.monotonic() - started

    assert recorder.steps == list(range(1, 601))
    assert len(recorder.blocks) <= elapsed / EMIT_INTERVAL_S + 10   # about 20 batches per second
    assert len(recorder.blocks) < 300                               # not one signal per step
    assert recorder.blocks[0][0, 1] == 0.5                          # loss_d of step 1
    assert math.isnan(recorder.blocks[0][0, -2])                    # gp: absent, so NaN
    assert recorder.summary == RunSummary("completed", 600, None)
    assert trainers[0].closed


def test_samples_sent_when_due(qtbot):
    thread, recorder, trainers = start(qtbot, steps=200, sample_every=100, step_seconds=0.001)
    finish(qtbot, thread, recorder)
    assert recorder.samples == [0, 100, 200]


def test_pause_step_resume_stop(qtbot):
    thread, recorder, trainers = start(qtbot, steps=100_000, start_paused=True, step_seconds=0.001)
    qtbot.waitUntil(lambda: recorder.states == ["paused"], timeout=THREAD_TIMEOUT_MS)
    assert recorder.steps == []

    thread.request_step()
    thread.request_step()
    qtbot.waitUntil(lambda: recorder.steps == [1, 2], timeout=THREAD_TIMEOUT_MS)
    time.sleep(0.1)
    assert trainers[0].step == 2

    thread.request_checkpoint()
    qtbot.waitUntil(lambda: recorder.checkpoints == ["checkpoint-2.pt"], timeout=THREAD_TIMEOUT_MS)

    thread.request_resume()
    qtbot.waitUntil(lambda: len(recorder.steps) > 20, timeout=THREAD_TIMEOUT_MS)
    assert "running" in recorder.states
    thread.request_stop()
    finish(qtbot, thread, recorder)

    last = trainers[0].step
    assert recorder.summary == RunSummary("stopped", last, f"checkpoint-{last}.pt")
    assert recorder.steps == list(range(1, last + 1))   # every step reached the window
    assert trainers[0].saved_at == [2, last]


def test_stop_before_first_step_saves_nothing(qtbot):
    thread, recorder, trainers = start(qtbot, steps=100, start_paused=True)
    qtbot.waitUntil(lambda: recorder.states == ["paused"], timeout=THREAD_TIMEOUT_MS)
    thread.request_stop()
    finish(qtbot, thread, recorder)
    assert recorder.summary == RunSummary("stopped", 0, None)
    assert trainers[0].saved_at == []


def test_error_reported_and_trainer_closed(qtbot):
    thread, recorder, trainers = start(qtbot, steps=100, fail_at=7)
    finish(qtbot, thread, recorder)
    assert recorder.failures == ["loss_d: became NaN"]
    assert recorder.summary == RunSummary("failed", 7, None)
    assert recorder.steps == list(range(1, 8))
    assert trainers[0].closed
    assert trainers[0].saved_at == []


def test_factory_error_reported(qtbot):
    def broken_factory(config, run_dir):
        raise OSError("disk full")

    thread = TrainingThread(build_config({"data": "ring8"}), None, trainer_factory=broken_factory)
    recorder = Recorder(thread)
    thread.start()
    finish(qtbot, thread, recorder)
    assert recorder.failures == ["OSError: disk full"]
    assert recorder.summary == RunSummary("failed", 0, None)


@pytest.mark.parametrize("interval", [1, 7])
def test_sample_interval_changes_live(qtbot, interval):
    thread, recorder, trainers = start(qtbot, steps=30, sample_every=1000, start_paused=True)
    qtbot.waitUntil(lambda: recorder.states == ["paused"], timeout=THREAD_TIMEOUT_MS)
    thread.sample_every = interval
    thread.request_resume()
    finish(qtbot, thread, recorder)
    # Step 0 is always sent; with interval 1 the 50 ms minimum gap drops most of the others.
    assert recorder.samples[0] == 0
    assert recorder.samples[-1] == 30
    assert all(step % interval == 0 or step == 30 for step in recorder.samples)


def test_real_trainer_rows_without_gaps(qtbot, tmp_path):
    # The trainer queues rows for up to 50 ms, a checkpoint saved on request writes them
    # itself, and a stop ends the loop. Every step must still reach the window once.
    config = build_config({"data": "ring8", "preset": "wgan-gp", "width": 16, "batch_size": 16, "steps": 100_000})
    thread = TrainingThread(config, tmp_path / "run", sample_every=1000)
    recorder = Recorder(thread)
    thread.start()
    qtbot.waitUntil(lambda: len(recorder.steps) >= 5, timeout=THREAD_TIMEOUT_MS)
    for count in (1, 2, 3):
        thread.request_checkpoint()
        qtbot.waitUntil(lambda: len(recorder.checkpoints) == count, timeout=THREAD_TIMEOUT_MS)
    thread.request_stop()
    finish(qtbot, thread, recorder)

    last = recorder.summary.step
    assert recorder.steps == list(range(1, last + 1))
    written = [int(row["step"]) for row in runs.read_metrics(tmp_path / "run" / runs.METRICS_FILE)]
    assert written == list(range(1, last + 1))


def test_rows_before_nan_reach_gui(qtbot, tmp_path):
    # The flush that finds a NaN writes the rows before it, and the window must get them too.
    def poisoned_factory(config, run_dir):
        trainer = default_trainer_factory(config, run_dir)
        original = trainer.d_loss_fn

        def loss(*args):
            result = original(*args)
            return result * math.nan if trainer.step == 6 else result

        trainer.d_loss_fn = loss
        return trainer

    config = build_config({"data": "ring8", "preset": "dcgan", "width": 16, "batch_size": 16, "steps": 100})
    thread = TrainingThread(config, tmp_path / "run", sample_every=1000, trainer_factory=poisoned_factory)
    recorder = Recorder(thread)
    thread.start()
    finish(qtbot, thread, recorder)

    assert recorder.steps == [1, 2, 3, 4, 5, 6]
    assert recorder.failures[0].startswith("training stopped at step 7: loss_d is nan")
