"""The ``gan-workbench fid`` command: FID, precision and recall of a run or a data set.

Examples::

    gan-workbench fid --fake runs/mnist-dcgan --extractor domain --n 5000
    gan-workbench fid --real cifar10:./data --fake runs/cifar-sngan --n 10000
    gan-workbench fid --real ring8 --fake runs/ring8-wgan --n 2000
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from workbench.core.fid import (
    CHECKPOINT_FILE, EXTRACTORS, Cancelled, FrechetError, WeightsNotFoundError, compute_fid, load_run_sampler,
    load_stats, resolve_device, save_stats,
)
from workbench.core.validation import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_N = 10000
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def add_fid_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``fid`` command's options to ``parser``."""
    # What to compare
    parser.add_argument("--real", metavar="SPEC",
                        help="real data spec, such as mnist:./data, cifar10:./data or ring8; "
                             "default: the training data of the --fake run")
    parser.add_argument("--fake", metavar="RUN_DIR|SPEC", required=True,
                        help="run folder (samples from its checkpoint's generator) or a data spec")
    parser.add_argument("--n", type=int, default=DEFAULT_N,
                        help=f"samples per side (default {DEFAULT_N}); below the feature "
                             "dimension (2048 for Inception) FID is unreliable")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the real subset and the generator noise (default 0)")

    # Features
    parser.add_argument("--extractor", default="auto", choices=EXTRACTORS,
                        help="feature extractor: inception (needs the weight file), domain (a "
                             "classifier trained on the labelled real data, works offline), "
                             "points (2D data); auto picks points for 2D data, else inception")
    parser.add_argument("--weights", metavar="FILE",
                        help="Inception weight file pt_inception-2015-12-05-6726825d.pth")
    parser.add_argument("--download-weights", action="store_true",
                        help="download the Inception weights (about 92 MB) when missing")
    parser.add_argument("--batch-size", type=int, default=50,
                        help="images per feature batch (default 50)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")

    # Statistics files and cache
    parser.add_argument("--save-stats", metavar="FILE.npz",
                        help="write the real statistics (mu, sigma) to this pytorch-fid .npz file")
    parser.add_argument("--real-stats", metavar="FILE.npz",
                        help="read the real statistics from this .npz file instead of --real")
    parser.add_argument("--cache-dir", metavar="DIR",
                        help="cache for real statistics and domain classifiers "
                             "(default ~/.cache/gan-workbench/fid)")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")


def run_fid(args: argparse.Namespace) -> int:
    """Run the ``fid`` command; print the result and return the exit status.

    Invalid input and missing files print one line to stderr and return 2;
    Ctrl-C returns 130.
    """
    progress = _ProgressLine()
    try:
        result = _compute(args, progress)
    except (ConfigError, WeightsNotFoundError, FrechetError, FileNotFoundError, ValueError) as error:
        progress.clear()
        _print_error(error)
        return EXIT_ERROR
    except (KeyboardInterrupt, Cancelled):
        progress.clear()
        print("gan-workbench fid: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    progress.clear()

    print(result.summary())
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.save_stats:
        path = save_stats(result.real_stats, args.save_stats)
        print(f"real statistics saved to {path}")
    return 0


def _compute(args: argparse.Namespace, progress: "_ProgressLine"):
    device = resolve_device(args.device)
    fake, run_config = _resolve_fake(args.fake, device, args.seed)
    real = _resolve_real(args, run_config)
    return compute_fid(
        real, fake, n=args.n, extractor=args.extractor, batch_size=args.batch_size, device=device,
        cache_dir=args.cache_dir, progress=progress, weights=args.weights,
        download=args.download_weights, seed=args.seed, use_cache=not args.no_cache,
    )


def _resolve_fake(fake: str, device, seed: int):
    """Return (fake, run config or None): a sampler for a run folder, else the spec text."""
    from workbench.core.data import parse_data_spec

    folder = Path(fake).expanduser()
    if not folder.is_dir():
        try:
            parse_data_spec(fake, field="fake")
        except ConfigError:
            raise ConfigError("fake", f"{fake!r} is neither an existing run folder nor a data spec; give a "
                                      "run folder that contains checkpoint.pt, or a spec such as folder:PATH") from None
        return fake, None
    if not (folder / CHECKPOINT_FILE).is_file():
        raise ConfigError("fake", f"{folder} has no {CHECKPOINT_FILE}; give a run folder, or "
                          "write a folder of images as folder:PATH")
    return load_run_sampler(folder, device=device, seed=seed)


def _resolve_real(args: argparse.Namespace, run_config):
    if args.real_stats:
        if args.real:
            raise ConfigError("real_stats", "give --real or --real-stats, not both")
        return load_stats(args.real_stats)
    spec = args.real or (run_config.data if run_config is not None else None)
    if not spec:
        raise ConfigError("real", "missing; give --real SPEC or --real-stats FILE.npz "
                          "(or a run folder as --fake, whose training data is then used)")
    from workbench.core.data import load_dataset, parse_data_spec

    parsed = parse_data_spec(spec, field="real")
    if run_config is None:
        return load_dataset(parsed)
    # Load the real images at the size and channel count the run trained on.
    return load_dataset(parsed, image_size=run_config.image_size or None,
                        channels=run_config.channels or None)


def _print_error(error: Exception) -> None:
    message = " ".join(str(error).split())  # one line, whatever the exception held
    print(f"gan-workbench fid: error: {message}", file=sys.stderr)


class _ProgressLine:
    """A progress line on stderr, redrawn at most 4 times a second and erased when done."""

    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last = 0.0
        self._width = 0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self._last < 0.25 and done < total):
            return
        self._last = now
        text = f"FID: {100 * done / max(total, 1):.0f}% ({done}/{total})"
        self._width = max(self._width, len(text))
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()

    def clear(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0
