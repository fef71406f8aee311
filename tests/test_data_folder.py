"""Loading a folder of image files: odd formats, broken files, class labels, real CIFAR-10 JPEGs."""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from workbench.core.data import ImageDataset, load_dataset
from workbench.core.data.images import find_image_files
from workbench.core.validation import ConfigError

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CIFAR10_TEST = SHARED_DATA / "cifar10-test"
SIZE = 8


def save(image: Image.Image, path: Path, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)
    return path


def solid(mode: str, colour, size: tuple[int, int] = (SIZE, SIZE)) -> Image.Image:
    return Image.new(mode, size, colour)


def jpeg_bytes(colour=(10, 200, 30), size=(32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def build_odd_folder(root: Path) -> dict[str, tuple[int, int, int]]:
    """Write one file of each odd kind; return the RGB colour expected for each readable file.

    All readable images are uniform and already SIZE x SIZE (or become uniform after
    the center crop), so resizing leaves the values exact.
    """
    expected = {}
    save(solid("L", 77), root / "gray.png")
    expected["gray.png"] = (77, 77, 77)
    save(solid("RGB", (200, 100, 50)), root / "rgb.bmp")
    expected["rgb.bmp"] = (200, 100, 50)
    save(solid("RGB", (200, 100, 50)), root / "UPPER.PNG")
    expected["UPPER.PNG"] = (200, 100, 50)
    save(solid("RGB", (200, 100, 50), (64, 64)), root / "lossless.webp", lossless=True)
    expected["lossless.webp"] = (200, 100, 50)

    # Alpha 128 keeps 128/255 of each value: 200 -> 100.39, 100 -> 50.2, 50 -> 25.1.
    save(solid("RGBA", (200, 100, 50, 128)), root / "rgba.png")
    expected["rgba.png"] = (100, 50, 25)
    save(solid("RGBA", (255, 255, 255, 0)), root / "clear.png")
    expected["clear.png"] = (0, 0, 0)
    save(solid("LA", (200, 128)), root / "la.png")
    expected["la.png"] = (100, 100, 100)

    # CMYK (0, 255, 255, 0) is pure red.
    save(solid("CMYK", (0, 255, 255, 0)), root / "cmyk.jpg", quality=100)
    expected["cmyk.jpg"] = (255, 0, 0)

    palette = solid("P", 1)
    palette.putpalette([255, 0, 0, 10, 20, 30] + [0, 0, 0] * 254)
    save(palette, root / "palette.gif")
    expected["palette.gif"] = (10, 20, 30)
    save(palette, root / "palette_clear.png", transparency=1)
    expected["palette_clear.png"] = (0, 0, 0)

    # 16-bit grayscale: 65535 -> 255, 32768 -> round(127.50) = 128.
    save(Image.fromarray(np.full((SIZE, SIZE), 65535, dtype=np.uint16)), root / "white16.png")
    expected["white16.png"] = (255, 255, 255)
    save(Image.fromarray(np.full((SIZE, SIZE), 32768, dtype=np.uint16)), root / "mid16.tif")
    expected["mid16.tif"] = (128, 128, 128)
    save(Image.fromarray(np.full((SIZE, SIZE), 32768, dtype=np.int32)), root / "mid32.tiff")
    expected["mid32.tiff"] = (128, 128, 128)

    # 16 x 8 with dark side bands: the center crop keeps only the middle 8 columns.
    wide = np.zeros((SIZE, 2 * SIZE), dtype=np.uint8)
    wide[:, 4:12] = 90
    save(Image.fromarray(wide), root / "wide.png")
    expected["wide.png"] = (90, 90, 90)
    save(solid("RGB", (40, 80, 120), (4 * SIZE, 4 * SIZE)), root / "big.png")
    expected["big.png"] = (40, 80, 120)
    return expected


def build_broken_files(root: Path) -> list[str]:
    """Write files with image extensions that cannot be decoded; return their names."""
    (root / "empty.png").write_bytes(b"")
    (root / "notes.jpg").write_text("these are my notes, not a picture\n")
    data = jpeg_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 2])
    png = io.BytesIO()
    solid("RGB", (1, 2, 3), (64, 64)).save(png, "PNG")
    (root / "cut.png").write_bytes(png.getvalue()[:60])
    return ["cut.png", "empty.png", "notes.jpg", "truncated.jpg"]


