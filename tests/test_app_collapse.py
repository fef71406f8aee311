"""2D plane layers and the collapse alarm in the window, on real ring8 runs."""

import json
import math

import numpy as np
import pyqtgraph as pg
import torch
from torch import nn

from workbench.app.live_analysis import EVENTS_FILE, MANIFOLD_LINES, MANIFOLD_POINTS, HEATMAP_RESOLUTION
from workbench.app.main_window import MainWindow
from workbench.app.plane_view import arrow_segments, polyline_connect
from workbench.core.data.toy import RING8_RADIUS, RING8_STD
from workbench.core.trainer import Trainer

RUN_TIMEOUT_MS = 120_000


def make_window(qtbot, tmp_path, trainer_factory=None):
    win = MainWindow(runs_dir=tmp_path / "runs", trainer_factory=trainer_factory)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    setup = win.setup
    setup.data_combo.setCurrentIndex(setup.data_combo.findData("ring8"))
    setup.editors["preset"].setCurrentIndex(setup.editors["preset"].findData("wgan-gp"))
    return win


def set_steps(win, steps):
    win.setup.editors["steps"].setText(str(steps))
    assert win.setup.config is not None, win.setup.problem()


def run_to_end(qtbot, win):
    assert win.start_run()
    qtbot.waitUntil(lambda: win.state == "idle", timeout=RUN_TIMEOUT_MS)


class ConstantGenerator(nn.Module):
    """Maps every latent to the origin; the offset keeps the generator loss differentiable."""

    def __init__(self):
        super().__init__()
        self.offset = nn.Parameter(torch.zeros(2))

    def forward(self, z):
        return self.offset.expand(len(z), 2) + 0.0 * z[:, :1]


class MixtureGenerator(nn.Module):
    """A perfect ring8 generator: the angle of z picks the mode, z adds the mode's noise."""

    def __init__(self):
        super().__init__()
        self.offset = nn.Parameter(torch.zeros(2))

    def forward(self, z):
        angle = torch.atan2(z[:, 1], z[:, 0])   # in (-pi, pi]
        mode = torch.floor((angle + math.pi) / (2 * math.pi) * 8).clamp(0, 7)
        centre_angle = 2 * math.pi * mode / 8
        centres = RING8_RADIUS * torch.stack([torch.cos(centre_angle), torch.sin(centre_angle)], dim=1)
        return centres + RING8_STD * torch.randn_like(centres) * 0.5 + self.offset


def factory_with(generator_class):
    def factory(config, run_dir):
        trainer = Trainer(config, run_dir)
        trainer.generator = generator_class().to(trainer.device)
        return trainer

    return factory


def test_segments_and_connect():
    points = np.array([[0.0, 0.0], [1.0, 1.0]])
    directions = np.array([[2.0, 0.0], [0.0, -1.0]])
    x, y = arrow_segments(points, directions, max_length=0.5)
    np.testing.assert_allclose(x, [0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(y, [0.0, 0.0, 1.0, 0.75])
    lines = np.arange(2 * 3 * 4 * 2, dtype=float).reshape(2, 3, 4, 2)
    x, y, connect = polyline_connect(lines)
    assert len(x) == 24
    assert connect.tolist() == [True, True, True, False] * 6


def test_plane_layers_ring8(qtbot, tmp_path):
    win = make_window(qtbot, tmp_path)
    set_steps(win, 120)
    overlay = win.analysis.overlay
    for name in ("heatmap", "arrows", "manifold"):
        overlay.set_layer(name, True)
    run_to_end(qtbot, win)

    assert overlay.frames_shown >= 1
    scatter_items = win.samples_view.scatter_widget.getPlotItem().items
    for item in (overlay.heat_image, overlay.arrows, overlay.manifold):
        assert item in scatter_items
        assert item.isVisible()
    assert overlay.heat_image.image.shape == (HEATMAP_RESOLUTION, HEATMAP_RESOLUTION)
    assert overlay.color_bar.isVisible()
    low, high = overlay.color_bar.levels()
    assert low < high   # critic values, not a fixed probability range
    arrow_x, arrow_y = overlay.arrows.getData()
    assert len(arrow_x) == 2 * 64   # one segment per fixed-noise point
    manifold_x, _ = overlay.manifold.getData()
    assert len(manifold_x) == 2 * MANIFOLD_LINES * MANIFOLD_POINTS
    # The heat map spans the real points with a margin.
    rect = overlay.heat_image.mapRectToParent(overlay.heat_image.boundingRect())
    assert rect.left() < -RING8_RADIUS
    assert rect.right() > RING8_RADIUS


def test_alarm_constant_generator(qtbot, tmp_path):
    win = make_window(qtbot, tmp_path, factory_with(ConstantGenerator))
    set_steps(win, 40)
    coverage = win.analysis.coverage
    coverage.every_spin.setValue(10)
    coverage.warmup_spin.setValue(0)
    run_to_end(qtbot, win)

    assert [record.covered for record in coverage.records] == [0, 0, 0, 0]
    assert coverage.records[0].diversity == 0.0
    assert coverage.banner.isVisible()
    assert "step 20" in coverage.banner.text()
    assert "mode_coverage" in coverage.banner.text()
    lines = [item for item in win.loss_plot.plot_item.items if isinstance(item, pg.InfiniteLine) and item.value() == 20]
    assert len(lines) == 1
    run_dir = next(p for p in win.runs_dir.iterdir() if p.is_dir())
    events = [json.loads(line) for line in (run_dir / EVENTS_FILE).read_text().splitlines()]
    assert len(events) == 1   # fired once, then silent until a healthy evaluation re-arms it
    assert events[0]["step"] == 20
    assert events[0]["kind"] == "collapse"
    assert events[0]["metric"] == "mode_coverage"
    assert events[0]["value"] == 0.0
    assert events[0]["threshold"] == 0.5
    assert "time" in events[0]


def test_alarm_silent_healthy(qtbot, tmp_path):
    win = make_window(qtbot, tmp_path, factory_with(MixtureGenerator))
    set_steps(win, 40)
    coverage = win.analysis.coverage
    coverage.every_spin.setValue(10)
    coverage.warmup_spin.setValue(0)
    run_to_end(qtbot, win)

    assert [record.covered for record in coverage.records] == [8, 8, 8, 8]
    assert all(record.diversity > 0.8 for record in coverage.records)
    assert all(record.kl < 0.05 for record in coverage.records)
    assert not coverage.banner.isVisible()
    assert coverage.markers == []
    run_dir = next(p for p in win.runs_dir.iterdir() if p.is_dir())
    assert not (run_dir / EVENTS_FILE).exists()


def test_single_updates_refresh_views(qtbot, tmp_path):
    win = make_window(qtbot, tmp_path)
    set_steps(win, 100)
    win.analysis.overlay.set_layer("heatmap", True)
    assert win.start_run(paused=True)
    qtbot.waitUntil(lambda: win.state == "paused", timeout=RUN_TIMEOUT_MS)
    assert win.analysis.d_step_action.isEnabled()
    before = win.analysis.overlay.frames_shown
    win.analysis.d_step_action.trigger()
    qtbot.waitUntil(lambda: win.analysis.overlay.frames_shown == before + 1, timeout=RUN_TIMEOUT_MS)
    win.analysis.g_step_action.trigger()
    qtbot.waitUntil(lambda: win.analysis.overlay.frames_shown == before + 2, timeout=RUN_TIMEOUT_MS)
    assert win.last_step == 0   # single updates are not steps
    win.close()
    assert win.thread is None
