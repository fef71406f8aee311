"""Connect the runs panel, comparison, forks, following and exports to the main window.

:class:`RunBrowser` adds the Runs and Compare docks and their menu entries to a
:class:`~workbench.app.main_window.MainWindow`. Opening a run shows it in the
window's own plots and samples view through a :class:`RunFollower`, so a run
that another process is still writing keeps growing on screen. Training in the
window takes the plots back: following stops when a run starts.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QDockWidget, QFileDialog, QMenu, QMessageBox, QSplitter

from workbench.app.compare import CompareView
from workbench.app.follow import RunFollower
from workbench.app.fork_dialog import ForkDialog
from workbench.app.history import METRIC_COLUMNS, rows_to_array
from workbench.app.runs_panel import RunsPanel
from workbench.app.torchrun_export import TorchrunDialog
from workbench.core import export, run_index, runs
from workbench.core.validation import ConfigError

logger = logging.getLogger(__name__)


class RunBrowser(QObject):
    """The window's run browsing features; create one per window after its docks and menus exist."""

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.follower: RunFollower | None = None
        self.open_run_dir: Path | None = None      # the run shown by following, if any
        self.trained_run_dir: Path | None = None   # the run trained last in the window
        self._parent_rows = np.empty((0, len(METRIC_COLUMNS)))
        self._steps_total = 0   # the open run's configured steps, for the status bar
        self._build_docks()
        self._build_actions()
        window.run_started.connect(self._on_window_run_started)
        window.run_finished.connect(self._refresh_panel)

    # Construction ---------------------------------------------------------------------------

    def _build_docks(self) -> None:
        window = self.window
        self.panel = RunsPanel()   # the window's runs_dir setter gives it its folder
        self.panel.open_requested.connect(self.open_run)
        self.panel.fork_requested.connect(self.show_fork_dialog)
        self.panel.compare_changed.connect(self._on_compare_changed)
        self.fid_plot = pg.PlotWidget(title="FID of the open run")
        self.fid_plot.setLabel("bottom", "step")
        self.fid_plot.setMinimumHeight(120)
        self.fid_curve = self.fid_plot.plot([], [], pen=pg.mkPen("#9467bd", width=2), symbol="o", symbolSize=5)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.panel)
        splitter.addWidget(self.fid_plot)
        splitter.setStretchFactor(0, 3)
        self.runs_dock = self._dock("Runs", "runsDock", splitter, Qt.DockWidgetArea.RightDockWidgetArea)

        self.compare = CompareView(smoothing=window.loss_plot.smoothing)
        self.compare_dock = self._dock("Compare", "compareDock", self.compare, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.compare_dock.hide()

    def _dock(self, title: str, name: str, widget, area) -> QDockWidget:
        dock = QDockWidget(title, self.window)
        dock.setObjectName(name)
        dock.setWidget(widget)
        self.window.addDockWidget(area, dock)
        return dock

    def _build_actions(self) -> None:
        window = self.window
        self.follow_action = window._action("Open run folder (follow)...", self._on_follow_chosen,
                                            tip="Show a run folder's curves and samples, following new "
                                                "rows while another process trains it")
        self.fork_action = window._action("Fork selected run...", self._on_fork_selected,
                                          tip="Start a new run from the selected run's checkpoint")
        self.torchrun_action = window._action("Export as torchrun command...", self.show_torchrun_dialog,
                                              tip="Command line that trains these settings on several processes")
        self.export_actions = {
            "csv": window._action("Metrics CSV...", lambda: self._export_with_dialog("csv")),
            "png": window._action("Current sample grid PNG...", lambda: self._export_with_dialog("png")),
            "gif": window._action("Progress GIF...", lambda: self._export_with_dialog("gif")),
            "toml": window._action("Config TOML...", lambda: self._export_with_dialog("toml")),
        }
        menus = {action.text().replace("&", ""): action.menu() for action in window.menuBar().actions()}
        file_menu = menus.get("File") or window.menuBar().addMenu("&File")
        first = file_menu.actions()[0] if file_menu.actions() else None
        file_menu.insertAction(first, self.follow_action)
        export_menu = QMenu("Export open run", window)
        export_menu.addActions(list(self.export_actions.values()))
        file_menu.insertMenu(first, export_menu)
        file_menu.insertSeparator(first)
        run_menu = menus.get("Run") or window.menuBar().addMenu("&Run")
        run_menu.addSeparator()
        run_menu.addActions([self.fork_action, self.torchrun_action])
        view_menu = menus.get("View")
        if view_menu is not None:
            view_menu.addActions([self.runs_dock.toggleViewAction(), self.compare_dock.toggleViewAction()])

    # Opening and following ------------------------------------------------------------------

    def open_run(self, run_dir: str | Path) -> bool:
        """Show a run in the window's plots and samples view and follow it; False while training."""
        window, run_dir = self.window, Path(run_dir)
        if window.thread is not None:
            self._warn("Cannot open a run", "The window is training a run; stop it first, or compare "
                                            "the runs instead (tick them in the runs panel).")
            return False
        try:
            config = runs.read_config(run_dir)
        except (OSError, ValueError) as error:
            self._warn("Cannot open a run", f"cannot read the settings of {run_dir}: {error}")
            return False
        self.stop_following()
        self._show_empty_run(config)
        lineage = runs.read_parent(run_dir)
        self._parent_rows = self._load_parent_rows(run_dir, lineage)
        self._append(self._parent_rows)

        self.open_run_dir = run_dir
        self.follower = RunFollower(run_dir, parent=self)
        self.follower.min_step = lineage[1] if lineage is not None else -1
        self.follower.metrics_ready.connect(self._on_followed_metrics)
        self.follower.samples_ready.connect(self._on_followed_samples)
        self.follower.restarted.connect(self._on_followed_restart)
        self.follower.fid_ready.connect(self._on_followed_fid)
        self.follower.event_ready.connect(lambda event: logger.info("%s: %s", run_dir.name, event))
        self.follower.start()
        window.run_label.setText(f"Run folder: {run_dir} (open, following new rows)")
        logger.info("opened run %s", run_dir)
        return True

    def _show_empty_run(self, config: dict) -> None:
        window = self.window
        window.history.clear()
        window.last_step = 0
        window.samples_view.reset(is_image=True)
        steps = config.get("steps", 0) if isinstance(config.get("steps"), int) else 0
        for plot in window.plots:
            plot.set_step_range(0, steps)
            plot.refresh(force=True)
        # TODO: use a public method of MainWindow for the plot labels once it has one.
        window._on_loss_changed(str(config.get("loss", "bce")))
        self.fid_curve.setData([], [])
        self._steps_total = steps

    @staticmethod
    def _load_parent_rows(run_dir: Path, lineage) -> np.ndarray:
        if lineage is None:
            return np.empty((0, len(METRIC_COLUMNS)))
        rows = [row for row in run_index.load_metrics_with_parent(run_dir) if row["step"] <= lineage[1]]
        return rows_to_array(rows, METRIC_COLUMNS)

    def stop_following(self) -> None:
        if self.follower is not None:
            self.follower.stop()
            self.follower.deleteLater()
            self.follower = None

    @property
    def following(self) -> bool:
        return self.follower is not None and self.follower.active

    def shutdown(self) -> None:
        """Stop every timer; the window calls this when it closes."""
        self.stop_following()
        self.panel.timer.stop()

    def _append(self, block: np.ndarray) -> None:
        if len(block) == 0:
            return
        window = self.window
        window.history.append(block)
        window.last_step = int(block[-1, 0])
        for plot in window.plots:
            plot.refresh()
        window.step_label.setText(f"Step {window.last_step} / {self._steps_total}")

    def _on_followed_metrics(self, block: np.ndarray) -> None:
        if self.window.thread is not None:   # training started in the window: its plots now
            self.stop_following()
            return
        self._append(block)

    def _on_followed_samples(self, step: int, grid: np.ndarray) -> None:
        if self.window.thread is None:
            self.window.samples_view.show_samples(step, grid)

    def _on_followed_restart(self) -> None:
        self.window.history.clear()
        self._append(self._parent_rows)

    def _on_followed_fid(self, rows: list[dict]) -> None:
        self.fid_curve.setData([row["step"] for row in rows], [row["value"] for row in rows])

    def _on_follow_chosen(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.window, "Open a run folder to follow", str(self.window.runs_dir))
        if folder:
            self.open_run(folder)

    def _on_window_run_started(self, info) -> None:
        self.stop_following()
        self.open_run_dir = None
        self.trained_run_dir = Path(info.run_dir) if info.run_dir else None
        self._refresh_panel()

    def _refresh_panel(self, *_args) -> None:
        if self.panel.isVisible():   # a hidden panel reads the folder when it is shown again
            self.panel.refresh()

    # Compare --------------------------------------------------------------------------------

    def _on_compare_changed(self, paths: list[Path]) -> None:
        self.compare.set_runs(paths)
        if paths and self.compare_dock.isHidden():
            self.compare.set_smoothing(self.window.loss_plot.smoothing)
            self.compare_dock.show()

    # Forks ----------------------------------------------------------------------------------

    def _on_fork_selected(self) -> None:
        path = self.panel.selected_run() or self.current_run()
        if path is None:
            self._warn("Nothing to fork", "Select a run in the runs panel first.")
            return
        self.show_fork_dialog(path)

    def show_fork_dialog(self, source: str | Path) -> ForkDialog | None:
        """Open the fork dialog for ``source``; accepting it starts training the fork."""
        try:
            dialog = ForkDialog(source, self.window.runs_dir, self.window)
        except (OSError, ValueError) as error:
            self._warn("Cannot fork", f"cannot read the settings of {source}: {error}")
            return None
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self.train_fork(dialog.forked_run))
        dialog.open()
        return dialog

    def train_fork(self, run_dir: str | Path | None) -> bool:
        """Resume training a fork (or any stopped run) in the window from its checkpoint."""
        if run_dir is None:
            return False
        self._refresh_panel()
        if self.window.thread is not None:
            self._warn("Fork created", f"{run_dir} was created; start it when the current run ends "
                                       "(it is resumed from its checkpoint).")
            return False
        self.stop_following()
        try:
            return self.window.start_run(resume_dir=Path(run_dir))
        except (ConfigError, OSError) as error:
            self._warn("Cannot train the fork", f"cannot read the settings of {run_dir}: {error}")
            return False

    # Exports --------------------------------------------------------------------------------

    def current_run(self) -> Path | None:
        """Return the run the export menu acts on: the open run, else the run trained last."""
        return self.open_run_dir or self.trained_run_dir

    def export(self, kind: str, dest: str | Path) -> Path:
        """Export the current run as 'csv', 'png', 'gif' or 'toml' to ``dest``; raise ConfigError on failure."""
        run_dir = self.current_run()
        if run_dir is None:
            raise ConfigError("run", "no run is open; open one in the runs panel or train one first")
        if kind == "csv":
            return export.export_metrics_csv(run_dir, dest)
        if kind == "png":
            return self._export_current_grid(run_dir, dest)
        if kind == "gif":
            return export.export_progress_gif(run_dir, dest)
        if kind == "toml":
            return export.export_config_toml(run_dir, dest)
        raise ValueError(f"kind must be one of csv, png, gif, toml, got {kind!r}")

    def _export_current_grid(self, run_dir: Path, dest: str | Path) -> Path:
        image = self.window.samples_view.current_image()
        if image is None or self.window.samples_view.stack.currentIndex() != 0:
            return export.export_sample_png(run_dir, dest)   # the latest grid written to the folder
        from workbench.core.render import save_png

        try:
            save_png(np.ascontiguousarray(image), Path(dest))
        except OSError as error:
            raise ConfigError("dest", str(error)) from None
        return Path(dest)

    def _export_with_dialog(self, kind: str) -> None:
        run_dir = self.current_run()
        if run_dir is None:
            self._warn("Nothing to export", "Open a run in the runs panel or train one first.")
            return
        suffix = {"csv": "CSV files (*.csv)", "png": "PNG images (*.png)", "gif": "GIF animations (*.gif)",
                  "toml": "TOML files (*.toml)"}[kind]
        suggested = str(run_dir.parent / f"{run_dir.name}.{kind}")
        dest, _ = QFileDialog.getSaveFileName(self.window, "Export", suggested, suffix)
        if not dest:
            return
        try:
            path = self.export(kind, dest)
        except ConfigError as error:
            self._warn("Export failed", str(error))
            return
        self.window.statusBar().showMessage(f"Exported {path}", 5000)

    def show_torchrun_dialog(self) -> TorchrunDialog | None:
        """Show the torchrun command for the setup form's settings."""
        config = self.window.setup.config
        if config is None:
            self._warn("Invalid settings", f"Fix the settings first: {self.window.setup.problem()}")
            return None
        dialog = TorchrunDialog(config, runs.new_run_dir(self.window.runs_dir, config), self.window)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    def _warn(self, title: str, message: str) -> None:
        logger.warning("%s: %s", title, message)
        box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, self.window)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.setObjectName("runBrowserMessage")
        box.open()
