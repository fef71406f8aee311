"""The Qt binding and the shared leak fixture in tests/conftest.py."""

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    changed = Signal(str)


def test_signal_emit_keeps_refcounts(qtbot):
    # PySide6 6.12.0 on Python 3.11 returns True from SignalInstance.emit without a new
    # reference, so every emit decrements True's reference count until the interpreter
    # aborts ("bool_dealloc") a few thousand signals into a run. Python 3.12+ hides it
    # because True is immortal there.
    emitter = _Emitter()
    received = []
    emitter.changed.connect(received.append)
    before = sys.getrefcount(True), sys.getrefcount(None)
    for _ in range(200):
        emitter.changed.emit("x")
    after = sys.getrefcount(True), sys.getrefcount(None)
    assert len(received) == 200
    assert after[0] >= before[0], "SignalInstance.emit leaks references to True; avoid PySide6 6.12.0"
    assert after[1] >= before[1] - 5


LEAKY_TESTS = '''
from PySide6.QtCore import QTimer, qWarning
from PySide6.QtWidgets import QLabel

def test_clean(qtbot):
    label = QLabel("ok")
    qtbot.addWidget(label)
    label.show()

def test_leaves_timer(qtbot):
    test_leaves_timer.timer = QTimer()
    test_leaves_timer.timer.start(1000)

def test_leaves_window(qtbot):
    test_leaves_window.label = QLabel("left open")
    test_leaves_window.label.show()

def test_qt_warning(qtbot):
    qWarning("something went wrong")

def test_allowed_warning(qtbot, qt_messages):
    qt_messages.allow("expected noise")
    qWarning("expected noise")
'''


def test_leak_fixture_fails_leaky_tests(tmp_path):
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_leaky.py").write_text(textwrap.dedent(LEAKY_TESTS))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    report = result.stdout
    assert "PASSED test_leaky.py::test_clean" in report
    assert "PASSED test_leaky.py::test_allowed_warning" in report
    assert "ERROR test_leaky.py::test_leaves_timer" in report
    assert "QTimer still active" in report
    assert "ERROR test_leaky.py::test_leaves_window" in report
    assert "window still visible" in report
    assert "ERROR test_leaky.py::test_qt_warning" in report
    assert "Qt message: something went wrong" in report
