"""Held-out table of the embedded default: bicubic vs the old (bicubic-trained) and the shipped strsr-tiny, x4.

Photos that no tiny recipe trains on and that pip packages ship (so CI can run this): scikit-image's chelsea and
coffee, matplotlib's grace_hopper. Input kinds, each from the photo cropped to multiples of 8:
- "realesrgan": strsr's RealESRGAN second-order degradation (the training distribution, targets unsharpened),
  two seeded draws per photo;
- "jpeg-q30/40/50": antialiased bicubic x1/4, then saved as a JPEG by Pillow at that quality (a web photo);
- "bicubic-x4": the antialiased bicubic x1/4 alone (clean).
Scores, on the 8-bit output strsr-upscale would write: PSNR (RGB) and SSIM (scikit-image), PIQE (pyiqa's weight-free
no-reference metric, lower is better; NIQE needs a parameter file pyiqa downloads, so it is not here) and the
periodic-artifact score at the tiny DiT's own period, 8 px (`grid8`, and `grid8-gt`: its excess over the GT's).

    python -m strsr.bench.tiny_eval --json out/tiny_eval.json
    python -m strsr.bench.tiny_eval --model new=runs/tiny-stage2/checkpoints/step-0000600/generator.safetensors

The old default is kept only here, as `bench/data/strsr-tiny-bicubic.safetensors` (the file strsr shipped before
it was retrained for real-world inputs), to compare against.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from strsr.bench.report import write_results

log = logging.getLogger("strsr.bench")

HELD_OUT = ("chelsea", "coffee", "grace_hopper")
REALESRGAN_SEEDS = (0, 1)
JPEG_QUALITIES = (30, 40, 50)
KINDS = ("realesrgan", "jpeg-q30-50", "bicubic-x4")  # the table's groups; jpeg-qNN rows average into jpeg-q30-50
PERIOD = 8  # the tiny DiT's grid period: 2x2 tokens on the x4 pixel-shuffle autoencoder
OLD_DEFAULT = "bench/data/strsr-tiny-bicubic.safetensors"


def old_default_weights() -> Path:
    return Path(str(resources.files("strsr.bench") / "data" / "strsr-tiny-bicubic.safetensors"))


def held_out_photo(name: str) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1], cropped to multiples of 8 (the tiny model's pixel multiple)."""
    if name == "grace_hopper":
        import matplotlib.cbook

        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
            array = np.asarray(Image.open(f).convert("RGB"))
    else:
        from skimage import data

        array = np.asarray(getattr(data, name)())
    h, w = array.shape[0] // 8 * 8, array.shape[1] // 8 * 8
    return torch.from_numpy(array[:h, :w].copy()).permute(2, 0, 1)[None].float() / 255


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)


def jpeg(lr: torch.Tensor, quality: int) -> torch.Tensor:
    """(1, 3, h, w) -> the same image through a Pillow JPEG file at `quality` (4:2:0, Pillow's defaults)."""
    buffer = io.BytesIO()
    Image.fromarray(_to_uint8(lr)).save(buffer, format="JPEG", quality=quality)
    array = np.asarray(Image.open(buffer).convert("RGB"))
    return torch.from_numpy(array.copy()).permute(2, 0, 1)[None].float() / 255


def degraded_inputs(hr: torch.Tensor) -> dict[str, torch.Tensor]:
    """{input name: (1, 3, H/4, W/4) LR in [0, 1], 8-bit values}."""
    from strsr.degradation.config import DegradationConfig
    from strsr.degradation.realesrgan import RealESRGANDegradation

    bicubic = F.interpolate(hr, scale_factor=0.25, mode="bicubic", antialias=True).clamp(0, 1)
    bicubic = torch.from_numpy(_to_uint8(bicubic).copy()).permute(2, 0, 1)[None].float() / 255
    degrade = RealESRGANDegradation(DegradationConfig(sharpen_gt=False))
    inputs = {f"realesrgan-s{s}": degrade(hr, torch.Generator().manual_seed(s)).lr for s in REALESRGAN_SEEDS}
    inputs.update({f"jpeg-q{q}": jpeg(bicubic, q) for q in JPEG_QUALITIES})
    inputs["bicubic-x4"] = bicubic
    return inputs


def kind_of(input_name: str) -> str:
    if input_name.startswith("realesrgan"):
        return "realesrgan"
    return "jpeg-q30-50" if input_name.startswith("jpeg") else input_name


def bicubic_x4(lr: torch.Tensor) -> torch.Tensor:
    return F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)


