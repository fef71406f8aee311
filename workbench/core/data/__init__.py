"""Training data: data specs, toy 2D mixtures, image datasets and the batch sampler.

Typical use::

    spec = parse_data_spec("mnist:/data/mnist")
    dataset = load_dataset(spec)
    sampler = BatchSampler(dataset, batch_size=64, seed=0)
    batch = sampler.next()  # (64, 1, 28, 28) float32 in [-1, 1]
"""

from workbench.core.data.dataset import ImageDataset, to_display_range, to_model_range
from workbench.core.data.images import IMAGE_EXTENSIONS
from workbench.core.data.loader import download_dataset, load_dataset
from workbench.core.data.sampler import BatchSampler
from workbench.core.data.specs import DATA_KINDS, TOY_DATASETS, DataSpec, default_image_shape, parse_data_spec
from workbench.core.data.toy import PointMixture

__all__ = [
    "DATA_KINDS",
    "IMAGE_EXTENSIONS",
    "TOY_DATASETS",
    "BatchSampler",
    "DataSpec",
    "ImageDataset",
    "PointMixture",
    "default_image_shape",
    "download_dataset",
    "load_dataset",
    "parse_data_spec",
    "to_display_range",
    "to_model_range",
]
