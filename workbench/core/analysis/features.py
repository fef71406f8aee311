"""Diversity and nearest-neighbour search on feature vectors.

Features are (N, D) arrays or tensors, such as classifier embeddings of
images or the raw coordinates of 2-D points. Distances are Euclidean.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from workbench.core.validation import coerce_int

logger = logging.getLogger(__name__)

# Maximum number of entries in one block of the distance matrix, 2**22
# (32 MiB in float64), so 60,000 training features are compared a block at a
# time instead of as a 60,000-column matrix per query batch.
BLOCK_ENTRIES = 2**22


def mean_pairwise_distance(features: np.ndarray | torch.Tensor) -> float:
    """Return the mean Euclidean distance over all pairs i < j of the N rows.

    The sum runs in float64 over blocks of rows, so memory stays bounded. The
    cost is O(N^2 D), so subsample large sets to a few thousand rows.
    """
    features = _as_matrix(features, "features").double()
    count = len(features)
    if count < 2:
        raise ValueError(f"features must contain at least 2 rows to form a pair, got {count}")
    rows_per_block = max(1, BLOCK_ENTRIES // count)
    total = 0.0
    for start in range(0, count, rows_per_block):
        block = torch.cdist(features[start : start + rows_per_block], features)  # (rows, N)
        total += block.sum().item()
    # Each pair appears twice in the full matrix and the diagonal is zero.
    return total / (count * (count - 1))


def diversity_ratio(fake_features: np.ndarray | torch.Tensor, real_features: np.ndarray | torch.Tensor) -> float:
    """Return the mean pairwise distance of the fake features divided by that of the real ones.

    A value near 1 means the generated batch is as spread out as real data,
    and a generator that maps every latent to one output scores 0. Compare batches
    of similar size, because small batches give noisier means.
    """
    fake = _as_matrix(fake_features, "fake_features")
    real = _as_matrix(real_features, "real_features")
    if fake.shape[1] != real.shape[1]:
        raise ValueError(f"fake and real features must have the same width, got {fake.shape[1]} and {real.shape[1]}")
    real_spread = mean_pairwise_distance(real)
    if real_spread == 0:
        raise ValueError("all real features are identical, so the diversity ratio is undefined")
    return mean_pairwise_distance(fake) / real_spread


def nearest_neighbours(
    query_features: np.ndarray | torch.Tensor, train_features: np.ndarray | torch.Tensor, k: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Find the ``k`` training rows closest to each query row.

    Returns ``indices`` (Q, k) int64 into ``train_features`` and ``distances``
    (Q, k), both sorted from nearest to farthest. The candidates are ranked
    with the fast matrix-product form of ``torch.cdist``, whose rounding can
    swap near-ties, and the distances returned are then recomputed directly
    from the differences, so an exact duplicate of a training row is at
    distance 0. Distances are float64 for float64 inputs and float32 otherwise.
    """
    query = _as_matrix(query_features, "query_features")
    train = _as_matrix(train_features, "train_features")
    if query.shape[1] != train.shape[1]:
        raise ValueError(
            f"query and train features must have the same width, got {query.shape[1]} and {train.shape[1]}"
        )
    k = coerce_int("k", k, minimum=1, maximum=len(train))
    dtype = torch.float64 if torch.float64 in (query.dtype, train.dtype) else torch.float32
    query, train = query.to(dtype), train.to(dtype)

    # A block of queries needs (queries, k, D) entries for the exact distances.
    queries_per_block = max(1, BLOCK_ENTRIES // max(k * query.shape[1], 1024))
    indices, distances = [], []
    for start in range(0, len(query), queries_per_block):
        block_indices, block_distances = _nearest_block(query[start : start + queries_per_block], train, k)
        indices.append(block_indices)
        distances.append(block_distances)
    if not indices:
        empty = torch.empty(0, k, dtype=dtype)
        return empty.long().numpy(), empty.numpy()
    return torch.cat(indices).numpy(), torch.cat(distances).numpy()


def _nearest_block(query: torch.Tensor, train: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the indices and exact distances (q, k) of the k nearest training rows.

    ``train`` is scanned in blocks, keeping the k best candidates so far.
    """
    train_per_block = max(k, BLOCK_ENTRIES // len(query))
    best_distances = torch.empty(len(query), 0, dtype=query.dtype)
    best_indices = torch.empty(len(query), 0, dtype=torch.int64)
    for start in range(0, len(train), train_per_block):
        block = torch.cdist(query, train[start : start + train_per_block])  # (q, block)
        candidates = torch.cat([best_distances, block], dim=1)
        candidate_indices = torch.cat(
            [best_indices, torch.arange(start, start + block.shape[1]).expand(len(query), -1)], dim=1
        )
        best_distances, position = candidates.topk(k, dim=1, largest=False)
        best_indices = candidate_indices.gather(1, position)

    exact = (query[:, None, :] - train[best_indices]).norm(dim=-1)  # (q, k)
    exact, order = exact.sort(dim=1)
    return best_indices.gather(1, order), exact


def _as_matrix(values: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    """Return ``values`` as a floating-point CPU tensor of shape (N, D)."""
    tensor = torch.as_tensor(values).detach().cpu()
    if tensor.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        tensor = tensor.float()
    return tensor
