"""Frequency Distribution Loss (FDL), the lambda_3 term of the StrSR generator objective (paper §3.4, Eq. 10).

FDL (Ni et al., "Misalignment-Robust Frequency Distribution Loss for Image Transformation", CVPR 2024) compares
the *distributions* of frequency components of deep features rather than the features position by position, so a
small misalignment between prediction and target costs little. Per VGG19 stage i (relu1_2, relu2_2, relu3_4,
relu4_4, relu5_4 of torchvision's `vgg19().features`, cut at indices 4, 9, 18, 27, 36):

    F = fftn(feat, dim=(H, W))                    # full 2-D DFT, default norm, no shift
    score_i = SW(|F_x|, |F_y|) + phase_weight * SW(angle F_x, angle F_y)
    SW(a, b) = mean_{k, n} | sort_n(conv2d(a, w_k))[n] - sort_n(conv2d(b, w_k))[n] |

with num_proj unit-L2 random filters w_k of shape (C_i, p, p) (no padding, stride 1), the same for amplitude and
phase; loss = mean over the batch of sum_i score_i. This follows the official implementation
(github.com/eezkni/FDL, FDL_pytorch/FDL.py + models.py) except where noted:

- The projections come from a local `torch.Generator(seed)`, not the global RNG, and are persistent buffers
  (`projection_0..4` in the state dict): a resumed run must compare distributions along the same slices.
- By default inputs are [-1, 1] images mapped to [0, 1] before the ImageNet normalisation. `input_range="raw"`
  skips the mapping, which is what the official StrSR training does with its [-1, 1] images (and is right for [0, 1]
  ones); the paper recipes (`loss.fdl_input_range`) use "raw", the range lambda_3 = 0.002 was tuned on.
- VGG19 weights come from a local torchvision-format state-dict file; nothing is downloaded. Without a file the
  weights are seeded-random (tests, offline runs) and a warning is logged once. They are non-persistent buffers,
  not parameters: a parent's optimiser or `requires_grad_()` never sees them and checkpoints do not carry 80 MB
  of constants that come from the weights file anyway.
- The target y is treated as data: its features are computed under `no_grad`, so no gradient reaches y.
- torch's backward of `angle` (and of `abs`, for subnormal |z|) is NaN for tiny non-zero complex inputs; it is
  replaced here by the same formula with a zero gradient where it cannot be evaluated (see `AmplitudePhaseFunction`).
- The whole loss runs with autocast disabled: FFT, angle and sort need fp32 (fp16 cuFFT only takes powers of two).

Limits: inputs must be at least 16 * patch_size pixels per side (80x80 by default) because the fifth stage is at
1/16 resolution and the projection needs patch_size x patch_size positions there. Cost is dominated by the
num_proj projections of the 64-channel relu1_2 spectra at full resolution; `bench/fdl_cpu.py` measures it.

The per-layer score lives in `strsr.kernels.spectral_sw`: `spectral_sliced_wasserstein_ref` (plain PyTorch, the
CPU/export path) beside the fused Triton kernel; `_sliced_wasserstein` sends each layer to its public op, which
follows `strsr.kernels.dispatch` (backend argument, `use_kernel_backend()`, STRSR_KERNEL_BACKEND; "auto" = Triton on
CUDA).
"""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from strsr.kernels.dispatch import KERNEL_BACKENDS
from strsr.kernels.spectral_sw import (  # noqa: F401  (re-exported: the FDL's public per-layer pieces)
    AmplitudePhaseFunction,
    spectral_sliced_wasserstein,
    spectral_sliced_wasserstein_ref,
)

log = logging.getLogger("strsr")

# torchvision's vgg19 ("E") features up to relu5_4: channel counts, "M" = 2x2 max-pool.
_VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512)
STAGE_ENDS = (4, 9, 18, 27, 36)  # features[0:4], [4:9], [9:18], [18:27], [27:36]
STAGE_CHANNELS = (64, 128, 256, 512, 512)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_RANGES = ("[-1,1]", "raw")


def _vgg19_convs() -> list[tuple[int, int, int]]:
    """(index in features, in_channels, out_channels) of the 16 convolutions of vgg19().features[:36]."""
    convs, idx, cin = [], 0, 3
    for v in _VGG19_CFG:
        if v == "M":
            idx += 1
            continue
        convs.append((idx, cin, v))
        idx, cin = idx + 2, v  # conv + ReLU
    return convs


