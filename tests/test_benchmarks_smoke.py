"""The benchmark harness: goals, paired ratios, the Markdown sections, and one quick figure end to end."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
if str(REPOSITORY) not in sys.path:
    # `python -m pytest` from the repository root finds the benchmarks package on
    # its own; a bare `pytest` does not put the root on sys.path.
    sys.path.insert(0, str(REPOSITORY))

from benchmarks import __main__ as bench  # noqa: E402
from benchmarks.harness import Goal, PairedTimes, Result, balanced_ratios, interleave  # noqa: E402
from benchmarks.report import update_markdown  # noqa: E402


def test_goal_boundaries():
    at_least = Goal(">=", 0.97)
    below = Goal("<", 16.0, "ms")
    assert at_least.met_by(0.97)
    assert not at_least.met_by(0.9699)
    assert below.met_by(15.99)
    assert not below.met_by(16.0)
    assert str(below) == "< 16 ms"


def test_paired_ratios_median():
    # Reference / candidate per pair: 2/1, 3/2, 8/2 -> 2.0, 1.5, 4.0.
    times = PairedTimes(candidate=[1.0, 2.0, 2.0], reference=[2.0, 3.0, 8.0])
    assert times.ratios() == [2.0, 1.5, 4.0]
    assert times.median_ratio() == 2.0


def test_result_met_without_goal_or_failed():
    assert Result("x", "case", 1.0, "x").met is None
    assert Result("x", "case", 1.0, "x", Goal(">=", 0.5), failed=True).met is None
    assert Result("x", "case", float("nan"), "x", Goal(">=", 0.5)).met is None
    assert Result("x", "case", 0.4, "x", Goal(">=", 0.5)).met is False


def test_markdown_sections_replaced_in_order(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\nHand-written analysis.\n", encoding="utf-8")
    order = ["engine", "window", "plot"]
    titles = {"engine": "Engine", "window": "Window", "plot": "Plot"}

    update_markdown(path, {"plot": [Result("plot", "redraw", 12.0, "ms")]}, titles, "run 1", order)
    update_markdown(path, {"engine": [Result("engine", "dcgan", 1.01, "x")]}, titles, "run 2", order)
    update_markdown(path, {"plot": [Result("plot", "redraw", 14.0, "ms")]}, titles, "run 3", order)
    text = path.read_text(encoding="utf-8")

    assert text.startswith("# Benchmarks\n\nHand-written analysis.\n")
    assert text.count("<!-- bench:plot start -->") == 1
    assert text.index("bench:engine start") < text.index("bench:plot start")
    assert "| redraw | 14 ms |" in text
    assert "12 ms" not in text
    assert "run 2" in text
    assert "run 3" in text
    assert "run 1" not in text


def test_only_rejects_unknown_figure():
    with pytest.raises(SystemExit, match="unknown figure gpu"):
        bench.selected_figures("engine,gpu")
    assert bench.selected_figures("frechet, engine") == ["engine", "frechet"]


def test_quick_frechet_end_to_end(tmp_path, capsys):
    output = tmp_path / "BENCHMARKS.md"
    try:
        status = bench.main(["--quick", "--only", "frechet", "--output", str(output)])
    finally:
        logging.getLogger().removeHandler(bench._handler)
    printed = capsys.readouterr().out
    text = output.read_text(encoding="utf-8")

    assert status == 0
    assert "relative difference, d=256, N=512 (full rank)" in printed
    assert "<!-- bench:frechet start -->" in text
    # Both methods compute the same distance; at d=256 they agree to about 1e-12.
    row = next(line for line in text.splitlines() if line.startswith("| relative difference, d=256, N=512"))
    assert row.split("|")[4].strip() == "yes"


def test_balanced_ratios_cancel_order():
    # The block that runs second is 10% faster, and consecutive pairs swap the order.
    units = balanced_ratios([1.1, 1 / 1.1, 1.1, 1 / 1.1, 3.0])
    assert units == pytest.approx([1.0, 1.0])   # the odd last pair is dropped


def test_interleave_alternates_order():
    calls = []
    interleave(lambda: calls.append("candidate") or 1.0, lambda: calls.append("reference") or 1.0, 3)
    assert calls == ["candidate", "reference", "reference", "candidate", "candidate", "reference"]
