"""Plot, samples and log widgets on their own, fed with known values."""

import logging
import threading

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPointF

from workbench.app.history import METRIC_COLUMNS, MetricHistory, debiased_ema
from workbench.app.log_panel import LogPanel
from workbench.app.plots import MetricPlot, Series
from workbench.app.samples_view import MAX_GRIDS, SamplesView


def metric_rows(steps, **columns):
    table = np.full((len(steps), len(METRIC_COLUMNS)), np.nan)
    table[:, 0] = steps
    for name, values in columns.items():
        table[:, METRIC_COLUMNS.index(name)] = values
    return table


@pytest.fixture
def plot(qtbot):
    history = MetricHistory(capacity=1000)
    widget = MetricPlot("Losses", [Series("loss_d", "D loss", "#1f77b4"), Series("gp", "penalty", "#ff7f0e")],
                        history, log_toggle=True, smoothing=0.5)
    qtbot.addWidget(widget)
    widget.resize(600, 300)
    return widget


def test_plot_draws_raw_and_smoothed(plot):
    plot.history.append(metric_rows([1, 2, 3], loss_d=[1.0, 2.0, 3.0]))
    assert plot.refresh()
    x, raw = plot.raw_curves["loss_d"].getData()
    _, smooth = plot.smooth_curves["loss_d"].getData()
    np.testing.assert_array_equal(x, [1, 2, 3])
    np.testing.assert_array_equal(raw, [1, 2, 3])
    np.testing.assert_allclose(smooth, [1.0, 1.25 / 0.75, 2.125 / 0.875])
    assert not plot.refresh()   # nothing new


def test_plot_empty_series_not_drawn(plot):
    plot.history.append(metric_rows([1, 2], loss_d=[1.0, 2.0]))
    plot.refresh()
    x, _ = plot.raw_curves["gp"].getData()
    assert x is None or len(x) == 0


def test_plot_smoothing_slider_redraws(plot):
    plot.history.append(metric_rows([1, 2, 3], loss_d=[1.0, 5.0, 1.0]))
    plot.refresh()
    plot.smoothing_slider.setValue(0)
    _, smooth = plot.smooth_curves["loss_d"].getData()
    np.testing.assert_array_equal(smooth, [1.0, 5.0, 1.0])
    assert plot.smoothing_label.text() == "0.000"