def test_folder_odd_images(tmp_path, caplog):
    expected = build_odd_folder(tmp_path)
    broken = build_broken_files(tmp_path)
    (tmp_path / "readme.txt").write_text("not an image extension, ignored")
    save(solid("RGB", (1, 1, 1)), tmp_path / ".hidden.png")
    save(solid("RGB", (1, 1, 1)), tmp_path / ".cache" / "thumb.png")

    with caplog.at_level(logging.WARNING, logger="workbench.core.data"):
        dataset = load_dataset(f"folder:{tmp_path}", image_size=SIZE)

    assert isinstance(dataset, ImageDataset)
    assert dataset.name == f"folder:{tmp_path.name}"
    assert dataset.shape == (3, SIZE, SIZE)
    assert dataset.labels is None
    assert dataset.class_names is None
    assert sorted(path.name for path, _ in dataset.skipped) == broken
    assert all(reason for _, reason in dataset.skipped)

    readable = [path.name for path in find_image_files(tmp_path) if path.name not in broken]
    assert sorted(readable) == sorted(expected)
    assert len(dataset) == len(expected)
    for index, name in enumerate(readable):
        pixels = dataset.images[index]
        colour = expected[name]
        if name == "cmyk.jpg":
            assert torch.all((pixels.int() - torch.tensor(colour).view(3, 1, 1)).abs() <= 2), name
        else:
            assert torch.all(pixels == torch.tensor(colour, dtype=torch.uint8).view(3, 1, 1)), name

    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "skipped 4 of" in warnings[0].getMessage()
    for name in broken:
        assert name in warnings[0].getMessage()


def test_folder_grayscale_output(tmp_path):
    save(solid("RGB", (200, 100, 50)), tmp_path / "a.png")
    save(solid("RGBA", (200, 100, 50, 128)), tmp_path / "b.png")
    save(Image.fromarray(np.full((SIZE, SIZE), 65535, dtype=np.uint16)), tmp_path / "c.png")
    dataset = load_dataset(f"folder:{tmp_path}", image_size=4, channels=1)
    assert dataset.shape == (1, 4, 4)
    # Luma 0.299 R + 0.587 G + 0.114 B: (200, 100, 50) -> 124.2, (100, 50, 25) -> 62.1.
    assert dataset.images[0].unique().tolist() == [124]
    assert dataset.images[1].unique().tolist() == [62]
    assert dataset.images[2].unique().tolist() == [255]


def test_folder_sixteen_bit_gradient(tmp_path):
    values = np.array([[0, 257, 32768, 65535, 128, 129, 384, 65280]] * SIZE, dtype=np.uint16)
    save(Image.fromarray(values), tmp_path / "ramp.png")
    dataset = load_dataset(f"folder:{tmp_path}", image_size=SIZE, channels=1)
    # round(v / 257): 128 / 257 = 0.498 -> 0, 129 / 257 = 0.502 -> 1, 384 / 257 = 1.49 -> 1.
    assert dataset.images[0, 0, 0].tolist() == [0, 1, 128, 255, 0, 1, 1, 254]


def test_folder_exif_orientation(tmp_path):
    stored = np.zeros((SIZE, 2 * SIZE), dtype=np.uint8)
    stored[:, SIZE:] = 255
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    save(image, tmp_path / "rotated.png", exif=exif)
    dataset = load_dataset(f"folder:{tmp_path}", image_size=SIZE, channels=1)
    # Displayed, the image is 8 wide and 16 high with the dark half on top; the crop keeps rows 4-11.
    pixels = dataset.images[0, 0]
    assert torch.all(pixels[:4] == 0)
    assert torch.all(pixels[4:] == 255)


