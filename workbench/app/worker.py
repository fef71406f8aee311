"""The training thread: owns the trainer and reports to the window through signals.

The trainer is created, driven and closed inside :meth:`TrainingThread.run`, because
it is not thread-safe. The window talks to the thread only through the ``request_*``
methods, which set flags under a lock, and listens to its signals, which carry plain
Python values and numpy arrays, never tensors. Signals emitted here reach slots of
objects living in the GUI thread as queued calls, so no widget is touched from this
thread.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QThread, Signal

from workbench.app.history import METRIC_COLUMNS, rows_to_array
from workbench.core.config import TrainConfig

logger = logging.getLogger(__name__)

EMIT_INTERVAL_S = 0.05        # metrics go out in batches at most 20 times per second
MIN_SAMPLE_INTERVAL_S = 0.05  # sample batches are skipped when due more often than this

TrainerFactory = Callable[[TrainConfig, Path | None], Any]


def default_trainer_factory(config: TrainConfig, run_dir: Path | None):
    """Build the core trainer (imported here so torch loads in the training thread)."""
    from workbench.core.trainer import Trainer

    return Trainer(config, run_dir)


@dataclass(frozen=True)
class RunInfo:
    """Facts about a run, sent once the trainer exists."""

    device_name: str
    run_dir: str
    is_image: bool
    first_step: int
    total_steps: int
    real_points: np.ndarray | None   # (n, 2) for 2D data, None for images


@dataclass(frozen=True)
class RunSummary:
    """Outcome of a run: 'completed', 'stopped' or 'failed', the last step and the checkpoint saved."""

    reason: str
    step: int
    checkpoint: str | None


class _Action:
    STEP, STOP, CHECKPOINT = "step", "stop", "checkpoint"


class TrainingThread(QThread):
    """Run one training session in its own thread.

    Parameters
    ----------
    config
        The validated settings of the run.
    run_dir
        Folder the trainer creates for the run, or None for a run that writes nothing.
    sample_every
        Steps between sample batches sent to the window; may be changed while running.
    start_paused
        Create the trainer, then wait for a resume or step request before training.
    trainer_factory
        Called in this thread as ``factory(config, run_dir)``; tests pass their own.
    """

    run_started = Signal(object)      # RunInfo
    metrics_ready = Signal(object)    # np.ndarray (k, len(METRIC_COLUMNS)) float64
    samples_ready = Signal(int, object)  # step, uint8 (H, W, 3) grid or float32 (N, 2) points
    checkpoint_saved = Signal(str)    # path
    state_changed = Signal(str)       # "running" or "paused"
    run_failed = Signal(str)          # message for the user
    run_ended = Signal(object)        # RunSummary; always the last signal of a run

    def __init__(self, config: TrainConfig, run_dir: Path | None, *, sample_every: int = 50,
                 start_paused: bool = False, trainer_factory: TrainerFactory | None = None, parent=None):
        super().__init__(parent)
        self.config = config
        self.run_dir = run_dir
        self.sample_every = max(1, int(sample_every))
        self._factory = trainer_factory or default_trainer_factory
        self._condition = threading.Condition()
        self._paused = start_paused
        self._stop_requested = False
        self._pending_steps = 0
        self._checkpoint_requested = False
        self._rows: list[dict] = []
        self._last_emit = 0.0
        self._last_sample = -np.inf
        self._last_sample_step = -1

    # Requests from the GUI thread -----------------------------------------------------------

    def request_pause(self) -> None:
        self._update(paused=True)

    def request_resume(self) -> None:
        self._update(paused=False)

    def request_stop(self) -> None:
        """Ask the thread to finish the current step, save a checkpoint and end."""
        self._update(stop=True)

    def request_step(self) -> None:
        """Ask for one more step while paused (one generator step with its n_critic D steps)."""
        with self._condition:
            self._pending_steps += 1
            self._condition.notify_all()

    def request_checkpoint(self) -> None:
        self._update(checkpoint=True)

    def _update(self, paused: bool | None = None, stop: bool = False, checkpoint: bool = False) -> None:
        with self._condition:
            if paused is not None:
                self._paused = paused
            self._stop_requested |= stop
            self._checkpoint_requested |= checkpoint
            self._condition.notify_all()

    # The training loop, in this thread -----------------------------------------------------

    def run(self) -> None:
        trainer, reason, checkpoint = None, "failed", None
        try:
            trainer = self._factory(self.config, self.run_dir)
            self.run_started.emit(self._describe(trainer))
            self._send_samples(trainer, force=True)
            reason = self._loop(trainer)
            if reason == "stopped" and trainer.run_dir is not None and trainer.step > 0:
                checkpoint = str(trainer.save_checkpoint())
                self.checkpoint_saved.emit(checkpoint)
        except Exception as error:  # reported to the user; the window stays usable
            logger.error("training failed: %s\n%s", error, traceback.format_exc())
            self._flush()
            self.run_failed.emit(str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}")
        finally:
            step = trainer.step if trainer is not None else 0
            if trainer is not None:
                trainer.close()
            self.run_ended.emit(RunSummary(reason, step, checkpoint))

    def _describe(self, trainer) -> RunInfo:
        real = trainer.real_points() if not trainer.is_image else None
        run_dir = str(trainer.run_dir) if trainer.run_dir is not None else ""
        return RunInfo(trainer.device_name, run_dir, trainer.is_image, trainer.step,
                       trainer.config.steps, None if real is None else np.array(real, dtype=np.float32))

    def _loop(self, trainer) -> str:
        """Train until the last step or a stop request; return 'completed' or 'stopped'."""
        while not trainer.finished:
            action = self._next_action()
            if action == _Action.STOP:
                self._flush()
                return "stopped"
            if action == _Action.CHECKPOINT:
                self.checkpoint_saved.emit(str(trainer.save_checkpoint()))
                continue

            self._rows.append(trainer.train_step())
            if self._sample_due(trainer):
                self._flush()
                self._send_samples(trainer, force=True)
            elif time.monotonic() - self._last_emit >= EMIT_INTERVAL_S:
                self._flush()
        self._flush()
        if self._last_sample_step != trainer.step:
            self._send_samples(trainer, force=True)
        return "completed"

    def _next_action(self) -> str:
        """Return the next thing to do, blocking while paused with nothing requested."""
        with self._condition:
            announced = False
            while True:
                if self._stop_requested:
                    return _Action.STOP
                if self._checkpoint_requested:
                    self._checkpoint_requested = False
                    return _Action.CHECKPOINT
                if not self._paused:
                    if announced:
                        self.state_changed.emit("running")
                    return _Action.STEP
                if self._pending_steps > 0:
                    self._pending_steps -= 1
                    return _Action.STEP
                if not announced:
                    # Show everything trained so far before going idle.
                    self._flush()
                    self.state_changed.emit("paused")
                    announced = True
                self._condition.wait()

    def _sample_due(self, trainer) -> bool:
        if trainer.step % self.sample_every != 0:
            return False
        return time.monotonic() - self._last_sample >= MIN_SAMPLE_INTERVAL_S

    def _send_samples(self, trainer, force: bool = False) -> None:
        if not force and not self._sample_due(trainer):
            return
        self._last_sample = time.monotonic()
        self._last_sample_step = trainer.step
        self.samples_ready.emit(trainer.step, np.array(trainer.samples()))

    def _flush(self) -> None:
        if self._rows:
            self.metrics_ready.emit(rows_to_array(self._rows, METRIC_COLUMNS))
            self._rows = []
        self._last_emit = time.monotonic()
