"""Fork dialog: start a new run from a run's checkpoint with some settings changed.

The dialog reuses the setup form, filled with the parent's settings. Fields a
fork cannot change (the data, the seed, the sample batch and the model
architecture, all fixed by the checkpoint) are locked. Accepting calls
:func:`workbench.core.run_index.fork_run`; its errors are shown in the dialog,
which stays open.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit, QVBoxLayout

from workbench.app.setup_panel import SetupPanel
from workbench.core import run_index, runs
from workbench.core.validation import ConfigError

logger = logging.getLogger(__name__)

# Fields whose value the checkpoint fixes, so the form shows them read-only.
LOCKED_FIELDS = ("seed", "num_samples", "z_dim", "width", "d_norm", "image_size", "channels")
ERROR_STYLE = "color: #b00020;"


def default_fork_name(source: Path, step: int) -> str:
    """Return a free folder name next to ``source``: <source>-fork-<step>[-k]."""
    base = f"{source.name}-fork-{step}"
    candidate, index = base, 1
    while (source.parent / candidate).exists():
        index += 1
        candidate = f"{base}-{index}"
    return candidate


class ForkDialog(QDialog):
    """Ask for the fork's settings and folder name, then create the fork.

    After ``accept`` the new run folder is in ``forked_run``; training it means
    resuming it from the copied checkpoint.
    """

    def __init__(self, source: str | Path, runs_dir: str | Path | None = None, parent=None):
        super().__init__(parent)
        self.source = Path(source)
        self.runs_dir = Path(runs_dir) if runs_dir is not None else self.source.parent
        self.forked_run: Path | None = None
        self.setWindowTitle(f"Fork {self.source.name}")
        saved = runs.read_config(self.source)
        self.parent_step = runs.last_metrics_step(self.source / runs.METRICS_FILE) or 0
        self._build(saved)

    def _build(self, saved: dict) -> None:
        self.setup = SetupPanel()
        self.setup.set_values(saved)
        self._lock_fixed_fields()
        self.name_edit = QLineEdit(default_fork_name(self.source, self.parent_step))
        self.name_edit.setToolTip(f"Folder created in {self.runs_dir}")
        intro = QLabel(f"The fork starts from the last checkpoint of {self.source.name} and trains up to "
                       "the steps set below. Data, seed, sample batch and model size are fixed by the "
                       "checkpoint; the loss, constraint (except to or from sn), optimizer, learning rates "
                       "and intervals can change.")
        intro.setWordWrap(True)
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet(ERROR_STYLE)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Fork and train")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.setup.validity_changed.connect(self._on_validity_changed)

        name_form = QFormLayout()
        name_form.addRow("New run folder", self.name_edit)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.setup, stretch=1)
        layout.addLayout(name_form)
        layout.addWidget(self.error_label)
        layout.addWidget(self.buttons)
        self.resize(460, 720)
        self._on_validity_changed(self.setup.config is not None, self.setup.problem())

    def _lock_fixed_fields(self) -> None:
        for widget in (self.setup.data_combo, self.setup.path_edit, self.setup.browse_button):
            widget.setEnabled(False)
        for name in LOCKED_FIELDS:
            self.setup.editors[name].setEnabled(False)

    def _on_validity_changed(self, valid: bool, problem: str) -> None:
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(valid)
        self.error_label.setText("" if valid else problem)

    def create_fork(self) -> Path | None:
        """Create the fork from the form; return its folder, or None after showing the error."""
        config = self.setup.config
        if config is None:
            self.error_label.setText(self.setup.problem())
            return None
        try:
            name = run_index.validate_run_name(self.name_edit.text())
            self.forked_run = run_index.fork_run(self.source, self.runs_dir / name, config.to_dict())
        except ConfigError as error:
            self.error_label.setText(str(error))
            logger.info("fork of %s rejected: %s", self.source, error)
            return None
        return self.forked_run

    def accept(self) -> None:
        if self.create_fork() is not None:
            super().accept()
