"""The domain extractor: a classifier trained on the real data set, checked on MNIST."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision.transforms.functional as TF

from workbench.core.fid import compute_fid, domain
from workbench.core.fid.features import Progress
from workbench.core.validation import ConfigError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MNIST = DATA / "mnist"
HALF = 5000


class _Labelled:
    """The attributes of ImageDataset that the domain extractor reads."""

    def __init__(self, images, labels, class_names=None, name="synthetic"):
        self.images, self.labels, self.class_names, self.name = images, labels, class_names, name
        self.kind = "images"

    @property
    def shape(self):
        return tuple(self.images.shape[1:])

    def __len__(self):
        return len(self.images)


def _stripes(count: int = 200) -> _Labelled:
    # Two classes a tiny CNN separates at once: horizontal and vertical stripes.
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(count) % 2
    images = torch.randint(0, 60, (count, 1, 12, 12), generator=generator, dtype=torch.uint8)
    images[labels == 0, :, ::3, :] = 250
    images[labels == 1, :, :, ::3] = 250
    return _Labelled(images, labels, ["horizontal", "vertical"])


@pytest.fixture(scope="module")
def mnist_fid(tmp_path_factory):
    """Train the MNIST classifier once and return (dataset, cache dir, permutation)."""
    if not MNIST.is_dir():
        pytest.skip(f"MNIST test split not found at {MNIST}")
    from workbench.core.data import load_dataset

    dataset = load_dataset(f"mnist:{MNIST}")
    cache_dir = tmp_path_factory.mktemp("fid-cache")
    domain.load_or_train(dataset, cache_dir)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))
    return dataset, cache_dir, order


def _domain_fid(dataset, cache_dir, fake) -> float:
    # The real side is the first HALF images of the permutation seeded with 0,
    # which is the order fixture `mnist_fid` returns.
    result = compute_fid(dataset, fake, n=HALF, extractor="domain", cache_dir=cache_dir,
                         batch_size=500)
    assert result.n_real == HALF
    print(f"domain FID {result.value:.3f} precision {result.precision:.3f} "
          f"recall {result.recall:.3f}")
    return result.value


@pytest.mark.slow
def test_domain_mnist_accuracy(mnist_fid):
    dataset, cache_dir, _ = mnist_fid
    extractor = domain.load_or_train(dataset, cache_dir)
    print(f"held-out accuracy {extractor.accuracy:.4f}")
    assert extractor.accuracy > 0.95
    assert extractor.name == domain.extractor_name(dataset)
    assert extractor.feature_dim == 128


@pytest.mark.slow
def test_domain_mnist_fid_ordering(mnist_fid):
    dataset, cache_dir, order = mnist_fid
    other_half = dataset.images[order[HALF:]]
    noise = torch.randint(0, 256, other_half.shape, dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(1))
    blurred = TF.gaussian_blur(other_half.float(), kernel_size=9, sigma=1.5).round().to(torch.uint8)

    halves = _domain_fid(dataset, cache_dir, other_half)
    to_noise = _domain_fid(dataset, cache_dir, noise)
    to_blurred = _domain_fid(dataset, cache_dir, blurred)
    assert halves >= 0
    assert halves * 20 < to_noise
    assert halves < to_blurred


def test_domain_train_small_and_cache(tmp_path):
    data = _stripes()
    reports = []
    progress = Progress(domain.training_units(data), lambda done, total: reports.append((done, total)))
    extractor = domain.load_or_train(data, tmp_path, progress=progress)
    assert extractor.accuracy == 1.0
    assert reports[-1] == (domain.training_units(data),) * 2
    assert domain.classifier_path(data, tmp_path).is_file()

    again = domain.load_or_train(data, tmp_path)
    features = extractor(data.images[:5])
    assert features.shape == (5, domain.FEATURE_DIM)
    assert torch.equal(again(data.images[:5]), features)


def test_domain_training_deterministic():
    data = _stripes(100)
    first, _ = domain.train_classifier(data, seed=4)
    second, _ = domain.train_classifier(data, seed=4)
    for name, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[name]), name


def test_domain_uint8_and_float_agree(tmp_path):
    data = _stripes(100)
    extractor = domain.load_or_train(data, tmp_path)
    as_float = data.images[:8].float() / 127.5 - 1
    assert torch.allclose(extractor(data.images[:8]), extractor(as_float), atol=1e-5)


def test_domain_name_depends_on_data():
    data = _stripes(100)
    changed = _Labelled(data.images.clone(), data.labels, data.class_names)
    changed.images[0, 0, 0, 0] ^= 1
    assert domain.extractor_name(data) != domain.extractor_name(changed)


def test_domain_needs_labels():
    data = _stripes(100)
    data.labels = None
    with pytest.raises(ConfigError, match="class labels"):
        domain.train_classifier(data)
    single = _stripes(100)
    single.labels = torch.zeros(100, dtype=torch.int64)
    with pytest.raises(ConfigError, match="2 or more classes"):
        domain.train_classifier(single)


def test_domain_compute_fid(tmp_path):
    data = _stripes(200)
    same = compute_fid(data, data.images, n=100, extractor="domain", cache_dir=tmp_path)
    flipped = compute_fid(data, data.images.transpose(2, 3).flip(0), n=100, extractor="domain",
                          cache_dir=tmp_path)
    noise = torch.randint(0, 256, (100, 1, 12, 12), dtype=torch.uint8)
    to_noise = compute_fid(data, noise, n=100, extractor="domain", cache_dir=tmp_path)
    assert same.value == 0.0
    assert same.extractor.startswith("domain-")
    assert same.classifier_accuracy == 1.0
    assert to_noise.value > 10 * flipped.value


def test_domain_rejects_other_channels(tmp_path):
    extractor = domain.load_or_train(_stripes(100), tmp_path)
    with pytest.raises(ValueError, match="1-channel"):
        extractor(torch.zeros(2, 3, 12, 12, dtype=torch.uint8))
