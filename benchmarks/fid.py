"""FID figures: the Fréchet distance against a sqrtm-based reference, and feature extraction speed.

Fréchet distance: :func:`workbench.core.fid.frechet_distance` and
:func:`sqrtm_distance` run alternately on the same statistics at 2048
dimensions. The reference takes ``scipy.linalg.sqrtm`` of S1 S2, the method of
pytorch-fid 0.3's ``calculate_frechet_distance``. The covariances are of full
rank (4096 samples) or of rank below the dimension (1024 samples, as when FID
is computed on fewer than 2048 images).

Feature extraction: our Inception-v3 (``prepare_images`` then
``FIDInceptionV3``, what ``InceptionExtractor`` calls) and pytorch-fid's
``InceptionV3([3])`` hold the same random weights, because the real weights
need a download, and speed does not depend on the values. Both get the same
32x32 RGB images, resized to 299x299 inside. The domain extractor's speed on
MNIST-sized images has no reference and is reported on its own.
"""

from __future__ import annotations

import logging
import statistics
from unittest import mock

import numpy as np
import scipy.linalg
import torch

from benchmarks.harness import Goal, Options, Result, interleave, timed

logger = logging.getLogger(__name__)

SPEEDUP_GOAL = Goal(">=", 10.0)
DIFFERENCE_GOAL = Goal("<", 1e-6)
FEATURES_GOAL = Goal(">=", 1.0)
FEATURE_DIM = 2048
CLASSIFIER_CLASSES = 1008   # pytorch-fid's network has TensorFlow's 1008-way classifier


# Fréchet distance ---------------------------------------------------------------------------

def sqrtm_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Return the Fréchet distance with the trace term from ``scipy.linalg.sqrtm(sigma1 @ sigma2)``."""
    root = scipy.linalg.sqrtm(sigma1 @ sigma2)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(root).real)


def random_statistics(rng: np.random.Generator, dim: int, samples: int, shift: float):
    """Return (mean, covariance) of ``samples`` correlated Gaussian rows of ``dim`` columns."""
    mixing = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    rows = rng.standard_normal((samples, dim)) @ mixing + shift
    return rows.mean(axis=0), np.cov(rows, rowvar=False)


def measure_frechet(options: Options) -> list[Result]:
    from workbench.core.fid import frechet_distance

    dim = 256 if options.quick else FEATURE_DIM
    pairs = 1 if options.quick else 3
    rng = np.random.default_rng(0)
    small = random_statistics(rng, 64, 128, 0.0), random_statistics(rng, 64, 128, 0.1)
    frechet_distance(*small[0], *small[1])   # loads the LAPACK routines both sides use
    sqrtm_distance(*small[0], *small[1])
    results = []
    for samples, rank_text in ((2 * dim, "full rank"), (dim // 2, "rank below dimension")):
        rng = np.random.default_rng(samples)
        first = random_statistics(rng, dim, samples, 0.0)
        second = random_statistics(rng, dim, samples, 0.1)
        values = {}

        def ours() -> float:
            return timed(lambda: values.__setitem__("ours", frechet_distance(*first, *second)))

        def reference() -> float:
            return timed(lambda: values.__setitem__("reference", sqrtm_distance(*first, *second)))

        times = interleave(ours, reference, pairs)
        case = f"d={dim}, N={samples} ({rank_text})"
        difference = abs(values["ours"] - values["reference"]) / abs(values["reference"])
        results.append(Result(
            "frechet", f"speed-up, {case}", times.median_ratio(), "x", SPEEDUP_GOAL,
            f"ours {statistics.median(times.candidate):.2f} s, sqrtm {statistics.median(times.reference):.2f} s "
            f"(medians); {times.spread()}"))
        results.append(Result(
            "frechet", f"relative difference, {case}", difference, "", DIFFERENCE_GOAL,
            f"ours {values['ours']:.10g}, sqrtm {values['reference']:.10g}"))
    return results


# Feature extraction -------------------------------------------------------------------------

def random_inception_state(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Return a state dict for both Inception networks: random weights, calibrated batch norms.

    The batch norm statistics are estimated on one batch of noise, so the
    activations stay near unit scale through the network and neither side
    runs into denormal numbers, which are much slower on a CPU.
    """
    torch.manual_seed(0)
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None   # the running statistics become this batch's
    network.train()
    with torch.no_grad():
        network(torch.rand(4, 3, 299, 299) * 2 - 1)
    network.eval()
    state = {key: value.clone() for key, value in network.state_dict().items()}
    state["fc.weight"] = torch.randn(CLASSIFIER_CLASSES, FEATURE_DIM) * 0.01
    state["fc.bias"] = torch.zeros(CLASSIFIER_CLASSES)
    return state


def reference_inception(state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """Return pytorch-fid's InceptionV3 for pool3 features with ``state`` loaded in place of the download."""
    from pytorch_fid import inception as pytorch_fid_inception

    with mock.patch.object(pytorch_fid_inception, "load_state_dict_from_url", lambda *args, **kwargs: state):
        return pytorch_fid_inception.InceptionV3([3]).eval()


def _inception_rates(options: Options) -> tuple[Result, float]:
    from workbench.core.fid.inception import FIDInceptionV3, prepare_images

    ours_network = FIDInceptionV3()
    state = random_inception_state(ours_network)
    reference_network = reference_inception(state)
    batch = 4 if options.quick else 50
    images = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    images_01 = images.float() / 255.0   # pytorch-fid's input range

    @torch.no_grad()
    def ours() -> torch.Tensor:
        return ours_network(prepare_images(images))

    @torch.no_grad()
    def reference() -> torch.Tensor:
        return reference_network(images_01)[0].flatten(1)

    scale = reference().abs().max().item()
    agreement = (ours() - reference()).abs().max().item() / scale
    times = interleave(lambda: timed(ours), lambda: timed(reference), 1 if options.quick else 3)
    ours_rate = batch / statistics.median(times.candidate)
    details = (f"batches of {batch} 32x32 RGB images; ours {ours_rate:.1f} images/s, pytorch-fid "
               f"{batch / statistics.median(times.reference):.1f} images/s (medians); {times.spread()}; "
               f"features agree to {agreement:.1e} relative")
    return Result("features", "Inception-v3 vs pytorch-fid", times.median_ratio(), "x", FEATURES_GOAL, details), ours_rate


def _domain_rate(options: Options) -> float:
    from workbench.core.fid.domain import DomainClassifier, DomainExtractor

    torch.manual_seed(0)
    extractor = DomainExtractor(DomainClassifier(1, 10), "benchmark", accuracy=0.0)
    batch, batches = 50, 4 if options.quick else 40
    images = torch.randint(0, 256, (batch, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    extractor(images)   # warm-up
    seconds = [timed(lambda: extractor(images)) for _ in range(batches)]
    return batch / statistics.median(seconds)


def measure_features(options: Options) -> list[Result]:
    inception, inception_rate = _inception_rates(options)
    domain_rate = _domain_rate(options)
    domain = Result("features", "domain extractor, MNIST-sized", domain_rate, "images/s", None,
                    f"batches of 50 uint8 28x28 images, median over batches; "
                    f"{domain_rate / inception_rate:.0f} times the Inception rate")
    return [inception, domain]
