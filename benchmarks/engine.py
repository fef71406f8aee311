"""Engine overhead: the Trainer's steps per second divided by a minimal PyTorch loop's.

The trainer runs the product path: a run folder in a scratch directory,
metrics.csv and status.json written as training goes, stepped with
``advance()`` as the CLI does. Blocks of steps of the trainer and of
:class:`MinimalLoop` alternate. A block holds too few steps to contain a fair
share of sample grids and checkpoints, so the timed blocks run without them and
their cost is timed on its own and spread over the default intervals
(``sample_every`` 100, ``checkpoint_every`` 500): per-step time = block time /
steps + t_sample / 100 + t_checkpoint / 500.

Each case has two rows. The goal row compares against the loop as a user would
write it: torch's default Adam kernel and, for images, the default memory
format. The trainer builds Adam with the fused kernel and keeps image models
and batches in channels-last format on the CPU, so a second row, for
information, times it against the loop with those same two choices. That ratio
is the cost of the bookkeeping alone (metrics, gradient norms, the run folder).
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import time

import torch

from benchmarks.harness import (Goal, Options, Result, balanced_ratios, interleave, mnist_dataset,
                                steps_per_block, timed)
from benchmarks.reference_loop import MinimalLoop
from workbench.core.config import build_config
from workbench.core.data import load_dataset
from workbench.core.trainer import Trainer

logger = logging.getLogger(__name__)

GOAL = Goal(">=", 0.97)
ENGINE_THREADS = 1   # torch threads of both sides unless --threads is given
CASES = (("dcgan", "mnist"), ("wgan-gp", "mnist"), ("wgan-gp", "ring8"))


def _block_seconds(options: Options) -> float:
    return 0.3 if options.quick else 0.75


def _pairs(options: Options) -> int:
    return 4 if options.quick else 32


def measure(options: Options) -> list[Result]:
    # Both sides run with one torch thread unless --threads is given. With 2 OpenMP
    # threads on 2 vCPUs, single dcgan pairs ranged 0.70-1.18 and the median moved
    # between 0.91 and 0.99 from run to run, far more than the overhead measured here.
    threads = options.threads if options.threads_given else ENGINE_THREADS
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        mnist, mnist_spec, mnist_text = mnist_dataset(options)
        results = []
        for preset, data in CASES:
            dataset = mnist if data == "mnist" else load_dataset(data)
            spec = mnist_spec if data == "mnist" else data
            described = mnist_text if data == "mnist" else data
            results.extend(_measure_case(options, preset, spec, dataset, described, threads))
    finally:
        torch.set_num_threads(previous_threads)
    return results


def _measure_case(options: Options, preset: str, spec: str, dataset, described: str,
                  threads: int) -> list[Result]:
    config = build_config({"data": spec, "steps": 10**9, "device": "cpu"}, preset=preset)
    # Samples and checkpoints are added by _periodic_seconds_per_step at the default intervals.
    timed_config = dataclasses.replace(config, sample_every=10**9, checkpoint_every=10**9)
    run_dir = options.scratch / f"engine-{preset}-{dataset.name}"
    trainer = Trainer(timed_config, run_dir, dataset=dataset)
    plain = MinimalLoop(config, dataset)
    matched = MinimalLoop(config, dataset, fused_adam=True, channels_last=True)
    try:
        # Warm-up, then size the blocks from the plain loop's speed.
        trainer.advance()
        plain.step()
        matched.step()
        seconds_per_step = timed(lambda: plain.run(2)) / 2
        steps = steps_per_block(seconds_per_step, _block_seconds(options))

        def run_trainer() -> float:
            start = time.perf_counter()
            for _ in range(steps):
                trainer.advance()
            return time.perf_counter() - start

        times = interleave(run_trainer, lambda: timed(lambda: plain.run(steps)), _pairs(options))
        matched_times = interleave(run_trainer, lambda: timed(lambda: matched.run(steps)), _matched_pairs(options))
        periodic = _periodic_seconds_per_step(trainer, config, options)
    finally:
        trainer.close()

    setting = f"{described}, batch {config.batch_size}, n_critic {config.n_critic}, {threads} torch thread(s)"
    headline = _ratio_result(f"{preset} on {dataset.name}", times, steps, periodic, GOAL,
                             f"{setting}; against a loop with torch's defaults")
    matched_row = _ratio_result(f"{preset} on {dataset.name}, loop with the trainer's kernels", matched_times,
                                steps, periodic, None, f"{setting}; the loop also on fused Adam and, for images, "
                                                       f"channels-last, so the ratio is the bookkeeping alone")
    return [headline, matched_row]


def _matched_pairs(options: Options) -> int:
    return 2 if options.quick else 16


def _ratio_result(case: str, times, steps: int, periodic: float, goal: Goal | None, setting: str) -> Result:
    """Return the trainer/loop speed ratio of ``times`` (trainer as candidate) as a Result row."""
    pair_ratios = [(r / steps) / (c / steps + periodic) for c, r in zip(times.candidate, times.reference)]
    # A dcgan run gave 0.919 as the median of 9 single pairs (0.880-1.028) while its median
    # times gave 0.97, as an order effect would. Units of two pairs in opposite orders cancel it.
    ratios = balanced_ratios(pair_ratios)
    trainer_rate = steps / statistics.median(times.candidate)
    reference_rate = steps / statistics.median(times.reference)
    details = (f"{setting}; trainer with run folder {trainer_rate:.1f} steps/s before samples and checkpoints, "
               f"loop {reference_rate:.1f} steps/s; samples and checkpoints add {1000 * periodic:.2f} ms/step; "
               f"{steps} steps per block, pairs {len(pair_ratios)} in {len(ratios)} order-balanced units, "
               f"range {min(ratios):.3f}-{max(ratios):.3f}")
    return Result("engine", case, statistics.median(ratios), "x", goal, details)


def _periodic_seconds_per_step(trainer: Trainer, config, options: Options) -> float:
    """Return the cost of sample grids and checkpoints, spread over ``config``'s intervals."""
    repeats = 1 if options.quick else 3
    sample = statistics.median(timed(trainer.save_samples) for _ in range(repeats))
    checkpoint = statistics.median(timed(trainer.save_checkpoint) for _ in range(repeats))
    return sample / config.sample_every + checkpoint / config.checkpoint_every
