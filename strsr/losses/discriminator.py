"""The asymmetric discriminator (paper §3.3, Fig. 5): a frozen CLIP-ConvNeXt trunk with trainable PatchGAN heads.

Features are the trunk's stage outputs at strides 4, 8 and 16 (384, 768, 1536 channels for CLIP-ConvNeXt-XXLarge)
and the pooled CLIP image embedding (1024-d). Stages are chosen by stride and channel count from timm's
`feature_info`, not by list position: timm changed what `forward_intermediates` returns between releases, which
broke the official code on current timm.

Heads, one per feature map, as the official `HYPIR/model/D.py` builds them from vision-aided-loss 0.1.0's layers:
blur (pad 2) -> SN Conv3x3 (C -> 512, stride 2, no padding) -> LeakyReLU(0.2) -> blur (pad 1) -> SN Conv1x1
(512 -> 1, stride 2). The blur is the 4x4 binomial low-pass [1, 3, 3, 1] x [1, 3, 3, 1] / 64 at stride 1 on a
zero-padded input (that library's `BlurPool(pad_type="zero", stride=1)`), so each strided conv downsamples an
anti-aliased map and a head cannot alias the grid artifacts it should see. A feature map of side n gives
floor((n - 2) / 2) + 1 after the conv, then floor((n' - 2) / 2) + 1: n / 4 for n a multiple of 4 (every stride at a
64-multiple input side); the input side must be at least 64 px (the stride-16 map at least 4). The embedding head is
SN Linear(1024 -> 512) -> LeakyReLU(0.2) -> SN Linear(512 -> 1). Only the heads train.

`ScratchDiscriminator` ("scratch") is the tiny recipe's: the CLIP trunk's weights cannot be had offline, and a frozen
*random* trunk (the "tiny" option, for tests) gives features that say nothing about real images, so this one keeps
the official heads and their strides but puts them on a small conv trunk that trains from scratch with them.

Spectral norm is `torch.nn.utils.spectral_norm`, as the official heads use: u and v start random (no iterations at
construction) and every forward in train mode runs one power iteration; eval mode uses the stored vectors. The
trainer runs one train-mode forward on real images before the first G step, as the official trainer does.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from strsr.spec import MissingWeightsError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
FEATURE_STRIDES = (4, 8, 16)

# A toy CLIP-ConvNeXt (timm's convnext_atto trunk) for the tiny preset and tests: same code path as XXLarge.
TINY_CLIP_CONFIG = dict(
    embed_dim=32,
    vision_cfg=dict(timm_model_name="convnext_atto", timm_model_pretrained=False, timm_pool="", timm_proj="linear",
                    image_size=64),
    text_cfg=dict(context_length=8, vocab_size=64, width=32, heads=2, layers=1),
)  # fmt: skip


class BinomialBlur(nn.Module):
    """Per-channel 4x4 low-pass [1, 3, 3, 1] x [1, 3, 3, 1] / 64 at stride 1 on an input zero-padded by `pad` on every
    side: (B, C, H, W) -> (B, C, H + 2 pad - 3, W + 2 pad - 3). The filter is a constant (not in the state dict)."""

    def __init__(self, channels: int, pad: int):
        super().__init__()
        taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
        kernel = torch.outer(taps, taps) / 64
        self.register_buffer("kernel", kernel.expand(channels, 1, 4, 4).clone(), persistent=False)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = F.pad(x, (self.pad,) * 4)  # zeros
        return F.conv2d(padded, self.kernel.to(x.dtype), groups=x.shape[1])


class PatchHead(nn.Module):
    """(B, C, H, W) features -> (B, 1, H', W') patch logits, H' = H / 4 for H a multiple of 4."""

    def __init__(self, channels: int, width: int = 512):
        super().__init__()
        self.layers = nn.Sequential(
            BinomialBlur(channels, pad=2),
            spectral_norm(nn.Conv2d(channels, width, 3, stride=2, padding=0)),
            nn.LeakyReLU(0.2),
            BinomialBlur(width, pad=1),
            spectral_norm(nn.Conv2d(width, 1, 1, stride=2)),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


class EmbeddingHead(nn.Module):
    """(B, D) CLIP image embedding -> (B, 1) logit."""

    def __init__(self, dim: int, width: int = 512):
        super().__init__()
        self.layers = nn.Sequential(
            spectral_norm(nn.Linear(dim, width)), nn.LeakyReLU(0.2), spectral_norm(nn.Linear(width, 1))
        )

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.layers(embedding)


class CLIPConvNeXtDiscriminator(nn.Module):
    """Images (B, 3, H, W) in [-1, 1] -> list of logits: one patch map per selected stage, then the embedding's.

    `visual` is an open_clip vision tower with a timm ConvNeXt trunk (`open_clip.timm_model.TimmModel`).
    """

    def __init__(self, visual: nn.Module, strides: tuple[int, ...] = FEATURE_STRIDES, head_width: int = 512):
        super().__init__()
        self.visual = visual.requires_grad_(False).eval()
        info = {f["reduction"]: (i, f["num_chs"]) for i, f in enumerate(visual.trunk.feature_info)}
        missing = [s for s in strides if s not in info]
        if missing:
            raise ValueError(f"trunk has no stage at stride {missing}; it has strides {sorted(info)}")
        self.stage_indices = [info[s][0] for s in strides]
        self.stage_channels = [info[s][1] for s in strides]
        embed_dim = visual.head.proj.out_features
        self.patch_heads = nn.ModuleList(PatchHead(c, head_width) for c in self.stage_channels)
        self.embedding_head = EmbeddingHead(embed_dim, head_width)
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> CLIPConvNeXtDiscriminator:
        super().train(mode)
        self.visual.eval()  # frozen trunk: no dropout/drop-path noise, whatever the heads do
        return self

    def features(self, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Stage feature maps at the chosen strides and the pooled CLIP embedding (B, D)."""
        x = ((images + 1) / 2 - self.mean) / self.std
        trunk = self.visual.trunk
        final, stages = trunk.forward_intermediates(x, indices=self.stage_indices, norm=False)
        embedding = self.visual.head(trunk.forward_head(final))
        return list(stages), embedding

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        stages, embedding = self.features(images)
        logits = [head(f) for head, f in zip(self.patch_heads, stages)]
        return logits + [self.embedding_head(embedding)]

    def head_parameters(self):
        return [p for name, p in self.named_parameters() if not name.startswith("visual.")]


class ScratchDiscriminator(nn.Module):
    """Images (B, 3, H, W) in [-1, 1] -> the same list of logits as CLIPConvNeXtDiscriminator: patch maps at strides
    4, 8 and 16 through the official heads, then a logit of a pooled embedding. The trunk (spectral-normed 3x3
    convs, two per stage, a stride-2 one first) trains with the heads; nothing is frozen.
    """

    def __init__(self, channels: tuple[int, int, int] = (48, 96, 192), embed_dim: int = 64, head_width: int = 64):
        super().__init__()

        def stage(cin: int, cout: int, downsamples: int) -> nn.Sequential:
            layers, width = [], cin
            for _ in range(downsamples):
                layers += [spectral_norm(nn.Conv2d(width, cout, 3, stride=2, padding=1)), nn.LeakyReLU(0.2)]
                width = cout
            return nn.Sequential(*layers, spectral_norm(nn.Conv2d(cout, cout, 3, padding=1)), nn.LeakyReLU(0.2))

        c4, c8, c16 = channels
        self.trunk = nn.ModuleList([stage(3, c4, 2), stage(c4, c8, 1), stage(c8, c16, 1)])  # strides 4, 8, 16
        self.stage_channels = list(channels)
        self.embed = spectral_norm(nn.Linear(c16, embed_dim))
        self.patch_heads = nn.ModuleList(PatchHead(c, head_width) for c in channels)
        self.embedding_head = EmbeddingHead(embed_dim, head_width)

    def features(self, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        stages, x = [], images
        for block in self.trunk:
            x = block(x)
            stages.append(x)
        return stages, self.embed(x.mean(dim=(-2, -1)))  # (B, embed_dim)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        stages, embedding = self.features(images)
        logits = [head(f) for head, f in zip(self.patch_heads, stages)]
        return logits + [self.embedding_head(embedding)]

    def head_parameters(self):
        """Everything trains here (the name is the trainer's: the parameters D's optimiser steps)."""
        return list(self.parameters())


def build_discriminator(
    model: str = "convnext_xxlarge",
    weights: str | Path | None = None,
    *,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> CLIPConvNeXtDiscriminator:
    """The discriminator on an open_clip CLIP-ConvNeXt trunk.

    model:   an open_clip model name ("convnext_xxlarge"), "tiny" (a random convnext_atto trunk, for tests) or
             "scratch" (`ScratchDiscriminator`, trained whole from scratch: the tiny recipe's).
    weights: a local open_clip checkpoint file (e.g. the laion2B-s34B-b82K-augreg-soup release); None builds random
             trunk weights (tests, or `device="meta"` to measure memory and speed without any file).
    """
    torch.manual_seed(seed)
    if model == "scratch":
        if weights is not None:
            raise ValueError("the scratch discriminator trains from random weights; it takes no weights file")
        with torch.device(device):
            return ScratchDiscriminator()
    import open_clip  # here, not at module level: a run without a CLIP discriminator never imports open_clip/timm

    if model == "tiny":
        if weights is not None:
            raise ValueError("the tiny discriminator has no pretrained weights")
        with torch.device(device):
            visual = open_clip.CLIP(**TINY_CLIP_CONFIG).visual
    elif weights is None:
        config = open_clip.get_model_config(model)
        if config is None:
            raise ValueError(f"unknown open_clip model {model!r}")
        with torch.device(device):
            visual = open_clip.CLIP(**config).visual
    else:
        path = Path(weights)
        if not path.is_file():
            raise MissingWeightsError(f"{path}: open_clip checkpoint for {model} not found")
        visual = open_clip.create_model(model, pretrained=str(path), device=device).visual
    if not hasattr(visual, "trunk"):
        raise ValueError(f"{model}: not a timm-trunk (ConvNeXt) CLIP model")
    with torch.device(device):
        return CLIPConvNeXtDiscriminator(visual)
