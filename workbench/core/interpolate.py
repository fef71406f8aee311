"""Latent-space interpolation and export of the frames as PNG strips or GIFs.

``lerp`` and ``slerp`` work on torch tensors whose last dimension is the latent
dimension; any leading dimensions are a batch. ``t`` is a float or a 1-D tensor
of frame positions, and a 1-D ``t`` of length F adds a leading frame dimension
to the result. Positions outside [0, 1] extrapolate.

``slerp`` interpolates the direction along the great circle and the norm
linearly. Two draws from a d-dimensional standard normal have norms near
``sqrt(d)`` and are nearly orthogonal, so the straight line between them has a
norm of about ``sqrt(d / 2)`` at its midpoint. The generator almost never saw
latents that short during training. Interpolating the norm between the
endpoint norms avoids them.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from workbench.core.validation import ConfigError, coerce_choice, coerce_float, coerce_int

logger = logging.getLogger(__name__)

INTERPOLATION_METHODS = ("slerp", "linear")

# Chromium and Firefox play GIF frame delays of 10 ms or less as 100 ms, so
# 20 ms (50 fps) is the shortest delay that plays as written.
MAX_GIF_FPS = 50.0


def lerp(z0: torch.Tensor, z1: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """Interpolate linearly from ``z0`` (t = 0) to ``z1`` (t = 1).

    A float ``t`` of exactly 0 or 1 returns ``z0`` or ``z1`` itself, not a copy.
    For a tensor ``t``, the frames at 0 and 1 are bitwise copies of the endpoints.
    """
    _check_floating(z0, z1)
    if isinstance(t, (int, float)) and t in (0, 1):
        return z0 if t == 0 else z1
    z0, z1 = torch.broadcast_tensors(z0, z1)
    frames = _frame_positions(t, z0)
    result = z0 + frames * (z1 - z0)
    return _pin_endpoints(result, z0, z1, frames)


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """Interpolate the direction on the sphere and the norm linearly.

    The result has norm ``(1 - t) * |z0| + t * |z1|`` and a direction rotated
    from ``z0`` towards ``z1`` by ``t`` times the angle between them, so unit
    endpoints give unit results. Endpoint pairs that admit no rotation fall back
    to :func:`lerp`: an angle below ``sqrt(eps)`` of the dtype (where the two
    differ by less than the rounding error), a zero endpoint, or antiparallel
    1-D latents. Antiparallel endpoints in two or more dimensions have no unique
    great circle, so the rotation runs through the coordinate axis least aligned
    with ``z0``. Exact endpoints are kept as in :func:`lerp`.
    """
    _check_floating(z0, z1)
    if isinstance(t, (int, float)) and t in (0, 1):
        return z0 if t == 0 else z1
    z0, z1 = torch.broadcast_tensors(z0, z1)
    frames = _frame_positions(t, z0)
    tiny = torch.finfo(z0.dtype).tiny
    norm0 = z0.norm(dim=-1, keepdim=True)
    norm1 = z1.norm(dim=-1, keepdim=True)
    unit0 = z0 / norm0.clamp_min(tiny)
    unit1 = z1 / norm1.clamp_min(tiny)

    # The angle from atan2 stays accurate near 0 and pi, where acos does not.
    cosine = (unit0 * unit1).sum(dim=-1, keepdim=True).clamp(-1.0, 1.0)
    perpendicular = unit1 - cosine * unit0
    sine = perpendicular.norm(dim=-1, keepdim=True)
    angle = torch.atan2(sine, cosine)
    axis = _rotation_axis(unit0, perpendicular, sine)

    direction = torch.cos(frames * angle) * unit0 + torch.sin(frames * angle) * axis
    radius = norm0 + frames * (norm1 - norm0)
    rotated = radius * direction

    min_angle = math.sqrt(torch.finfo(z0.dtype).eps)
    use_linear = (angle < min_angle) | (norm0 <= tiny) | (norm1 <= tiny)
    if z0.shape[-1] == 1:
        use_linear = torch.ones_like(use_linear)
    result = torch.where(use_linear, z0 + frames * (z1 - z0), rotated)
    return _pin_endpoints(result, z0, z1, frames)


def _rotation_axis(unit0: torch.Tensor, perpendicular: torch.Tensor, sine: torch.Tensor) -> torch.Tensor:
    """Return the unit vector orthogonal to ``unit0`` in the plane of rotation.

    Where ``perpendicular`` is too short to normalise (antiparallel or parallel
    endpoints), the axis is the coordinate axis least aligned with ``unit0``
    with its ``unit0`` component removed.
    """
    eps = torch.finfo(unit0.dtype).eps
    least_aligned = unit0.abs().argmin(dim=-1, keepdim=True)
    basis = torch.zeros_like(unit0).scatter_(-1, least_aligned, 1.0)
    fallback = basis - (basis * unit0).sum(dim=-1, keepdim=True) * unit0
    fallback = fallback / fallback.norm(dim=-1, keepdim=True).clamp_min(eps)
    usable = sine > eps
    axis = perpendicular / sine.clamp_min(eps)
    return torch.where(usable, axis, fallback)


def _check_floating(z0: torch.Tensor, z1: torch.Tensor) -> None:
    if not (z0.is_floating_point() and z1.is_floating_point()) or z0.dtype != z1.dtype:
        raise TypeError(f"z0 and z1 must be floating-point tensors of one dtype, got {z0.dtype} and {z1.dtype}")


def _frame_positions(t: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Return ``t`` as a tensor that broadcasts against ``like`` with frames first."""
    positions = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    if positions.dim() > 1:
        raise ValueError(f"t must be a float or a 1-D tensor of frame positions, got shape {tuple(positions.shape)}")
    if positions.dim() == 1:
        positions = positions.reshape(-1, *([1] * like.dim()))
    return positions


