"""A folder of awkward and broken image files trains, through the Trainer and through the CLI.

Every readable image is a single colour, so its value after conversion and
resizing is known exactly (JPEG within a small tolerance) and can be found in
the training tensor.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.helpers import REPO
from workbench.core import runs
from workbench.core.config import build_config
from workbench.core.trainer import Trainer

SIZE = 40  # side of the files on disk; training resizes to 32


def _luma(rgb):
    r, g, b = rgb
    return (299 * r + 587 * g + 114 * b) / 1000


def _solid(mode, value, size=SIZE):
    return Image.new(mode, (size, size), value)


def _palette_image(rgb):
    image = Image.new("P", (SIZE, SIZE), 3)
    palette = [0] * 768
    palette[9:12] = list(rgb)
    image.putpalette(palette)
    return image


def _sixteen_bit(value):
    return Image.fromarray(np.full((SIZE, SIZE), value, dtype=np.uint16))


def _write_jpeg(image, path):
    image.save(path, format="JPEG", quality=95)


def _make_folder(root):
    """Write the test files; return {name: (RGB after conversion, tolerance)} and the bad names."""
    root.mkdir()
    good = {}

    def add(name, image, rgb, tolerance=1, **save):
        image.save(root / name, **save)
        good[name] = (rgb, tolerance)

    add("gray.png", _solid("L", 100), (100, 100, 100))
    add("gray_wide.png", Image.new("L", (SIZE + 20, SIZE), 180), (180, 180, 180))
    add("rgb.png", _solid("RGB", (200, 30, 60)), (200, 30, 60))
    _write_jpeg(_solid("RGB", (20, 140, 220)), root / "rgb.jpg")
    good["rgb.jpg"] = ((20, 140, 220), 3)
    _write_jpeg(_solid("CMYK", (0, 255, 255, 0)), root / "cmyk.jpg")  # pure red in CMYK
    good["cmyk.jpg"] = ((255, 0, 0), 3)
    _write_jpeg(_solid("L", 60), root / "gray.jpg")
    good["gray.jpg"] = ((60, 60, 60), 2)
    # Alpha 128 of 255 keeps round(v * 128 / 255) of each colour value.
    add("rgba.png", _solid("RGBA", (200, 100, 50, 128)), (100, 50, 25))
    add("palette.png", _palette_image((10, 20, 30)), (10, 20, 30))
    # 16-bit values map to round(v * 255 / 65535).
    add("sixteen_max.png", _sixteen_bit(65535), (255, 255, 255))
    add("sixteen_half.png", _sixteen_bit(32768), (128, 128, 128))

    bad = []
    (root / "empty.png").write_bytes(b"")
    bad.append("empty.png")
    (root / "notes.jpg").write_text("these are not pixels\n")
    bad.append("notes.jpg")
    whole = (root / "rgb.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    bad.append("truncated.jpg")
    png = (root / "rgb.png").read_bytes()
    (root / "truncated.png").write_bytes(png[: len(png) - 30])
    bad.append("truncated.png")
    return good, bad


@pytest.fixture
def messy_folder(tmp_path):
    return (tmp_path / "images", *_make_folder(tmp_path / "images"))


def _config(folder, channels, **extra):
    return build_config(dict(data=f"folder:{folder}", preset="dcgan", width=8, batch_size=8, steps=3,
                             image_size=32, channels=channels, sample_every=3, log_every=1, **extra))


@pytest.mark.parametrize("channels", [3, 1])
def test_messy_folder_trains(messy_folder, tmp_path, caplog, channels):
    folder, good, bad = messy_folder
    caplog.set_level(logging.INFO, logger="workbench")
    trainer = Trainer(_config(folder, channels), tmp_path / "run")
    dataset = trainer.dataset
    assert dataset.shape == (channels, 32, 32)
    assert len(dataset.images) == len(good)
    assert sorted(path.name for path, _ in dataset.skipped) == sorted(bad)

    # Each kept row contains its file's colour, converted to the configured channels.
    for row, name in enumerate(sorted(good)):
        rgb, tolerance = good[name]
        expected = np.array(rgb if channels == 3 else [_luma(rgb)], dtype=float)
        actual = dataset.images[row].numpy().reshape(channels, -1).astype(float)
        assert np.abs(actual - expected[:, None]).max() <= tolerance, name

    trainer.run()
    trainer.close()
    assert trainer.step == 3
    assert (tmp_path / "run" / runs.CHECKPOINT_FILE).is_file()

    # The unreadable files are listed once, each with a reason, before training starts.
    messages = [record.getMessage() for record in caplog.records]
    skip_lines = [index for index, text in enumerate(messages) if "cannot be read" in text]
    assert len(skip_lines) == 1
    listing = messages[skip_lines[0]].splitlines()
    for name in bad:
        assert len([line for line in listing if f"{os.sep}{name}:" in line]) == 1, name
    first_step = next(index for index, text in enumerate(messages) if text.startswith("step "))
    assert skip_lines[0] < first_step


def test_messy_folder_trains_from_cli(messy_folder, tmp_path):
    folder, good, bad = messy_folder
    out = tmp_path / "cli_run"
    command = [sys.executable, "-m", "workbench", "train", "--data", f"folder:{folder}", "--out", str(out),
               "--steps", "3", "--width", "8", "--batch-size", "8", "--image-size", "32", "--channels", "1",
               "--sample-every", "3", "--log-every", "1", "--preset", "dcgan", "--device", "cpu"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr
    output = result.stdout
    assert output.count("cannot be read") == 1
    assert f"skipped {len(bad)} of {len(good) + len(bad)} image files" in output
    for name in bad:
        assert len([line for line in output.splitlines() if f"{os.sep}{name}:" in line]) == 1, name
    assert output.index("cannot be read") < output.index("step 1/3")
    assert "finished at step 3/3" in output
    assert runs.last_metrics_step(out / runs.METRICS_FILE) == 3
    assert runs.load_checkpoint(out / runs.CHECKPOINT_FILE)["model"]["shape"] == [1, 32, 32]
