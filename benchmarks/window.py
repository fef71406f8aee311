"""Window overhead and GUI responsiveness, measured on the real MainWindow (offscreen).

Each window run fills the setup form, clicks the toolbar's Start button and
runs the Qt event loop until the window reports the end of the run. Its speed
is the steps trained between the window's ``run_started`` and ``run_finished``
signals divided by the time between them. The headless comparison trains the
config the form produced with ``Trainer.run()`` in this thread, from a fresh
trainer with its own run folder, timed from after construction.

Responsiveness is measured with a 10 ms precise QTimer in the GUI thread: the
lateness of a tick is the gap since the previous tick minus 10 ms, so an
event loop that is never blocked shows about 0 ms.
"""

from __future__ import annotations

import itertools
import logging
import statistics
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from benchmarks.harness import Goal, Options, Result, steps_per_block

logger = logging.getLogger(__name__)

OVERHEAD_GOAL = Goal(">=", 0.95)
LATENESS_GOAL = Goal("<", 30.0, "ms")
TICK_MS = 10
RUN_TIMEOUT_S = 600
_run_numbers = itertools.count()


@dataclass
class WindowRun:
    """Speed and timer lateness of one run in the window."""

    steps: int
    seconds: float
    lateness_ms: np.ndarray = field(default_factory=lambda: np.empty(0))

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds


def _log_qt_message(_kind, _context, message: str) -> None:
    # The offscreen platform cannot pass size hints to a window manager and logs a
    # warning whenever a window's minimum size changes. That is not a defect.
    if "propagateSizeHints" not in message:
        logger.warning("Qt: %s", message)


def application(options: Options):
    """Return the QApplication, creating it with settings kept in the scratch folder."""
    from PySide6.QtCore import QSettings, qInstallMessageHandler
    from PySide6.QtWidgets import QApplication

    settings_dir = str(options.scratch / "qsettings")
    for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
        QSettings.setPath(QSettings.Format.IniFormat, scope, settings_dir)
    qInstallMessageHandler(_log_qt_message)
    return QApplication.instance() or QApplication(sys.argv[:1])


class LatenessProbe:
    """A 10 ms precise timer in the GUI thread that records when each tick arrives."""

    def __init__(self):
        from PySide6.QtCore import Qt, QTimer

        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))

    def start(self) -> None:
        self.ticks.clear()
        self.timer.start()

    def stop(self) -> np.ndarray:
        """Stop the timer; return the lateness of each tick in milliseconds."""
        self.timer.stop()
        gaps_ms = np.diff(np.asarray(self.ticks)) * 1000.0
        return np.clip(gaps_ms - TICK_MS, 0.0, None)


def open_window(options: Options, data: str, preset: str, steps: int, sample_every: int):
    """Return a shown MainWindow whose form contains a valid config for the run."""
    from workbench.app.main_window import MainWindow

    application(options)
    window = MainWindow(runs_dir=options.scratch / "window-runs")
    window.setup.set_data(data)
    window.setup.set_preset(preset)
    window.setup.set_value("steps", steps)
    window.setup.set_value("device", "cpu")
    window.sample_spin.setValue(sample_every)
    window.show()
    if window.setup.config is None:
        problem = window.setup.problem()
        window.close()
        raise RuntimeError(f"the benchmark filled the form with invalid settings: {problem}")
    return window


def run_in_window(window, probe: LatenessProbe | None = None) -> WindowRun:
    """Click Start, run the event loop until the run ends, and return its speed."""
    from PySide6.QtCore import QEventLoop, Qt, QTimer
    from PySide6.QtTest import QTest

    loop = QEventLoop()
    marks: dict[str, float] = {}
    steps: dict[str, int] = {}

    def on_started(info) -> None:
        marks["start"] = time.perf_counter()
        steps["first"] = info.first_step
        if probe is not None:
            probe.start()

    def on_finished(summary) -> None:
        marks["end"] = time.perf_counter()
        steps["last"] = summary.step
        loop.quit()

    window.run_started.connect(on_started)
    window.run_finished.connect(on_finished)
    QTimer.singleShot(RUN_TIMEOUT_S * 1000, loop.quit)
    try:
        QTest.mouseClick(window.toolbar.widgetForAction(window.start_action), Qt.MouseButton.LeftButton)
        if window.thread is None:
            raise RuntimeError(f"clicking Start did not start a run: {window.setup.problem() or 'unknown reason'}")
        loop.exec()
    finally:
        window.run_started.disconnect(on_started)
        window.run_finished.disconnect(on_finished)
    lateness = probe.stop() if probe is not None else np.empty(0)
    if "end" not in marks:
        raise RuntimeError(f"the run in the window did not end within {RUN_TIMEOUT_S} s")
    return WindowRun(steps["last"] - steps["first"], marks["end"] - marks["start"], lateness)


def run_headless(config, options: Options) -> float:
    """Train ``config`` without a window, as the CLI does; return steps per second.

    The run uses the torch thread count the window's training thread uses, so both
    sides do the same work with the same threads. On 2 cores that is 1 thread where
    the CLI would use 2: the window leaves a core to the GUI thread, a choice whose
    cost the CPU throughput figure reports ("1 thread" against 2).
    """
    import torch

    from workbench.app.worker import window_torch_threads
    from workbench.core.trainer import Trainer

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(window_torch_threads())
    trainer = Trainer(config, options.scratch / f"headless-{next(_run_numbers)}")
    try:
        start = time.perf_counter()
        trainer.run()
        seconds = time.perf_counter() - start
    finally:
        trainer.close()
        torch.set_num_threads(previous_threads)
    return trainer.step / seconds


