"""Export the window's settings as a ``torchrun ... -m workbench train`` command line.

The command passes ``--data`` and ``--preset`` always and every other setting
only where it differs from what that preset gives, so it stays short and
``gan-workbench train`` rebuilds exactly the same settings from it.
"""

from __future__ import annotations

import logging
import shlex
from pathlib import Path

from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QDialog, QDialogButtonBox, QFormLayout, QLabel, QPlainTextEdit, QPushButton, QSpinBox, QVBoxLayout,
)

from workbench.core.config import TrainConfig, build_config

logger = logging.getLogger(__name__)

MAX_PROCESSES = 1024


def _option_value(name: str, value) -> list[str]:
    if name == "betas":
        return [repr(float(value[0])), repr(float(value[1]))]
    if isinstance(value, float):
        return [repr(value)]
    return [str(value)]


def train_arguments(config: TrainConfig, run_dir: str | Path) -> list[str]:
    """Return the ``train`` arguments that rebuild ``config``, ending with ``--out run_dir``."""
    baseline = build_config({"data": config.data}, preset=config.preset)
    arguments = ["train", "--data", config.data, "--preset", config.preset]
    for name, value in config.to_dict().items():
        if name in ("data", "preset"):
            continue
        if value == baseline.to_dict()[name]:
            continue
        arguments += ["--" + name.replace("_", "-"), *_option_value(name, value)]
    return arguments + ["--out", str(run_dir)]


def torchrun_command(config: TrainConfig, run_dir: str | Path, nproc_per_node: int) -> list[str]:
    """Return the torchrun command line, as a list of arguments, that trains ``config`` on N processes."""
    if isinstance(nproc_per_node, bool) or not isinstance(nproc_per_node, int) or not 1 <= nproc_per_node <= MAX_PROCESSES:
        raise ValueError(f"nproc_per_node must be a whole number from 1 to {MAX_PROCESSES}, got {nproc_per_node!r}")
    return ["torchrun", "--nproc_per_node", str(nproc_per_node), "-m", "workbench",
            *train_arguments(config, run_dir)]


class TorchrunDialog(QDialog):
    """Show the torchrun command for the current settings, with a process count and a Copy button."""

    def __init__(self, config: TrainConfig, run_dir: str | Path, parent=None):
        super().__init__(parent)
        self.config = config
        self.run_dir = Path(run_dir)
        self.setWindowTitle("Export as torchrun command")
        self.nproc_spin = QSpinBox()
        self.nproc_spin.setRange(1, MAX_PROCESSES)
        self.nproc_spin.setValue(1)
        self.nproc_spin.setToolTip("Processes started on this node, usually one per GPU. Each trains on "
                                   "its share of every batch, so batch_size is the global batch.")
        self.nproc_spin.valueChanged.connect(self._update_command)
        self.command_edit = QPlainTextEdit()
        self.command_edit.setReadOnly(True)
        self.command_edit.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy the command to the clipboard")
        self.copy_button.clicked.connect(self.copy_to_clipboard)
        note = QLabel("Run it in a shell on the training machine, from an environment where "
                      "GAN Workbench is installed. Open the run folder with File > Open run folder "
                      "(follow) to watch it train.")
        note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)

        form = QFormLayout()
        form.addRow("Processes per node", self.nproc_spin)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.command_edit, stretch=1)
        layout.addWidget(note)
        layout.addWidget(buttons)
        self.resize(640, 240)
        self._update_command()

    def command(self) -> str:
        """Return the command line as shell text, quoted for a POSIX shell."""
        return shlex.join(torchrun_command(self.config, self.run_dir, self.nproc_spin.value()))

    def _update_command(self, *_args) -> None:
        self.command_edit.setPlainText(self.command())

    def copy_to_clipboard(self) -> None:
        QGuiApplication.clipboard().setText(self.command())
        logger.info("copied the torchrun command to the clipboard")