def _pin_endpoints(
    result: torch.Tensor, z0: torch.Tensor, z1: torch.Tensor, frames: torch.Tensor
) -> torch.Tensor:
    """Replace the frames at t = 0 and t = 1 with bitwise copies of the endpoints."""
    result = torch.where(frames == 0, z0, result)
    return torch.where(frames == 1, z1, result)


def interpolation_path(
    z0: torch.Tensor, z1: torch.Tensor, frames: int, method: str = "slerp"
) -> torch.Tensor:
    """Return ``frames`` evenly spaced latents from ``z0`` to ``z1``, shape (frames, z_dim).

    ``method`` is ``"slerp"`` or ``"linear"``. The first row equals ``z0`` and
    the last equals ``z1`` bitwise.
    """
    frames = coerce_int("frames", frames, minimum=2)
    method = coerce_choice("method", method, INTERPOLATION_METHODS)
    if z0.dim() != 1 or z0.shape != z1.shape:
        raise ValueError(
            f"z0 and z1 must be 1-D latents of the same size, got shapes {tuple(z0.shape)} and {tuple(z1.shape)}"
        )
    positions = torch.linspace(0.0, 1.0, frames, dtype=z0.dtype, device=z0.device)
    positions[0], positions[-1] = 0.0, 1.0
    interpolate = slerp if method == "slerp" else lerp
    return interpolate(z0, z1, positions)


def latents_from_seed(seed: int, n: int, z_dim: int) -> torch.Tensor:
    """Draw ``n`` standard normal latents of size ``z_dim`` from a seeded CPU generator.

    The same seed gives the same float32 latents on every call, independent of
    torch's global random state.
    """
    seed = coerce_int("seed", seed, minimum=0, maximum=2**63 - 1)
    n = coerce_int("n", n, minimum=1)
    z_dim = coerce_int("z_dim", z_dim, minimum=1)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(n, z_dim, generator=generator)


def save_strip_png(frames_uint8: np.ndarray, path: str | os.PathLike) -> Path:
    """Write frames (F, H, W, C) side by side as one PNG of shape (H, F * W, C).

    C is 1 (grey), 3 (RGB) or 4 (RGBA). The file is written to a temporary name
    in the same folder and then renamed, so readers never see a partial file.
    """
    frames = _validate_frames(frames_uint8, channels=(1, 3, 4))
    strip = np.concatenate(list(frames), axis=1)  # (H, F * W, C)
    image = _to_image(strip)
    return _write_atomically(path, lambda handle: image.save(handle, format="PNG"))


def save_gif(frames: np.ndarray, path: str | os.PathLike, fps: float) -> Path:
    """Write frames (F, H, W, C) uint8 as a looping GIF played at ``fps`` frames per second.

    C is 1 (grey) or 3 (RGB), and each frame gets its own 256-colour palette. GIF
    stores delays in units of 10 ms, so the delay is rounded to that. Pillow
    merges consecutive identical frames into one longer frame. The write is
    atomic, as in :func:`save_strip_png`.
    """
    fps = coerce_float("fps", fps, minimum=0.0, maximum=MAX_GIF_FPS, exclusive_minimum=True)
    frames = _validate_frames(frames, channels=(1, 3))
    images = [_to_image(frame) for frame in frames]
    delay_ms = 10 * max(2, round(100.0 / fps))

    def write(handle):
        images[0].save(
            handle, format="GIF", save_all=True, append_images=images[1:], duration=delay_ms, loop=0
        )

    return _write_atomically(path, write)


def _validate_frames(frames: np.ndarray, channels: Sequence[int]) -> np.ndarray:
    """Check that ``frames`` is a non-empty uint8 array (F, H, W, C) with C in ``channels``."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (0-255), got dtype {frames.dtype}; scale and cast them first")
    if frames.ndim != 4 or frames.shape[0] == 0 or frames.shape[-1] not in channels:
        allowed = " or ".join(str(c) for c in channels)
        raise ValueError(f"frames must have shape (F, H, W, C) with F >= 1 and C = {allowed}, got {frames.shape}")
    return frames


def _to_image(array: np.ndarray) -> Image.Image:
    """Convert an (H, W, C) uint8 array to a Pillow image in mode L, RGB or RGBA."""
    if array.shape[-1] == 1:
        array = array[..., 0]
    return Image.fromarray(np.ascontiguousarray(array))


def _write_atomically(path: str | os.PathLike, write) -> Path:
    """Call ``write`` on a temporary file beside ``path``, then rename it to ``path``."""
    target = Path(path)
    if not target.parent.is_dir():
        raise ConfigError("path", f"folder {str(target.parent)!r} does not exist; create it or choose another path")
    handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp", delete=False)
    try:
        with handle:
            write(handle)
        os.replace(handle.name, target)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    logger.info("Wrote %s", target)
    return target
