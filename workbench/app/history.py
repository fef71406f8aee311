"""Bounded metric history and curve smoothing for the live plots.

Qt-free so the buffer and the smoothing can be tested without a display. A run of
any length keeps at most ``capacity`` rows. When the buffer fills, every other row
is dropped and from then on only every ``stride``-th incoming row is kept. Memory
stays flat and the stored points stay evenly spaced in steps.
"""

from __future__ import annotations

import logging
from typing import Iterable, Mapping, Sequence

import numpy as np
from scipy.signal import lfilter

logger = logging.getLogger(__name__)

# Columns of a metrics row, in the order the trainer documents them.
METRIC_COLUMNS = (
    "step", "loss_d", "loss_g", "grad_norm_d", "grad_norm_g",
    "d_real", "d_fake", "wasserstein", "gp", "wall_time",
)


def rows_to_array(rows: Iterable[Mapping[str, float]], columns: Sequence[str] = METRIC_COLUMNS) -> np.ndarray:
    """Pack metric rows (dicts) into a float64 array of shape (len(rows), len(columns)).

    Missing keys become NaN, so a loss without a gradient penalty still fits.
    """
    table = [[float(row.get(name, np.nan)) for name in columns] for row in rows]
    return np.asarray(table, dtype=np.float64).reshape(len(table), len(columns))


def debiased_ema(values: np.ndarray, beta: float) -> np.ndarray:
    """Smooth ``values`` with an exponential moving average corrected for its zero start.

    s_t = beta * s_(t-1) + (1 - beta) * x_t with s_0 = 0, returned as s_t / (1 - beta**t)
    so the first points are not pulled toward zero. This is TensorBoard's classic scalar
    smoothing (tensorboard/components/vz_line_chart2/line-chart.ts). Non-finite values
    are passed through unchanged and skipped by the average, and t counts finite values.
    """
    values = np.asarray(values, dtype=np.float64)
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    smoothed = values.copy()
    finite = np.isfinite(values)
    if beta == 0.0 or not finite.any():
        return smoothed

    x = values[finite]
    s = lfilter([1.0 - beta], [1.0, -beta], x)
    t = np.arange(1, x.size + 1, dtype=np.float64)
    smoothed[finite] = s / -np.expm1(t * np.log(beta))  # 1 - beta**t without cancellation
    return smoothed


def peak_decimate(x: np.ndarray, y: np.ndarray, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """Reduce a curve to the minimum and maximum of ``buckets`` equal runs of points.

    Each full bucket becomes two points at its first x, (x0, min) and (x0, max), so spikes
    stay visible. Points after the last full bucket are kept as they are. NaNs are ignored
    inside a bucket, and a bucket of NaNs stays NaN. Curves of at most ``2 * buckets``
    points are returned unchanged.
    """
    if len(y) <= 2 * buckets:
        return x, y
    size = int(np.ceil(len(y) / buckets))
    full = len(y) // size * size
    y_buckets = y[:full].reshape(-1, size)
    low = np.fmin.reduce(y_buckets, axis=1)
    high = np.fmax.reduce(y_buckets, axis=1)

    x_out = np.concatenate([np.repeat(x[:full:size], 2), x[full:]])
    y_out = np.concatenate([np.column_stack([low, high]).ravel(), y[full:]])
    return x_out, y_out


class MetricHistory:
    """Fixed-capacity table of metric rows that halves its resolution when full.

    Parameters
    ----------
    capacity
        Maximum number of stored rows; must be even and at least 2.
    columns
        Column names; ``"step"`` is the x axis of every plot.
    """

    def __init__(self, capacity: int = 100_000, columns: Sequence[str] = METRIC_COLUMNS):
        if capacity < 2 or capacity % 2:
            raise ValueError(f"capacity must be an even number of at least 2, got {capacity}")
        self.columns = tuple(columns)
        self.capacity = capacity
        self._index = {name: i for i, name in enumerate(self.columns)}
        self._data = np.full((capacity, len(self.columns)), np.nan)
        self._size = 0
        self.stride = 1   # one stored row per `stride` received rows
        self._seen = 0    # rows received since the last clear
        self.version = 0  # bumped on every change, so views redraw only when needed

    def __len__(self) -> int:
        return self._size

    @property
    def rows_received(self) -> int:
        """Number of rows appended since the last clear, stored or not."""
        return self._seen

    def clear(self) -> None:
        self._size = 0
        self._seen = 0
        self.stride = 1
        self.version += 1

    def append(self, block: np.ndarray) -> None:
        """Append rows of shape (k, len(columns)), keeping every ``stride``-th row."""
        block = np.asarray(block, dtype=np.float64)
        if block.ndim != 2 or block.shape[1] != len(self.columns):
            raise ValueError(f"expected rows of shape (k, {len(self.columns)}), got {block.shape}")
        start = 0
        while start < len(block):
            # Rows of block[start:] whose received index is a multiple of the stride.
            kept = np.arange(start + (-self._seen) % self.stride, len(block), self.stride)
            if kept.size == 0:
                self._seen += len(block) - start
                break
            if self._size == self.capacity:
                self._decimate()
                continue
            taken = kept[:self.capacity - self._size]
            self._data[self._size:self._size + taken.size] = block[taken]
            self._size += taken.size
            consumed = int(taken[-1]) + 1
            self._seen += consumed - start
            start = consumed
        self.version += 1

    def _decimate(self) -> None:
        # Keep rows 0, 2, 4, ...: they are exactly the rows whose received index is a
        # multiple of the doubled stride, so the spacing stays uniform.
        half = self.capacity // 2
        self._data[:half] = self._data[0:self.capacity:2]
        self._data[half:] = np.nan
        self._size = half
        self.stride *= 2
        logger.debug("metric history full: keeping one row in %d", self.stride)

    def column(self, name: str) -> np.ndarray:
        """Return a read-only view of the stored values of column ``name``."""
        view = self._data[:self._size, self._index[name]]
        view.flags.writeable = False
        return view

    def table(self) -> np.ndarray:
        """Return a copy of the stored rows, shape (len(self), len(columns))."""
        return self._data[:self._size].copy()
