"""The analysis tools of the main window: docks, 2D layers, grid clicks and single D/G updates.

:class:`AnalysisTools` creates the FID, interpolation, coverage and
nearest-neighbour docks, puts the layer toggles under the 2D scatter and
connects them to each training thread. The window calls
:meth:`AnalysisTools.connect_thread` for every new thread and
:meth:`AnalysisTools.shutdown` when it closes.
"""

from __future__ import annotations

import logging
import weakref

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget

from workbench.app.coverage_panel import CoveragePanel
from workbench.app.fid_panel import FIDPanel
from workbench.app.interpolation_panel import GridPicker, InterpolationPanel, grid_tile
from workbench.app.live_analysis import AlarmRecord
from workbench.app.neighbours_view import NeighboursView
from workbench.app.plane_view import PlaneOverlay

logger = logging.getLogger(__name__)

ACTIVE_STATES = ("starting", "running", "paused")


class AnalysisTools:
    """Own the analysis widgets of ``window`` (a MainWindow) and relay between them and the thread."""

    def __init__(self, window, cache_dir=None):
        # A weak reference, so the window and this object form no reference cycle: the cyclic
        # garbage collector can run in any thread, and a window deleted from the training
        # thread crashes Qt.
        self._window = weakref.ref(window)
        samples = window.samples_view
        self.overlay = PlaneOverlay(samples.scatter_widget, samples.real_scatter, samples.fake_scatter)
        samples.stack.widget(1).layout().addWidget(self.overlay)
        self.picker = GridPicker(samples, window)
        self.fid_panel = FIDPanel(cache_dir)
        self.interpolation = InterpolationPanel()
        self.coverage = CoveragePanel()
        self.neighbours = NeighboursView(cache_dir)
        self.coverage.add_marker_plot(window.loss_plot.plot_item)
        self.docks = [self._dock("FID", "fidDock", self.fid_panel),
                      self._dock("Interpolation", "interpolationDock", self.interpolation),
                      self._dock("Coverage", "coverageDock", self.coverage),
                      self._dock("Nearest neighbours", "neighboursDock", self.neighbours)]
        for dock in self.docks[1:]:
            window.tabifyDockWidget(self.docks[0], dock)
        self.docks[0].raise_()
        self._build_actions()
        self._connect_widgets()

    @property
    def window(self):
        return self._window()

    # Construction ---------------------------------------------------------------------------

    def _dock(self, title: str, name: str, widget) -> QDockWidget:
        dock = QDockWidget(title, self.window)
        dock.setObjectName(name)
        dock.setWidget(widget)
        self.window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        return dock

    def _build_actions(self) -> None:
        window = self.window
        self.d_step_action = self._action("D step", self._on_discriminator_step, "Ctrl+Shift+D",
                                          "Run one discriminator update alone while paused (not a step)")
        self.g_step_action = self._action("G step", self._on_generator_step, "Ctrl+Shift+G",
                                          "Run one generator update alone while paused (not a step)")
        for action in (self.d_step_action, self.g_step_action):
            action.setEnabled(False)
        run_menu = self._menu("&Run")
        window.toolbar.insertActions(window.save_action, [self.d_step_action, self.g_step_action])
        if run_menu is not None:
            run_menu.insertActions(window.save_action, [self.d_step_action, self.g_step_action])
        analysis_menu = window.menuBar().addMenu("&Analysis")
        for dock in self.docks:
            analysis_menu.addAction(dock.toggleViewAction())

    def _action(self, text: str, slot, shortcut: str, tip: str) -> QAction:
        action = QAction(text, self.window)
        action.triggered.connect(slot)
        action.setShortcut(QKeySequence(shortcut))
        action.setToolTip(f"{tip} ({shortcut})")
        return action

    def _menu(self, title: str):
        for action in self.window.menuBar().actions():
            if action.text() == title:
                return action.menu()
        return None

    def _connect_widgets(self) -> None:
        window = self.window
        self.overlay.layers_changed.connect(self._on_layers_changed)
        self.coverage.settings_changed.connect(self._on_coverage_settings_changed)
        self.picker.cell_clicked.connect(self._on_cell_clicked)
        self.interpolation.path_ready.connect(self.overlay.show_path)
        for panel in (self.fid_panel, self.interpolation, self.neighbours):
            panel.set_live_provider(self._live_snapshot)
        window.run_started.connect(self._on_run_started)
        window.run_finished.connect(self._on_run_finished)

    # Called by the window -------------------------------------------------------------------

    def connect_thread(self, thread) -> None:
        """Reset the views for a new run and connect its training thread."""
        self.overlay.reset()
        self.coverage.reset()
        thread.plane_layers = self.overlay.enabled_layers()
        thread.coverage_settings = self.coverage.settings()
        thread.views_ready.connect(self._on_frame)
        thread.coverage_ready.connect(self._on_coverage)
        thread.alarm_fired.connect(self._on_alarm)
        thread.update_done.connect(self._on_update_done)
        thread.state_changed.connect(self._on_thread_state)

    def shutdown(self) -> None:
        """Cancel running jobs and wait for their threads; call before the training thread stops."""
        self.fid_panel.shutdown()
        self.interpolation.shutdown()
        self.neighbours.shutdown()

    # Slots ----------------------------------------------------------------------------------

    def _live_snapshot(self):
        thread = self.window.thread
        if thread is None or self.window.state not in ACTIVE_STATES:
            return None
        return thread.request_snapshot()

    def _on_run_started(self, info) -> None:
        run_dir = info.run_dir or None
        self.fid_panel.set_run_dir(run_dir, info.is_image)
        self.interpolation.set_run_dir(run_dir)
        self.neighbours.set_run_dir(run_dir)
        thread = self.window.thread
        self.picker.count = thread.config.num_samples if thread is not None else 0
        self._update_actions()

    def _on_run_finished(self, _summary) -> None:
        self._update_actions()

    def _on_thread_state(self, _state: str) -> None:
        self._update_actions()

    def _on_layers_changed(self, layers) -> None:
        if self.window.thread is not None:
            self.window.thread.plane_layers = layers

    def _on_coverage_settings_changed(self, settings) -> None:
        if self.window.thread is not None:
            self.window.thread.coverage_settings = settings

    def _on_frame(self, frame) -> None:
        if self.window.thread is not None:
            self.overlay.show_frame(frame)

    def _on_coverage(self, record) -> None:
        if self.window.thread is not None:
            self.coverage.add_record(record)

    def _on_alarm(self, alarm: AlarmRecord) -> None:
        self.coverage.show_alarm(alarm)
        self.docks[2].raise_()
        self.window.statusBar().showMessage(alarm.message, 15_000)

    def _on_update_done(self, network: str, values: dict) -> None:
        summary = ", ".join(f"{name} {value:.4g}" for name, value in sorted(values.items()))
        logger.info("single %s update: %s", network, summary)

    def _on_cell_clicked(self, index: int) -> None:
        self.interpolation.select_cell(index)
        image = self.window.samples_view.current_image()
        if image is not None:
            self.neighbours.search(grid_tile(image, index, self.picker.count), index)

    def _on_discriminator_step(self) -> None:
        if self.window.thread is not None and self.window.state == "paused":
            self.window.thread.request_discriminator_step()

    def _on_generator_step(self) -> None:
        if self.window.thread is not None and self.window.state == "paused":
            self.window.thread.request_generator_step()

    def _update_actions(self) -> None:
        paused = self.window.thread is not None and self.window.state == "paused"
        self.d_step_action.setEnabled(paused)
        self.g_step_action.setEnabled(paused)
