"""Measure the window's memory over a long run: resident set size against the training step.

Trains ring8 in the window (offscreen unless a display is set) for ``--steps`` steps or
``--max-seconds`` seconds, whichever comes first, and reads VmRSS from /proc/self/status
every ``--every`` seconds. The slope is fitted to the samples after the warm-up and
extrapolated to ``--target-steps``, so a short measurement still bounds a 100,000-step run.

    QT_QPA_PLATFORM=offscreen OMP_NUM_THREADS=1 python benchmarks/long_run_memory.py --max-seconds 300

Linux only: it needs /proc/self/status.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000, help="steps of the run (default 100000)")
    parser.add_argument("--target-steps", type=int, default=100_000,
                        help="steps the fitted slope is extrapolated to (default 100000)")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="stop measuring after this long (default 300)")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between RSS samples (default 2)")
    parser.add_argument("--warmup-steps", type=int, default=2000,
                        help="samples before this step are left out of the fit (default 2000)")
    parser.add_argument("--width", type=int, default=16, help="hidden units of both networks (default 16)")
    parser.add_argument("--preset", default="dcgan", help="training preset (default dcgan)")
    return parser.parse_args(argv)


def resident_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("VmRSS missing from /proc/self/status")


def measure(args, runs_dir: Path) -> list[tuple[float, int, float]]:
    """Train in the window; return (seconds, step, RSS in MB) samples."""
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(runs_dir / "settings"))
    app = QApplication.instance() or QApplication(sys.argv[:1])
    from workbench.app.main_window import MainWindow

    window = MainWindow(runs_dir=runs_dir)
    window.setup.set_data("ring8")
    window.setup.set_preset(args.preset)
    window.setup.set_values({"steps": args.steps, "width": args.width, "device": "cpu"})
    window.show()

    samples: list[tuple[float, int, float]] = []
    start = time.perf_counter()

    def record() -> None:
        elapsed = time.perf_counter() - start
        samples.append((elapsed, window.last_step, resident_mb()))
        if elapsed > args.max_seconds and window.thread is not None:
            window.stop_action.trigger()

    timer = QTimer()
    timer.setInterval(int(args.every * 1000))
    timer.timeout.connect(record)
    window.run_finished.connect(lambda _summary: app.quit())
    record()
    timer.start()
    if not window.start_run():
        raise SystemExit(f"invalid settings: {window.setup.problem()}")
    app.exec()
    timer.stop()
    record()
    window.close()
    return samples


def report(samples: list[tuple[float, int, float]], args) -> None:
    table = np.array(samples)
    fitted = table[table[:, 1] >= args.warmup_steps]
    print(f"{'seconds':>8} {'step':>8} {'RSS MB':>8}")
    for seconds, step, rss in samples[:: max(1, len(samples) // 15)]:
        print(f"{seconds:8.1f} {int(step):8d} {rss:8.1f}")
    last_seconds, last_step, last_rss = samples[-1]
    print(f"trained {int(last_step)} steps in {last_seconds:.0f} s; RSS {table[0, 2]:.1f} MB at start, "
          f"{table[:, 2].max():.1f} MB at most, {last_rss:.1f} MB at the end")
    if len(fitted) < 3 or fitted[-1, 1] <= fitted[0, 1]:
        print("too few samples after the warm-up to fit a slope; run longer")
        return
    slope, intercept = np.polyfit(fitted[:, 1], fitted[:, 2], 1)   # MB per step
    projected = intercept + slope * args.target_steps
    print(f"slope after step {args.warmup_steps}: {slope * 1000:.4f} MB per 1000 steps; "
          f"extrapolated RSS at step {args.target_steps}: {projected:.1f} MB")


def main(argv=None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="long-run-memory-") as folder:
        samples = measure(args, Path(folder))
    report(samples, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
