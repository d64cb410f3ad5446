"""The full objectives: Eq. 11 for the generator and Eq. 9 for the discriminator, with the paper's weights.

    L_G = lambda_l1 * L1 + lambda_lpips * LPIPS + lambda_gan * RaGAN_G + lambda_fdl * FDL
    L_D = RaGAN_D + lambda_r1 * approxR1

Each returns the total and a dict of its (unweighted, detached) parts for logging. Terms whose weight is 0 are not
computed at all, so stage 1 (lambda_fdl = 0) pays nothing for the FDL.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from strsr.losses.gan import Logits, approx_r1, ragan_d_loss, ragan_g_loss

STAGE1_LAMBDA_FDL = 0.0
STAGE2_LAMBDA_FDL = 0.002


@dataclass(frozen=True)
class LossWeights:
    """Paper §4.1: lambda_1 (LPIPS) = 3, lambda_2 (GAN) = 0.1, lambda_3 (FDL) = 0 then 0.002, lambda_R1 = 10."""

    lambda_l1: float = 1.0
    lambda_lpips: float = 3.0
    lambda_gan: float = 0.1
    lambda_fdl: float = STAGE1_LAMBDA_FDL
    lambda_r1: float = 10.0

    @classmethod
    def for_stage(cls, stage: int, **overrides) -> LossWeights:
        if stage not in (1, 2):
            raise ValueError(f"StrSR trains in stages 1 and 2, got {stage}")
        return cls(lambda_fdl=STAGE1_LAMBDA_FDL if stage == 1 else STAGE2_LAMBDA_FDL, **overrides)


def generator_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    real_logits: Logits | None,
    fake_logits: Logits | None,
    *,
    lpips: nn.Module | None = None,
    fdl: nn.Module | None = None,
    weights: LossWeights = LossWeights(),
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 11 on images (B, 3, H, W) in [-1, 1]; logits are the discriminator's on the target and the prediction."""
    terms: dict[str, tuple[float, torch.Tensor]] = {"l1": (weights.lambda_l1, F.l1_loss(prediction, target))}
    if weights.lambda_lpips:
        terms["lpips"] = (weights.lambda_lpips, _required(lpips, "lpips", "lambda_lpips")(prediction, target))
    if weights.lambda_gan:
        if real_logits is None or fake_logits is None:
            raise ValueError("lambda_gan > 0 needs the discriminator's logits on the target and the prediction")
        terms["gan"] = (weights.lambda_gan, ragan_g_loss(real_logits, fake_logits))
    if weights.lambda_fdl:
        terms["fdl"] = (weights.lambda_fdl, _required(fdl, "fdl", "lambda_fdl")(prediction, target))
    return _combine(terms)


def discriminator_loss(
    real_logits: Logits,
    fake_logits: Logits,
    noisy_real_logits: Logits | None,
    *,
    weights: LossWeights = LossWeights(),
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 9: RaGAN_D on (real, fake) logits plus lambda_r1 * approxR1 on (real, noisy real) logits.

    `fake_logits` should come from detached generator outputs.
    """
    terms = {"ragan_d": (1.0, ragan_d_loss(real_logits, fake_logits))}
    if weights.lambda_r1:
        if noisy_real_logits is None:
            raise ValueError("lambda_r1 > 0 needs the discriminator's logits on noisy real images")
        terms["r1"] = (weights.lambda_r1, approx_r1(real_logits, noisy_real_logits))
    return _combine(terms)


def _required(module: nn.Module | None, name: str, weight: str) -> nn.Module:
    if module is None:
        raise ValueError(f"{weight} > 0 needs a {name} loss module")
    return module


def _combine(terms: dict[str, tuple[float, torch.Tensor]]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    total = sum(weight * value for weight, value in terms.values())
    parts = {name: value.detach() for name, (_, value) in terms.items()}
    parts["total"] = total.detach()
    return total, parts
