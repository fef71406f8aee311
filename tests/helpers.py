"""Shared test helpers: where the real data lives and small configs."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
MNIST_DIR = SHARED_DATA / "mnist"
CIFAR_DIR = SHARED_DATA / "cifar10-test"


def require_mnist() -> Path:
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST test split not found at {MNIST_DIR}")
    return MNIST_DIR


def require_cifar() -> Path:
    if not CIFAR_DIR.is_dir():
        pytest.skip(f"CIFAR-10 test JPEG folder not found at {CIFAR_DIR}")
    return CIFAR_DIR


def open_window(qtbot, tmp_path):
    """Return a shown MainWindow whose runs go under ``tmp_path / "runs"``, closed by qtbot."""
    from workbench.app.main_window import MainWindow

    window = MainWindow(runs_dir=tmp_path / "runs")
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    return window


def choose(combo, value):
    """Select the combo box entry whose data is ``value``, as a user picking it from the menu."""
    index = combo.findData(value)
    assert index >= 0, f"{value!r} not in the menu"
    combo.setCurrentIndex(index)
