"""The runs panel: the run folders under the runs folder, with their state and last FID.

The table is refreshed from :func:`workbench.core.run_index.list_runs` every
``REFRESH_MS`` while the panel is visible. Each refresh reads only small files of
each run: config, status, parent, fid.csv and the last 4 KiB of metrics.csv. The
panel performs no action itself: opening, forking and comparing runs are signals
for the window to act on.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QBrush, QColor, QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView, QHBoxLayout, QHeaderView, QInputDialog, QLabel, QMessageBox, QPushButton,
    QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget,
)

from workbench.core import run_index
from workbench.core.run_index import RunInfo
from workbench.core.validation import ConfigError

logger = logging.getLogger(__name__)

REFRESH_MS = 2000
COLUMNS = ("Name", "Data", "Preset", "Loss", "Constraint", "Steps", "Last FID", "State")
NAME, DATA, PRESET, LOSS, CONSTRAINT, STEPS, FID, STATE = range(len(COLUMNS))
STATE_COLORS = {"running": "#1f77b4", "finished": "#2ca02c", "stopped": "#7f7f7f", "failed": "#d62728"}
PATH_ROLE = Qt.ItemDataRole.UserRole


def describe_steps(info: RunInfo) -> str:
    """Return 'done / total' steps, with the parent's step for a fork."""
    text = f"{info.steps_done} / {info.steps_total}" if info.steps_total else str(info.steps_done)
    if info.parent is not None:
        text += f" (from {info.parent.name} at {info.parent_step})"
    return text


def describe_fid(info: RunInfo) -> str:
    if info.last_fid is None or not math.isfinite(info.last_fid):
        return "-"
    return f"{info.last_fid:.2f} @ {info.last_fid_step}"


