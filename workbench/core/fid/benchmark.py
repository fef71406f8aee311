"""Timings behind the numbers quoted for FID: Fréchet distance and feature throughput.

Run ``python -m workbench.core.fid.benchmark [--threads N]``. It prints

* the time of :func:`frechet_distance` against ``scipy.linalg.sqrtm`` of
  S1 S2 (pytorch-fid's method) at 2048 dimensions, for covariances of full
  rank (N = 4096) and of rank N - 1 < d (N = 500);
* images per second of the Inception network (random weights, which run at
  the same speed as the real ones) and of the domain classifier.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.linalg
import torch

from workbench.core.fid.domain import DomainClassifier
from workbench.core.fid.frechet import frechet_distance
from workbench.core.fid.inception import FIDInceptionV3, prepare_images


def _sqrtm_distance(mu1, sigma1, mu2, sigma2) -> float:
    root = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(root))


def _random_stats(rng, dim: int, samples: int, shift: float):
    mixing = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    rows = rng.standard_normal((samples, dim)) @ mixing + shift
    return rows.mean(0), np.cov(rows, rowvar=False)


def _timed(function, *args) -> tuple[float, float]:
    start = time.perf_counter()
    value = function(*args)
    return value, time.perf_counter() - start


def bench_frechet(dim: int = 2048) -> None:
    """Print the time of our Fréchet distance and of the sqrtm-based one."""
    rng = np.random.default_rng(0)
    for samples in (2 * dim, 500):
        first = _random_stats(rng, dim, samples, 0.0)
        second = _random_stats(rng, dim, samples, 0.1)
        ours, ours_seconds = _timed(frechet_distance, *first, *second)
        reference, reference_seconds = _timed(_sqrtm_distance, *first, *second)
        print(f"frechet d={dim} N={samples}: ours {ours_seconds:.2f} s, sqrtm "
              f"{reference_seconds:.2f} s, {reference_seconds / ours_seconds:.1f}x faster, "
              f"relative difference {abs(ours - reference) / reference:.1e}")


@torch.no_grad()
def bench_extractors(batch_size: int = 50) -> None:
    """Print images per second of both image extractors on the CPU."""
    inception = FIDInceptionV3().eval()
    images = torch.randint(0, 256, (batch_size, 3, 32, 32), dtype=torch.uint8)
    inception(prepare_images(images[:2]))  # warm-up
    _, seconds = _timed(lambda: inception(prepare_images(images)))
    print(f"inception: {batch_size / seconds:.1f} images/s (32x32 RGB resized to 299x299)")

    classifier = DomainClassifier(1, 10).eval()
    digits = torch.randint(0, 256, (2000, 1, 28, 28), dtype=torch.uint8)
    classifier.features(digits[:10].float())  # warm-up
    _, seconds = _timed(lambda: classifier.features(digits.float() / 127.5 - 1))
    print(f"domain: {len(digits) / seconds:.0f} images/s (28x28 grayscale)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch threads (BLAS threads follow OMP_NUM_THREADS)")
    parser.add_argument("--skip-frechet", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}")
    if not args.skip_frechet:
        bench_frechet()
    bench_extractors()


if __name__ == "__main__":
    main()