class Scorer:
    """PSNR, SSIM, PIQE (when pyiqa imports) and grid8 / grid8-gt of 8-bit-rounded outputs against the HR photo."""

    def __init__(self, no_reference: bool = True):
        self.piqe = None
        if no_reference:
            try:
                from strsr.evaluation.metrics import import_pyiqa

                self.piqe = import_pyiqa().create_metric("piqe", device=torch.device("cpu"))
            except ImportError as err:
                log.warning("no PIQE column: %s", err)

    def __call__(self, output: torch.Tensor, hr: torch.Tensor) -> dict[str, float]:
        from skimage.metrics import peak_signal_noise_ratio, structural_similarity

        from strsr.evaluation.grid_artifacts import grid_artifact_scores

        a, b = _to_uint8(output), _to_uint8(hr)
        row = {"psnr": peak_signal_noise_ratio(b, a), "ssim": structural_similarity(b, a, channel_axis=2)}
        rounded = torch.from_numpy(a.copy()).permute(2, 0, 1)[None].float() / 255
        if self.piqe is not None:
            with torch.no_grad():
                row["piqe"] = float(self.piqe(rounded))
        score, excess = grid_artifact_scores(rounded, hr, PERIOD)
        row["grid8"], row["grid8-gt"] = float(score), float(excess)
        return row


def default_models() -> dict[str, Path | None]:
    """{method name: tiny weights} of the table: the old default, and the bundled (shipped) one (None)."""
    return {"old strsr-tiny": old_default_weights(), "strsr-tiny": None}


def evaluate(models: dict[str, Path | None], scorer: Scorer | None = None, tile: int | None = None) -> list[dict]:
    """One row per (photo, input, method), methods "bicubic" and each of `models` ({name: weights, None: bundled})."""
    from strsr.inference.pipeline import SuperResolver

    scorer = scorer or Scorer()
    resolvers = {name: SuperResolver.from_preset("tiny", checkpoint=path, device="cpu", tile=tile)
                 for name, path in models.items()}  # fmt: skip
    rows = []
    for photo in HELD_OUT:
        hr = held_out_photo(photo)
        for input_name, lr in degraded_inputs(hr).items():
            outputs = {"bicubic": bicubic_x4(lr)}
            with torch.no_grad():
                outputs.update({name: r.upscale_tensor(lr) for name, r in resolvers.items()})
            for method, output in outputs.items():
                rows.append({"image": photo, "input": input_name, "kind": kind_of(input_name), "method": method,
                             **scorer(output, hr)})  # fmt: skip
    return rows


def summary(rows: list[dict]) -> list[dict]:
    """Means per (input kind, method), in the order rows first show them."""
    keys = list(dict.fromkeys((r["kind"], r["method"]) for r in rows))
    metrics = [k for k in rows[0] if k not in ("image", "input", "kind", "method")]
    table = []
    for kind, method in keys:
        group = [r for r in rows if (r["kind"], r["method"]) == (kind, method)]
        table.append({"kind": kind, "method": method, "count": len(group),
                      **{m: float(np.mean([r[m] for r in group])) for m in metrics}})  # fmt: skip
    return table


def format_summary(table: list[dict]) -> str:
    metrics = [k for k in table[0] if k not in ("kind", "method", "count")]
    w = max(16, *(len(r["method"]) for r in table))
    lines = [f"{'input':<12} {'method':<{w}} {'n':>2} " + " ".join(f"{m:>8}" for m in metrics)]
    for r in table:
        lines.append(f"{r['kind']:<12} {r['method']:<{w}} {r['count']:>2} " + " ".join(f"{r[m]:8.3f}" for m in metrics))
    return "\n".join(lines)


def _model_arg(text: str) -> tuple[str, Path]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=WEIGHTS.safetensors")
    name, path = text.split("=", 1)
    return name, Path(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m strsr.bench.tiny_eval", description=__doc__.splitlines()[0])
    p.add_argument("--model", type=_model_arg, action="append", default=[], metavar="NAME=WEIGHTS",
                   help="tiny weights to score instead of the old and the bundled default (repeatable)")
    p.add_argument("--tile", type=int, help="output tile (default: the tiny preset's)")
    p.add_argument("--json", type=Path, help="write every row and the summary here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    models = dict(args.model) if args.model else default_models()
    rows = evaluate(models, tile=args.tile)
    table = summary(rows)
    log.info("%s", format_summary(table))
    write_results(args.json, {"summary": table, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
