"""`strsr-export`: merge the LoRA, export the one-step pipeline to ONNX, check parity, write a manifest.

    strsr-export --preset tiny -o exported/
    strsr-export --preset flux2-klein-4b --pretrained /models/klein-base --vlm /models/Qwen3-VL-4B-Instruct \
        --checkpoint /models/StrSR-flux -o exported/flux --trt

Everything is validated before any work. Artifacts are written to temporary names and renamed; a re-export is
skipped only when the folder's manifest records the same weights hash and settings and its files check out.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from strsr.spec import HelpFormatter, ModelSpec

log = logging.getLogger("strsr.export")

PRECISIONS = ("fp32", "fp16", "fp8")
ATTENTION_OPS = ("onnxruntime", "onnx")  # ONNX Runtime's fused MultiHeadAttention, or the standard Attention node


@dataclass(frozen=True)
class ExportSpec:
    model: ModelSpec
    output: Path
    precision: str  # of the graphs: fp32, fp16 (from a half model) or fp8 (Q/DQ on the DiT graph)
    tile: int  # output tile the engines are built for
    trt: bool
    force: bool
    calibration: tuple[Path, ...]
    calibration_tiles: int
    attention_op: str


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="strsr-export", description="Export StrSR to ONNX (and TensorRT).",
                                formatter_class=HelpFormatter)  # fmt: skip
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    ModelSpec.add_args(p, device="cpu", precision=False)
    e = p.add_argument_group("export")
    e.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="weights and math inside the graphs (inputs and outputs stay float32)")  # fmt: skip
    e.add_argument("--tile", type=int, default=1024, help="output tile size the engines are built for")
    e.add_argument("--trt", action="store_true", help="also build TensorRT engines (needs TensorRT and an NVIDIA GPU)")
    e.add_argument("--attention-op", choices=ATTENTION_OPS,
                   help="attention in the graphs: onnxruntime (its fused MultiHeadAttention) or onnx (the standard "
                        "Attention node, which TensorRT >= 10.14 parses); default onnx with --trt or --precision "
                        "fp8 (graphs for TensorRT), else onnxruntime")  # fmt: skip
    e.add_argument("--force", action="store_true", help="export even when the manifest says it is current")
    e.add_argument("--calibration", nargs="+", default=[], metavar="LR",
                   help="LR images or folders for FP8 calibration (default: the bundled sample photo)")
    e.add_argument("--calibration-tiles", type=int, default=8, help="FP8 calibration tiles")
    return p


def parse(argv: list[str] | None) -> ExportSpec:
    p = build_parser()
    a = p.parse_args(argv)
    for_tensorrt = a.trt or a.precision == "fp8"
    if for_tensorrt and a.attention_op == "onnxruntime":
        p.error("--trt and --precision fp8 need --attention-op onnx: TensorRT (and ModelOpt's FP8 quantiser) cannot "
                "take ONNX Runtime's MultiHeadAttention")  # fmt: skip
    if a.calibration_tiles < 1:
        p.error("--calibration-tiles must be at least 1")
    try:
        model = ModelSpec.from_args(a, precision="fp32")  # the graphs' --precision sets the model's at export
    except ValueError as err:
        p.error(str(err))
    from strsr.inference.cli import sample_image
    from strsr.io.images import ImageError, find_images

    try:
        calibration = tuple(find_images(a.calibration)) if a.calibration else (sample_image(),)
    except ImageError as err:
        p.error(f"--calibration: {err}")
    attention_op = a.attention_op or ("onnx" if for_tensorrt else "onnxruntime")
    return ExportSpec(model, a.output, a.precision, a.tile, a.trt, a.force, calibration, a.calibration_tiles,
                      attention_op)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    spec = parse(argv)
    # the exporter's libraries log at INFO on the root logger: keep the terminal to strsr's own lines
    logging.basicConfig(level=logging.WARNING, format="strsr-export: %(message)s", stream=sys.stderr)
    logging.getLogger("strsr").setLevel(logging.INFO)
    from strsr.export.exporter import export, require_tensorrt
    from strsr.model.checkpoint import CheckpointError

    if spec.trt:
        require_tensorrt()
    try:
        export(spec)
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        log.error("%s", err)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
