"""Plot scale: redraw time of the loss plot holding 1,000,000 steps, and the memory they add.

An idle MainWindow is shown (offscreen) and its metric history is fed
1,000,000 synthetic rows in blocks, the way the training thread's batches
arrive, with a window redraw after every block of blocks as the refresh timer
would do. Then the loss plot's redraw is timed: ``refresh(force=True)``
(smoothing and ``setData`` of its four curves) followed by ``grab()``, which
paints the plot widget into a pixmap. The memory figure is the growth of the
process's resident set size from before the first row to after the last redraw.
"""

from __future__ import annotations

import gc
import logging
import statistics
import time

import numpy as np

from benchmarks.harness import Goal, Options, Result, rss_bytes
from benchmarks.window import application

logger = logging.getLogger(__name__)

REDRAW_GOAL = Goal("<", 16.0, "ms")
MEMORY_GOAL = Goal("<", 100.0, "MB")
FULL_ROWS = 1_000_000
QUICK_ROWS = 50_000
ROWS_PER_BLOCK = 1000
BLOCKS_PER_REDRAW = 20


def synthetic_rows(start: int, count: int, columns: tuple[str, ...], rng: np.random.Generator) -> np.ndarray:
    """Return ``count`` metric rows for steps start+1 .. start+count: noisy, slowly drifting values."""
    rows = np.empty((count, len(columns)))
    steps = np.arange(start + 1, start + count + 1, dtype=np.float64)
    for index, name in enumerate(columns):
        if name == "step":
            rows[:, index] = steps
        elif name == "wall_time":
            rows[:, index] = steps * 0.01
        else:
            rows[:, index] = 1.0 + 0.5 * np.sin(steps / 5000.0 + index) + 0.2 * rng.standard_normal(count)
    return rows


def _feed(window, app, rows: int) -> float:
    """Append ``rows`` rows to the window's history, redrawing as the timer would; return seconds."""
    rng = np.random.default_rng(0)
    columns = window.history.columns
    start = time.perf_counter()
    for block_index, first in enumerate(range(0, rows, ROWS_PER_BLOCK)):
        window.history.append(synthetic_rows(first, min(ROWS_PER_BLOCK, rows - first), columns, rng))
        if block_index % BLOCKS_PER_REDRAW == 0:
            window._redraw()
            app.processEvents()
    window._redraw()
    app.processEvents()
    return time.perf_counter() - start


def _time_redraw(plot, repeats: int) -> tuple[list[float], list[float]]:
    """Return the seconds of ``repeats`` forced refreshes and of the paints that follow each."""
    refresh_seconds, paint_seconds = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        plot.refresh(force=True)
        middle = time.perf_counter()
        plot.plot_widget.grab()
        end = time.perf_counter()
        refresh_seconds.append(middle - start)
        paint_seconds.append(end - middle)
    return refresh_seconds, paint_seconds


def measure(options: Options) -> list[Result]:
    from workbench.app.main_window import MainWindow

    app = application(options)
    rows = QUICK_ROWS if options.quick else FULL_ROWS
    window = MainWindow(runs_dir=options.scratch / "plot-runs")
    window.show()
    try:
        app.processEvents()
        window.loss_plot.plot_widget.grab()   # first paint: fonts and caches
        gc.collect()
        rss_before = rss_bytes()
        feed_seconds = _feed(window, app, rows)
        refresh, paint = _time_redraw(window.loss_plot, 3 if options.quick else 9)
        gc.collect()
        rss_growth_mb = (rss_bytes() - rss_before) / 1e6
        stored, points = len(window.history), window.loss_plot.point_count()
        stride = window.history.stride
    finally:
        window.close()

    total_ms = [1000 * (r + p) for r, p in zip(refresh, paint)]
    redraw = Result(
        "plot", f"loss plot redraw after {rows:,} steps", statistics.median(total_ms), "ms", REDRAW_GOAL,
        f"refresh (smoothing, setData) {1000 * statistics.median(refresh):.1f} ms + paint (grab) "
        f"{1000 * statistics.median(paint):.1f} ms, medians of {len(total_ms)}; history keeps {stored:,} rows "
        f"(one in {stride}), {points:,} points per raw curve",
    )
    memory = Result(
        "plot", f"RSS growth after {rows:,} steps", rss_growth_mb, "MB", MEMORY_GOAL,
        f"history and plot curves of the window; feeding took {feed_seconds:.1f} s in blocks of "
        f"{ROWS_PER_BLOCK} rows with a redraw every {BLOCKS_PER_REDRAW} blocks",
    )
    return [redraw, memory]
