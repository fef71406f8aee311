"""Load any data spec into a PointMixture or an in-memory ImageDataset."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from workbench.core.data.cifar import find_cifar10_folder, load_cifar10_folder
from workbench.core.data.dataset import ImageDataset, convert_channels, resize_images
from workbench.core.data.idx import IDX_CLASS_NAMES, find_idx_files, load_idx_folder
from workbench.core.data.images import load_image_folder
from workbench.core.data.specs import DataSpec, as_data_spec, default_image_shape
from workbench.core.data.toy import TOY_FACTORIES, PointMixture
from workbench.core.validation import ConfigError, coerce_int

logger = logging.getLogger(__name__)

# torchvision.datasets class that downloads each kind.
_TORCHVISION_CLASSES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "cifar10": "CIFAR10"}


def load_dataset(
    spec: DataSpec | str,
    image_size: int | None = None,
    channels: int | None = None,
    download: bool = False,
) -> PointMixture | ImageDataset:
    """Load the data a spec names.

    Parameters
    ----------
    spec : DataSpec or str
        A parsed spec or its text, such as ``"ring8"`` or ``"mnist:/data/mnist"``.
    image_size : int, optional
        Side of the square images returned. The default is 28 for MNIST and
        Fashion-MNIST and 32 otherwise. Ignored for toy data.
    channels : int, optional
        1 for grayscale or 3 for RGB. The default is 1 for MNIST and
        Fashion-MNIST and 3 otherwise. Ignored for toy data.
    download : bool
        Fetch MNIST, Fashion-MNIST or CIFAR-10 into the spec's folder with
        torchvision when the files are not there yet. Nothing is downloaded
        unless this is True.

    Raises
    ------
    ConfigError
        For an invalid spec, size or channel count, or data that is missing or unreadable.
    """
    spec = as_data_spec(spec)
    if spec.is_toy:
        return TOY_FACTORIES[spec.kind]()

    default_channels, default_size, _ = default_image_shape(spec)
    size = default_size if image_size is None else coerce_int("image_size", image_size, minimum=1)
    channels = default_channels if channels is None else _check_channels(channels)
    if download and spec.kind in _TORCHVISION_CLASSES:
        download_dataset(spec)

    if spec.kind == "folder":
        dataset = _load_folder(spec.path, size, channels)
    else:
        dataset = _load_standard(spec, size, channels)
    logger.info("loaded %r", dataset)
    return dataset


def _check_channels(channels: int) -> int:
    channels = coerce_int("channels", channels)
    if channels not in (1, 3):
        raise ConfigError("channels", f"must be 1 (grayscale) or 3 (RGB), got {channels}")
    return channels


def _check_folder(kind: str, path: Path) -> None:
    if not path.exists():
        hint = "" if kind == "folder" else f", or pass --download to fetch {kind} there (needs internet)"
        raise ConfigError("data", f"folder not found: {path}. Check the path{hint}")
    if not path.is_dir():
        raise ConfigError("data", f"{path} is a file; {kind} needs the folder that contains the data files")


def _load_standard(spec: DataSpec, size: int, channels: int) -> ImageDataset:
    _check_folder(spec.kind, spec.path)
    if spec.kind == "cifar10":
        images, labels, class_names = load_cifar10_folder(spec.path)
    else:
        images, labels = load_idx_folder(spec.kind, spec.path)
        class_names = list(IDX_CLASS_NAMES[spec.kind])
    tensor = torch.from_numpy(images)
    tensor = resize_images(convert_channels(tensor, channels), size)
    return ImageDataset(tensor, labels, class_names, spec.kind)


def _load_folder(path: Path, size: int, channels: int) -> ImageDataset:
    images, labels, class_names, skipped = load_image_folder(path, size, channels)
    return ImageDataset(torch.from_numpy(images), labels, class_names, f"folder:{path.name}", skipped)


def _data_present(spec: DataSpec) -> bool:
    try:
        if spec.kind == "cifar10":
            find_cifar10_folder(spec.path)
        else:
            find_idx_files(spec.kind, spec.path)
    except ConfigError:
        return False
    return True


def download_dataset(spec: DataSpec) -> None:
    """Download MNIST, Fashion-MNIST or CIFAR-10 into ``spec.path`` unless already there.

    torchvision writes MNIST to ``PATH/MNIST/raw``, Fashion-MNIST to
    ``PATH/FashionMNIST/raw`` and CIFAR-10 to ``PATH/cifar-10-batches-py``, all
    of which ``load_dataset`` reads, and prints a progress bar while it downloads.
    """
    if _data_present(spec):
        logger.info("%s is already in %s; nothing to download", spec.kind, spec.path)
        return
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, _TORCHVISION_CLASSES[spec.kind])
    logger.info("downloading %s into %s", spec.kind, spec.path)
    try:
        # One split is enough: torchvision downloads the files of both.
        dataset_class(root=str(spec.path), train=True, download=True)
    except (OSError, RuntimeError) as exc:
        raise ConfigError("data", f"download of {spec.kind} into {spec.path} failed: {exc}") from exc

