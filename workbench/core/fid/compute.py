"""FID on demand: real data and fake samples in, a named, checked value out.

:func:`compute_fid` runs the three stages (features, float64 statistics,
Fréchet distance), reusing cached real-data statistics, and adds improved
precision and recall on the same features. It reports progress and polls a
cancel flag between batches, so a GUI worker can run it unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from workbench.core.fid import domain
from workbench.core.fid.features import (
    CancelCheck, FeatureExtractor, InceptionExtractor, PointsExtractor, Progress, ProgressCallback,
    extract_features, generator_sampler, sampler_source, tensor_source,
)
from workbench.core.fid.frechet import frechet_distance
from workbench.core.fid.precision_recall import DEFAULT_K, precision_recall
from workbench.core.fid.stats import FeatureStats, StatsCache, compute_stats, fingerprint_array
from workbench.core.runs import CHECKPOINT_FILE
from workbench.core.validation import ConfigError, coerce_choice, coerce_int

logger = logging.getLogger(__name__)

EXTRACTORS = ("auto", "inception", "domain", "points")
LOW_N_WARNING = "N below the feature dimension makes FID unreliable and not comparable"


@dataclass
class FIDResult:
    """One FID measurement and everything needed to judge and compare it.

    Values with different ``extractor`` names are not comparable. ``precision``
    and ``recall`` are None when the real features were not available (real
    statistics loaded from an .npz file). ``real_stats`` can be exported with
    :func:`workbench.core.fid.save_stats`.
    """

    value: float
    extractor: str
    n_real: int
    n_fake: int
    feature_dim: int
    warnings: list[str] = field(default_factory=list)
    precision: float | None = None
    recall: float | None = None
    classifier_accuracy: float | None = None
    real_stats_from_cache: bool = False
    real_stats: FeatureStats | None = field(default=None, repr=False)

    def summary(self) -> str:
        """Return a one-line description: value, extractor, N, precision and recall."""
        text = (f"FID {self.value:.4f} (extractor {self.extractor}, {self.feature_dim}-d, "
                f"N real {self.n_real}, N fake {self.n_fake})")
        if self.precision is not None and self.recall is not None:
            text += f"; precision {self.precision:.4f}, recall {self.recall:.4f} (k={DEFAULT_K})"
        if self.classifier_accuracy is not None:
            text += f"; domain classifier held-out accuracy {100 * self.classifier_accuracy:.1f}%"
        return text


@dataclass
class _RealSide:
    """The real data resolved: a sample source with its identity, or given statistics."""

    kind: str                      # "images", "points" or "stats"
    take: Callable | None = None
    n: int = 0
    dataset: Any = None            # ImageDataset, for the domain extractor
    identity: dict | None = None   # cache key parts; None disables the cache
    stats: FeatureStats | None = None


def compute_fid(real, fake, n: int, extractor: str = "auto", batch_size: int = 50,
                device: str = "cpu", cache_dir: str | Path | None = None,
                progress: ProgressCallback | None = None, cancel: CancelCheck | None = None,
                weights: str | Path | None = None, download: bool = False, seed: int = 0,
                use_cache: bool = True) -> FIDResult:
    """Compute FID, precision and recall of ``fake`` against ``real``.

    Parameters
    ----------
    real : str, DataSpec, ImageDataset, PointMixture, torch.Tensor or FeatureStats
        A data spec, loaded data, a tensor of samples, or precomputed
        statistics (which allow no precision and recall). From images or a
        tensor, the first ``n`` of a permutation seeded with ``seed`` are used,
        or all of them when there are fewer than ``n``.
    fake : callable, str, ImageDataset, PointMixture or torch.Tensor
        ``sample(count) -> tensor`` in [-1, 1] (images) or (count, 2) points;
        a run folder (its checkpoint's generator) or a data spec; or samples.
    n : int
        Samples per side, at least 2.
    extractor : {"auto", "inception", "domain", "points"}
        "auto" picks "points" for 2D data and "inception" for images.
    progress, cancel
        ``progress(done, total)`` after each batch; ``cancel()`` polled
        before each batch, raising :class:`Cancelled` when it returns True.
    weights, download
        Inception weight file and whether a missing one may be downloaded.
    use_cache
        Read and write the real-statistics cache in ``cache_dir``.

    Raises
    ------
    ConfigError
        For invalid arguments or combinations.
    WeightsNotFoundError
        When the Inception weights are missing or damaged.
    Cancelled
        When ``cancel()`` returned True.
    """
    n = coerce_int("n", n, minimum=2)
    batch_size = coerce_int("batch_size", batch_size, minimum=1)
    extractor = coerce_choice("extractor", extractor, EXTRACTORS)
    device = resolve_device(device)
    warnings: list[str] = []

    real_side = _resolve_real(real, n, seed, warnings)
    fake_take = _resolve_fake(fake, n, seed, device)
    extractor = _pick_extractor(extractor, real_side)
    cache = StatsCache(cache_dir) if use_cache and real_side.identity is not None else None

    feature_extractor, tracker, cached = _prepare(extractor, real_side, n, cache, cache_dir,
                                                  weights, download, device, progress, cancel)
    real_stats, real_features = _real_statistics(real_side, feature_extractor, batch_size,
                                                 tracker, cache, cached)
    fake_features = extract_features(fake_take, n, feature_extractor, batch_size, tracker)
    fake_stats = compute_stats(fake_features, feature_extractor.name)
    value = frechet_distance(real_stats.mu, real_stats.sigma, fake_stats.mu, fake_stats.sigma)

    result = FIDResult(value=value, extractor=feature_extractor.name,
                       n_real=real_stats.n or 0, n_fake=n, feature_dim=feature_extractor.feature_dim,
                       warnings=warnings, real_stats_from_cache=cached is not None,
                       real_stats=real_stats,
                       classifier_accuracy=getattr(feature_extractor, "accuracy", None))
    _add_precision_recall(result, real_features, fake_features)
    _add_checks(result, real_stats)
    logger.info("%s", result.summary())
    return result


def resolve_device(device: str | torch.device) -> torch.device:
    """Return a torch.device for ``device``; "auto" picks CUDA, then MPS, then the CPU."""
    if isinstance(device, torch.device):
        return device
    text = str(device).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(text)
    except (RuntimeError, ValueError):
        raise ConfigError("device", f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", f"{device!r} requested but CUDA is not available; use cpu")
    return resolved


def load_run_sampler(run_dir: str | Path, device: str | torch.device = "cpu",
                     seed: int = 0) -> tuple[Callable[[int], torch.Tensor], Any]:
    """Return (``sample(count)``, config) for the generator saved in a run folder."""
    from workbench.core.checkpoint import load_generator

    generator, config = load_generator(run_dir, device=device)
    z_dim = getattr(generator, "z_dim", None) or config.z_dim
    return generator_sampler(generator, int(z_dim), device=device, seed=seed), config


# Resolving the inputs ------------------------------------------------------------------------

def _resolve_real(real, n: int, seed: int, warnings: list[str]) -> _RealSide:
    if isinstance(real, FeatureStats):
        return _RealSide(kind="stats", stats=real, n=real.n or 0)
    data = _load_if_spec(real, "real")
    if getattr(data, "kind", None) == "points":
        generator = torch.Generator().manual_seed(seed)
        return _RealSide(kind="points", take=lambda start, count: data.sample(count, generator), n=n)
    if getattr(data, "kind", None) == "images":
        return _real_from_samples(data.images, n, seed, warnings, dataset=data, name=data.name)
    if isinstance(data, torch.Tensor):
        return _real_from_samples(data, n, seed, warnings, dataset=None, name="tensor")
    raise ConfigError("real", f"expected a data spec, a data set, a tensor or statistics, "
                      f"got {type(real).__name__}")


def _real_from_samples(samples: torch.Tensor, n: int, seed: int, warnings: list[str],
                       dataset, name: str) -> _RealSide:
    available = samples.shape[0]
    if available < 2:
        raise ConfigError("real", f"{name} contains {available} samples; FID needs at least 2")
    if available < n:
        warnings.append(f"the real data has only {available} samples, fewer than N = {n}; "
                        f"all {available} were used")
    used = min(n, available)
    order = torch.randperm(available, generator=torch.Generator().manual_seed(seed))[:used]
    kind = "points" if samples.ndim == 2 else "images"
    identity = {"data": fingerprint_array(samples), "name": name, "n": used, "seed": seed,
                "shape": list(samples.shape[1:])}
    return _RealSide(kind=kind, take=tensor_source(samples, order), n=used, dataset=dataset,
                     identity=identity)


def _resolve_fake(fake, n: int, seed: int, device: torch.device) -> Callable:
    if isinstance(fake, (str, Path)) and Path(fake).is_dir():
        if not (Path(fake) / CHECKPOINT_FILE).is_file():
            raise ConfigError("fake", f"{fake} has no {CHECKPOINT_FILE}; give a run folder, or "
                              "write a folder of images as folder:PATH")
        sample, _ = load_run_sampler(fake, device=device, seed=seed)
        return sampler_source(sample)
    data = _load_if_spec(fake, "fake")
    if getattr(data, "kind", None) == "points":
        generator = torch.Generator().manual_seed(seed + 1)
        return lambda start, count: data.sample(count, generator)
    samples = data.images if getattr(data, "kind", None) == "images" else data
    if isinstance(samples, torch.Tensor):
        if samples.shape[0] < n:
            raise ConfigError("n", f"the fake set contains {samples.shape[0]} samples, fewer than "
                              f"N = {n}; lower N or give more samples")
        order = torch.randperm(samples.shape[0], generator=torch.Generator().manual_seed(seed))
        return tensor_source(samples, order)
    if callable(samples):
        return sampler_source(samples)
    raise ConfigError("fake", f"expected a sampler, a run folder, a data spec or a tensor, "
                      f"got {type(fake).__name__}")


def _load_if_spec(value, field_name: str):
    from workbench.core import data as data_layer

    if isinstance(value, (str, data_layer.DataSpec)):
        spec = data_layer.parse_data_spec(value, field=field_name) if isinstance(value, str) else value
        return data_layer.load_dataset(spec)
    return value


def _pick_extractor(extractor: str, real: _RealSide) -> str:
    points = real.kind == "points" or (real.kind == "stats" and real.stats.feature_dim == 2)
    if extractor == "auto":
        return "points" if points else "inception"
    if extractor == "points" and not points:
        raise ConfigError("extractor", "'points' needs 2D point data; for images use "
                          "inception or domain")
    if extractor != "points" and real.kind == "points":
        raise ConfigError("extractor", f"{extractor!r} needs images, but the real data are "
                          "2D points; use points")
    if extractor == "domain" and real.dataset is None:
        raise ConfigError("extractor", "'domain' trains a classifier on the real data set, so "
                          "give the real data as a labelled data set, not statistics or a tensor")
    return extractor


# Running the stages ----------------------------------------------------------------------------

def _prepare(extractor: str, real: _RealSide, n: int, cache: StatsCache | None, cache_dir,
             weights, download: bool, device: torch.device, progress, cancel):
    """Build the extractor, look up the real statistics and size the progress total."""
    training = 0
    if extractor == "inception":
        feature_extractor = InceptionExtractor(weights, download=download, device=device)
    elif extractor == "points":
        feature_extractor = PointsExtractor()
    else:
        if not domain.classifier_path(real.dataset, cache_dir).is_file():
            training = domain.training_units(real.dataset)
        feature_extractor = None

    name = feature_extractor.name if feature_extractor else domain.extractor_name(real.dataset)
    cached = cache.load(_cache_key(real, name)) if cache is not None else None
    real_units = 0 if real.kind == "stats" or cached is not None else real.n
    tracker = Progress(training + real_units + n, progress, cancel)
    if feature_extractor is None:
        feature_extractor = domain.load_or_train(real.dataset, cache_dir, device, tracker)
    return feature_extractor, tracker, cached


def _cache_key(real: _RealSide, extractor_name: str) -> str:
    return StatsCache.make_key(extractor=extractor_name, **real.identity)


def _real_statistics(real: _RealSide, extractor: FeatureExtractor, batch_size: int,
                     tracker: Progress, cache: StatsCache | None, cached):
    if real.kind == "stats":
        _check_stats_match(real.stats, extractor)
        return real.stats, None
    if cached is not None:
        return cached
    features = extract_features(real.take, real.n, extractor, batch_size, tracker)
    stats = compute_stats(features, extractor.name)
    if cache is not None:
        cache.save(_cache_key(real, extractor.name), stats, features)
    return stats, features


def _check_stats_match(stats: FeatureStats, extractor: FeatureExtractor) -> None:
    if stats.feature_dim != extractor.feature_dim:
        raise ConfigError("real_stats", f"the statistics have {stats.feature_dim} dimensions but "
                          f"the {extractor.name} extractor gives {extractor.feature_dim}")
    if stats.extractor and stats.extractor != extractor.name:
        raise ConfigError("real_stats", f"the statistics were computed with {stats.extractor!r}, "
                          f"not {extractor.name!r}; their FID values are not comparable")


def _add_precision_recall(result: FIDResult, real_features, fake_features: np.ndarray) -> None:
    if real_features is None:
        result.warnings.append("precision and recall need the real features, which a statistics "
                               "file does not hold; they were not computed")
        return
    if min(len(real_features), len(fake_features)) <= DEFAULT_K:
        result.warnings.append(f"precision and recall need more than k={DEFAULT_K} samples per "
                               "side; they were not computed")
        return
    result.precision, result.recall = precision_recall(real_features, fake_features)


def _add_checks(result: FIDResult, real_stats: FeatureStats) -> None:
    smallest = min(result.n_real or result.n_fake, result.n_fake)
    if smallest < result.feature_dim:
        result.warnings.append(f"{LOW_N_WARNING} (N = {smallest}, feature dimension "
                               f"{result.feature_dim})")
    accuracy = result.classifier_accuracy
    if accuracy is not None and accuracy < 0.8:
        result.warnings.append(f"the domain classifier reached only {100 * accuracy:.1f}% held-out "
                               "accuracy, so its features may miss differences between images")
    if real_stats.n is None:
        result.warnings.append("the real statistics file does not record its N")
