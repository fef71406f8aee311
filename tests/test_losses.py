"""Losses against values worked out by hand."""

import math

import pytest
import torch

from workbench.core import losses


def test_bce_at_zero_logits_is_log2_per_term():
    zeros = torch.zeros(8)
    assert losses.bce_d(zeros, zeros).item() == pytest.approx(2 * math.log(2), rel=1e-6)
    assert losses.bce_g(zeros).item() == pytest.approx(math.log(2), rel=1e-6)


def test_bce_confident_real_is_finite_near_zero():
    real = torch.full((4,), 30.0)
    fake = torch.full((4,), -30.0)
    loss = losses.bce_d(real, fake).item()
    assert math.isfinite(loss)
    # log(1 + e^-30) ~ 9.4e-14 per term.
    assert loss == pytest.approx(2 * math.log1p(math.exp(-30.0)), rel=1e-3)
    assert loss < 1e-12


def test_bce_generator_saturated_fake_is_large_and_finite():
    # A fake scored at logit -100: -log(sigmoid(-100)) = 100 (non-saturating loss keeps a gradient).
    fake = torch.full((3,), -100.0, requires_grad=True)
    loss = losses.bce_g(fake)
    loss.backward()
    assert loss.item() == pytest.approx(100.0, rel=1e-6)
    assert fake.grad.abs().min().item() == pytest.approx(1 / 3, rel=1e-6)


def test_wasserstein_values():
    real = torch.tensor([1.0, 3.0])
    fake = torch.tensor([-2.0, 0.0])
    assert losses.wasserstein_d(real, fake).item() == pytest.approx(-1.0 - 2.0)
    assert losses.wasserstein_g(fake).item() == pytest.approx(1.0)


def test_hinge_values():
    real = torch.tensor([2.0, 0.5])   # relu(1 - x): 0, 0.5
    fake = torch.tensor([-2.0, 0.0])  # relu(1 + x): 0, 1
    assert losses.hinge_d(real, fake).item() == pytest.approx(0.25 + 0.5)
    g_loss = losses.LOSS_FUNCTIONS["hinge"][1]
    assert g_loss(fake).item() == pytest.approx(1.0)


def test_lsgan_values():
    real = torch.tensor([1.0, 0.0])
    fake = torch.tensor([0.0, 2.0])
    # 0.5 * mean((real-1)^2) + 0.5 * mean(fake^2) = 0.5*0.5 + 0.5*2
    assert losses.lsgan_d(real, fake).item() == pytest.approx(1.25)
    # 0.5 * mean((fake-1)^2) = 0.5 * (1 + 1) / 2
    assert losses.lsgan_g(fake).item() == pytest.approx(0.5)
