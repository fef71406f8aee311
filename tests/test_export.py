"""Exports of metrics, sample grids, progress GIFs and settings."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from workbench.cli import build_parser, gather_train_values, load_config_file
from workbench.core import export, runs
from workbench.core.config import PRESETS, build_config
from workbench.core.trainer import Trainer
from workbench.core.validation import ConfigError

SMALL = dict(data="ring8", preset="dcgan", width=16, batch_size=16, steps=6, checkpoint_every=6,
             sample_every=2, log_every=1000)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished 6-step run with sample grids at steps 2, 4 and 6."""
    folder = tmp_path_factory.mktemp("export") / "run"
    trainer = Trainer(build_config(SMALL), folder)
    trainer.run()
    trainer.close()
    return folder


def test_metrics_copy(run_dir, tmp_path):
    dest = export.export_metrics_csv(run_dir, tmp_path / "metrics.csv")
    assert dest.read_bytes() == (run_dir / runs.METRICS_FILE).read_bytes()
    assert [row["step"] for row in runs.read_metrics(dest)] == [1, 2, 3, 4, 5, 6]


def test_export_rejects_bad_destination(run_dir, tmp_path):
    with pytest.raises(ConfigError) as error:
        export.export_metrics_csv(run_dir, tmp_path / "no_such_folder" / "m.csv")
    assert error.value.field == "dest"
    assert "does not exist" in str(error.value)
    with pytest.raises(ConfigError) as error:
        export.export_metrics_csv(run_dir, tmp_path)
    assert "is a folder" in str(error.value)
    with pytest.raises(ConfigError) as error:
        export.export_metrics_csv(tmp_path / "not_a_run", tmp_path / "m.csv")
    assert error.value.field == "run"


def test_sample_png_latest_and_step(run_dir, tmp_path):
    assert [step for step, _ in export.list_samples(run_dir)] == [2, 4, 6]
    latest = export.export_sample_png(run_dir, tmp_path / "latest.png")
    assert latest.read_bytes() == runs.sample_path(run_dir, 6).read_bytes()
    second = export.export_sample_png(run_dir, tmp_path / "step2.png", step=2)
    assert second.read_bytes() == runs.sample_path(run_dir, 2).read_bytes()
    with pytest.raises(ConfigError) as error:
        export.export_sample_png(run_dir, tmp_path / "x.png", step=3)
    assert error.value.field == "step"
    assert "2, 4, 6" in str(error.value)


def test_progress_gif_frames(run_dir, tmp_path):
    dest = export.export_progress_gif(run_dir, tmp_path / "progress.gif", frame_ms=150)
    with Image.open(dest) as gif:
        assert gif.format == "GIF"
        assert gif.n_frames == 3
        assert gif.info["loop"] == 0
        assert gif.info["duration"] == 150
        frames = []
        for index in range(gif.n_frames):
            gif.seek(index)
            frames.append(np.asarray(gif.convert("RGB"), dtype=float))
    grid = np.asarray(Image.open(runs.sample_path(run_dir, 2)).convert("RGB"), dtype=float)
    assert frames[0].shape == (grid.shape[0] + 14, grid.shape[1], 3)
    # The grid survives the GIF's 256-colour palette closely, and frames differ as training moves.
    assert np.abs(frames[0][: grid.shape[0]] - grid).mean() < 2.0
    assert np.abs(frames[0] - frames[2]).mean() > 0.0


def test_progress_gif_subsamples_and_skips_bad(run_dir, tmp_path, caplog):
    copy = tmp_path / "run"
    (copy / runs.SAMPLES_DIR).mkdir(parents=True)
    for step, path in export.list_samples(run_dir):
        (copy / runs.SAMPLES_DIR / path.name).write_bytes(path.read_bytes())
    runs.sample_path(copy, 8).write_bytes(b"broken png")
    dest = export.export_progress_gif(copy, tmp_path / "two.gif", max_frames=2, label=False)
    with Image.open(dest) as gif:
        assert gif.n_frames == 1  # first (step 2) kept; last (step 8) unreadable and skipped
        assert gif.size == Image.open(runs.sample_path(run_dir, 2)).size
    assert "step_000008.png" in caplog.text


def test_progress_gif_rejects_bad_options(run_dir, tmp_path):
    with pytest.raises(ConfigError, match="max_frames"):
        export.export_progress_gif(run_dir, tmp_path / "a.gif", max_frames=0)
    with pytest.raises(ConfigError, match="frame_ms"):
        export.export_progress_gif(run_dir, tmp_path / "a.gif", frame_ms=5)
    with pytest.raises(ConfigError, match="no readable sample grids"):
        export.export_progress_gif(tmp_path, tmp_path / "a.gif")


def test_spread_keeps_ends():
    assert export._spread(list(range(10)), 4) == [0, 3, 6, 9]
    assert export._spread(list(range(10)), 1) == [9]
    assert export._spread([1, 2], 5) == [1, 2]


@pytest.mark.parametrize("settings", [
    dict(data="ring8"),
    *[dict(data="mnist:/data/mnist", preset=name, steps=1234, seed=2**63 - 1) for name in sorted(PRESETS)],
    dict(data="folder:/home/ana/my faces", preset="sngan", lr_g=3.3e-5, betas=(0.0, 0.99), image_size=64,
         channels=1, z_dim=128, width=48, d_norm="layer", device="cpu", num_samples=100),
])
def test_config_toml_round_trip(tmp_path, settings):
    config = build_config(settings)
    dest = export.export_config_toml(config, tmp_path / "settings.toml")
    assert dest.read_text().startswith("# GAN Workbench training settings")
    assert build_config(load_config_file(dest)) == config


def test_config_toml_from_run_folder(run_dir, tmp_path):
    dest = export.export_config_toml(run_dir, tmp_path / "run.toml")
    assert build_config(load_config_file(dest)).to_dict() == runs.read_config(run_dir)


def test_command_line_overrides_toml(tmp_path):
    config = build_config(dict(data="ring8", preset="wgan-gp", steps=500, lr_g=1e-4))
    toml_path = export.export_config_toml(config, tmp_path / "settings.toml")
    args = build_parser().parse_args(["train", "--config", str(toml_path), "--out", str(tmp_path / "out"),
                                      "--lr-g", "0.001", "--betas", "0.1", "0.2"])
    merged = build_config(gather_train_values(args))
    assert merged.lr_g == 0.001
    assert merged.betas == (0.1, 0.2)
    assert dataclasses.replace(merged, lr_g=config.lr_g, betas=config.betas) == config