def test_folder_resize_antialiased(tmp_path):
    checker = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)
    save(Image.fromarray(checker), tmp_path / "checker.png")
    dataset = load_dataset(f"folder:{tmp_path}", image_size=8, channels=1)
    # An antialiased 8x downscale averages the checkerboard to mid grey; point sampling would give 0 or 255.
    assert torch.all((dataset.images.int() - 128).abs() <= 1)


def test_folder_class_labels(tmp_path):
    for name, count in (("dogs", 2), ("cats", 3), ("birds", 1)):
        for index in range(count):
            save(solid("RGB", (index, 0, 0)), tmp_path / name / f"{index}.png")
    dataset = load_dataset(f"folder:{tmp_path}", image_size=SIZE)
    assert dataset.class_names == ["birds", "cats", "dogs"]
    assert dataset.labels.tolist() == [0, 1, 1, 1, 2, 2]
    assert dataset.labels.dtype == torch.int64


def test_folder_labels_skip_broken(tmp_path):
    save(solid("RGB", (5, 5, 5)), tmp_path / "a" / "1.png")
    (tmp_path / "a" / "2.png").write_bytes(b"")
    save(solid("RGB", (5, 5, 5)), tmp_path / "b" / "1.png")
    dataset = load_dataset(f"folder:{tmp_path}", image_size=SIZE)
    assert dataset.labels.tolist() == [0, 1]
    assert [path.name for path, _ in dataset.skipped] == ["2.png"]


@pytest.mark.parametrize("layout", ["one_subfolder", "top_level_file", "nested"])
def test_folder_no_labels(tmp_path, layout):
    save(solid("RGB", (5, 5, 5)), tmp_path / "a" / "1.png")
    if layout == "top_level_file":
        save(solid("RGB", (5, 5, 5)), tmp_path / "b" / "1.png")
        save(solid("RGB", (5, 5, 5)), tmp_path / "2.png")
    if layout == "nested":
        save(solid("RGB", (5, 5, 5)), tmp_path / "b" / "deeper" / "1.png")
    dataset = load_dataset(f"folder:{tmp_path}", image_size=SIZE)
    assert dataset.labels is None
    assert dataset.class_names is None


def test_folder_missing(tmp_path):
    with pytest.raises(ConfigError, match="folder not found") as info:
        load_dataset(f"folder:{tmp_path / 'nope'}")
    assert info.value.field == "data"
    file_path = tmp_path / "x.png"
    save(solid("RGB", (1, 1, 1)), file_path)
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        load_dataset(f"folder:{file_path}")


def test_folder_empty(tmp_path):
    (tmp_path / "notes.txt").write_text("no images")
    with pytest.raises(ConfigError, match="contains no image files") as info:
        load_dataset(f"folder:{tmp_path}")
    assert ".png" in str(info.value)
    assert info.value.field == "data"


def test_folder_nothing_readable(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.jpg").write_text("text")
    with pytest.raises(ConfigError, match="none of the 2 image files") as info:
        load_dataset(f"folder:{tmp_path}")
    assert "a.png" in str(info.value)


@pytest.mark.skipif(not CIFAR10_TEST.is_dir(), reason=f"CIFAR-10 test JPEGs not found in {CIFAR10_TEST}")
def test_folder_cifar10_real():
    started = time.perf_counter()
    dataset = load_dataset(f"folder:{CIFAR10_TEST}")
    elapsed = time.perf_counter() - started
    assert len(dataset) == 10_000
    assert dataset.shape == (3, 32, 32)
    assert dataset.skipped == []
    assert dataset.class_names == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                   "ship", "truck"]
    assert torch.bincount(dataset.labels).tolist() == [1000] * 10
    # 32x32 JPEGs are stored at the target size, so the pixels are the decoder's output unchanged.
    with Image.open(CIFAR10_TEST / "airplane" / "0000.jpg") as first:
        np.testing.assert_array_equal(dataset.images[0].permute(1, 2, 0).numpy(), np.asarray(first.convert("RGB")))
    # About 2 s on 2 shared cores; the bound only catches a decoder gone badly slow.
    assert elapsed < 60