def _calibrated_steps(config, options: Options, target_seconds: float) -> int:
    """Return the number of steps a headless run of about ``target_seconds`` takes."""
    from workbench.core.trainer import Trainer

    trainer = Trainer(config, None)
    trainer.train_step()
    start = time.perf_counter()
    for _ in range(3):
        trainer.train_step()
    trainer.close()
    return steps_per_block((time.perf_counter() - start) / 3, target_seconds, minimum=5)


def _mnist_spec(options: Options) -> str:
    return f"mnist:{options.mnist_dir}"


# Window overhead -----------------------------------------------------------------------------

def measure_overhead(options: Options) -> list[Result]:
    """Steps per second in the window divided by headless, for dcgan on MNIST and wgan-gp on ring8."""
    cases = [("dcgan", _mnist_spec(options)), ("wgan-gp", "ring8")]
    if not (options.mnist_dir / "t10k-images-idx3-ubyte.gz").is_file():
        logger.warning("MNIST not found in %s; the window overhead uses ring8 only", options.mnist_dir)
        cases = cases[1:]
    return [_overhead_case(options, preset, data) for preset, data in cases]


def _overhead_case(options: Options, preset: str, data: str) -> Result:
    window = open_window(options, data, preset, steps=10, sample_every=50)
    try:
        config = window.setup.config
        steps = _calibrated_steps(config, options, 1.0 if options.quick else 4.0)
        # The first run in a process also pays one-time costs (imports in the
        # training thread, font and glyph caches), so it is not timed.
        window.setup.set_value("steps", 5)
        run_in_window(window)
        window.setup.set_value("steps", steps)
        config = window.setup.config
        pairs = 2 if options.quick else 5
        window_rates, headless_rates = [], []
        for _ in range(pairs):
            window_rates.append(run_in_window(window).steps_per_second)
            headless_rates.append(run_headless(config, options))
    finally:
        window.close()
    ratios = [w / h for w, h in zip(window_rates, headless_rates)]
    from workbench.app.worker import window_torch_threads

    details = (f"{steps} steps per run, samples view every 50 steps, {window_torch_threads()} torch thread(s) on "
               f"both sides; window {statistics.median(window_rates):.1f} "
               f"steps/s, headless {statistics.median(headless_rates):.1f} steps/s (medians); "
               f"pairs {pairs}, range {min(ratios):.3f}-{max(ratios):.3f}")
    return Result("window", f"{preset} on {data.partition(':')[0]}", statistics.median(ratios), "x",
                  OVERHEAD_GOAL, details)


# GUI responsiveness --------------------------------------------------------------------------

def _lateness_result(case: str, lateness_ms: np.ndarray, extra: str) -> Result:
    if len(lateness_ms) == 0:
        return Result("responsiveness", case, float("nan"), "ms", LATENESS_GOAL, f"no timer ticks; {extra}",
                      failed=True)
    p50, p99 = np.percentile(lateness_ms, [50, 99])
    details = (f"{extra}; {len(lateness_ms)} ticks, median {p50:.1f} ms, p99 {p99:.1f} ms, "
               f"max {lateness_ms.max():.1f} ms")
    return Result("responsiveness", case, float(p99), "ms", LATENESS_GOAL, details)


def _training_lateness(options: Options, preset: str, data: str, sample_every: int, text: str) -> Result:
    window = open_window(options, data, preset, steps=10, sample_every=sample_every)
    try:
        steps = _calibrated_steps(window.setup.config, options, 1.5 if options.quick else 8.0)
        window.setup.set_value("steps", steps)
        run = run_in_window(window, LatenessProbe())
    finally:
        window.close()
    extra = f"{steps} steps at {run.steps_per_second:.1f} steps/s"
    return _lateness_result(f"{preset} on {data.partition(':')[0]}, {text}", run.lateness_ms, extra)


def _idle_lateness(options: Options) -> Result:
    """Return the lateness of an idle window: the floor this machine's load sets for the other cases."""
    from PySide6.QtCore import QEventLoop, QTimer

    seconds = 1.0 if options.quick else 5.0
    window = open_window(options, "ring8", "wgan-gp", steps=10, sample_every=50)
    probe = LatenessProbe()
    loop = QEventLoop()
    try:
        probe.start()
        QTimer.singleShot(int(seconds * 1000), loop.quit)
        loop.exec()
        lateness = probe.stop()
    finally:
        window.close()
    return _lateness_result("idle window (reference)", lateness, f"no training, {seconds:.0f} s")


def measure_responsiveness(options: Options) -> list[Result]:
    """p99 lateness of a 10 ms GUI timer while training, refreshing samples and computing FID."""
    mnist = _mnist_spec(options)
    have_mnist = (options.mnist_dir / "t10k-images-idx3-ubyte.gz").is_file()
    results = [_idle_lateness(options)]
    results.append(_training_lateness(options, "wgan-gp", "ring8", 50, "samples view every 50 steps"))
    if have_mnist:
        results.append(_training_lateness(options, "dcgan", mnist, 50, "samples view every 50 steps"))
        results.append(_training_lateness(options, "dcgan", mnist, 1, "sample grid every step"))
    else:
        logger.warning("MNIST not found in %s; skipping the MNIST responsiveness cases", options.mnist_dir)
    if have_mnist or options.quick:
        from benchmarks.fid_window import measure_fid_lateness

        results.append(measure_fid_lateness(options))
    return results
