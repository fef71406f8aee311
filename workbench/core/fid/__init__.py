"""Fréchet Inception Distance on demand, with precision and recall.

Three cacheable stages: features (:mod:`.features`, :mod:`.inception`,
:mod:`.domain`), float64 statistics (:mod:`.stats`) and the Fréchet distance
(:mod:`.frechet`). :func:`compute_fid` runs them end to end.
"""

from workbench.core.fid.compute import CHECKPOINT_FILE, EXTRACTORS, FIDResult, compute_fid, load_run_sampler, resolve_device
from workbench.core.fid.features import Cancelled, generator_sampler
from workbench.core.fid.frechet import FrechetError, frechet_distance
from workbench.core.fid.precision_recall import precision_recall
from workbench.core.fid.stats import FeatureStats, StatsCache, compute_stats, default_cache_dir, load_stats, save_stats
from workbench.core.fid.weights import WeightsNotFoundError, resolve_weights

__all__ = [
    "CHECKPOINT_FILE",
    "EXTRACTORS",
    "Cancelled",
    "FIDResult",
    "FeatureStats",
    "FrechetError",
    "StatsCache",
    "WeightsNotFoundError",
    "compute_fid",
    "compute_stats",
    "default_cache_dir",
    "frechet_distance",
    "generator_sampler",
    "load_run_sampler",
    "load_stats",
    "precision_recall",
    "resolve_device",
    "resolve_weights",
    "save_stats",
]
