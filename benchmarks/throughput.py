"""CPU training throughput of each preset on MNIST, and which settings make it faster.

For every preset the default Trainer (no run folder) is timed in seconds per
100 steps. Then :class:`MinimalLoop` runs the same maths in several variants,
each reported as its median block time relative to a baseline:

* in this process, at its thread count: the trainer's own settings (the
  baseline), channels-last memory format, bfloat16 autocast, and the images
  converted to float once instead of per batch, run in rotation;
* in fresh child processes, because OpenMP reads them only when it starts: one
  intra-op thread, one per logical CPU, and one per logical CPU with
  ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep instead of spinning).
  The children also run in rotation, and their baseline is a child with this
  process's thread count.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.harness import Options, Result, mnist_dataset, steps_per_block, timed
from benchmarks.reference_loop import MinimalLoop
from workbench.core.config import PRESETS, build_config
from workbench.core.trainer import Trainer

logger = logging.getLogger(__name__)

CHILD_TIMEOUT_S = 600


@dataclass
class Variant:
    """One in-process way to run the loop: a name and the MinimalLoop options."""

    name: str
    loop_options: dict


IN_PROCESS_VARIANTS = (
    Variant("baseline", {}),
    Variant("channels_last", {"channels_last": True}),
    Variant("bfloat16 autocast", {"autocast_bf16": True}),
    Variant("float images in memory", {"float_data": True}),
)


@dataclass(frozen=True)
class ThreadSetting:
    """Thread settings of a child process: intra-op threads and OpenMP's wait policy ('' keeps the default)."""

    threads: int
    wait_policy: str = ""

    @property
    def name(self) -> str:
        text = f"{self.threads} thread{'s' if self.threads > 1 else ''}"
        return f"{text}, OMP_WAIT_POLICY={self.wait_policy}" if self.wait_policy else text


def thread_settings(default_threads: int) -> list[ThreadSetting]:
    """Return the baseline (this process's thread count) followed by the settings to compare."""
    cpus = os.cpu_count() or 1
    settings = [ThreadSetting(default_threads)]
    settings += [ThreadSetting(threads) for threads in sorted({1, cpus} - {default_threads})]
    if cpus > 1:
        settings.append(ThreadSetting(cpus, "PASSIVE"))
    return settings


def _in_process_speedups(config, dataset, steps: int, repeats: int) -> tuple[dict[str, float], dict[str, str], float]:
    """Return (speed-up per variant, failure per variant, baseline seconds per block)."""
    blocks, failures = {}, {}
    for variant in IN_PROCESS_VARIANTS:
        try:
            loop = MinimalLoop(config, dataset, **variant.loop_options)
            loop.run(1)   # warm-up, and a first check that the variant runs at all
        except RuntimeError as error:   # an option this build or this loss cannot run
            failures[variant.name] = f"{type(error).__name__}: {str(error).splitlines()[0]}"
            continue
        blocks[variant.name] = (lambda loop=loop: timed(lambda: loop.run(steps)))
    times: dict[str, list[float]] = {name: [] for name in blocks}
    for _ in range(repeats):
        for name, block in blocks.items():
            times[name].append(block())
    base = statistics.median(times["baseline"])
    speedups = {name: base / statistics.median(values) for name, values in times.items() if name != "baseline"}
    return speedups, failures, base


def _child_seconds(setting: ThreadSetting, preset: str, steps: int, data_dir: Path) -> float:
    """Run one block in a fresh interpreter with ``setting``; return its seconds per block."""
    environment = dict(os.environ, OMP_NUM_THREADS=str(setting.threads))
    if setting.wait_policy:
        environment["OMP_WAIT_POLICY"] = setting.wait_policy
    else:
        environment.pop("OMP_WAIT_POLICY", None)
    command = [sys.executable, "-m", "benchmarks.throughput", "--preset", preset, "--steps", str(steps), "--threads", str(setting.threads), "--data-dir", str(data_dir)]
    completed = subprocess.run(command, env=environment, capture_output=True, text=True, check=False,
                               cwd=Path(__file__).resolve().parents[1], timeout=CHILD_TIMEOUT_S)
    if completed.returncode != 0:
        raise RuntimeError(f"child process for {setting.name} failed: {completed.stderr.strip()[-500:]}")
    return float(json.loads(completed.stdout.strip().splitlines()[-1])["seconds"])


