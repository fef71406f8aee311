"""Layers drawn over the 2D scatter: discriminator heat map, gradient arrows, manifold and a path.

The training thread computes a :class:`~workbench.app.live_analysis.PlaneFrame`
for the enabled layers; :class:`PlaneOverlay` draws it with items created
once: an ImageItem with a ColorBarItem, one PlotDataItem of segment pairs for
all arrows and one PlotDataItem with a connect array for the warped grid.
"""

from __future__ import annotations

import logging

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QWidget

from workbench.app.live_analysis import PLANE_LAYERS, PlaneFrame

logger = logging.getLogger(__name__)

ARROW_FRACTION = 0.08   # the maximum arrow length, as a fraction of the plane's width
ARROW_COLOR = (20, 20, 20, 200)
MANIFOLD_COLOR = (31, 119, 180, 170)
PATH_COLOR = (148, 103, 189, 230)
HEAT_Z = -100           # the heat map is drawn below every point and line

LAYER_LABELS = {
    "real": ("Real points", "Show the real data points"),
    "generated": ("Generated points", "Show the generator's output on the fixed noise batch"),
    "heatmap": ("D heat map", "Colour the plane by the discriminator's output (critic value for Wasserstein)"),
    "arrows": ("G gradient", "Arrows: the direction the generator loss moves each generated point"),
    "manifold": ("G manifold", "A grid in noise space, mapped through the generator"),
}


def arrow_segments(points: np.ndarray, directions: np.ndarray, max_length: float) -> tuple[np.ndarray, np.ndarray]:
    """Return x and y (2N,) of segments from each point along its direction, for ``connect='pairs'``.

    Directions are scaled together so that the longest segment has ``max_length``;
    relative lengths are kept.
    """
    longest = float(np.linalg.norm(directions, axis=1).max()) if len(directions) else 0.0
    scale = max_length / longest if longest > 0 else 0.0
    ends = points + scale * directions
    pairs = np.empty((2 * len(points), 2))
    pairs[0::2] = points
    pairs[1::2] = ends
    return pairs[:, 0], pairs[:, 1]


