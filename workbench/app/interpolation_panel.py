"""Latent interpolation: pick two endpoints, see the frames as a strip and an animation, export them.

Endpoints are two cells of the sample grid (their fixed-noise latents), or two
seeds. The frames come from a CPU copy of the generator in eval mode, taken by
the training thread between steps, or from a run folder's checkpoint, and are
computed in :class:`InterpolationJob`, off the GUI thread. For 2D data the
frames are points, drawn as a path on the scatter by the owner.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QPushButton, QSpinBox,
    QVBoxLayout, QWidget,
)

from workbench.app.snapshot_job import SnapshotJob
from workbench.app.live_analysis import SnapshotSource

logger = logging.getLogger(__name__)

GRID_PADDING = 2          # torchvision make_grid's padding, as workbench.core.render uses it
DEFAULT_FRAMES = 10
DEFAULT_FPS = 10.0
CLOSE_TIMEOUT_MS = 10_000


# Sample grid geometry ------------------------------------------------------------------------

def grid_padding(count: int) -> int:
    """Return the padding of a make_grid image of ``count`` tiles; a single image is returned unpadded."""
    return 0 if count == 1 else GRID_PADDING


def grid_layout(count: int, grid_shape: tuple[int, int]) -> tuple[int, int, float, float]:
    """Return (columns, rows, cell width, cell height) of a make_grid image of ``count`` tiles.

    make_grid puts ``nrow = ceil(sqrt(count))`` tiles in a row and ``padding``
    pixels before each tile and after the last, so a cell is a tile plus its
    leading padding.
    """
    padding = grid_padding(count)
    columns = min(max(1, math.ceil(math.sqrt(count))), count)
    rows = math.ceil(count / columns)
    height, width = grid_shape
    tile_w = (width - padding) / columns - padding
    tile_h = (height - padding) / rows - padding
    return columns, rows, tile_w + padding, tile_h + padding


def grid_cell_at(x: float, y: float, count: int, grid_shape: tuple[int, int]) -> int | None:
    """Return the index of the tile under image pixel (x, y), or None outside the tiles."""
    columns, rows, cell_w, cell_h = grid_layout(count, grid_shape)
    height, width = grid_shape
    if not (0 <= x < width and 0 <= y < height):
        return None
    column = min(int(x // cell_w), columns - 1)
    row = min(int(y // cell_h), rows - 1)
    index = row * columns + column
    return index if index < count else None


def grid_tile(grid: np.ndarray, index: int, count: int) -> np.ndarray:
    """Return tile ``index`` (h, w, C) of a make_grid image of ``count`` tiles."""
    padding = grid_padding(count)
    columns, _, cell_w, cell_h = grid_layout(count, grid.shape[:2])
    row, column = divmod(index, columns)
    top = int(round(row * cell_h)) + padding
    left = int(round(column * cell_w)) + padding
    h, w = int(round(cell_h)) - padding, int(round(cell_w)) - padding
    return grid[top:top + h, left:left + w]


class GridPicker(QObject):
    """Report clicks on a SamplesView's grid image as tile indices.

    ``count`` must be set to the number of tiles (the fixed noise batch size).
    """

    cell_clicked = Signal(int)

    def __init__(self, samples_view, parent=None):
        super().__init__(parent)
        self.samples_view = samples_view
        self.count = 0
        samples_view.image_widget.scene().sigMouseClicked.connect(self._on_clicked)

    def cell_at_scene(self, scene_pos) -> int | None:
        image = self.samples_view.current_image()
        if image is None or self.count <= 0:
            return None
        point = self.samples_view.image_item.mapFromScene(scene_pos)
        return grid_cell_at(point.x(), point.y(), self.count, image.shape[:2])

    def _on_clicked(self, event) -> None:
        index = self.cell_at_scene(event.scenePos())
        if index is not None:
            self.cell_clicked.emit(index)


# The computation -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Endpoints:
    """Either two fixed-noise indices (``mode`` "cells") or two seeds (``mode`` "seeds")."""

    mode: str
    first: int
    second: int


@dataclass(frozen=True)
class InterpolationResult:
    """Frames (F, H, W, C) uint8 for images, or points (F, 2) for 2D data, with their latents (F, z_dim)."""

    step: int
    latents: np.ndarray
    frames: np.ndarray | None = None
    points: np.ndarray | None = None


class InterpolationJob(SnapshotJob):
    """Generate the frames of one interpolation in this thread."""

    succeeded = Signal(object)   # InterpolationResult
    failed = Signal(str)

    def __init__(self, source: SnapshotSource, endpoints: Endpoints, frames: int, method: str, parent=None):
        super().__init__(source, parent)
        self.endpoints, self.frames, self.method = endpoints, frames, method

    def run(self) -> None:
        import torch

        from workbench.app.live_analysis import images_to_uint8
        from workbench.core.interpolate import interpolation_path

        try:
            snapshot = self.obtain_snapshot()
            if snapshot is None:
                return
            z0, z1 = self._endpoints(snapshot)
            path = interpolation_path(z0, z1, self.frames, self.method)   # (F, z_dim)
            with torch.no_grad():
                output = snapshot.generator(path)
            latents = path.numpy()
            if snapshot.is_image:
                result = InterpolationResult(snapshot.step, latents, frames=images_to_uint8(output))
            else:
                result = InterpolationResult(snapshot.step, latents, points=output.double().numpy())
            self.succeeded.emit(result)
        except (ValueError, OSError, RuntimeError) as error:
            logger.error("interpolation failed: %s", error)
            self.failed.emit(str(error))

    def _endpoints(self, snapshot):
        from workbench.core.interpolate import latents_from_seed
        from workbench.core.validation import ConfigError

        ends = self.endpoints
        if ends.mode == "seeds":
            return (latents_from_seed(ends.first, 1, snapshot.z_dim)[0],
                    latents_from_seed(ends.second, 1, snapshot.z_dim)[0])
        count = len(snapshot.fixed_noise)
        for index in (ends.first, ends.second):
            if not 0 <= index < count:
                raise ConfigError("endpoints", f"sample {index} does not exist; the grid has samples 0 to {count - 1}")
        return snapshot.fixed_noise[ends.first].float(), snapshot.fixed_noise[ends.second].float()


# The panel -----------------------------------------------------------------------------------

class InterpolationPanel(QWidget):
    """Controls, strip, animation and export of a latent interpolation.

    The owner calls :meth:`set_live_provider` and :meth:`set_run_dir` as for
    the FID panel, :meth:`select_cell` when a grid cell is clicked, and
    connects ``path_ready`` to the scatter for 2D data.
    """

    path_ready = Signal(object)   # (F, 2) points of a 2D interpolation

    def __init__(self, parent=None):
        super().__init__(parent)
        self.job: InterpolationJob | None = None
        self.result: InterpolationResult | None = None
        self._live_provider = None
        self._run_dir: str | None = None
        self._next_cell = 0   # which endpoint the next grid click sets
        self._frame_index = 0
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._on_tick)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(self._build_form())
        layout.addLayout(self._build_buttons())
        self.status_label = QLabel("Click two cells of the sample grid, or pick two seeds.")
        self.status_label.setWordWrap(True)
        layout.addWidget(self.status_label)
        layout.addWidget(self._build_views(), stretch=1)
        self._update_buttons()

    def _build_form(self) -> QFormLayout:
        self.mode_combo = QComboBox()
        self.mode_combo.addItem("Two cells of the sample grid", "cells")
        self.mode_combo.addItem("Two seeds", "seeds")
        self.first_spin, self.second_spin = QSpinBox(), QSpinBox()
        for spin, value in ((self.first_spin, 0), (self.second_spin, 1)):
            spin.setRange(0, 2**31 - 1)
            spin.setValue(value)
            spin.setToolTip("Grid cell index (row by row from 0) or noise seed, depending on the endpoints")
        ends = QHBoxLayout()
        ends.addWidget(QLabel("A"))
        ends.addWidget(self.first_spin)
        ends.addWidget(QLabel("B"))
        ends.addWidget(self.second_spin)
        self.method_combo = QComboBox()
        self.method_combo.addItem("spherical (slerp)", "slerp")
        self.method_combo.addItem("linear", "linear")
        self.frames_spin = QSpinBox()
        self.frames_spin.setRange(2, 512)
        self.frames_spin.setValue(DEFAULT_FRAMES)
        self.fps_spin = QDoubleSpinBox()
        self.fps_spin.setRange(0.5, 50.0)
        self.fps_spin.setValue(DEFAULT_FPS)
        self.fps_spin.setSuffix(" frames/s")
        self.fps_spin.valueChanged.connect(self._on_fps_changed)
        form = QFormLayout()
        form.addRow("Endpoints", self.mode_combo)
        form.addRow("", ends)
        form.addRow("Method", self.method_combo)
        form.addRow("Frames", self.frames_spin)
        form.addRow("Playback", self.fps_spin)
        return form

    def _build_buttons(self) -> QHBoxLayout:
        self.run_button = QPushButton("Interpolate")
        self.run_button.clicked.connect(self.start)
        self.random_button = QPushButton("Random seeds")
        self.random_button.clicked.connect(self._on_random)
        self.play_button = QPushButton("Play")
        self.play_button.clicked.connect(self._on_play)
        self.png_button = QPushButton("PNG strip...")
        self.png_button.clicked.connect(self._on_export_png)
        self.gif_button = QPushButton("GIF...")
        self.gif_button.clicked.connect(self._on_export_gif)
        row = QHBoxLayout()
        for button in (self.run_button, self.random_button, self.play_button, self.png_button, self.gif_button):
            row.addWidget(button)
        return row

    def _build_views(self) -> QWidget:
        self.views = pg.GraphicsLayoutWidget()
        self.frame_box = self.views.addViewBox(lockAspect=True, invertY=True, enableMouse=False)
        self.frame_item = pg.ImageItem(axisOrder="row-major")
        self.frame_box.addItem(self.frame_item)
        self.views.nextRow()
        self.strip_box = self.views.addViewBox(lockAspect=True, invertY=True, enableMouse=True)
        self.strip_item = pg.ImageItem(axisOrder="row-major")
        self.strip_box.addItem(self.strip_item)
        self.views.ci.layout.setRowStretchFactor(0, 3)
        return self.views

    # Context from the window ----------------------------------------------------------------

    def set_live_provider(self, provider) -> None:
        self._live_provider = provider

    def set_run_dir(self, run_dir: str | Path | None) -> None:
        self._run_dir = None if run_dir is None else str(run_dir)

    def select_cell(self, index: int) -> None:
        """Set endpoint A, then B, then A again, from clicked grid cells."""
        self.mode_combo.setCurrentIndex(self.mode_combo.findData("cells"))
        spin = self.first_spin if self._next_cell == 0 else self.second_spin
        spin.setValue(index)
        self._next_cell = 1 - self._next_cell
        self.status_label.setText(f"Endpoints: cells {self.first_spin.value()} and {self.second_spin.value()}.")

    # Running --------------------------------------------------------------------------------

    def endpoints(self) -> Endpoints:
        return Endpoints(self.mode_combo.currentData(), self.first_spin.value(), self.second_spin.value())

    def start(self) -> bool:
        """Compute the interpolation in a job; return False when one runs or no generator is available."""
        if self.job is not None:
            return False
        future = self._live_provider() if self._live_provider is not None else None
        if future is None and not self._run_dir:
            self.status_label.setText("No generator: start a run, or finish one that saved a checkpoint.")
            return False
        source = SnapshotSource(future, self._run_dir, load_data=False)
        job = InterpolationJob(source, self.endpoints(), self.frames_spin.value(), self.method_combo.currentData(),
                               self)
        job.succeeded.connect(self._on_succeeded)
        job.failed.connect(self._on_failed)
        job.finished.connect(self._on_job_finished)
        self.job = job
        self.status_label.setText("Interpolating...")
        job.start()
        self._update_buttons()
        return True

    def shutdown(self) -> None:
        """Stop the animation and wait for a running job (the window is closing)."""
        self.timer.stop()
        job, self.job = self.job, None
        if job is not None:
            job.cancel()
            job.wait(CLOSE_TIMEOUT_MS)
            job.deleteLater()

    def frame_count(self) -> int:
        if self.result is None:
            return 0
        data = self.result.frames if self.result.frames is not None else self.result.points
        return len(data)

    # Export ---------------------------------------------------------------------------------

    def export_png(self, path: str | Path) -> Path:
        """Write the frames side by side as one PNG; raise ValueError without image frames."""
        from workbench.core.interpolate import save_strip_png

        return save_strip_png(self._image_frames(), path)

    def export_gif(self, path: str | Path) -> Path:
        """Write the frames as a looping GIF at the playback speed."""
        from workbench.core.interpolate import save_gif

        return save_gif(self._image_frames(), path, self.fps_spin.value())

    def _image_frames(self) -> np.ndarray:
        if self.result is None or self.result.frames is None:
            raise ValueError("there are no image frames to export; run an interpolation on image data first")
        return self.result.frames

    # Slots ----------------------------------------------------------------------------------

    def _on_succeeded(self, result: InterpolationResult) -> None:
        self.result = result
        self._frame_index = 0
        if result.frames is not None:
            frames = result.frames[..., 0] if result.frames.shape[-1] == 1 else result.frames
            self.strip_item.setImage(np.concatenate(list(frames), axis=1), autoLevels=False, levels=(0, 255))
            self.strip_box.autoRange(padding=0)
            self._show_frame(0)
            self.frame_box.autoRange(padding=0)
            self.status_label.setText(f"{len(frames)} frames at step {result.step}.")
        else:
            self.strip_item.clear()
            self.frame_item.clear()
            self.path_ready.emit(result.points)
            self.status_label.setText(f"{len(result.points)} points at step {result.step}, drawn on the scatter.")
        self._update_buttons()

    def _on_failed(self, message: str) -> None:
        self.status_label.setText(f"Interpolation failed: {message}")

    def _on_job_finished(self) -> None:
        job, self.job = self.job, None
        if job is not None:
            job.deleteLater()
        self._update_buttons()

    def _on_random(self) -> None:
        self.mode_combo.setCurrentIndex(self.mode_combo.findData("seeds"))
        self.first_spin.setValue(random.randrange(2**31))
        self.second_spin.setValue(random.randrange(2**31))

    def _on_play(self) -> None:
        if self.timer.isActive():
            self.timer.stop()
        elif self.result is not None and self.result.frames is not None:
            self.timer.start(int(1000 / self.fps_spin.value()))
        self._update_buttons()

    def _on_fps_changed(self, fps: float) -> None:
        if self.timer.isActive():
            self.timer.setInterval(int(1000 / fps))

    def _on_tick(self) -> None:
        self._frame_index = (self._frame_index + 1) % self.frame_count()
        self._show_frame(self._frame_index)

    def _show_frame(self, index: int) -> None:
        frame = self.result.frames[index]
        self.frame_item.setImage(frame[..., 0] if frame.shape[-1] == 1 else frame, autoLevels=False, levels=(0, 255))

    def _on_export_png(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save frames as a PNG strip", "interpolation.png",
                                              "PNG images (*.png)")
        if path:
            self.export_png(path)

    def _on_export_gif(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save frames as a GIF", "interpolation.gif", "GIF images (*.gif)")
        if path:
            self.export_gif(path)

    def _update_buttons(self) -> None:
        has_images = self.result is not None and self.result.frames is not None
        self.run_button.setEnabled(self.job is None)
        self.play_button.setEnabled(has_images)
        self.play_button.setText("Stop" if self.timer.isActive() else "Play")
        self.png_button.setEnabled(has_images)
        self.gif_button.setEnabled(has_images)
