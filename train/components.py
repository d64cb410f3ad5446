"""Build everything a run needs from its config: generator, discriminator, losses, optimizers, degradation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from strsr.losses.discriminator import CLIPConvNeXtDiscriminator, ScratchDiscriminator, build_discriminator
from strsr.losses.objectives import LossWeights
from strsr.model.build import build_generator
from strsr.model.generator import StrSRGenerator
from strsr.presets import get_preset
from strsr.train.config import ConfigError, TrainConfig, loss_weights


@dataclass
class Components:
    generator: StrSRGenerator
    discriminator: CLIPConvNeXtDiscriminator | ScratchDiscriminator | None  # None when lambda_gan = 0
    lpips: nn.Module | None
    fdl: nn.Module | None
    weights: LossWeights
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None
    degradation: object
    queue: object | None


def build_components(config: TrainConfig, device: torch.device) -> Components:
    loss_cfg = config.loss
    spec = config.model
    if spec.checkpoint is None and spec.pretrained is None and get_preset(spec.preset).tiny:
        # training starts from the spec's checkpoint only: a tiny preset's bundled weights are an inference default
        spec = spec.replace(random_weights=True)
    generator = build_generator(spec)
    if config.run.gradient_checkpointing:
        generator.diffusers_transformer.enable_gradient_checkpointing()
    if config.run.zero_init_velocity:
        zero_velocity(generator.diffusers_transformer)
    weights = loss_weights(config)

    discriminator = opt_d = None
    if weights.lambda_gan:
        if config.discriminator.model not in ("tiny", "scratch") and config.discriminator.weights is None:
            raise ConfigError(f"discriminator.weights: set the path of the local open_clip "
                              f"{config.discriminator.model} checkpoint (its trunk must be pretrained)")  # fmt: skip
        discriminator = build_discriminator(
            config.discriminator.model, config.discriminator.weights, device=device, seed=config.run.seed
        )
        opt_d = _adamw(discriminator.head_parameters(), config.optim.lr_d, config)
    lpips = fdl = None
    if weights.lambda_lpips:
        from strsr.losses.perceptual import LPIPSLoss

        lpips = LPIPSLoss(loss_cfg.vgg16_weights).to(device)
    if weights.lambda_fdl:
        from strsr.losses.fdl import FrequencyDistributionLoss

        fdl = FrequencyDistributionLoss(
            num_proj=loss_cfg.fdl_num_proj, seed=loss_cfg.fdl_seed, vgg_weights=loss_cfg.vgg19_weights,
            input_range=loss_cfg.fdl_input_range,
        ).to(device)  # fmt: skip
        if loss_cfg.fdl_batch is not None:
            fdl = FirstImagesOnly(fdl, loss_cfg.fdl_batch)

    opt_g = _adamw(_generator_groups(generator, config), config.optim.lr_g, config)

    degradation, queue = _degradation(config)
    return Components(generator, discriminator, lpips, fdl, weights, opt_g, opt_d, degradation, queue)


@torch.no_grad()
def zero_velocity(transformer: nn.Module) -> None:
    """Zero the DiT's output projection, so the velocity starts at 0 and the first output is the VAE round trip of
    the upsampled LR (FLUX.2: `proj_out`; Z-Image: the final layer's linear)."""
    finals = [transformer.proj_out] if hasattr(transformer, "proj_out") else [
        layer.linear for layer in transformer.all_final_layer.values()]  # fmt: skip
    for linear in finals:
        linear.weight.zero_()
        if linear.bias is not None:
            linear.bias.zero_()


def _generator_groups(generator, config: TrainConfig) -> list[dict]:
    """The DiT's trainable parameters (LoRA, null embedding), and the VLM adapter in its own learning-rate group."""
    adapter = generator.conditioning.adapter if generator.image_conditioned else None
    in_adapter = {id(p) for p in adapter.parameters()} if adapter is not None else set()
    groups = [{"params": [p for p in generator.parameters() if p.requires_grad and id(p) not in in_adapter]}]
    if adapter is not None:
        lr = config.optim.lr_adapter if config.optim.lr_adapter is not None else config.optim.lr_g
        groups.append({"params": [p for p in adapter.parameters() if p.requires_grad], "lr": lr})
    return [g for g in groups if g["params"]]


def _adamw(params, lr: float, config: TrainConfig) -> torch.optim.Optimizer:
    params = list(params)
    if not params:
        raise ValueError("nothing to train: no parameter requires a gradient")
    return torch.optim.AdamW(params, lr=lr, betas=tuple(config.optim.betas), weight_decay=config.optim.weight_decay)


def _degradation(config: TrainConfig):
    from strsr.degradation.realesrgan import PairQueue, RealESRGANDegradation

    if config.degradation.kind == "bicubic":
        return BicubicDegradation(), None
    degradation = RealESRGANDegradation(config.degradation)
    if config.degradation.kind == "mixed":
        degradation = MixedDegradation(degradation, config.degradation.jpeg_range)
    queue = PairQueue(config.degradation.queue_size) if config.degradation.queue_size else None
    return degradation, queue


class FirstImagesOnly(nn.Module):
    """A loss on the first `count` images of (B, 3, H, W) prediction/target batches (`loss.fdl_batch`: the FDL's
    VGG19 and projections cost ~10x a tiny generator step per image on a CPU). Its state is the wrapped loss's."""

    def __init__(self, loss: nn.Module, count: int):
        super().__init__()
        self.loss, self.count = loss, count

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss(prediction[: self.count], target[: self.count])

    def state_dict(self, *args, **kwargs):
        return self.loss.state_dict(*args, **kwargs)

    def load_state_dict(self, state, strict: bool = True, assign: bool = False):
        return self.loss.load_state_dict(state, strict=strict, assign=assign)


class MixedDegradation:
    """RealESRGAN on the first half of a batch, bicubic x1/4 on the next quarter and bicubic x1/4 then JPEG (quality
    uniform in `jpeg_range`) on the last quarter; LR rounded to 8 bits as a saved file is. The tiny model trained on
    RealESRGAN alone lost 1.5 dB on clean bicubic inputs and 0.4 dB on JPEG q30-50 ones (held-out, 500 steps): the
    web photos it is shown are mostly these milder cases."""

    def __init__(self, realesrgan, jpeg_range: tuple[float, float]):
        self.realesrgan, self.jpeg_range = realesrgan, jpeg_range

    def __call__(self, hr: torch.Tensor, generator: torch.Generator):
        from strsr.degradation.jpeg import jpeg_compress
        from strsr.degradation.realesrgan import DegradedPair, quantise

        b = hr.shape[0]
        heavy, clean = (b + 1) // 2, (b + 1) // 2 + (b - (b + 1) // 2) // 2
        pair = self.realesrgan(hr[:heavy], generator)
        lr = quantise(torch.nn.functional.interpolate(hr[heavy:].float(), scale_factor=0.25, mode="bicubic",
                                                      antialias=True))  # fmt: skip
        low, high = self.jpeg_range
        quality = low + (high - low) * torch.rand(b - clean, generator=generator, device=generator.device)
        if b > clean:
            lr[clean - heavy:] = quantise(jpeg_compress(lr[clean - heavy:], quality.to(lr.device)))
        return DegradedPair(lr_raw=torch.cat([pair.lr_raw, lr]), hr=torch.cat([pair.hr, hr[heavy:].float()]))


class BicubicDegradation:
    """Plain x4 bicubic downscaling (antialiased), for the tiny recipe and ablations; GT unchanged."""

    def __call__(self, hr: torch.Tensor, generator: torch.Generator):
        from strsr.degradation.realesrgan import DegradedPair

        lr = torch.nn.functional.interpolate(hr, scale_factor=0.25, mode="bicubic", antialias=True).clamp(0, 1)
        return DegradedPair(lr_raw=lr, hr=hr)