def test_plot_csv_export(plot, tmp_path):
    plot.history.append(metric_rows([10, 20], loss_d=[4.0, 2.0], gp=[0.5, 0.25]))
    path = plot.export_csv(tmp_path / "plot.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == "step,loss_d,loss_d_smoothed,gp,gp_smoothed"
    # Smoothed second value with beta 0.5: (2 + 0.5 * 4) / 1.5.
    table = np.loadtxt(path, delimiter=",", skiprows=1)
    np.testing.assert_allclose(table, [[10, 4.0, 4.0, 0.5, 0.5], [20, 2.0, 4.0 / 1.5, 0.25, 0.5 / 1.5]])


def test_plot_png_export(plot, tmp_path):
    plot.history.append(metric_rows(np.arange(1, 50), loss_d=np.sin(np.arange(1, 50))))
    path = plot.export_png(tmp_path / "plot.png")
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width > 100
    assert image.height > 50


def test_plot_log_scale(plot):
    plot.set_log_scale(True)
    assert plot.log_checkbox.isChecked()
    assert plot.plot_item.ctrl.logYCheck.isChecked()
    plot.log_checkbox.setChecked(False)
    assert not plot.plot_item.ctrl.logYCheck.isChecked()


def test_plot_readout_text(plot):
    plot.history.append(metric_rows([1, 2], loss_d=[1.0, 3.0], gp=[np.nan, 2.0]))
    plot.refresh()
    assert plot.describe_point(0) == "step 1   D loss 1 (1)"
    assert plot.describe_point(1) == "step 2   D loss 3 (2.333)   penalty 2 (2)"


def test_plot_crosshair_follows_mouse(plot, qtbot):
    plot.show()
    qtbot.waitExposed(plot)
    plot.history.append(metric_rows(np.arange(1, 101), loss_d=np.ones(100)))
    plot.refresh()
    plot.plot_item.setXRange(1, 100, padding=0)
    scene_point = plot.plot_item.vb.mapViewToScene(QPointF(42.2, 1.0))
    plot._on_mouse_moved((scene_point,))
    assert plot.vline.isVisible()
    assert plot.vline.value() == 42
    assert plot.readout.text().startswith("step 42 ")


def test_plot_x_axis_grows_in_doublings(plot):
    plot.set_step_range(0, 10_000)
    plot.history.append(metric_rows(np.arange(1, 101), loss_d=np.ones(100)))
    plot.refresh()
    # 100 steps * 1.25 = 125 -> next power of two, 128.
    assert plot._x_upper_shown == 128
    plot.history.append(metric_rows(np.arange(101, 103), loss_d=np.ones(2)))
    plot.refresh()
    assert plot._x_upper_shown == 128
    plot.history.append(metric_rows(np.arange(103, 9_001), loss_d=np.ones(8_898)))
    plot.refresh()
    assert plot._x_upper_shown == 10_000   # capped at the run's last step


def test_plot_y_range_hysteresis(plot):
    plot.smoothing_slider.setValue(0)
    plot.set_step_range(0, 10_000)
    plot.history.append(metric_rows([1, 2], loss_d=[1.0, 3.0]))
    plot.refresh()
    # Values span [1, 3], so the range keeps 10% of 2 free on each side.
    assert plot._y_shown == pytest.approx((0.8, 3.2))
    np.testing.assert_allclose(plot.plot_item.vb.viewRange()[1], [0.8, 3.2])
    # A value inside the range that keeps the span above half of it changes nothing.
    plot.history.append(metric_rows([3], loss_d=[2.5]))
    plot.refresh()
    assert plot._y_shown == pytest.approx((0.8, 3.2))
    # A value above the range widens it to the new span [1, 5].
    plot.history.append(metric_rows([4], loss_d=[5.0]))
    plot.refresh()
    assert plot._y_shown == pytest.approx((0.6, 5.4))


def test_plot_y_range_shrinks_and_stops_on_pan(plot):
    plot.smoothing_slider.setValue(0)
    plot.set_step_range(0, 10_000)
    plot.history.append(metric_rows([1, 2], loss_d=[0.0, 10.0]))
    plot.refresh()
    assert plot._y_shown == pytest.approx((-1.0, 11.0))
    # New values spanning 0.2 fill less than half of the 12 shown, so the range shrinks.
    plot.history.clear()
    plot.history.append(metric_rows([3, 4], loss_d=[1.0, 1.2]))
    plot.refresh()
    assert plot._y_shown == pytest.approx((0.98, 1.22))
    # After the user pans or zooms, the range stays where the user left it.
    plot._on_range_changed_manually()
    plot.history.append(metric_rows([5], loss_d=[100.0]))
    plot.refresh()
    assert plot._y_shown == pytest.approx((0.98, 1.22))


def test_plot_y_range_log_scale(plot):
    plot.smoothing_slider.setValue(0)
    plot.set_step_range(0, 10_000)
    plot.history.append(metric_rows([1, 2, 3], loss_d=[0.1, 10.0, -1.0]))
    plot.set_log_scale(True)
    # In log mode the view's y is log10(value): [-1, 1], and the negative value is left out.
    assert plot._y_shown == pytest.approx((-1.2, 1.2))


def test_plot_relabel(plot):
    plot.set_labels("Critic", {"loss_d": "critic loss"})
    assert plot.legend.getLabel(plot.smooth_curves["loss_d"]).text == "critic loss"
    assert plot.plot_item.titleLabel.text == "Critic"


def test_ema_curve_matches_history_after_decimation(qtbot):
    history = MetricHistory(capacity=8)
    widget = MetricPlot("x", [Series("loss_g", "G", "#000000")], history, smoothing=0.9)
    qtbot.addWidget(widget)
    history.append(metric_rows(np.arange(1, 21), loss_g=np.arange(1, 21, dtype=float)))
    widget.refresh()
    _, smooth = widget.smooth_curves["loss_g"].getData()
    np.testing.assert_allclose(smooth, debiased_ema(np.array([1.0, 5, 9, 13, 17]), 0.9))


@pytest.fixture
def samples(qtbot):
    widget = SamplesView()
    qtbot.addWidget(widget)
    return widget


def grid(value: int) -> np.ndarray:
    return np.full((10, 12, 3), value, dtype=np.uint8)


def test_samples_scrub_back(samples):
    samples.reset(is_image=True)
    for step in (0, 10, 20):
        samples.show_samples(step, grid(step))
    assert samples.grid_label.text() == "step 20 (3/3)"
    samples.grid_slider.setValue(1)
    assert samples.current_image()[0, 0, 0] == 10
    samples.show_samples(30, grid(30))
    # Scrubbed back: the view stays on step 10 while new grids arrive.
    assert samples.current_image()[0, 0, 0] == 10
    assert samples.grid_label.text() == "step 10 (2/4)"
    samples.grid_slider.setValue(3)
    samples.show_samples(40, grid(40))
    assert samples.current_image()[0, 0, 0] == 40


def test_samples_keep_bounded_grids(samples):
    samples.reset(is_image=True)
    for step in range(MAX_GRIDS + 25):
        samples.show_samples(step, grid(step % 256))
    assert samples.grid_count() == MAX_GRIDS
    assert samples.grid_slider.maximum() == MAX_GRIDS - 1
    samples.show_grid(0)
    assert samples.grid_label.text() == f"step 25 (1/{MAX_GRIDS})"


def test_samples_points(samples):
    real = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=np.float32)
    samples.reset(is_image=False, real_points=real)
    samples.show_samples(7, np.array([[0.5, -0.5]], dtype=np.float32))
    assert samples.stack.currentIndex() == 1
    np.testing.assert_array_equal(samples.real_scatter.getData()[0], [1.0, 3.0, 5.0])
    np.testing.assert_array_equal(samples.fake_scatter.getData()[1], [-0.5])
    assert samples.points_label.text() == "generated points at step 7"


