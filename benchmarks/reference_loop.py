"""A minimal PyTorch GAN loop: the trainer's maths without its bookkeeping.

:class:`MinimalLoop` builds the same networks as the trainer (``build_models``
with the same seed, widths, noise size and discriminator normalization), the
same optimizers, losses and Lipschitz constraint. It runs the same updates:
``n_critic`` discriminator steps, each on a fresh batch with the generator's
output computed without autograd, then one generator step with the
discriminator's parameters frozen. It records no metrics, computes no gradient
norms, reads nothing back from the device and writes no files. That is the
work the engine adds, so the trainer's speed divided by this loop's is the
engine overhead.

By default it is the loop a user would write: ``torch.optim.Adam`` with torch's
default kernel and tensors in the default memory format. The trainer requests
the fused Adam kernel where torch has one (the same maths in one kernel for all
parameters) and, on the CPU, keeps image models and batches channels-last, so
``fused_adam=True, channels_last=True`` gives the like-for-like reference that
isolates the bookkeeping.

The other options (memory format, bfloat16 autocast, batches converted to
float once) exist to measure what makes CPU training faster; they default to
what the trainer does.
"""

from __future__ import annotations

import contextlib
import logging

import torch

from workbench.core.config import TrainConfig
from workbench.core.constraints import apply_spectral_norm
from workbench.core.losses import LOSS_FUNCTIONS
from workbench.core.models import (DEFAULT_IMAGE_WIDTH, DEFAULT_IMAGE_Z_DIM, DEFAULT_POINT_WIDTH,
                                   DEFAULT_POINT_Z_DIM, build_models, resolve_d_norm)

logger = logging.getLogger(__name__)


def penalty(discriminator: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Return the WGAN-GP penalty mean((||grad D(x_hat)||_2 - 1)^2) on random interpolates."""
    eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), dtype=real.dtype)
    x_hat = (eps * real + (1.0 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(x_hat).sum(), x_hat, create_graph=True)
    norms = torch.sqrt(grad.flatten(1).pow(2).sum(dim=1) + 1e-12)
    return ((norms - 1.0) ** 2).mean()


class MinimalLoop:
    """Train a GAN with a plain loop on the CPU, for speed comparisons.

    Parameters
    ----------
    config
        The settings the trainer gets; its device is ignored (always the CPU).
    dataset
        An ``ImageDataset`` (uint8 images) or a ``PointMixture``.
    channels_last
        Put both networks and every image batch in channels-last memory format.
    autocast_bf16
        Run forward passes under ``torch.autocast("cpu", dtype=torch.bfloat16)``.
    float_data
        Convert the whole image set to float32 in [-1, 1] once, instead of per batch.
    fused_adam
        Build Adam with ``fused=True``, as the trainer does on the CPU.
    """

    def __init__(self, config: TrainConfig, dataset, *, channels_last: bool = False,
                 autocast_bf16: bool = False, float_data: bool = False, fused_adam: bool = False):
        self.config = config
        self.fused_adam = fused_adam
        self.dataset = dataset
        self.is_image = dataset.kind == "images"
        self.channels_last = channels_last and self.is_image
        self.autocast_bf16 = autocast_bf16
        self.z_dim = config.z_dim or (DEFAULT_IMAGE_Z_DIM if self.is_image else DEFAULT_POINT_Z_DIM)
        width = config.width or (DEFAULT_IMAGE_WIDTH if self.is_image else DEFAULT_POINT_WIDTH)
        d_norm = resolve_d_norm(config.d_norm, config.constraint, self.is_image)

        torch.manual_seed(config.seed)
        self.generator, self.discriminator = build_models(tuple(dataset.shape), self.z_dim, width, d_norm)
        if config.constraint == "sn":
            apply_spectral_norm(self.discriminator)
        if self.channels_last:
            self.generator.to(memory_format=torch.channels_last)
            self.discriminator.to(memory_format=torch.channels_last)
        self.generator.train()
        self.discriminator.train()
        self.opt_g = self._optimizer(self.generator, config.lr_g)
        self.opt_d = self._optimizer(self.discriminator, config.lr_d)
        self.d_loss, self.g_loss = LOSS_FUNCTIONS[config.loss]

        self._images = None
        if self.is_image:
            images = dataset.images
            self._images = images.float() / 127.5 - 1.0 if float_data else images
        self._batch_rng = torch.Generator().manual_seed(config.seed)
        self._order: torch.Tensor | None = None
        self._position = 0

    def _optimizer(self, module: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
        if self.config.optimizer == "adam":
            return torch.optim.Adam(module.parameters(), lr=lr, betas=tuple(self.config.betas),
                                    fused=self.fused_adam or None)
        return torch.optim.RMSprop(module.parameters(), lr=lr)

    def _real_batch(self) -> torch.Tensor:
        size = self.config.batch_size
        if not self.is_image:
            return self.dataset.sample(size, self._batch_rng)
        if self._order is None or self._position + size > len(self._images):
            self._order = torch.randperm(len(self._images), generator=self._batch_rng)
            self._position = 0
        batch = self._images[self._order[self._position:self._position + size]]
        self._position += size
        if batch.dtype == torch.uint8:
            batch = batch.float() / 127.5 - 1.0
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch

    def _autocast(self):
        if self.autocast_bf16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _discriminator_update(self) -> None:
        real = self._real_batch()
        with torch.no_grad(), self._autocast():
            fake = self.generator(torch.randn(real.shape[0], self.z_dim))
        with self._autocast():
            loss = self.d_loss(self.discriminator(real), self.discriminator(fake))
            if self.config.constraint == "gp":
                loss = loss + self.config.gp_weight * penalty(self.discriminator, real, fake.float())
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        if self.config.constraint == "clip":
            with torch.no_grad():
                for parameter in self.discriminator.parameters():
                    parameter.clamp_(-self.config.clip_value, self.config.clip_value)

    def _generator_update(self) -> None:
        self.discriminator.requires_grad_(False)
        with self._autocast():
            loss = self.g_loss(self.discriminator(self.generator(torch.randn(self.config.batch_size, self.z_dim))))
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        self.discriminator.requires_grad_(True)

    def step(self) -> None:
        """Run one generator update preceded by ``n_critic`` discriminator updates."""
        for _ in range(self.config.n_critic):
            self._discriminator_update()
        self._generator_update()

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.step()
