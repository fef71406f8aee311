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
import os
import threading
import time
import traceback
from concurrent.futures import Future
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
STATUS_REFRESH_S = 30.0       # a paused run rewrites status.json this often (runs.STATUS_HEARTBEAT_S)

TrainerFactory = Callable[[TrainConfig, Path | None], Any]


def limit_torch_threads() -> int:
    """Leave one CPU core to the GUI thread unless OMP_NUM_THREADS is set; return the old count.

    torch.set_num_threads is process-wide. benchmarks/gui_responsiveness.py measured WGAN-GP on
    ring8 in the window on a busy 2-core machine at 47.6 steps/s with 1 torch thread and 5.3
    steps/s with torch's default of 2, because the threads compete with the GUI and each other.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(window_torch_threads())
    return previous


def window_torch_threads() -> int:
    """Return the torch thread count training in the window uses: OMP_NUM_THREADS, else one less than the cores."""
    import torch

    if "OMP_NUM_THREADS" in os.environ:
        return torch.get_num_threads()
    return max(1, (os.cpu_count() or 1) - 1)


def default_trainer_factory(config: TrainConfig, run_dir: Path | None):
    """Build the core trainer (imported here so torch loads in the training thread)."""
    from workbench.core.trainer import Trainer

    return Trainer(config, run_dir)


def resume_trainer_factory(config: TrainConfig, run_dir: Path | None):
    """Build the core trainer that continues ``run_dir`` from its checkpoint (a fork or a stopped run)."""
    from workbench.core.trainer import Trainer

    return Trainer(config, run_dir, resume=True)


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
    SNAPSHOT, SINGLE = "snapshot", "single"   # copy the generator; one D or G update alone


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
    views_ready = Signal(object)      # live_analysis.PlaneFrame, for 2D data with plane layers on
    coverage_ready = Signal(object)   # live_analysis.CoverageRecord, every coverage_settings.every steps
    alarm_fired = Signal(object)      # live_analysis.AlarmRecord, already written to events.jsonl
    update_done = Signal(str, object)  # "discriminator" or "generator", its values, after a single update

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
        self._status_trainer = None   # the trainer whose status.json this thread keeps current
        # Read by this thread between steps; the GUI replaces them whole, never mutates them.
        self.plane_layers: frozenset[str] = frozenset()
        self.coverage_settings = None   # live_analysis.CoverageSettings, or None for no coverage
        self._snapshot_requests: list[Future] = []
        self._single_updates: list[str] = []
        self._analysis = None

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

    def request_snapshot(self) -> Future:
        """Ask for a CPU copy of the generator, taken between two steps; return its future.

        The future's result is a :class:`~workbench.app.live_analysis.GeneratorSnapshot`.
        It fails with RuntimeError when the run ends first.
        """
        future: Future = Future()
        with self._condition:
            self._snapshot_requests.append(future)
            self._condition.notify_all()
        return future

    def request_discriminator_step(self) -> None:
        """Ask for one discriminator update alone while paused (not a step; metrics.csv is unchanged)."""
        self._request_single("discriminator")

    def request_generator_step(self) -> None:
        """Ask for one generator update alone while paused."""
        self._request_single("generator")

    def _request_single(self, network: str) -> None:
        with self._condition:
            self._single_updates.append(network)
            self._condition.notify_all()

    def _update(self, paused: bool | None = None, stop: bool = False, checkpoint: bool = False) -> None:
        with self._condition:
            if paused is not None:
                self._paused = paused
            self._stop_requested |= stop
            self._checkpoint_requested |= checkpoint
            self._condition.notify_all()

    # The training loop, in this thread -----------------------------------------------------

    def run(self) -> None:
        import torch

        from workbench.core.trainer import NonFiniteError

        trainer, reason, checkpoint = None, "failed", None
        previous_threads = limit_torch_threads()
        try:
            logger.info("training with %d torch threads", torch.get_num_threads())
            trainer = self._factory(self.config, self.run_dir)
            self._record_state(trainer, "running")
            self.run_started.emit(self._describe(trainer))
            self._send_samples(trainer, force=True)
            reason = self._loop(trainer)
            if reason == "stopped" and trainer.run_dir is not None and trainer.step > 0:
                checkpoint = str(trainer.save_checkpoint())
                self.checkpoint_saved.emit(checkpoint)
            self._record_state(trainer, "finished" if reason == "completed" else "stopped",
                               "stopped in the window" if reason == "stopped" else "")
        except Exception as error:  # reported to the user; the window stays usable
            logger.error("training failed: %s\n%s", error, traceback.format_exc())
            if trainer is not None:
                self._rows.extend(trainer.flush_after_error(error))
            self._flush()
            # A NonFiniteError's message names the step and the quantity, as the user needs it.
            plain = isinstance(error, (ValueError, NonFiniteError))
            message = str(error) if plain else f"{type(error).__name__}: {error}"
            self._record_state(trainer, "failed", message)
            self.run_failed.emit(message)
        finally:
            step = trainer.step if trainer is not None else 0
            self._end_analysis()
            if trainer is not None:
                trainer.close()
            torch.set_num_threads(previous_threads)
            self.run_ended.emit(RunSummary(reason, step, checkpoint))

    def _record_state(self, trainer, state: str, message: str = "") -> None:
        """Write the run's status.json, so the runs panel shows the state; a failed write is logged."""
        from workbench.core import runs

        run_dir = getattr(trainer, "run_dir", None)
        if run_dir is None or not Path(run_dir).is_dir():
            return   # no trainer yet, or one that writes no run folder
        self._status_trainer = trainer
        try:
            runs.write_status(Path(run_dir), state, trainer.step, message)
        except OSError as error:
            logger.warning("cannot record the run state %s in %s: %s", state, run_dir, error)

    def _describe(self, trainer) -> RunInfo:
        real = trainer.real_points() if not trainer.is_image else None
        run_dir = str(trainer.run_dir) if trainer.run_dir is not None else ""
        return RunInfo(trainer.device_name, run_dir, trainer.is_image, trainer.step,
                       trainer.config.steps, None if real is None else np.array(real, dtype=np.float32))

    def _loop(self, trainer) -> str:
        """Train until the last step or a stop request; return 'completed' or 'stopped'."""
        while not trainer.finished:
            if self._paused:
                # Show the queued rows before _next_action waits. This runs outside its lock,
                # so the GUI thread's requests do not wait for the metrics.csv write. A pause
                # that arrives after this check is handled inside _next_action.
                self._rows.extend(trainer.flush_metrics())
            action = self._next_action(trainer)
            # The trainer queues metric rows. Take them before a stop or a request whose work
            # would write them itself (a checkpoint flushes first), so the plots get every row.
            if action != _Action.STEP:
                self._rows.extend(trainer.flush_metrics())
            if action == _Action.STOP:
                self._flush()
                return "stopped"
            if action == _Action.CHECKPOINT:
                self.checkpoint_saved.emit(str(trainer.save_checkpoint()))
                continue
            if action in (_Action.SNAPSHOT, _Action.SINGLE):
                self._serve_request(trainer, action)
                continue

            # advance() reads metrics back from a GPU in batches, not after every step.
            self._rows.extend(trainer.advance())
            self._analyse(trainer)
            if self._sample_due(trainer):
                self._send_samples(trainer, force=True)
            if time.monotonic() - self._last_emit >= EMIT_INTERVAL_S:
                self._flush()
        self._rows.extend(trainer.flush_metrics())
        self._flush()
        if self._last_sample_step != trainer.step:
            self._send_samples(trainer, force=True)
        return "completed"

    def _next_action(self, trainer) -> str:
        """Return the next thing to do, blocking while paused with nothing requested."""
        with self._condition:
            announced = False
            while True:
                if self._stop_requested:
                    return _Action.STOP
                if self._checkpoint_requested:
                    self._checkpoint_requested = False
                    return _Action.CHECKPOINT
                if self._snapshot_requests:
                    return _Action.SNAPSHOT
                if self._paused and self._single_updates:
                    return _Action.SINGLE
                if not self._paused:
                    if announced:
                        self.state_changed.emit("running")
                    return _Action.STEP
                if self._pending_steps > 0:
                    self._pending_steps -= 1
                    return _Action.STEP
                if not announced:
                    # Show everything trained so far before going idle, including the rows the
                    # trainer still queues (it reads them back in batches).
                    # NOTE: this usually finds the queue empty, because _loop flushes when paused.
                    # After a pause that came in between, the write (and a due sample grid or
                    # checkpoint) happens under the lock, so GUI requests wait for it.
                    self._rows.extend(trainer.flush_metrics())
                    self._flush()
                    self.state_changed.emit("paused")
                    announced = True
                if not self._condition.wait(timeout=STATUS_REFRESH_S) and self._status_trainer is not None:
                    # A paused run keeps its status fresh, so the runs panel does not report it as dead.
                    self._record_state(self._status_trainer, "running", "paused")

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

    # Analysis between steps -----------------------------------------------------------------

    def _analyse(self, trainer, force: bool = False) -> None:
        """Compute the plane views and coverage metrics that are due (nothing unless the GUI asked)."""
        layers, settings = self.plane_layers, self.coverage_settings
        if not layers and settings is None:
            return
        if self._analysis is None:
            from workbench.app.live_analysis import LiveAnalysis

            self._analysis = LiveAnalysis(trainer, self.views_ready.emit, self.coverage_ready.emit,
                                          self.alarm_fired.emit)
        self._analysis.after_update(layers, settings, force=force)

    def _serve_request(self, trainer, action: str) -> None:
        """Take the snapshots requested, or run one single update and refresh the views."""
        from workbench.app.live_analysis import take_snapshot

        with self._condition:
            if action == _Action.SNAPSHOT:
                futures, self._snapshot_requests = self._snapshot_requests, []
            else:
                futures, network = [], self._single_updates.pop(0)
        if action == _Action.SNAPSHOT:
            snapshot = take_snapshot(trainer)
            for future in futures:
                if future.set_running_or_notify_cancel():
                    future.set_result(snapshot)
            return
        if network == "discriminator":
            values = trainer.update_discriminator_once()
        else:
            values = trainer.update_generator_once()
        self.update_done.emit(network, values)
        self._send_samples(trainer, force=True)
        self._analyse(trainer, force=True)

    def _end_analysis(self) -> None:
        """Close the coverage monitor and fail the snapshot requests that were not served."""
        if self._analysis is not None:
            self._analysis.close()
        with self._condition:
            futures, self._snapshot_requests = self._snapshot_requests, []
        for future in futures:
            if future.set_running_or_notify_cancel():
                future.set_exception(RuntimeError("the run ended before the generator could be copied"))
