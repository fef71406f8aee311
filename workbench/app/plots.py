"""Live metric plots: raw and smoothed curves, crosshair read-out, PNG and CSV export."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pyqtgraph as pg
import pyqtgraph.exporters
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox, QFileDialog, QHBoxLayout, QLabel, QSlider, QToolButton, QVBoxLayout, QWidget,
)

from workbench.app.history import MetricHistory, debiased_ema, peak_decimate

logger = logging.getLogger(__name__)

SLIDER_SCALE = 1000   # slider units per 1.0 of the smoothing factor
MAX_SMOOTHING = 0.999
# Curves longer than twice this are drawn as per-bucket minimum and maximum, which keeps
# a redraw of a full 100,000-row history near the cost of a short one.
DISPLAY_BUCKETS = 2000
MIN_X_SPAN = 64       # steps shown on the x axis at the start of a run
RAW_ALPHA = 60        # opacity (0-255) of the raw curve drawn behind the smoothed one
# The y range follows the data with hysteresis: it changes only when a value leaves it or
# the values span less than this fraction of it, and then leaves Y_MARGIN of the span free.
Y_MIN_FILL = 0.5
Y_MARGIN = 0.1


@dataclass(frozen=True)
class Series:
    """One curve: the history column it reads, its legend label and its colour."""

    key: str
    label: str
    color: str


class MetricPlot(QWidget):
    """A plot of some history columns against the step, redrawn by :meth:`refresh`.

    Each series owns two curve items created once: the raw values drawn faintly and
    their debiased exponential moving average on top. The owner calls ``refresh`` from
    a timer; it redraws only when the history or a display setting changed.
    """

    def __init__(self, title: str, series: Sequence[Series], history: MetricHistory, *,
                 y_label: str = "", log_toggle: bool = False, smoothing: float = 0.6, parent=None):
        super().__init__(parent)
        self.history = history
        self.series = list(series)
        self._drawn_version = -1
        self._smoothed: dict[str, np.ndarray] = {}
        self._first_step, self._total_steps = 0, 0
        self._x_upper_shown: float | None = None
        self._y_shown: tuple[float, float] | None = None
        self._follow_steps = True   # False once the user pans or zooms

        self.plot_widget = pg.PlotWidget()
        self.plot_item = self.plot_widget.getPlotItem()
        self._setup_plot(title, y_label)
        self._create_curves()
        self._create_crosshair()
        self._build_controls(log_toggle, smoothing)

    # Construction ---------------------------------------------------------------------------

    def _setup_plot(self, title: str, y_label: str) -> None:
        self.plot_item.setTitle(title)
        self.plot_item.setLabel("bottom", "step")
        if y_label:
            self.plot_item.setLabel("left", y_label)
        # No downsampling or clipping by pyqtgraph: _set_curve already reduces a curve to at
        # most 2 * DISPLAY_BUCKETS points, and recomputing on each view change cost more than
        # drawing them.
        self.legend = self.plot_item.addLegend(offset=(-10, 10))
        self.plot_item.vb.sigRangeChangedManually.connect(self._on_range_changed_manually)

    def _create_curves(self) -> None:
        self.raw_curves: dict[str, pg.PlotDataItem] = {}
        self.smooth_curves: dict[str, pg.PlotDataItem] = {}
        for spec in self.series:
            faint = QColor(spec.color)
            faint.setAlpha(RAW_ALPHA)
            raw = pg.PlotDataItem(pen=pg.mkPen(faint, width=1), connect="finite")
            # One-pixel pens: Qt strokes wider pens as outlines, which made a plot's repaint
            # take 2.3 ms instead of 0.7 ms, most of the window's cost to training speed.
            smooth = pg.PlotDataItem(pen=pg.mkPen(spec.color, width=1), connect="finite", name=spec.label)
            self.plot_item.addItem(raw)
            self.plot_item.addItem(smooth)
            self.raw_curves[spec.key] = raw
            self.smooth_curves[spec.key] = smooth

    def _create_crosshair(self) -> None:
        pen = pg.mkPen((128, 128, 128), width=1, style=Qt.PenStyle.DashLine)
        self.vline = pg.InfiniteLine(angle=90, movable=False, pen=pen)
        self.vline.setVisible(False)
        self.plot_item.addItem(self.vline, ignoreBounds=True)
        self._mouse_proxy = pg.SignalProxy(self.plot_widget.scene().sigMouseMoved, rateLimit=30,
                                           slot=self._on_mouse_moved)

    def _build_controls(self, log_toggle: bool, smoothing: float) -> None:
        self.smoothing_slider = QSlider(Qt.Orientation.Horizontal)
        self.smoothing_slider.setRange(0, int(MAX_SMOOTHING * SLIDER_SCALE))
        self.smoothing_slider.setToolTip(
            "Exponential moving average factor: 0 shows the raw values, values near 1 average over "
            "many steps. The average is debiased, so the first points are not pulled toward zero.")
        self.smoothing_label = QLabel()
        self.smoothing_slider.valueChanged.connect(self._on_smoothing_changed)
        self.smoothing_slider.setValue(round(smoothing * SLIDER_SCALE))
        self._on_smoothing_changed(self.smoothing_slider.value())

        self.log_checkbox = QCheckBox("Log scale")
        self.log_checkbox.setToolTip("Show the y axis on a base-10 logarithmic scale")
        self.log_checkbox.toggled.connect(self.set_log_scale)
        self.log_checkbox.setVisible(log_toggle)

        png_button = self._tool_button("PNG", "Save this plot as a PNG image", self._on_export_png)
        csv_button = self._tool_button("CSV", "Save the plotted values (raw and smoothed) as CSV",
                                       self._on_export_csv)
        self.readout = QLabel(" ")
        self.readout.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        controls = QHBoxLayout()
        controls.setContentsMargins(4, 0, 4, 0)
        for widget in (QLabel("Smoothing"), self.smoothing_slider, self.smoothing_label,
                       self.log_checkbox, png_button, csv_button):
            controls.addWidget(widget)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.plot_widget, stretch=1)
        layout.addLayout(controls)
        layout.addWidget(self.readout)

    def _tool_button(self, text: str, tip: str, slot) -> QToolButton:
        button = QToolButton()
        button.setText(text)
        button.setToolTip(tip)
        button.clicked.connect(slot)
        return button

    # Public API -----------------------------------------------------------------------------

    @property
    def smoothing(self) -> float:
        return self.smoothing_slider.value() / SLIDER_SCALE

    def set_smoothing(self, beta: float) -> None:
        self.smoothing_slider.setValue(round(beta * SLIDER_SCALE))

    def set_log_scale(self, enabled: bool) -> None:
        self.log_checkbox.setChecked(enabled)
        self.plot_item.setLogMode(y=enabled)
        self._y_shown = None   # the range was in the other scale's coordinates
        self.refresh(force=True)

    def set_labels(self, title: str, labels: dict[str, str]) -> None:
        """Rename the plot and the legend entries of the series keyed in ``labels``."""
        self.plot_item.setTitle(title)
        for key, text in labels.items():
            label = self.legend.getLabel(self.smooth_curves[key])
            if label is not None:
                label.setText(text)
            self.smooth_curves[key].opts["name"] = text
        self.series = [Series(s.key, labels.get(s.key, s.label), s.color) for s in self.series]

    def point_count(self) -> int:
        """Return the number of points in the raw curves, as last drawn."""
        x, _ = self.raw_curves[self.series[0].key].getData()
        return 0 if x is None else len(x)

    def refresh(self, force: bool = False) -> bool:
        """Redraw the curves if the history changed since the last call; return whether it did."""
        if not force and self.history.version == self._drawn_version:
            return False
        self._drawn_version = self.history.version
        steps = np.asarray(self.history.column("step"))
        beta = self.smoothing
        drawn_values = []
        for spec in self.series:
            values = np.asarray(self.history.column(spec.key))
            smoothed = debiased_ema(values, beta) if beta > 0 else values
            self._smoothed[spec.key] = smoothed
            self._set_curve(self.raw_curves[spec.key], steps, values)
            self._set_curve(self.smooth_curves[spec.key], steps, smoothed)
            drawn_values += [values, smoothed]
        if len(steps):
            self._extend_x_range(steps[-1])
            self._follow_y_range(drawn_values)
        return True

    def set_step_range(self, first: int, total: int) -> None:
        """Prepare the x axis for a run from step ``first`` to ``total``."""
        self._first_step, self._total_steps = first, total
        self._x_upper_shown = None
        self._y_shown = None
        self._follow_steps = True
        self.plot_item.enableAutoRange(x=True, y=True)

    def _extend_x_range(self, last_step: float) -> None:
        # Grow the x axis in doublings instead of autoranging on every redraw: the axis
        # then re-renders its ticks about log2(steps) times per run, not on every frame.
        if not self._follow_steps or self._total_steps <= self._first_step:
            return
        span = max(last_step - self._first_step, 1.0) * 1.25
        upper = min(float(self._total_steps), self._first_step + max(MIN_X_SPAN, 2.0 ** np.ceil(np.log2(span))))
        if upper != self._x_upper_shown:
            self._x_upper_shown = upper
            self.plot_item.setXRange(self._first_step, upper, padding=0.02)

    def _follow_y_range(self, drawn_values: list[np.ndarray]) -> None:
        # Autoranging moved the y axis on nearly every redraw, and each move re-renders the
        # axis ticks in the GUI thread while it holds the GIL that training also needs. With
        # hysteresis the range changes a few times per run.
        if not self._follow_steps:
            return
        values = np.concatenate(drawn_values) if drawn_values else np.empty(0)
        if self.log_checkbox.isChecked():
            values = np.log10(values[values > 0])   # the view's y coordinate in log mode
        values = values[np.isfinite(values)]
        if not len(values):
            return
        low, high = float(values.min()), float(values.max())
        span = high - low
        if self._y_shown is not None:
            shown_low, shown_high = self._y_shown
            inside = shown_low <= low and high <= shown_high
            if inside and span >= Y_MIN_FILL * (shown_high - shown_low):
                return
        margin = Y_MARGIN * span if span > 0 else max(0.1 * abs(high), 1e-6)
        self._y_shown = (low - margin, high + margin)
        self.plot_item.setYRange(*self._y_shown, padding=0)

    def _on_range_changed_manually(self, *_args) -> None:
        self._follow_steps = False

    def _set_curve(self, curve: pg.PlotDataItem, x: np.ndarray, y: np.ndarray) -> None:
        if not np.isfinite(y).any():
            curve.setData([], [])   # a metric this loss does not produce
            return
        curve.setData(*peak_decimate(x, y, DISPLAY_BUCKETS))

    # Export ---------------------------------------------------------------------------------

    def export_csv(self, path: str | Path) -> Path:
        """Write step, then each series raw and smoothed, as CSV; return the path."""
        self.refresh(force=True)
        path = Path(path)
        columns = [np.asarray(self.history.column("step"))]
        header = ["step"]
        for spec in self.series:
            columns.append(np.asarray(self.history.column(spec.key)))
            columns.append(self._smoothed[spec.key])
            header += [spec.key, f"{spec.key}_smoothed"]
        table = np.column_stack(columns) if len(columns[0]) else np.empty((0, len(header)))
        np.savetxt(path, table, delimiter=",", header=",".join(header), comments="", fmt="%.9g")
        logger.info("saved plot data to %s", path)
        return path

    def export_png(self, path: str | Path) -> Path:
        """Render the plot to a PNG file; return the path."""
        self.refresh(force=True)
        path = Path(path)
        exporter = pyqtgraph.exporters.ImageExporter(self.plot_item)
        exporter.export(str(path))
        logger.info("saved plot image to %s", path)
        return path

    def _on_export_png(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save plot as PNG", "plot.png", "PNG images (*.png)")
        if path:
            self.export_png(path)

    def _on_export_csv(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save plot data as CSV", "plot.csv", "CSV files (*.csv)")
        if path:
            self.export_csv(path)

    # Slots ----------------------------------------------------------------------------------

    def _on_smoothing_changed(self, value: int) -> None:
        self.smoothing_label.setText(f"{value / SLIDER_SCALE:.3f}")
        self.refresh(force=True)

    def _on_mouse_moved(self, event) -> None:
        position = event[0]
        if not self.plot_item.sceneBoundingRect().contains(position) or len(self.history) == 0:
            self.vline.setVisible(False)
            return
        x = self.plot_item.vb.mapSceneToView(position).x()
        steps = np.asarray(self.history.column("step"))
        index = int(np.clip(np.searchsorted(steps, x), 0, len(steps) - 1))
        if index > 0 and abs(steps[index - 1] - x) < abs(steps[index] - x):
            index -= 1
        self.vline.setPos(steps[index])
        self.vline.setVisible(True)
        self.readout.setText(self.describe_point(index))

    def describe_point(self, index: int) -> str:
        """Return the read-out text for stored row ``index``: step, then raw (smoothed) values."""
        steps = self.history.column("step")
        parts = [f"step {int(steps[index])}"]
        for spec in self.series:
            raw = self.history.column(spec.key)[index]
            smoothed = self._smoothed.get(spec.key, self.history.column(spec.key))[index]
            if np.isfinite(raw):
                parts.append(f"{spec.label} {raw:.4g} ({smoothed:.4g})")
        return "   ".join(parts)
