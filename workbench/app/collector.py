"""Python's cyclic garbage collection confined to the GUI thread while a window is open.

The garbage collector runs in whichever thread happens to allocate when a
generation's threshold is crossed, and it destroys the Qt objects in the
cycles it frees there. A QObject destroyed in the training thread takes a Qt
mutex and then waits for the GIL. The GUI thread, which holds the GIL, waits
for that mutex, so the window and the run hang. That happened in the
start/stop test while the training thread pickled a checkpoint. pyqtgraph's
``GarbageCollector`` avoids this the same way: automatic collection is
switched off and a timer in the GUI thread collects instead.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

COLLECT_INTERVAL_MS = 1000


class GuiThreadCollector(QObject):
    """Switch automatic garbage collection off while started, collecting on a GUI-thread timer.

    Several collectors may be started at once (one per window). The first one
    to start also freezes the objects alive at that moment, and the last one
    to stop unfreezes them and switches automatic collection back on.
    """

    _started = 0   # collectors started and not yet stopped, in this process

    def __init__(self, parent: QObject | None = None, interval_ms: int = COLLECT_INTERVAL_MS):
        super().__init__(parent)
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.collect)

    def start(self) -> None:
        if self.timer.isActive():
            return
        if GuiThreadCollector._started == 0:
            gc.disable()
            # The objects alive now (modules, torch, Qt) go to the permanent generation, which
            # collections skip: a full collection of everything blocked the GUI for 185 ms.
            gc.collect()
            gc.freeze()
        GuiThreadCollector._started += 1
        self.timer.start()

    def stop(self) -> None:
        if not self.timer.isActive():
            return
        self.timer.stop()
        GuiThreadCollector._started -= 1
        if GuiThreadCollector._started == 0:
            gc.unfreeze()
            gc.enable()

    def collect(self) -> int:
        """Collect the oldest generation whose allocation count passed its threshold; return objects freed."""
        counts, thresholds = gc.get_count(), gc.get_threshold()
        for generation in (2, 1, 0):
            if thresholds[generation] and counts[generation] > thresholds[generation]:
                return gc.collect(generation)
        return 0