def polyline_connect(lines: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flatten polylines (..., P, 2) to x, y and a connect array that breaks between lines."""
    points_per_line = lines.shape[-2]
    flat = lines.reshape(-1, 2)
    connect = np.ones(len(flat), dtype=bool)
    connect[points_per_line - 1::points_per_line] = False   # the last point of each line
    return flat[:, 0], flat[:, 1], connect


class PlaneOverlay(QWidget):
    """Toggles for the 2D layers and the items that draw them on a scatter plot.

    Parameters
    ----------
    plot_widget
        The samples view's scatter plot.
    real_item, fake_item
        Its scatter items of real and generated points, shown or hidden by the toggles.

    Signals
    -------
    layers_changed(frozenset)
        The computed layers now enabled, a subset of ``PLANE_LAYERS``.
    """

    layers_changed = Signal(object)

    def __init__(self, plot_widget: pg.PlotWidget, real_item, fake_item, parent=None):
        super().__init__(parent)
        self.plot_item = plot_widget.getPlotItem()
        self.real_item, self.fake_item = real_item, fake_item
        self.frames_shown = 0
        self._heat_label = ""
        self._create_items()
        self._build_toggles()

    def _create_items(self) -> None:
        self.heat_image = pg.ImageItem(axisOrder="row-major")
        self.heat_image.setZValue(HEAT_Z)
        self.plot_item.addItem(self.heat_image)
        self.color_bar = pg.ColorBarItem(values=(0.0, 1.0), colorMap=pg.colormap.get("viridis"),
                                         label="D(x)", interactive=False, width=15)
        self.color_bar.setImageItem(self.heat_image, insert_in=self.plot_item)
        self.arrows = pg.PlotDataItem(pen=pg.mkPen(ARROW_COLOR, width=1), connect="pairs")
        self.manifold = pg.PlotDataItem(pen=pg.mkPen(MANIFOLD_COLOR, width=1))
        self.path = pg.PlotDataItem(pen=pg.mkPen(PATH_COLOR, width=2), symbol="o", symbolSize=6,
                                    symbolBrush=PATH_COLOR, symbolPen=None)
        for item in (self.arrows, self.manifold, self.path):
            self.plot_item.addItem(item)
        self._set_heat_visible(False)
        self.arrows.setVisible(False)
        self.manifold.setVisible(False)

    def _build_toggles(self) -> None:
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 0, 4, 0)
        layout.addWidget(QLabel("Layers:"))
        self.toggles: dict[str, QCheckBox] = {}
        for name, (text, tip) in LAYER_LABELS.items():
            box = QCheckBox(text)
            box.setToolTip(tip)
            box.setChecked(name in ("real", "generated"))
            box.toggled.connect(self._on_toggled)
            layout.addWidget(box)
            self.toggles[name] = box
        layout.addStretch(1)

    # Public API -----------------------------------------------------------------------------

    def enabled_layers(self) -> frozenset[str]:
        """Return the computed layers whose toggles are on."""
        return frozenset(name for name in PLANE_LAYERS if self.toggles[name].isChecked())

    def set_layer(self, name: str, enabled: bool) -> None:
        self.toggles[name].setChecked(enabled)

    def reset(self) -> None:
        """Clear the computed layers and the path, for a new run."""
        self.heat_image.clear()
        self.arrows.setData([], [])
        self.manifold.setData([], [])
        self.path.setData([], [])
        self.frames_shown = 0

    def show_frame(self, frame: PlaneFrame) -> None:
        """Draw the layers of ``frame`` that are enabled."""
        self.frames_shown += 1
        enabled = self.enabled_layers()
        if frame.heatmap is not None and "heatmap" in enabled:
            self._draw_heatmap(frame)
        if frame.arrows is not None and "arrows" in enabled:
            max_length = ARROW_FRACTION * (frame.xlim[1] - frame.xlim[0])
            x, y = arrow_segments(frame.points, frame.arrows, max_length)
            self.arrows.setData(x, y)
        if frame.manifold is not None and "manifold" in enabled:
            x, y, connect = polyline_connect(frame.manifold)
            self.manifold.setData(x, y, connect=connect)

    def show_path(self, points: np.ndarray | None) -> None:
        """Draw the generated points of an interpolation as a polyline, or clear it with None."""
        if points is None or len(points) == 0:
            self.path.setData([], [])
        else:
            self.path.setData(points[:, 0], points[:, 1])

    # Internals ------------------------------------------------------------------------------

    def _draw_heatmap(self, frame: PlaneFrame) -> None:
        heat = frame.heatmap
        rows, cols = heat.shape
        # Grid points include both ends, so each pixel extends half a cell beyond them.
        dx = (frame.xlim[1] - frame.xlim[0]) / (cols - 1)
        dy = (frame.ylim[1] - frame.ylim[0]) / (rows - 1)
        if frame.heat_is_probability:
            levels = (0.0, 1.0)
        else:
            low, high = float(np.nanmin(heat)), float(np.nanmax(heat))
            levels = (low, high if high > low else low + 1e-6)
        self.heat_image.setImage(heat, autoLevels=False)
        self.heat_image.setRect(QRectF(frame.xlim[0] - dx / 2, frame.ylim[0] - dy / 2, cols * dx, rows * dy))
        self.color_bar.setLevels(levels)
        if frame.heat_label != self._heat_label:   # a new label lays the bar out again
            self._heat_label = frame.heat_label
            self.color_bar.getAxis("left").setLabel(frame.heat_label)

    def _set_heat_visible(self, visible: bool) -> None:
        self.heat_image.setVisible(visible)
        self.color_bar.setVisible(visible)

    def _on_toggled(self, _checked: bool) -> None:
        toggles = self.toggles
        self.real_item.setVisible(toggles["real"].isChecked())
        self.fake_item.setVisible(toggles["generated"].isChecked())
        self._set_heat_visible(toggles["heatmap"].isChecked())
        self.arrows.setVisible(toggles["arrows"].isChecked())
        self.manifold.setVisible(toggles["manifold"].isChecked())
        self.layers_changed.emit(self.enabled_layers())
