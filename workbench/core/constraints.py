"""Lipschitz constraints on the discriminator: clipping, gradient penalty, spectral norm."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrizations, parametrize


@torch.no_grad()
def clip_parameters(discriminator: nn.Module, clip_value: float) -> None:
    """Clamp every parameter of the discriminator (weights, biases and
    normalization scales and shifts) to [-clip_value, clip_value], as the WGAN
    reference implementation does after each critic update."""
    for parameter in discriminator.parameters():
        parameter.clamp_(-clip_value, clip_value)


def gradient_penalty(discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     eps: torch.Tensor | None = None) -> torch.Tensor:
    """Return mean over the batch of (||grad_x D(x_hat)||_2 - 1)^2, unweighted.

    x_hat = eps * real + (1 - eps) * fake with one eps ~ U[0, 1] per sample; the
    norm runs over all non-batch dimensions of that sample. The gradient is taken
    out of place with ``create_graph=True`` so one ordinary backward of the total
    loss trains through it. A tiny constant inside the square root keeps the
    penalty's own gradient finite where the input gradient is exactly zero.
    ``eps``, of shape (N, 1, ..., 1), is drawn from torch's global generator
    when not given. Distributed training passes each process its rows of one
    draw that all processes share.
    """
    eps_shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    if eps is None:
        eps = torch.rand(eps_shape, device=real.device, dtype=real.dtype)
    x_hat = (eps * real.detach() + (1.0 - eps) * fake.detach()).requires_grad_(True)
    scores = discriminator(x_hat)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    norms = torch.sqrt(grad.flatten(1).pow(2).sum(dim=1) + 1e-12)
    return ((norms - 1.0) ** 2).mean()


SN_LAYER_TYPES = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)


def apply_spectral_norm(discriminator: nn.Module) -> int:
    """Spectrally normalize every linear and convolution layer of the discriminator.

    Uses torch's parametrization API with one power iteration per forward pass
    in training mode; in eval mode the stored vectors are reused, so repeated
    calls return identical outputs. Returns the number of layers wrapped.
    """
    count = 0
    for module in discriminator.modules():
        if isinstance(module, SN_LAYER_TYPES) and not parametrize.is_parametrized(module, "weight"):
            parametrizations.spectral_norm(module, n_power_iterations=1)
            count += 1
    return count