def _thread_speedups(options: Options, preset: str, steps: int, repeats: int) -> dict[str, float]:
    """Return the speed-up of each thread setting over a child with this process's thread count."""
    settings = thread_settings(torch.get_num_threads())
    times: dict[ThreadSetting, list[float]] = {setting: [] for setting in settings}
    for _ in range(repeats):
        for setting in settings:
            times[setting].append(_child_seconds(setting, preset, steps, options.data_dir))
    base = statistics.median(times[settings[0]])
    return {setting.name: base / statistics.median(times[setting]) for setting in settings[1:]}


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
    threads = torch.get_num_threads()
    probe = MinimalLoop(config, dataset)
    probe.step()
    steps = steps_per_block(timed(probe.step), 0.3 if options.quick else 1.0)
    repeats = 1 if options.quick else 3

    speedups, failures, base = _in_process_speedups(config, dataset, steps, repeats)
    thread_speedups = _thread_speedups(options, preset, steps, 1 if options.quick else 2)
    trainer_time = _trainer_seconds_per_100(config, dataset, steps, repeats)
    listed = ", ".join(f"{name} {value:.2f}x" for name, value in speedups.items())
    listed += "".join(f", {name} failed ({reason})" for name, reason in failures.items())
    threads_listed = ", ".join(f"{name} {value:.2f}x" for name, value in thread_speedups.items())
    # The baseline competes too, at 1.0, so "fastest" may name the current setting.
    best = max({"none, the baseline": 1.0, **speedups}.items(), key=lambda item: item[1])
    baseline_threads = thread_settings(threads)[0].name
    best_threads = max({f"{baseline_threads}, the baseline": 1.0, **thread_speedups}.items(),
                       key=lambda item: item[1])
    return [
        Result("throughput", f"{preset}: Trainer, default settings", trainer_time, "s/100 steps", None,
               f"{described}, batch {config.batch_size}, n_critic {config.n_critic}, torch threads {threads}, "
               f"no run folder; minimal loop baseline {100 * base / steps:.2f} s/100 steps"),
        Result("throughput", f"{preset}: fastest option: {best[0]}", best[1], "x", None,
               f"speed-up of the minimal loop over its baseline: {listed}; {steps} steps per block, "
               f"{repeats} rotations"),
        Result("throughput", f"{preset}: fastest threads: {best_threads[0]}", best_threads[1], "x", None,
               f"speed-up over a child process with {baseline_threads}: {threads_listed}"),
    ]


def measure(options: Options) -> list[Result]:
    dataset, spec, described = mnist_dataset(options)
    results = []
    for preset in PRESETS:
        logger.info("throughput: %s", preset)
        results += _measure_preset(options, preset, dataset, spec, described)
    return results


def child_main(argv: list[str] | None = None) -> int:
    """Time one block of the minimal loop and print {"seconds": ...} as JSON (run by _child_seconds)."""
    parser = argparse.ArgumentParser(description="time one block of the minimal loop (internal)")
    parser.add_argument("--preset", required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    options = Options(quick=True, scratch=Path("."), data_dir=args.data_dir, threads=args.threads)
    dataset, spec, _ = mnist_dataset(options)
    config = build_config({"data": spec, "steps": 10**9, "device": "cpu"}, preset=args.preset)
    loop = MinimalLoop(config, dataset)
    loop.run(1)
    print(json.dumps({"seconds": timed(lambda: loop.run(args.steps))}))
    return 0


if __name__ == "__main__":
    sys.exit(child_main())
