"""Locate the application's resource files and build its icon.

The canonical files live in ``resources/`` at the top of the source tree. A
running program finds them in the first of these folders that exists:

1. ``<bundle>/resources`` inside a PyInstaller bundle (``sys._MEIPASS``);
2. ``workbench/_resources`` in an installed wheel, where the build copies
   ``resources/`` to;
3. ``resources/`` of the source checkout, which also serves editable installs.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path, PurePath

from PySide6.QtCore import QSize
from PySide6.QtGui import QGuiApplication, QIcon

import workbench

logger = logging.getLogger(__name__)

APP_ID = "io.github.ganworkbench.GANWorkbench"
"""Reverse-DNS application id: the stem of the .desktop, metainfo and icon files."""

ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
"""Pixel sizes of the rendered PNG icons."""


def resource_dirs() -> list[Path]:
    """Return the folders searched for resources, in search order."""
    candidates = []
    bundle_root = getattr(sys, "_MEIPASS", None)
    if bundle_root is not None:
        candidates.append(Path(bundle_root) / "resources")
    package_root = Path(workbench.__file__).resolve().parent
    candidates.append(package_root / "_resources")
    candidates.append(package_root.parent / "resources")
    return candidates


def resource_path(name: str) -> Path:
    """Return the path of resource ``name``, relative to the resources folder.

    Raises
    ------
    ValueError
        If ``name`` is absolute or climbs out of the folder with ``..``.
    FileNotFoundError
        If no searched folder contains ``name``. The message lists the folders.
    """
    relative = PurePath(name)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise ValueError(f"resource name must be a relative path inside the resources folder, got {name!r}")
    searched = resource_dirs()
    for folder in searched:
        candidate = folder / relative
        if candidate.is_file():
            return candidate
    folders = ", ".join(str(folder) for folder in searched)
    raise FileNotFoundError(f"resource {name!r} not found in any of: {folders}")


def icon_name(size: int | None = None) -> str:
    """Return the resource name of the PNG icon of ``size`` pixels, or of the SVG for None."""
    if size is None:
        return f"icons/hicolor/scalable/apps/{APP_ID}.svg"
    if size not in ICON_SIZES:
        sizes = ", ".join(str(s) for s in ICON_SIZES)
        raise ValueError(f"no icon is rendered at {size} px. Choose one of {sizes}")
    return f"icons/hicolor/{size}x{size}/apps/{APP_ID}.png"


def app_icon() -> QIcon:
    """Return the application icon with every rendered PNG size.

    A missing PNG is logged and left out, so a broken install shows a
    smaller set of sizes or Qt's blank icon instead of failing to start.
    """
    icon = QIcon()
    for size in ICON_SIZES:
        try:
            path = resource_path(icon_name(size))
        except FileNotFoundError as error:
            logger.warning("icon left out: %s", error)
            continue
        icon.addFile(str(path), QSize(size, size))
    return icon


def configure_application(app: QGuiApplication) -> None:
    """Set the window icon, version and desktop file name on ``app``.

    The desktop file name lets Wayland compositors and docks match the
    window to the installed ``.desktop`` entry and its icon.
    """
    app.setApplicationVersion(workbench.__version__)
    app.setDesktopFileName(APP_ID)
    app.setWindowIcon(app_icon())
