"""CPU training throughput of each preset on MNIST, and which settings make it faster.

For every preset the default Trainer (no run folder) is timed in seconds per
100 steps. Then :class:`MinimalLoop` runs the same maths in several variants:
the trainer's own settings (the baseline), one intra-op thread, every logical
CPU as a thread, channels-last memory format, bfloat16 autocast, and the
images converted to float once instead of per batch. The variants run in
rotation (one block each, then again), and each is reported as its median
block time relative to the baseline's.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

from benchmarks.harness import Options, Result, mnist_dataset, steps_per_block, timed
from benchmarks.reference_loop import MinimalLoop
from workbench.core.config import PRESETS, build_config
from workbench.core.trainer import Trainer

logger = logging.getLogger(__name__)


@dataclass
class Variant:
    """One way to run the loop: a name, loop options and the torch thread count (0: unchanged)."""

    name: str
    loop_options: dict
    threads: int = 0


def variants(default_threads: int) -> list[Variant]:
    """Return the baseline followed by one variant per option."""
    found = [Variant("baseline", {})]
    for threads in sorted({1, os.cpu_count() or 1} - {default_threads}):
        found.append(Variant(f"{threads} thread{'s' if threads > 1 else ''}", {}, threads))
    found += [
        Variant("channels_last", {"channels_last": True}),
        Variant("bfloat16 autocast", {"autocast_bf16": True}),
        Variant("float images in memory", {"float_data": True}),
    ]
    return found


def _block(loop: MinimalLoop, steps: int, threads: int, default_threads: int) -> Callable[[], float]:
    def run() -> float:
        torch.set_num_threads(threads or default_threads)
        try:
            return timed(lambda: loop.run(steps))
        finally:
            torch.set_num_threads(default_threads)

    return run


def _trainer_seconds_per_100(config, dataset, steps: int, repeats: int) -> float:
    trainer = Trainer(config, None, dataset=dataset)
    trainer.advance()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            trainer.advance()
        seconds.append(time.perf_counter() - start)
    trainer.close()
    return 100 * statistics.median(seconds) / steps


def _measure_preset(options: Options, preset: str, dataset, spec: str, described: str) -> list[Result]:
    config = build_config({"data": spec, "steps": 10**9, "device": "cpu"}, preset=preset)
    default_threads = torch.get_num_threads()
    baseline = MinimalLoop(config, dataset)
    baseline.step()
    steps = steps_per_block(timed(baseline.step), 0.3 if options.quick else 1.0)
    repeats = 1 if options.quick else 3

    blocks, failures = {}, {}
    for variant in variants(default_threads):
        try:
            loop = baseline if variant.name == "baseline" else MinimalLoop(config, dataset, **variant.loop_options)
            block = _block(loop, steps, variant.threads, default_threads)
            block()   # warm-up, and a first check that the variant runs at all
            blocks[variant.name] = block
        except RuntimeError as error:   # an option this build or this loss cannot run
            failures[variant.name] = f"{type(error).__name__}: {str(error).splitlines()[0]}"
    times: dict[str, list[float]] = {name: [] for name in blocks}
    for _ in range(repeats):
        for name, block in blocks.items():
            times[name].append(block())

    trainer_time = _trainer_seconds_per_100(config, dataset, steps, repeats)
    base = statistics.median(times["baseline"])
    speedups = {name: base / statistics.median(values) for name, values in times.items() if name != "baseline"}
    best = max(speedups, key=speedups.get)
    listed = ", ".join(f"{name} {value:.2f}x" for name, value in speedups.items())
    listed += "".join(f", {name} failed ({reason})" for name, reason in failures.items())
    return [
        Result("throughput", f"{preset}: Trainer, default settings", trainer_time, "s/100 steps", None,
               f"{described}, batch {config.batch_size}, n_critic {config.n_critic}, torch threads "
               f"{default_threads}, no run folder; minimal loop baseline {100 * base / steps:.2f} s/100 steps"),
        Result("throughput", f"{preset}: fastest option ({best})", speedups[best], "x", None,
               f"speed-up of the minimal loop over its baseline: {listed}; {steps} steps per block, "
               f"{repeats} rotations"),
    ]


def measure(options: Options) -> list[Result]:
    dataset, spec, described = mnist_dataset(options)
    results = []
    for preset in PRESETS:
        logger.info("throughput: %s", preset)
        results += _measure_preset(options, preset, dataset, spec, described)
    return results
