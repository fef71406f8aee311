"""Inception-v3 as used for FID, with the TensorFlow 2015-12-05 weights.

The network follows torchvision's Inception-v3 with the changes that make it
reproduce TensorFlow's FID graph, as pytorch-fid 0.3 ports it:

* the average pools inside the Mixed_5*, Mixed_6b-e and Mixed_7b blocks ignore
  the zero padding (``count_include_pad=False``), as TensorFlow's do;
* the pool branch of the last block, Mixed_7c, takes a 3x3 max pool where the
  paper has an average pool (the 2015 graph has a max pool there).

Module names match the ported weight file
(``pt_inception-2015-12-05-6726825d.pth``), so its state dict loads directly.
The file also contains the 1008-way classifier ``fc``, which FID does not use.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

INPUT_SIZE = 299
FEATURE_DIM = 2048
# Keys of the weight file that this feature network does not have.
CLASSIFIER_KEYS = ("fc.weight", "fc.bias")


class ConvBN(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3, TensorFlow's) and ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)  # in place, as the reference: no new tensor per layer


def _avg_pool_same(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow's SAME average pool divides by the number of real pixels.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class MixedA(nn.Module):
    """35x35 block (Mixed_5b, 5c, 5d): 1x1, 5x5, double 3x3 and pool branches."""

    def __init__(self, in_channels: int, pool_channels: int):
        super().__init__()
        self.branch1x1 = ConvBN(in_channels, 64, 1)
        self.branch5x5_1 = ConvBN(in_channels, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(in_channels, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(in_channels, pool_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wide = self.branch5x5_2(self.branch5x5_1(x))
        double = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        pooled = self.branch_pool(_avg_pool_same(x))
        return torch.cat([self.branch1x1(x), wide, double, pooled], dim=1)


class ReductionB(nn.Module):
    """35x35 to 17x17 reduction (Mixed_6a)."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3 = ConvBN(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(in_channels, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        pooled = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([self.branch3x3(x), double, pooled], dim=1)


class MixedC(nn.Module):
    """17x17 block (Mixed_6b to 6e) with factorised 1x7 / 7x1 convolutions."""

    def __init__(self, in_channels: int, mid_channels: int):
        super().__init__()
        c = mid_channels
        self.branch1x1 = ConvBN(in_channels, 192, 1)
        self.branch7x7_1 = ConvBN(in_channels, c, 1)
        self.branch7x7_2 = ConvBN(c, c, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBN(c, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = ConvBN(in_channels, c, 1)
        self.branch7x7dbl_2 = ConvBN(c, c, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBN(c, c, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBN(c, c, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBN(c, 192, (1, 7), padding=(0, 3))
        self.branch_pool = ConvBN(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        double = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                      self.branch7x7dbl_4, self.branch7x7dbl_5):
            double = layer(double)
        pooled = self.branch_pool(_avg_pool_same(x))
        return torch.cat([self.branch1x1(x), single, double, pooled], dim=1)


class ReductionD(nn.Module):
    """17x17 to 8x8 reduction (Mixed_7a)."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3_1 = ConvBN(in_channels, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(in_channels, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        short = self.branch3x3_2(self.branch3x3_1(x))
        long = x
        for layer in (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            long = layer(long)
        pooled = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([short, long, pooled], dim=1)


class MixedE(nn.Module):
    """8x8 block (Mixed_7b, 7c) whose 3x3 branches split into 1x3 and 3x1.

    ``max_pool`` selects the 3x3 max pool of the 2015 graph's last block in
    place of the padding-excluding average pool of Mixed_7b.
    """

    def __init__(self, in_channels: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = ConvBN(in_channels, 320, 1)
        self.branch3x3_1 = ConvBN(in_channels, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(in_channels, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = self.branch3x3_1(x)
        single = torch.cat([self.branch3x3_2a(single), self.branch3x3_2b(single)], dim=1)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        double = torch.cat([self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double)], dim=1)
        if self.max_pool:
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pooled = _avg_pool_same(x)
        return torch.cat([self.branch1x1(x), single, double, self.branch_pool(pooled)], dim=1)


class FIDInceptionV3(nn.Module):
    """Inception-v3 trunk up to the 2048-d global average pool ("pool3").

    ``forward`` takes (N, 3, 299, 299) float images in [-1, 1]; use
    :func:`prepare_images` to get there from uint8 or smaller images.
    """

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b = MixedA(192, pool_channels=32)
        self.Mixed_5c = MixedA(256, pool_channels=64)
        self.Mixed_5d = MixedA(288, pool_channels=64)
        self.Mixed_6a = ReductionB(288)
        self.Mixed_6b = MixedC(768, mid_channels=128)
        self.Mixed_6c = MixedC(768, mid_channels=160)
        self.Mixed_6d = MixedC(768, mid_channels=160)
        self.Mixed_6e = MixedC(768, mid_channels=192)
        self.Mixed_7a = ReductionD(768)
        self.Mixed_7b = MixedE(1280, max_pool=False)
        self.Mixed_7c = MixedE(2048, max_pool=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # (N, 64, 147, 147)
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))  # (N, 192, 71, 71)
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                      self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b,
                      self.Mixed_7c):
            x = block(x)  # ends at (N, 2048, 8, 8)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


def prepare_images(images: torch.Tensor) -> torch.Tensor:
    """Convert a batch to the network's input: 3 channels, 299x299, [-1, 1].

    ``images`` is (N, C, H, W) with C = 1 or 3, either uint8 in [0, 255] (as
    stored on disk) or float in [-1, 1] (as a generator outputs). The value
    range is converted once, grayscale is repeated to 3 channels, and the
    image is resized with bilinear interpolation, ``align_corners=False`` and
    no antialiasing, as pytorch-fid 0.3 does. Bilinear weights sum to 1, so
    resizing before or after the affine range change gives the same result.
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images of shape (N, 1 or 3, H, W), got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        x = images.float() * (2.0 / 255.0) - 1.0
    elif images.is_floating_point():
        x = images.float()
    else:
        raise ValueError(f"expected uint8 or float images, got {images.dtype}")
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    return x


def load_fid_inception(weights_file: str | Path, device: str | torch.device = "cpu") -> FIDInceptionV3:
    """Build :class:`FIDInceptionV3`, load ``weights_file`` into it, return it in eval mode.

    The file must be a state dict in the pytorch-fid key layout. Its ``fc``
    classifier is ignored, and any other missing or extra key raises
    ``RuntimeError``.
    """
    state = torch.load(Path(weights_file), map_location="cpu", weights_only=True)
    state = {key: value for key, value in state.items() if key not in CLASSIFIER_KEYS}
    network = FIDInceptionV3()
    network.load_state_dict(state, strict=True)
    network.requires_grad_(False)
    logger.debug("loaded Inception weights from %s", weights_file)
    return network.to(device).eval()
