"""Coverage and diversity against the step, the class histogram and the collapse alarm banner.

The training thread measures (see :class:`~workbench.app.live_analysis.CoverageMonitor`)
and writes the alarm to events.jsonl; this panel only edits the settings and
draws the records it receives.
"""

from __future__ import annotations

import logging

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel, QSpinBox, QVBoxLayout, QWidget,
)

from workbench.app.live_analysis import AlarmRecord, CoverageRecord, CoverageSettings

logger = logging.getLogger(__name__)

MAX_RECORDS = 10_000        # evaluations kept per run; at every=200 steps that is two million steps
ALARM_COLOR = "#d62728"
BANNER_STYLE = f"background: {ALARM_COLOR}; color: white; font-weight: bold; padding: 4px;"


class CoveragePanel(QWidget):
    """Settings of the coverage metrics and alarm, their plots against the step, and the banner.

    Signals
    -------
    settings_changed(CoverageSettings or None)
        None when the metrics are switched off.
    """

    settings_changed = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.records: list[CoverageRecord] = []
        self.alarms: list[AlarmRecord] = []
        self.markers: list[tuple[pg.PlotItem, pg.InfiniteLine]] = []
        self._marker_plots: list[pg.PlotItem] = []

        self.banner = QLabel()
        self.banner.setStyleSheet(BANNER_STYLE)
        self.banner.setWordWrap(True)
        self.banner.setVisible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.banner)
        layout.addLayout(self._build_settings())
        layout.addWidget(self._build_plots(), stretch=1)

    # Construction ---------------------------------------------------------------------------

    def _build_settings(self) -> QFormLayout:
        defaults = CoverageSettings()
        self.enabled_box = QCheckBox("Measure coverage and diversity while training")
        self.enabled_box.setChecked(True)
        self.every_spin = self._int_spin(defaults.every, 1, 1_000_000, " steps",
                                         "Steps between two evaluations; each one generates 2,500 points "
                                         "(2D data) or 1,000 images (labelled images)")
        self.modes_spin = self._float_spin(defaults.threshold_modes_fraction, 0.0, 1.0,
                                           "The alarm fires when the covered fraction of modes or classes "
                                           "is below this value")
        self.diversity_spin = self._float_spin(defaults.threshold_diversity, 0.0, 10.0,
                                               "The alarm fires when the diversity ratio (generated spread "
                                               "over real spread, 1 for real data) is below this value")
        self.patience_spin = self._int_spin(defaults.patience, 1, 1000, " evaluations",
                                            "Consecutive evaluations below a threshold before the alarm fires")
        self.warmup_spin = self._int_spin(defaults.warmup_steps, 0, 10_000_000, " steps",
                                          "The alarm stays silent before this step, while the generator is "
                                          "still learning to cover the data")
        self.classifier_box = QCheckBox("Use the domain classifier for images (trained once per data set)")
        self.classifier_box.setChecked(defaults.use_classifier)
        for widget in (self.enabled_box, self.classifier_box):
            widget.toggled.connect(self._on_settings_edited)

        form = QFormLayout()
        form.addRow(self.enabled_box)
        form.addRow("Every", self.every_spin)
        form.addRow("Alarm below covered fraction", self.modes_spin)
        form.addRow("Alarm below diversity", self.diversity_spin)
        form.addRow("Patience", self.patience_spin)
        form.addRow("Alarm from step", self.warmup_spin)
        form.addRow(self.classifier_box)
        return form

    def _int_spin(self, value: int, low: int, high: int, suffix: str, tip: str) -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(low, high)
        spin.setValue(value)
        spin.setSuffix(suffix)
        spin.setToolTip(tip)
        spin.valueChanged.connect(self._on_settings_edited)
        return spin

    def _float_spin(self, value: float, low: float, high: float, tip: str) -> QDoubleSpinBox:
        spin = QDoubleSpinBox()
        spin.setRange(low, high)
        spin.setDecimals(2)
        spin.setSingleStep(0.05)
        spin.setValue(value)
        spin.setToolTip(tip)
        spin.valueChanged.connect(self._on_settings_edited)
        return spin

    def _build_plots(self) -> QWidget:
        self.plots = pg.GraphicsLayoutWidget()
        self.fraction_plot = self.plots.addPlot(title="Coverage and diversity")
        self.fraction_plot.setLabel("bottom", "step")
        self.fraction_plot.addLegend(offset=(-10, 10))
        self.covered_curve = self.fraction_plot.plot(pen=pg.mkPen("#2ca02c", width=2), symbol="o", symbolSize=4,
                                                     name="covered fraction")
        self.quality_curve = self.fraction_plot.plot(pen=pg.mkPen("#1f77b4", width=2), symbol="o", symbolSize=4,
                                                     name="high quality / confident")
        self.diversity_curve = self.fraction_plot.plot(pen=pg.mkPen("#ff7f0e", width=2), symbol="o", symbolSize=4,
                                                       name="diversity ratio")
        self.plots.nextRow()
        self.kl_plot = self.plots.addPlot(title="KL(generated || data), nats")
        self.kl_plot.setLabel("bottom", "step")
        self.kl_curve = self.kl_plot.plot(pen=pg.mkPen("#9467bd", width=2), symbol="o", symbolSize=4)
        self.plots.nextRow()
        self.histogram_plot = self.plots.addPlot(title="Modes / classes of the generated samples")
        self.histogram = pg.BarGraphItem(x=[], height=[], width=0.8, brush="#7f7f7f")
        self.histogram_plot.addItem(self.histogram)
        self.summary_label = QLabel("no evaluation yet")
        page = QWidget()
        column = QVBoxLayout(page)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.plots, stretch=1)
        row = QHBoxLayout()
        row.addWidget(self.summary_label)
        column.addLayout(row)
        return page

    # Public API -----------------------------------------------------------------------------

    def settings(self) -> CoverageSettings | None:
        """Return the settings the training thread should use, or None when switched off."""
        if not self.enabled_box.isChecked():
            return None
        return CoverageSettings(every=self.every_spin.value(),
                                threshold_modes_fraction=self.modes_spin.value(),
                                threshold_diversity=self.diversity_spin.value(),
                                patience=self.patience_spin.value(),
                                warmup_steps=self.warmup_spin.value(),
                                use_classifier=self.classifier_box.isChecked())

    def add_marker_plot(self, plot_item: pg.PlotItem) -> None:
        """Mark each alarm on ``plot_item`` (the loss plot) with a vertical line."""
        self._marker_plots.append(plot_item)

    def reset(self) -> None:
        """Forget the previous run: records, banner and markers."""
        self.records.clear()
        self.alarms.clear()
        for plot_item, line in self.markers:
            plot_item.removeItem(line)
        self.markers.clear()
        self.banner.setVisible(False)
        self.banner.clear()
        for curve in (self.covered_curve, self.quality_curve, self.diversity_curve, self.kl_curve):
            curve.setData([], [])
        self.histogram.setOpts(x=[], height=[])
        self.histogram_plot.getAxis("bottom").setTicks(None)
        self.summary_label.setText("no evaluation yet")

    def add_record(self, record: CoverageRecord) -> None:
        """Append one evaluation to the plots and show its histogram."""
        self.records.append(record)
        del self.records[:-MAX_RECORDS]
        steps = np.array([r.step for r in self.records], dtype=np.float64)
        self._set_curve(self.covered_curve, steps,
                        [r.covered / r.total if r.covered is not None else np.nan for r in self.records])
        self._set_curve(self.quality_curve, steps, [_or_nan(r.high_quality) for r in self.records])
        self._set_curve(self.diversity_curve, steps, [_or_nan(r.diversity) for r in self.records])
        self._set_curve(self.kl_curve, steps, [_or_nan(r.kl) for r in self.records])
        if record.counts is not None:
            self.histogram.setOpts(x=np.arange(len(record.counts)), height=np.asarray(record.counts, float))
            self._label_bars(record)
        self.summary_label.setText(describe_record(record))

    def show_alarm(self, alarm: AlarmRecord) -> None:
        """Show the banner and mark the step on every registered plot."""
        self.alarms.append(alarm)
        self.banner.setText(f"Possible mode collapse at step {alarm.step}: {alarm.metric} = {alarm.value:.3g} "
                            f"is below {alarm.threshold:.3g}. Recorded in the run folder's events.jsonl.")
        self.banner.setVisible(True)
        for plot_item in self._marker_plots:
            line = pg.InfiniteLine(pos=alarm.step, angle=90, movable=False,
                                   pen=pg.mkPen(ALARM_COLOR, width=2),
                                   label=f"collapse? ({alarm.metric})",
                                   labelOpts={"position": 0.9, "color": ALARM_COLOR})
            plot_item.addItem(line, ignoreBounds=True)
            self.markers.append((plot_item, line))
        logger.warning("%s", alarm.message)

    # Internals ------------------------------------------------------------------------------

    def _label_bars(self, record: CoverageRecord) -> None:
        """Name each histogram bar: the class names of labelled images, or the mode numbers."""
        names = record.class_names or tuple(str(index) for index in range(len(record.counts)))
        axis = self.histogram_plot.getAxis("bottom")
        axis.setTicks([list(enumerate(names))])
        self.histogram_plot.setLabel("bottom", "mode" if record.feature_space == "points" else "class")

    def _set_curve(self, curve: pg.PlotDataItem, steps: np.ndarray, values) -> None:
        values = np.asarray(values, dtype=np.float64)
        finite = np.isfinite(values)
        curve.setData(steps[finite], values[finite])

    def _on_settings_edited(self, *_args) -> None:
        self.settings_changed.emit(self.settings())


def describe_record(record: CoverageRecord) -> str:
    """Return a one-line summary of an evaluation for the panel."""
    parts = [f"step {record.step}"]
    if record.covered is not None:
        unit = "modes" if record.feature_space == "points" else "classes"
        parts.append(f"{record.covered} of {record.total} {unit} covered")
    if record.high_quality is not None:
        parts.append(f"{100 * record.high_quality:.1f}% high quality" if record.feature_space == "points"
                     else f"{100 * record.high_quality:.1f}% confident")
    if record.kl is not None:
        parts.append(f"KL {record.kl:.3g}")
    if record.diversity is not None:
        parts.append(f"diversity {record.diversity:.3g} ({record.feature_space} space)")
    return ", ".join(parts)


def _or_nan(value: float | None) -> float:
    return np.nan if value is None else float(value)
