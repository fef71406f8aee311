"""GAN losses on raw discriminator scores.

Each loss takes the discriminator's raw outputs ``real`` = D(x) and ``fake`` =
D(G(z)), shape (N,), and returns a scalar. The BCE loss works on logits
(``binary_cross_entropy_with_logits``), so a confident discriminator gives a
finite loss where ``log(sigmoid(x))`` would underflow.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bce_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    ones = torch.ones_like(real)
    zeros = torch.zeros_like(fake)
    return F.binary_cross_entropy_with_logits(real, ones) + F.binary_cross_entropy_with_logits(fake, zeros)


def bce_g(fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: -log D(G(z)), as Goodfellow et al. (2014) recommend."""
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


def wasserstein_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return fake.mean() - real.mean()


def wasserstein_g(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


def hinge_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def lsgan_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Least-squares loss with targets 1 (real) and 0 (fake), Mao et al. (2017)."""
    return 0.5 * ((real - 1.0) ** 2).mean() + 0.5 * (fake**2).mean()


def lsgan_g(fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((fake - 1.0) ** 2).mean()


# loss name -> (discriminator loss, generator loss). The hinge generator loss is -E[D(G(z))].
LOSS_FUNCTIONS = {
    "bce": (bce_d, bce_g),
    "wasserstein": (wasserstein_d, wasserstein_g),
    "hinge": (hinge_d, wasserstein_g),
    "lsgan": (lsgan_d, lsgan_g),
}

# Losses whose D output reads as a probability (after a sigmoid for bce).
PROBABILITY_LOSSES = ("bce",)
