"""Fields over the 2-D data plane for the training view of toy data sets.

The discriminator heat map, the arrows that show where the generator loss
pushes each generated point, and the image of a latent grid under the
generator. Every function runs its modules in eval mode, so batch norm uses its
running statistics and each point is independent of the others in its batch,
and restores each submodule's train/eval mode afterwards. Results are numpy
arrays on the CPU.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from workbench.core.validation import ConfigError, coerce_choice, coerce_float, coerce_int

logger = logging.getLogger(__name__)

# Points per forward pass when evaluating a grid, so a 1000x1000 heat map does
# not need one batch of a million points.
EVAL_BATCH_SIZE = 65536


def _wasserstein_generator_loss(output: torch.Tensor) -> torch.Tensor:
    return -output


def _nonsaturating_generator_loss(output: torch.Tensor) -> torch.Tensor:
    return F.softplus(-output)  # -log(sigmoid(D(x)))


def _minimax_generator_loss(output: torch.Tensor) -> torch.Tensor:
    return -F.softplus(output)  # log(1 - sigmoid(D(x)))


def _least_squares_generator_loss(output: torch.Tensor) -> torch.Tensor:
    return 0.5 * (output - 1.0) ** 2


# Per-sample generator losses as functions of the discriminator's raw output.
# "hinge" shares the Wasserstein generator loss -D(G(z)). "bce" is the
# non-saturating loss -log(sigmoid(D(G(z)))) used in practice.
GENERATOR_LOSSES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "wasserstein": _wasserstein_generator_loss,
    "hinge": _wasserstein_generator_loss,
    "bce": _nonsaturating_generator_loss,
    "nonsaturating": _nonsaturating_generator_loss,
    "minimax": _minimax_generator_loss,
    "lsgan": _least_squares_generator_loss,
}


@contextlib.contextmanager
def eval_mode(*modules: torch.nn.Module) -> Iterator[None]:
    """Put ``modules`` in eval mode and restore every submodule's previous mode on exit."""
    previous = [(sub, sub.training) for module in modules for sub in module.modules()]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for sub, training in previous:
            sub.training = training


def module_device(module: torch.nn.Module) -> torch.device:
    """Return the device of the module's first parameter or buffer, or the CPU when it has none."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


def grid_axes(
    xlim: Sequence[float], ylim: Sequence[float], resolution: int | Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Return the x coordinates (W,) and y coordinates (H,) of a heat-map grid.

    ``resolution`` is one size for both axes or ``(H, W)``. Both ends of each
    range are grid points.
    """
    x_low, x_high = _check_range("xlim", xlim)
    y_low, y_high = _check_range("ylim", ylim)
    if isinstance(resolution, (int, np.integer, str)):
        rows = cols = coerce_int("resolution", resolution, minimum=2)
    else:
        rows, cols = (coerce_int("resolution", size, minimum=2) for size in resolution)
    return np.linspace(x_low, x_high, cols), np.linspace(y_low, y_high, rows)


def discriminator_heatmap(
    discriminator: torch.nn.Module,
    xlim: Sequence[float],
    ylim: Sequence[float],
    resolution: int | Sequence[int] = 100,
    probability: bool = False,
) -> np.ndarray:
    """Evaluate the discriminator on a grid over the plane and return (H, W) float64.

    ``result[i, j]`` is the output at the point ``(xs[j], ys[i])`` with
    ``xs, ys = grid_axes(xlim, ylim, resolution)``, so rows run along y from
    ``ylim[0]``. The value is the raw output (logit or critic value). Set
    ``probability`` for discriminators trained with binary cross-entropy to get
    ``sigmoid(output)`` instead.
    """
    xs, ys = grid_axes(xlim, ylim, resolution)
    grid_x, grid_y = np.meshgrid(xs, ys)  # each (H, W)
    points = np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)
    outputs = _evaluate_in_batches(discriminator, torch.from_numpy(points))
    if probability:
        outputs = torch.sigmoid(outputs)
    return outputs.reshape(len(ys), len(xs)).double().numpy()


