"""The main window: setup dock, toolbar, live plots, samples view and log.

Training runs in a :class:`TrainingThread`; this module only relays the user's
requests to it and draws what it sends. Plots are redrawn by one timer at
``REFRESH_HZ`` from a bounded history, never once per step.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QByteArray, QCoreApplication, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QApplication, QDockWidget, QFileDialog, QFrame, QLabel, QMainWindow, QMessageBox, QSpinBox, QSplitter,
    QScrollArea, QStackedWidget, QStyle,
)

from workbench.app.analysis_wiring import AnalysisTools
from workbench.app.collector import GuiThreadCollector
from workbench.app.history import MetricHistory
from workbench.app.log_panel import LogPanel
from workbench.app.plots import MetricPlot, Series
from workbench.app.resources import app_icon, configure_application
from workbench.app.samples_view import SamplesView
from workbench.app.setup_panel import SetupPanel
from workbench.app.run_browser import RunBrowser
from workbench.app.worker import RunInfo, RunSummary, TrainerFactory, TrainingThread, resume_trainer_factory
from workbench.core.trainer import describe_device, resolve_device

logger = logging.getLogger(__name__)

ORGANIZATION = "GAN Workbench"
APPLICATION = "gan-workbench"
# The refresh timer redraws one plot per tick, in turn, so each plot is redrawn at most
# REFRESH_HZ / 3 times per second and no tick blocks the event loop for three repaints.
# Painting takes CPU time from training: on 2 CPU cores, training in the window ran at
# 0.88-0.92 of its headless speed at 20 Hz, and at 0.949-0.958 at 10 Hz.
REFRESH_HZ = 6
STATUS_EVERY_TICKS = 3      # the status bar is updated on every 3rd tick (twice per second): each update lays out and repaints the whole status bar
CLOSE_TIMEOUT_MS = 10_000   # how long closing the window waits for the training thread
RATE_WINDOW_S = 5.0         # steps per second are averaged over this many seconds
SMOKE_EXIT_ENV = "GAN_WORKBENCH_SMOKE_EXIT_MS"

D_COLOR, G_COLOR = "#1f77b4", "#ff7f0e"
REAL_COLOR, FAKE_COLOR = "#2ca02c", "#d62728"


def open_settings() -> QSettings:
    """Return the user's settings store (an INI file on every platform)."""
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANIZATION, APPLICATION)


def default_runs_dir() -> Path:
    return Path.home() / "gan-workbench-runs"


