"""compute_fid end to end, with a cheap stand-in for Inception."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from workbench.core.fid import Cancelled, FeatureStats, compute_fid, compute_stats, generator_sampler
from workbench.core.fid import compute as fid_compute
from workbench.core.fid.features import FeatureExtractor
from workbench.core.validation import ConfigError


class ProjectionExtractor(FeatureExtractor):
    """A fixed random projection of the flattened [-1, 1] image, standing in for Inception."""

    feature_dim = 16

    def __init__(self, weights=None, download=False, device="cpu"):
        self.name = f"projection-{self.feature_dim}"
        self.calls = 0
        self.matrix = None

    def __call__(self, batch):
        self.calls += 1
        x = batch.float() / 127.5 - 1 if batch.dtype == torch.uint8 else batch.float()
        x = x.flatten(1)
        if self.matrix is None:
            generator = torch.Generator().manual_seed(0)
            self.matrix = torch.randn(x.shape[1], self.feature_dim, generator=generator)
        return x @ self.matrix / math.sqrt(x.shape[1])


@pytest.fixture
def projection(monkeypatch):
    """Replace the Inception extractor in compute_fid; return the list of instances built."""
    built = []

    def factory(feature_dim):
        def make(*args, **kwargs):
            extractor = ProjectionExtractor(*args, **kwargs)
            extractor.feature_dim = feature_dim
            extractor.name = f"projection-{feature_dim}"
            built.append(extractor)
            return extractor
        monkeypatch.setattr(fid_compute, "InceptionExtractor", make)
        return built

    return factory


def _images(count: int, seed: int, size: int = 8) -> torch.Tensor:
    return torch.randint(0, 256, (count, 1, size, size), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


def test_fid_against_itself_zero(projection, tmp_path):
    projection(16)
    images = _images(300, 0)
    result = compute_fid(images, images, n=200, extractor="inception", cache_dir=tmp_path)
    assert result.value == 0.0
    assert (result.precision, result.recall) == (1.0, 1.0)
    assert result.extractor == "projection-16"
    assert (result.n_real, result.n_fake, result.feature_dim) == (200, 200, 16)
    assert result.warnings == []


def test_fid_matches_stages_by_hand(projection, tmp_path):
    projection(16)
    real, fake = _images(120, 1), _images(120, 2)
    result = compute_fid(real, fake, n=120, extractor="inception", cache_dir=tmp_path)
    extractor = ProjectionExtractor()
    # Both sides use all 120 rows (in permuted order, which moments ignore).
    real_stats = compute_stats(extractor(real).numpy())
    fake_stats = compute_stats(extractor(fake).numpy())
    diff = real_stats.mu - fake_stats.mu
    import scipy.linalg
    root = scipy.linalg.sqrtm(real_stats.sigma @ fake_stats.sigma).real
    expected = diff @ diff + np.trace(real_stats.sigma + fake_stats.sigma) - 2 * np.trace(root)
    assert result.value == pytest.approx(expected, rel=1e-6)


def test_fid_low_n_warns(projection, tmp_path):
    projection(2048)
    result = compute_fid(_images(500, 3, size=48), _images(500, 4, size=48), n=500,
                         extractor="inception", cache_dir=tmp_path)
    assert math.isfinite(result.value)
    assert isinstance(result.value, float)
    assert result.value >= 0.0
    assert result.feature_dim == 2048
    assert any(fid_compute.LOW_N_WARNING in warning for warning in result.warnings)


def test_fid_uses_every_row_of_partial_batch(projection, tmp_path):
    built = projection(16)
    reports = []
    result = compute_fid(_images(1030, 5), _images(1030, 6), n=1030, batch_size=50,
                         extractor="inception", cache_dir=tmp_path,
                         progress=lambda done, total: reports.append((done, total)))
    assert (result.n_real, result.n_fake) == (1030, 1030)
    assert result.real_stats.n == 1030
    assert built[0].calls == 2 * 21  # 20 full batches and one of 30, per side
    assert reports[-1] == (2060, 2060)
    assert reports[20] == (1030, 2060)


def test_fid_small_set_large_batch(projection, tmp_path):
    projection(16)
    result = compute_fid(_images(40, 7), _images(40, 8), n=40, batch_size=64,
                         extractor="inception", cache_dir=tmp_path)
    assert (result.n_real, result.n_fake) == (40, 40)
    assert math.isfinite(result.value)


def test_fid_real_smaller_than_n(projection, tmp_path):
    projection(16)
    result = compute_fid(_images(30, 7), _images(50, 8), n=50, extractor="inception",
                         cache_dir=tmp_path)
    assert (result.n_real, result.n_fake) == (30, 50)
    assert any("only 30 samples" in warning for warning in result.warnings)


@pytest.mark.parametrize("real, n", [(torch.zeros(0, 1, 8, 8, dtype=torch.uint8), 10),
                                     (torch.zeros(1, 1, 8, 8, dtype=torch.uint8), 10)])
def test_fid_empty_real_rejected(projection, tmp_path, real, n):
    projection(16)
    with pytest.raises(ConfigError, match="at least 2"):
        compute_fid(real, _images(20, 0), n=n, extractor="inception", cache_dir=tmp_path)


@pytest.mark.parametrize("n", [0, 1, -5, "many"])
def test_fid_bad_n_rejected(n):
    with pytest.raises(ConfigError, match="^n: "):
        compute_fid(_images(20, 0), _images(20, 1), n=n)


def test_fid_fake_too_small_rejected(projection, tmp_path):
    projection(16)
    with pytest.raises(ConfigError, match="fewer than N = 20"):
        compute_fid(_images(20, 0), _images(0, 1), n=20, extractor="inception", cache_dir=tmp_path)


def test_fid_collapsed_generator_large(projection, tmp_path):
    projection(16)
    real = _images(400, 9)
    first_image = real[:1].float() / 127.5 - 1
    collapsed = compute_fid(real, lambda count: first_image.expand(count, -1, -1, -1), n=400,
                            extractor="inception", cache_dir=tmp_path)
    healthy = compute_fid(real, _images(400, 10), n=400, extractor="inception", cache_dir=tmp_path)
    assert math.isfinite(collapsed.value)
    assert collapsed.value > 5 * healthy.value
    assert collapsed.recall < 0.01


def test_fid_generator_module(projection, tmp_path):
    projection(16)

    class TinyGenerator(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 64)

        def forward(self, z):
            return torch.tanh(self.linear(z)).view(-1, 1, 8, 8)

    torch.manual_seed(0)
    sample = generator_sampler(TinyGenerator().eval(), z_dim=4, seed=3)
    first = compute_fid(_images(100, 0), sample, n=100, extractor="inception", cache_dir=tmp_path)
    again = compute_fid(_images(100, 0), generator_sampler(TinyGenerator().eval(), 4, seed=3),
                        n=100, extractor="inception", cache_dir=tmp_path)
    assert first.value > 0
    assert first.real_stats_from_cache is False
    assert again.real_stats_from_cache is True


def test_fid_cache_hit_skips_real_features(projection, tmp_path):
    built = projection(16)
    real = _images(100, 0)
    first = compute_fid(real, _images(100, 1), n=100, batch_size=50, extractor="inception",
                        cache_dir=tmp_path)
    reports = []
    second = compute_fid(real, _images(100, 1), n=100, batch_size=50, extractor="inception",
                         cache_dir=tmp_path, progress=lambda done, total: reports.append(total))
    assert (first.real_stats_from_cache, second.real_stats_from_cache) == (False, True)
    assert second.value == first.value
    assert (second.precision, second.recall) == (first.precision, first.recall)
    assert built[1].calls == 2  # fake batches only
    assert set(reports) == {100}
    assert len(list(tmp_path.glob("real-*.npz"))) == 1

    compute_fid(real, _images(100, 1), n=99, extractor="inception", cache_dir=tmp_path)
    compute_fid(_images(100, 2), _images(100, 1), n=100, extractor="inception", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("real-*.npz"))) == 3


def test_fid_cache_disabled(projection, tmp_path):
    projection(16)
    compute_fid(_images(50, 0), _images(50, 1), n=50, extractor="inception", cache_dir=tmp_path,
                use_cache=False)
    assert list(tmp_path.iterdir()) == []


def test_fid_cancel_between_batches(projection, tmp_path):
    built = projection(16)
    polls = []

    def cancel():
        polls.append(1)
        return len(polls) > 3

    with pytest.raises(Cancelled):
        compute_fid(_images(500, 0), _images(500, 1), n=500, batch_size=50,
                    extractor="inception", cache_dir=tmp_path, cancel=cancel)
    assert built[0].calls == 3
    assert list(tmp_path.glob("real-*.npz")) == []


def test_fid_real_stats_given(projection, tmp_path):
    projection(16)
    real = _images(100, 0)
    reference = compute_fid(real, _images(100, 1), n=100, extractor="inception", cache_dir=tmp_path)
    from_stats = compute_fid(reference.real_stats, _images(100, 1), n=100, extractor="inception",
                             cache_dir=tmp_path)
    assert from_stats.value == pytest.approx(reference.value, rel=1e-12)
    assert from_stats.precision is None
    assert any("statistics file" in warning for warning in from_stats.warnings)


def test_fid_real_stats_other_extractor_rejected(projection, tmp_path):
    projection(16)
    stats = FeatureStats(mu=np.zeros(16), sigma=np.eye(16), n=10, extractor="inception-x")
    with pytest.raises(ConfigError, match="not comparable"):
        compute_fid(stats, _images(20, 1), n=20, extractor="inception", cache_dir=tmp_path)
    wrong_dim = FeatureStats(mu=np.zeros(3), sigma=np.eye(3), n=10)
    with pytest.raises(ConfigError, match="3 dimensions"):
        compute_fid(wrong_dim, _images(20, 1), n=20, extractor="inception", cache_dir=tmp_path)


def test_fid_points_mixture():
    from workbench.core.data import load_dataset

    ring = load_dataset("ring8")
    same = compute_fid(ring, ring, n=2000)
    noise = torch.Generator().manual_seed(5)
    shifted = compute_fid(ring, lambda count: ring.sample(count, noise) + 1.0, n=2000)
    assert same.extractor == "points"
    assert same.feature_dim == 2
    assert 0 <= same.value < 0.05
    # Shifting every point by (1, 1) adds ||(1, 1)||^2 = 2 to the mean term;
    # the sampling error of the means at N = 2000 is about 0.05 per axis.
    assert shifted.value == pytest.approx(2.0, abs=0.25)
    assert same.precision > 0.9
    assert same.recall > 0.9


def test_fid_extractor_mismatch_rejected():
    with pytest.raises(ConfigError, match="2D point data"):
        compute_fid(_images(20, 0), _images(20, 1), n=10, extractor="points")
    with pytest.raises(ConfigError, match="use points"):
        compute_fid("ring8", "ring8", n=10, extractor="inception")
    with pytest.raises(ConfigError, match="labelled data set"):
        compute_fid(_images(20, 0), _images(20, 1), n=10, extractor="domain")
    with pytest.raises(ConfigError, match="choose one of"):
        compute_fid("ring8", "ring8", n=10, extractor="clip")


def test_fid_run_folder(monkeypatch, projection, tmp_path):
    projection(16)
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(ConfigError, match="has no checkpoint.pt"):
        compute_fid(_images(20, 0), str(run), n=10, extractor="inception", cache_dir=tmp_path)

    (run / "checkpoint.pt").write_bytes(b"")
    generator = torch.nn.Sequential(torch.nn.Linear(3, 64), torch.nn.Tanh(),
                                    torch.nn.Unflatten(1, (1, 8, 8)))
    generator.z_dim = 3
    loaded = []

    def fake_load_generator(run_dir, device="cpu"):
        loaded.append(str(run_dir))
        return generator.eval(), type("Config", (), {"z_dim": 0})()

    import workbench.core.checkpoint
    monkeypatch.setattr(workbench.core.checkpoint, "load_generator", fake_load_generator)
    result = compute_fid(_images(20, 0), str(run), n=10, extractor="inception", cache_dir=tmp_path)
    assert loaded == [str(run)]
    assert result.n_fake == 10


def test_resolve_device():
    assert fid_compute.resolve_device("cpu") == torch.device("cpu")
    assert fid_compute.resolve_device(" CPU ") == torch.device("cpu")
    with pytest.raises(ConfigError, match="device"):
        fid_compute.resolve_device("tpu")
