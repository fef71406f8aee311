"""Pictures written to run folders: the image grid and the 2D scatter."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from workbench.core.render import (GRID_PADDING, SCATTER_PALETTE, image_grid, save_scatter_png, scatter_image,
                                   scatter_indices)

WHITE, AXES, REAL, FAKE = (tuple(int(v) for v in colour) for colour in SCATTER_PALETTE)


def colour(picture: np.ndarray, row: int, column: int) -> tuple[int, ...]:
    return tuple(int(v) for v in picture[row, column])


def test_scatter_places_points_by_hand():
    # size 100, limit 2: x = 1 maps to column (1/2 + 1) * 50 = 75, y = 1 to row (1 - 1/2) * 50 = 25.
    real = np.array([[1.0, 1.0]])
    fake = np.array([[-1.0, -1.0]])
    picture = scatter_image(real, fake, size=100, limit=2.0)
    assert picture.shape == (100, 100, 3)
    assert picture.dtype == np.uint8
    assert colour(picture, 25, 75) == REAL
    assert colour(picture, 75, 25) == FAKE
    # The real disk has radius 1.5: its 3 x 3 square is filled, two pixels away is not.
    assert colour(picture, 24, 76) == REAL
    assert colour(picture, 23, 75) == WHITE
    # The generated disk has radius 2: (0, 2) is inside, (1, 2) is not.
    assert colour(picture, 73, 25) == FAKE
    assert colour(picture, 73, 26) == WHITE
    # The axes cross at the centre, and a corner stays white.
    assert colour(picture, 50, 10) == AXES
    assert colour(picture, 10, 50) == AXES
    assert colour(picture, 2, 2) == WHITE


def test_scatter_overlap_and_bad_points():
    same = np.array([[0.5, 0.5]])
    picture = scatter_image(same, np.vstack([same, [[np.nan, 0.0]], [[np.inf, 1.0]], [[1e300, -1e300]]]),
                            size=64, limit=1.0)
    indices = scatter_indices(same, same, size=64, limit=1.0)
    assert colour(picture, 16, 48) == FAKE
    # Only the one finite generated disk (13 pixels) is orange: NaN, inf and a far-away point add nothing.
    assert int((indices == 3).sum()) == 13
    assert int(((picture == FAKE).all(axis=2)).sum()) == 13


def test_scatter_cuts_disks_at_the_border():
    indices = scatter_indices(np.empty((0, 2)), np.array([[-1.0, 1.0]]), size=40, limit=1.0)
    # The point maps to pixel (0, 0): only the quarter of the disk inside the frame remains.
    assert indices[0, 0] == 3
    assert int((indices == 3).sum()) == 6   # (0,0) (0,1) (0,2) (1,0) (1,1) (2,0)


def test_scatter_default_limit_frames_the_real_points():
    real = np.array([[4.0, 0.0], [-4.0, 0.0]])
    indices = scatter_indices(real, np.empty((0, 2)), size=100)
    # limit = 1.25 * 4, so x = 4 lands at column (4/5 + 1) * 50 = 90 and x = -4 at 10.
    assert indices[50, 90] == 2
    assert indices[50, 10] == 2


def test_saved_scatter_png_equals_the_rgb_scatter(tmp_path):
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(500, 2)), rng.normal(size=(64, 2))
    path = tmp_path / "scatter.png"
    save_scatter_png(real, fake, path, size=120)
    with Image.open(path) as picture:
        assert picture.mode == "P"
        saved = np.asarray(picture.convert("RGB"))
    np.testing.assert_array_equal(saved, scatter_image(real, fake, size=120))
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["scatter.png"]


def test_image_grid_layout():
    images = torch.stack([torch.full((1, 4, 4), -1.0), torch.full((1, 4, 4), 1.0)])
    grid = image_grid(images, nrow=2)
    assert grid.shape == (4 + 2 * GRID_PADDING, 2 * 4 + 3 * GRID_PADDING, 3)
    assert tuple(grid[GRID_PADDING, GRID_PADDING]) == (0, 0, 0)
    assert tuple(grid[GRID_PADDING, 2 * GRID_PADDING + 4]) == (255, 255, 255)
