"""FID on demand: a dock that computes FID, precision and recall in its own thread.

The generator is a CPU copy taken by the training thread between two steps,
so training goes on meanwhile, or the checkpoint of a chosen run folder.
Each result is drawn on an FID-versus-step plot, one series per extractor
because values of different extractors are not comparable, and appended to the
run folder's fid.csv.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QProgressBar, QPushButton,
    QSpinBox, QToolButton, QVBoxLayout, QWidget,
)

from workbench.app.snapshot_job import SnapshotJob
from workbench.app.live_analysis import SnapshotSource
from workbench.core import runs

logger = logging.getLogger(__name__)

DEFAULT_N = 10_000
FID_SEED = 0                # the fake samples come from this noise seed, so repeated FIDs are comparable
CLOSE_TIMEOUT_MS = 10_000   # how long shutdown waits for a cancelled job
FEATURE_DIMS = {"inception": 2048, "domain": 128, "points": 2}
SERIES_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")
WARNING_STYLE = "color: #b35900;"


@dataclass(frozen=True)
class FIDOutcome:
    """A finished computation: the generator's step, the run folder and the core result."""

    step: int
    run_dir: Path | None
    result: object   # workbench.core.fid.FIDResult


class FIDJob(SnapshotJob):
    """Compute FID for one snapshot in this thread; cancellable between batches.

    Signals
    -------
    progress(done, total)
    succeeded(FIDOutcome)
    failed(message, weights_missing)
        ``weights_missing`` is True when the Inception weights were not found.
    cancelled()
    """

    progress = Signal(int, int)
    succeeded = Signal(object)
    failed = Signal(str, bool)
    cancelled = Signal()

    def __init__(self, source: SnapshotSource, n: int, extractor: str, cache_dir: str | Path | None = None,
                 parent=None):
        super().__init__(source, parent)
        self.n, self.extractor, self.cache_dir = n, extractor, cache_dir

    def run(self) -> None:
        from workbench.core.fid import Cancelled, FrechetError, WeightsNotFoundError, compute_fid, generator_sampler

        try:
            snapshot = self.obtain_snapshot()
            if snapshot is None:
                raise Cancelled("cancelled while waiting for the generator")
            sample = generator_sampler(snapshot.generator, snapshot.z_dim, seed=FID_SEED)
            result = compute_fid(snapshot.dataset, sample, self.n, self.extractor, cache_dir=self.cache_dir,
                                 progress=self.progress.emit, cancel=self.is_cancelled, seed=FID_SEED)
            self.succeeded.emit(FIDOutcome(snapshot.step, snapshot.run_dir, result))
        except Cancelled:
            self.cancelled.emit()
        except WeightsNotFoundError as error:
            self.failed.emit(str(error), True)
        except (ValueError, OSError, RuntimeError, FrechetError) as error:
            logger.error("FID failed: %s", error)
            self.failed.emit(str(error), False)


