"""Lipschitz constraints: clipping bounds, the gradient penalty by hand, spectral norm."""

import pytest
import torch
from torch import nn

from workbench.core.constraints import apply_spectral_norm, clip_parameters, gradient_penalty
from workbench.core.models import DCGANDiscriminator, MLPDiscriminator


class LinearCritic(nn.Module):
    """D(x) = w . x over all non-batch dimensions."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, x):
        return (x.flatten(1) * self.w.flatten()).sum(dim=1)


@pytest.mark.parametrize("shape", [(2,), (1, 4, 4), (3, 8, 8)])
def test_gp_linear_critic_is_norm_minus_one_squared(shape):
    torch.manual_seed(0)
    w = torch.randn(shape) * 0.7
    critic = LinearCritic(w)
    real = torch.randn(16, *shape)
    fake = torch.randn(16, *shape)
    expected = (w.norm().item() - 1.0) ** 2
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(expected, rel=1e-5)


def test_gp_finite_where_gradient_is_zero():
    critic = LinearCritic(torch.zeros(2))
    real, fake = torch.randn(4, 2), torch.randn(4, 2)
    penalty = gradient_penalty(critic, real, fake)
    penalty.backward()
    assert penalty.item() == pytest.approx(1.0, abs=1e-5)
    assert torch.isfinite(critic.w.grad).all()


def test_gp_uses_one_weight_per_sample():
    # A critic whose gradient depends on x: D(x) = 0.5 * ||x||^2, grad = x_hat.
    class Quadratic(nn.Module):
        def forward(self, x):
            return 0.5 * x.flatten(1).pow(2).sum(dim=1)

    torch.manual_seed(3)
    real = torch.randn(5, 1, 2, 2)
    fake = torch.randn(5, 1, 2, 2)
    torch.manual_seed(11)
    penalty = gradient_penalty(Quadratic(), real, fake).item()
    torch.manual_seed(11)
    eps = torch.rand(5, 1, 1, 1)
    x_hat = eps * real + (1 - eps) * fake
    expected = ((x_hat.flatten(1).norm(dim=1) - 1) ** 2).mean().item()
    assert penalty == pytest.approx(expected, rel=1e-5)


def test_clip_bounds_every_parameter():
    torch.manual_seed(0)
    critic = DCGANDiscriminator(width=8, channels=1, image_size=28, norm="batch")
    with torch.no_grad():
        for p in critic.parameters():
            p.mul_(100)
    clip_parameters(critic, 0.01)
    for name, p in critic.named_parameters():
        assert p.abs().max().item() <= 0.01, name


def _spectral_norms(module):
    norms = []
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            weight = m.weight.detach()  # the normalized weight
            norms.append(torch.linalg.matrix_norm(weight.flatten(1), ord=2).item())
    return norms


def test_sn_layers_have_unit_spectral_norm():
    torch.manual_seed(0)
    critic = MLPDiscriminator(width=32)
    assert apply_spectral_norm(critic) == 4
    x = torch.randn(8, 2)
    critic.train()
    for _ in range(200):  # power iterations converge
        critic(x)
    critic.eval()
    for norm in _spectral_norms(critic):
        assert norm == pytest.approx(1.0, abs=1e-3)


def test_sn_conv_layers_wrapped():
    critic = DCGANDiscriminator(width=8, channels=3, image_size=32, norm="none")
    assert apply_spectral_norm(critic) == 4
    keys = list(critic.state_dict())
    assert any("parametrizations.weight.original" in k for k in keys)


def test_sn_eval_mode_is_deterministic():
    torch.manual_seed(0)
    critic = DCGANDiscriminator(width=8, channels=1, image_size=28, norm="none")
    apply_spectral_norm(critic)
    x = torch.randn(4, 1, 28, 28)
    critic.eval()
    first = critic(x)
    second = critic(x)
    assert torch.equal(first, second)
    # In training mode each forward runs a power iteration, so u changes.
    critic.train()
    u_before = critic.net[0].parametrizations.weight[0]._u.clone()
    critic(x)
    assert not torch.equal(u_before, critic.net[0].parametrizations.weight[0]._u)
