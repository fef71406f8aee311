"""Compare runs: their curves overlaid on shared plots, one colour per run.

Each plot shows one metric. Each run gets one smoothed curve in every plot,
in the same colour everywhere, smoothed with the debiased moving average of
the live plots. The x axis is the step or the wall time of training. A fork's
curves continue its parent's (:func:`run_index.load_metrics_with_parent`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QGridLayout, QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from workbench.app.history import METRIC_COLUMNS, debiased_ema, rows_to_array
from workbench.app.plots import MAX_SMOOTHING, SLIDER_SCALE
from workbench.core import run_index

logger = logging.getLogger(__name__)

# The tab10 palette of matplotlib; runs beyond ten reuse it with dashed lines.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
COMPARED_METRICS = (("loss_d", "D loss"), ("loss_g", "G loss"), ("grad_norm_d", "D gradient norm"),
                    ("wasserstein", "Wasserstein estimate"))
X_AXES = {"step": "step", "wall_time": "wall time (s)"}
# Points drawn per curve at most; longer runs are thinned to every k-th row after smoothing.
MAX_POINTS = 5000


@dataclass
class ComparedRun:
    """One run's metrics as loaded for comparison."""

    path: Path
    label: str
    table: np.ndarray   # float64 (rows, len(METRIC_COLUMNS))


def run_pen(index: int):
    """Return the pen of the ``index``-th compared run."""
    style = Qt.PenStyle.SolidLine if index < len(PALETTE) else Qt.PenStyle.DashLine
    return pg.mkPen(PALETTE[index % len(PALETTE)], width=2, style=style)


def load_compared_run(path: str | Path) -> ComparedRun:
    """Read a run's metrics (with its parent's before the fork) into a table."""
    path = Path(path)
    rows = run_index.load_metrics_with_parent(path)
    return ComparedRun(path, path.name, rows_to_array(rows, METRIC_COLUMNS))


class CompareView(QWidget):
    """Plots of several runs' metrics overlaid, with a smoothing slider and an x axis choice."""

    def __init__(self, metrics: Sequence[tuple[str, str]] = COMPARED_METRICS, smoothing: float = 0.6,
                 parent=None):
        super().__init__(parent)
        self.metrics = list(metrics)
        self.runs: list[ComparedRun] = []
        self.plots: dict[str, pg.PlotItem] = {}
        self.curves: dict[str, list[pg.PlotDataItem]] = {key: [] for key, _ in self.metrics}
        self._build(smoothing)

    def _build(self, smoothing: float) -> None:
        grid = QGridLayout()
        for index, (key, title) in enumerate(self.metrics):
            widget = pg.PlotWidget()
            plot = widget.getPlotItem()
            plot.setTitle(title)
            plot.addLegend(offset=(-10, 10))
            plot.setDownsampling(auto=True, mode="peak")
            plot.setClipToView(True)
            self.plots[key] = plot
            grid.addWidget(widget, index // 2, index % 2)

        self.x_combo = QComboBox()
        for key, label in X_AXES.items():
            self.x_combo.addItem(label, key)
        self.x_combo.setToolTip("Plot against the step or against seconds of training")
        self.x_combo.currentIndexChanged.connect(self.redraw)
        self.smoothing_slider = QSlider(Qt.Orientation.Horizontal)
        self.smoothing_slider.setRange(0, int(MAX_SMOOTHING * SLIDER_SCALE))
        self.smoothing_slider.setValue(round(smoothing * SLIDER_SCALE))
        self.smoothing_slider.setToolTip("Exponential moving average factor, debiased as in the live plots")
        self.smoothing_slider.valueChanged.connect(self.redraw)
        self.info_label = QLabel("Tick runs in the runs panel to compare them")

        controls = QHBoxLayout()
        for widget in (QLabel("x axis"), self.x_combo, QLabel("Smoothing"), self.smoothing_slider):
            controls.addWidget(widget)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(grid, stretch=1)
        layout.addLayout(controls)
        layout.addWidget(self.info_label)
        self._update_axis_labels()

    # Public API -----------------------------------------------------------------------------

    @property
    def smoothing(self) -> float:
        return self.smoothing_slider.value() / SLIDER_SCALE

    def set_smoothing(self, beta: float) -> None:
        self.smoothing_slider.setValue(round(beta * SLIDER_SCALE))

    @property
    def x_axis(self) -> str:
        """'step' or 'wall_time'."""
        return self.x_combo.currentData()

    def set_x_axis(self, key: str) -> None:
        index = self.x_combo.findData(key)
        if index < 0:
            raise ValueError(f"x axis must be one of {', '.join(X_AXES)}, got {key!r}")
        self.x_combo.setCurrentIndex(index)

    def set_runs(self, paths: Sequence[str | Path]) -> None:
        """Load and show the metrics of ``paths``; a run whose metrics cannot be read is left out."""
        loaded, problems = [], []
        for path in paths:
            try:
                loaded.append(load_compared_run(path))
            except (OSError, ValueError) as error:
                problems.append(f"{Path(path).name}: {error}")
        self.runs = loaded
        names = ", ".join(run.label for run in loaded) or "none"
        text = f"Comparing {len(loaded)} runs: {names}"
        if problems:
            text += "; cannot read " + "; ".join(problems)
            logger.warning("cannot compare some runs: %s", "; ".join(problems))
        self.info_label.setText(text)
        self.redraw()

    def redraw(self, *_args) -> None:
        """Draw every run's curves again (after a change of runs, smoothing or x axis)."""
        self._update_axis_labels()
        for key, _title in self.metrics:
            self._ensure_curves(key, len(self.runs))
            for index, run in enumerate(self.runs):
                x, y = self._curve_data(run, key)
                curve = self.curves[key][index]
                curve.setData(x, y)
                curve.setPen(run_pen(index))
                self._set_legend_text(key, curve, run.label)
            self.plots[key].enableAutoRange()

    def _ensure_curves(self, key: str, count: int) -> None:
        """Keep exactly ``count`` curve items in the plot of ``key``, created or removed as needed."""
        plot, curves = self.plots[key], self.curves[key]
        while len(curves) < count:
            curve = pg.PlotDataItem(connect="finite", name=f"run {len(curves) + 1}")
            plot.addItem(curve)
            curves.append(curve)
        while len(curves) > count:
            curve = curves.pop()
            plot.removeItem(curve)
            plot.legend.removeItem(curve)

    def _set_legend_text(self, key: str, curve: pg.PlotDataItem, text: str) -> None:
        label = self.plots[key].legend.getLabel(curve)
        if label is not None and label.text != text:
            label.setText(text)
        curve.opts["name"] = text

    def _curve_data(self, run: ComparedRun, key: str) -> tuple[np.ndarray, np.ndarray]:
        x = run.table[:, METRIC_COLUMNS.index(self.x_axis)]
        y = run.table[:, METRIC_COLUMNS.index(key)]
        if not np.isfinite(y).any():
            return np.empty(0), np.empty(0)   # a metric this run's loss does not produce
        beta = self.smoothing
        smoothed = debiased_ema(y, beta) if beta > 0 else y
        stride = max(1, int(np.ceil(len(x) / MAX_POINTS)))
        return x[::stride], smoothed[::stride]

    def curve_count(self, key: str) -> int:
        """Return the number of curves with data in the plot of ``key``."""
        return sum(1 for curve in self.curves[key] if curve.getData()[0] is not None
                   and len(curve.getData()[0]) > 0)

    def _update_axis_labels(self) -> None:
        for plot in self.plots.values():
            plot.setLabel("bottom", X_AXES[self.x_axis])
