"""Render the application icon SVG to the PNG sizes in resources/icons/hicolor.

Run it from the repository root after editing the SVG, and commit the PNGs:

    QT_QPA_PLATFORM=offscreen .venv/bin/python packaging/render_icons.py

With ``--check`` it renders in memory and exits with status 1 when a
committed PNG is missing, has the wrong size or differs from the SVG.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
from PySide6.QtCore import QRectF, Qt  # noqa: E402
from PySide6.QtGui import QGuiApplication, QImage, QPainter  # noqa: E402
from PySide6.QtSvg import QSvgRenderer  # noqa: E402

from workbench.app.resources import ICON_SIZES, icon_name  # noqa: E402

RESOURCES = Path(__file__).resolve().parents[1] / "resources"

MAX_MEAN_DIFFERENCE = 2.0
"""Largest mean absolute channel difference (0-255) ``--check`` accepts.

Another Qt version may antialias edges a little differently, so the check
allows small differences but catches an SVG edited without re-rendering.
"""


def render(renderer: QSvgRenderer, size: int) -> QImage:
    """Render the SVG into a transparent ``size`` x ``size`` ARGB image."""
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    return image


def mean_difference(first: QImage, second: QImage) -> float:
    """Return the mean absolute difference of the ARGB channels of two equal-size images."""
    channels = [
        np.frombuffer(image.convertToFormat(QImage.Format.Format_ARGB32).constBits(), dtype=np.uint8).astype(np.int16)
        for image in (first, second)
    ]
    return float(np.abs(channels[0] - channels[1]).mean())


def check_png(path: Path, expected: QImage) -> str | None:
    """Return why the PNG at ``path`` does not match ``expected``, or None when it does."""
    if not path.is_file():
        return f"{path}: missing"
    committed = QImage(str(path))
    if committed.isNull():
        return f"{path}: not a readable image"
    if committed.size() != expected.size():
        return f"{path}: is {committed.width()}x{committed.height()}, expected {expected.width()}x{expected.height()}"
    difference = mean_difference(committed, expected)
    if difference > MAX_MEAN_DIFFERENCE:
        return f"{path}: differs from the SVG by {difference:.2f} per channel on average. Re-render it with packaging/render_icons.py"
    return None


def main(argv: list[str] | None = None) -> int:
    """Render or check every PNG size and return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare the committed PNGs with the SVG instead of writing them")
    args = parser.parse_args(argv)

    _app = QGuiApplication.instance() or QGuiApplication([])  # QPainter needs an application for fonts
    svg_path = RESOURCES / icon_name(None)
    renderer = QSvgRenderer(str(svg_path))
    if not renderer.isValid():
        print(f"{svg_path}: not a valid SVG", file=sys.stderr)
        return 1

    problems = []
    for size in ICON_SIZES:
        image = render(renderer, size)
        path = RESOURCES / icon_name(size)
        if args.check:
            problem = check_png(path, image)
            if problem:
                problems.append(problem)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if not image.save(str(path), "PNG"):
            problems.append(f"{path}: failed to write")
        else:
            print(f"wrote {path.relative_to(RESOURCES.parent)}")

    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
