"""Fréchet distance against scipy.linalg.sqrtm, closed forms and exact identities."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import scipy.linalg

from workbench.core.fid import frechet
from workbench.core.fid.frechet import FrechetError, frechet_distance


def _sqrtm_reference(mu1, sigma1, mu2, sigma2) -> float:
    # pytorch-fid's formula, without the `disp` argument SciPy 1.18 removes.
    root = scipy.linalg.sqrtm(sigma1 @ sigma2)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(root.real))


def _random_stats(rng, dim: int, samples: int, shift: float = 0.0):
    mixing = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    rows = rng.standard_normal((samples, dim)) @ mixing + shift
    return rows.mean(0), np.atleast_2d(np.cov(rows, rowvar=False)), rows


@pytest.mark.parametrize("dim", [1, 8, 64, 256])
def test_frechet_matches_sqrtm(dim):
    rng = np.random.default_rng(dim)
    mu1, sigma1, _ = _random_stats(rng, dim, 4 * dim + 10)
    mu2, sigma2, _ = _random_stats(rng, dim, 4 * dim + 10, shift=0.3)
    expected = _sqrtm_reference(mu1, sigma1, mu2, sigma2)
    actual = frechet_distance(mu1, sigma1, mu2, sigma2)
    assert expected > 0
    assert abs(actual - expected) / expected < 1e-6


def test_frechet_one_dimension_by_hand():
    # (0 - 3)^2 + 4 + 1 - 2 sqrt(4 * 1) = 9 + 5 - 4
    assert frechet_distance([0.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(10.0, rel=1e-12)


def test_frechet_diagonal_closed_form():
    rng = np.random.default_rng(7)
    a, b = rng.uniform(0.1, 5.0, 32), rng.uniform(0.1, 5.0, 32)
    mu1, mu2 = rng.standard_normal(32), rng.standard_normal(32)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    actual = frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    assert actual == pytest.approx(expected, rel=1e-10)


def test_frechet_identical_stats_zero():
    rng = np.random.default_rng(3)
    mu, sigma, _ = _random_stats(rng, 64, 300)
    assert frechet_distance(mu, sigma, mu.copy(), sigma.copy()) == 0.0


def test_frechet_singular_matches_exact():
    # Fewer samples than dimensions: both covariances are singular, sqrtm is
    # inaccurate, and tr(sqrt(S1 S2)) equals the sum of singular values of
    # X1c X2c^T / (N - 1) computed from the centred data.
    rng = np.random.default_rng(11)
    dim, samples = 128, 40
    mu1, sigma1, rows1 = _random_stats(rng, dim, samples)
    mu2, sigma2, rows2 = _random_stats(rng, dim, samples, shift=0.2)
    centred1, centred2 = rows1 - mu1, rows2 - mu2
    cross = np.linalg.svd(centred1 @ centred2.T / (samples - 1), compute_uv=False).sum()
    diff = mu1 - mu2
    expected = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * cross
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-9)


def test_frechet_second_covariance_singular():
    # S1 of full rank, S2 from fewer samples than dimensions: S2 = A A^T with
    # A = X2c^T / sqrt(N - 1), so tr(sqrt(S1 S2)) is the sum of the square roots
    # of the eigenvalues of the small matrix A^T S1 A.
    rng = np.random.default_rng(12)
    dim = 96
    mu1, sigma1, _ = _random_stats(rng, dim, 400)
    mu2, sigma2, rows2 = _random_stats(rng, dim, 30, shift=0.2)
    factor = (rows2 - mu2).T / np.sqrt(30 - 1)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(factor.T @ sigma1 @ factor), 0.0, None)).sum()
    diff = mu1 - mu2
    expected = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * cross
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-9)


def test_pivoted_eigenvalues_by_hand():
    # S1 = Q diag(0, 4, 0, 9) Q^T has rank 2 with its largest pivot last, so the
    # pivoted factor must be unpermuted. S2 = Q diag(1, 1, 5, 4) Q^T shares the
    # eigenvectors, so S1 S2 has eigenvalues 0, 4, 0, 36.
    rotation, _ = np.linalg.qr(np.random.default_rng(5).standard_normal((4, 4)))
    sigma1 = rotation @ np.diag([0.0, 4.0, 0.0, 9.0]) @ rotation.T
    sigma2 = rotation @ np.diag([1.0, 1.0, 5.0, 4.0]) @ rotation.T
    eigenvalues = frechet._product_eigenvalues_pivoted(sigma1, sigma2)
    np.testing.assert_allclose(np.sort(eigenvalues)[-2:], [4.0, 36.0], rtol=1e-10)
    assert frechet.trace_sqrt_product(sigma1, sigma2) == pytest.approx(8.0, rel=1e-10)


def test_singular_covariance_takes_pivoted_path(monkeypatch):
    rng = np.random.default_rng(13)
    mu1, sigma1, _ = _random_stats(rng, 64, 20)
    mu2, sigma2, _ = _random_stats(rng, 64, 20, shift=0.1)
    calls = []
    original = frechet._product_eigenvalues_pivoted

    def spy(first, second):
        calls.append(np.linalg.matrix_rank(first))
        return original(first, second)

    monkeypatch.setattr(frechet, "_product_eigenvalues_pivoted", spy)
    frechet_distance(mu1, sigma1, mu2, sigma2)
    assert calls == [19]


def test_frechet_zero_covariance():
    # A collapsed set: sqrt(0 * S2) = 0, so d = ||mu1 - mu2||^2 + tr(S2).
    rng = np.random.default_rng(5)
    mu2, sigma2, _ = _random_stats(rng, 16, 100)
    mu1 = np.full(16, 2.0)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(sigma2)
    assert frechet_distance(mu1, np.zeros((16, 16)), mu2, sigma2) == pytest.approx(expected, rel=1e-12)
    assert frechet_distance(mu1, np.zeros((16, 16)), mu1, np.zeros((16, 16))) == 0.0


def test_frechet_rejects_non_finite():
    sigma = np.eye(3)
    with pytest.raises(FrechetError, match="NaN"):
        frechet_distance([0.0, np.nan, 0.0], sigma, np.zeros(3), sigma)
    infinite = sigma.copy()
    infinite[1, 2] = np.inf
    with pytest.raises(FrechetError, match="NaN"):
        frechet_distance(np.zeros(3), infinite, np.zeros(3), sigma)


def test_frechet_rejects_shape_mismatch():
    with pytest.raises(FrechetError, match="dimensions differ"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(FrechetError, match="shape"):
        frechet_distance(np.zeros(3), np.eye(4), np.zeros(3), np.eye(3))


def test_frechet_clearly_negative_raises():
    # Not PSD: eig(S1 S2) = (1, -4), the -4 is dropped, so d = -1 - 2 * 1 < 0.
    with pytest.raises(FrechetError, match="negative"):
        frechet_distance(np.zeros(2), np.diag([1.0, -4.0]), np.zeros(2), np.eye(2))


def test_frechet_retries_with_offset(monkeypatch, caplog):
    calls = []
    original = frechet.trace_sqrt_product

    def fail_once(sigma1, sigma2):
        calls.append(sigma1.copy())
        if len(calls) == 1:
            raise np.linalg.LinAlgError("did not converge")
        return original(sigma1, sigma2)

    monkeypatch.setattr(frechet, "trace_sqrt_product", fail_once)
    with caplog.at_level(logging.WARNING, logger=frechet.__name__):
        value = frechet_distance([0.0, 0.0], np.diag([4.0, 1.0]), [1.0, 0.0], np.eye(2))
    assert len(calls) == 2
    assert np.allclose(calls[1], np.diag([4.0, 1.0]) + 1e-6 * np.eye(2))
    assert "retrying" in caplog.text
    # 1 + (2 - 1)^2 + 0, shifted by the offset's effect of order 1e-6
    assert value == pytest.approx(2.0, abs=1e-5)


def test_frechet_second_failure_raises(monkeypatch):
    def always_fail(sigma1, sigma2):
        raise FloatingPointError("tr(sqrt(S1 S2)) is not finite")

    monkeypatch.setattr(frechet, "trace_sqrt_product", always_fail)
    with pytest.raises(FrechetError, match="even with"):
        frechet_distance(np.zeros(2), np.diag([4.0, 1.0]), np.ones(2), np.eye(2))


def test_trace_sqrt_product_rounding_floor():
    # A singular matrix of rank 19 in 200 dimensions: tr(sqrt(S S)) = tr(S),
    # which must hold to 1e-9 relative rather than be inflated by the square
    # roots of 181 rounding-noise eigenvalues.
    rng = np.random.default_rng(9)
    _, sigma, _ = _random_stats(rng, 200, 20)
    value = frechet.trace_sqrt_product(sigma, sigma.copy())
    assert value == pytest.approx(np.trace(sigma), rel=1e-9)


def test_one_singular_side_skips_pivoted_path(monkeypatch):
    # Real statistics of full rank with those of fewer generated images is the usual FID
    # case: the Cholesky factor of the full-rank side serves, with no pivoted factorisation.
    rng = np.random.default_rng(14)
    mu1, sigma1, _ = _random_stats(rng, 64, 300)
    mu2, sigma2, _ = _random_stats(rng, 64, 20, shift=0.1)

    def fail(first, second):
        raise AssertionError("the pivoted path ran")

    monkeypatch.setattr(frechet, "_product_eigenvalues_pivoted", fail)
    expected = _sqrtm_reference(mu1, sigma1, mu2, sigma2)
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-6)