def _load_vgg19_state(path: Path) -> dict[str, torch.Tensor]:
    """The `features.N.weight/bias` tensors of a torchvision VGG19 state dict (full or features-only) in `path`."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: VGG19 weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises pickle, zip and runtime errors alike for a foreign file
        raise ValueError(f"{path}: not a readable torch state-dict file ({err})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a VGG19 state dict, found a {type(state).__name__}")
    missing, wrong = [], []
    for idx, cin, cout in _vgg19_convs():
        for kind, shape in (("weight", (cout, cin, 3, 3)), ("bias", (cout,))):
            key = f"features.{idx}.{kind}"
            if not isinstance(state.get(key), torch.Tensor):
                missing.append(key)
            elif tuple(state[key].shape) != shape:
                wrong.append(f"{key} {tuple(state[key].shape)} != {shape}")
    if missing or wrong:
        problems = [f"{label}: {', '.join(items[:3])}{' ...' if len(items) > 3 else ''}"
                    for label, items in (("missing", missing), ("wrong shape", wrong)) if items]  # fmt: skip
        raise ValueError(f"{path}: not a torchvision VGG19 state dict ({'; '.join(problems)})")
    return state


@functools.cache
def _warn_random_vgg_weights() -> None:
    log.warning("FDL uses random VGG19 weights (no vgg_weights file given): values are not the paper's FDL")


def build_vgg19_stages(vgg_weights: str | Path | None, generator: torch.Generator) -> nn.ModuleList:
    """The five frozen VGG19 stages; weights from a torchvision state-dict file, or kaiming-random from `generator`.

    Convolutions are built on the meta device (no wasted init, no global-RNG use) and given their weights as
    non-persistent buffers. Module names keep torchvision's indices (stage 2 holds "4".."8").
    """
    state = None if vgg_weights is None else _load_vgg19_state(Path(vgg_weights))
    if state is None:
        _warn_random_vgg_weights()
    layers: list[nn.Module] = []
    cin = 3
    for v in _VGG19_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        idx = len(layers)
        conv = nn.Conv2d(cin, v, kernel_size=3, padding=1, device="meta")
        if state is None:  # torchvision's VGG init
            weight = nn.init.kaiming_normal_(torch.empty(v, cin, 3, 3), mode="fan_out", nonlinearity="relu",
                                             generator=generator)  # fmt: skip
            bias = torch.zeros(v)
        else:
            weight, bias = state[f"features.{idx}.weight"], state[f"features.{idx}.bias"]
        del conv.weight, conv.bias
        conv.register_buffer("weight", weight.detach().float().clone(), persistent=False)
        conv.register_buffer("bias", bias.detach().float().clone(), persistent=False)
        layers += [conv, nn.ReLU(inplace=True)]
        cin = v
    starts = (0,) + STAGE_ENDS[:-1]
    return nn.ModuleList(
        nn.Sequential(OrderedDict((str(i), layers[i]) for i in range(a, b))) for a, b in zip(starts, STAGE_ENDS)
    ).eval()


def draw_projections(
    channels: tuple[int, ...], num_proj: int, patch_size: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """Per layer, `num_proj` random (C, p, p) float32 filters of unit L2 norm: (num_proj, C, p, p)."""
    out = []
    for c in channels:
        rand = torch.randn(num_proj, c, patch_size, patch_size, generator=generator)
        out.append(rand / rand.flatten(1).norm(dim=1)[:, None, None, None])
    return out


def _resolve_backend(backend: str | None) -> str | None:
    """Validate a backend name; which one runs is decided per call, on the spectra's device."""
    if backend is None or backend in KERNEL_BACKENDS:
        return backend
    raise ValueError(f"unknown FDL backend {backend!r}; expected None, 'auto', 'reference' or 'triton'")


def _sliced_wasserstein(
    spec_x: torch.Tensor,
    spec_y: torch.Tensor,
    projections: torch.Tensor,
    phase_weight: float = 1.0,
    backend: str | None = None,
) -> torch.Tensor:
    """One layer's spectral SW on `backend` (None: the dispatch defaults; "auto": Triton on CUDA); (B,)."""
    return spectral_sliced_wasserstein(spec_x, spec_y, projections, phase_weight, backend=_resolve_backend(backend))


