"""Turn generator output into pictures: image grids and 2D scatter plots (Pillow only)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torchvision.utils import make_grid

from workbench.core.runs import atomic_write_bytes

GRID_PADDING = 2


def image_grid(images: torch.Tensor, nrow: int | None = None) -> np.ndarray:
    """Return a (H, W, 3) uint8 grid of images given in [-1, 1], shape (N, C, S, S)."""
    nrow = nrow or max(1, int(math.ceil(math.sqrt(images.shape[0]))))
    display = ((images.detach().float().cpu() + 1.0) / 2.0).clamp(0.0, 1.0)
    grid = make_grid(display, nrow=nrow, padding=GRID_PADDING, pad_value=0.0)  # (3, H, W): gray input is repeated
    return (grid.mul(255.0).add(0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy())


def scatter_image(real: np.ndarray, fake: np.ndarray, size: int = 480, limit: float | None = None) -> np.ndarray:
    """Return a (size, size, 3) uint8 scatter of real (gray) and generated (orange) 2D points."""
    if limit is None:
        extent = np.abs(real).max() if real.size else 1.0
        limit = float(extent) * 1.25 + 1e-6
    picture = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(picture)
    center = size / 2
    draw.line([(0, center), (size, center)], fill=(225, 225, 225))
    draw.line([(center, 0), (center, size)], fill=(225, 225, 225))

    def to_pixels(points: np.ndarray) -> np.ndarray:
        xy = np.empty_like(points, dtype=np.float64)
        xy[:, 0] = (points[:, 0] / limit + 1.0) * center
        xy[:, 1] = (1.0 - points[:, 1] / limit) * center
        return xy

    for points, color, radius in ((real, (150, 150, 150), 1.5), (fake, (230, 110, 20), 2.0)):
        finite = points[np.isfinite(points).all(axis=1)]
        for x, y in to_pixels(finite):
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=color)
    return np.asarray(picture)


def save_png(array: np.ndarray, path: Path) -> None:
    """Write a (H, W, 3) uint8 array as a PNG, atomically."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    atomic_write_bytes(Path(path), buffer.getvalue())