def generator_gradient_field(
    discriminator: torch.nn.Module,
    generated_points: np.ndarray | torch.Tensor,
    loss: str | Callable[[torch.Tensor], torch.Tensor] = "wasserstein",
) -> np.ndarray:
    """Return the direction each generated point moves under the generator loss, shape (N, 2).

    The arrow at point x is ``-d loss(D(x)) / dx``, the negative gradient of
    that point's own generator loss, not of the batch mean, so its length does
    not depend on N. ``loss`` is a name from :data:`GENERATOR_LOSSES` or a
    function mapping the discriminator's raw outputs (N,) to per-point losses
    (N,). Parameter gradients are not accumulated.
    """
    loss_fn = _resolve_loss(loss)
    device = module_device(discriminator)
    points = torch.as_tensor(generated_points).detach().to(device=device, dtype=_module_dtype(discriminator))
    if points.ndim != 2 or len(points) == 0:
        raise ValueError(f"generated_points must be (N, D) with N >= 1, got shape {tuple(points.shape)}")
    points.requires_grad_(True)

    with eval_mode(discriminator), torch.enable_grad():
        outputs = discriminator(points).reshape(len(points), -1)
        if outputs.shape[1] != 1:
            raise ValueError(f"the discriminator must return one value per point, got shape {tuple(outputs.shape)}")
        total = loss_fn(outputs[:, 0]).sum()
        (gradient,) = torch.autograd.grad(total, points, allow_unused=True)
    if gradient is None:
        return np.zeros(tuple(points.shape))
    return (-gradient).detach().cpu().double().numpy()


def latent_grid(
    latent_dim: int,
    span: float = 2.0,
    lines: int = 11,
    points_per_line: int = 41,
    dims: tuple[int, int] = (0, 1),
    base: torch.Tensor | None = None,
) -> torch.Tensor:
    """Build grid lines in latent space, shape (2, lines, points_per_line, latent_dim).

    Latent dimensions ``dims[0]`` and ``dims[1]`` run over [-span, span]. The
    first family of lines varies ``dims[0]`` along each line, with ``dims[1]``
    fixed per line, and the second family swaps the two roles. The other
    dimensions stay at ``base`` (zeros by default, the mode of the standard
    normal prior), so for a 2-D latent the grid is the whole noise plane and
    for a larger latent it is a 2-D slice through ``base``.
    """
    latent_dim = coerce_int("latent_dim", latent_dim, minimum=2)
    span = coerce_float("span", span, minimum=0.0, exclusive_minimum=True)
    lines = coerce_int("lines", lines, minimum=2)
    points_per_line = coerce_int("points_per_line", points_per_line, minimum=2)
    first, second = (coerce_int("dims", dim, minimum=0, maximum=latent_dim - 1) for dim in dims)
    if first == second:
        raise ConfigError("dims", f"expected two different latent dimensions, got {tuple(dims)}")
    base = torch.zeros(latent_dim) if base is None else torch.as_tensor(base, dtype=torch.float32)
    if base.shape != (latent_dim,):
        raise ValueError(f"base must have shape ({latent_dim},), got {tuple(base.shape)}")

    across = torch.linspace(-span, span, lines)  # fixed value of each line
    along = torch.linspace(-span, span, points_per_line)  # positions on a line
    grid = base.repeat(2, lines, points_per_line, 1)
    grid[0, :, :, first] = along.expand(lines, -1)
    grid[0, :, :, second] = across[:, None].expand(-1, points_per_line)
    grid[1, :, :, second] = along.expand(lines, -1)
    grid[1, :, :, first] = across[:, None].expand(-1, points_per_line)
    return grid


def generator_manifold(generator: torch.nn.Module, z_grid: torch.Tensor) -> np.ndarray:
    """Map latent grid lines through the generator and return (..., output_dim) float64.

    ``z_grid`` has shape (..., latent_dim), typically from :func:`latent_grid`.
    The result keeps the leading shape, so ``result[family, line]`` is one
    warped grid line to draw as a polyline in data space.
    """
    z_grid = torch.as_tensor(z_grid)
    latents = z_grid.reshape(-1, z_grid.shape[-1]).to(_module_dtype(generator))
    outputs = _evaluate_in_batches(generator, latents)
    return outputs.reshape(*z_grid.shape[:-1], -1).double().numpy()


def _evaluate_in_batches(module: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Run ``module`` in eval mode without gradients on batches of ``inputs`` and return CPU (N, K)."""
    device = module_device(module)
    inputs = inputs.to(dtype=_module_dtype(module))
    outputs = []
    with eval_mode(module), torch.no_grad():
        for start in range(0, len(inputs), EVAL_BATCH_SIZE):
            batch = inputs[start : start + EVAL_BATCH_SIZE].to(device)
            outputs.append(module(batch).reshape(len(batch), -1).cpu())
    return torch.cat(outputs)


def _module_dtype(module: torch.nn.Module) -> torch.dtype:
    for tensor in module.parameters():
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.get_default_dtype()


def _resolve_loss(loss: str | Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    if callable(loss):
        return loss
    return GENERATOR_LOSSES[coerce_choice("loss", loss, GENERATOR_LOSSES)]


def _check_range(field: str, limits: Sequence[float]) -> tuple[float, float]:
    if len(limits) != 2:
        raise ConfigError(field, f"expected (low, high), got {tuple(limits)}")
    low, high = (coerce_float(field, value) for value in limits)
    if low >= high:
        raise ConfigError(field, f"low must be below high, got ({low:g}, {high:g})")
    return low, high
