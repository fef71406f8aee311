"""Samples view: the generator's output on the fixed noise batch, live.

Image data shows the trainer's sample grid, with a slider to scrub back through the
last ``MAX_GRIDS`` grids of the run. 2D data shows real and generated points in one
scatter plot.
"""

from __future__ import annotations

import logging
from collections import deque

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QStackedWidget, QVBoxLayout, QWidget

logger = logging.getLogger(__name__)

MAX_GRIDS = 200  # grids kept in memory for scrubbing; a 64-image CIFAR grid is about 0.2 MB
# The scatter plot's range covers the points with this margin on each side, as a fraction of
# their extent, so points that spread slowly do not move the axes at every batch.
POINTS_MARGIN = 0.25
# The range shrinks only after the points spanned less than this fraction of it for this many
# batches in a row. Autoranging on every batch re-rendered both axes each time, in the GUI thread
# that shares the CPU with training, and early in a run the generated cloud swings to and fro.
POINTS_MIN_FILL = 0.5
POINTS_SHRINK_AFTER = 5


class SamplesView(QWidget):
    """View of the sample grids (images) or of real and generated points (2D data)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._grids: deque[tuple[int, np.ndarray]] = deque(maxlen=MAX_GRIDS)
        self.updates = 0  # number of sample batches received in this run

        self.stack = QStackedWidget()
        self.stack.addWidget(self._build_image_page())
        self.stack.addWidget(self._build_points_page())
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.stack)

    def _build_image_page(self) -> QWidget:
        self.image_widget = pg.GraphicsLayoutWidget()
        self.image_widget.addLabel("Generator samples on the fixed noise batch")
        self.image_widget.nextRow()
        self.image_box = self.image_widget.addViewBox(lockAspect=True, invertY=True, enableMouse=True)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.image_box.addItem(self.image_item)

        self.grid_slider = QSlider(Qt.Orientation.Horizontal)
        self.grid_slider.setRange(0, 0)
        self.grid_slider.setToolTip("Scrub back through earlier sample grids of this run")
        self.grid_slider.valueChanged.connect(self._on_slider_moved)
        self.grid_label = QLabel("no samples yet")

        controls = QHBoxLayout()
        controls.addWidget(self.grid_slider, stretch=1)
        controls.addWidget(self.grid_label)
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.image_widget, stretch=1)
        layout.addLayout(controls)
        return page

    def _build_points_page(self) -> QWidget:
        self.scatter_widget = pg.PlotWidget(title="Real and generated points")
        self.scatter_widget.setAspectLocked(True)
        # Items added with a name after addLegend() join the legend by themselves.
        self.scatter_widget.addLegend(offset=(-10, 10))
        self.real_scatter = pg.ScatterPlotItem(size=4, pen=None, brush=pg.mkBrush(120, 120, 120, 110), name="real")
        self.fake_scatter = pg.ScatterPlotItem(size=5, pen=None, brush=pg.mkBrush(214, 39, 40, 170), name="generated")
        self.scatter_widget.addItem(self.real_scatter)
        self.scatter_widget.addItem(self.fake_scatter)
        self._real_points = np.empty((0, 2))
        self._points_range: tuple[np.ndarray, np.ndarray] | None = None   # (low, high) corners shown
        self._view_moved_by_user = False
        self._small_batches = 0   # batches in a row that filled less than POINTS_MIN_FILL of the range
        self.scatter_widget.getViewBox().sigRangeChangedManually.connect(self._on_view_moved)
        self.points_label = QLabel("no samples yet")
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.scatter_widget, stretch=1)
        layout.addWidget(self.points_label)
        return page

    # Public API -----------------------------------------------------------------------------

    def reset(self, is_image: bool, real_points: np.ndarray | None = None) -> None:
        """Forget the previous run and switch to the image or the points page."""
        self._grids.clear()
        self.updates = 0
        self.stack.setCurrentIndex(0 if is_image else 1)
        self.image_item.clear()
        self.grid_slider.blockSignals(True)
        self.grid_slider.setRange(0, 0)
        self.grid_slider.blockSignals(False)
        self.grid_label.setText("no samples yet")
        self.fake_scatter.setData([], [])
        self.points_label.setText("no samples yet")
        self._points_range = None
        self._view_moved_by_user = False
        self._small_batches = 0
        if real_points is not None and len(real_points):
            self._real_points = np.asarray(real_points, dtype=np.float64)
            self.real_scatter.setData(real_points[:, 0], real_points[:, 1])
        else:
            self._real_points = np.empty((0, 2))
            self.real_scatter.setData([], [])
        if not is_image:
            self._follow_points(np.empty((0, 2)))

    def show_samples(self, step: int, samples: np.ndarray) -> None:
        """Show a new sample batch: a uint8 (H, W, C) grid or (N, 2) points."""
        self.updates += 1
        if samples.ndim == 3:
            self._add_grid(step, samples)
        else:
            self.fake_scatter.setData(samples[:, 0], samples[:, 1])
            self._follow_points(samples)
            self.points_label.setText(f"generated points at step {step}")

    def current_image(self) -> np.ndarray | None:
        """Return the grid on screen, or None before the first one."""
        return self.image_item.image

    def grid_count(self) -> int:
        return len(self._grids)

    def show_grid(self, index: int) -> None:
        """Show stored grid ``index`` (0 is the oldest kept)."""
        self.grid_slider.setValue(index)
        self._display(index)

    # Internals ------------------------------------------------------------------------------

    def _follow_points(self, generated: np.ndarray) -> None:
        """Fit the scatter plot's range to the real and generated points, with hysteresis.

        The range grows as soon as a point leaves it and shrinks only when the
        points filled less than ``POINTS_MIN_FILL`` of it for
        ``POINTS_SHRINK_AFTER`` batches in a row. After the user pans or zooms,
        the view is left alone until the next run.
        """
        if self._view_moved_by_user:
            return
        points = np.concatenate([self._real_points, np.asarray(generated, dtype=np.float64).reshape(-1, 2)])
        points = points[np.isfinite(points).all(axis=1)]
        if not len(points):
            return
        low, high = points.min(axis=0), points.max(axis=0)
        if self._points_range is not None:
            shown_low, shown_high = self._points_range
            inside = bool(np.all(low >= shown_low) and np.all(high <= shown_high))
            filled = np.max(high - low) >= POINTS_MIN_FILL * np.max(shown_high - shown_low)
            self._small_batches = 0 if filled else self._small_batches + 1
            if inside and self._small_batches < POINTS_SHRINK_AFTER:
                return
        self._small_batches = 0
        margin = POINTS_MARGIN * max(float(np.max(high - low)), 1e-3)
        self._points_range = (low - margin, high + margin)
        self.scatter_widget.getViewBox().setRange(xRange=(low[0] - margin, high[0] + margin),
                                                  yRange=(low[1] - margin, high[1] + margin), padding=0)

    def _on_view_moved(self, *_args) -> None:
        self._view_moved_by_user = True

    def _add_grid(self, step: int, grid: np.ndarray) -> None:
        following = self.grid_slider.value() == self.grid_slider.maximum()
        scrubbed_step = self._grids[self.grid_slider.value()][0] if self._grids and not following else None
        self._grids.append((step, grid))
        self.grid_slider.blockSignals(True)
        self.grid_slider.setRange(0, len(self._grids) - 1)
        if following:
            self.grid_slider.setValue(len(self._grids) - 1)
        else:
            # Keep showing the scrubbed grid although the oldest one may have been dropped.
            steps = [s for s, _ in self._grids]
            self.grid_slider.setValue(steps.index(scrubbed_step) if scrubbed_step in steps else 0)
        self.grid_slider.blockSignals(False)
        self._display(self.grid_slider.value())

    def _display(self, index: int) -> None:
        if not self._grids:
            return
        step, grid = self._grids[index]
        reshaped = self.image_item.image is None or self.image_item.image.shape != grid.shape
        self.image_item.setImage(grid, autoLevels=False, levels=(0, 255))
        if reshaped:
            self.image_box.autoRange(padding=0)  # only then, so a zoom the user set survives
        self.grid_label.setText(f"step {step} ({index + 1}/{len(self._grids)})")

    def _on_slider_moved(self, index: int) -> None:
        self._display(index)
