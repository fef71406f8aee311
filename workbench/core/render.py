"""Turn generator output into pictures: image grids and 2D scatter plots (Pillow only)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid

from workbench.core.runs import atomic_write_bytes

GRID_PADDING = 2


def image_grid(images: torch.Tensor, nrow: int | None = None) -> np.ndarray:
    """Return a (H, W, 3) uint8 grid of images given in [-1, 1], shape (N, C, S, S)."""
    nrow = nrow or max(1, int(math.ceil(math.sqrt(images.shape[0]))))
    display = ((images.detach().float().cpu() + 1.0) / 2.0).clamp(0.0, 1.0)
    grid = make_grid(display, nrow=nrow, padding=GRID_PADDING, pad_value=0.0)  # (3, H, W): gray input is repeated
    return (grid.mul(255.0).add(0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy())


# Scatter palette: background, axes, real points, generated points.
SCATTER_PALETTE = np.array([(255, 255, 255), (225, 225, 225), (150, 150, 150), (230, 110, 20)], dtype=np.uint8)
_AXES, _REAL, _FAKE = 1, 2, 3


def _disk_offsets(radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Return the (dy, dx) pixel offsets within ``radius`` of a pixel centre."""
    reach = int(math.floor(radius))
    dy, dx = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    inside = dx * dx + dy * dy <= radius * radius
    return dy[inside], dx[inside]


def scatter_indices(real: np.ndarray, fake: np.ndarray, size: int = 480, limit: float | None = None) -> np.ndarray:
    """Return a (size, size) uint8 scatter of real and generated 2D points as indices into SCATTER_PALETTE.

    The view spans [-limit, limit] on both axes with y pointing up, and ``limit``
    defaults to 1.25 times the largest absolute real coordinate. Real points are
    disks of radius 1.5 pixels. Generated points are disks of radius 2, drawn
    over the real ones. Points that are not finite are left out, and disks are
    cut at the border.
    """
    if limit is None:
        extent = np.abs(real).max() if real.size else 1.0
        limit = float(extent) * 1.25 + 1e-6
    picture = np.zeros((size, size), dtype=np.uint8)
    center = size // 2
    picture[center, :] = _AXES
    picture[:, center] = _AXES
    scale = size / 2
    for points, index, radius in ((real, _REAL, 1.5), (fake, _FAKE, 2.0)):
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        points = points[np.isfinite(points).all(axis=1)]
        # Pixel centres, clipped to a margin first so that far-away points cannot overflow the integers.
        columns = np.floor(np.clip((points[:, 0] / limit + 1.0) * scale, -4, size + 4)).astype(np.int64)
        rows = np.floor(np.clip((1.0 - points[:, 1] / limit) * scale, -4, size + 4)).astype(np.int64)
        dy, dx = _disk_offsets(radius)
        all_rows = (rows[:, None] + dy[None, :]).ravel()
        all_columns = (columns[:, None] + dx[None, :]).ravel()
        keep = (all_rows >= 0) & (all_rows < size) & (all_columns >= 0) & (all_columns < size)
        picture[all_rows[keep], all_columns[keep]] = index
    return picture


def scatter_image(real: np.ndarray, fake: np.ndarray, size: int = 480, limit: float | None = None) -> np.ndarray:
    """Return a (size, size, 3) uint8 RGB scatter of real (gray) and generated (orange) 2D points."""
    return SCATTER_PALETTE[scatter_indices(real, fake, size, limit)]


def save_scatter_png(real: np.ndarray, fake: np.ndarray, path: Path, size: int = 480) -> None:
    """Write the scatter of :func:`scatter_indices` as a palette PNG, atomically.

    A palette image encodes in about a tenth of the time of the RGB one (0.7 ms
    instead of 6 ms at 480 x 480, measured on a 2-core EPYC), which matters
    because training writes one every ``sample_every`` steps.
    """
    picture = Image.frombytes("P", (size, size), scatter_indices(real, fake, size).tobytes())
    picture.putpalette(SCATTER_PALETTE.ravel().tolist())
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=3)
    atomic_write_bytes(Path(path), buffer.getvalue())


def save_png(array: np.ndarray, path: Path) -> None:
    """Write a (H, W, 3) uint8 array as a PNG, atomically."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    atomic_write_bytes(Path(path), buffer.getvalue())
