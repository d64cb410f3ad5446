"""FP8 (E4M3) fake quantisation of the exported DiT graph with NVIDIA ModelOpt's ONNX quantiser.

ModelOpt inserts QuantizeLinear/DequantizeLinear pairs around the DiT's matmuls, calibrated on the activations of
real LR tiles, and casts what stays unquantised to fp16. The result runs in plain ONNX Runtime on the CPU (the
quality cost is measured there) and is what a strongly typed TensorRT FP8 engine is built from.

Kept in higher precision (never quantised): the layers of `strsr.model.quantize.HIGH_PRECISION_MODULES` (the
patch/condition/timestep embedders, the adaLN modulation layers and the final norm/projection), the same ones the
PyTorch path (`--quantize fp8|int8-weight`) keeps; the VLM adapter is a graph of its own and is not quantised.
"""

from __future__ import annotations

import ast
import logging
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from strsr.export.onnx_export import publish_staged, uses_external_data
from strsr.io.images import load_image
from strsr.model.generator import StrSRGenerator
from strsr.model.quantize import HIGH_PRECISION_MODULES, keeps_high_precision

log = logging.getLogger("strsr.export")

HIGH_PRECISION_DTYPE = "fp16"


def require_modelopt():
    try:
        from modelopt.onnx.quantization import quantize
    except ImportError as err:
        raise SystemExit(
            f"strsr-export: --precision fp8 needs NVIDIA ModelOpt's ONNX quantiser ({err}); "
            "install it with: pip install 'strsr[fp8]'"
        ) from None
    return quantize


def high_precision_nodes(graph_path: Path) -> list[str]:
    """Names of the nodes that belong to a kept-in-high-precision module, read from the exporter's name scopes."""
    import onnx

    nodes = []
    for node in onnx.load(str(graph_path), load_external_data=False).graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        scopes = ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]"))
        if any(keeps_high_precision(scope) for scope in scopes):
            nodes.append(node.name)
    return nodes


def calibration_states(model: StrSRGenerator, images: list[Path], crop: int, tiles: int, seed: int = 0) -> torch.Tensor:
    """DiT input states of `tiles` crops (crop x crop output pixels) of the bicubic-upsampled LR `images`.

    Crops are spread over the images in turn at seeded positions; an image whose upsampled size is under `crop`
    is enlarged first (calibration needs realistic activation ranges, not exact geometry).
    """
    if not images:
        raise ValueError("FP8 calibration needs at least one LR image")
    gen = torch.Generator().manual_seed(seed)
    codec = model.codec
    param = next(model.parameters())
    upsampled = []
    for path in images[:tiles]:  # images beyond the tile count would contribute no crop
        up = F.interpolate(load_image(path).rgb[None], scale_factor=4, mode="bicubic", align_corners=False)
        if min(up.shape[-2:]) < crop:
            up = F.interpolate(up, scale_factor=crop / min(up.shape[-2:]), mode="bicubic", align_corners=False)
        upsampled.append(up)
    crops = []
    for i in range(tiles):
        up = upsampled[i % len(upsampled)]
        top = int(torch.randint(up.shape[-2] - crop + 1, (1,), generator=gen))
        left = int(torch.randint(up.shape[-1] - crop + 1, (1,), generator=gen))
        crops.append(up[..., top : top + crop, left : left + crop].clamp(0, 1))
    with torch.no_grad():
        return torch.cat([codec.encode(c.to(param) * 2 - 1, gen).float() for c in crops])


def quantize_dit_fp8(source: Path, calibration: dict[str, np.ndarray]) -> dict:
    """Replace the DiT graph `source` by its FP8 Q/DQ version (staged, then moved into place); returns a summary."""
    import onnx

    quantize = require_modelopt()
    # ModelOpt reads exclusions as regular expressions matched at the start of node names, and the exporter's
    # names are prefixes of one another (node_linear, node_linear_1, ...): anchor each one.
    keep = [f"^{re.escape(name)}$" for name in high_precision_nodes(source)]
    staging = Path(tempfile.mkdtemp(dir=source.parent, prefix=f".{source.stem}.fp8."))
    try:
        quantize(str(source), quantize_mode="fp8", calibration_data=calibration, calibration_eps=["cpu"],
                 nodes_to_exclude=keep, high_precision_dtype=HIGH_PRECISION_DTYPE,
                 use_external_data_format=uses_external_data(source), output_path=str(staging / source.name),
                 log_level="WARNING",
                 # its GEMV check excludes by unanchored name too (dropping every node_linear_*); the GEMVs of a DiT
                 # (timestep embedding, modulation) are kept in high precision above anyway
                 enable_gemv_detection_for_trt=False)  # fmt: skip
        publish_staged(staging, source.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    ops = [n.op_type for n in onnx.load(str(source), load_external_data=False).graph.node]
    return {
        "mode": "fp8_e4m3",
        "tool": "modelopt.onnx.quantization",
        "quantized_tensors": ops.count("QuantizeLinear"),
        "high_precision_dtype": HIGH_PRECISION_DTYPE,
        "high_precision_modules": list(HIGH_PRECISION_MODULES),
        "calibration_tiles": int(next(iter(calibration.values())).shape[0]),
    }
