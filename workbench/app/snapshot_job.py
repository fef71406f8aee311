"""Base class of the threads that work on a copy of the generator (FID, interpolation, neighbours)."""

from __future__ import annotations

import threading

from PySide6.QtCore import QThread


class SnapshotJob(QThread):
    """A job thread that first obtains a generator snapshot; :meth:`cancel` may be called from any thread."""

    def __init__(self, source, parent=None):
        super().__init__(parent)
        self.source = source   # live_analysis.SnapshotSource
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    def is_cancelled(self) -> bool:
        return self._cancel.is_set()

    def obtain_snapshot(self):
        """Return the generator snapshot, or None when the job was cancelled while waiting for it."""
        return self.source.obtain(self._cancel.is_set)
