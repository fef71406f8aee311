"""Feature statistics (mean and covariance in float64), their .npz files and the cache.

The .npz layout is pytorch-fid's: arrays ``mu`` (d,) and ``sigma`` (d, d).
Files written here add ``n`` and ``extractor``, which pytorch-fid ignores;
files without them load with ``n = None`` and ``extractor = ""``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

# Bump when a change to feature extraction or subset selection makes cached
# statistics stale.
CACHE_FORMAT_VERSION = 1


@dataclass
class FeatureStats:
    """Mean ``mu`` (d,) and covariance ``sigma`` (d, d) of ``n`` feature rows, float64."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int | None = None
    extractor: str = ""

    @property
    def feature_dim(self) -> int:
        return int(self.mu.shape[0])


def compute_stats(features, extractor: str = "") -> FeatureStats:
    """Return the mean and unbiased covariance (divisor N - 1) of (N, d) features.

    Every row counts, including those of a last partial batch. Raises
    ``ValueError`` for N < 2, where the covariance is undefined.
    """
    rows = np.asarray(features, dtype=np.float64)
    if rows.ndim != 2:
        raise ValueError(f"expected features of shape (N, d), got {rows.shape}")
    if rows.shape[0] < 2:
        raise ValueError(
            f"FID statistics need at least 2 samples, got {rows.shape[0]}; increase N"
        )
    if not np.all(np.isfinite(rows)):
        raise ValueError("features contain NaN or infinite values; the images or the "
                         "generator produced non-finite output")
    mu = rows.mean(axis=0)
    sigma = np.cov(rows, rowvar=False)
    return FeatureStats(mu=mu, sigma=np.atleast_2d(sigma), n=rows.shape[0], extractor=extractor)


def save_stats(stats: FeatureStats, path: str | Path) -> Path:
    """Write ``stats`` to ``path`` as pytorch-fid's compressed .npz (plus ``n``, ``extractor``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, mu=stats.mu, sigma=stats.sigma, n=np.int64(stats.n or 0),
                        extractor=np.str_(stats.extractor))
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def load_stats(path: str | Path) -> FeatureStats:
    """Read ``mu`` and ``sigma`` from an .npz written by us or by pytorch-fid."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"statistics file not found: {path}")
    with open(path, "rb") as handle:
        signature = handle.read(6)
    if not signature.startswith(b"PK") and signature != b"\x93NUMPY":
        # np.load would report any other file as "pickled data", which misleads.
        raise ValueError(f"{path} is not an .npz file (it starts with {signature!r}); give statistics saved "
                         "with 'gan-workbench fid --save-stats' or pytorch-fid's --save-stats")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is not a readable .npz file ({error}); give statistics saved with "
                         "'gan-workbench fid --save-stats' or pytorch-fid's --save-stats") from error
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} contains a single array, not an .npz archive with mu and sigma; give statistics "
                         "saved with 'gan-workbench fid --save-stats' or pytorch-fid's --save-stats")
    with data:
        missing = [key for key in ("mu", "sigma") if key not in data.files]
        if missing:
            raise ValueError(f"{path} is not an FID statistics file: it has no {', '.join(missing)}")
        mu = np.asarray(data["mu"], dtype=np.float64)
        sigma = np.atleast_2d(np.asarray(data["sigma"], dtype=np.float64))
        n = int(data["n"]) if "n" in data.files and int(data["n"]) > 0 else None
        extractor = str(data["extractor"]) if "extractor" in data.files else ""
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"{path}: mu has shape {mu.shape} and sigma {sigma.shape}; "
                         "expected (d,) and (d, d)")
    return FeatureStats(mu=mu, sigma=sigma, n=n, extractor=extractor)


def default_cache_dir() -> Path:
    """Return ``$XDG_CACHE_HOME/gan-workbench/fid``, by default ``~/.cache/gan-workbench/fid``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gan-workbench" / "fid"


class StatsCache:
    """Real-data statistics and features on disk, one .npz per key.

    The features are kept next to ``mu`` and ``sigma`` because precision and
    recall need the real feature rows, not only their moments.
    """

    def __init__(self, directory: str | Path | None = None):
        self.directory = Path(directory) if directory is not None else default_cache_dir()

    @staticmethod
    def make_key(**identity) -> str:
        """Return a file-name-safe key from ``identity`` (JSON-serialisable values)."""
        text = json.dumps({"format": CACHE_FORMAT_VERSION, **identity}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def path(self, key: str) -> Path:
        return self.directory / f"real-{key}.npz"

    def load(self, key: str) -> tuple[FeatureStats, np.ndarray] | None:
        """Return (stats, features) stored under ``key``, or None on a miss."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                stats = FeatureStats(mu=data["mu"], sigma=data["sigma"], n=int(data["n"]),
                                     extractor=str(data["extractor"]))
                features = data["features"]
        except (OSError, ValueError, KeyError) as error:
            logger.warning("ignoring unreadable statistics cache file %s: %s", path, error)
            return None
        logger.info("real statistics loaded from cache %s", path)
        return stats, features

    def save(self, key: str, stats: FeatureStats, features: np.ndarray) -> Path:
        """Store ``stats`` and ``features`` under ``key``; return the file path."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        partial = path.with_name(path.stem + f".{os.getpid()}.partial.npz")
        np.savez(partial, mu=stats.mu, sigma=stats.sigma, n=np.int64(stats.n or 0),
                 extractor=np.str_(stats.extractor), features=np.asarray(features, np.float32))
        os.replace(partial, path)  # atomic, so a reader never sees half a file
        logger.info("real statistics cached at %s", path)
        return path


def fingerprint_array(array) -> str:
    """Return a SHA-256 hex digest of an array's dtype, shape and bytes.

    Used as the identity of a data set in cache keys: it changes with any
    pixel, the split, the image size or the channel count.
    """
    values = np.ascontiguousarray(np.asarray(array))
    digest = hashlib.sha256(f"{values.dtype.str}{values.shape}".encode())
    digest.update(memoryview(values).cast("B"))
    return digest.hexdigest()