class FIDPanel(QWidget):
    """The FID dock: source, N, extractor, progress, result and the FID-versus-step plot.

    The owner calls :meth:`set_live_provider` with a function that returns a
    snapshot future of the running training thread (or None without one), and
    :meth:`set_run_dir` with the current run folder.
    """

    result_added = Signal(object)   # FIDOutcome

    def __init__(self, cache_dir: str | Path | None = None, parent=None):
        super().__init__(parent)
        self.cache_dir = cache_dir
        self.job: FIDJob | None = None
        self.outcomes: list[FIDOutcome] = []
        self._live_provider = None
        self._is_image: bool | None = None
        self._series: dict[str, pg.PlotDataItem] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(self._build_form())
        layout.addLayout(self._build_buttons())
        layout.addWidget(self._build_result())
        layout.addWidget(self._build_plot(), stretch=1)
        self._update_n_warning()
        self._update_buttons()

    # Construction ---------------------------------------------------------------------------

    def _build_form(self) -> QFormLayout:
        self.source_combo = QComboBox()
        self.source_combo.addItem("Live run (copy of the current generator)", "live")
        self.source_combo.addItem("Checkpoint in a run folder", "folder")
        self.source_combo.currentIndexChanged.connect(self._update_buttons)
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("run folder containing checkpoint.pt")
        self.folder_edit.textChanged.connect(self._update_buttons)
        browse = QToolButton()
        browse.setText("...")
        browse.setToolTip("Choose a run folder")
        browse.clicked.connect(self._on_browse)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_edit, stretch=1)
        folder_row.addWidget(browse)

        self.n_spin = QSpinBox()
        self.n_spin.setRange(2, 1_000_000)
        self.n_spin.setValue(DEFAULT_N)
        self.n_spin.setToolTip("Samples per side (real and generated); 10,000 or more for comparable values")
        self.n_spin.valueChanged.connect(self._update_n_warning)
        self.extractor_combo = QComboBox()
        for name, text in (("auto", "auto (points for 2D data, else Inception)"),
                           ("inception", "Inception-v3 pool3 (2048-d, standard FID)"),
                           ("domain", "domain classifier (128-d, trained on the real data)"),
                           ("points", "2D points (raw coordinates)")):
            self.extractor_combo.addItem(text, name)
        self.extractor_combo.currentIndexChanged.connect(self._update_n_warning)
        self.n_warning = QLabel()
        self.n_warning.setStyleSheet(WARNING_STYLE)
        self.n_warning.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Generator", self.source_combo)
        form.addRow("Run folder", folder_row)
        form.addRow("Samples N", self.n_spin)
        form.addRow("Features", self.extractor_combo)
        form.addRow(self.n_warning)
        return form

    def _build_buttons(self) -> QHBoxLayout:
        self.compute_button = QPushButton("Compute FID")
        self.compute_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        row = QHBoxLayout()
        row.addWidget(self.compute_button)
        row.addWidget(self.cancel_button)
        row.addWidget(self.progress_bar, stretch=1)
        return row

    def _build_result(self) -> QWidget:
        self.result_label = QLabel("No FID computed yet.")
        self.result_label.setWordWrap(True)
        self.notes_label = QLabel()
        self.notes_label.setStyleSheet(WARNING_STYLE)
        self.notes_label.setWordWrap(True)
        self.weights_button = QPushButton("Use the domain extractor instead")
        self.weights_button.setVisible(False)
        self.weights_button.clicked.connect(self._on_use_domain)
        box = QWidget()
        column = QVBoxLayout(box)
        column.setContentsMargins(0, 0, 0, 0)
        for widget in (self.result_label, self.notes_label, self.weights_button):
            column.addWidget(widget)
        return box

    def _build_plot(self) -> pg.PlotWidget:
        self.plot_widget = pg.PlotWidget(title="FID against step")
        self.plot_widget.setLabel("bottom", "step")
        self.plot_widget.setLabel("left", "FID")
        self.legend = self.plot_widget.addLegend(offset=(-10, 10))
        return self.plot_widget

    # Context from the window ----------------------------------------------------------------

    def set_live_provider(self, provider) -> None:
        """Set the function returning a snapshot future of the running training thread, or None."""
        self._live_provider = provider
        self._update_buttons()

    def set_run_dir(self, run_dir: str | Path | None, is_image: bool | None = None) -> None:
        """Show the current run's folder and load its earlier FID values into the plot."""
        self._is_image = is_image
        self.folder_edit.setText("" if run_dir is None else str(run_dir))
        self._clear_plot()
        if run_dir:
            for row in runs.read_fid(run_dir):
                self._add_point(row["extractor"], row["step"], row["value"])
        self._update_n_warning()

    # Running --------------------------------------------------------------------------------

    def start(self) -> bool:
        """Start a computation with the form's settings; return False when one is running or no source exists."""
        if self.job is not None:
            return False
        source = self._source()
        if source is None:
            self.notes_label.setText("No generator to measure: start a run, or choose a run folder with a "
                                     "checkpoint.")
            return False
        self.notes_label.clear()
        self.weights_button.setVisible(False)
        self.result_label.setText("Computing FID...")
        self.progress_bar.setRange(0, 0)   # busy until the first progress report
        job = FIDJob(source, self.n_spin.value(), self.extractor_combo.currentData(), self.cache_dir, self)
        job.progress.connect(self._on_progress)
        job.succeeded.connect(self._on_succeeded)
        job.failed.connect(self._on_failed)
        job.cancelled.connect(self._on_cancelled)
        job.finished.connect(self._on_job_finished)
        self.job = job
        job.start()
        self._update_buttons()
        return True

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def shutdown(self) -> None:
        """Cancel a running computation and wait for its thread (the window is closing)."""
        job, self.job = self.job, None
        if job is None:
            return
        job.cancel()
        if not job.wait(CLOSE_TIMEOUT_MS):
            logger.warning("the FID thread did not stop within %d s", CLOSE_TIMEOUT_MS // 1000)
        job.deleteLater()

    def _source(self) -> SnapshotSource | None:
        folder = self.folder_edit.text().strip() or None
        if self.source_combo.currentData() == "live" and self._live_provider is not None:
            future = self._live_provider()
            if future is not None:
                return SnapshotSource(future, folder)
        if folder is not None:
            return SnapshotSource(None, folder)
        return None

    # Slots ----------------------------------------------------------------------------------

    def _on_progress(self, done: int, total: int) -> None:
        self.progress_bar.setRange(0, max(total, 1))
        self.progress_bar.setValue(done)

    def _on_succeeded(self, outcome: FIDOutcome) -> None:
        result = outcome.result
        text = f"FID {result.value:.3f} at step {outcome.step}   (extractor {result.extractor}, N {result.n_fake})"
        if result.precision is not None:
            text += f"\nprecision {result.precision:.3f}, recall {result.recall:.3f} (k = 3)"
        self.result_label.setText(text)
        self.notes_label.setText("\n".join(result.warnings))
        self.outcomes.append(outcome)
        self._add_point(result.extractor, outcome.step, result.value)
        if outcome.run_dir is not None:
            try:
                runs.append_fid(outcome.run_dir, outcome.step, result.value, result.extractor,
                                  result.n_fake, result.precision, result.recall)
            except OSError as error:
                self.notes_label.setText(f"The value was not saved: {error}")
                logger.error("could not append to %s: %s", Path(outcome.run_dir) / runs.FID_FILE, error)
        self.result_added.emit(outcome)

    def _on_failed(self, message: str, weights_missing: bool) -> None:
        self.result_label.setText("FID failed.")
        self.notes_label.setText(message)
        self.weights_button.setVisible(weights_missing)

    def _on_cancelled(self) -> None:
        self.result_label.setText("FID cancelled.")

    def _on_job_finished(self) -> None:
        job, self.job = self.job, None
        if job is not None:
            job.deleteLater()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self._update_buttons()

    def _on_use_domain(self) -> None:
        self.extractor_combo.setCurrentIndex(self.extractor_combo.findData("domain"))
        self.weights_button.setVisible(False)
        self.notes_label.clear()

    def _on_browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a run folder", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)
            self.source_combo.setCurrentIndex(self.source_combo.findData("folder"))

    # Internals ------------------------------------------------------------------------------

    def _update_n_warning(self, *_args) -> None:
        extractor = self.extractor_combo.currentData()
        if extractor == "auto":
            extractor = "points" if self._is_image is False else "inception"
        dim = FEATURE_DIMS[extractor]
        n = self.n_spin.value()
        low = n < dim
        self.n_warning.setText(f"N = {n:,} is below the feature dimension ({dim:,} for {extractor}): the "
                               "covariance is singular, so FID is unreliable and not comparable with "
                               "values at other N." if low else "")
        self.n_warning.setVisible(low)

    def _update_buttons(self, *_args) -> None:
        running = self.job is not None
        self.compute_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    def _clear_plot(self) -> None:
        for item in self._series.values():
            self.plot_widget.removeItem(item)
        self.legend.clear()
        self._series.clear()

    def _add_point(self, extractor: str, step: int, value: float) -> None:
        if not math.isfinite(value):
            return
        series = self._series.get(extractor)
        if series is None:
            color = SERIES_COLORS[len(self._series) % len(SERIES_COLORS)]
            series = self.plot_widget.plot([], [], pen=pg.mkPen(color, width=1), symbol="o", symbolSize=7,
                                           symbolBrush=color, name=extractor)
            self._series[extractor] = series
        x, y = series.getData()
        x = np.append([] if x is None else x, step)
        y = np.append([] if y is None else y, value)
        order = np.argsort(x, kind="stable")
        series.setData(x[order], y[order])

    def point_count(self) -> int:
        """Return the number of FID points plotted, over all extractors."""
        return sum(len(item.getData()[0] if item.getData()[0] is not None else []) for item in self._series.values())
