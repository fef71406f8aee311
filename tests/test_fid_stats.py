"""Feature statistics, the pytorch-fid .npz format, the cache, and precision/recall."""

from __future__ import annotations

import re

import numpy as np
import pytest

from workbench.core.fid import precision_recall
from workbench.core.fid.stats import (
    FeatureStats, StatsCache, compute_stats, default_cache_dir, fingerprint_array, load_stats, save_stats,
)

fid_score = pytest.importorskip("pytorch_fid.fid_score")


def test_stats_by_hand():
    # x = (0, 2, 1): mean 1, variance (1 + 1 + 0) / 2 = 1
    # y = (0, 0, 3): mean 1, variance (1 + 1 + 4) / 2 = 3; covariance (1 - 1 + 0) / 2 = 0
    stats = compute_stats(np.array([[0, 0], [2, 0], [1, 3]], dtype=np.float32), "stub")
    assert stats.mu.dtype == np.float64
    assert stats.sigma.dtype == np.float64
    assert np.allclose(stats.mu, [1.0, 1.0])
    assert np.allclose(stats.sigma, [[1.0, 0.0], [0.0, 3.0]])
    assert stats.n == 3
    assert stats.extractor == "stub"


def test_stats_float64_accumulation():
    # Pool3-like features with a large offset: a float32 mean of 1e7 + {0, 1, 2}
    # is off by half the spread, so the variance must come from float64.
    values = 1e7 + np.arange(1000) % 3
    rows = values[:, None].astype(np.float32)
    float32_mean = rows.sum(dtype=np.float32) / np.float32(len(rows))
    assert abs(float(float32_mean) - values.mean()) > 0.5  # the premise: float32 fails
    stats = compute_stats(rows)
    assert stats.mu[0] == pytest.approx(values.mean(), rel=1e-15)
    assert stats.sigma[0, 0] == pytest.approx(np.var(values, ddof=1), rel=1e-9)


@pytest.mark.parametrize("rows", [0, 1])
def test_stats_too_few_rows(rows):
    with pytest.raises(ValueError, match="at least 2"):
        compute_stats(np.zeros((rows, 4)))


def test_stats_non_finite_rejected():
    with pytest.raises(ValueError, match="NaN"):
        compute_stats(np.array([[0.0], [np.nan], [1.0]]))


def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    stats = compute_stats(rng.standard_normal((50, 6)), "points")
    path = save_stats(stats, tmp_path / "real.npz")
    loaded = load_stats(path)
    assert np.array_equal(loaded.mu, stats.mu)
    assert np.array_equal(loaded.sigma, stats.sigma)
    assert loaded.n == 50
    assert loaded.extractor == "points"


def test_npz_read_by_pytorch_fid(tmp_path):
    rng = np.random.default_rng(1)
    stats = compute_stats(rng.standard_normal((20, 4)))
    path = save_stats(stats, tmp_path / "ours.npz")
    mu, sigma = fid_score.compute_statistics_of_path(str(path), None, 50, 4, "cpu")
    assert np.array_equal(mu, stats.mu)
    assert np.array_equal(sigma, stats.sigma)


def test_npz_from_pytorch_fid_layout(tmp_path):
    # The layout fid_score.save_fid_stats writes: only mu and sigma.
    mu, sigma = np.arange(3.0), np.diag([1.0, 2.0, 3.0])
    path = tmp_path / "theirs.npz"
    np.savez_compressed(path, mu=mu, sigma=sigma)
    loaded = load_stats(path)
    assert np.array_equal(loaded.mu, mu)
    assert np.array_equal(loaded.sigma, sigma)
    assert loaded.n is None
    assert loaded.extractor == ""


