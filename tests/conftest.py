"""Fixtures shared by all tests: nothing may outlive a test, and Qt must stay quiet.

The autouse fixture ``no_leftovers`` fails a test that leaves behind a running
QThread, an active QTimer, a visible top-level window or a new Python thread, or
during which Qt logged a warning or an error. Qt is checked only once a test module
has imported PySide6, so tests of the Qt-free core pay nothing for it. Every test
also gets an empty settings folder, so none reads or writes the user's settings.
"""

from __future__ import annotations

import re
import sys
import threading
import weakref

import pytest

# Qt messages that are not defects of the code under test.
IGNORED_QT_MESSAGES = (
    # The offscreen platform plugin (QT_QPA_PLATFORM=offscreen) cannot pass size hints to a
    # window manager and prints a warning whenever a shown window's minimum size changes.
    re.compile(r"This plugin does not support propagateSizeHints\(\)"),
)

_started_threads: "weakref.WeakSet" = weakref.WeakSet()
_started_timers: "weakref.WeakSet" = weakref.WeakSet()
_tracking_installed = False


def pytest_collection_modifyitems(items):
    # pytest-qt's own capture would take Qt messages away from the handler below
    # between set-up and the end of the test body, and never during teardown.
    for item in items:
        item.add_marker(pytest.mark.no_qt_log)


def _install_tracking() -> None:
    """Record every QThread and QTimer started from Python (once per session)."""
    global _tracking_installed
    if _tracking_installed:
        return
    from PySide6.QtCore import QThread, QTimer

    def wrap(cls, registry):
        original = cls.start

        def start(self, *args, **kwargs):
            registry.add(self)
            return original(self, *args, **kwargs)

        cls.start = start

    wrap(QThread, _started_threads)
    wrap(QTimer, _started_timers)
    _tracking_installed = True


class QtMessages:
    """Qt messages logged during one test; ``allow(pattern)`` accepts an expected one."""

    def __init__(self):
        self.records: list[tuple[int, str]] = []
        self._allowed = list(IGNORED_QT_MESSAGES)

    def allow(self, pattern: str) -> None:
        self._allowed.append(re.compile(pattern))

    def handle(self, msg_type, _context, message) -> None:
        self.records.append((int(msg_type.value if hasattr(msg_type, "value") else msg_type), message))

    def failures(self) -> list[str]:
        from PySide6.QtCore import QtMsgType

        serious = {QtMsgType.QtWarningMsg.value, QtMsgType.QtCriticalMsg.value, QtMsgType.QtFatalMsg.value}
        return [f"Qt message: {text}" for kind, text in self.records
                if kind in serious and not any(p.search(text) for p in self._allowed)]


def _qt_leftovers() -> list[str]:
    from PySide6.QtCore import QEvent, QTimer
    from PySide6.QtWidgets import QApplication

    from shiboken6 import isValid  # False once the C++ object has been deleted

    problems = [f"QThread still running: {t!r}" for t in list(_started_threads) if isValid(t) and t.isRunning()]
    app = QApplication.instance()
    if app is not None:
        # Delete the widgets a test scheduled with deleteLater, so none is half destroyed below.
        app.sendPostedEvents(None, QEvent.Type.DeferredDelete.value)
    timers = {t for t in list(_started_timers) if isValid(t) and t.isActive()}
    if app is not None:
        # findChildren is recursive, so the top-level widgets reach every timer owned by a widget.
        for widget in app.topLevelWidgets():
            if isValid(widget):
                timers.update(t for t in widget.findChildren(QTimer) if isValid(t) and t.isActive())
        timers.update(t for t in app.findChildren(QTimer) if t.isActive())
    problems += [f"QTimer still active: {t!r} (parent {t.parent()!r})" for t in timers]
    if app is not None:
        for window in app.topLevelWidgets():
            if window.isVisible():
                problems.append(f"window still visible: {window!r} {window.windowTitle()!r}")
                window.close()
    return problems


def _new_python_threads(before: set[threading.Thread]) -> list[str]:
    problems = []
    for thread in threading.enumerate():
        # A QThread that ran Python code shows up as a _DummyThread; it is checked above.
        if thread in before or isinstance(thread, threading._DummyThread):
            continue
        thread.join(timeout=2.0)
        if thread.is_alive():
            problems.append(f"Python thread still running: {thread!r}")
    return problems


@pytest.fixture(autouse=True)
def no_leftovers(tmp_path_factory):
    """Fail the test if it leaves threads, timers or windows behind or if Qt warned."""
    threads_before = set(threading.enumerate())
    messages = QtMessages()
    uses_qt = "PySide6.QtCore" in sys.modules
    previous_handler = None
    if uses_qt:
        from PySide6.QtCore import QSettings, qInstallMessageHandler

        _install_tracking()
        previous_handler = qInstallMessageHandler(messages.handle)
        settings_dir = str(tmp_path_factory.mktemp("qsettings"))
        for settings_format in (QSettings.Format.IniFormat, QSettings.Format.NativeFormat):
            for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
                QSettings.setPath(settings_format, scope, settings_dir)

    yield messages

    problems = []
    if uses_qt:
        from PySide6.QtCore import qInstallMessageHandler

        problems += _qt_leftovers()
        qInstallMessageHandler(previous_handler)
        problems += messages.failures()
    problems += _new_python_threads(threads_before)
    if problems:
        pytest.fail("test left state behind:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture
def qt_messages(no_leftovers) -> QtMessages:
    """The Qt messages of the running test; call ``allow(pattern)`` for an expected warning."""
    return no_leftovers
