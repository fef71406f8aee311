"""Tests for mode-collapse analysis: coverage, diversity, neighbours, the alarm and 2-D fields."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist, pdist
from scipy.stats import entropy

from workbench.core.analysis import (
    DEFAULT_NUM_SAMPLES,
    CollapseAlarm,
    CoverageReport,
    class_coverage,
    discriminator_heatmap,
    diversity_ratio,
    generate_points,
    generator_gradient_field,
    generator_manifold,
    grid_axes,
    kl_divergence,
    latent_grid,
    mean_pairwise_distance,
    mixture_coverage,
    nearest_neighbours,
)
from workbench.core.analysis import features, plane
from workbench.core.data import toy
from workbench.core.validation import ConfigError

RING_STD = 0.02
GRID_STD = 0.05


def ring_centres(modes: int = 8, radius: float = 2.0) -> np.ndarray:
    angles = 2 * np.pi * np.arange(modes) / modes
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def grid_centres() -> np.ndarray:
    values = np.array([-4.0, -2.0, 0.0, 2.0, 4.0])
    return np.array([(x, y) for x in values for y in values])


def sample_mixture(centres: np.ndarray, std: float, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    modes = rng.integers(0, len(centres), count)
    return centres[modes] + rng.normal(0.0, std, (count, 2))


class ConstantGenerator(torch.nn.Module):
    """Maps every latent to the same point, the extreme of mode collapse."""

    def __init__(self, point):
        super().__init__()
        self.register_buffer("point", torch.tensor(point, dtype=torch.float32))

    def forward(self, z):
        return self.point.expand(len(z), -1).clone()


class LinearCritic(torch.nn.Module):
    """D(x) = w . x + b."""

    def __init__(self, w, b=0.0):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor([w]))
            self.linear.bias.fill_(b)

    def forward(self, x):
        return self.linear(x)


# KL divergence


def test_kl_hand_computed():
    # p = (1/2, 1/4, 1/4, 0), q uniform: 1/2 ln 2 + 2 * 1/4 ln 1 = 0.5 ln 2.
    assert kl_divergence(np.array([2, 1, 1, 0]), np.ones(4)) == pytest.approx(0.5 * math.log(2), abs=1e-12)
    # p = (1/2, 1/2), q = (3/4, 1/4): 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3).
    assert kl_divergence(np.array([5, 5]), np.array([3, 1])) == pytest.approx(0.5 * math.log(4 / 3), abs=1e-12)


def test_kl_matches_scipy():
    counts = np.array([7, 0, 3, 12, 1])
    weights = np.array([0.1, 0.3, 0.2, 0.25, 0.15])
    assert kl_divergence(counts, weights) == pytest.approx(entropy(counts, weights), rel=1e-12)


def test_kl_infinite_cases():
    assert kl_divergence(np.zeros(3), np.ones(3)) == math.inf
    assert kl_divergence(np.array([1, 1]), np.array([1, 0])) == math.inf


def test_kl_bad_input():
    with pytest.raises(ValueError, match="one length"):
        kl_divergence(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="non-negative"):
        kl_divergence(np.array([1, -1]), np.ones(2))


# Mixture coverage


def test_coverage_all_modes():
    centres = ring_centres()
    offsets = np.array([[RING_STD, 0.0], [0.0, -2 * RING_STD]])
    points = (centres[:, None, :] + offsets[None]).reshape(-1, 2)
    report = mixture_coverage(points, centres, RING_STD)
    assert report.modes_covered == 8
    assert report.num_modes == 8
    assert report.high_quality_fraction == 1.0
    assert report.kl == pytest.approx(0.0, abs=1e-12)
    assert report.counts.tolist() == [2] * 8
    assert report.covered_fraction == 1.0


def test_coverage_single_mode():
    centres = ring_centres()
    points = np.repeat(centres[3:4], 50, axis=0)
    report = mixture_coverage(points, centres, RING_STD)
    assert report.modes_covered == 1
    assert report.high_quality_fraction == 1.0
    assert report.counts[3] == 50
    assert report.kl == pytest.approx(math.log(8), abs=1e-12)


def test_coverage_far_points():
    points = np.array([[0.0, 0.0], [10.0, 10.0], [1.0, 1.0]])
    report = mixture_coverage(points, ring_centres(), RING_STD)
    assert report.modes_covered == 0
    assert report.high_quality_fraction == 0.0
    assert report.kl == math.inf
    assert report.counts.tolist() == [0] * 8


def test_coverage_three_std_boundary():
    centres = np.array([[0.0, 0.0], [10.0, 0.0]])
    points = np.array([[1.5, 0.0], [0.0, -1.5], [8.5 - 1e-9, 0.0], [0.0, 1.5 + 1e-9]])
    report = mixture_coverage(points, centres, std=0.5)
    assert report.counts.tolist() == [2, 0]
    assert report.high_quality_fraction == 0.5
    assert report.kl == pytest.approx(math.log(2), abs=1e-12)


def test_coverage_mixed_counts():
    centres = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    points = np.array([[0.1, 0.0], [-0.1, 0.1], [4.0, 0.2], [2.0, 2.0]])
    report = mixture_coverage(points, centres, std=0.1, true_weights=np.array([2.0, 1.0, 1.0]))
    assert report.counts.tolist() == [2, 1, 0]
    assert report.modes_covered == 2
    assert report.high_quality_fraction == 0.75
    # p = (2/3, 1/3, 0), q = (1/2, 1/4, 1/4): 2/3 ln(4/3) + 1/3 ln(4/3) = ln(4/3).
    assert report.kl == pytest.approx(math.log(4 / 3), abs=1e-12)


def test_coverage_nan_points():
    centres = ring_centres()
    points = np.array([centres[0], [np.nan, 0.0], [np.inf, np.inf], centres[1]])
    report = mixture_coverage(points, centres, RING_STD)
    assert report.modes_covered == 2
    assert report.high_quality_fraction == 0.5


def test_coverage_accepts_tensors():
    centres = ring_centres()
    report = mixture_coverage(torch.tensor(centres), torch.tensor(centres), RING_STD)
    assert report.modes_covered == 8


def test_coverage_bad_input():
    with pytest.raises(ConfigError, match="std"):
        mixture_coverage(np.zeros((3, 2)), ring_centres(), 0.0)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        mixture_coverage(np.zeros((3, 3)), ring_centres(), RING_STD)


@pytest.mark.parametrize(
    ("centres", "std"), [(ring_centres(), RING_STD), (grid_centres(), GRID_STD)], ids=["ring8", "grid25"]
)
def test_coverage_true_mixture(centres, std):
    points = sample_mixture(centres, std, DEFAULT_NUM_SAMPLES, seed=1)
    report = mixture_coverage(points, centres, std)
    assert report.modes_covered == len(centres)
    # For a 2-D isotropic Gaussian, P(|x - mu| <= 3 std) = 1 - exp(-9 / 2) = 0.98889.
    assert report.high_quality_fraction == pytest.approx(1 - math.exp(-4.5), abs=0.01)
    assert report.kl < 0.02


@pytest.mark.parametrize("factory", [toy.ring8, toy.grid25], ids=["ring8", "grid25"])
def test_coverage_toy_data_sets(factory):
    mixture = factory()
    points = mixture.sample(DEFAULT_NUM_SAMPLES, torch.Generator().manual_seed(0))
    report = mixture_coverage(points, mixture.modes, mixture.mode_std, true_weights=mixture.weights)
    assert report.modes_covered == len(mixture.modes)
    assert report.high_quality_fraction > 0.97


# Class coverage


def test_class_coverage_probabilities():
    probabilities = np.array(
        [
            [0.9, 0.05, 0.05],
            [0.2, 0.7, 0.1],
            [0.4, 0.3, 0.3],  # not confident
            [0.6, 0.2, 0.2],
        ]
    )
    report = class_coverage(probabilities, min_fraction=0.0)
    assert report.counts.tolist() == [2, 1, 0]
    assert report.classes_covered == 2
    assert report.num_classes == 3
    assert report.confident_fraction == 0.75
    # p = (2/3, 1/3, 0), q uniform: 2/3 ln 2 + 1/3 ln 1.
    assert report.kl == pytest.approx(2 / 3 * math.log(2), abs=1e-12)


def test_class_coverage_labels_weights():
    labels = np.array([0, 0, 1, 2])
    report = class_coverage(labels, num_classes=4, data_class_weights=np.array([50, 25, 25, 0]) + 0.0)
    assert report.counts.tolist() == [2, 1, 1, 0]
    assert report.classes_covered == 3
    assert report.confident_fraction == 1.0
    assert report.kl == pytest.approx(0.0, abs=1e-12)


def test_class_coverage_min_fraction():
    # 200 samples at 1% need 2 samples per class, so class 3 with one is not covered.
    labels = np.array([0] * 100 + [1] * 97 + [2] * 2 + [3])
    report = class_coverage(labels, num_classes=5)
    assert report.classes_covered == 3
    assert report.covered_fraction == 0.6


def test_class_coverage_none_confident():
    probabilities = np.full((10, 4), 0.25)
    report = class_coverage(probabilities)
    assert report.confident_fraction == 0.0
    assert report.classes_covered == 0
    assert report.kl == math.inf


def test_class_coverage_bad_input():
    with pytest.raises(ValueError, match="num_classes is required"):
        class_coverage(np.array([0, 1]))
    with pytest.raises(ValueError, match="labels must lie"):
        class_coverage(np.array([0, 3]), num_classes=3)
    with pytest.raises(ValueError, match="3 columns"):
        class_coverage(np.full((2, 3), 1 / 3), num_classes=4)
    with pytest.raises(ValueError, match="data_class_weights"):
        class_coverage(np.array([0, 1]), num_classes=2, data_class_weights=np.ones(3))


# Diversity and neighbours


def test_pairwise_distance_triangle():
    # Pair distances 3, 4 and 5.
    assert mean_pairwise_distance(np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])) == pytest.approx(4.0)


def test_pairwise_distance_blocks(monkeypatch):
    points = np.random.default_rng(0).normal(size=(101, 5))
    monkeypatch.setattr(features, "BLOCK_ENTRIES", 300)
    # cdist's matrix-product form rounds differently from scipy's direct sum.
    assert mean_pairwise_distance(points) == pytest.approx(pdist(points).mean(), rel=1e-9)


def test_diversity_ratio_values():
    real = np.random.default_rng(0).normal(size=(64, 8))
    assert diversity_ratio(real, real) == pytest.approx(1.0)
    assert diversity_ratio(2 * real, real) == pytest.approx(2.0)
    assert diversity_ratio(np.ones((64, 8)), real) == 0.0


def test_diversity_ratio_bad_input():
    with pytest.raises(ValueError, match="identical"):
        diversity_ratio(np.zeros((4, 2)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="same width"):
        diversity_ratio(np.zeros((4, 2)), np.ones((4, 3)))
    with pytest.raises(ValueError, match="at least 2 rows"):
        mean_pairwise_distance(np.zeros((1, 2)))


def test_neighbours_match_brute_force(monkeypatch):
    rng = np.random.default_rng(3)
    query = rng.normal(size=(37, 6)).astype(np.float32)
    train = rng.normal(size=(501, 6)).astype(np.float32)
    train[123] = query[5]
    # Small blocks force several query blocks and several training blocks.
    monkeypatch.setattr(features, "BLOCK_ENTRIES", 2000)
    indices, distances = nearest_neighbours(query, train, k=4)

    reference = cdist(query.astype(np.float64), train.astype(np.float64))
    expected = np.argsort(reference, axis=1)[:, :4]
    assert indices.shape == (37, 4)
    assert indices.dtype == np.int64
    assert np.array_equal(indices, expected)
    np.testing.assert_allclose(distances, np.sort(reference, axis=1)[:, :4], rtol=1e-5, atol=1e-6)
    assert indices[5, 0] == 123
    assert distances[5, 0] == 0.0


def test_neighbours_bad_input():
    with pytest.raises(ConfigError, match="k"):
        nearest_neighbours(np.zeros((2, 3)), np.zeros((4, 3)), k=5)
    with pytest.raises(ValueError, match="same width"):
        nearest_neighbours(np.zeros((2, 3)), np.zeros((4, 2)))


# Generated points and the alarm


def test_generate_points_restores_mode():
    generator = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Dropout(0.5))
    generator.train()
    generator[1].eval()
    points = generate_points(generator, latent_dim=3, num_samples=10, seed=5)
    again = generate_points(generator, latent_dim=3, num_samples=10, seed=5)
    assert points.shape == (10, 2)
    assert np.array_equal(points, again)  # dropout was off
    assert generator.training
    assert not generator[1].training


def test_alarm_fires_on_constant_generator():
    centres = ring_centres()
    real = sample_mixture(centres, RING_STD, 500, seed=0)
    generator = ConstantGenerator([2.0, 0.0])
    alarm = CollapseAlarm(threshold_modes_fraction=0.5, threshold_diversity=0.5, patience=2)
    events = []
    for step in (100, 200, 300, 400):
        points = generate_points(generator, latent_dim=2, seed=step)
        report = mixture_coverage(points, centres, RING_STD)
        assert report.modes_covered == 1
        events.append(alarm.update(step, report, diversity=diversity_ratio(points[:500], real)))

    assert events[0] is None
    assert events[2] is None
    assert events[3] is None
    event = events[1]
    assert event.step == 200
    assert event.metric == "mode_coverage"
    assert [b.metric for b in event.breaches] == ["mode_coverage", "diversity"]
    assert event.breaches[0].value == 0.125
    assert event.breaches[1].value == 0.0
    assert "step 200" in event.message
    assert alarm.fired


@pytest.mark.parametrize(
    ("centres", "std"), [(ring_centres(), RING_STD), (grid_centres(), GRID_STD)], ids=["ring8", "grid25"]
)
def test_alarm_silent_on_true_mixture(centres, std):
    real = sample_mixture(centres, std, 500, seed=0)
    alarm = CollapseAlarm(patience=1)
    for step in range(1, 6):
        points = sample_mixture(centres, std, DEFAULT_NUM_SAMPLES, seed=step)
        report = mixture_coverage(points, centres, std)
        assert alarm.update(step * 1000, report, diversity=diversity_ratio(points[:500], real)) is None
    assert not alarm.fired


def test_alarm_grid_collapse_diversity_only():
    centres = grid_centres()
    real = sample_mixture(centres, GRID_STD, 500, seed=0)
    # Samples from one mode: no coverage check, the diversity ratio alone is far below 0.5.
    points = sample_mixture(centres[12:13], GRID_STD, 500, seed=1)
    alarm = CollapseAlarm(patience=1)
    event = alarm.update(10, diversity=diversity_ratio(points, real))
    assert event.metric == "diversity"
    assert event.breaches[0].value < 0.05


def test_alarm_rearms_after_recovery():
    full = CoverageReport(8, 8, 1.0, 0.0, np.ones(8, dtype=int))
    collapsed = CoverageReport(2, 8, 1.0, math.log(4), np.array([1, 1, 0, 0, 0, 0, 0, 0]))
    alarm = CollapseAlarm(threshold_modes_fraction=0.5, patience=1)
    results = [alarm.update(step, report) for step, report in enumerate([collapsed, collapsed, full, collapsed])]
    assert results[0].step == 0
    assert results[1] is None
    assert results[2] is None
    assert results[3].step == 3


def test_alarm_patience_resets():
    collapsed = CoverageReport(1, 8, 1.0, math.log(8), np.eye(8, dtype=int)[0])
    full = CoverageReport(8, 8, 1.0, 0.0, np.ones(8, dtype=int))
    alarm = CollapseAlarm(patience=2)
    assert alarm.update(1, collapsed) is None
    assert alarm.update(2, full) is None
    assert alarm.update(3, collapsed) is None
    assert alarm.update(4, collapsed).step == 4


def test_alarm_nan_diversity_breaches():
    alarm = CollapseAlarm(threshold_diversity=0.0, patience=1)
    assert alarm.update(1, diversity=0.0) is None
    assert alarm.update(2, diversity=float("nan")).metric == "diversity"


def test_alarm_bad_settings():
    with pytest.raises(ConfigError, match="threshold_modes_fraction"):
        CollapseAlarm(threshold_modes_fraction=1.5)
    with pytest.raises(ConfigError, match="patience"):
        CollapseAlarm(patience=0)
    with pytest.raises(ValueError, match="coverage report"):
        CollapseAlarm().update(1)


# 2-D fields


def test_heatmap_linear_critic():
    critic = LinearCritic([2.0, -1.0], b=0.5)
    heatmap = discriminator_heatmap(critic, (-1.0, 2.0), (0.0, 1.0), resolution=(3, 4))
    xs, ys = grid_axes((-1.0, 2.0), (0.0, 1.0), (3, 4))
    assert xs.tolist() == [-1.0, 0.0, 1.0, 2.0]
    assert ys.tolist() == [0.0, 0.5, 1.0]
    expected = 2.0 * xs[None, :] - 1.0 * ys[:, None] + 0.5
    assert heatmap.shape == (3, 4)
    np.testing.assert_allclose(heatmap, expected, atol=1e-6)


def test_heatmap_probability_and_batches(monkeypatch):
    critic = LinearCritic([1.0, 1.0])
    monkeypatch.setattr(plane, "EVAL_BATCH_SIZE", 7)
    heatmap = discriminator_heatmap(critic, (-2.0, 2.0), (-2.0, 2.0), resolution=5, probability=True)
    xs, ys = grid_axes((-2.0, 2.0), (-2.0, 2.0), 5)
    expected = 1.0 / (1.0 + np.exp(-(xs[None, :] + ys[:, None])))
    np.testing.assert_allclose(heatmap, expected, atol=1e-6)


def test_heatmap_bad_limits():
    with pytest.raises(ConfigError, match="xlim"):
        discriminator_heatmap(LinearCritic([1.0, 0.0]), (1.0, 1.0), (0.0, 1.0))
    with pytest.raises(ConfigError, match="resolution"):
        discriminator_heatmap(LinearCritic([1.0, 0.0]), (0.0, 1.0), (0.0, 1.0), resolution=1)


def test_heatmap_restores_modes():
    critic = torch.nn.Sequential(LinearCritic([1.0, 0.0]), torch.nn.Dropout(0.9))
    critic.train()
    critic[1].eval()
    heatmap = discriminator_heatmap(critic, (0.0, 1.0), (0.0, 1.0), resolution=3)
    np.testing.assert_allclose(heatmap[0], [0.0, 0.5, 1.0], atol=1e-6)  # dropout was off
    assert critic.training and critic[0].training
    assert not critic[1].training


def test_arrows_wasserstein_follow_w():
    w = np.array([0.5, -2.0])
    critic = LinearCritic(w.tolist(), b=3.0)
    points = np.random.default_rng(0).normal(size=(6, 2))
    arrows = generator_gradient_field(critic, points, "wasserstein")
    assert arrows.shape == (6, 2)
    np.testing.assert_allclose(arrows, np.tile(w, (6, 1)), atol=1e-6)
    assert all(p.grad is None for p in critic.parameters())


@pytest.mark.parametrize(
    ("loss", "scale"),
    [
        # -d/dx of softplus(-D) is sigmoid(-D) w.
        ("nonsaturating", lambda d: 1 / (1 + np.exp(d))),
        # -d/dx of -softplus(D) is sigmoid(D) w.
        ("minimax", lambda d: 1 / (1 + np.exp(-d))),
        # -d/dx of (D - 1)^2 / 2 is -(D - 1) w.
        ("lsgan", lambda d: 1 - d),
        ("hinge", lambda d: np.ones_like(d)),
    ],
)
def test_arrows_other_losses(loss, scale):
    w = np.array([1.0, 2.0])
    critic = LinearCritic(w.tolist(), b=-0.5)
    points = np.array([[0.0, 0.0], [1.0, 0.5], [-1.0, -1.0]])
    outputs = points @ w - 0.5
    arrows = generator_gradient_field(critic, points, loss)
    np.testing.assert_allclose(arrows, scale(outputs)[:, None] * w[None, :], rtol=1e-5, atol=1e-6)


def test_arrows_callable_under_no_grad():
    critic = LinearCritic([1.0, -1.0])
    with torch.no_grad():
        arrows = generator_gradient_field(critic, torch.zeros(2, 2), lambda d: 3.0 * d)
    np.testing.assert_allclose(arrows, [[-3.0, 3.0], [-3.0, 3.0]], atol=1e-6)


def test_arrows_unknown_loss():
    with pytest.raises(ConfigError, match="loss"):
        generator_gradient_field(LinearCritic([1.0, 0.0]), np.zeros((1, 2)), "focal")


def test_latent_grid_layout():
    grid = latent_grid(2, span=1.0, lines=3, points_per_line=5)
    assert grid.shape == (2, 3, 5, 2)
    along = torch.linspace(-1.0, 1.0, 5)
    torch.testing.assert_close(grid[0, 2, :, 0], along)
    torch.testing.assert_close(grid[0, 2, :, 1], torch.ones(5))
    torch.testing.assert_close(grid[1, 0, :, 1], along)
    torch.testing.assert_close(grid[1, 0, :, 0], -torch.ones(5))


def test_latent_grid_slice_keeps_base():
    base = torch.arange(5.0)
    grid = latent_grid(5, lines=4, points_per_line=6, dims=(1, 3), base=base)
    assert grid.shape == (2, 4, 6, 5)
    for dim in (0, 2, 4):
        assert torch.all(grid[..., dim] == base[dim])
    torch.testing.assert_close(grid[0, 0, :, 1], torch.linspace(-2.0, 2.0, 6))
    with pytest.raises(ConfigError, match="dims"):
        latent_grid(5, dims=(2, 2))


def test_manifold_linear_generator():
    generator = torch.nn.Linear(2, 2)
    with torch.no_grad():
        generator.weight.copy_(torch.tensor([[2.0, 1.0], [0.0, -1.0]]))
        generator.bias.copy_(torch.tensor([0.5, 1.0]))
    generator.train()
    grid = latent_grid(2, span=1.0, lines=3, points_per_line=4)
    lines = generator_manifold(generator, grid)
    expected = grid.numpy() @ np.array([[2.0, 1.0], [0.0, -1.0]]).T + np.array([0.5, 1.0])
    assert lines.shape == (2, 3, 4, 2)
    np.testing.assert_allclose(lines, expected, atol=1e-6)
    assert generator.training