def format_duration(seconds: float) -> str:
    """Return ``seconds`` as H:MM:SS, or '-' when unknown."""
    if not np.isfinite(seconds) or seconds < 0:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class MainWindow(QMainWindow):
    """The GAN Workbench window.

    Parameters
    ----------
    runs_dir
        Folder that receives one sub-folder per run; overrides the saved setting.
    settings
        Settings store; defaults to :func:`open_settings`.
    trainer_factory
        Builds the trainer inside the training thread; tests may wrap the real one.

    Signals
    -------
    run_started(RunInfo)
        The trainer of a new run exists.
    run_finished(RunSummary)
        A run ended (completed, stopped or failed) and the window is idle again.
    """

    run_started = Signal(object)
    run_finished = Signal(object)

    def __init__(self, runs_dir: str | Path | None = None, *, settings: QSettings | None = None,
                 trainer_factory: TrainerFactory | None = None, parent=None):
        super().__init__(parent)
        # Antialiased lines took over ten times longer to paint in software (measured on the
        # offscreen platform), time taken from both the GUI thread and, through the GIL, training.
        pg.setConfigOptions(background="w", foreground="#303030", antialias=False)
        self.settings = settings if settings is not None else open_settings()
        self.trainer_factory = trainer_factory
        self.history = MetricHistory()
        self.thread: TrainingThread | None = None
        self.run_info: RunInfo | None = None
        self.last_step = 0
        self._state = "idle"   # idle, starting, running, paused, stopping
        self._next_plot = 0    # index of the plot the refresh timer redrew last
        self._ticks = 0
        self._rate_points: collections.deque[tuple[float, int]] = collections.deque()

        self.setWindowTitle("GAN Workbench")
        self.setWindowIcon(app_icon())
        self._build_central()
        self._build_docks()
        self._build_actions()
        self._build_status_bar()
        self.run_browser = RunBrowser(self)   # runs panel, compare, forks, follow, exports
        self.analysis = AnalysisTools(self)   # FID, interpolation, coverage, neighbours, 2D layers
        self._arrange_default_docks()
        # Garbage collection runs only in this thread while the window is open: see collector.py.
        self._collector = GuiThreadCollector(self)
        self._collector.start()
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setInterval(1000 // REFRESH_HZ)
        self._refresh_timer.timeout.connect(self._on_refresh_timer)

        self._restore_settings()
        if runs_dir is not None:
            self.runs_dir = Path(runs_dir)
        self._on_loss_changed(self.setup.values()["loss"])
        self._on_validity_changed(self.setup.config is not None, self.setup.problem())

    # Construction ---------------------------------------------------------------------------

    def _arrange_default_docks(self) -> None:
        """Put the tool docks in tabs beside the log, so the setup form and plots keep their width.

        Saved settings restore the user's own arrangement after this.
        """
        tools = [self.run_browser.runs_dock, *self.analysis.docks]
        for dock in tools:
            # A scroll area lets the tab group shrink below its tallest panel's minimum height.
            scroll = QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setFrameShape(QFrame.Shape.NoFrame)
            scroll.setWidget(dock.widget())
            dock.setWidget(scroll)
            self.removeDockWidget(dock)
            self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
            self.tabifyDockWidget(self.log_dock, dock)
            dock.show()
        self.log_dock.raise_()
        self.resizeDocks([self.setup_dock], [360], Qt.Orientation.Horizontal)
        self.resizeDocks([self.log_dock], [170], Qt.Orientation.Vertical)

    def _build_central(self) -> None:
        self.loss_plot = MetricPlot("Losses", [Series("loss_d", "D loss", D_COLOR),
                                               Series("loss_g", "G loss", G_COLOR)], self.history, y_label="loss")
        self.grad_plot = MetricPlot("Gradient norms", [Series("grad_norm_d", "D", D_COLOR),
                                                       Series("grad_norm_g", "G", G_COLOR)],
                                    self.history, y_label="L2 norm", log_toggle=True)
        self.output_plot = MetricPlot("Mean D output", [Series("d_real", "D(real)", REAL_COLOR),
                                                        Series("d_fake", "D(fake)", FAKE_COLOR)],
                                      self.history, y_label="mean output")
        self.critic_plot = MetricPlot("Critic", [Series("wasserstein", "Wasserstein estimate", D_COLOR),
                                                 Series("gp", "gradient penalty", G_COLOR)], self.history)
        self.output_stack = QStackedWidget()
        self.output_stack.addWidget(self.output_plot)
        self.output_stack.addWidget(self.critic_plot)
        self.plots = (self.loss_plot, self.grad_plot, self.output_plot, self.critic_plot)

        plot_column = QSplitter(Qt.Orientation.Vertical)
        for widget in (self.loss_plot, self.grad_plot, self.output_stack):
            plot_column.addWidget(widget)
        self.samples_view = SamplesView()
        self.central_splitter = QSplitter(Qt.Orientation.Horizontal)
        self.central_splitter.addWidget(plot_column)
        self.central_splitter.addWidget(self.samples_view)
        self.central_splitter.setStretchFactor(0, 3)
        self.central_splitter.setStretchFactor(1, 2)
        self.setCentralWidget(self.central_splitter)

    def _build_docks(self) -> None:
        self.setup = SetupPanel()
        self.setup.validity_changed.connect(self._on_validity_changed)
        self.setup.loss_changed.connect(self._on_loss_changed)
        self.setup_dock = QDockWidget("Setup", self)
        self.setup_dock.setObjectName("setupDock")
        self.setup_dock.setWidget(self.setup)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.setup_dock)

        self.log_panel = LogPanel()
        self.log_dock = QDockWidget("Log", self)
        self.log_dock.setObjectName("logDock")
        self.log_dock.setWidget(self.log_panel)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.log_dock)
        self.resizeDocks([self.setup_dock], [400], Qt.Orientation.Horizontal)
        self.resizeDocks([self.log_dock], [140], Qt.Orientation.Vertical)

    def _action(self, text: str, slot, shortcut: str | QKeySequence | None = None, tip: str = "",
                icon: QStyle.StandardPixmap | None = None) -> QAction:
        action = QAction(text, self)
        action.triggered.connect(slot)
        if icon is not None:
            action.setIcon(self.style().standardIcon(icon))
        tip = tip or text
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
            tip = f"{tip} ({action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)})"
        action.setToolTip(tip)
        return action

    def _build_actions(self) -> None:
        pixmap = QStyle.StandardPixmap
        self.start_action = self._action("Start", self._on_start, "Ctrl+Return", "Start a new run",
                                         pixmap.SP_MediaPlay)
        self.pause_action = self._action("Pause", self._on_pause_resume, "Space", "Pause or resume training",
                                         pixmap.SP_MediaPause)
        self.stop_action = self._action("Stop", self._on_stop, "Ctrl+.", "Stop and save a checkpoint",
                                        pixmap.SP_MediaStop)
        self.step_action = self._action("Step once", self._on_step_once, "Ctrl+Right",
                                        "Train one generator step (with its n_critic D steps), then pause",
                                        pixmap.SP_MediaSkipForward)
        self.save_action = self._action("Save checkpoint", self._on_save_checkpoint, "Ctrl+S",
                                        "Save a checkpoint of the current run", pixmap.SP_DialogSaveButton)
        run_actions = (self.start_action, self.pause_action, self.stop_action, self.step_action, self.save_action)

        self.sample_spin = QSpinBox()
        self.sample_spin.setRange(1, 1_000_000)
        self.sample_spin.setValue(50)
        self.sample_spin.setSuffix(" steps")
        self.sample_spin.setToolTip("How often the samples view is refreshed (separate from the run "
                                    "folder's sample_every)")
        self.sample_spin.valueChanged.connect(self._on_sample_interval_changed)

        toolbar = self.addToolBar("Training")
        toolbar.setObjectName("trainingToolbar")
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        toolbar.addActions(run_actions)
        toolbar.addSeparator()
        toolbar.addWidget(QLabel(" Samples every "))
        toolbar.addWidget(self.sample_spin)
        self.toolbar = toolbar
        self._build_menus(run_actions)

    def _build_menus(self, run_actions) -> None:
        file_menu = self.menuBar().addMenu("&File")
        file_menu.addAction(self._action("Choose runs folder...", self._on_choose_runs_dir))
        file_menu.addSeparator()
        file_menu.addAction(self._action("Quit", self.close, QKeySequence.StandardKey.Quit))
        run_menu = self.menuBar().addMenu("&Run")
        run_menu.addActions(run_actions)
        view_menu = self.menuBar().addMenu("&View")
        view_menu.addAction(self.setup_dock.toggleViewAction())
        view_menu.addAction(self.log_dock.toggleViewAction())
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction(self._action("About GAN Workbench", self._on_about))

    def _build_status_bar(self) -> None:
        self.step_label = QLabel("Step 0 / 0")
        self.rate_label = QLabel("- steps/s")
        self.eta_label = QLabel("ETA -")
        self.device_label = QLabel("Device: -")
        self.run_label = QLabel("Run folder: -")
        self.run_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # Widths fitted to the longest usual text: a label that changes width while training
        # makes the status bar lay out and repaint all its widgets several times a second.
        widest = {self.step_label: "Step 00000000 / 00000000", self.rate_label: "00000.0 steps/s",
                  self.eta_label: "ETA 000:00:00"}
        for label, text in widest.items():
            label.setMinimumWidth(label.fontMetrics().horizontalAdvance(text) + 4)
        for label in (self.step_label, self.rate_label, self.eta_label, self.device_label):
            self.statusBar().addPermanentWidget(label)
        self.statusBar().addWidget(self.run_label, 1)

    # Properties -----------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """'idle', 'starting', 'running', 'paused' or 'stopping'."""
        return self._state

    @property
    def runs_dir(self) -> Path:
        return self._runs_dir

    @runs_dir.setter
    def runs_dir(self, folder: str | Path) -> None:
        self._runs_dir = Path(folder).expanduser()
        self.run_browser.panel.set_runs_dir(self._runs_dir)
        if self._state == "idle":
            self.run_label.setText(f"Runs folder: {self._runs_dir}")

    # Run control ----------------------------------------------------------------------------

    def start_run(self, paused: bool = False, *, resume_dir: str | Path | None = None) -> bool:
        """Start a run with the form's settings; return False when the form is invalid.

        With ``resume_dir``, continue that run folder (a fork or a stopped run) from its
        checkpoint with its saved settings instead; ``trainer_factory`` is not used then.
        Raises ConfigError or OSError when the folder's config.json cannot be read.
        """
        config = self.setup.config
        if resume_dir is not None:
            from workbench.core.config import config_from_dict
            from workbench.core.runs import read_config

            config = config_from_dict(read_config(Path(resume_dir)))
        if config is None or self.thread is not None:
            return False
        from workbench.core.runs import new_run_dir

        run_dir = new_run_dir(self.runs_dir, config) if resume_dir is None else Path(resume_dir)
        factory = self.trainer_factory if resume_dir is None else resume_trainer_factory
        self._reset_views()
        self.thread = TrainingThread(config, run_dir, sample_every=self.sample_spin.value(),
                                     start_paused=paused, trainer_factory=factory, parent=self)
        self._connect_thread(self.thread)
        self._on_loss_changed(config.loss)
        self.setup.set_editable(False)
        self._set_state("starting")
        self.step_label.setText(f"Step 0 / {config.steps}")
        self.run_label.setText(f"Run folder: {run_dir}")
        logger.info("starting run in %s", run_dir)
        self.thread.start()
        self._refresh_timer.start()
        return True

    def _connect_thread(self, thread: TrainingThread) -> None:
        thread.run_started.connect(self._on_run_started)
        thread.metrics_ready.connect(self._on_metrics)
        thread.samples_ready.connect(self._on_samples)
        thread.checkpoint_saved.connect(self._on_checkpoint_saved)
        thread.state_changed.connect(self._on_thread_state)
        thread.run_failed.connect(self._on_run_failed)
        thread.run_ended.connect(self._on_run_ended)
        self.analysis.connect_thread(thread)

    def _reset_views(self) -> None:
        self.history.clear()
        self.last_step = 0
        self.run_info = None
        self._rate_points.clear()
        for plot in self.plots:
            plot.refresh(force=True)
        self.samples_view.reset(is_image=True)

    def _set_state(self, state: str) -> None:
        self._state = state
        self._update_actions()

    def _update_actions(self) -> None:
        idle = self._state == "idle"
        active = self._state in ("running", "paused")
        valid = self.setup.config is not None
        self.start_action.setEnabled(idle and valid)
        self.pause_action.setEnabled(active)
        self.pause_action.setText("Resume" if self._state == "paused" else "Pause")
        self.stop_action.setEnabled(self._state in ("starting", "running", "paused"))
        self.step_action.setEnabled((idle and valid) or self._state == "paused")
        self.save_action.setEnabled(active)
        reason = "" if valid or not idle else f" (disabled: {self.setup.problem()})"
        self.start_action.setToolTip(f"Start a new run ({self.start_action.shortcut().toString()}){reason}")

    def _finish_run(self) -> None:
        """Join the finished thread and return the window to idle."""
        thread, self.thread = self.thread, None
        if thread is not None:
            thread.wait()
            # The window owns the thread, so dropping the Python reference does not delete it
            # while it is still delivering its own run_ended signal. deleteLater does it safely.
            thread.deleteLater()
        self._refresh_timer.stop()
        self._redraw()
        self.setup.set_editable(True)
        self._set_state("idle")

    # User actions ---------------------------------------------------------------------------

    def _on_start(self) -> None:
        self.start_run()

    def _on_pause_resume(self) -> None:
        if self.thread is None:
            return
        if self._state == "paused":
            self.thread.request_resume()
        elif self._state == "running":
            self.thread.request_pause()

    def _on_stop(self) -> None:
        if self.thread is not None:
            self.thread.request_stop()
            self._set_state("stopping")

    def _on_step_once(self) -> None:
        if self.thread is None:
            if self.start_run(paused=True):
                self.thread.request_step()
        elif self._state == "paused":
            self.thread.request_step()

    def _on_save_checkpoint(self) -> None:
        if self.thread is not None and self._state in ("running", "paused"):
            self.thread.request_checkpoint()

    def _on_sample_interval_changed(self, value: int) -> None:
        if self.thread is not None:
            self.thread.sample_every = value   # an int assignment, read by the thread between steps

    def _on_choose_runs_dir(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose the folder that receives the runs", str(self.runs_dir))
        if folder:
            self.runs_dir = folder

    def _on_about(self) -> None:
        from workbench.app.about import AboutDialog

        dialog = AboutDialog(self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()

    def _on_validity_changed(self, _valid: bool, _problem: str) -> None:
        self._update_actions()
        config = self.setup.config
        if self._state == "idle" and config is not None:
            self.device_label.setText(f"Device: {describe_device(resolve_device(config.device))}")

    def _on_loss_changed(self, loss: str) -> None:
        critic = loss == "wasserstein"
        d_name = "critic" if critic else "D"
        self.loss_plot.set_labels("Losses", {"loss_d": f"{d_name} loss"})
        self.grad_plot.set_labels("Gradient norms", {"grad_norm_d": d_name})
        self.output_stack.setCurrentWidget(self.critic_plot if critic else self.output_plot)
        if loss == "bce":
            self.output_plot.set_labels("D(real) and D(fake): mean probability", {})
        else:
            self.output_plot.set_labels("D(real) and D(fake): mean score", {})

    # Signals from the training thread -------------------------------------------------------
    # Each slot ignores signals that arrive after closeEvent has already joined the thread.

    def _on_run_started(self, info: RunInfo) -> None:
        if self.thread is None:
            return
        self.run_info = info
        self.last_step = info.first_step
        self.samples_view.reset(info.is_image, info.real_points)
        for plot in self.plots:
            plot.set_step_range(info.first_step, info.total_steps)
        self.device_label.setText(f"Device: {info.device_name}")
        self.run_label.setText(f"Run folder: {info.run_dir}")
        if self._state == "starting":
            self._set_state("running")
        self.run_started.emit(info)

    def _on_metrics(self, block: np.ndarray) -> None:
        if self.thread is None or len(block) == 0:
            return
        self.history.append(block)
        self.last_step = int(block[-1, 0])
        self._rate_points.append((time.monotonic(), self.last_step))

    def _on_samples(self, step: int, samples: np.ndarray) -> None:
        if self.thread is not None:
            self.samples_view.show_samples(step, samples)

    def _on_checkpoint_saved(self, path: str) -> None:
        self.statusBar().showMessage(f"Checkpoint saved: {path}", 5000)
        logger.info("checkpoint saved at step %d: %s", self.last_step, path)

    def _on_thread_state(self, state: str) -> None:
        if self.thread is not None and self._state in ("starting", "running", "paused"):
            if state == "running":
                self._rate_points.clear()   # the pause would otherwise lower the rate
            self._set_state(state)
            self._redraw()

    def _on_run_failed(self, message: str) -> None:
        box = QMessageBox(QMessageBox.Icon.Critical, "Training failed", message, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.setObjectName("trainingFailedBox")
        box.open()   # not exec(): the window keeps processing events behind the message

    def _on_run_ended(self, summary: RunSummary) -> None:
        if self.thread is None:
            return
        logger.info("run %s at step %d", summary.reason, summary.step)
        self._finish_run()
        self.statusBar().showMessage(f"Run {summary.reason} at step {summary.step}", 10_000)
        self.run_finished.emit(summary)

    # Drawing --------------------------------------------------------------------------------

    def _visible_plots(self) -> tuple[MetricPlot, ...]:
        return (self.loss_plot, self.grad_plot, self.output_stack.currentWidget())

    def _on_refresh_timer(self) -> None:
        plots = self._visible_plots()
        for _ in plots:
            self._next_plot = (self._next_plot + 1) % len(plots)
            if plots[self._next_plot].refresh():
                break
        self._ticks += 1
        if self._ticks % STATUS_EVERY_TICKS == 0:
            self._update_status()

    def _redraw(self) -> None:
        """Redraw the visible plots and the status bar from the history."""
        for plot in self._visible_plots():
            plot.refresh()
        self._update_status()

    def _update_status(self) -> None:
        total = 0
        if self.run_info is not None:
            total = self.run_info.total_steps
        elif self.setup.config is not None:
            total = self.setup.config.steps
        self.step_label.setText(f"Step {self.last_step} / {total}")
        rate = self.steps_per_second()
        self.rate_label.setText(f"{rate:.1f} steps/s" if np.isfinite(rate) else "- steps/s")
        remaining = (total - self.last_step) / rate if rate > 0 and self._state == "running" else np.nan
        self.eta_label.setText(f"ETA {format_duration(remaining)}")

    def steps_per_second(self) -> float:
        """Return the training speed over the last few seconds, NaN before two updates."""
        now = time.monotonic()
        while len(self._rate_points) > 2 and now - self._rate_points[0][0] > RATE_WINDOW_S:
            self._rate_points.popleft()
        if len(self._rate_points) < 2 or self._state != "running":
            return np.nan
        (t0, s0), (t1, s1) = self._rate_points[0], self._rate_points[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 else np.nan

    # Closing and settings -------------------------------------------------------------------

    def closeEvent(self, event) -> None:
        self.analysis.shutdown()   # cancels FID and other jobs, which may wait for the training thread
        if self.thread is not None:
            thread = self.thread
            thread.request_stop()   # the thread saves a checkpoint before it ends
            self._set_state("stopping")
            if not thread.wait(CLOSE_TIMEOUT_MS):
                # Destroying a running QThread would crash, so the window stays open until it ends.
                logger.warning("training did not stop within %d s; the window closes when it does",
                               CLOSE_TIMEOUT_MS // 1000)
                thread.finished.connect(self.close)
                event.ignore()
                return
            # Deliver the thread's queued signals now (last metrics, checkpoint, run_ended),
            # so the run ends through the same slots as when it is stopped from the toolbar.
            QCoreApplication.sendPostedEvents()
            if self.thread is not None:
                self._finish_run()
        self._refresh_timer.stop()
        self.run_browser.shutdown()
        self.statusBar().clearMessage()   # also stops the timer of a timed message
        self._save_settings()
        self.log_panel.detach()
        self._collector.stop()
        super().closeEvent(event)

    def _save_settings(self) -> None:
        settings = self.settings
        settings.setValue("window/geometry", self.saveGeometry())
        settings.setValue("window/state", self.saveState())
        settings.setValue("form/values", json.dumps(self.setup.values()))
        settings.setValue("runs/folder", str(self.runs_dir))
        settings.setValue("view/sample_every", self.sample_spin.value())
        settings.setValue("view/smoothing", json.dumps([plot.smoothing for plot in self.plots]))
        settings.setValue("view/grad_log_scale", self.grad_plot.log_checkbox.isChecked())
        settings.sync()

    def _restore_settings(self) -> None:
        settings = self.settings
        self.runs_dir = settings.value("runs/folder", str(default_runs_dir()))
        geometry = settings.value("window/geometry")
        if isinstance(geometry, QByteArray) and not self.restoreGeometry(geometry):
            logger.warning("ignored saved window geometry: it could not be restored")
        if geometry is None:
            self.resize(1400, 860)
        state = settings.value("window/state")
        if isinstance(state, QByteArray):
            self.restoreState(state)
        self.sample_spin.setValue(int(settings.value("view/sample_every", 50)))
        self.grad_plot.set_log_scale(str(settings.value("view/grad_log_scale", "false")).lower() == "true")
        self._restore_json("form/values", self.setup.set_values)
        self._restore_json("view/smoothing", self._set_smoothing)

    def _restore_json(self, key: str, apply) -> None:
        text = self.settings.value(key)
        if not text:
            return
        try:
            apply(json.loads(text))
        except (ValueError, TypeError, AttributeError) as error:
            logger.warning("ignored saved setting %s: %s", key, error)

    def _set_smoothing(self, values: list[float]) -> None:
        for plot, beta in zip(self.plots, values):
            plot.set_smoothing(float(beta))


def warn_about_binding() -> None:
    """Log an error when the installed PySide6 is known to crash this application."""
    import PySide6

    if PySide6.__version__ == "6.12.0" and sys.version_info < (3, 12):
        # SignalInstance.emit in this release returns True without a new reference, and before
        # Python 3.12 (immortal True) the interpreter aborts after a few thousand signals.
        logger.error("PySide6 6.12.0 crashes with Python %d.%d during training; install another "
                     "release, for example: pip install 'PySide6-Essentials!=6.12.0'", *sys.version_info[:2])


def run_app(argv: list[str] | None = None) -> int:
    """Show the main window and run the Qt event loop; return the exit status.

    With ``GAN_WORKBENCH_SMOKE_EXIT_MS`` set to a number of milliseconds, the window
    closes itself after that time (used by the packaging smoke test).
    """
    smoke_ms = os.environ.get(SMOKE_EXIT_ENV)
    if smoke_ms is not None and not smoke_ms.strip().isdigit():
        print(f"gan-workbench: error: {SMOKE_EXIT_ENV} must be a whole number of milliseconds, "
              f"got {smoke_ms!r}", file=sys.stderr)
        return 2
    warn_about_binding()
    app = QApplication.instance() or QApplication(list(argv or sys.argv[:1]))
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    configure_application(app)

    window = MainWindow()
    window.show()
    if smoke_ms is not None:
        QTimer.singleShot(int(smoke_ms), window.close)
    status = app.exec()
    logger.debug("event loop ended with status %d", status)
    return status
