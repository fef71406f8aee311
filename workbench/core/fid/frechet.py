"""Fréchet distance between two Gaussians, in float64.

    d = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr(sqrt(S1 S2))

The trace term is computed without a general matrix square root. S1 S2 is
similar to a symmetric positive semi-definite matrix (L^T S2 L when S1 = L L^T),
so tr(sqrt(S1 S2)) is the sum of the square roots of that matrix's eigenvalues.
Symmetric eigensolvers replace ``scipy.linalg.sqrtm`` of the non-symmetric
product. They are free of complex round-off and faster: at 2048 dimensions on
one CPU thread, 11-16x for full-rank covariances and about 20x when both
covariances come from 1024 samples (``make bench``, figure "frechet").
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.linalg

logger = logging.getLogger(__name__)

# Diagonal offset added to both covariances when the first attempt fails; the
# same value pytorch-fid (fid_score.calculate_frechet_distance) uses.
RETRY_OFFSET = 1e-6


class FrechetError(ValueError):
    """The Fréchet distance could not be computed from the given statistics."""


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Compute the Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    Parameters
    ----------
    mu1, mu2 : array_like, shape (d,)
        Means.
    sigma1, sigma2 : array_like, shape (d, d)
        Symmetric positive semi-definite covariances.

    Returns
    -------
    float
        A finite, non-negative distance. Rounding that leaves the result a
        hair below zero is clamped to 0.

    Raises
    ------
    FrechetError
        On mismatched shapes, non-finite inputs, or when the eigensolver fails
        even after adding ``RETRY_OFFSET * I`` to both covariances.
    """
    mu1, sigma1 = _as_float64_stats(mu1, sigma1, "first")
    mu2, sigma2 = _as_float64_stats(mu2, sigma2, "second")
    if mu1.shape != mu2.shape:
        raise FrechetError(f"feature dimensions differ: {mu1.shape[0]} and {mu2.shape[0]}")

    diff = mu1 - mu2
    mean_term = float(diff @ diff)
    trace_term = float(np.trace(sigma1) + np.trace(sigma2))
    if np.array_equal(sigma1, sigma2):
        # sqrt(S S) = S for PSD S. This is exact, where the eigensolvers would
        # leave a relative rounding error near 1e-9.
        cross_term = float(np.trace(sigma1))
    else:
        cross_term = _trace_sqrt_product_with_retry(sigma1, sigma2)
    distance = mean_term + trace_term - 2.0 * cross_term
    return _clamp_rounding(distance, mean_term + trace_term, mu1.shape[0])


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Return tr(sqrt(sigma1 @ sigma2)) for symmetric PSD float64 matrices.

    Raises ``np.linalg.LinAlgError`` when an eigensolver does not converge,
    and ``FloatingPointError`` when the result is not finite.
    """
    eigenvalues = _product_eigenvalues_cholesky(sigma1, sigma2)
    if eigenvalues is None:
        eigenvalues = _product_eigenvalues_pivoted(sigma1, sigma2)
    eigenvalues = _zero_below_rank_tolerance(eigenvalues)
    result = float(np.sqrt(eigenvalues).sum())
    if not np.isfinite(result):
        raise FloatingPointError("tr(sqrt(S1 S2)) is not finite")
    return result


def _product_eigenvalues_cholesky(sigma1: np.ndarray, sigma2: np.ndarray) -> np.ndarray | None:
    # LAPACK's generalized problem of type 2 returns the eigenvalues of a @ b
    # from chol(b) = L and the symmetric L^T a L, without inverting L. The
    # Cholesky factorisation fails when b is singular, as a covariance of fewer
    # samples than dimensions is. eig(S1 S2) = eig(S2 S1), so either covariance
    # may be b: FID usually pairs full-rank real statistics with those of fewer
    # generated images. When both fail, None sends the caller to the pivoted path.
    # The "gv" driver took 0.57 s at d = 2048 on one thread and the default "gvd"
    # 0.78 s, because divide and conquer gains nothing when only eigenvalues are needed.
    for a, b in ((sigma1, sigma2), (sigma2, sigma1)):
        try:
            return scipy.linalg.eigh(a, b, type=2, eigvals_only=True, check_finite=False, driver="gv")
        except np.linalg.LinAlgError:
            continue
    return None


def _product_eigenvalues_pivoted(sigma1: np.ndarray, sigma2: np.ndarray) -> np.ndarray:
    # Pivoted Cholesky stops at the numerical rank r of S1: P^T S1 P = L L^T with
    # L of shape (d, r). With C = P L, S1 = C C^T, and S1 S2 has the nonzero
    # eigenvalues of the r x r matrix C^T S2 C. For N < d samples r < N, so this
    # costs a fraction of an eigendecomposition of S1 (0.45 s against 1.5 s at
    # d = 2048 and N = 1024 on one thread).
    factor, pivots, rank, info = scipy.linalg.lapack.dpstrf(sigma1, lower=1)
    if info < 0:
        raise np.linalg.LinAlgError(f"pivoted Cholesky rejected argument {-info}")
    lower = np.tril(factor[:, :rank])
    columns = np.empty_like(lower)
    columns[pivots - 1] = lower   # row pivots[j] - 1 of P L is row j of L (LAPACK counts from 1)
    middle = columns.T @ sigma2 @ columns
    middle = 0.5 * (middle + middle.T)  # remove the asymmetry that rounding left
    return np.linalg.eigvalsh(middle)


def _zero_below_rank_tolerance(eigenvalues: np.ndarray) -> np.ndarray:
    # Eigenvalues of a PSD matrix below dim * eps * max are rounding noise (the
    # tolerance np.linalg.matrix_rank uses). Zeroing them, negative ones
    # included, keeps sqrt() from turning 1e-13 of noise into 3e-7 of signal
    # in each of the null directions a covariance from N < d samples has.
    largest = float(np.max(np.abs(eigenvalues), initial=0.0))
    tolerance = eigenvalues.shape[0] * np.finfo(np.float64).eps * largest
    return np.where(eigenvalues > tolerance, eigenvalues, 0.0)


def _trace_sqrt_product_with_retry(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    try:
        return trace_sqrt_product(sigma1, sigma2)
    except (np.linalg.LinAlgError, FloatingPointError) as error:
        logger.warning("tr(sqrt(S1 S2)) failed (%s); retrying with %g added to the diagonals",
                       error, RETRY_OFFSET)
    offset = RETRY_OFFSET * np.eye(sigma1.shape[0])
    try:
        return trace_sqrt_product(sigma1 + offset, sigma2 + offset)
    except (np.linalg.LinAlgError, FloatingPointError) as error:
        raise FrechetError(
            f"tr(sqrt(S1 S2)) failed even with {RETRY_OFFSET:g} added to the covariance "
            f"diagonals ({error}); check the features for constant or duplicated columns"
        ) from error


def _clamp_rounding(distance: float, scale: float, dim: int) -> float:
    # Bound on the rounding error of the trace term: each of the dim
    # eigenvalues may carry an absolute error near dim * eps * scale^2, and its
    # square root then contributes up to sqrt(dim * eps) * scale.
    tolerance = 2.0 * dim * np.sqrt(dim * np.finfo(np.float64).eps) * max(scale, 1e-300)
    if distance >= 0.0:
        return float(distance)
    if distance > -tolerance:
        return 0.0
    raise FrechetError(
        f"Fréchet distance came out negative ({distance:.6g}, rounding tolerance "
        f"{tolerance:.3g}); the covariances are probably not positive semi-definite"
    )


def _as_float64_stats(mu, sigma, which: str) -> tuple[np.ndarray, np.ndarray]:
    mu = np.atleast_1d(np.asarray(mu, dtype=np.float64))
    sigma = np.atleast_2d(np.asarray(sigma, dtype=np.float64))
    dim = mu.shape[0]
    if mu.ndim != 1 or sigma.shape != (dim, dim):
        raise FrechetError(
            f"{which} statistics: expected mu of shape (d,) and sigma of shape (d, d), "
            f"got {mu.shape} and {sigma.shape}"
        )
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma))):
        raise FrechetError(f"{which} statistics contain NaN or infinite values")
    return mu, sigma