def test_npz_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_stats(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", mean=np.zeros(2))
    with pytest.raises(ValueError, match="no mu, sigma"):
        load_stats(tmp_path / "other.npz")
    np.savez(tmp_path / "bad.npz", mu=np.zeros(2), sigma=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="expected"):
        load_stats(tmp_path / "bad.npz")


@pytest.mark.parametrize("content, message", [
    (b"mu,sigma\n1,2\n", "is not an .npz file (it starts with b'mu,sig'"),
    (b"PK\x03\x04 torn", "is not a readable .npz file"),
])
def test_npz_unreadable_file(tmp_path, content, message):
    path = tmp_path / "real.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(message)):
        load_stats(path)


def test_npz_single_array_rejected(tmp_path):
    np.save(tmp_path / "real.npy", np.zeros(3))
    with pytest.raises(ValueError, match="contains a single array"):
        load_stats(tmp_path / "real.npy")


def test_cache_miss_then_hit(tmp_path):
    cache = StatsCache(tmp_path)
    key = StatsCache.make_key(data="abc", n=10, extractor="points")
    assert cache.load(key) is None
    features = np.arange(20, dtype=np.float32).reshape(10, 2)
    stats = compute_stats(features, "points")
    cache.save(key, stats, features)
    hit = cache.load(key)
    assert hit is not None
    assert np.array_equal(hit[0].sigma, stats.sigma)
    assert np.array_equal(hit[1], features)
    assert hit[0].n == 10
    assert list(tmp_path.glob("*.partial*")) == []


def test_cache_key_changes_with_identity():
    base = dict(data="abc", n=10, extractor="points")
    keys = {StatsCache.make_key(**base)}
    for changed in (dict(data="abd"), dict(n=11), dict(extractor="inception")):
        keys.add(StatsCache.make_key(**{**base, **changed}))
    assert len(keys) == 4
    assert StatsCache.make_key(**base) == StatsCache.make_key(**dict(reversed(base.items())))


def test_cache_ignores_corrupt_file(tmp_path):
    cache = StatsCache(tmp_path)
    key = StatsCache.make_key(data="x")
    cache.path(key).write_bytes(b"not an npz")
    assert cache.load(key) is None


def test_default_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "gan-workbench" / "fid"


def test_fingerprint_sensitive_to_content_and_shape():
    array = np.zeros((4, 3), dtype=np.uint8)
    changed = array.copy()
    changed[2, 1] = 1
    digests = {fingerprint_array(array), fingerprint_array(changed),
               fingerprint_array(array.reshape(3, 4)), fingerprint_array(array.astype(np.int16))}
    assert len(digests) == 4


def test_feature_stats_dim():
    assert FeatureStats(mu=np.zeros(5), sigma=np.eye(5)).feature_dim == 5


# Precision and recall -------------------------------------------------------------------------

def test_precision_recall_identical_sets():
    points = np.random.default_rng(0).standard_normal((200, 5))
    assert precision_recall(points, points.copy()) == (1.0, 1.0)


def test_precision_recall_collapsed_fake():
    real = np.random.default_rng(1).standard_normal((200, 5))
    fake = np.repeat(real[17:18], 200, axis=0)
    precision, recall = precision_recall(real, fake)
    assert precision == 1.0
    assert recall <= 1 / 200


def test_precision_recall_by_hand():
    # Real points 0..9 on a line: with k=1 every radius is 1. Fake 0.5 is
    # inside, fake 20 is not: precision 1/2. The two fakes are 19.5 apart, so
    # the ball around fake 0.5 covers every real point: recall 1.
    real = np.arange(10.0)[:, None]
    fake = np.array([[0.5], [20.0]])
    assert precision_recall(real, fake, k=1) == (0.5, 1.0)


def test_precision_recall_disjoint_sets():
    rng = np.random.default_rng(2)
    real = rng.standard_normal((100, 3))
    fake = rng.standard_normal((100, 3)) + 100.0
    assert precision_recall(real, fake) == (0.0, 0.0)


def test_precision_recall_too_few_samples():
    with pytest.raises(ValueError, match="more than k=3"):
        precision_recall(np.zeros((3, 2)), np.zeros((10, 2)))
