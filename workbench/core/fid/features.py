"""Feature extractors and the batch loop that feeds them.

An extractor maps a batch of samples to (B, d) float32 features and has a
``name`` that identifies it, weights included, so that statistics from
different extractors are never mixed in the cache or compared in a result.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from workbench.core.fid import weights as fid_weights
from workbench.core.fid.inception import FEATURE_DIM, load_fid_inception, prepare_images

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
CancelCheck = Callable[[], bool]
# take(start, count) returns samples start .. start + count - 1 of a source.
BatchSource = Callable[[int, int], torch.Tensor]


class Cancelled(Exception):
    """The caller's ``cancel()`` returned True between two batches."""


class Progress:
    """Relay ``done`` of ``total`` work units to an optional callback and poll ``cancel``."""

    def __init__(self, total: int, callback: ProgressCallback | None = None,
                 cancel: CancelCheck | None = None):
        self.total = total
        self.done = 0
        self._callback = callback
        self._cancel = cancel

    def check_cancel(self) -> None:
        """Raise :class:`Cancelled` when the caller asked to stop."""
        if self._cancel is not None and self._cancel():
            raise Cancelled("FID computation cancelled")

    def advance(self, count: int) -> None:
        self.done = min(self.done + count, self.total)
        if self._callback is not None:
            self._callback(self.done, self.total)


class FeatureExtractor:
    """Base class: ``name``, ``feature_dim`` and ``__call__(batch) -> (B, d) float32``."""

    name: str = ""
    feature_dim: int = 0

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class InceptionExtractor(FeatureExtractor):
    """Pool3 features of the FID Inception-v3 for uint8 or [-1, 1] float images."""

    feature_dim = FEATURE_DIM

    def __init__(self, weights_file: str | Path | None = None, download: bool = False,
                 device: str | torch.device = "cpu"):
        path = fid_weights.resolve_weights(weights_file, download=download)
        digest = fid_weights.verify_weights(path)
        self.name = f"inception-2015-12-05-{digest[:8]}"
        self.device = torch.device(device)
        self.network = load_fid_inception(path, self.device)

    @torch.no_grad()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        inputs = prepare_images(batch.to(self.device))
        return self.network(inputs).float().cpu()


class PointsExtractor(FeatureExtractor):
    """Identity on 2D points: the Fréchet distance of the point clouds themselves."""

    name = "points"
    feature_dim = 2

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.ndim != 2 or batch.shape[1] != 2:
            raise ValueError(f"the points extractor expects (N, 2) samples, got {tuple(batch.shape)}")
        return batch.detach().float().cpu()


def extract_features(take: BatchSource, n: int, extractor: FeatureExtractor, batch_size: int,
                     progress: Progress | None = None) -> np.ndarray:
    """Return the (n, d) float32 features of the first ``n`` samples of ``take``.

    ``take`` is called with consecutive (start, count) pairs, count at most
    ``batch_size``. The last batch contains the remainder, so exactly ``n``
    rows come back. ``progress`` advances by the samples done and is polled for
    cancellation before each batch.
    """
    features = np.empty((n, extractor.feature_dim), dtype=np.float32)
    for start in range(0, n, batch_size):
        if progress is not None:
            progress.check_cancel()
        count = min(batch_size, n - start)
        batch = take(start, count)
        if batch.shape[0] != count:
            raise ValueError(f"the sample source returned {batch.shape[0]} samples where "
                             f"{count} were requested")
        features[start:start + count] = extractor(batch).numpy()
        if progress is not None:
            progress.advance(count)
    return features


def tensor_source(samples: torch.Tensor, order: torch.Tensor | None = None) -> BatchSource:
    """Return a source that reads ``samples[order[start:start + count]]``."""
    if order is None:
        return lambda start, count: samples[start:start + count]
    return lambda start, count: samples[order[start:start + count]]


def sampler_source(sample: Callable[[int], torch.Tensor]) -> BatchSource:
    """Return a source that draws ``count`` fresh samples from ``sample(count)`` per batch."""
    return lambda start, count: sample(count).detach()


def generator_sampler(generator: torch.nn.Module, z_dim: int, device: str | torch.device = "cpu",
                      seed: int = 0) -> Callable[[int], torch.Tensor]:
    """Return ``sample(count)``: the generator's output for standard normal noise, on the CPU.

    The noise comes from its own seeded ``torch.Generator``, so two calls of
    the returned function continue one reproducible stream.
    """
    noise_generator = torch.Generator().manual_seed(seed)
    device = torch.device(device)

    @torch.no_grad()
    def sample(count: int) -> torch.Tensor:
        z = torch.randn(count, z_dim, generator=noise_generator)
        return generator(z.to(device)).float().cpu()

    return sample
