"""Measure how the window behaves while it trains: GUI lateness and training throughput.

Runs one training session in the window (offscreen unless a display is set) while a
10 ms QTimer records how late each of its ticks arrives, then runs the same config
headless in the same process. Prints the lateness percentiles and both speeds.

    QT_QPA_PLATFORM=offscreen python benchmarks/gui_responsiveness.py --preset wgan-gp --steps 300

Lateness is the gap between two ticks minus the 10 ms interval, so a GUI thread that
is never blocked shows about 0 ms.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TICK_MS = 10


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="wgan-gp", help="training preset (default wgan-gp)")
    parser.add_argument("--data", default="ring8", help="data spec (default ring8)")
    parser.add_argument("--steps", type=int, default=300, help="steps per run (default 300)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads for both runs; 0 uses the window's choice "
                             "(one less than the CPU count unless OMP_NUM_THREADS is set)")
    parser.add_argument("--sample-every", type=int, default=50, help="samples view refresh interval in steps")
    return parser.parse_args(argv)


def measure_window(args, runs_dir: Path) -> dict:
    """Train in the window; return tick lateness (ms) and steps per second."""
    from PySide6.QtCore import QSettings, Qt, QTimer
    from PySide6.QtWidgets import QApplication

    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(runs_dir / "settings"))
    app = QApplication.instance() or QApplication(sys.argv[:1])
    from workbench.app.main_window import MainWindow

    window = MainWindow(runs_dir=runs_dir)
    window.setup.set_data(args.data)
    window.setup.set_preset(args.preset)
    window.setup.set_value("steps", args.steps)
    window.sample_spin.setValue(args.sample_every)
    window.show()

    ticks: list[float] = []
    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(TICK_MS)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    marks = {}

    def on_started(_info):
        marks["start"] = time.perf_counter()
        timer.start()

    def on_ended(_summary):
        marks["end"] = time.perf_counter()
        timer.stop()
        app.quit()

    window.run_started.connect(on_started)
    window.run_finished.connect(on_ended)
    if not window.start_run():
        raise SystemExit(f"invalid settings: {window.setup.problem()}")
    app.exec()
    window.close()

    gaps_ms = np.diff(np.asarray(ticks)) * 1000.0
    lateness = np.clip(gaps_ms - TICK_MS, 0.0, None)
    return {"lateness": lateness, "steps_per_s": args.steps / (marks["end"] - marks["start"])}


def measure_full_history_redraw(rows: int = 100_000, repeats: int = 30) -> np.ndarray:
    """Return the times (ms) to refresh and repaint one plot whose history is full.

    A run of about a million steps keeps ``rows`` rows, so this is the redraw cost late
    in such a run. Each repeat appends 200 new rows first, as the training thread would.
    """
    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    from workbench.app.history import METRIC_COLUMNS, MetricHistory
    from workbench.app.plots import MetricPlot, Series

    app = QApplication.instance()
    history = MetricHistory(capacity=rows)
    plot = MetricPlot("Losses", [Series("loss_d", "D", "#1f77b4"), Series("loss_g", "G", "#ff7f0e")], history)
    plot.resize(700, 280)
    plot.show()
    plot.set_step_range(0, 10_000_000)
    rng = np.random.default_rng(0)
    step = 0

    def append(count: int) -> None:
        nonlocal step
        block = np.full((count, len(METRIC_COLUMNS)), np.nan)
        block[:, 0] = np.arange(step + 1, step + count + 1)
        block[:, 1:3] = rng.normal(size=(count, 2))
        history.append(block)
        step += count

    append(rows - 200 * repeats)
    times = []
    for _ in range(repeats):
        append(200)
        start = time.perf_counter()
        plot.refresh()
        plot.plot_widget.repaint()
        app.processEvents()
        times.append((time.perf_counter() - start) * 1000.0)
    plot.close()
    pg.QtWidgets.QApplication.processEvents()
    return np.asarray(times)


def measure_headless(args) -> float:
    """Train the same config without a window; return steps per second."""
    from workbench.core.config import build_config
    from workbench.core.trainer import Trainer

    config = build_config({"data": args.data, "steps": args.steps}, preset=args.preset)
    trainer = Trainer(config, None)
    start = time.perf_counter()
    while not trainer.finished:
        trainer.train_step()
    elapsed = time.perf_counter() - start
    trainer.close()
    return args.steps / elapsed


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from workbench.app.worker import limit_torch_threads

    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)   # so the window keeps this count
        torch.set_num_threads(args.threads)
    else:
        limit_torch_threads()
    print(f"{args.preset} on {args.data}, {args.steps} steps, torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as folder:
        window = measure_window(args, Path(folder))
    headless = measure_headless(args)
    redraw = measure_full_history_redraw()

    lateness = window["lateness"]
    p50, p90, p99 = np.percentile(lateness, [50, 90, 99])
    print(f"GUI 10 ms timer lateness over {len(lateness)} ticks: median {p50:.1f} ms, "
          f"p90 {p90:.1f} ms, p99 {p99:.1f} ms, max {lateness.max():.1f} ms")
    print(f"redraw of one plot with a full 100,000-row history: median {np.median(redraw):.1f} ms, "
          f"p90 {np.percentile(redraw, 90):.1f} ms")
    print(f"throughput: window {window['steps_per_s']:.1f} steps/s, headless {headless:.1f} steps/s "
          f"(window/headless {window['steps_per_s'] / headless:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
