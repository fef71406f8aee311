"""Log panel: shows the engine's log records in the window."""

from __future__ import annotations

import html
import logging

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import QPlainTextEdit

logger = logging.getLogger(__name__)

MAX_LINES = 5000


class _RecordRelay(QObject):
    """Carries formatted records from any thread to the GUI thread."""

    record = Signal(str, int)  # formatted text, logging level


class QtLogHandler(logging.Handler):
    """Logging handler that re-emits each record as a Qt signal.

    ``emit`` may run in any thread; the queued signal delivers the text to slots in
    the GUI thread, so no widget is touched from the training thread.
    """

    def __init__(self, level: int = logging.INFO):
        super().__init__(level)
        self.relay = _RecordRelay()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.relay.record.emit(self.format(record), record.levelno)
        except RuntimeError:
            # The relay's C++ object is gone once the window has been deleted.
            self.handleError(record)


class LogPanel(QPlainTextEdit):
    """Read-only view of the last ``MAX_LINES`` log lines of the ``workbench`` loggers.

    Call :meth:`detach` when the window closes so the handler stops referring to it.
    """

    def __init__(self, logger_name: str = "workbench", parent=None):
        super().__init__(parent)
        self.setReadOnly(True)
        self.setMaximumBlockCount(MAX_LINES)
        self.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.setObjectName("logPanel")

        self._logger = logging.getLogger(logger_name)
        self._previous_level = self._logger.level
        if self._logger.getEffectiveLevel() > logging.INFO:
            # Without this the default WARNING threshold would hide the engine's progress lines.
            self._logger.setLevel(logging.INFO)
        self.handler = QtLogHandler()
        self.handler.relay.record.connect(self._on_record)
        self._logger.addHandler(self.handler)

    def detach(self) -> None:
        """Remove the handler from the logger and restore the logger's level."""
        if self.handler in self._logger.handlers:
            self._logger.removeHandler(self.handler)
            self._logger.setLevel(self._previous_level)
            self.handler.relay.record.disconnect(self._on_record)

    def _on_record(self, text: str, level: int) -> None:
        if level >= logging.WARNING:
            # Escape before wrapping in HTML so messages with < or & show as written.
            escaped = html.escape(text)
            colour = "#b00020" if level >= logging.ERROR else "#9a6700"
            self.appendHtml(f'<span style="color:{colour}">{escaped}</span>')
        else:
            self.appendPlainText(text)
