"""Run the benchmarks, print the results table and record it in BENCHMARKS.md.

    QT_QPA_PLATFORM=offscreen python -m benchmarks                      # all figures (make bench)
    QT_QPA_PLATFORM=offscreen python -m benchmarks --only engine,frechet
    python -m benchmarks --quick --only frechet                         # smoke check, writes nothing

A full run replaces, in BENCHMARKS.md, the section of each figure it measured
and keeps the others. A quick run prints only, unless ``--output`` is given.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import tempfile
import traceback
from pathlib import Path

from benchmarks.harness import Options, Result, command_line, describe_machine, today
from benchmarks.report import format_table, update_markdown

logger = logging.getLogger(__name__)
_handler: logging.Handler | None = None   # the handler configure_logging added, replaced on each call

REPOSITORY = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPOSITORY / "BENCHMARKS.md"
DEFAULT_DATA_DIR = REPOSITORY.parent / "shared" / "data"

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

# name -> (module, function, section title), in the order a full run measures them.
FIGURES = {
    "engine": ("benchmarks.engine", "measure", "Engine overhead"),
    "window": ("benchmarks.window", "measure_overhead", "Window overhead"),
    "responsiveness": ("benchmarks.window", "measure_responsiveness", "GUI responsiveness"),
    "plot": ("benchmarks.plot_scale", "measure", "Plot scale"),
    "frechet": ("benchmarks.fid", "measure_frechet", "Fréchet distance at 2,048 dimensions"),
    "features": ("benchmarks.fid", "measure_features", "FID feature extraction"),
    "throughput": ("benchmarks.throughput", "measure", "CPU training throughput"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", metavar="NAMES",
                        help=f"comma-separated figures to run, from: {', '.join(FIGURES)} (default: all)")
    parser.add_argument("--quick", action="store_true",
                        help="short blocks and few repetitions: checks the code runs, the numbers are rough")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"Markdown file to update (default {DEFAULT_OUTPUT.name}; a quick run writes none "
                             "unless this is given)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="folder holding mnist/ and cifar10-test/ (default: ../shared/data)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads and BLAS threads for every figure; 0 keeps the defaults")
    parser.add_argument("--verbose", action="store_true", help="log each timed pair")
    return parser.parse_args(argv)


def selected_figures(only: str) -> list[str]:
    """Return the figure names ``--only`` selects, in run order; raise SystemExit on an unknown name."""
    if not only.strip():
        return list(FIGURES)
    names = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in names if name not in FIGURES]
    if unknown:
        raise SystemExit(f"python -m benchmarks: error: unknown figure {', '.join(unknown)} in --only; "
                         f"choose from {', '.join(FIGURES)}")
    return [name for name in FIGURES if name in names]


def run_figure(name: str, options: Options) -> list[Result]:
    """Measure one figure; a failure becomes a row with the error instead of ending the run."""
    module_name, function_name, title = FIGURES[name]
    try:
        function = getattr(importlib.import_module(module_name), function_name)
        return function(options)
    except Exception as error:  # one broken figure must not hide the others
        logger.error("figure %s failed:\n%s", name, traceback.format_exc())
        return [Result(name, title, float("nan"), "", None, f"failed: {type(error).__name__}: {error}", failed=True)]


def configure_logging(verbose: bool) -> None:
    """Print warnings from everything and progress from the benchmarks (debug too when verbose).

    The filter sits on the handler, not on the root logger's level, because
    the window's log panel lowers the root level while a window is open.
    """
    global _handler
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    own_level = logging.DEBUG if verbose else logging.INFO
    _handler.addFilter(lambda record: record.levelno >= logging.WARNING
                       or (record.name.startswith("benchmarks") and record.levelno >= own_level))
    root.addHandler(_handler)
    logging.getLogger("benchmarks").setLevel(own_level)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.verbose)
    names = selected_figures(args.only)
    if args.threads:
        # NumPy's and SciPy's BLAS read these once, when they load, so they are
        # set before anything imports numpy.
        for variable in THREAD_VARIABLES:
            os.environ[variable] = str(args.threads)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    machine = describe_machine()
    print(f"machine: {machine}", flush=True)

    failed = False
    sections: dict[str, list[Result]] = {}
    with tempfile.TemporaryDirectory(prefix="workbench-bench-") as scratch:
        options = Options(quick=args.quick, scratch=Path(scratch), data_dir=args.data_dir,
                          threads=torch.get_num_threads(), threads_given=bool(args.threads))
        # FID statistics and domain classifiers are cached under $XDG_CACHE_HOME; an
        # empty one makes every FID figure start cold and keeps the user's cache clean.
        os.environ["XDG_CACHE_HOME"] = str(options.scratch / "cache")
        for name in names:
            print(f"\n== {FIGURES[name][2]} ({name})", flush=True)
            results = run_figure(name, options)
            failed |= any(result.failed for result in results)
            sections[name] = results
            print(format_table(results), flush=True)

    output = args.output
    if output is None and not args.quick:
        output = DEFAULT_OUTPUT
    if output is not None:
        header = f"Measured {today()} with `{command_line()}` on {machine}."
        titles = {name: FIGURES[name][2] for name in sections}
        update_markdown(output, sections, titles, header, order=list(FIGURES))
        print(f"\nwrote {output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
