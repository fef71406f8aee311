"""GUI lateness while an FID computation with the domain extractor runs beside the window.

The window has no FID command yet, so this module runs ``compute_fid`` in a
QThread of its own, the way a window would: progress goes to a progress bar
in the window's status bar through a queued signal, and the result comes back
as a signal. The computation starts with an empty cache, so it includes
training the domain classifier, which is the slowest FID a user meets.
"""

from __future__ import annotations

import logging

import numpy as np

from benchmarks.harness import Options, Result
from benchmarks.window import LatenessProbe, _lateness_result, application, open_window

logger = logging.getLogger(__name__)

FULL_SAMPLES = 2000
QUICK_SAMPLES = 200
QUICK_IMAGES = 600   # the quick mode trains the classifier on this many MNIST images


def _fid_thread_class():
    from PySide6.QtCore import QThread, Signal

    class FIDThread(QThread):
        """Compute one FID in this thread; ``progress`` and ``done`` reach the GUI thread queued."""

        progress = Signal(int, int)
        done = Signal(object)   # FIDResult, or the exception that ended the computation

        def __init__(self, real, fake, n: int, cache_dir):
            super().__init__()
            self.arguments = dict(real=real, fake=fake, n=n, extractor="domain", cache_dir=cache_dir)

        def run(self) -> None:
            from workbench.core.fid import compute_fid

            try:
                result = compute_fid(**self.arguments, progress=self.progress.emit)
            except Exception as error:  # handed to the GUI thread, which raises it
                result = error
            self.done.emit(result)

    return FIDThread


def _fid_inputs(options: Options):
    """Return (real MNIST data, a sampler of an untrained DCGAN generator, samples per side)."""
    import torch

    from workbench.core.data import ImageDataset, load_dataset
    from workbench.core.fid import generator_sampler
    from workbench.core.models import DEFAULT_IMAGE_WIDTH, DEFAULT_IMAGE_Z_DIM, build_models

    real = load_dataset(f"mnist:{options.mnist_dir}")
    if options.quick:
        real = ImageDataset(real.images[:QUICK_IMAGES], real.labels[:QUICK_IMAGES], real.class_names, real.name)
    torch.manual_seed(0)
    generator, _ = build_models((1, 28, 28), DEFAULT_IMAGE_Z_DIM, DEFAULT_IMAGE_WIDTH, "batch")
    sampler = generator_sampler(generator.eval(), DEFAULT_IMAGE_Z_DIM)
    return real, sampler, QUICK_SAMPLES if options.quick else FULL_SAMPLES


def measure_fid_lateness(options: Options) -> Result:
    from PySide6.QtCore import QEventLoop
    from PySide6.QtWidgets import QProgressBar

    application(options)
    real, sampler, n = _fid_inputs(options)
    window = open_window(options, "ring8", "dcgan", steps=10, sample_every=50)
    bar = QProgressBar()
    window.statusBar().addPermanentWidget(bar)
    thread = _fid_thread_class()(real, sampler, n, options.scratch / "fid-cache")
    thread.progress.connect(lambda done, total: (bar.setMaximum(total), bar.setValue(done)))
    loop = QEventLoop()
    outcome = {}
    thread.done.connect(lambda result: (outcome.setdefault("result", result), loop.quit()))
    probe = LatenessProbe()
    try:
        probe.start()
        thread.start()
        loop.exec()
        lateness = probe.stop()
    finally:
        thread.wait()
        window.close()
    result = outcome.get("result")
    if isinstance(result, Exception):
        raise result
    extra = (f"compute_fid in a QThread, domain extractor trained from an empty cache on {len(real)} images, "
             f"{n} samples per side, FID {result.value:.1f}")
    return _lateness_result("FID computation (domain extractor)", np.asarray(lateness), extra)
