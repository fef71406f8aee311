"""Data specs, toy mixtures, IDX and CIFAR-10 readers, dataset loading and download."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from workbench.core.data import (
    DATA_KINDS,
    TOY_DATASETS,
    DataSpec,
    ImageDataset,
    PointMixture,
    default_image_shape,
    load_dataset,
    parse_data_spec,
    to_display_range,
    to_model_range,
)
from workbench.core.data.idx import read_idx, read_idx_bytes
from workbench.core.validation import ConfigError

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MNIST_DIR = SHARED_DATA / "mnist"
needs_mnist = pytest.mark.skipif(
    not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(), reason=f"MNIST test split not found in {MNIST_DIR}"
)

_IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int16): 0x0B, np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D}


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    """Write ``array`` as an IDX file, gzipped when ``compress`` is True."""
    header = bytes([0, 0, _IDX_CODES[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def write_mnist_split(folder: Path, split: str, images: np.ndarray, labels: np.ndarray, compress: bool) -> None:
    suffix = ".gz" if compress else ""
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", images, compress)
    write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", labels, compress)


def small_mnist(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, 28, 28), dtype=np.uint8), rng.integers(0, 10, count, dtype=np.uint8)


# ---- specs ----------------------------------------------------------------

def test_spec_toy_kinds():
    for kind in TOY_DATASETS:
        assert parse_data_spec(kind) == DataSpec(kind, None)
    assert parse_data_spec("  Ring8 ") == DataSpec("ring8", None)


def test_spec_path_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = parse_data_spec("mnist:data/mnist")
    assert spec.kind == "mnist"
    assert spec.path == tmp_path / "data" / "mnist"
    assert str(spec) == f"mnist:{tmp_path / 'data' / 'mnist'}"


def test_spec_round_trip(tmp_path):
    texts = ["ring8", "grid25", "spiral", f"mnist:{tmp_path}", f"fashion-mnist:{tmp_path}/a b",
             f"cifar10:{tmp_path}", f"folder:{tmp_path}/x:y"]
    for text in texts:
        spec = parse_data_spec(text)
        assert parse_data_spec(str(spec)) == spec
        assert str(spec) == text


def test_spec_no_disk_access(tmp_path):
    spec = parse_data_spec(f"folder:{tmp_path}/does-not-exist")
    assert spec.path == tmp_path / "does-not-exist"


def test_spec_unknown_kind():
    with pytest.raises(ConfigError) as info:
        parse_data_spec("imagenet:/data")
    assert info.value.field == "data"
    assert "'imagenet'" in str(info.value)
    for kind in DATA_KINDS:
        assert kind in str(info.value)


def test_spec_missing_path():
    for text in ("mnist", "cifar10:", "folder:  "):
        with pytest.raises(ConfigError, match="needs a folder") as info:
            parse_data_spec(text, field="dataset")
        assert info.value.field == "dataset"


def test_spec_toy_with_path():
    with pytest.raises(ConfigError, match="takes no path"):
        parse_data_spec("ring8:/tmp")


def test_spec_empty():
    with pytest.raises(ConfigError, match="expected a data spec"):
        parse_data_spec("   ")


def test_default_image_shapes(tmp_path):
    assert default_image_shape(parse_data_spec("ring8")) is None
    assert default_image_shape(parse_data_spec(f"mnist:{tmp_path}")) == (1, 28, 28)
    assert default_image_shape(parse_data_spec(f"fashion-mnist:{tmp_path}")) == (1, 28, 28)
    assert default_image_shape(parse_data_spec(f"cifar10:{tmp_path}")) == (3, 32, 32)
    assert default_image_shape(parse_data_spec(f"folder:{tmp_path}")) == (3, 32, 32)


# ---- toy mixtures ---------------------------------------------------------

def assign_modes(points: np.ndarray, modes: np.ndarray) -> np.ndarray:
    distances = np.linalg.norm(points[:, None, :] - modes[None, :, :], axis=2)
    return distances.argmin(axis=1)


def test_ring8_parameters():
    ring = load_dataset("ring8")
    assert isinstance(ring, PointMixture)
    assert ring.modes.shape == (8, 2)
    assert ring.modes.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(ring.modes, axis=1), 2.0)
    np.testing.assert_allclose(ring.modes[2], [0.0, 2.0], atol=1e-12)
    np.testing.assert_allclose(ring.modes[1], [np.sqrt(2), np.sqrt(2)])
    assert ring.mode_std == 0.02
    np.testing.assert_allclose(ring.weights, np.full(8, 1 / 8))


def test_grid25_parameters():
    grid = load_dataset("grid25")
    assert grid.modes.shape == (25, 2)
    assert sorted(set(grid.modes[:, 0])) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    assert len({tuple(mode) for mode in grid.modes}) == 25
    assert grid.mode_std == 0.05
    np.testing.assert_allclose(grid.weights.sum(), 1.0)


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_mixture_sample_statistics(name):
    mixture = load_dataset(name)
    points = mixture.sample(50_000, torch.Generator().manual_seed(0))
    assert points.shape == (50_000, 2)
    assert points.dtype == torch.float32
    points = points.numpy().astype(np.float64)
    nearest = assign_modes(points, mixture.modes)
    counts = np.bincount(nearest, minlength=len(mixture.modes))
    expected = 50_000 / len(mixture.modes)
    # Binomial std of a count is below sqrt(expected); 5 of them is a loose bound.
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))
    for index, centre in enumerate(mixture.modes):
        members = points[nearest == index]
        np.testing.assert_allclose(members.mean(axis=0), centre, atol=5 * mixture.mode_std / np.sqrt(len(members)))
        np.testing.assert_allclose(members.std(axis=0), mixture.mode_std, rtol=0.1)


def test_mixture_sample_deterministic():
    ring = load_dataset("ring8")
    first = ring.sample(100, torch.Generator().manual_seed(3))
    second = ring.sample(100, torch.Generator().manual_seed(3))
    other = ring.sample(100, torch.Generator().manual_seed(4))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_spiral_shape():
    spiral = load_dataset("spiral")
    assert spiral.modes is None
    assert spiral.mode_std is None
    assert spiral.weights is None
    points = spiral.sample(20_000, torch.Generator().manual_seed(0)).numpy()
    assert points.shape == (20_000, 2)
    radius = np.linalg.norm(points, axis=1)
    # t in [1.5 pi, 4.5 pi] scaled by 2 / (4.5 pi): radius from 2/3 to 2, plus noise of std 0.05.
    assert radius.max() < 2.0 + 5 * 0.05
    assert radius.min() > 2.0 / 3.0 - 5 * 0.05
    assert np.quantile(radius, 0.99) > 1.9
    angle_of_radius = np.arctan2(points[:, 1], points[:, 0])
    t = radius * 4.5 * np.pi / 2.0
    # On a Swiss roll the polar angle equals t modulo 2 pi, up to noise. Radial noise of
    # std 0.05 moves t by 0.05 * 4.5 pi / 2 = 0.353 rad, so the median error is about
    # 0.6745 * 0.353 = 0.24; points without the spiral structure would give about pi / 2.
    phase_error = np.angle(np.exp(1j * (angle_of_radius - t)))
    assert 0.2 < np.median(np.abs(phase_error)) < 0.28


# ---- IDX ------------------------------------------------------------------

@needs_mnist
def test_mnist_test_split_real():
    raw = read_idx_bytes(MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    assert hashlib.md5(raw).hexdigest() == "2646ac647ad5339dbf082846283269ea"
    images = read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    assert images.shape == (10_000, 28, 28)
    assert images.dtype == np.uint8
    assert images.tobytes() == raw[16:]

    dataset = load_dataset(f"mnist:{MNIST_DIR}")
    assert isinstance(dataset, ImageDataset)
    assert len(dataset) == 10_000
    assert dataset.shape == (1, 28, 28)
    assert dataset.images.dtype == torch.uint8
    assert dataset.images.is_contiguous()
    assert dataset.name == "mnist"
    assert dataset.class_names == [str(digit) for digit in range(10)]
    counts = torch.bincount(dataset.labels).tolist()
    assert counts == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert torch.equal(dataset.images[:, 0], torch.from_numpy(images))


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, compress):
    arrays = [
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
        np.array([-300, 7, 32000], dtype=np.int16),
        np.array([[1.5, -2.25]], dtype=np.float32),
        np.array([70000, -1], dtype=np.int32),
    ]
    for number, array in enumerate(arrays):
        path = write_idx(tmp_path / f"a{number}.idx", array, compress)
        parsed = read_idx(path)
        assert parsed.dtype == array.dtype
        assert parsed.dtype.isnative
        np.testing.assert_array_equal(parsed, array)


def test_idx_truncated(tmp_path):
    path = write_idx(tmp_path / "t.idx", np.zeros((4, 5, 5), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(ConfigError, match="truncated") as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert "100 bytes" in str(info.value)
    assert "found 93" in str(info.value)


def test_idx_truncated_gzip(tmp_path):
    path = write_idx(tmp_path / "t.idx.gz", np.zeros((4, 5, 5), dtype=np.uint8), compress=True)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ConfigError, match="cannot read IDX file") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_idx_bad_magic(tmp_path):
    path = tmp_path / "x.idx"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(50))
    with pytest.raises(ConfigError, match="not an IDX file"):
        read_idx(path)
    path.write_bytes(bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 0]))
    with pytest.raises(ConfigError, match="unknown IDX type code 0x42"):
        read_idx(path)
    path.write_bytes(bytes([0, 0, 0x08, 3, 0, 0, 0, 1]))
    with pytest.raises(ConfigError, match="truncated IDX header"):
        read_idx(path)


def test_idx_extra_bytes(tmp_path):
    path = write_idx(tmp_path / "x.idx", np.zeros(5, dtype=np.uint8))
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ConfigError, match="longer than its header states"):
        read_idx(path)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_folder_splits(tmp_path, compress):
    train_images, train_labels = small_mnist(7, seed=1)
    test_images, test_labels = small_mnist(5, seed=2)
    write_mnist_split(tmp_path, "train", train_images, train_labels, compress)
    write_mnist_split(tmp_path, "t10k", test_images, test_labels, compress)
    dataset = load_dataset(f"fashion-mnist:{tmp_path}")
    assert len(dataset) == 12
    assert dataset.name == "fashion-mnist"
    assert dataset.class_names[0] == "T-shirt/top"
    expected = np.concatenate([train_images, test_images])[:, None]
    np.testing.assert_array_equal(dataset.images.numpy(), expected)
    np.testing.assert_array_equal(dataset.labels.numpy(), np.concatenate([train_labels, test_labels]))
    assert dataset.labels.dtype == torch.int64


def test_mnist_torchvision_layout(tmp_path):
    images, labels = small_mnist(4)
    write_mnist_split(tmp_path / "MNIST" / "raw", "t10k", images, labels, compress=True)
    dataset = load_dataset(f"mnist:{tmp_path}")
    np.testing.assert_array_equal(dataset.images.numpy()[:, 0], images)
    # The Fashion-MNIST layout is FashionMNIST/raw, so MNIST's folder does not count.
    with pytest.raises(ConfigError, match="no fashion-mnist IDX files"):
        load_dataset(f"fashion-mnist:{tmp_path}")


def test_mnist_resize_and_rgb(tmp_path):
    images = np.full((3, 28, 28), 200, dtype=np.uint8)
    write_mnist_split(tmp_path, "t10k", images, np.arange(3, dtype=np.uint8), compress=False)
    dataset = load_dataset(f"mnist:{tmp_path}", image_size=32, channels=3)
    assert dataset.shape == (3, 32, 32)
    assert dataset.images.is_contiguous()
    assert torch.all(dataset.images == 200)


def test_mnist_missing_files(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_dataset(f"mnist:{tmp_path}")
    message = str(info.value)
    assert info.value.field == "data"
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        assert f"{stem}[.gz]" in message
    assert str(tmp_path / "MNIST" / "raw") in message


def test_mnist_missing_folder(tmp_path):
    with pytest.raises(ConfigError, match="folder not found"):
        load_dataset(f"mnist:{tmp_path / 'nothing'}")


def test_mnist_labels_file_missing(tmp_path):
    images, _ = small_mnist(3)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images)
    with pytest.raises(ConfigError, match=r"but not t10k-labels-idx1-ubyte\[.gz\]"):
        load_dataset(f"mnist:{tmp_path}")


def test_mnist_count_mismatch(tmp_path):
    images, labels = small_mnist(5)
    write_mnist_split(tmp_path, "t10k", images, labels[:4], compress=False)
    with pytest.raises(ConfigError, match="has 5 images but .* has 4 labels"):
        load_dataset(f"mnist:{tmp_path}")


def test_mnist_wrong_dims(tmp_path):
    write_mnist_split(tmp_path, "t10k", np.zeros((2, 784), dtype=np.uint8), np.zeros(2, dtype=np.uint8), False)
    with pytest.raises(ConfigError, match=r"expected uint8 images of shape \(N, H, W\)"):
        load_dataset(f"mnist:{tmp_path}")


# ---- CIFAR-10 -------------------------------------------------------------

def write_cifar_batch(path: Path, data: np.ndarray, labels: list[int], numpy1_names: bool = False) -> None:
    """Pickle a batch as the python version of CIFAR-10 stores it, with byte-string keys."""
    raw = pickle.dumps({b"batch_label": b"test", b"labels": labels, b"data": data}, protocol=2)
    if numpy1_names:
        # The original files were written by numpy 1.x, whose arrays pickle as numpy.core.multiarray.
        raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    path.write_bytes(raw)


@pytest.mark.parametrize("nested", [True, False])
def test_cifar10_batches(tmp_path, nested):
    folder = tmp_path / "cifar-10-batches-py" if nested else tmp_path
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
    test = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
    write_cifar_batch(folder / "data_batch_2", train, [0, 1, 2, 9], numpy1_names=True)
    write_cifar_batch(folder / "test_batch", test, [5, 5, 4])
    dataset = load_dataset(f"cifar10:{tmp_path}")
    assert dataset.shape == (3, 32, 32)
    assert dataset.name == "cifar10"
    assert dataset.class_names[0] == "airplane"
    assert dataset.class_names[9] == "truck"
    assert dataset.labels.tolist() == [0, 1, 2, 9, 5, 5, 4]
    # Each row is 1024 red, then 1024 green, then 1024 blue values, each plane row-major.
    expected = np.concatenate([train, test]).reshape(-1, 3, 32, 32)
    np.testing.assert_array_equal(dataset.images.numpy(), expected)
    assert dataset.images[0, 1, 0, 5].item() == train[0, 1024 + 5]


def test_cifar10_rejects_code(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("pickle ran code",))

    (tmp_path / "test_batch").write_bytes(pickle.dumps({"data": Exploit()}))
    with pytest.raises(ConfigError, match="may not reference builtins.print"):
        load_dataset(f"cifar10:{tmp_path}")


def test_cifar10_count_mismatch(tmp_path):
    write_cifar_batch(tmp_path / "test_batch", np.zeros((3, 3072), dtype=np.uint8), [1, 2])
    with pytest.raises(ConfigError, match="has 3 images but 2 labels"):
        load_dataset(f"cifar10:{tmp_path}")


def test_cifar10_missing(tmp_path):
    with pytest.raises(ConfigError, match="no CIFAR-10 batches") as info:
        load_dataset(f"cifar10:{tmp_path}")
    assert "data_batch_1" in str(info.value)
    assert "test_batch" in str(info.value)


def test_cifar10_grayscale(tmp_path):
    data = np.zeros((1, 3, 32, 32), dtype=np.uint8)
    data[0, 0], data[0, 1], data[0, 2] = 200, 100, 50
    write_cifar_batch(tmp_path / "test_batch", data.reshape(1, 3072), [3])
    dataset = load_dataset(f"cifar10:{tmp_path}", channels=1, image_size=16)
    assert dataset.shape == (1, 16, 16)
    # 0.299 * 200 + 0.587 * 100 + 0.114 * 50 = 124.2
    assert torch.all(dataset.images == 124)


# ---- options, ranges, download ---------------------------------------------

def test_load_bad_options(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_dataset(f"folder:{tmp_path}", channels=4)
    assert info.value.field == "channels"
    with pytest.raises(ConfigError) as info:
        load_dataset(f"folder:{tmp_path}", image_size=0)
    assert info.value.field == "image_size"


def test_model_range_values():
    pixels = torch.tensor([0, 1, 127, 128, 255], dtype=torch.uint8)
    x = to_model_range(pixels)
    assert x.dtype == torch.float32
    torch.testing.assert_close(x, torch.tensor([-1.0, 1 / 127.5 - 1, 127 / 127.5 - 1, 128 / 127.5 - 1, 1.0]))
    torch.testing.assert_close(to_display_range(x), pixels.float() / 255)
    torch.testing.assert_close(to_display_range(torch.tensor([-3.0, 0.0, 2.0])), torch.tensor([0.0, 0.5, 1.0]))


def _fail_network(*args, **kwargs):
    raise AssertionError("the network was used although download=False")


@pytest.fixture
def no_network(monkeypatch):
    import urllib.request

    import torchvision.datasets.utils as tv_utils

    for name in ("download_url", "download_and_extract_archive", "download_file_from_google_drive"):
        monkeypatch.setattr(tv_utils, name, _fail_network)
    monkeypatch.setattr(urllib.request, "urlopen", _fail_network)


def test_no_download_by_default(tmp_path, no_network):
    images, labels = small_mnist(2)
    write_mnist_split(tmp_path / "have", "t10k", images, labels, compress=True)
    assert len(load_dataset(f"mnist:{tmp_path / 'have'}")) == 2
    for kind in ("mnist", "fashion-mnist", "cifar10"):
        with pytest.raises(ConfigError, match="--download"):
            load_dataset(f"{kind}:{tmp_path / 'empty'}")


class RecordingDataset:
    """Stands in for a torchvision dataset class and writes what the real one would."""

    calls: list[dict] = []

    def __init__(self, root, train, download):
        RecordingDataset.calls.append({"root": root, "train": train, "download": download})
        images, labels = small_mnist(3)
        write_mnist_split(Path(root) / "MNIST" / "raw", "t10k", images, labels, compress=False)


def test_download_calls_torchvision(tmp_path, monkeypatch):
    import torchvision.datasets

    RecordingDataset.calls = []
    monkeypatch.setattr(torchvision.datasets, "MNIST", RecordingDataset)
    dataset = load_dataset(f"mnist:{tmp_path / 'new'}", download=True)
    assert RecordingDataset.calls == [{"root": str(tmp_path / "new"), "train": True, "download": True}]
    assert len(dataset) == 3

    # Files already there: torchvision is not called again.
    load_dataset(f"mnist:{tmp_path / 'new'}", download=True)
    assert len(RecordingDataset.calls) == 1


def test_download_failure(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(root, train, download):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(ConfigError, match="download of cifar10 into .* failed: Error downloading"):
        load_dataset(f"cifar10:{tmp_path}", download=True)
