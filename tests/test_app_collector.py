"""Garbage collection confined to the GUI thread while a window is open."""

import gc
import threading
import weakref

from tests.helpers import open_window
from workbench.app.collector import GuiThreadCollector


class Node:
    """An object in a reference cycle, which only the cyclic collector frees."""

    def __init__(self):
        self.self_reference = self


def test_window_moves_collection_to_gui_thread(qtbot, tmp_path):
    assert gc.isenabled()
    window = open_window(qtbot, tmp_path)
    assert not gc.isenabled()

    collected_in = []
    gc.callbacks.append(lambda phase, info: collected_in.append(threading.current_thread().name)
                        if phase == "stop" else None)
    try:
        # A worker thread that allocates far past the threshold triggers no collection now.
        def allocate():
            for _ in range(5 * gc.get_threshold()[0]):
                Node()

        worker = threading.Thread(target=allocate, name="allocator")
        worker.start()
        worker.join()
        assert "allocator" not in collected_in
        orphan = Node()
        reference = weakref.ref(orphan)
        del orphan
        qtbot.waitUntil(lambda: reference() is None, timeout=5000)   # freed by the window's timer
        assert set(collected_in) == {threading.main_thread().name}
    finally:
        gc.callbacks.pop()

    window.close()
    assert gc.isenabled()


def test_collection_resumes_after_last_collector(qtbot):
    first, second = GuiThreadCollector(), GuiThreadCollector()
    first.start()
    second.start()
    first.stop()
    assert not gc.isenabled()
    second.stop()
    assert gc.isenabled()
    second.stop()   # stopping twice changes nothing
    assert gc.isenabled()
