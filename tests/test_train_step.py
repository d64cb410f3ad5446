"""One real trainer step (G then D) on fixed batches, every loss term recomputed by hand from the tensors the step
used; the spectral-norm calibration; the posterior sample; and the loss going down on a fixed batch.

The golden test runs the paper's stage-2 recipe with the model swapped for the tiny preset and a tiny
discriminator; each of these edits to the trainer makes it fail (checked by hand when it was written): real and fake
logits swapped in the generator's or in the discriminator's loss call, zero R1 noise, the generator fed [0, 1]
instead of [-1, 1] images, FDL computed on the other input range.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data

from strsr.degradation.realesrgan import DegradedPair
from strsr.losses.fdl import FrequencyDistributionLoss
from strsr.train.config import load_config
from strsr.train.trainer import Trainer

SIZE = 80  # the fixed batches' side: FDL's minimum (16 x its 5 px projections); the crop sampler is bypassed


def _paper_recipe_on_tiny(name: str, tmp_path, **extra) -> object:
    """The shipped paper recipe, model swapped for the tiny preset (no VLM) and the tiny discriminator."""
    overrides = {
        "model.preset": '"tiny"', "model.conditioning": '"none"', "model.lora_rank": "4",
        "run.gradient_checkpointing": "false", "data.skimage_images": '["astronaut"]',
        "data.resolution": "64", "discriminator.model": '"tiny"', "loss.fdl_num_proj": "8",
        "optim.batch_size": "2", "model.device": '"cpu"', "run.output_dir": f'"{tmp_path / "run"}"', **extra,
    }  # fmt: skip
    config = load_config(name, [f"{k}={v}" for k, v in overrides.items()])
    config.run.resume_from = None
    return config


def _photo_pair(top: int, left: int, seed: int) -> DegradedPair:
    """Two 80 px photo crops as HR, and an LR that strays outside [0, 1] like a final sinc filter's output."""
    hr = torch.stack([
        torch.from_numpy(np.ascontiguousarray(getattr(data, name)()[top : top + SIZE, left : left + SIZE]))
        .permute(2, 0, 1).float() / 255
        for name in ("astronaut", "coffee")
    ])  # fmt: skip
    lr = F.interpolate(hr, scale_factor=0.25, mode="area")
    lr = lr + 0.04 * torch.randn(lr.shape, generator=torch.Generator().manual_seed(seed))
    return DegradedPair(lr_raw=lr, hr=hr)


def _softplus_bce(logits: torch.Tensor, label: int) -> torch.Tensor:
    """BCE with logits written out: -log sigmoid(x) for label 1, -log(1 - sigmoid(x)) for label 0, averaged."""
    return F.softplus(-logits).mean() if label == 1 else F.softplus(logits).mean()


