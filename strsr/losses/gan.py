"""Relativistic average GAN losses (paper Eq. 7) and the approximated R1 penalty (Eq. 8).

Every function takes one logit tensor per discriminator head, or a list of them (multi-level PatchGAN heads), and
sums over heads. Logit tensors are (B, ...) of any trailing shape (patch maps (B, 1, h, w) or (B, 1)).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

Logits = torch.Tensor | Sequence[torch.Tensor]


def _heads(real: Logits, fake: Logits) -> list[tuple[torch.Tensor, torch.Tensor]]:
    real = [real] if isinstance(real, torch.Tensor) else list(real)
    fake = [fake] if isinstance(fake, torch.Tensor) else list(fake)
    if len(real) != len(fake) or not real:
        raise ValueError(f"need the same non-zero number of heads for real and fake, got {len(real)} and {len(fake)}")
    for r, f in zip(real, fake):
        if r.shape[1:] != f.shape[1:]:
            raise ValueError(f"real and fake logits of one head differ in shape: {tuple(r.shape)} vs {tuple(f.shape)}")
    return list(zip(real, fake))


def _relativistic(real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """r_real = C(real) - E_b[C(fake)], r_fake = C(fake) - E_b[C(real)]; the mean runs over the batch only, as in
    the official code, so each patch position is compared with the same position of the other batch."""
    return real - fake.mean(0, keepdim=True), fake - real.mean(0, keepdim=True)


def ragan_d_loss(real_logits: Logits, fake_logits: Logits) -> torch.Tensor:
    """Discriminator loss: sum over heads of 1/2 [BCE(r_real, 1) + BCE(r_fake, 0)]."""
    total = 0.0
    for real, fake in _heads(real_logits, fake_logits):
        r_real, r_fake = _relativistic(real, fake)
        total = total + 0.5 * (
            F.binary_cross_entropy_with_logits(r_real, torch.ones_like(r_real))
            + F.binary_cross_entropy_with_logits(r_fake, torch.zeros_like(r_fake))
        )
    return total


def ragan_g_loss(real_logits: Logits, fake_logits: Logits) -> torch.Tensor:
    """Generator loss: sum over heads of 1/2 [BCE(r_fake, 1) + BCE(r_real, 0)]; real logits are detached, so the
    gradient reaches the generator only through its own samples."""
    total = 0.0
    for real, fake in _heads(real_logits, fake_logits):
        r_real, r_fake = _relativistic(real.detach(), fake)
        total = total + 0.5 * (
            F.binary_cross_entropy_with_logits(r_fake, torch.ones_like(r_fake))
            + F.binary_cross_entropy_with_logits(r_real, torch.zeros_like(r_real))
        )
    return total


def approx_r1(clean_logits: Logits, noisy_logits: Logits) -> torch.Tensor:
    """Eq. 8: mean over the batch of sum over heads of mean over (C, H, W) of (D(x) - D(x + n))^2.

    Gradients flow through both terms (the penalty asks D to be smooth around real data).
    """
    total = 0.0
    for clean, noisy in _heads(clean_logits, noisy_logits):
        total = total + (clean - noisy).pow(2).flatten(1).mean(1)  # (B,)
    return total.mean()


def r1_noise(
    images: torch.Tensor,
    sigma: float = 0.005,
    kind: Literal["uniform", "gaussian"] = "uniform",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Noise for the approximated R1 term on [-1, 1] images.

    "uniform" (default) is the official code's U[0, sigma); "gaussian" is N(0, sigma^2) as the paper's text says.
    """
    if kind == "uniform":
        noise = torch.rand(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    elif kind == "gaussian":
        noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    else:
        raise ValueError(f"unknown R1 noise kind {kind!r}; choose 'uniform' or 'gaussian'")
    return noise * sigma
