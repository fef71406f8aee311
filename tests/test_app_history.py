"""Metric history buffer and curve smoothing (no Qt needed)."""

import math

import numpy as np
import pytest

from workbench.app.history import METRIC_COLUMNS, MetricHistory, debiased_ema, peak_decimate, rows_to_array


def steps_block(first: int, last: int) -> np.ndarray:
    """Rows for steps first..last whose every other column is the step times 10."""
    steps = np.arange(first, last + 1, dtype=np.float64)
    block = np.repeat(steps[:, None] * 10.0, len(METRIC_COLUMNS), axis=1)
    block[:, 0] = steps
    return block


def test_ema_matches_hand_values():
    # beta 0.5: s1 = 0.5 -> 0.5/0.5 = 1; s2 = 1.25 -> 1.25/0.75; s3 = 2.125 -> 2.125/0.875.
    smoothed = debiased_ema(np.array([1.0, 2.0, 3.0]), 0.5)
    np.testing.assert_allclose(smoothed, [1.0, 1.25 / 0.75, 2.125 / 0.875])


def test_ema_constant_is_unbiased():
    # Without the 1 - beta**t correction the first value would be 0.4 * 5 = 2.
    smoothed = debiased_ema(np.full(50, 5.0), 0.6)
    np.testing.assert_allclose(smoothed, 5.0)


def test_ema_matches_weighted_average():
    rng = np.random.default_rng(0)
    values = rng.normal(size=40)
    beta = 0.9
    expected = []
    for t in range(1, len(values) + 1):
        weights = beta ** np.arange(t - 1, -1, -1)
        expected.append(np.sum(weights * values[:t]) / np.sum(weights))
    np.testing.assert_allclose(debiased_ema(values, beta), expected, rtol=1e-12)


def test_ema_skips_nan():
    smoothed = debiased_ema(np.array([1.0, np.nan, 3.0]), 0.5)
    assert smoothed[0] == 1.0
    assert math.isnan(smoothed[1])
    # The NaN is skipped, so 3 is the second value: (3 + 0.5 * 1) / 1.5.
    assert smoothed[2] == pytest.approx(3.5 / 1.5)


def test_ema_zero_beta_is_identity():
    values = np.array([3.0, -1.0, 7.0])
    np.testing.assert_array_equal(debiased_ema(values, 0.0), values)


def test_ema_rejects_beta_one():
    with pytest.raises(ValueError, match="beta"):
        debiased_ema(np.ones(3), 1.0)


def test_rows_missing_keys_are_nan():
    table = rows_to_array([{"step": 1, "loss_d": 0.5}, {"step": 2, "gp": 3.0}])
    assert table.shape == (2, len(METRIC_COLUMNS))
    assert table[0, METRIC_COLUMNS.index("loss_d")] == 0.5
    assert math.isnan(table[0, METRIC_COLUMNS.index("gp")])
    assert table[1, METRIC_COLUMNS.index("gp")] == 3.0


def test_history_decimates_by_halving():
    history = MetricHistory(capacity=8)
    history.append(steps_block(1, 20))
    # Worked by hand: steps 1-8 fill it. Step 9 finds it full, so 1,3,5,7 stay and the
    # stride becomes 2. Step 17 leaves 1,5,9,13 and stride 4, then every 4th step is stored.
    np.testing.assert_array_equal(history.column("step"), [1, 5, 9, 13, 17])
    np.testing.assert_array_equal(history.column("loss_d"), [10, 50, 90, 130, 170])
    assert history.stride == 4
    assert history.rows_received == 20


def test_history_same_result_in_pieces():
    whole, pieces = MetricHistory(capacity=16), MetricHistory(capacity=16)
    whole.append(steps_block(1, 100))
    for first in range(1, 101, 7):
        pieces.append(steps_block(first, min(first + 6, 100)))
    np.testing.assert_array_equal(whole.table(), pieces.table())


def test_history_million_rows_stays_bounded():
    history = MetricHistory(capacity=1000)
    for first in range(1, 1_000_001, 50_000):
        history.append(steps_block(first, first + 49_999))
    steps = history.column("step")
    assert len(history) <= 1000
    assert history._data.shape == (1000, len(METRIC_COLUMNS))
    assert np.all(np.diff(steps) == history.stride)   # evenly spaced after every halving
    assert steps[0] == 1
    assert steps[-1] > 1_000_000 - history.stride


def test_history_clear_resets_stride():
    history = MetricHistory(capacity=4)
    history.append(steps_block(1, 10))
    history.clear()
    history.append(steps_block(1, 3))
    assert history.stride == 1
    np.testing.assert_array_equal(history.column("step"), [1, 2, 3])


def test_history_rejects_wrong_width():
    with pytest.raises(ValueError, match="shape"):
        MetricHistory(capacity=4).append(np.zeros((2, 3)))


def test_history_column_is_read_only():
    history = MetricHistory(capacity=4)
    history.append(steps_block(1, 2))
    with pytest.raises(ValueError):
        history.column("step")[0] = 99.0


def test_peak_decimate_keeps_extremes():
    x = np.arange(10.0)
    y = np.array([1, 5, 2, 8, 3, 3, np.nan, np.nan, 0, 9])
    x_out, y_out = peak_decimate(x, y, buckets=2)
    # Two buckets of five: [1, 5, 2, 8, 3] -> (1, 8) at x 0; [3, nan, nan, 0, 9] -> (0, 9) at x 5.
    np.testing.assert_array_equal(x_out, [0, 0, 5, 5])
    np.testing.assert_array_equal(y_out, [1, 8, 0, 9])


def test_peak_decimate_keeps_remainder():
    x = np.arange(11.0)
    y = x * 2
    x_out, y_out = peak_decimate(x, y, buckets=2)
    # ceil(11 / 2) = 6 points per bucket: one full bucket, then five points as they are.
    np.testing.assert_array_equal(x_out, [0, 0, 6, 7, 8, 9, 10])
    np.testing.assert_array_equal(y_out, [0, 10, 12, 14, 16, 18, 20])


def test_peak_decimate_short_unchanged():
    x, y = np.arange(4.0), np.array([3.0, 1.0, 2.0, 0.0])
    x_out, y_out = peak_decimate(x, y, buckets=2)
    assert x_out is x
    assert y_out is y


def test_peak_decimate_all_nan_bucket():
    y = np.array([np.nan] * 4 + [1.0, 2.0, 3.0, 4.0])
    _, y_out = peak_decimate(np.arange(8.0), y, buckets=2)
    assert np.isnan(y_out[:2]).all()
    np.testing.assert_array_equal(y_out[2:], [1, 4])
