"""Class coverage of labelled images in the window, with a domain classifier trained on the run's data."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from tests.helpers import choose
from workbench.app.main_window import MainWindow
from workbench.core.trainer import Trainer

RUN_TIMEOUT_MS = 180_000
LEVELS = {"dark": 30, "grey": 128, "light": 225}   # class folder -> mean grey level
LIGHT = LEVELS["light"] / 127.5 - 1.0               # the light class in the generator's [-1, 1] range


def write_labelled_folder(root, per_class=60, size=28):
    """Write one subfolder of noisy uniform grey PNGs per class in LEVELS."""
    rng = np.random.default_rng(0)
    for name, level in LEVELS.items():
        folder = root / name
        folder.mkdir(parents=True)
        for index in range(per_class):
            pixels = np.clip(level + rng.normal(0, 12, (size, size)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(folder / f"{index}.png")
    return root


class LightGenerator(nn.Module):
    """Generator that draws every latent as the same light grey image: one class of three, as in a collapse."""

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(shape)
        self.offset = nn.Parameter(torch.full(self.shape, LIGHT))

    def forward(self, z):
        return self.offset.expand(len(z), *self.shape) + 0.0 * z[:, :1, None, None]


def light_factory(config, run_dir):
    trainer = Trainer(config, run_dir)
    trainer.generator = LightGenerator(trainer.dataset.shape).to(trainer.device)
    return trainer


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))   # the classifier is cached here
    win = MainWindow(runs_dir=tmp_path / "runs", trainer_factory=light_factory)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    return win


def test_collapsed_generator_covers_one_class(qtbot, tmp_path, window):
    data = write_labelled_folder(tmp_path / "shades")
    setup = window.setup
    choose(setup.data_combo, "folder")
    setup.path_edit.setText(str(data))
    choose(setup.editors["preset"], "dcgan")
    setup.editors["width"].setText("8")
    setup.editors["batch_size"].setText("16")
    setup.editors["steps"].setText("100000")
    assert setup.config is not None, setup.problem()
    coverage = window.analysis.coverage
    coverage.every_spin.setValue(5)
    coverage.warmup_spin.setValue(0)

    assert window.start_run()
    # The classifier trains in the background; evaluations before it is ready have no classes.
    qtbot.waitUntil(lambda: any(record.counts is not None for record in coverage.records), timeout=RUN_TIMEOUT_MS)
    window._on_stop()
    qtbot.waitUntil(lambda: window.state == "idle", timeout=RUN_TIMEOUT_MS)

    record = next(record for record in coverage.records if record.counts is not None)
    assert record.feature_space == "domain"
    assert record.class_names == ("dark", "grey", "light")
    assert list(record.counts) == [0, 0, 1000]
    assert (record.covered, record.total) == (1, 3)
    assert record.high_quality > 0.99
    assert record.kl == pytest.approx(np.log(3), abs=0.01)   # all mass on one of three equal classes
    last = coverage.records[-1]
    assert last.counts is not None
    assert coverage.summary_label.text().startswith(f"step {last.step}, 1 of 3 classes covered")
    # pyqtgraph keeps ticks set with setTicks in _tickLevels and has no getter for them.
    ticks = coverage.histogram_plot.getAxis("bottom")._tickLevels
    assert ticks == [[(0, "dark"), (1, "grey"), (2, "light")]]
    heights = coverage.histogram.opts["height"]
    assert list(heights) == [0.0, 0.0, 1000.0]
    # A constant generator breaks the diversity threshold at the first evaluation, before
    # the classifier is ready, and the alarm stays silent until a healthy evaluation re-arms it.
    assert coverage.banner.isVisible()
    assert coverage.alarms[0].metric == "diversity"
