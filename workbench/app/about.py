"""The About dialog and the version facts that it and ``--version`` print."""

from __future__ import annotations

import logging
import platform
from importlib import metadata

import PySide6
from PySide6.QtCore import Qt, qVersion
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
)

import workbench
from workbench.app.resources import app_icon

logger = logging.getLogger(__name__)

APP_NAME = "GAN Workbench"


def _distribution_version(name: str) -> str:
    # A PyInstaller bundle carries only the metadata its spec copies.
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def version_line() -> str:
    """Return the one-line version string that ``gan-workbench --version`` prints.

    It reads package metadata only and does not import torch, so it returns
    in milliseconds.
    """
    torch_version = _distribution_version("torch")
    return f"gan-workbench {workbench.__version__} (torch {torch_version}, PySide6 {PySide6.__version__})"


def describe_device() -> str:
    """Return the best device found: a CUDA GPU, else Apple MPS, else the CPU.

    This is the order in which the ``auto`` device setting picks a device.
    """
    import torch

    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        name = torch.cuda.get_device_name(0)
        return f"CUDA: {name}" if count == 1 else f"CUDA: {name} (and {count - 1} more)"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "MPS (Apple GPU)"
    threads = torch.get_num_threads()
    return f"CPU ({threads} thread{'' if threads == 1 else 's'})"


def version_facts() -> list[tuple[str, str]]:
    """Return (label, value) pairs for the versions and the device found."""
    import pyqtgraph
    import torch

    cuda = torch.version.cuda
    cuda_text = f"{cuda} (built into torch)" if cuda else "not available (CPU-only torch build)"
    return [
        (APP_NAME, workbench.__version__),
        ("Python", f"{platform.python_version()} ({platform.python_implementation()})"),
        ("PyTorch", torch.__version__),
        ("CUDA", cuda_text),
        ("Device", describe_device()),
        ("Qt", qVersion()),
        ("PySide6", PySide6.__version__),
        ("pyqtgraph", pyqtgraph.__version__),
        ("Platform", platform.platform()),
    ]


def version_report() -> str:
    """Return the versions and device as aligned plain-text lines, for bug reports."""
    facts = version_facts()
    width = max(len(label) for label, _ in facts)
    return "\n".join(f"{label + ':':<{width + 1}} {value}" for label, value in facts)


class AboutDialog(QDialog):
    """Dialog with the icon, name, version and the full :func:`version_report`."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"About {APP_NAME}")
        self.setWindowIcon(app_icon())
        self.report_text = version_report()

        layout = QVBoxLayout(self)
        layout.addLayout(self._build_header())
        layout.addWidget(self._build_report_view())
        layout.addWidget(self._build_buttons())

    def _build_header(self) -> QHBoxLayout:
        icon_label = QLabel()
        icon_label.setPixmap(app_icon().pixmap(64, 64))
        self.title_label = QLabel(f"<b>{APP_NAME}</b><br>Version {workbench.__version__}<br>MIT License")
        self.title_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        header = QHBoxLayout()
        header.addWidget(icon_label)
        header.addWidget(self.title_label, 1)
        return header

    def _build_report_view(self) -> QPlainTextEdit:
        self.report_view = QPlainTextEdit(self.report_text)
        self.report_view.setReadOnly(True)
        self.report_view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        line_height = self.report_view.fontMetrics().lineSpacing()
        self.report_view.setMinimumSize(480, line_height * (self.report_text.count("\n") + 3))
        return self.report_view

    def _build_buttons(self) -> QDialogButtonBox:
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.copy_button = QPushButton("Copy to Clipboard")
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.copy_button.clicked.connect(self._on_copy_clicked)
        buttons.rejected.connect(self.reject)
        return buttons

    def _on_copy_clicked(self) -> None:
        QGuiApplication.clipboard().setText(self.report_text)
        logger.info("copied the version report to the clipboard")
