"""The results table, as plain text for the terminal and as Markdown sections of BENCHMARKS.md.

Each figure owns one section of the Markdown file, delimited by the comments
``<!-- bench:NAME start -->`` and ``<!-- bench:NAME end -->``. A run rewrites
the sections of the figures it measured and leaves the rest of the file,
hand-written analysis included, as it was.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from benchmarks.harness import Result

RESULTS_HEADING = "## Results"


def _met_text(result: Result) -> str:
    if result.failed:
        return "failed"
    return {True: "yes", False: "NO", None: "-"}[result.met]


def format_table(results: Sequence[Result]) -> str:
    """Return an aligned text table of ``results`` followed by one details line per row."""
    rows = [("case", "result", "goal", "met")]
    rows += [(r.case, r.formatted_value(), str(r.goal) if r.goal else "-", _met_text(r)) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines += [f"  {r.case}: {r.details}" for r in results if r.details]
    return "\n".join(lines)


def markdown_section(title: str, header: str, results: Sequence[Result]) -> str:
    """Return a section: its heading, the line naming date, command and machine, and a table."""
    lines = [f"### {title}", "", header, "", "| Case | Result | Goal | Met | Details |", "|---|---|---|---|---|"]
    for r in results:
        details = r.details.replace("|", "\\|")
        lines.append(f"| {r.case} | {r.formatted_value()} | {r.goal or '-'} | {_met_text(r)} | {details} |")
    return "\n".join(lines)


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name} start -->", f"<!-- bench:{name} end -->"


def update_markdown(path: Path, sections: dict[str, Sequence[Result]], titles: dict[str, str], header: str,
                    order: Sequence[str]) -> None:
    """Replace or add the sections of ``sections`` in the Markdown file at ``path``.

    A section that is not in the file yet goes after the section that precedes
    it in ``order``, or at the end of the file under a "Results" heading.
    """
    text = path.read_text(encoding="utf-8") if path.exists() else f"# Benchmarks\n\n{RESULTS_HEADING}\n"
    for name in order:
        if name not in sections:
            continue
        start, end = _markers(name)
        block = f"{start}\n{markdown_section(titles[name], header, sections[name])}\n{end}"
        pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
        if pattern.search(text):
            text = pattern.sub(lambda _match: block, text, count=1)
        else:
            text = _insert_section(text, block, name, order)
    path.write_text(text, encoding="utf-8")


def _insert_section(text: str, block: str, name: str, order: Sequence[str]) -> str:
    earlier = list(order)[:list(order).index(name)]
    for previous in reversed(earlier):
        end = _markers(previous)[1]
        position = text.find(end)
        if position >= 0:
            position += len(end)
            return f"{text[:position]}\n\n{block}{text[position:]}"
    for following in list(order)[len(earlier) + 1:]:
        position = text.find(_markers(following)[0])
        if position >= 0:
            return f"{text[:position]}{block}\n\n{text[position:]}"
    if RESULTS_HEADING not in text:
        text = f"{text.rstrip()}\n\n{RESULTS_HEADING}\n"
    return f"{text.rstrip()}\n\n{block}\n"
