"""The settings of the training LR synthesis: a recipe's `[degradation]` table (plain data, no torch import)."""

from __future__ import annotations

from dataclasses import dataclass

# RealESRGAN's blur kernel families, in the order its `kernel_list` (and `kernel_probs`) uses.
KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")


@dataclass(frozen=True)
class DegradationConfig:
    """How training LR images are made: the training recipe's `[degradation]` table.

    kind "realesrgan" (the paper's), "bicubic" (a plain antialiased x4 downscale) or "mixed" (RealESRGAN on half of
    each batch, bicubic and bicubic + JPEG on the rest: strsr.train.components.MixedDegradation); queue_size, the
    training-pair pool (the official configs' 256; 0 disables it); sharpen_gt, whether the targets are USM-sharpened.
    The rest are the RealESRGAN x4plus settings; field names follow its training YAML (a `2` suffix: the second
    order). Kernel probabilities are in the order of `strsr.blur_kernels.KERNEL_TYPES`; resize probabilities are
    (up, down, keep); noise sigmas are on the 0-255 scale; JPEG qualities are in (0, 100).
    """

    kind: str = "realesrgan"
    queue_size: int = 256
    sharpen_gt: bool = True

    kernel_sizes: tuple[int, int] = (7, 21)  # odd supports drawn from this range, padded to the largest
    kernel_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob: float = 0.1
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    betag_range: tuple[float, float] = (0.5, 4.0)
    betap_range: tuple[float, float] = (1.0, 2.0)
    resize_probs: tuple[float, float, float] = (0.2, 0.7, 0.1)
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_range: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[float, float] = (30.0, 95.0)

    second_blur_prob: float = 0.8
    kernel_probs2: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob2: float = 0.1
    blur_sigma2: tuple[float, float] = (0.2, 1.5)
    betag_range2: tuple[float, float] = (0.5, 4.0)
    betap_range2: tuple[float, float] = (1.0, 2.0)
    resize_probs2: tuple[float, float, float] = (0.3, 0.4, 0.3)
    resize_range2: tuple[float, float] = (0.3, 1.2)
    gaussian_noise_prob2: float = 0.5
    noise_range2: tuple[float, float] = (1.0, 25.0)
    poisson_scale_range2: tuple[float, float] = (0.05, 2.5)
    gray_noise_prob2: float = 0.4
    jpeg_range2: tuple[float, float] = (30.0, 95.0)

    final_sinc_prob: float = 0.8
    resize_first_prob: float = 0.5  # last steps: [resize, sinc, JPEG] with this probability, else [JPEG, resize, sinc]

    def __post_init__(self):
        if self.kind not in ("realesrgan", "bicubic", "mixed"):
            raise ValueError(f"kind {self.kind!r}: choose realesrgan, bicubic or mixed")
        if self.queue_size < 0:
            raise ValueError(f"queue_size must be at least 0, got {self.queue_size}")
        lo, hi = self.kernel_sizes
        if not (lo % 2 == 1 and hi % 2 == 1 and 1 <= lo <= hi):
            raise ValueError(f"kernel_sizes must be odd with 1 <= lo <= hi, got {self.kernel_sizes}")
        for name in ("kernel_probs", "kernel_probs2", "resize_probs", "resize_probs2"):
            probs = getattr(self, name)
            want = len(KERNEL_TYPES) if name.startswith("kernel") else 3
            if len(probs) != want or min(probs) < 0 or abs(sum(probs) - 1) > 1e-6:
                raise ValueError(f"{name} needs {want} non-negative probabilities summing to 1, got {probs}")
        for name, value in vars(self).items():
            if name in ("kind", "queue_size", "sharpen_gt"):
                continue
            if name.endswith("_prob") or name.endswith("_prob2"):
                if not 0 <= value <= 1:
                    raise ValueError(f"{name} must be in [0, 1], got {value}")
            elif name.endswith("_range") or name.endswith("_range2") or name.startswith("blur_sigma"):
                if len(value) != 2 or not 0 <= value[0] <= value[1] or (name.startswith("blur") and value[0] == 0):
                    raise ValueError(f"{name} must be (lo, hi) with 0 <= lo <= hi (sigmas > 0), got {value}")
        for name in ("resize_range", "resize_range2"):
            if not 0 < getattr(self, name)[0] <= 1 <= getattr(self, name)[1]:
                raise ValueError(f"{name} must straddle 1 with a positive lower end, got {getattr(self, name)}")
        if not all(0 < q < 100 for q in (*self.jpeg_range, *self.jpeg_range2)):
            raise ValueError("JPEG qualities must be in (0, 100): the codec's quantiser step is zero at 100")
