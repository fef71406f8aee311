"""Generator and discriminator networks: MLPs for 2D data, DCGAN-style for images.

Generators map (N, z_dim) standard normal noise to points (N, 2) or images
(N, C, S, S) in [-1, 1] (tanh output). Discriminators return raw scores of
shape (N,): logits for the probability losses, critic values for Wasserstein.
"""

from __future__ import annotations

import torch
from torch import nn

DEFAULT_POINT_WIDTH = 128
DEFAULT_IMAGE_WIDTH = 32
DEFAULT_POINT_Z_DIM = 2
DEFAULT_IMAGE_Z_DIM = 64


def resolve_d_norm(d_norm: str, constraint: str, is_image: bool) -> str:
    """Return the discriminator normalization that ``auto`` stands for.

    BatchNorm couples the samples of a batch, which breaks the per-sample
    gradient penalty (the WGAN-GP paper uses LayerNorm), and spectral
    normalization is meant to be the only normalization of an SNGAN critic.
    """
    if d_norm != "auto":
        return d_norm
    if constraint == "gp":
        return "layer" if is_image else "none"
    if constraint == "sn" or not is_image:
        return "none"
    return "batch"


def _norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        # One group normalizes over (C, H, W) of each sample: LayerNorm with a per-channel affine.
        return nn.GroupNorm(1, channels)
    return nn.Identity()


def _norm_1d(kind: str, features: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm1d(features)
    if kind == "layer":
        return nn.LayerNorm(features)
    return nn.Identity()


class MLPGenerator(nn.Module):
    def __init__(self, z_dim: int, width: int, out_dim: int = 2):
        super().__init__()
        self.z_dim = z_dim
        self.net = nn.Sequential(
            nn.Linear(z_dim, width), nn.ReLU(),
            nn.Linear(width, width), nn.ReLU(),
            nn.Linear(width, width), nn.ReLU(),
            nn.Linear(width, out_dim),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class MLPDiscriminator(nn.Module):
    def __init__(self, width: int, norm: str = "none", in_dim: int = 2):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, width), _norm_1d(norm, width), nn.ReLU(),
            nn.Linear(width, width), _norm_1d(norm, width), nn.ReLU(),
            nn.Linear(width, width), _norm_1d(norm, width), nn.ReLU(),
            nn.Linear(width, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1)


def _up(c_in: int, c_out: int) -> list[nn.Module]:
    """Double the spatial size: transposed convolution, BatchNorm, ReLU."""
    return [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]


def _down(c_in: int, c_out: int, norm: str, kernel: int = 4, stride: int = 2, padding: int = 1) -> list[nn.Module]:
    """Halve the spatial size: convolution, normalization, LeakyReLU(0.2)."""
    return [nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=norm == "none"),
            _norm_layer(norm, c_out), nn.LeakyReLU(0.2, inplace=True)]


class DCGANGenerator(nn.Module):
    """Transposed-convolution generator for 28x28, 32x32 and 64x64 images."""

    def __init__(self, z_dim: int, width: int, channels: int, image_size: int):
        super().__init__()
        self.z_dim = z_dim
        w = width
        if image_size == 28:
            layers = [nn.ConvTranspose2d(z_dim, 4 * w, 7, 1, 0, bias=False), nn.BatchNorm2d(4 * w), nn.ReLU(True),  # 7x7
                      *_up(4 * w, 2 * w),                                                                           # 14x14
                      nn.ConvTranspose2d(2 * w, channels, 4, 2, 1)]                                                 # 28x28
        elif image_size == 32:
            layers = [nn.ConvTranspose2d(z_dim, 4 * w, 4, 1, 0, bias=False), nn.BatchNorm2d(4 * w), nn.ReLU(True),  # 4x4
                      *_up(4 * w, 2 * w), *_up(2 * w, w),                                                           # 16x16
                      nn.ConvTranspose2d(w, channels, 4, 2, 1)]                                                     # 32x32
        elif image_size == 64:
            layers = [nn.ConvTranspose2d(z_dim, 8 * w, 4, 1, 0, bias=False), nn.BatchNorm2d(8 * w), nn.ReLU(True),  # 4x4
                      *_up(8 * w, 4 * w), *_up(4 * w, 2 * w), *_up(2 * w, w),                                       # 32x32
                      nn.ConvTranspose2d(w, channels, 4, 2, 1)]                                                     # 64x64
        else:
            raise ValueError(f"image_size must be 28, 32 or 64, got {image_size}")
        self.net = nn.Sequential(*layers, nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], -1, 1, 1))


class DCGANDiscriminator(nn.Module):
    """Strided-convolution discriminator mirroring :class:`DCGANGenerator`."""

    def __init__(self, width: int, channels: int, image_size: int, norm: str):
        super().__init__()
        w = width
        # The first layer has no normalization, as in DCGAN.
        first = [nn.Conv2d(channels, w, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        if image_size == 28:
            layers = [*first, *_down(w, 2 * w, norm), *_down(2 * w, 4 * w, norm, 3, 2, 1),  # 14, 7, 4
                      nn.Conv2d(4 * w, 1, 4, 1, 0)]
        elif image_size == 32:
            layers = [*first, *_down(w, 2 * w, norm), *_down(2 * w, 4 * w, norm),          # 16, 8, 4
                      nn.Conv2d(4 * w, 1, 4, 1, 0)]
        elif image_size == 64:
            layers = [*first, *_down(w, 2 * w, norm), *_down(2 * w, 4 * w, norm),          # 32, 16, 8
                      *_down(4 * w, 8 * w, norm), nn.Conv2d(8 * w, 1, 4, 1, 0)]            # 4, 1
        else:
            raise ValueError(f"image_size must be 28, 32 or 64, got {image_size}")
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1)


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: N(0, 0.02) weights, BatchNorm scales N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def build_models(shape: tuple[int, ...], z_dim: int, width: int, d_norm: str) -> tuple[nn.Module, nn.Module]:
    """Build (generator, discriminator) for data of ``shape``: (2,) or (C, S, S)."""
    if len(shape) == 1:
        generator = MLPGenerator(z_dim, width, shape[0])
        discriminator = MLPDiscriminator(width, d_norm, shape[0])
        # The default PyTorch init suits small MLPs better than N(0, 0.02).
        return generator, discriminator
    channels, size, _ = shape
    generator = DCGANGenerator(z_dim, width, channels, size)
    discriminator = DCGANDiscriminator(width, channels, size, d_norm)
    init_weights(generator)
    init_weights(discriminator)
    return generator, discriminator
