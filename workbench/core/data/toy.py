"""2D toy distributions generated in code: ring8, grid25 and spiral.

ring8 is the ring of 8 Gaussians used by the WGAN-GP and VEEGAN papers and
grid25 is the 5x5 grid of Gaussians used by PacGAN. Both expose their mode
centres and standard deviation, so a coverage metric can count the modes a
generator reaches and the share of samples within 3 std of the nearest mode.
"""

from __future__ import annotations

import math

import numpy as np
import torch

RING8_RADIUS = 2.0
RING8_STD = 0.02
GRID25_SPACING = 2.0
GRID25_STD = 0.05
# The spiral is a Swiss roll, t * (cos t, sin t) for t in [1.5 pi, 4.5 pi],
# scaled so that its outer end lies at radius 2, plus isotropic Gaussian noise.
SPIRAL_T_MIN = 1.5 * math.pi
SPIRAL_T_MAX = 4.5 * math.pi
SPIRAL_RADIUS = 2.0
SPIRAL_NOISE_STD = 0.05


class PointMixture:
    """A 2D distribution that draws fresh samples on every call.

    Attributes
    ----------
    name : str
        The data kind, such as ``"ring8"``.
    modes : np.ndarray or None
        (M, 2) float64 mode centres, None for the spiral, which has no discrete modes.
    mode_std : float or None
        Standard deviation of each Gaussian mode along each axis.
    weights : np.ndarray or None
        (M,) probability of each mode, uniform for the built-in mixtures.
    """

    kind = "points"
    shape = (2,)

    def __init__(self, name: str, modes: np.ndarray | None, mode_std: float | None):
        self.name = name
        self.modes = None if modes is None else np.asarray(modes, dtype=np.float64)
        self.mode_std = mode_std
        self.weights = None if modes is None else np.full(len(self.modes), 1.0 / len(self.modes))
        # Tensor copies for sample(), made once: converting them per batch cost a fifth of a draw.
        self._centres = None if modes is None else torch.as_tensor(self.modes, dtype=torch.float32)
        self._probabilities = None if modes is None else torch.as_tensor(self.weights)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Draw ``n`` points as an (n, 2) float32 CPU tensor."""
        if self.modes is None:
            return _sample_spiral(n, generator)
        choice = torch.multinomial(self._probabilities, n, replacement=True, generator=generator)
        noise = torch.randn(n, 2, generator=generator) * self.mode_std
        return self._centres[choice] + noise

    def __repr__(self) -> str:
        count = "no discrete modes" if self.modes is None else f"{len(self.modes)} modes"
        return f"PointMixture({self.name!r}, {count})"


def _sample_spiral(n: int, generator: torch.Generator) -> torch.Tensor:
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    t = SPIRAL_T_MIN + (SPIRAL_T_MAX - SPIRAL_T_MIN) * u
    scale = SPIRAL_RADIUS / SPIRAL_T_MAX
    points = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) * scale
    points += torch.randn(n, 2, generator=generator, dtype=torch.float64) * SPIRAL_NOISE_STD
    return points.float()


def ring8() -> PointMixture:
    """Return 8 Gaussians evenly spaced on a circle of radius 2, std 0.02."""
    angles = np.arange(8) * (2 * np.pi / 8)
    modes = RING8_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return PointMixture("ring8", modes, RING8_STD)


def grid25() -> PointMixture:
    """Return a 5x5 grid of Gaussians centred on {-4, -2, 0, 2, 4}^2, std 0.05."""
    axis = GRID25_SPACING * np.arange(-2, 3)
    xs, ys = np.meshgrid(axis, axis, indexing="ij")
    modes = np.stack([xs.ravel(), ys.ravel()], axis=1)
    return PointMixture("grid25", modes, GRID25_STD)


def spiral() -> PointMixture:
    """Return a 2D Swiss roll within radius about 2, without discrete modes."""
    return PointMixture("spiral", None, None)


TOY_FACTORIES = {"ring8": ring8, "grid25": grid25, "spiral": spiral}
