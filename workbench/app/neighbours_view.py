"""Nearest training images of a generated sample, to tell memorisation from generalisation.

A click on a grid cell selects the sample. The search runs in a job thread,
in the domain classifier's feature space when a classifier for the data set
is cached (the FID domain extractor or the coverage monitor trains one), and
in pixel space otherwise, and the label names the space used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSpinBox, QVBoxLayout, QWidget

from workbench.app.snapshot_job import SnapshotJob
from workbench.app.live_analysis import SnapshotSource

logger = logging.getLogger(__name__)

DEFAULT_K = 5
FEATURE_BATCH = 500        # training images per forward pass of the domain classifier
STRIP_GAP = 4              # pixels between the query and its neighbours in the strip
CLOSE_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class NeighboursResult:
    """The query tile, its k nearest training images (k, H, W, C) uint8, their indices and distances."""

    query: np.ndarray
    images: np.ndarray
    indices: np.ndarray
    distances: np.ndarray
    space: str          # "domain features" or "pixels"


def query_tensor(tile: np.ndarray, channels: int):
    """Convert a grid tile (h, w, 3) uint8 to a (1, channels, h, w) float tensor in [-1, 1]."""
    import torch

    pixels = tile[..., :channels] if channels < tile.shape[-1] else tile
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None].float() / 127.5 - 1.0


class NeighboursJob(SnapshotJob):
    """Find the k training images nearest to a query tile."""

    succeeded = Signal(object)   # NeighboursResult
    failed = Signal(str)

    def __init__(self, source: SnapshotSource, tile: np.ndarray, k: int, cache_dir=None, parent=None):
        super().__init__(source, parent)
        self.tile, self.k, self.cache_dir = tile, k, cache_dir

    def run(self) -> None:
        try:
            snapshot = self.obtain_snapshot()
            if snapshot is None:
                return
            if not snapshot.is_image:
                raise ValueError("nearest neighbours need image data; this run trains on 2D points")
            self.succeeded.emit(self._search(snapshot.dataset))
        except (ValueError, OSError, RuntimeError) as error:
            logger.error("nearest-neighbour search failed: %s", error)
            self.failed.emit(str(error))

    def _search(self, dataset) -> NeighboursResult:
        import torch

        from workbench.core.analysis import nearest_neighbours

        images = dataset.images   # (N, C, H, W) uint8
        query = query_tensor(self.tile, images.shape[1])
        extractor = self._extractor(dataset)
        with torch.no_grad():
            if extractor is None:
                train = images.flatten(1).float() / 127.5 - 1.0
                query_features, space = query.flatten(1), "pixels"
            else:
                train = torch.cat([extractor(images[start:start + FEATURE_BATCH].float() / 127.5 - 1.0)
                                   for start in range(0, len(images), FEATURE_BATCH)])
                query_features, space = extractor(query), "domain features"
        indices, distances = nearest_neighbours(query_features, train, self.k)
        found = images[torch.from_numpy(indices[0])].permute(0, 2, 3, 1).numpy()
        return NeighboursResult(self.tile, found, indices[0], distances[0], space)

    def _extractor(self, dataset):
        from workbench.core.fid import domain

        if getattr(dataset, "labels", None) is None or not domain.classifier_path(dataset, self.cache_dir).is_file():
            return None
        return domain.load_or_train(dataset, self.cache_dir)


class NeighboursView(QWidget):
    """The selected sample and its k nearest training images, nearest first."""

    def __init__(self, cache_dir=None, parent=None):
        super().__init__(parent)
        self.cache_dir = cache_dir
        self.job: NeighboursJob | None = None
        self.result: NeighboursResult | None = None
        self._live_provider = None
        self._run_dir: str | None = None
        self._pending: tuple[np.ndarray, int | None] | None = None
        self.k_spin = QSpinBox()
        self.k_spin.setRange(1, 64)
        self.k_spin.setValue(DEFAULT_K)
        self.k_spin.setToolTip("Number of training images shown")
        self.label = QLabel("Click a cell of the sample grid to find its nearest training images.")
        self.label.setWordWrap(True)
        self.view = pg.GraphicsLayoutWidget()
        self.box = self.view.addViewBox(lockAspect=True, invertY=True)
        self.strip_item = pg.ImageItem(axisOrder="row-major")
        self.box.addItem(self.strip_item)
        top = QHBoxLayout()
        top.addWidget(QLabel("Neighbours"))
        top.addWidget(self.k_spin)
        top.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(top)
        layout.addWidget(self.label)
        layout.addWidget(self.view, stretch=1)

    def set_live_provider(self, provider) -> None:
        self._live_provider = provider

    def set_run_dir(self, run_dir) -> None:
        self._run_dir = None if run_dir is None else str(run_dir)

    def search(self, tile: np.ndarray, index: int | None = None) -> bool:
        """Search for a grid tile (h, w, 3) uint8; return False without a source.

        While a search runs, the latest request waits and starts when it ends.
        """
        if self.job is not None:
            self._pending = (tile, index)
            return True
        future = self._live_provider() if self._live_provider is not None else None
        if future is None and not self._run_dir:
            self.label.setText("No training data: start a run, or finish one that saved a checkpoint.")
            return False
        job = NeighboursJob(SnapshotSource(future, self._run_dir), tile, self.k_spin.value(), self.cache_dir, self)
        job.succeeded.connect(self._on_succeeded)
        job.failed.connect(lambda message: self.label.setText(f"Search failed: {message}"))
        job.finished.connect(self._on_job_finished)
        self.job = job
        self.label.setText("Searching..." if index is None else f"Searching for sample {index}...")
        job.start()
        return True

    @property
    def busy(self) -> bool:
        """Whether a search runs or waits to run."""
        return self.job is not None or self._pending is not None

    def shutdown(self) -> None:
        self._pending = None
        job, self.job = self.job, None
        if job is not None:
            job.cancel()
            job.wait(CLOSE_TIMEOUT_MS)
            job.deleteLater()

    def _on_succeeded(self, result: NeighboursResult) -> None:
        self.result = result
        height = result.query.shape[0]
        images = result.images
        if images.shape[-1] == 1:
            images = np.repeat(images, 3, axis=-1)
        gap = np.full((height, STRIP_GAP, 3), 255, dtype=np.uint8)
        pieces = [result.query[..., :3], gap] + [image[:height] for image in images]
        self.strip_item.setImage(np.concatenate(pieces, axis=1), autoLevels=False, levels=(0, 255))
        self.box.autoRange(padding=0)
        distances = ", ".join(f"{d:.3g}" for d in result.distances)
        self.label.setText(f"Left: the sample. Right: its {len(result.distances)} nearest training images in "
                           f"{result.space} (distances {distances}). A distance near 0 means a copy.")

    def _on_job_finished(self) -> None:
        job, self.job = self.job, None
        if job is not None:
            job.deleteLater()
        if self._pending is not None:
            tile, index = self._pending
            self._pending = None
            self.search(tile, index)