class FrequencyDistributionLoss(nn.Module):
    """FDL between a prediction x and a target y, (B, 3, H, W) images with H, W >= 16 * patch_size; -> scalar.

    Computes in the dtype of its buffers (float32; `.double()` for float64) with autocast off. Gradients flow to x
    only. The VGG19 extractor is frozen and stays in eval mode whatever `train()` is called with; the module has
    no parameters, only buffers: the projections (persistent) and the VGG weights (non-persistent).

    Args:
        patch_size: side p of the random projection filters.
        num_proj: projections per layer.
        phase_weight: lambda of Eq. 10, weight of the phase term.
        seed: seeds the projections (and, without vgg_weights, the random VGG weights after them).
        vgg_weights: torchvision VGG19 state-dict file (full or `features.*` only); None = random weights.
        input_range: "[-1,1]" maps x -> (x + 1) / 2 before the ImageNet normalisation; "raw" normalises x as is.
        backend: None (the `strsr.kernels.dispatch` defaults), "auto" (Triton on CUDA), "reference" (plain PyTorch)
            or "triton" (the fused kernel; a KernelBackendError where it cannot run).
    """

    def __init__(
        self,
        patch_size: int = 5,
        num_proj: int = 256,
        phase_weight: float = 1.0,
        seed: int = 0,
        vgg_weights: str | Path | None = None,
        input_range: Literal["[-1,1]", "raw"] = "[-1,1]",
        backend: str | None = None,
    ):
        super().__init__()
        if patch_size < 1 or num_proj < 1:
            raise ValueError(f"patch_size and num_proj must be positive, got {patch_size} and {num_proj}")
        if input_range not in INPUT_RANGES:
            raise ValueError(f"input_range must be one of {INPUT_RANGES}, got {input_range!r}")
        _resolve_backend(backend)  # fail at construction, not at the first training step
        self.patch_size, self.num_proj, self.phase_weight = patch_size, num_proj, phase_weight
        self.input_range, self.backend = input_range, backend
        generator = torch.Generator().manual_seed(seed)
        # Projections first, so they depend on the seed alone, not on whether the VGG weights are random.
        for i, proj in enumerate(draw_projections(STAGE_CHANNELS, num_proj, patch_size, generator)):
            self.register_buffer(f"projection_{i}", proj)
        self.vgg = build_vgg19_stages(vgg_weights, generator)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def projections(self) -> tuple[torch.Tensor, ...]:
        """The five (num_proj, C_i, p, p) projection buffers, C_i = 64, 128, 256, 512, 512."""
        return tuple(getattr(self, f"projection_{i}") for i in range(len(STAGE_CHANNELS)))

    @property
    def min_size(self) -> int:
        return 16 * self.patch_size

    def train(self, mode: bool = True) -> FrequencyDistributionLoss:
        super().train(mode)
        self.vgg.eval()  # frozen extractor: never in train mode
        return self

    def extra_repr(self) -> str:
        return (f"patch_size={self.patch_size}, num_proj={self.num_proj}, phase_weight={self.phase_weight}, "
                f"input_range={self.input_range!r}, backend={self.backend!r}")  # fmt: skip

    def _check_image(self, img: torch.Tensor, name: str) -> None:
        if img.dim() != 4 or img.shape[1] != 3:
            raise ValueError(f"FDL expects (B, 3, H, W) images, got {name} of shape {tuple(img.shape)}")
        h, w = img.shape[-2:]
        if min(h, w) < self.min_size:
            raise ValueError(
                f"FDL needs images of at least {self.min_size}x{self.min_size} (the 5th VGG stage is at 1/16 "
                f"resolution and the {self.patch_size}x{self.patch_size} projections need that many positions), "
                f"got {name} of {h}x{w}"
            )

    def features(self, img: torch.Tensor) -> list[torch.Tensor]:
        """VGG19 relu1_2 .. relu5_4 features of (B, 3, H, W) images: five (B, C_i, H / 2^i, W / 2^i) tensors."""
        img = img.to(self.mean.dtype)
        if self.input_range == "[-1,1]":
            img = (img + 1) / 2
        h = (img - self.mean) / self.std
        feats = []
        for stage in self.vgg:
            h = stage(h)
            feats.append(h)
        return feats

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x: prediction, y: target, (B, 3, H, W) float images of the same shape -> scalar loss (buffer dtype)."""
        self._check_image(x, "x")
        self._check_image(y, "y")
        if x.shape != y.shape:
            raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        with torch.autocast(x.device.type, enabled=False):
            feats_x = self.features(x)
            with torch.no_grad():
                spectra_y = [torch.fft.fftn(f, dim=(-2, -1)) for f in self.features(y)]
            score = 0
            for fx, spec_y, proj in zip(feats_x, spectra_y, self.projections):
                spec_x = torch.fft.fftn(fx, dim=(-2, -1))  # (B, C, H, W) complex
                score = score + _sliced_wasserstein(spec_x, spec_y, proj, self.phase_weight, self.backend)
        return score.mean()
