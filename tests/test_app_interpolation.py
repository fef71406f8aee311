"""Latent interpolation: grid geometry, frames from the live generator, grid clicks and export."""


import numpy as np
import pytest
import torch
from PIL import Image
from PySide6.QtCore import QPointF, Qt
from torchvision.utils import make_grid

from tests.helpers import MNIST_DIR, choose, open_window
from workbench.app.interpolation_panel import grid_cell_at, grid_tile

RUN_TIMEOUT_MS = 120_000


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))   # no cached domain classifier
    win = open_window(qtbot, tmp_path)
    return win




@pytest.mark.parametrize("count, size", [(64, 28), (10, 5), (1, 4)])
def test_grid_cells_match_make_grid(count, size):
    # Tile k is filled with the value k, so the grid image shows which tile covers a pixel.
    tiles = torch.arange(count, dtype=torch.float32).reshape(count, 1, 1, 1).expand(count, 3, size, size)
    grid = make_grid(tiles + 1, nrow=int(np.ceil(np.sqrt(count))), padding=2, pad_value=0.0)
    image = grid[0].numpy()   # (H, W): 0 on padding, k + 1 on tile k
    for y, x in zip(*np.nonzero(image)):
        assert grid_cell_at(x + 0.5, y + 0.5, count, image.shape) == image[y, x] - 1
    for k in range(count):
        np.testing.assert_array_equal(grid_tile(grid.permute(1, 2, 0).numpy(), k, count)[..., 0],
                                      np.full((size, size), k + 1.0))
    assert grid_cell_at(-1, 0, count, image.shape) is None
    assert grid_cell_at(0, image.shape[0], count, image.shape) is None


def test_grid_cell_past_last_tile():
    # 10 tiles of 5 px in 4 columns and 3 rows; the last row contains tiles 8 and 9 only.
    shape = (3 * 7 + 2, 4 * 7 + 2)
    assert grid_cell_at(2 + 7 * 1 + 1, 2 + 7 * 2 + 1, 10, shape) == 9
    assert grid_cell_at(2 + 7 * 2 + 1, 2 + 7 * 2 + 1, 10, shape) is None


def test_ring8_path_from_live_generator(window, qtbot):
    setup = window.setup
    choose(setup.data_combo, "ring8")
    setup.editors["steps"].setText("1000")
    assert window.start_run(paused=True)
    qtbot.waitUntil(lambda: window.state == "paused" and window.samples_view.updates >= 1, timeout=RUN_TIMEOUT_MS)
    generated = np.column_stack(window.samples_view.fake_scatter.getData())   # (64, 2) at step 0

    panel = window.analysis.interpolation
    panel.frames_spin.setValue(7)
    panel.select_cell(3)
    panel.select_cell(40)
    assert panel.endpoints().first == 3
    assert panel.endpoints().second == 40
    assert panel.start()
    qtbot.waitUntil(lambda: panel.result is not None, timeout=RUN_TIMEOUT_MS)

    assert panel.frame_count() == 7
    points = panel.result.points
    np.testing.assert_allclose(points[0], generated[3], atol=1e-5)
    np.testing.assert_allclose(points[-1], generated[40], atol=1e-5)
    path_x, path_y = window.analysis.overlay.path.getData()
    np.testing.assert_allclose(np.column_stack([path_x, path_y]), points)
    assert not panel.png_button.isEnabled()   # 2D frames are points, not images
    window.close()


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"MNIST test split not found at {MNIST_DIR}")
def test_mnist_clicked_cells_and_export(window, qtbot, tmp_path):
    setup = window.setup
    choose(setup.data_combo, "mnist")
    setup.path_edit.setText(str(MNIST_DIR))
    choose(setup.editors["preset"], "dcgan")
    setup.editors["steps"].setText("1000")
    assert window.start_run(paused=True)
    qtbot.waitUntil(lambda: window.state == "paused" and window.samples_view.updates >= 1, timeout=RUN_TIMEOUT_MS)
    samples = window.samples_view
    samples.image_box.autoRange(padding=0)
    grid = samples.current_image()

    def click_cell(row, column):
        pixel = QPointF(2 + 30 * column + 14, 2 + 30 * row + 14)   # the centre of a 28 px tile
        scene = samples.image_item.mapToScene(pixel)
        position = samples.image_widget.mapFromScene(scene)
        qtbot.mouseClick(samples.image_widget.viewport(), Qt.MouseButton.LeftButton, pos=position)

    panel = window.analysis.interpolation
    click_cell(0, 2)
    click_cell(5, 7)
    assert (panel.first_spin.value(), panel.second_spin.value()) == (2, 47)
    # The second click also searched the training images nearest to sample 47, in pixel space.
    neighbours = window.analysis.neighbours
    qtbot.waitUntil(lambda: not neighbours.busy and neighbours.result is not None, timeout=RUN_TIMEOUT_MS)
    query = grid_tile(grid, 47, 64)[..., 0].astype(np.float64) / 127.5 - 1.0
    train = window_dataset_pixels()
    expected = np.sort(np.linalg.norm(train - query.ravel(), axis=1))[:5]
    np.testing.assert_allclose(neighbours.result.distances, expected, rtol=1e-4)
    assert neighbours.result.space == "pixels"

    panel.frames_spin.setValue(5)
    choose(panel.method_combo, "linear")
    assert panel.start()
    qtbot.waitUntil(lambda: panel.result is not None, timeout=RUN_TIMEOUT_MS)

    frames = panel.result.frames
    assert frames.shape == (5, 28, 28, 1)
    # Batch size changes the float rounding, so a pixel may differ by one level.
    first = frames[0, ..., 0].astype(int) - grid_tile(grid, 2, 64)[..., 0].astype(int)
    last = frames[-1, ..., 0].astype(int) - grid_tile(grid, 47, 64)[..., 0].astype(int)
    assert np.abs(first).max() <= 1
    assert np.abs(last).max() <= 1

    png = panel.export_png(tmp_path / "strip.png")
    gif = panel.export_gif(tmp_path / "strip.gif")
    assert Image.open(png).size == (5 * 28, 28)
    with Image.open(gif) as animation:
        assert animation.n_frames == 5
    panel.play_button.click()
    assert panel.timer.isActive()
    qtbot.waitUntil(lambda: panel._frame_index >= 2, timeout=5_000)
    window.close()
    assert not panel.timer.isActive()


def window_dataset_pixels() -> np.ndarray:
    from workbench.core.data import load_dataset

    images = load_dataset(f"mnist:{MNIST_DIR}").images.numpy()
    return images.reshape(len(images), -1).astype(np.float64) / 127.5 - 1.0
