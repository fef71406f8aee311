"""Domain extractor: a small CNN classifier trained on the real data set.

Where the Inception weights are not available (offline machines), or for
data far from ImageNet such as MNIST, FID is computed on the 128-d
penultimate layer of a classifier trained once on the labelled real images.
Values depend on that classifier, so they are comparable only between runs
measured against the same data set with the same extractor name.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from workbench.core.fid.features import FeatureExtractor, Progress
from workbench.core.fid.stats import StatsCache, default_cache_dir, fingerprint_array
from workbench.core.validation import ConfigError

logger = logging.getLogger(__name__)

FEATURE_DIM = 128
HOLD_OUT_FRACTION = 0.1
EPOCHS = 3
BATCH_SIZE = 128
LEARNING_RATE = 2e-3
# Bump when the network or the training recipe changes, so cached
# classifiers (and the statistics keyed by their name) are retrained.
RECIPE_VERSION = 1


class DomainClassifier(nn.Module):
    """Three conv blocks, a 128-d embedding (the FID features) and a linear classifier."""

    def __init__(self, channels: int, num_classes: int, feature_dim: int = FEATURE_DIM):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),  # (N, 32 * 4 * 4) for any input size
        )
        self.embedding = nn.Linear(32 * 16, feature_dim)
        self.classifier = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the embedding before its ReLU, (N, feature_dim)."""
        return self.embedding(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(F.relu(self.features(x)))


@dataclass
class TrainingReport:
    """Outcome of training: held-out accuracy and the split sizes."""

    accuracy: float
    train_size: int
    hold_out_size: int


class DomainExtractor(FeatureExtractor):
    """Features of a :class:`DomainClassifier`; ``name`` identifies the data set and recipe."""

    feature_dim = FEATURE_DIM

    def __init__(self, classifier: DomainClassifier, name: str, accuracy: float,
                 device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.classifier = classifier.to(self.device).eval()
        self.name = name
        self.accuracy = accuracy

    @torch.no_grad()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        channels = self.classifier.body[0].in_channels
        if batch.ndim != 4 or batch.shape[1] != channels:
            raise ValueError(f"the domain extractor was trained on {channels}-channel images, "
                             f"got samples of shape {tuple(batch.shape)}")
        return self.classifier.features(_to_model_range(batch).to(self.device)).float().cpu()


def training_units(dataset) -> int:
    """Return the progress units :func:`train_classifier` reports for ``dataset``."""
    hold_out = _hold_out_size(len(dataset))
    return EPOCHS * (len(dataset) - hold_out) + hold_out


def classifier_key(dataset) -> str:
    """Return the cache key of the classifier for ``dataset`` (images, labels, recipe)."""
    return StatsCache.make_key(
        kind="domain-classifier", recipe=RECIPE_VERSION, images=fingerprint_array(dataset.images),
        labels=fingerprint_array(dataset.labels), shape=list(dataset.shape),
    )


def classifier_path(dataset, cache_dir: str | Path | None = None) -> Path:
    """Return the file the classifier for ``dataset`` is cached in."""
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return directory / f"domain-{classifier_key(dataset)}.pt"


def extractor_name(dataset) -> str:
    """Return the extractor name, which is unique to the data set and the recipe."""
    return f"domain-{classifier_key(dataset)[:12]}"


def load_or_train(dataset, cache_dir: str | Path | None = None, device: str | torch.device = "cpu",
                  progress: Progress | None = None, seed: int = 0) -> DomainExtractor:
    """Return the domain extractor for a labelled ``dataset``, training it on a cache miss.

    The classifier is cached at :func:`classifier_path` with its held-out
    accuracy. Raises ``ConfigError`` when the data set has no labels, fewer
    than 20 images or a single class.
    """
    _check_labelled(dataset)
    path = classifier_path(dataset, cache_dir)
    name = extractor_name(dataset)
    cached = _load_cached(path, dataset)
    if cached is not None:
        classifier, accuracy = cached
        logger.info("domain classifier loaded from %s (held-out accuracy %.2f%%)", path, 100 * accuracy)
        return DomainExtractor(classifier, name, accuracy, device)

    classifier, report = train_classifier(dataset, device=device, progress=progress, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"recipe": RECIPE_VERSION, "state": classifier.state_dict(),
                "accuracy": report.accuracy, "num_classes": _num_classes(dataset)}, path)
    logger.info("domain classifier cached at %s", path)
    return DomainExtractor(classifier, name, report.accuracy, device)


def train_classifier(dataset, device: str | torch.device = "cpu", progress: Progress | None = None,
                     seed: int = 0) -> tuple[DomainClassifier, TrainingReport]:
    """Train a :class:`DomainClassifier` on 90% of ``dataset`` and score it on the other 10%.

    Adam, ``EPOCHS`` epochs of batches of ``BATCH_SIZE``; deterministic for a
    given seed on the CPU. ``progress`` advances by images processed and is
    polled for cancellation before each batch.
    """
    _check_labelled(dataset)
    device = torch.device(device)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    hold_out = _hold_out_size(len(dataset))
    train_index, hold_out_index = order[hold_out:], order[:hold_out]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        classifier = DomainClassifier(dataset.shape[0], _num_classes(dataset)).to(device)
    _fit(classifier, dataset, train_index, device, progress, seed)
    accuracy = _accuracy(classifier, dataset, hold_out_index, device, progress)
    logger.info("domain classifier trained on %d images: held-out accuracy %.2f%% on %d images",
                len(train_index), 100 * accuracy, hold_out)
    return classifier.eval(), TrainingReport(accuracy, len(train_index), hold_out)


def _fit(classifier: DomainClassifier, dataset, train_index: torch.Tensor, device: torch.device,
         progress: Progress | None, seed: int) -> None:
    optimizer = torch.optim.Adam(classifier.parameters(), lr=LEARNING_RATE)
    shuffle = torch.Generator().manual_seed(seed + 1)
    classifier.train()
    for epoch in range(EPOCHS):
        permuted = train_index[torch.randperm(len(train_index), generator=shuffle)]
        for start in range(0, len(permuted), BATCH_SIZE):
            if progress is not None:
                progress.check_cancel()
            index = permuted[start:start + BATCH_SIZE]
            images = _to_model_range(dataset.images[index]).to(device)
            loss = F.cross_entropy(classifier(images), dataset.labels[index].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if progress is not None:
                progress.advance(len(index))
        logger.debug("domain classifier epoch %d: last batch loss %.4f", epoch + 1, loss.item())


@torch.no_grad()
def _accuracy(classifier: DomainClassifier, dataset, index: torch.Tensor, device: torch.device,
              progress: Progress | None) -> float:
    classifier.eval()
    correct = 0
    for start in range(0, len(index), 512):
        chunk = index[start:start + 512]
        logits = classifier(_to_model_range(dataset.images[chunk]).to(device))
        correct += int((logits.argmax(1).cpu() == dataset.labels[chunk]).sum())
        if progress is not None:
            progress.advance(len(chunk))
    return correct / max(len(index), 1)


def _load_cached(path: Path, dataset) -> tuple[DomainClassifier, float] | None:
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        classifier = DomainClassifier(dataset.shape[0], int(saved["num_classes"]))
        classifier.load_state_dict(saved["state"])
    except (OSError, RuntimeError, KeyError, ValueError) as error:
        logger.warning("ignoring unreadable domain classifier %s: %s", path, error)
        return None
    return classifier.eval(), float(saved["accuracy"])


def _to_model_range(images: torch.Tensor) -> torch.Tensor:
    if images.dtype == torch.uint8:
        return images.float() / 127.5 - 1.0
    return images.float()


def _hold_out_size(total: int) -> int:
    return max(1, int(round(HOLD_OUT_FRACTION * total)))


def _num_classes(dataset) -> int:
    if dataset.class_names:
        return len(dataset.class_names)
    return int(dataset.labels.max()) + 1


def _check_labelled(dataset) -> None:
    labels = getattr(dataset, "labels", None)
    if labels is None:
        raise ConfigError("extractor", f"domain needs class labels, and {dataset.name!r} has none; "
                          "put the images in one subfolder per class, or use inception")
    if len(dataset) < 20 or int(labels.unique().numel()) < 2:
        raise ConfigError("extractor", f"domain needs at least 20 images of 2 or more classes, "
                          f"and {dataset.name!r} has {len(dataset)} images of "
                          f"{int(labels.unique().numel())} classes; use inception")
