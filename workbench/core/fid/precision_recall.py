"""Improved precision and recall (Kynkäänniemi et al., NeurIPS 2019).

Each feature set approximates its manifold by the union of balls around its
samples, each ball reaching the sample's k-th nearest neighbour within the same
set. Precision is the fraction of fake samples inside the real manifold,
recall the fraction of real samples inside the fake manifold. A point on a
ball's boundary counts as inside (the paper's "<=").
"""

from __future__ import annotations

import numpy as np
import torch

DEFAULT_K = 3
# Distances per block: 8e6 float64 values take 64 MB.
BLOCK_ELEMENTS = 8_000_000


def precision_recall(real_features, fake_features, k: int = DEFAULT_K) -> tuple[float, float]:
    """Return (precision, recall) of fake against real features.

    Parameters
    ----------
    real_features, fake_features : array_like, shape (N, d) and (M, d)
        Both sets need more than ``k`` rows.
    k : int
        Neighbour whose distance sets each ball's radius; the paper uses 3.
    """
    real = torch.as_tensor(np.asarray(real_features), dtype=torch.float64)
    fake = torch.as_tensor(np.asarray(fake_features), dtype=torch.float64)
    for name, rows in (("real", real), ("fake", fake)):
        if rows.ndim != 2 or rows.shape[0] <= k:
            raise ValueError(f"precision/recall needs more than k={k} {name} samples of shape "
                             f"(N, d), got {tuple(rows.shape)}")
    real_radii = _kth_neighbour_distances(real, k)
    fake_radii = _kth_neighbour_distances(fake, k)
    return _coverage(real, fake, real_radii, fake_radii)


def _squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # |a|^2 + |b|^2 - 2 a.b uses a matrix product, much faster than pairwise
    # differences; float64 keeps identical points at a distance of ~0, not 1e-3.
    squared = (a @ b.T).mul_(-2.0)
    squared.add_((a * a).sum(1)[:, None]).add_((b * b).sum(1)[None, :])
    return squared.clamp_(min=0.0)


def _kth_neighbour_distances(points: torch.Tensor, k: int) -> torch.Tensor:
    # The smallest distance of each row is to itself (0), so the k-th
    # neighbour is the (k + 1)-th smallest.
    radii = []
    rows = _block_rows(points.shape[0])
    for start in range(0, points.shape[0], rows):
        block = _squared_distances(points[start:start + rows], points)
        radii.append(block.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii)  # squared radii


def _coverage(real: torch.Tensor, fake: torch.Tensor, real_radii: torch.Tensor,
              fake_radii: torch.Tensor) -> tuple[float, float]:
    # One pass over the real-fake distances serves both directions: a fake
    # column is covered by any real ball (precision), a real row by any fake
    # ball (recall).
    fake_covered = torch.zeros(fake.shape[0], dtype=torch.bool)
    real_covered = 0
    rows = _block_rows(fake.shape[0])
    for start in range(0, real.shape[0], rows):
        block = _squared_distances(real[start:start + rows], fake)  # (rows, M)
        fake_covered |= (block <= real_radii[start:start + rows, None]).any(dim=0)
        real_covered += int((block <= fake_radii[None, :]).any(dim=1).sum())
    return float(fake_covered.float().mean()), real_covered / real.shape[0]


def _block_rows(columns: int) -> int:
    return max(1, BLOCK_ELEMENTS // max(columns, 1))