def test_log_panel_from_other_thread(qtbot):
    panel = LogPanel(logger_name="workbench.test_log_panel")
    qtbot.addWidget(panel)
    log = logging.getLogger("workbench.test_log_panel.child")
    worker = threading.Thread(target=lambda: log.info("from a worker <b>&</b>"))
    worker.start()
    worker.join()
    qtbot.waitUntil(lambda: "from a worker <b>&</b>" in panel.toPlainText(), timeout=5000)
    log.warning("careful")
    qtbot.waitUntil(lambda: "careful" in panel.toPlainText(), timeout=5000)
    panel.detach()
    assert panel.handler not in logging.getLogger("workbench.test_log_panel").handlers
    log.info("after detach")
    qtbot.wait(50)
    assert "after detach" not in panel.toPlainText()


def test_long_history_drawn_decimated(qtbot):
    from workbench.app.plots import DISPLAY_BUCKETS

    history = MetricHistory(capacity=20_000)
    widget = MetricPlot("x", [Series("loss_g", "G", "#000000")], history, smoothing=0.0)
    qtbot.addWidget(widget)
    values = np.zeros(20_000)
    values[12_345] = 50.0                     # one spike must survive the reduction
    history.append(metric_rows(np.arange(1, 20_001), loss_g=values))
    widget.refresh()
    x, y = widget.raw_curves["loss_g"].getData()
    assert len(x) <= 2 * DISPLAY_BUCKETS + 20_000 // DISPLAY_BUCKETS
    assert y.max() == 50.0
    assert x[0] == 1


def test_scatter_legend_lists_each_series_once(qtbot):
    from workbench.app.samples_view import SamplesView

    view = SamplesView()
    qtbot.addWidget(view)
    legend = view.scatter_widget.plotItem.legend
    assert [label.text for _, label in legend.items] == ["real", "generated"]


def test_points_view_range_hysteresis(qtbot):
    view = SamplesView()
    qtbot.addWidget(view)
    ring = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    view.reset(is_image=False, real_points=ring)
    low, high = view._points_range
    # The real points span 4, and the margin is 25% of that on each side.
    np.testing.assert_allclose(low, [-3.0, -3.0])
    np.testing.assert_allclose(high, [3.0, 3.0])

    view.show_samples(1, np.array([[0.5, 0.5], [-2.5, 1.0]]))
    assert np.allclose(view._points_range[0], [-3.0, -3.0])   # inside: no change
    view.show_samples(2, np.array([[8.0, 0.0]]))
    low, high = view._points_range
    # Grown to x in [-2, 8] and y in [-2, 2], each with a margin of 2.5.
    np.testing.assert_allclose(low, [-4.5, -4.5])
    np.testing.assert_allclose(high, [10.5, 4.5])
    for step in range(3, 7):   # the points fill 4 of 15: shrinks on the 5th small batch only
        view.show_samples(step, np.array([[0.0, 0.0]]))
        assert np.allclose(view._points_range[1], [10.5, 4.5])
    view.show_samples(7, np.array([[0.0, 0.0]]))
    assert np.allclose(view._points_range[1], [3.0, 3.0])

    view.scatter_widget.getViewBox().sigRangeChangedManually.emit([True, True])   # the user zooms
    view.show_samples(8, np.array([[20.0, 20.0]]))
    assert np.allclose(view._points_range[1], [3.0, 3.0])
    view.reset(is_image=False, real_points=ring)
    view.show_samples(9, np.array([[20.0, 20.0]]))
    assert view._points_range[1][0] > 20.0
