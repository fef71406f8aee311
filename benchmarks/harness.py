"""Shared pieces of the benchmarks: results, goals, interleaved timing and the machine record.

Every figure is a ratio against a reference measured in the same process, or an
absolute time with a fixed goal. Ratios come from interleaved repetitions: the
candidate and the reference run alternately (A B A B ...) and each pair gives one
ratio. The figure is the median of those ratios, so a burst of load from another
process spoils one pair rather than one side.
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Goal:
    """A target a value must reach: ``value >= threshold`` or ``value < threshold``."""

    operator: str   # ">=" or "<"
    threshold: float
    unit: str = ""

    def met_by(self, value: float) -> bool:
        if self.operator == ">=":
            return value >= self.threshold
        if self.operator == "<":
            return value < self.threshold
        raise ValueError(f"unknown goal operator {self.operator!r}; use '>=' or '<'")

    def __str__(self) -> str:
        suffix = f" {self.unit}" if self.unit else ""
        return f"{self.operator} {self.threshold:g}{suffix}"


@dataclass
class Result:
    """One row of the results table.

    ``goal`` is None for figures reported for information only.
    """

    figure: str
    case: str
    value: float
    unit: str
    goal: Goal | None = None
    details: str = ""
    failed: bool = False

    @property
    def met(self) -> bool | None:
        if self.goal is None or self.failed or self.value != self.value:   # no goal, or NaN
            return None
        return self.goal.met_by(self.value)

    def formatted_value(self) -> str:
        if self.value != self.value:
            return "n/a"
        magnitude = abs(self.value)
        text = f"{self.value:.3g}" if magnitude < 100 else f"{self.value:.0f}"
        return f"{text} {self.unit}".strip()


@dataclass
class Options:
    """Settings every figure reads: quick mode, the scratch folder and the real data."""

    quick: bool
    scratch: Path
    data_dir: Path
    threads: int
    threads_given: bool = False   # True when --threads set the thread count

    @property
    def mnist_dir(self) -> Path:
        return self.data_dir / "mnist"


@dataclass
class PairedTimes:
    """Seconds per block of the candidate and the reference, pair by pair."""

    candidate: list[float] = field(default_factory=list)
    reference: list[float] = field(default_factory=list)

    def ratios(self) -> list[float]:
        """Return reference time / candidate time per pair: above 1 means the candidate is faster."""
        return [r / c for c, r in zip(self.candidate, self.reference)]

    def median_ratio(self) -> float:
        return statistics.median(self.ratios())

    def spread(self) -> str:
        """Return the smallest and largest pair ratio as text, for the details column."""
        ratios = self.ratios()
        return f"pairs {len(ratios)}, range {min(ratios):.3f}-{max(ratios):.3f}"


def interleave(candidate: Callable[[], float], reference: Callable[[], float], pairs: int) -> PairedTimes:
    """Run ``candidate`` and ``reference`` alternately ``pairs`` times each.

    Each callable runs one block of work and returns the seconds it measured
    itself, so set-up outside the timed region does not count. The one that
    goes first changes from pair to pair: on this machine the block that runs
    second after a switch was up to 3% faster, which biased every ratio when
    the candidate always went first.
    """
    times = PairedTimes()
    for index in range(pairs):
        if index % 2 == 0:
            times.candidate.append(candidate())
            times.reference.append(reference())
        else:
            times.reference.append(reference())
            times.candidate.append(candidate())
        logger.debug("pair %d: candidate %.4f s, reference %.4f s", index, times.candidate[-1],
                     times.reference[-1])
    return times


def balanced_ratios(ratios: list[float]) -> list[float]:
    """Return the geometric mean of each two consecutive pair ratios from :func:`interleave`.

    Consecutive pairs ran in opposite orders (A B, then B A), so a block that runs
    faster for going second raises one ratio and lowers the other by about the
    same factor, and their geometric mean cancels it. A median over single pairs
    does not: with 9 pairs, 5 of one order decide it. An odd last pair is dropped.
    """
    return [math.sqrt(ratios[index] * ratios[index + 1]) for index in range(0, len(ratios) - 1, 2)]


def timed(function: Callable[[], object]) -> float:
    """Return the wall-clock seconds one call of ``function`` takes."""
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def rss_bytes() -> int:
    """Return the resident set size of this process (Linux /proc; 0 where it is missing)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            resident_pages = int(handle.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo, or platform's guess elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine() -> str:
    """Return one line naming the CPU, cores, torch version and threads, and the load."""
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu_model()}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, "
            f"torch {torch.__version__}, torch.get_num_threads() = {torch.get_num_threads()}, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
            f"1-minute load average {load:.1f}")


def command_line() -> str:
    """Return the command that started this process, as a user would type it."""
    arguments = " ".join(sys.argv[1:])
    return f"python -m benchmarks {arguments}".strip()


def today() -> str:
    return datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


def mnist_dataset(options: Options):
    """Return (dataset, data spec, description): the real MNIST test split, or random digits.

    Random uint8 images of MNIST's shape cost the same per step as real ones,
    so they stand in when the real files are missing.
    """
    from workbench.core.data import ImageDataset, load_dataset

    spec = f"mnist:{options.mnist_dir}"
    if (options.mnist_dir / "t10k-images-idx3-ubyte.gz").is_file():
        return load_dataset(spec), spec, "MNIST test split"
    generator = torch_generator(0)
    import torch

    images = torch.randint(0, 256, (10_000, 1, 28, 28), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (10_000,), generator=generator)
    dataset = ImageDataset(images, labels, [str(digit) for digit in range(10)], "random-mnist")
    return dataset, spec, "random uint8 images of MNIST's shape (real MNIST not found)"


def torch_generator(seed: int):
    import torch

    return torch.Generator().manual_seed(seed)


def steps_per_block(seconds_per_step: float, target_seconds: float, minimum: int = 1) -> int:
    """Return how many steps make a block of about ``target_seconds``."""
    return max(minimum, round(target_seconds / max(seconds_per_step, 1e-9)))
