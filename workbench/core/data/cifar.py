"""CIFAR-10 from the pickled batches of the python version (``cifar-10-batches-py``).

The batches are pickles, and a pickle can run any callable it names. The
unpickler here accepts only what a batch contains: dicts, lists, strings,
numbers and numpy arrays.
"""

from __future__ import annotations

import codecs
import logging
import pickle
from pathlib import Path

import numpy as np

from workbench.core.validation import ConfigError

logger = logging.getLogger(__name__)

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_TEST_BATCHES = ("test_batch",)

# The callables that numpy arrays and scalars pickle with. The original batches
# were written by numpy 1.x, which names the module numpy.core.multiarray;
# numpy 2 writes numpy._core.multiarray.
_RECONSTRUCT = np.zeros(1).__reduce__()[0]
_SCALAR = np.float64(0).__reduce__()[0]
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"a CIFAR-10 batch may not reference {module}.{name}") from None


def _load_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as file:
            # latin1 turns Python 2 byte strings into str and keeps array bytes intact.
            content = _ArrayUnpickler(file, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as exc:
        raise ConfigError("data", f"cannot read CIFAR-10 batch {path}: {exc}") from exc
    if not isinstance(content, dict):
        raise ConfigError("data", f"{path} is not a CIFAR-10 batch: it contains a {type(content).__name__}, not a dict")
    return {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in content.items()}


def find_cifar10_folder(root: Path) -> Path:
    """Return ``root/cifar-10-batches-py`` or ``root`` itself, whichever contains batch files."""
    for folder in (root / CIFAR10_FOLDER, root):
        if any((folder / name).is_file() for name in _TRAIN_BATCHES + _TEST_BATCHES):
            return folder
    looked_for = ", ".join(_TRAIN_BATCHES + _TEST_BATCHES)
    raise ConfigError(
        "data",
        f"no CIFAR-10 batches in {root / CIFAR10_FOLDER} or {root}; looked for {looked_for}. "
        "Extract cifar-10-python.tar.gz there or download them with --download (or the Download button in the window)",
    )


def read_cifar10_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch as (N, 3, 32, 32) uint8 images and (N,) int64 labels."""
    batch = _load_pickle(path)
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ConfigError("data", f"{path} has no 'data' entry of uint8 rows of 3072 values")
    if labels is None:
        raise ConfigError("data", f"{path} has no 'labels' entry")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise ConfigError("data", f"{path} has labels that are not whole numbers: {exc}") from exc
    if labels.shape != (len(data),):
        raise ConfigError("data", f"{path} has {len(data)} images but {labels.size} labels; the counts must match")
    if labels.size and (labels.min() < 0 or labels.max() >= len(CIFAR10_CLASSES)):
        raise ConfigError("data", f"{path} has labels outside 0-9 ({labels.min()} to {labels.max()})")
    return data.reshape(-1, 3, 32, 32), labels


def _read_class_names(folder: Path) -> list[str]:
    meta_path = folder / "batches.meta"
    if not meta_path.is_file():
        return list(CIFAR10_CLASSES)
    names = _load_pickle(meta_path).get("label_names")
    if not isinstance(names, list) or len(names) != len(CIFAR10_CLASSES):
        logger.warning("%s has no list of 10 label_names; using the standard CIFAR-10 class names", meta_path)
        return list(CIFAR10_CLASSES)
    return [str(name) for name in names]


def load_cifar10_folder(root: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read the train and test batches present, train first.

    Returns (N, 3, 32, 32) uint8 images, (N,) int64 labels and the class names.
    """
    folder = find_cifar10_folder(root)
    images, labels = [], []
    for name in _TRAIN_BATCHES + _TEST_BATCHES:
        if (folder / name).is_file():
            batch_images, batch_labels = read_cifar10_batch(folder / name)
            images.append(batch_images)
            labels.append(batch_labels)
    logger.info("read %d CIFAR-10 batches from %s", len(images), folder)
    return np.concatenate(images), np.concatenate(labels), _read_class_names(folder)