class RunsPanel(QWidget):
    """Table of runs with open, fork, rename, delete and reveal buttons and compare ticks.

    Signals
    -------
    open_requested(Path)
        The user opened a run (double click or Open).
    fork_requested(Path)
        The user asked to fork a run from its checkpoint.
    compare_changed(list)
        The ticked runs, as a list of Path, in table order.
    """

    open_requested = Signal(object)
    fork_requested = Signal(object)
    compare_changed = Signal(object)

    def __init__(self, runs_dir: str | Path | None = None, parent=None):
        super().__init__(parent)
        self.runs_dir = Path(runs_dir) if runs_dir is not None else None
        self.infos: dict[Path, RunInfo] = {}
        self._updating = False   # True while refresh writes items, so itemChanged is not a user tick
        self._last_compare: list[Path] = []
        self._build()
        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)

    def _build(self) -> None:
        self.tree = QTreeWidget()
        self.tree.setColumnCount(len(COLUMNS))
        self.tree.setHeaderLabels(COLUMNS)
        self.tree.setRootIsDecorated(False)
        self.tree.setSortingEnabled(True)
        self.tree.sortByColumn(NAME, Qt.SortOrder.DescendingOrder)   # newest first for timestamped names
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.header().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.tree.setToolTip("Tick runs to compare their curves; double-click a run to open it")
        self.tree.itemChanged.connect(self._on_item_changed)
        self.tree.itemDoubleClicked.connect(lambda item, _column: self.open_requested.emit(self._path_of(item)))
        self.tree.itemSelectionChanged.connect(self._update_buttons)

        self.open_button = self._button("Open", "Show the run's curves, sample grids and FID history; "
                                        "a running run is followed as it trains", self._on_open)
        self.fork_button = self._button("Fork...", "Start a new run from this run's checkpoint with "
                                        "changed settings", self._on_fork)
        self.rename_button = self._button("Rename...", "Rename the run folder", self._on_rename)
        self.delete_button = self._button("Delete...", "Move the run folder to the runs folder's .trash",
                                          self._on_delete)
        self.reveal_button = self._button("Reveal", "Open the run folder in the file manager", self._on_reveal)
        self.count_label = QLabel()
        self.message_label = QLabel()
        self.message_label.setWordWrap(True)

        buttons = QHBoxLayout()
        for button in (self.open_button, self.fork_button, self.rename_button, self.delete_button,
                       self.reveal_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.tree, stretch=1)
        layout.addLayout(buttons)
        layout.addWidget(self.count_label)
        layout.addWidget(self.message_label)
        self._update_buttons()

    def _button(self, text: str, tip: str, slot) -> QPushButton:
        button = QPushButton(text)
        button.setToolTip(tip)
        button.clicked.connect(slot)
        return button

    # Public API -----------------------------------------------------------------------------

    def set_runs_dir(self, folder: str | Path) -> None:
        """Show the runs under ``folder``; the table is read now if the panel is visible, else when shown."""
        self.runs_dir = Path(folder)
        if self.isVisible():
            self.refresh()

    def refresh(self) -> None:
        """Read the runs folder again and update the table in place (ticks and selection stay)."""
        if self.runs_dir is None:
            return
        try:
            infos = run_index.list_runs(self.runs_dir)
        except ConfigError as error:
            self.message_label.setText(str(error))
            return
        self._apply(infos)

    def _apply(self, infos: list[RunInfo]) -> None:
        self._updating = True
        self.tree.setSortingEnabled(False)
        try:
            current = {info.path: info for info in infos}
            for index in reversed(range(self.tree.topLevelItemCount())):
                if self._path_of(self.tree.topLevelItem(index)) not in current:
                    self.tree.takeTopLevelItem(index)
            items = self._items_by_path()
            for info in infos:
                item = items.get(info.path)
                if item is None:
                    item = QTreeWidgetItem(self.tree)
                    item.setData(NAME, PATH_ROLE, str(info.path))
                    item.setCheckState(NAME, Qt.CheckState.Unchecked)
                self._fill(item, info)
            removed = set(self.infos) - set(current)
            self.infos = current
        finally:
            self.tree.setSortingEnabled(True)
            self._updating = False
        self.count_label.setText(f"{len(infos)} runs in {self.runs_dir}")
        if removed & set(self._last_compare):
            self._emit_compare()
        self._update_buttons()

    def _fill(self, item: QTreeWidgetItem, info: RunInfo) -> None:
        texts = {NAME: info.name, DATA: info.data, PRESET: info.preset, LOSS: info.loss,
                 CONSTRAINT: info.constraint, STEPS: describe_steps(info), FID: describe_fid(info),
                 STATE: info.state}
        for column, text in texts.items():
            if item.text(column) != text:
                item.setText(column, text)
        item.setForeground(STATE, QBrush(QColor(STATE_COLORS.get(info.state, "#000000"))))
        item.setToolTip(STATE, info.message or info.state)
        item.setToolTip(NAME, str(info.path))

    def _items_by_path(self) -> dict[Path, QTreeWidgetItem]:
        return {self._path_of(self.tree.topLevelItem(i)): self.tree.topLevelItem(i)
                for i in range(self.tree.topLevelItemCount())}

    @staticmethod
    def _path_of(item: QTreeWidgetItem | None) -> Path | None:
        return Path(item.data(NAME, PATH_ROLE)) if item is not None else None

    def run_names(self) -> list[str]:
        """Return the names of the listed runs, in table order."""
        return [self.tree.topLevelItem(i).text(NAME) for i in range(self.tree.topLevelItemCount())]

    def state_of(self, name: str) -> str:
        """Return the state shown for the run called ``name``."""
        for info in self.infos.values():
            if info.name == name:
                return info.state
        raise KeyError(f"no run called {name!r} in {self.runs_dir}")

    def selected_run(self) -> Path | None:
        items = self.tree.selectedItems()
        return self._path_of(items[0]) if items else None

    def select_run(self, path: str | Path) -> None:
        item = self._items_by_path().get(Path(path))
        if item is not None:
            self.tree.setCurrentItem(item)

    def checked_runs(self) -> list[Path]:
        """Return the runs ticked for comparison, in table order."""
        return [self._path_of(self.tree.topLevelItem(i)) for i in range(self.tree.topLevelItemCount())
                if self.tree.topLevelItem(i).checkState(NAME) == Qt.CheckState.Checked]

    def set_checked(self, path: str | Path, checked: bool) -> None:
        item = self._items_by_path().get(Path(path))
        if item is None:
            raise KeyError(f"{path} is not listed in the runs panel")
        item.setCheckState(NAME, Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)

    def rename_run(self, path: str | Path, new_name: str) -> Path | None:
        """Rename a run folder and return its new path, or show the error and return None."""
        try:
            target = run_index.rename_run(path, new_name)
        except ConfigError as error:
            self._show_error("Rename failed", str(error))
            return None
        self.message_label.setText(f"Renamed {Path(path).name} to {target.name}")
        self.refresh()
        return target

    def delete_run(self, path: str | Path) -> Path | None:
        """Ask for confirmation, then move the run folder to the trash and return its new path (None if declined or failed)."""
        path = Path(path)
        answer = QMessageBox.question(
            self, "Delete run", f"Move the run {path.name} to {path.parent / run_index.TRASH_DIR}?\n"
                                "It disappears from the list; restore it by moving the folder back.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        if answer != QMessageBox.StandardButton.Yes:
            return None
        try:
            target = run_index.delete_run(path)
        except ConfigError as error:
            self._show_error("Delete failed", str(error))
            return None
        self.message_label.setText(f"Deleted {path.name} (moved to {target})")
        self.refresh()
        return target

    # Visibility: poll only while the panel is shown -----------------------------------------

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.refresh()
        self.timer.start()

    def hideEvent(self, event) -> None:
        self.timer.stop()
        super().hideEvent(event)

    # Slots ----------------------------------------------------------------------------------

    def _emit_compare(self) -> None:
        checked = self.checked_runs()
        if checked != self._last_compare:
            self._last_compare = checked
            self.compare_changed.emit(checked)

    def _on_item_changed(self, _item: QTreeWidgetItem, column: int) -> None:
        if not self._updating and column == NAME:
            self._emit_compare()

    def _update_buttons(self) -> None:
        selected = self.selected_run() is not None
        for button in (self.open_button, self.fork_button, self.rename_button, self.delete_button,
                       self.reveal_button):
            button.setEnabled(selected)

    def _on_open(self) -> None:
        path = self.selected_run()
        if path is not None:
            self.open_requested.emit(path)

    def _on_fork(self) -> None:
        path = self.selected_run()
        if path is not None:
            self.fork_requested.emit(path)

    def _on_rename(self) -> None:
        path = self.selected_run()
        if path is None:
            return
        name, accepted = QInputDialog.getText(self, "Rename run", "New folder name:", text=path.name)
        if accepted and name.strip() != path.name:
            self.rename_run(path, name)

    def _on_delete(self) -> None:
        path = self.selected_run()
        if path is not None:
            self.delete_run(path)

    def _on_reveal(self) -> None:
        path = self.selected_run()
        if path is not None and not QDesktopServices.openUrl(QUrl.fromLocalFile(str(path))):
            self._show_error("Reveal failed", f"no file manager opened {path}")

    def _show_error(self, title: str, message: str) -> None:
        logger.warning("%s: %s", title, message)
        self.message_label.setText(message)
        box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
