"""Setup panel: data set, preset, loss, constraint and a form for every training setting.

Every value is checked by the engine's own validators (``validate_field`` per field,
then ``build_config`` for the combinations), and the engine's message is shown under
the field it names. The panel never starts anything. It publishes whether the form
contains a valid config, and if not, why.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton,
    QScrollArea, QVBoxLayout, QWidget,
)

from workbench.core.config import PRESETS, TrainConfig, build_config, describe_preset, validate_field
from workbench.core.fields import FIELDS
from workbench.core.trainer import resolve_device
from workbench.core.validation import ConfigError

logger = logging.getLogger(__name__)

# (label shown, data kind) in the order of the data set menu.
DATA_CHOICES = (
    ("ring8: ring of 8 Gaussians (2D)", "ring8"),
    ("grid25: 5 x 5 grid of Gaussians (2D)", "grid25"),
    ("spiral (2D)", "spiral"),
    ("MNIST", "mnist"),
    ("Fashion-MNIST", "fashion-mnist"),
    ("CIFAR-10", "cifar10"),
    ("Image folder", "folder"),
)
PATH_HINTS = {
    "mnist": "folder with the MNIST IDX files (t10k-images-idx3-ubyte.gz, ...)",
    "fashion-mnist": "folder with the Fashion-MNIST IDX files",
    "cifar10": "folder with torchvision's cifar-10-batches-py (for JPEG folders, choose Image folder)",
    "folder": "folder of images (PNG, JPEG, ...), searched recursively",
}

# Form groups below the recipe; together with data, preset, loss and constraint they
# cover every TrainConfig field (checked in the tests).
GROUPS = (
    ("Training", ("steps", "batch_size", "n_critic", "optimizer", "lr_g", "lr_d", "betas",
                  "clip_value", "gp_weight")),
    ("Models", ("z_dim", "width", "d_norm", "image_size", "channels")),
    ("Run", ("seed", "device", "sample_every", "checkpoint_every", "log_every", "num_samples")),
)

ERROR_STYLE = "color: #b00020;"
INVALID_EDITOR_STYLE = "border: 1px solid #b00020;"


# Fields that apply only under some settings; see SetupPanel.not_applying.
CONDITIONAL_FIELDS = ("betas", "clip_value", "gp_weight", "image_size", "channels")


def format_value(value: Any) -> str:
    """Return the form text for a config value: numbers in %g form, betas as 'b1, b2'."""
    if isinstance(value, (tuple, list)):
        return ", ".join(format_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def critic_wording(text: str, wasserstein: bool) -> str:
    """Say 'critic' instead of 'discriminator' when the loss is Wasserstein, as Arjovsky et al. (2017) do for WGAN."""
    if not wasserstein:
        return text
    return text.replace("Discriminator", "Critic").replace("discriminator", "critic")


class SetupPanel(QWidget):
    """The form that turns user input into a validated :class:`TrainConfig`.

    Signals
    -------
    validity_changed(bool, str)
        Emitted after every edit: whether the form is valid, and the first problem.
    loss_changed(str)
        The loss chosen, so the window can rename plots ("critic" for Wasserstein).
    """

    validity_changed = Signal(bool, str)
    loss_changed = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.editors: dict[str, QComboBox | QLineEdit] = {}
        self.labels: dict[str, QLabel] = {}
        self.error_labels: dict[str, QLabel] = {}
        self._errors: dict[str, str] = {}
        self._config: TrainConfig | None = None
        self._last_loss = ""
        self._applying = False  # True while a preset or saved values are written into the form

        content = QWidget()
        layout = QVBoxLayout(content)
        layout.addWidget(self._build_data_group())
        layout.addWidget(self._build_recipe_group())
        for title, names in GROUPS:
            layout.addWidget(self._build_group(title, names))
        layout.addStretch(1)

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll, stretch=1)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        outer.addWidget(self.status_label)

        self._set_defaults()
        self.revalidate()

    # Construction ---------------------------------------------------------------------------

    def _build_data_group(self) -> QGroupBox:
        self.data_combo = QComboBox()
        for label, kind in DATA_CHOICES:
            self.data_combo.addItem(label, kind)
        self.data_combo.setToolTip(FIELDS["data"].help)
        self.data_combo.currentIndexChanged.connect(self._on_data_kind_changed)
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("folder")
        self.path_edit.textChanged.connect(self._on_edited)
        self.browse_button = QPushButton("Browse...")
        self.browse_button.clicked.connect(self._on_browse_clicked)

        path_row = QHBoxLayout()
        path_row.setContentsMargins(0, 0, 0, 0)
        path_row.addWidget(self.path_edit, stretch=1)
        path_row.addWidget(self.browse_button)
        path_widget = QWidget()
        path_widget.setLayout(path_row)

        group = QGroupBox("Data")
        form = QFormLayout(group)
        form.addRow(FIELDS["data"].label, self.data_combo)
        form.addRow("Folder", path_widget)
        self.error_labels["data"] = self._error_label()
        form.addRow("", self.error_labels["data"])
        self.editors["data"] = self.path_edit
        return group

    def _build_recipe_group(self) -> QGroupBox:
        group = QGroupBox("Recipe")
        form = QFormLayout(group)
        self._add_field(form, "preset")
        self.editors["preset"].currentIndexChanged.disconnect(self._on_edited)
        self.editors["preset"].currentIndexChanged.connect(self._on_preset_chosen)
        self.preset_state = QLabel()
        self.preset_state.setToolTip("Shows '(modified)' once a value set by the preset has been changed")
        form.addRow("", self.preset_state)
        self._add_field(form, "loss")
        self._add_field(form, "constraint")
        return group

    def _build_group(self, title: str, names: tuple[str, ...]) -> QGroupBox:
        group = QGroupBox(title)
        form = QFormLayout(group)
        for name in names:
            self._add_field(form, name)
        return group

    def _add_field(self, form: QFormLayout, name: str) -> None:
        info = FIELDS[name]
        if info.kind == "choice":
            editor = QComboBox()
            for choice in info.choices:
                editor.addItem(choice, choice)
            editor.currentIndexChanged.connect(self._on_edited)
        else:
            editor = QLineEdit()
            editor.textChanged.connect(self._on_edited)
        editor.setObjectName(f"field_{name}")
        label = QLabel()
        label.setBuddy(editor)
        error = self._error_label()

        cell = QVBoxLayout()
        cell.setContentsMargins(0, 0, 0, 0)
        cell.setSpacing(0)
        cell.addWidget(editor)
        cell.addWidget(error)
        container = QWidget()
        container.setLayout(cell)
        form.addRow(label, container)
        self.editors[name], self.labels[name], self.error_labels[name] = editor, label, error

    def _error_label(self) -> QLabel:
        label = QLabel()
        label.setWordWrap(True)
        label.setStyleSheet(ERROR_STYLE)
        label.setVisible(False)
        return label

    def _set_defaults(self) -> None:
        defaults = TrainConfig()
        self.set_values({name: getattr(defaults, name) for name in self.editors if name != "data"})
        self.set_data(defaults.data)

    # Public API -----------------------------------------------------------------------------

    def data_spec(self) -> str:
        """Return the data spec the form describes, such as 'ring8' or 'mnist:/data/mnist'."""
        kind = self.data_combo.currentData()
        if kind not in PATH_HINTS:
            return kind
        return f"{kind}:{self.path_edit.text().strip()}"

    def set_data(self, spec: str) -> None:
        """Choose the data set and folder from a spec ('ring8', 'cifar10:/data/cifar')."""
        kind, _, path = str(spec).partition(":")
        index = self.data_combo.findData(kind.strip().lower())
        if index < 0:
            logger.warning("ignored unknown data kind %r; keeping %s", kind, self.data_spec())
            return
        self._applying = True
        try:
            self.data_combo.setCurrentIndex(index)
            if path:
                self.path_edit.setText(path)
        finally:
            self._applying = False
        self._update_path_widgets()
        self.revalidate()

    def values(self) -> dict[str, str]:
        """Return the form as text, keyed by TrainConfig field name (data as a spec)."""
        values = {"data": self.data_spec()}
        for name, editor in self.editors.items():
            if name == "data":
                continue
            values[name] = editor.currentData() if isinstance(editor, QComboBox) else editor.text().strip()
        return values

    def set_values(self, values: Mapping[str, Any]) -> None:
        """Write ``values`` into the form without applying a preset; unknown names are skipped."""
        self._applying = True
        try:
            for name, value in values.items():
                if name == "data" or name not in self.editors:
                    continue
                editor = self.editors[name]
                if isinstance(editor, QComboBox):
                    index = editor.findData(str(value).strip().lower())
                    if index < 0:
                        logger.warning("ignored %s=%r: not one of the choices", name, value)
                        continue
                    editor.setCurrentIndex(index)
                else:
                    editor.setText(format_value(value))
        finally:
            self._applying = False
        if "data" in values:
            self.set_data(values["data"])
        self.revalidate()

    def set_preset(self, name: str) -> None:
        """Choose a preset; a published one fills the fields it sets."""
        combo = self.editors["preset"]
        index = combo.findData(name)
        if index < 0:
            raise ValueError(f"unknown preset {name!r}; choose one of custom, {', '.join(PRESETS)}")
        if index == combo.currentIndex():
            self._on_preset_chosen()
        else:
            combo.setCurrentIndex(index)

    def set_value(self, name: str, value: Any) -> None:
        """Set one field as a user would, so a preset field change marks the preset modified."""
        editor = self.editors[name]
        if isinstance(editor, QComboBox):
            editor.setCurrentIndex(editor.findData(str(value)))
        else:
            editor.setText(format_value(value))

    @property
    def config(self) -> TrainConfig | None:
        """The config the form describes, or None while a field is invalid."""
        return self._config

    @property
    def errors(self) -> dict[str, str]:
        """The engine's message for each invalid field."""
        return dict(self._errors)

    def problem(self) -> str:
        """Return the first invalid field and its message, or '' when the form is valid."""
        for name, message in self._errors.items():
            label = self.labels[name].text() if name in self.labels else FIELDS[name].label
            return f"{label}: {message}"
        return ""

    def set_editable(self, editable: bool) -> None:
        """Lock the form while a run uses its values."""
        for widget in self.findChildren(QGroupBox):
            widget.setEnabled(editable)
        if editable:
            self.revalidate()
        else:
            self.status_label.setStyleSheet("")
            self.status_label.setText("The settings are locked while a run uses them.")

    # Validation -----------------------------------------------------------------------------

    def revalidate(self) -> None:
        """Check every field with the engine's validators and show the messages."""
        if self._applying:
            return
        values = self.values()
        errors = self._field_errors(values)
        config = None
        if not errors:
            try:
                config = build_config(values)
            except ConfigError as error:
                errors[error.field if error.field in FIELDS else "data"] = error.detail
        self._errors, self._config = errors, config

        self._show_errors()
        self._refresh_labels(values["loss"] == "wasserstein")
        self._show_applicability(values)
        self.preset_state.setText(describe_preset(config) if config is not None else "")
        self._show_status(config)
        if values["loss"] != self._last_loss:
            self._last_loss = values["loss"]
            self.loss_changed.emit(values["loss"])
        self.validity_changed.emit(config is not None, self.problem())

    def _field_errors(self, values: Mapping[str, str]) -> dict[str, str]:
        errors = {}
        for name, value in values.items():
            try:
                validate_field(name, value)
            except ConfigError as error:
                errors[name] = error.detail
        kind = self.data_combo.currentData()
        path = self.path_edit.text().strip()
        if kind in PATH_HINTS and not path:
            # The engine's message for an empty folder is written for the command line ("mnist:PATH").
            errors["data"] = f"no folder chosen; click Browse and choose the {PATH_HINTS[kind]}"
        elif "data" not in errors and kind in PATH_HINTS and not Path(path).expanduser().is_dir():
            # The engine checks only the spec's syntax here; a missing folder would fail at Start.
            errors["data"] = f"folder {path!r} not found; choose the {PATH_HINTS[kind]}"
        if "device" not in errors:
            try:
                resolve_device(values["device"])   # 'cuda' on a machine without CUDA fails here
            except ConfigError as error:
                errors["device"] = error.detail
        return errors

    def _show_errors(self) -> None:
        for name, label in self.error_labels.items():
            message = self._errors.get(name, "")
            label.setText(message)
            label.setVisible(bool(message))
            self.editors[name].setStyleSheet(INVALID_EDITOR_STYLE if message else "")

    def _show_status(self, config: TrainConfig | None) -> None:
        if config is None:
            self.status_label.setStyleSheet(ERROR_STYLE)
            self.status_label.setText(f"Cannot start. {self.problem()}")
            return
        warnings = config.warnings()
        self.status_label.setStyleSheet("color: #9a6700;" if warnings else "")
        self.status_label.setText("Warning: " + warnings[0] if warnings else "Ready to start.")

    def _refresh_labels(self, wasserstein: bool) -> None:
        for name, label in self.labels.items():
            info = FIELDS[name]
            text = critic_wording(info.label, wasserstein)
            label.setText(f"{text} ({info.unit})" if info.unit else text)
            tip = critic_wording(info.help, wasserstein)
            if info.range_text:
                tip += f"\nAllowed: {info.range_text}."
            label.setToolTip(tip)
            self.editors[name].setToolTip(tip)

    def not_applying(self, values: Mapping[str, str] | None = None) -> dict[str, str]:
        """Return the fields the chosen settings ignore, each with the reason."""
        values = self.values() if values is None else values
        reasons = {}
        if values["optimizer"] != "adam":
            reasons["betas"] = f"only Adam uses betas; the optimizer is {values['optimizer']}"
        if values["constraint"] != "clip":
            reasons["clip_value"] = "used only with constraint clip"
        if values["constraint"] != "gp":
            reasons["gp_weight"] = "used only with constraint gp"
        if self.data_combo.currentData() not in PATH_HINTS:
            for name in ("image_size", "channels"):
                reasons[name] = "used only with image data; the 2D data sets are points"
        return reasons

    def _show_applicability(self, values: Mapping[str, str]) -> None:
        # A field the settings ignore is greyed out, unless its value is invalid: the
        # engine still checks it, so it must stay editable to be fixed.
        reasons = self.not_applying(values)
        for name in CONDITIONAL_FIELDS:
            editor = self.editors[name]
            reason = reasons.get(name) if name not in self._errors else None
            editor.setEnabled(reason is None)
            if name in self.labels:
                self.labels[name].setEnabled(reason is None)
            if reason is not None:
                editor.setToolTip(f"{editor.toolTip()}\nNot used now: {reason}.")

    # Slots ----------------------------------------------------------------------------------

    def _on_edited(self, *_args) -> None:
        self.revalidate()

    def _on_preset_chosen(self, *_args) -> None:
        preset = self.editors["preset"].currentData()
        if preset in PRESETS and not self._applying:
            self._applying = True
            try:
                for name, value in PRESETS[preset].items():
                    self.set_value(name, value)
            finally:
                self._applying = False
        self.revalidate()

    def _on_data_kind_changed(self, *_args) -> None:
        self._update_path_widgets()
        self.revalidate()

    def _update_path_widgets(self) -> None:
        kind = self.data_combo.currentData()
        needs_path = kind in PATH_HINTS
        self.path_edit.setEnabled(needs_path)
        self.browse_button.setEnabled(needs_path)
        self.path_edit.setToolTip(PATH_HINTS.get(kind, "The 2D data sets are generated in code"))

    def _on_browse_clicked(self) -> None:
        kind = self.data_combo.currentData()
        start = self.path_edit.text().strip() or str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, f"Choose the {PATH_HINTS[kind]}", start)
        if folder:
            self.path_edit.setText(folder)
