"""MNIST and Fashion-MNIST from IDX files, read with numpy.

An IDX file starts with two zero bytes, a type code and the number of
dimensions, then one big-endian uint32 per dimension, then the values in
big-endian row-major order. A file may be gzipped whatever its name, because
the gzip magic bytes decide.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from pathlib import Path

import numpy as np

from workbench.core.validation import ConfigError

logger = logging.getLogger(__name__)

# IDX type code -> big-endian numpy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_SPLITS = ("train", "t10k")
# Subfolder where torchvision's dataset classes put the raw files.
_TORCHVISION_RAW = {"mnist": Path("MNIST", "raw"), "fashion-mnist": Path("FashionMNIST", "raw")}
IDX_CLASS_NAMES = {
    "mnist": tuple(str(digit) for digit in range(10)),
    "fashion-mnist": (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
}


def read_idx_bytes(path: Path) -> bytes:
    """Return the IDX bytes of ``path``, decompressed when the file is gzipped."""
    try:
        raw = Path(path).read_bytes()
        if raw[:2] == _GZIP_MAGIC:
            return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise ConfigError("data", f"cannot read IDX file {path}: {exc}") from exc
    return raw


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file, gzipped or not, into a native-endian numpy array.

    Raises
    ------
    ConfigError
        Naming the file when the magic number, type code or size is wrong.
    """
    raw = read_idx_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ConfigError("data", f"{path} is not an IDX file: it does not start with two zero bytes")
    dtype = _IDX_DTYPES.get(raw[2])
    if dtype is None:
        raise ConfigError("data", f"{path} has unknown IDX type code 0x{raw[2]:02x}")
    ndim = raw[3]
    header_size = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header_size:
        raise ConfigError("data", f"{path} has a truncated IDX header ({ndim} dimensions, {len(raw)} bytes)")

    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    actual = len(raw) - header_size
    if actual != expected:
        problem = "truncated" if actual < expected else "longer than its header states"
        raise ConfigError(
            "data", f"{path} is {problem}: shape {dims} needs {expected} bytes of data, found {actual}"
        )
    values = np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(dims)
    return values.astype(dtype.newbyteorder("="))


def idx_search_folders(kind: str, root: Path) -> list[Path]:
    """Return the folders searched for IDX files: ``root`` and torchvision's raw folder."""
    return [root, root / _TORCHVISION_RAW[kind]]


def _find_split_file(folder: Path, stem: str) -> Path | None:
    # torchvision keeps both the .gz and the extracted file; the plain one reads faster.
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def find_idx_files(kind: str, root: Path) -> dict[str, tuple[Path, Path]]:
    """Return ``{split: (images, labels)}`` for the splits present under ``root``.

    Raises
    ------
    ConfigError
        When no split is found (the message lists the names looked for), or a
        split's images file has no labels file or the reverse.
    """
    stems = {split: (f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte") for split in _SPLITS}
    for folder in idx_search_folders(kind, root):
        found = {}
        for split, (image_stem, label_stem) in stems.items():
            images = _find_split_file(folder, image_stem)
            labels = _find_split_file(folder, label_stem)
            if (images is None) != (labels is None):
                present, missing = (images, label_stem) if labels is None else (labels, image_stem)
                raise ConfigError("data", f"found {present} but not {missing}[.gz] next to it")
            if images is not None:
                found[split] = (images, labels)
        if found:
            return found

    looked_for = ", ".join(f"{stem}[.gz]" for pair in stems.values() for stem in pair)
    folders = " and ".join(str(folder) for folder in idx_search_folders(kind, root))
    raise ConfigError(
        "data",
        f"no {kind} IDX files in {folders}; looked for {looked_for}. "
        "Place them there or download them with --download (or the Download button in the window)",
    )


def load_idx_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one split as (N, H, W) uint8 images and (N,) int64 labels."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ConfigError("data", f"{images_path} contains {images.dtype} data of shape {images.shape}, "
                          "expected uint8 images of shape (N, H, W)")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise ConfigError("data", f"{labels_path} contains {labels.dtype} data of shape {labels.shape}, "
                          "expected uint8 labels of shape (N,)")
    if len(images) != len(labels):
        raise ConfigError("data", f"{images_path} has {len(images)} images but {labels_path} has "
                          f"{len(labels)} labels; the counts must match")
    return images, labels.astype(np.int64)


def load_idx_folder(kind: str, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read every split under ``root``, train before test, as (N, 1, H, W) images and (N,) labels."""
    splits = find_idx_files(kind, root)
    images, labels = [], []
    for split, (images_path, labels_path) in splits.items():
        split_images, split_labels = load_idx_split(images_path, labels_path)
        logger.info("read %d %s images from %s", len(split_images), split, images_path)
        images.append(split_images)
        labels.append(split_labels)

    shapes = {array.shape[1:] for array in images}
    if len(shapes) > 1:
        raise ConfigError("data", f"the {kind} splits under {root} have different image sizes {sorted(shapes)}")
    return np.concatenate(images)[:, None], np.concatenate(labels)
