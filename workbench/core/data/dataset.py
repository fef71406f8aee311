"""In-memory image datasets and the conversions between pixel and model ranges."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# ITU-R 601-2 luma weights, the ones Pillow's convert("L") uses.
_LUMA_WEIGHTS = (0.299, 0.587, 0.114)
# Images resized per chunk, so a float copy of a whole dataset is never held at once.
_RESIZE_CHUNK = 4096


class ImageDataset:
    """A whole image dataset held in memory as uint8.

    Attributes
    ----------
    images : torch.Tensor
        (N, C, H, W) uint8, CPU, contiguous.
    labels : torch.Tensor or None
        (N,) int64 class indices into ``class_names``.
    class_names : list of str or None
    skipped : list of (Path, str)
        Files that could not be read and the reason for each.
    name : str
        Short name for logs and titles, such as ``"mnist"`` or ``"folder:faces"``.
    """

    kind = "images"

    def __init__(
        self,
        images: torch.Tensor | np.ndarray,
        labels: torch.Tensor | np.ndarray | list[int] | None,
        class_names: list[str] | None,
        name: str,
        skipped: list[tuple[Path, str]] | None = None,
    ):
        images = torch.as_tensor(images)
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"images must be a uint8 tensor of shape (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        self.images = images.contiguous()
        self.labels = None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        if self.labels is not None and self.labels.shape != (len(images),):
            raise ValueError(f"{len(images)} images but labels of shape {tuple(self.labels.shape)}")
        self.class_names = class_names
        self.name = name
        self.skipped = list(skipped or [])

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.images.shape[1:])

    def __len__(self) -> int:
        return self.images.shape[0]

    def __repr__(self) -> str:
        return f"ImageDataset({self.name!r}, {len(self)} images of shape {self.shape})"


def to_model_range(images_uint8: torch.Tensor) -> torch.Tensor:
    """Map pixel values 0-255 to float32 in [-1, 1] as ``x / 127.5 - 1``."""
    return images_uint8.to(torch.float32) / 127.5 - 1.0


def to_display_range(x: torch.Tensor) -> torch.Tensor:
    """Map model outputs in [-1, 1] to [0, 1] as ``(x + 1) / 2``, clamping values outside."""
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert (N, C, H, W) uint8 images between grayscale (1) and RGB (3).

    Grayscale to RGB repeats the channel. RGB to grayscale uses ITU-R 601-2
    luma, rounded to the nearest integer.
    """
    if images.shape[1] == channels:
        return images
    if channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    weights = torch.tensor(_LUMA_WEIGHTS, dtype=torch.float32).view(1, 3, 1, 1)
    luma = (images.to(torch.float32) * weights).sum(dim=1, keepdim=True)
    return luma.round().clamp(0, 255).to(torch.uint8)


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Center-crop (N, C, H, W) uint8 images to a square and resize them to ``size``.

    The filter is bicubic, antialiased when downscaling, as Pillow's is.
    """
    height, width = images.shape[-2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    images = images[..., top : top + side, left : left + side]
    if side == size:
        return images.contiguous()
    chunks = []
    for start in range(0, len(images), _RESIZE_CHUNK):
        chunk = images[start : start + _RESIZE_CHUNK].to(torch.float32)
        resized = F.interpolate(chunk, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
        chunks.append(resized.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(chunks).contiguous()
