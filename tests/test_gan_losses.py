"""RaGAN (Eq. 7), approximated R1 (Eq. 8) and the assembled objectives (Eqs. 9, 11) against hand computations."""

import math

import pytest
import torch

from strsr.losses.gan import approx_r1, r1_noise, ragan_d_loss, ragan_g_loss
from strsr.losses.objectives import LossWeights, discriminator_loss, generator_loss


def _log_sigmoid(x):
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def _ragan_by_hand(real, fake, generator):
    """Plain-Python Eq. 7 for one head of shape (B, P): the batch mean is taken per position p."""
    batch, positions = len(real), len(real[0])
    mean_real = [sum(real[b][p] for b in range(batch)) / batch for p in range(positions)]
    mean_fake = [sum(fake[b][p] for b in range(batch)) / batch for p in range(positions)]
    a = b_ = 0.0
    for b in range(batch):
        for p in range(positions):
            r_real = real[b][p] - mean_fake[p]
            r_fake = fake[b][p] - mean_real[p]
            if generator:  # -log g(fake, real) - log(1 - g(real, fake))
                a += -_log_sigmoid(r_fake)
                b_ += -_log_sigmoid(-r_real)
            else:  # -log g(real, fake) - log(1 - g(fake, real))
                a += -_log_sigmoid(r_real)
                b_ += -_log_sigmoid(-r_fake)
    n = batch * positions
    return 0.5 * (a / n + b_ / n)


@pytest.mark.parametrize("batch", [1, 3])
def test_ragan_single_head_matches_the_formula(batch):
    gen = torch.Generator().manual_seed(batch)
    real = torch.randn(batch, 1, 2, 3, generator=gen) * 2
    fake = torch.randn(batch, 1, 2, 3, generator=gen) * 2
    r, f = real.flatten(1).tolist(), fake.flatten(1).tolist()
    assert ragan_d_loss(real, fake).item() == pytest.approx(_ragan_by_hand(r, f, generator=False), rel=1e-6)
    assert ragan_g_loss(real, fake).item() == pytest.approx(_ragan_by_hand(r, f, generator=True), rel=1e-6)


@pytest.mark.parametrize("batch", [1, 3])
def test_ragan_sums_over_heads(batch):
    gen = torch.Generator().manual_seed(10 + batch)
    shapes = [(batch, 1, 4, 4), (batch, 1, 2, 2), (batch, 1)]
    real = [torch.randn(s, generator=gen) for s in shapes]
    fake = [torch.randn(s, generator=gen) for s in shapes]
    for fn, is_g in ((ragan_d_loss, False), (ragan_g_loss, True)):
        expected = sum(_ragan_by_hand(r.flatten(1).tolist(), f.flatten(1).tolist(), is_g) for r, f in zip(real, fake))
        assert fn(real, fake).item() == pytest.approx(expected, rel=1e-6)


def test_ragan_is_stable_for_huge_logits():
    real, fake = torch.full((2, 1), 200.0), torch.full((2, 1), -200.0)
    assert torch.isfinite(ragan_d_loss(real, fake)) and ragan_d_loss(real, fake).item() < 1e-6
    assert ragan_g_loss(real, fake).item() == pytest.approx(400.0, rel=1e-6)  # 1/2 (400 + 400)


def test_generator_loss_detaches_the_real_logits():
    real = torch.randn(3, 1, 4, 4, requires_grad=True)
    fake = torch.randn(3, 1, 4, 4, requires_grad=True)
    ragan_g_loss(real, fake).backward()
    assert real.grad is None and fake.grad is not None and fake.grad.abs().sum() > 0


def test_approx_r1_with_known_tensors():
    clean = [torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[3.0], [1.0]])]
    noisy = [torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[1.0], [1.0]])]
    # sample 0: mean((0, 2)^2) + (2)^2 = 2 + 4 = 6; sample 1: mean((1, 1)^2) + 0 = 1 -> mean 3.5
    assert approx_r1(clean, noisy).item() == pytest.approx(3.5)
    c = torch.tensor([[2.0]], requires_grad=True)
    n = torch.tensor([[1.0]], requires_grad=True)
    approx_r1(c, n).backward()
    assert c.grad.item() == pytest.approx(2.0) and n.grad.item() == pytest.approx(-2.0)  # through both terms


def test_r1_noise_kinds():
    x = torch.zeros(4, 3, 32, 32)
    uniform = r1_noise(x, 0.005, generator=torch.Generator().manual_seed(0))
    assert uniform.min() >= 0 and uniform.max() < 0.005 and uniform.mean().item() == pytest.approx(0.0025, rel=0.05)
    gaussian = r1_noise(x, 0.005, "gaussian", generator=torch.Generator().manual_seed(0))
    assert gaussian.std().item() == pytest.approx(0.005, rel=0.05) and abs(gaussian.mean().item()) < 2e-4
    with pytest.raises(ValueError, match="unknown R1 noise kind"):
        r1_noise(x, kind="laplace")


def test_generator_objective_weights_and_parts():
    gen = torch.Generator().manual_seed(0)
    pred = (torch.rand(2, 3, 8, 8, generator=gen) * 2 - 1).requires_grad_()
    target = torch.rand(2, 3, 8, 8, generator=gen) * 2 - 1
    real, fake = torch.randn(2, 1, 2, 2, generator=gen), torch.randn(2, 1, 2, 2, generator=gen)

    def lpips(a, b):
        return (a - b).pow(2).mean()  # a stand-in perceptual term with a known value

    def fdl(a, b):
        return (a - b).abs().sum()

    total, parts = generator_loss(pred, target, real, fake, lpips=lpips, fdl=fdl, weights=LossWeights.for_stage(2))
    l1 = (pred - target).abs().mean()
    expected = l1 + 3 * lpips(pred, target) + 0.1 * ragan_g_loss(real, fake) + 0.002 * fdl(pred, target)
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(parts) == {"l1", "lpips", "gan", "fdl", "total"}
    _, stage1 = generator_loss(pred, target, real, fake, lpips=lpips, weights=LossWeights.for_stage(1))
    assert "fdl" not in stage1  # not computed at lambda_fdl = 0
    with pytest.raises(ValueError, match="lambda_fdl > 0 needs a fdl loss module"):
        generator_loss(pred, target, real, fake, lpips=lpips, weights=LossWeights.for_stage(2))


def test_discriminator_objective_is_ragan_plus_ten_r1():
    gen = torch.Generator().manual_seed(1)
    real, fake, noisy = (torch.randn(3, 1, 4, 4, generator=gen) for _ in range(3))
    total, parts = discriminator_loss(real, fake, noisy)
    expected = ragan_d_loss(real, fake) + 10 * approx_r1(real, noisy)
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(parts) == {"ragan_d", "r1", "total"}
