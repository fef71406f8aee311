"""Tests for latent interpolation and frame export."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from workbench.core import interpolate
from workbench.core.interpolate import (
    interpolation_path,
    latents_from_seed,
    lerp,
    save_gif,
    save_strip_png,
    slerp,
)
from workbench.core.validation import ConfigError


@pytest.fixture
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    latents = latents_from_seed(7, 2, 64)
    return latents[0], latents[1]


# Interpolation


@pytest.mark.parametrize("method", [lerp, slerp])
def test_scalar_endpoints_are_inputs(method, pair):
    z0, z1 = pair
    assert method(z0, z1, 0.0) is z0
    assert method(z0, z1, 1) is z1


@pytest.mark.parametrize("method", [lerp, slerp])
def test_tensor_endpoints_bitwise(method, pair):
    z0, z1 = pair
    frames = method(z0, z1, torch.tensor([0.0, 0.3, 1.0]))
    assert frames.shape == (3, 64)
    assert torch.equal(frames[0], z0)
    assert torch.equal(frames[2], z1)


def test_numpy_positions_accepted(pair):
    z0, z1 = pair
    frames = slerp(z0, z1, np.array([0.0, 0.5, 1.0]))
    assert frames.shape == (3, 64)
    assert torch.equal(frames[0], z0)
    assert torch.equal(frames[2], z1)


def test_lerp_midpoint_value():
    z0 = torch.tensor([1.0, -2.0])
    z1 = torch.tensor([3.0, 6.0])
    assert torch.equal(lerp(z0, z1, 0.25), torch.tensor([1.5, 0.0]))


def test_slerp_quarter_circle_values():
    z0 = torch.tensor([1.0, 0.0])
    z1 = torch.tensor([0.0, 1.0])
    frames = slerp(z0, z1, torch.tensor([1 / 3, 0.5]))
    expected = torch.tensor([[math.cos(math.pi / 6), math.sin(math.pi / 6)], [math.sqrt(0.5), math.sqrt(0.5)]])
    torch.testing.assert_close(frames, expected)


def test_slerp_keeps_unit_norm():
    generator = torch.Generator().manual_seed(0)
    z0 = torch.nn.functional.normalize(torch.randn(32, 16, generator=generator), dim=-1)
    z1 = torch.nn.functional.normalize(torch.randn(32, 16, generator=generator), dim=-1)
    frames = slerp(z0, z1, torch.linspace(0, 1, 11))
    assert frames.shape == (11, 32, 16)
    torch.testing.assert_close(frames.norm(dim=-1), torch.ones(11, 32))


def test_slerp_norm_is_linear():
    z0 = torch.tensor([1.0, 0.0, 0.0])
    z1 = torch.tensor([0.0, 0.0, 3.0])
    frames = slerp(z0, z1, torch.tensor([0.25, 0.5, 0.75]))
    torch.testing.assert_close(frames.norm(dim=-1), torch.tensor([1.5, 2.0, 2.5]))


def test_slerp_gaussian_norm_no_dip(pair):
    z0, z1 = pair
    spherical = interpolation_path(z0, z1, 9, "slerp").norm(dim=-1)
    linear = interpolation_path(z0, z1, 9, "linear").norm(dim=-1)
    torch.testing.assert_close(spherical[4], (z0.norm() + z1.norm()) / 2)
    # Two independent 64-d draws are nearly orthogonal, so the chord's midpoint
    # has about 1/sqrt(2) of the endpoint norm.
    assert linear[4] < 0.8 * spherical[4]


@pytest.mark.parametrize("offset", [0.0, 1e-7, 1e-5])
def test_slerp_nearly_parallel_finite(offset):
    z0 = torch.tensor([1.0, 0.0, 0.0])
    z1 = torch.tensor([2.0, offset, 0.0])
    frames = slerp(z0, z1, torch.linspace(0, 1, 5))
    assert torch.isfinite(frames).all()
    torch.testing.assert_close(frames, lerp(z0, z1, torch.linspace(0, 1, 5)), atol=1e-6, rtol=1e-6)


def test_slerp_antiparallel_rotates():
    z0 = torch.tensor([0.0, 1.0, 0.0, 0.5])
    z0 = z0 / z0.norm()
    frames = slerp(z0, -z0, torch.linspace(0, 1, 5))
    assert torch.isfinite(frames).all()
    torch.testing.assert_close(frames.norm(dim=-1), torch.ones(5))
    # Halfway round the circle the direction is orthogonal to both endpoints.
    assert abs(float(frames[2] @ z0)) < 1e-6


def test_slerp_one_dimensional_antiparallel():
    frames = slerp(torch.tensor([2.0]), torch.tensor([-1.0]), torch.tensor([0.5]))
    torch.testing.assert_close(frames, torch.tensor([[0.5]]))


def test_slerp_zero_endpoint_is_linear():
    z1 = torch.tensor([0.0, 4.0])
    frames = slerp(torch.zeros(2), z1, torch.tensor([0.25]))
    torch.testing.assert_close(frames, torch.tensor([[0.0, 1.0]]))


def test_slerp_float64_precision():
    z0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    z1 = torch.tensor([math.cos(1e-3), math.sin(1e-3)], dtype=torch.float64)
    frame = slerp(z0, z1, 0.5)
    expected = torch.tensor([math.cos(5e-4), math.sin(5e-4)], dtype=torch.float64)
    torch.testing.assert_close(frame, expected, atol=1e-15, rtol=0)


def test_slerp_rejects_integer_latents():
    with pytest.raises(TypeError, match="floating-point"):
        slerp(torch.tensor([1, 0]), torch.tensor([0, 1]), 0.5)


def test_lerp_rejects_2d_t(pair):
    z0, z1 = pair
    with pytest.raises(ValueError, match="1-D"):
        lerp(z0, z1, torch.zeros(2, 2))


# Paths and seeds


@pytest.mark.parametrize("method", ["slerp", "linear"])
def test_path_shape_and_endpoints(method, pair):
    z0, z1 = pair
    path = interpolation_path(z0, z1, 7, method)
    assert path.shape == (7, 64)
    assert torch.equal(path[0], z0)
    assert torch.equal(path[-1], z1)


def test_path_linear_spacing():
    path = interpolation_path(torch.zeros(2), torch.tensor([4.0, 8.0]), 5, "linear")
    torch.testing.assert_close(path[:, 0], torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0]))


def test_path_bad_arguments(pair):
    z0, z1 = pair
    with pytest.raises(ConfigError, match="frames"):
        interpolation_path(z0, z1, 1)
    with pytest.raises(ConfigError, match="method"):
        interpolation_path(z0, z1, 5, "cubic")
    with pytest.raises(ValueError, match="same size"):
        interpolation_path(z0, z1[:10], 5)


def test_seed_latents_reproducible():
    torch.manual_seed(1)
    first = latents_from_seed(42, 3, 8)
    torch.manual_seed(2)
    second = latents_from_seed(42, 3, 8)
    assert first.shape == (3, 8)
    assert first.dtype == torch.float32
    assert torch.equal(first, second)
    assert not torch.equal(first, latents_from_seed(43, 3, 8))


def test_seed_latents_bad_input():
    with pytest.raises(ConfigError, match="seed"):
        latents_from_seed(-1, 3, 8)
    with pytest.raises(ConfigError, match="z_dim"):
        latents_from_seed(0, 3, 0)


# Export


def _frames(count: int, channels: int) -> np.ndarray:
    values = np.arange(count * 4 * 5 * channels) * 7 % 256
    return values.reshape(count, 4, 5, channels).astype(np.uint8)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_strip_png_roundtrip(tmp_path, channels):
    frames = _frames(3, channels)
    target = save_strip_png(frames, tmp_path / "strip.png")
    with Image.open(target) as image:
        pixels = np.asarray(image)
    expected = np.concatenate(list(frames), axis=1)
    assert pixels.shape[:2] == (4, 15)
    assert np.array_equal(pixels.reshape(expected.shape), expected)
    assert [p.name for p in tmp_path.iterdir()] == ["strip.png"]


def test_strip_png_rejects_float(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        save_strip_png(np.zeros((2, 4, 4, 3)), tmp_path / "strip.png")
    assert not any(tmp_path.iterdir())


def test_strip_png_missing_folder(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        save_strip_png(_frames(1, 3), tmp_path / "absent" / "strip.png")


def test_failed_write_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "strip.png"
    target.write_bytes(b"old")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", fail)
    with pytest.raises(OSError, match="disk full"):
        save_strip_png(_frames(2, 3), target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["strip.png"]


def test_gif_frames_and_timing(tmp_path):
    frames = _frames(4, 1)
    target = save_gif(frames, tmp_path / "walk.gif", fps=10)
    with Image.open(target) as image:
        assert image.n_frames == 4
        assert image.info["loop"] == 0
        decoded = []
        for index in range(image.n_frames):
            image.seek(index)
            assert image.info["duration"] == 100
            decoded.append(np.asarray(image.convert("L")))
    assert np.array_equal(np.stack(decoded), frames[..., 0])


def test_gif_rgb_delay_rounding(tmp_path):
    target = save_gif(_frames(2, 3), tmp_path / "walk.gif", fps=30)
    with Image.open(target) as image:
        assert image.n_frames == 2
        assert image.size == (5, 4)
        assert image.info["duration"] == 30


def test_gif_bad_fps(tmp_path):
    with pytest.raises(ConfigError, match="fps"):
        save_gif(_frames(2, 3), tmp_path / "walk.gif", fps=0)
    with pytest.raises(ConfigError, match="fps"):
        save_gif(_frames(2, 3), tmp_path / "walk.gif", fps=interpolate.MAX_GIF_FPS + 1)
    with pytest.raises(ValueError, match="C = 1 or 3"):
        save_gif(_frames(2, 4), tmp_path / "walk.gif", fps=10)
    assert not Path(tmp_path / "walk.gif").exists()
