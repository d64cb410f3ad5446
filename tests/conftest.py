"""Tiny model builders shared by the tests (real diffusers classes at toy sizes, seeded, no downloads).

Exposed as fixtures: with --import-mode=importlib test modules cannot import each other or a helper module.
"""

from __future__ import annotations

import dataclasses
import os

# Kernel tests run on CPU under Triton's interpreter. Triton reads TRITON_INTERPRET when triton.language is first
# imported (some libraries import it early), so it is set here, before anything else. Every other test keeps the
# plain-PyTorch kernels: "auto" would otherwise pick the slow interpreter. A GPU run (bench/gpu-check) sets
# STRSR_TEST_ON_GPU=1 to compile the kernels for real.
if os.environ.get("STRSR_TEST_ON_GPU") != "1":
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("STRSR_KERNEL_BACKEND", "reference")

import pytest  # noqa: E402
import torch  # noqa: E402
from diffusers import AutoencoderKL, AutoencoderKLFlux2  # noqa: E402

from strsr.presets import TINY, TINY_ZIMAGE, LatentSpec, Preset  # noqa: E402

TINY_VAE_CONFIG = dict(
    block_out_channels=(32, 32),
    down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2,
    latent_channels=4,
    layers_per_block=1,
    norm_num_groups=8,
)


def _tiny_flux2_vae(seed: int = 0) -> AutoencoderKLFlux2:
    """A 2x-down AutoencoderKLFlux2 with non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    vae = AutoencoderKLFlux2(**TINY_VAE_CONFIG).eval()
    vae.bn.running_mean.copy_(torch.randn(16) * 0.3)
    vae.bn.running_var.copy_(torch.rand(16) + 0.5)
    return vae


def _tiny_kl_vae(seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(**TINY_VAE_CONFIG, scaling_factor=0.3611, shift_factor=0.1159).eval()


def _flux2_kl_preset() -> Preset:
    """The tiny FLUX.2 preset moved onto a real (tiny) AutoencoderKLFlux2: 4 latent channels, 2x down."""
    config = dict(TINY.transformer_config, in_channels=16)
    return dataclasses.replace(
        TINY, name="tiny-flux2-kl", transformer_config=config,
        latents=LatentSpec(autoencoder="flux2-kl", vae_scale=2, channels=4),
    )  # fmt: skip


def _zimage_kl_preset() -> Preset:
    config = dict(TINY_ZIMAGE.transformer_config, in_channels=4)
    return dataclasses.replace(
        TINY_ZIMAGE, name="tiny-zimage-kl", transformer_config=config,
        latents=LatentSpec(autoencoder="kl", vae_scale=2, channels=4, scaling_factor=0.3611, shift_factor=0.1159),
    )  # fmt: skip


def _randomise_lora(model: torch.nn.Module, seed: int = 0, std: float = 0.05) -> None:
    """Give LoRA B matrices non-zero values (gaussian init leaves them at zero) so adapters change outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * std)


@pytest.fixture
def tiny_flux2_vae():
    return _tiny_flux2_vae()


@pytest.fixture
def tiny_kl_vae():
    return _tiny_kl_vae()


@pytest.fixture
def flux2_kl_preset():
    return _flux2_kl_preset()


@pytest.fixture
def zimage_kl_preset():
    return _zimage_kl_preset()


@pytest.fixture
def randomise_lora():
    return _randomise_lora


@pytest.fixture
def kernel_device():
    """Where Triton kernel tests run: the CPU interpreter, or a real GPU when STRSR_TEST_ON_GPU=1."""
    pytest.importorskip("triton")
    if os.environ.get("STRSR_TEST_ON_GPU") == "1":
        if not torch.cuda.is_available():
            pytest.skip("STRSR_TEST_ON_GPU=1 but no CUDA device")
        return torch.device("cuda")
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("Triton kernels need a GPU or TRITON_INTERPRET=1 set before triton is imported")
    return torch.device("cpu")
