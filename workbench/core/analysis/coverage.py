"""Mode and class coverage of generated samples.

Mixture coverage follows the protocol of the VEEGAN (Srivastava et al., 2017)
and PacGAN (Lin et al., 2018) papers for 2-D Gaussian mixtures such as 8
Gaussians on a ring or 25 on a 5x5 grid. Each generated point is assigned to
its nearest mode centre. It is *high quality* when its Euclidean distance to
that centre is at most three standard deviations, and a mode is *covered* when
at least one high-quality point is assigned to it.

Class coverage applies the same idea to labelled image data, where a
classifier's confident predictions take the place of the nearest mode.

Both reports give KL(generated || true) in nats. The generated distribution is
the histogram of the counted samples, normalised and not smoothed. With the
generated histogram as the first argument, an empty bin contributes 0 (0 log 0
= 0), so the divergence is finite whenever the true weights are all positive.
When no sample is counted, the generated distribution does not exist and the
divergence is reported as ``inf``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial.distance import cdist

from workbench.core.analysis.plane import eval_mode, module_device
from workbench.core.interpolate import latents_from_seed
from workbench.core.validation import coerce_float, coerce_int

logger = logging.getLogger(__name__)

# Generated points per coverage evaluation. With 25 equally likely modes, the
# chance that a given mode gets no point by luck is (24/25)**2500, about 5e-45.
DEFAULT_NUM_SAMPLES = 2500

# A point is high quality within this many standard deviations of its mode.
HIGH_QUALITY_STDS = 3.0


@dataclass(frozen=True)
class CoverageReport:
    """Coverage of a 2-D Gaussian mixture by generated points.

    ``counts[m]`` is the number of high-quality points whose nearest mode is
    ``m``. ``kl`` is KL(counts / counts.sum() || true weights) in nats, or
    ``inf`` when no point is high quality.
    """

    modes_covered: int
    num_modes: int
    high_quality_fraction: float
    kl: float
    counts: np.ndarray

    @property
    def covered_fraction(self) -> float:
        """Fraction of the modes that are covered."""
        return self.modes_covered / self.num_modes


@dataclass(frozen=True)
class ClassCoverageReport:
    """Class coverage of generated images as judged by a classifier.

    ``counts[k]`` is the number of confident samples predicted as class ``k``.
    ``confident_fraction`` is the share of all samples that were confident.
    ``kl`` is KL(counts / counts.sum() || data class weights) in nats, or
    ``inf`` when no sample is confident.
    """

    classes_covered: int
    num_classes: int
    confident_fraction: float
    kl: float
    counts: np.ndarray

    @property
    def covered_fraction(self) -> float:
        """Fraction of the classes that are covered."""
        return self.classes_covered / self.num_classes


def kl_divergence(counts: np.ndarray, true_weights: np.ndarray) -> float:
    """Return KL(counts / counts.sum() || true_weights / true_weights.sum()) in nats.

    Bins with a zero count contribute nothing. The result is ``inf`` when all
    counts are zero, or when a bin with a positive count has zero true weight.
    """
    counts = np.asarray(counts, dtype=np.float64)
    weights = np.asarray(true_weights, dtype=np.float64)
    if counts.shape != weights.shape or counts.ndim != 1:
        raise ValueError(f"counts and true_weights must be 1-D of one length, got {counts.shape} and {weights.shape}")
    if np.any(counts < 0) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError("counts and true_weights must be non-negative, and true_weights must not all be zero")
    total = counts.sum()
    if total == 0:
        return math.inf
    generated = counts / total
    true = weights / weights.sum()
    present = generated > 0
    if np.any(true[present] == 0):
        return math.inf
    return float(np.sum(generated[present] * np.log(generated[present] / true[present])))


def mixture_coverage(
    points: np.ndarray | torch.Tensor,
    centres: np.ndarray | torch.Tensor,
    std: float,
    true_weights: np.ndarray | None = None,
) -> CoverageReport:
    """Measure how well generated 2-D points cover a Gaussian mixture.

    Parameters
    ----------
    points : (N, 2) generated points.
    centres : (M, 2) mode centres of the mixture.
    std : standard deviation of every mode, in the units of ``points``.
    true_weights : (M,) mixture weights; uniform when omitted.
    """
    points = _as_float64(points)
    centres = _as_float64(centres)
    std = coerce_float("std", std, minimum=0.0, exclusive_minimum=True)
    if points.ndim != 2 or centres.ndim != 2 or points.shape[1] != centres.shape[1] or len(centres) == 0:
        raise ValueError(
            f"points must be (N, D) and centres (M, D) with M >= 1, got {points.shape} and {centres.shape}"
        )
    if not np.all(np.isfinite(centres)):
        raise ValueError("centres contains NaN or infinite values")
    num_modes = len(centres)
    weights = np.ones(num_modes) if true_weights is None else np.asarray(true_weights, dtype=np.float64)

    # A diverged generator can emit NaN, and such points are never high quality.
    finite = np.all(np.isfinite(points), axis=1)
    if not finite.all():
        logger.warning("%d of %d generated points are NaN or infinite", np.count_nonzero(~finite), len(points))
    distances = cdist(points[finite], centres)  # (N_finite, M)
    nearest = distances.argmin(axis=1)
    high_quality = distances[np.arange(len(nearest)), nearest] <= HIGH_QUALITY_STDS * std
    counts = np.bincount(nearest[high_quality], minlength=num_modes)

    return CoverageReport(
        modes_covered=int(np.count_nonzero(counts)),
        num_modes=num_modes,
        high_quality_fraction=float(np.count_nonzero(high_quality) / len(points)) if len(points) else 0.0,
        kl=kl_divergence(counts, weights),
        counts=counts,
    )


def class_coverage(
    predictions: np.ndarray | torch.Tensor,
    num_classes: int | None = None,
    data_class_weights: np.ndarray | None = None,
    min_confidence: float = 0.5,
    min_fraction: float = 0.01,
) -> ClassCoverageReport:
    """Measure how well generated images cover the classes of a data set.

    Parameters
    ----------
    predictions : (N, K) class probabilities from a classifier, or (N,) integer labels.
        Labels count as predictions with confidence 1.
    num_classes : K; taken from the probabilities when omitted, required with labels.
    data_class_weights : (K,) class counts or frequencies of the data set; uniform when omitted.
    min_confidence : a sample counts towards its most probable class only when that
        probability is at least this value.
    min_fraction : a class is covered when its confident samples make up at least this
        fraction of all N samples, and it has at least one. The default of 1% suits
        data sets with up to about 50 classes, such as MNIST and CIFAR-10. Lower it
        for more classes, because with K classes a fair share is 1/K.
    """
    labels, confident, num_classes = _confident_labels(predictions, num_classes, min_confidence)
    min_fraction = coerce_float("min_fraction", min_fraction, minimum=0.0, maximum=1.0)
    if data_class_weights is None:
        weights = np.ones(num_classes)
    else:
        weights = np.asarray(data_class_weights, dtype=np.float64)
    if weights.shape != (num_classes,):
        raise ValueError(f"data_class_weights must have {num_classes} entries, got shape {weights.shape}")

    counts = np.bincount(labels[confident], minlength=num_classes)
    min_count = max(1, math.ceil(min_fraction * len(labels)))
    return ClassCoverageReport(
        classes_covered=int(np.count_nonzero(counts >= min_count)),
        num_classes=num_classes,
        confident_fraction=float(confident.mean()) if len(labels) else 0.0,
        kl=kl_divergence(counts, weights),
        counts=counts,
    )


def _confident_labels(
    predictions: np.ndarray | torch.Tensor, num_classes: int | None, min_confidence: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """Return the predicted labels, a mask of the confident ones, and the number of classes."""
    if isinstance(predictions, torch.Tensor):
        predictions = predictions.detach().cpu().numpy()
    predictions = np.asarray(predictions)
    min_confidence = coerce_float("min_confidence", min_confidence, minimum=0.0, maximum=1.0)

    if predictions.ndim == 2:
        if num_classes is not None and num_classes != predictions.shape[1]:
            raise ValueError(f"num_classes is {num_classes} but the probabilities have {predictions.shape[1]} columns")
        labels = predictions.argmax(axis=1)
        confident = predictions.max(axis=1) >= min_confidence
        return labels, confident, predictions.shape[1]

    if predictions.ndim != 1 or not np.issubdtype(predictions.dtype, np.integer):
        raise ValueError(
            "predictions must be (N, K) probabilities or (N,) integer labels, "
            f"got {predictions.dtype} of shape {predictions.shape}"
        )
    if num_classes is None:
        raise ValueError("num_classes is required when predictions are labels")
    num_classes = coerce_int("num_classes", num_classes, minimum=1)
    if len(predictions) and (predictions.min() < 0 or predictions.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes - 1}], got values from {predictions.min()} to {predictions.max()}"
        )
    return predictions.astype(np.int64), np.ones(len(predictions), dtype=bool), num_classes


def generate_points(
    generator: torch.nn.Module, latent_dim: int, num_samples: int = DEFAULT_NUM_SAMPLES, seed: int = 0
) -> np.ndarray:
    """Run ``generator`` on ``num_samples`` seeded standard normal latents and return (N, D) float64.

    The generator runs in eval mode without gradients, and every submodule's
    train/eval mode is restored afterwards.
    """
    latents = latents_from_seed(seed, num_samples, latent_dim)
    with eval_mode(generator), torch.no_grad():
        points = generator(latents.to(module_device(generator)))
    return points.detach().cpu().double().numpy().reshape(num_samples, -1)


def _as_float64(values: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64)