def _ragan_g(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Eq. 7, generator side, per head (batch means as the official): fake should look more real than real."""
    total = 0
    for r, f in zip(real, fake):
        r_real, r_fake = r - f.mean(0, keepdim=True), f - r.mean(0, keepdim=True)
        total = total + 0.5 * (_softplus_bce(r_fake, 1) + _softplus_bce(r_real, 0))
    return total


def _ragan_d(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Eq. 7, discriminator side: real should look more real than fake."""
    total = 0
    for r, f in zip(real, fake):
        r_real, r_fake = r - f.mean(0, keepdim=True), f - r.mean(0, keepdim=True)
        total = total + 0.5 * (_softplus_bce(r_real, 1) + _softplus_bce(r_fake, 0))
    return total


def _approx_r1(clean: list[torch.Tensor], noisy: list[torch.Tensor]) -> torch.Tensor:
    """Eq. 8 as the official: per sample, sum over heads of the mean squared logit change; then the batch mean."""
    return sum((c - n).pow(2).flatten(1).mean(1) for c, n in zip(clean, noisy)).mean()


def _expected_input(lr_raw: torch.Tensor) -> torch.Tensor:
    """The official generator input: bicubic to the GT size, clamp and round to 8 bits, then to [-1, 1]."""
    up = F.interpolate(lr_raw, size=(SIZE, SIZE), mode="bicubic", align_corners=False)
    return (torch.clamp((up * 255).round(), 0, 255) / 255) * 2 - 1


def _power_iteration(weight: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    w = weight.flatten(1)
    v = w.T @ u
    v = v / v.norm()
    u = w @ v
    return u / u.norm()


class _Recorder:
    """Forward hooks that keep (inputs, output, training) of every call of a module."""

    def __init__(self, module: torch.nn.Module):
        self.calls: list[tuple[tuple, object, bool]] = []
        self.handle = module.register_forward_hook(self._record)

    def _record(self, module, args, out):
        inputs = tuple(a.detach().clone() if torch.is_tensor(a) else a for a in args)
        self.calls.append((inputs, _detach(out), module.training))


def _detach(out):
    return [o.detach().clone() for o in out] if isinstance(out, list) else out.detach().clone()


def test_golden_step_recomputes_every_loss_term(tmp_path, monkeypatch):
    """Stage 2 (every term: L1, LPIPS, RaGAN, FDL; RaGAN_D, approxR1), the recipe's weights, ranges and noise."""
    config = _paper_recipe_on_tiny("flux2-klein-4b-stage2", tmp_path)
    trainer = Trainer(config)
    try:
        g, d = trainer.c.generator, trainer.c.discriminator
        pairs = {0: _photo_pair(100, 120, seed=0), 1: _photo_pair(230, 60, seed=1)}
        monkeypatch.setattr(trainer, "_pair", lambda batch: pairs[batch])
        g_before = {k: v.clone() for k, v in g.state_dict().items()}
        d_before = copy.deepcopy(d)
        g_calls, d_calls = _Recorder(g), _Recorder(d)
        logged = trainer.train_step()
        g_calls.handle.remove()
        d_calls.handle.remove()

        # ---- G step on batch 0
        target_g, target_d = (pairs[i].hr * 2 - 1 for i in (0, 1))
        (image_g, condition_g), prediction, g_training = g_calls.calls[0][0][:2], *g_calls.calls[0][1:]
        torch.testing.assert_close(image_g, _expected_input(pairs[0].lr_raw), atol=0, rtol=0)
        assert g_training
        (image_d, condition_d), fake_d = g_calls.calls[1][0][:2], g_calls.calls[1][1]
        assert len(g_calls.calls) == 2
        g_after = {k: v.clone() for k, v in g.state_dict().items()}
        with torch.no_grad():
            # the D step's fake is a fresh forward of the generator the G step updated
            torch.testing.assert_close(fake_d, g.train()(image_d, condition_d), atol=1e-6, rtol=0)
            g.load_state_dict(g_before)
            torch.testing.assert_close(prediction, g(image_g, condition_g), atol=1e-6, rtol=0)
            g.load_state_dict(g_after)
        # calibration forward (train mode, real images), then the fixed critic (eval) on fake and real
        assert [(torch.equal(c[0][0], target_g), c[2]) for c in d_calls.calls[:1]] == [(True, True)]
        (fake_in, fake_g, fake_mode), (real_in, real_g, real_mode) = d_calls.calls[1:3]
        assert torch.equal(fake_in[0], prediction) and torch.equal(real_in[0], target_g) and not fake_mode | real_mode
        reference_d = copy.deepcopy(d_before).train()
        with torch.no_grad():
            reference_d(target_g)  # the calibration's power iteration
            reference_d.eval()
            torch.testing.assert_close(reference_d(prediction), fake_g, atol=1e-6, rtol=0)
            torch.testing.assert_close(reference_d(target_g), real_g, atol=1e-6, rtol=0)
        parts = {
            "l1": (prediction - target_g).abs().mean(),
            "lpips": trainer.c.lpips(prediction, target_g),
            "gan": _ragan_g(real_g, fake_g),
        }
        # the official range: the [-1, 1] images go straight into FDL's ImageNet normalisation
        official_fdl = FrequencyDistributionLoss(num_proj=8, seed=config.loss.fdl_seed, input_range="raw")
        parts["fdl"] = official_fdl(prediction, target_g)
        weights = {"l1": 1.0, "lpips": 3.0, "gan": 0.1, "fdl": 0.002}
        total_g = sum(weights[k] * v for k, v in parts.items())
        assert set(k for k in logged if k.startswith("g/") and k != "g/grad_norm_g") == {f"g/{k}" for k in parts} | {
            "g/total"}  # fmt: skip
        for name, value in {**parts, "total": total_g}.items():
            assert logged[f"g/{name}"] == pytest.approx(value.item(), rel=1e-5, abs=1e-7), name

        # ---- D step on batch 1: a fresh generator forward with the updated weights, then real, fake, noisy
        torch.testing.assert_close(image_d, _expected_input(pairs[1].lr_raw), atol=0, rtol=0)
        (real_in, real_d, m1), (fake_in, fake_logits, m2), (noisy_in, noisy_d, m3) = d_calls.calls[3:]
        assert len(d_calls.calls) == 6 and m1 and m2 and m3
        assert torch.equal(real_in[0], target_d) and torch.equal(fake_in[0], fake_d)
        noise = noisy_in[0] - target_d
        sigma = 0.005
        assert noise.min() >= -1e-7 and noise.max() < sigma + 1e-7  # uniform [0, sigma), as the official
        assert noise.mean().item() == pytest.approx(sigma / 2, rel=0.05) and noise.std().item() == pytest.approx(
            sigma / 12**0.5, rel=0.05)  # fmt: skip
        with torch.no_grad():  # replay: each train-mode forward runs one power iteration, in this order
            reference_d.train()
            for inputs, logits in ((target_d, real_d), (fake_d, fake_logits), (target_d + noise, noisy_d)):
                torch.testing.assert_close(reference_d(inputs), logits, atol=1e-6, rtol=0)
        ragan_d, r1 = _ragan_d(real_d, fake_logits), _approx_r1(real_d, noisy_d)
        assert logged["d/ragan_d"] == pytest.approx(ragan_d.item(), rel=1e-5)
        assert logged["d/r1"] == pytest.approx(r1.item(), rel=1e-5, abs=1e-9)
        assert logged["d/total"] == pytest.approx((ragan_d + 10 * r1).item(), rel=1e-5)

        # spectral norms: one iteration at calibration, none in the G step's eval forwards, three in the D step
        sn_after = [m for m in d.modules() if hasattr(m, "weight_u")]
        sn_before = [m for m in d_before.modules() if hasattr(m, "weight_u")]
        assert len(sn_after) == 2 * len(d.patch_heads) + 2
        for after, before in zip(sn_after, sn_before):
            expected = before.weight_u
            for _ in range(4):
                expected = _power_iteration(before.weight_orig.detach(), expected)
            torch.testing.assert_close(after.weight_u, expected, atol=1e-5, rtol=0)
    finally:
        trainer.close()


def test_losses_decrease_on_a_fixed_batch(tmp_path, monkeypatch):
    """On one fixed batch (the whole tiny DiT training, lr 1e-3): over five steps the generator's L1 and total go
    down (observed L1 0.36 -> 0.18, total 0.63 -> 0.45 at batch 2; the GAN term moves with D); then four D steps
    against the now fixed generator bring RaGAN_D down (observed 2.86 -> 2.26, sum over the four heads)."""
    config = _paper_recipe_on_tiny("flux2-klein-4b-stage1", tmp_path, **{
        "model.lora_rank": "0", "loss.lambda_lpips": "0.0", "optim.lr_g": "1e-3", "optim.lr_d": "1e-3",
        "data.resolution": "64", "optim.batch_size": "1"})  # fmt: skip
    trainer = Trainer(config)
    try:
        hr = torch.from_numpy(np.ascontiguousarray(data.astronaut()[100:164, 120:184])).permute(2, 0, 1)[None] / 255
        pair = DegradedPair(lr_raw=F.interpolate(hr, scale_factor=0.25, mode="area"), hr=hr)
        monkeypatch.setattr(trainer, "_pair", lambda batch: pair)
        logs = []
        for _ in range(5):
            logs.append(trainer.train_step())
            trainer.step += 1
        d_losses = [trainer._d_step(1)["d/ragan_d"] for _ in range(4)]
    finally:
        trainer.close()
    l1, total = [log["g/l1"] for log in logs], [log["g/total"] for log in logs]
    assert np.isfinite(l1 + total + d_losses).all()
    assert l1[-1] < 0.7 * l1[0] and total[-1] < 0.9 * total[0]
    assert all(b < a for a, b in zip(d_losses, d_losses[1:]))


def test_each_batch_draws_its_posterior_sample_from_its_own_generator(tmp_path, monkeypatch):
    """The recipe's `model.latent` reaches the model, and every generator forward gets a generator seeded from
    (run seed, batch, rank): the four batches of two steps all differ, and a step run again repeats its two."""
    config = _paper_recipe_on_tiny("flux2-klein-4b-stage1", tmp_path, **{"loss.lambda_lpips": "0.0",
                                                                          "optim.batch_size": "1"})  # fmt: skip
    trainer = Trainer(config)
    seeds = []
    try:
        g = trainer.c.generator
        assert g.codec.latent == "sample"
        hr = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        monkeypatch.setattr(trainer, "_pair", lambda batch: DegradedPair(lr_raw=hr[..., ::4, ::4], hr=hr))
        forward = g.forward
        monkeypatch.setattr(g, "forward", lambda image, condition=None, generator=None: (
            seeds.append(generator.initial_seed()), forward(image, condition, generator))[1])  # fmt: skip
        for step in (0, 1, 0):
            trainer.step = step
            trainer.train_step()
    finally:
        trainer.close()
    assert len(set(seeds[:4])) == 4 and seeds[4:] == seeds[:2]
    assert _paper_recipe_on_tiny("flux2-klein-4b-stage1", tmp_path, **{"model.latent": '"mode"'}).model.latent == "mode"
