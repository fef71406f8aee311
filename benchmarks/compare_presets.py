"""Mode coverage of the four presets on ring8 and grid25, over several seeds.

Trains each preset headless on each 2D mixture and reports the coverage
metrics of VEEGAN and PacGAN from 2,500 generated points: modes covered,
the high-quality percentage (within 3 standard deviations of the nearest
mode) and the KL divergence of the mode histogram from the uniform one.

    python -m benchmarks.compare_presets --steps 2000 --seeds 5 --out benchmarks/preset_comparison.md
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from workbench.core.analysis import mixture_coverage
from workbench.core.config import build_config
from workbench.core.trainer import Trainer

PRESETS = ("dcgan", "wgan", "wgan-gp", "sngan")
MIXTURES = ("ring8", "grid25")
NUM_POINTS = 2500


def train_and_measure(data: str, preset: str, seed: int, steps: int, batch_size: int) -> dict:
    config = build_config(dict(data=data, preset=preset, steps=steps, seed=seed, batch_size=batch_size,
                               log_every=10**9))
    trainer = Trainer(config)
    start = time.perf_counter()
    trainer.run()
    minutes = (time.perf_counter() - start) / 60
    noise = torch.randn(NUM_POINTS, trainer.z_dim, generator=torch.Generator().manual_seed(seed + 100))
    points = trainer.generate(noise).cpu().numpy()
    report = mixture_coverage(points, trainer.dataset.modes, trainer.dataset.mode_std)
    trainer.close()
    return dict(modes=report.modes_covered, num_modes=report.num_modes,
                high_quality=100 * report.high_quality_fraction, kl=report.kl, minutes=minutes)


def mean_std(values: list[float]) -> str:
    finite = [v for v in values if v == v and v != float("inf")]
    if len(finite) < len(values):
        return f"inf in {len(values) - len(finite)} of {len(values)}"
    spread = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return f"{statistics.mean(finite):.2f} ± {spread:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="Markdown file for the table")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    lines = ["| data | preset | modes covered | high quality % | KL | minutes per run |",
             "|---|---|---|---|---|---|"]
    for data in MIXTURES:
        for preset in PRESETS:
            results = [train_and_measure(data, preset, seed, args.steps, args.batch_size) for seed in range(args.seeds)]
            modes = [r["modes"] for r in results]
            line = (f"| {data} | {preset} | {mean_std(modes)} of {results[0]['num_modes']} "
                    f"(min {min(modes)}, max {max(modes)}) | {mean_std([r['high_quality'] for r in results])} "
                    f"| {mean_std([r['kl'] for r in results])} | {statistics.mean(r['minutes'] for r in results):.2f} |")
            lines.append(line)
            print(line, flush=True)
    header = (f"Command: `python -m benchmarks.compare_presets --steps {args.steps} --seeds {args.seeds} "
              f"--batch-size {args.batch_size} --threads {args.threads}`; mean ± standard deviation over "
              f"seeds 0 to {args.seeds - 1}, {NUM_POINTS} generated points per run.\n\n")
    if args.out is not None:
        args.out.write_text(header + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
