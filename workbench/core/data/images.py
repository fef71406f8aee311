"""Decode a folder of image files into one uint8 array.

Every image is converted to 8-bit grayscale ("L") or RGB, center-cropped to a
square and resized with Pillow's antialiased bicubic filter. Conversion rules:

- Transparent images (RGBA, LA, palette images with a transparent colour) are
  composited on black, so a transparent pixel becomes 0 and a pixel of alpha
  ``a`` keeps ``a / 255`` of its value.
- 16-bit grayscale ("I;16" and variants) is scaled to 8 bits as
  ``round(v * 255 / 65535)``, so 65535 maps to 255 and 32768 to 128.
- CMYK, YCbCr, LAB and HSV go through Pillow's conversion to RGB.
- Colour to grayscale uses Pillow's ITU-R 601-2 luma, L = (299 R + 587 G + 114 B) / 1000.
- The EXIF orientation tag is applied, and animated files give their first frame.

Files that cannot be decoded (zero bytes, truncated, not an image) are skipped
and returned with the reason. Hidden files and folders (name starting with a
dot) are ignored.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from workbench.core.validation import ConfigError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_TO_RGB_MODES = ("CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGB")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
# Maximum number of skipped paths written into the log warning; ImageDataset.skipped has all.
_MAX_LOGGED_SKIPS = 20


class UnreadableImage(Exception):
    """An image file that cannot be decoded or converted; the message gives the reason."""


def find_image_files(root: Path) -> list[Path]:
    """Return the image files under ``root``, searched recursively, sorted by path.

    The extension match is case-insensitive. Hidden files and folders are ignored.
    """
    found = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for name in names:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(Path(folder, name))
    return sorted(found)


def folder_class_labels(root: Path, files: list[Path]) -> tuple[list[int] | None, list[str] | None]:
    """Return per-file labels and sorted class names from first-level subfolders.

    Labels exist only when every file sits directly in a subfolder of ``root``
    and there are at least 2 such subfolders. Otherwise both values are None.
    """
    parents = []
    for path in files:
        relative = path.relative_to(root)
        if len(relative.parts) != 2:
            return None, None
        parents.append(relative.parts[0])
    class_names = sorted(set(parents))
    if len(class_names) < 2:
        return None, None
    index = {name: i for i, name in enumerate(class_names)}
    return [index[name] for name in parents], class_names


def _open_image(path: Path, size: int) -> Image.Image:
    image = None
    try:
        image = Image.open(path)
        # JPEG only: let libjpeg decode at 1/2, 1/4 or 1/8 scale while both sides stay >= size.
        image.draft(None, (size, size))
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
    except Exception as exc:  # noqa: BLE001 - Pillow's parsers raise many types on bad files
        if image is not None:
            image.close()
        raise UnreadableImage(f"{type(exc).__name__}: {exc}") from exc
    return image


def _composite_on_black(values: np.ndarray) -> np.ndarray:
    """Multiply the colour channels by alpha / 255, rounded; the last channel is alpha."""
    colour = values[..., :-1].astype(np.uint32)
    alpha = values[..., -1:].astype(np.uint32)
    return ((colour * alpha + 127) // 255).astype(np.uint8)


def _high_bit_depth_to_8bit(image: Image.Image) -> Image.Image:
    values = np.asarray(image)
    if image.mode == "F":
        # NOTE: float images carry no range; [0, 1] is assumed when the maximum is <= 1,
        # otherwise [0, 255]. Values outside the range are clipped.
        scale = 255.0 if values.size and float(np.nanmax(values)) <= 1.0 else 1.0
        return Image.fromarray(np.clip(np.nan_to_num(values) * scale, 0, 255).round().astype(np.uint8))
    # NOTE: 32-bit "I" images (PNG never, some TIFFs) are assumed to hold 16-bit values
    # and are clipped to [0, 65535] before scaling, like "I;16".
    values = np.clip(values.astype(np.int64), 0, 65535)
    return Image.fromarray(((values + 128) // 257).astype(np.uint8))


def _to_l_or_rgb(image: Image.Image) -> Image.Image:
    """Return ``image`` as 8-bit "L" or "RGB", with any transparency composited on black."""
    mode = image.mode
    # PNG's tRNS chunk makes one grey value, colour or palette entry transparent.
    transparent = "transparency" in image.info
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        return _high_bit_depth_to_8bit(image)
    if mode in ("1", "L") and not transparent:
        return image.convert("L")
    if mode in _TO_RGB_MODES + ("P",) and not transparent:
        return image.convert("RGB")
    if mode in ("1", "L", "LA", "La"):
        return Image.fromarray(_composite_on_black(np.asarray(image.convert("LA")))[..., 0])
    if mode in ("RGB", "RGBA", "RGBa", "PA", "P"):
        return Image.fromarray(_composite_on_black(np.asarray(image.convert("RGBA"))))
    raise UnreadableImage(f"unsupported image mode {mode!r}")


def _crop_and_resize(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    box = (left, top, left + side, top + side)
    if side == size:
        return image.crop(box)
    return image.resize((size, size), Image.Resampling.BICUBIC, box=box)


def decode_image(path: Path, size: int, channels: int) -> np.ndarray:
    """Decode one file into a (channels, size, size) uint8 array.

    Raises
    ------
    UnreadableImage
        When Pillow cannot open or fully decode the file, or its mode is unsupported.
    """
    with _open_image(path, size) as image:
        try:
            converted = _to_l_or_rgb(image).convert("L" if channels == 1 else "RGB")
        except (ValueError, OSError) as exc:
            raise UnreadableImage(f"cannot convert {image.mode!r} image: {exc}") from exc
    values = np.asarray(_crop_and_resize(converted, size))
    if channels == 1:
        return values[None]
    return values.transpose(2, 0, 1)


def _decode_or_reason(path: Path, size: int, channels: int) -> np.ndarray | str:
    try:
        return decode_image(path, size, channels)
    except UnreadableImage as exc:
        return str(exc)


def _log_skipped(skipped: list[tuple[Path, str]], total: int) -> None:
    if not skipped:
        return
    lines = [f"{path}: {reason}" for path, reason in skipped[:_MAX_LOGGED_SKIPS]]
    if len(skipped) > _MAX_LOGGED_SKIPS:
        lines.append(f"... and {len(skipped) - _MAX_LOGGED_SKIPS} more")
    logger.warning("skipped %d of %d image files that cannot be read:\n  %s", len(skipped), total, "\n  ".join(lines))


def decode_images(files: list[Path], size: int, channels: int, workers: int | None = None):
    """Decode ``files`` on a thread pool; Pillow releases the GIL while it decodes and resizes.

    Returns the (N, C, size, size) uint8 array of the readable files, the
    indices into ``files`` of its rows, and ``(path, reason)`` for the rest.
    """
    workers = workers or min(8, os.cpu_count() or 1)
    out = np.empty((len(files), channels, size, size), dtype=np.uint8)
    kept_indices, skipped = [], []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        results = pool.map(lambda path: _decode_or_reason(path, size, channels), files)
        for index, (path, result) in enumerate(zip(files, results)):
            if isinstance(result, str):
                skipped.append((path, result))
                continue
            out[len(kept_indices)] = result
            kept_indices.append(index)
    return out[: len(kept_indices)], kept_indices, skipped


def load_image_folder(root: Path, size: int, channels: int):
    """Decode every image under ``root``.

    Returns (N, C, size, size) uint8 images, labels (list of int or None),
    class names (or None) and the skipped ``(path, reason)`` pairs.

    Raises
    ------
    ConfigError
        When the folder is missing, contains no image files, or none can be read.
    """
    if not root.exists():
        raise ConfigError("data", f"folder not found: {root}")
    if not root.is_dir():
        raise ConfigError("data", f"{root} is a file, not a folder of images")
    files = find_image_files(root)
    if not files:
        raise ConfigError(
            "data", f"{root} contains no image files; looked for {', '.join(IMAGE_EXTENSIONS)} in every subfolder"
        )

    labels, class_names = folder_class_labels(root, files)
    started = time.perf_counter()
    images, kept_indices, skipped = decode_images(files, size, channels)
    _log_skipped(skipped, len(files))
    if not kept_indices:
        path, reason = skipped[0]
        raise ConfigError("data", f"none of the {len(files)} image files in {root} can be read; "
                          f"the first, {path}, failed with {reason}")
    logger.info("decoded %d images from %s in %.1f s", len(kept_indices), root, time.perf_counter() - started)
    if labels is not None:
        labels = [labels[index] for index in kept_indices]
    return images, labels, class_names, skipped
