"""GUI lateness while the window's FID dock computes FID with the domain extractor.

A dcgan run on MNIST is started paused, so the generator exists but does not
train, then the FID dock's "Compute FID" button is clicked with the domain
extractor. The FID cache starts empty (``XDG_CACHE_HOME`` points into the
scratch folder), so the computation includes training the domain classifier,
which is the slowest FID a user meets. The quick mode uses ring8 and the
points extractor instead, which exercises the same button, thread and
progress reports in a second.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from benchmarks.harness import Options, Result
from benchmarks.window import LatenessProbe, _lateness_result, open_window

logger = logging.getLogger(__name__)

FULL_SAMPLES = 2000
QUICK_SAMPLES = 500
TIMEOUT_S = 900


def wait_until(app, condition, timeout_s: float, description: str) -> None:
    """Process events until ``condition()`` is true; raise RuntimeError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {description}")
        app.processEvents()
        time.sleep(0.001)


def _choose(combo, value: str) -> None:
    index = combo.findData(value)
    if index < 0:
        raise RuntimeError(f"the FID dock offers no {value!r} choice")
    combo.setCurrentIndex(index)


def measure_fid_lateness(options: Options) -> Result:
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    data, extractor, samples = ((f"mnist:{options.mnist_dir}", "domain", FULL_SAMPLES) if not options.quick
                                else ("ring8", "points", QUICK_SAMPLES))
    window = open_window(options, data, "dcgan", steps=1000, sample_every=50)
    app = QApplication.instance()
    probe = LatenessProbe()
    try:
        if not window.start_run(paused=True):
            raise RuntimeError(f"the window did not start a run: {window.setup.problem()}")
        wait_until(app, lambda: window.state == "paused", TIMEOUT_S, "the paused run")
        panel = window.analysis.fid_panel
        panel.n_spin.setValue(samples)
        _choose(panel.extractor_combo, extractor)

        probe.start()
        QTest.mouseClick(panel.compute_button, Qt.MouseButton.LeftButton)
        if panel.job is None:
            raise RuntimeError(f"clicking Compute FID started nothing: {panel.notes_label.text()}")
        wait_until(app, lambda: panel.job is None, TIMEOUT_S, "the FID computation")
        lateness = probe.stop()
        if not panel.outcomes:
            raise RuntimeError(f"the FID computation failed: {panel.notes_label.text()}")
        result = panel.outcomes[-1].result
    finally:
        probe.timer.stop()
        window.close()
    extra = (f"Compute FID clicked in the FID dock of a paused {data.partition(':')[0]} run, {extractor} "
             f"extractor from an empty cache, N {samples}, FID {result.value:.1f}")
    return _lateness_result(f"FID computation ({extractor} extractor)", np.asarray(lateness), extra)
