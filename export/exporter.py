"""What `strsr-export` does: build the model a spec describes, merge the LoRA, export the stages to ONNX, check each
in ONNX Runtime against PyTorch, optionally quantise the DiT to FP8 and build TensorRT engines, and write the
manifest with every file's size and hash. Re-export is skipped only when the manifest says the folder is current.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from strsr.export.cli import ExportSpec
from strsr.export.onnx_export import (
    OPSET,
    check_parity,
    export_graph,
    external_data_files,
    graph_specs,
    tile_input_shapes,
)
from strsr.inference.manifest import (
    FORMAT,
    file_record,
    inside,
    is_current,
    read_manifest,
    referenced_files,
    tool_versions,
    weights_hash,
    write_manifest,
)
from strsr.io.atomic import atomic_write
from strsr.io.images import load_image
from strsr.model.build import build_inference_generator
from strsr.model.conditioning import NullConditioning
from strsr.spec import SpecError

log = logging.getLogger("strsr.export")

# ONNX Runtime vs PyTorch at the same precision; fp16 graphs accumulate differently from PyTorch's CPU kernels.
# fp8 graphs are exported (and checked) in fp32, then the DiT is quantised: its error is recorded, not bounded.
PARITY_ATOL = {"fp32": 1e-4, "fp16": 2e-2, "fp8": 1e-4}
_MODEL_PRECISION = {"fp32": "fp32", "fp16": "fp16", "fp8": "fp32"}
CALIBRATION_CROP = 256  # output pixels per calibration tile where the DiT graph is dynamic


def require_tensorrt() -> None:
    """Fail early and clearly where TensorRT engines cannot be built."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        raise SystemExit(
            "strsr-export: --trt needs TensorRT, which is not installed here (pip install 'strsr[trt]' on a machine "
            "with an NVIDIA GPU and NVIDIA's package index); ONNX export works without it"
        ) from None
    if not torch.cuda.is_available():
        raise SystemExit("strsr-export: --trt needs an NVIDIA GPU; none is visible (CUDA unavailable)")


def export(spec: ExportSpec) -> dict:
    """Merge, export and check; returns the manifest."""
    if spec.model.quantize != "none" or spec.model.compile:
        raise SpecError("strsr-export: --quantize and --compile are for PyTorch inference; exported graphs take "
                        "--precision fp16|fp8 (TensorRT compiles them itself)")  # fmt: skip
    # the inference model: LoRA folded into the weights, so the graphs carry no adapter branches
    model = build_inference_generator(spec.model.replace(precision=_MODEL_PRECISION[spec.precision],
                                                        lora_mode="merged"))
    spec.output.mkdir(parents=True, exist_ok=True)
    key = {"format": FORMAT, "preset": spec.model.preset, "precision": spec.precision, "opset": OPSET,
           "attention_op": spec.attention_op,
           "weights_sha256": weights_hash(model), "tile": spec.tile,
           "conditioning": _conditioning_entry(model),
           # what the runtime feeds the encoder: "sample" graphs take posterior noise of (B, C, H/s, W/s)
           "latent": {"mode": "sample" if model.codec.samples else "mode", "channels": model.preset.latents.channels,
                      "vae_scale": model.preset.latents.vae_scale}}  # fmt: skip
    if spec.precision == "fp8":
        key["calibration"] = {"images": [p.name for p in spec.calibration], "tiles": spec.calibration_tiles}
    current = not spec.force and is_current(spec.output, key)
    # one conditioning for tracing, calibration and engine shapes (the VLM reads the first calibration image)
    condition = reference_condition(model, spec.calibration[0]) if not current or spec.trt else None
    if current:
        log.info("%s: ONNX graphs are current (same weights hash and settings)", spec.output)
        manifest = read_manifest(spec.output)
    else:
        manifest = _export_onnx(model, spec, key, condition)
    if spec.trt:
        manifest = _build_engines(model, spec, manifest, condition.shape[1])
    return manifest


def _conditioning_entry(model) -> dict:
    """How the exported pipeline is conditioned: stored tokens (none, text), or the VLM in PyTorch + projector."""
    if not model.image_conditioned:
        kind = "none" if isinstance(model.conditioning, NullConditioning) else "text"
        return {"mode": kind, "file": "condition.safetensors"}
    encoder = model.conditioning.encoder
    return {"mode": "vlm", "prompt": encoder.prompt, "max_tokens": encoder.max_tokens,
            "vlm_width": model.conditioning.adapter.vlm_width}  # fmt: skip


def reference_condition(model, image: Path) -> torch.Tensor:
    """The conditioning tokens (1, L, D) for a real LR image (the VLM reads it; the other modes ignore it)."""
    with torch.no_grad():
        lr = load_image(image).rgb[None].to(model.device)
        return model.condition_for(lr).tokens.detach().float().cpu().contiguous()


def _export_onnx(model, spec: ExportSpec, key: dict, condition: torch.Tensor) -> dict:
    if not model.image_conditioned:  # a fixed embedding: stored once, fed to every DiT call
        atomic_write(spec.output / "condition.safetensors", lambda tmp: save_file({"condition": condition}, tmp))
    graphs = {}
    for graph in graph_specs(model, spec.tile, condition.shape[1]):
        start = time.perf_counter()
        path = export_graph(model, graph, spec.output, spec.attention_op)
        seconds = time.perf_counter() - start
        error = check_parity(model, graph, path)
        if error > PARITY_ATOL[spec.precision]:
            raise AssertionError(f"{path.name}: ONNX Runtime differs from PyTorch by {error:.3g} "
                                 f"(> {PARITY_ATOL[spec.precision]})")  # fmt: skip
        log.info("%-12s exported in %5.1f s, ORT parity max abs diff %.2e", graph.name, seconds, error)
        quantization = None
        if spec.precision == "fp8" and graph.name == "dit_onestep":
            quantization = _quantize_fp8(model, graph, path, spec, condition)
        data_files = external_data_files(path)
        graphs[graph.name] = {
            "file": path.name,
            **({"external_data": data_files} if data_files else {}),
            "inputs": {name: [graph.dynamic.get(name, {}).get(i, n) for i, n in enumerate(shape)]
                       for name, shape in graph.inputs.items()},  # fmt: skip
            "outputs": list(graph.outputs),
            "parity_max_abs_diff": error,
            "export_seconds": seconds,
            **({"quantization": quantization} if quantization else {}),
        }
    manifest = {
        **key,
        "family": model.preset.family,
        "t1": model.t1,
        "pixel_multiple": model.preset.latents.pixel_multiple,
        "tile": spec.tile,
        **({} if model.image_conditioned else {"condition_file": "condition.safetensors"}),
        "graphs": graphs,
        "tools": tool_versions(),
    }
    return write_with_file_records(spec.output, manifest)


def write_with_file_records(out_dir: Path, manifest: dict) -> dict:
    """Record the size and sha256 of every file the manifest names, then write it."""
    names = referenced_files(out_dir, manifest)
    manifest = {**manifest, "files": {name: file_record(inside(out_dir, name, what)) for name, what in names.items()}}
    write_manifest(out_dir, manifest)
    return manifest


def _quantize_fp8(model, graph, path: Path, spec: ExportSpec, condition: torch.Tensor) -> dict:
    """FP8 Q/DQ for the DiT graph, calibrated on real LR tiles; records its error against fp32 PyTorch."""
    from strsr.export.fp8 import calibration_states, quantize_dit_fp8

    start = time.perf_counter()
    crop = spec.tile if not graph.dynamic else CALIBRATION_CROP  # a static graph takes whole tiles only
    states = calibration_states(model, list(spec.calibration), crop, spec.calibration_tiles)
    condition = condition.expand(states.shape[0], -1, -1)
    summary = quantize_dit_fp8(path, {"state": states.numpy(), "condition": condition.contiguous().numpy()})
    summary["max_abs_diff_vs_fp32"] = check_parity(model, graph, path)
    summary["seconds"] = time.perf_counter() - start
    log.info("%-12s FP8: %d tensors quantised in %4.1f s, max abs diff vs fp32 %.3g", graph.name,
             summary["quantized_tensors"], summary["seconds"], summary["max_abs_diff_vs_fp32"])  # fmt: skip
    return summary


def _build_engines(model, spec: ExportSpec, manifest: dict, condition_tokens: int) -> dict:
    """TensorRT engines beside the graphs, unless the manifest records current ones for this TensorRT and GPU."""
    import tensorrt as trt

    from strsr.export.tensorrt import build_engines
    from strsr.inference.manifest import ManifestError
    from strsr.inference.tensorrt_runtime import check_engine_host, gpu_identity

    section = manifest.get("tensorrt")
    try:
        check_engine_host(section, trt_version=trt.__version__, **gpu_identity(), where=spec.output)
        present = all((spec.output / e["file"]).is_file() for e in section["engines"].values())
    except ManifestError:
        present = False
    if present and not spec.force and section.get("weights_sha256") == manifest["weights_sha256"]:
        log.info("%s: TensorRT engines are current for this GPU and TensorRT version", spec.output)
        return manifest
    section = build_engines(spec.output, manifest, tile_input_shapes(model, spec.tile, condition_tokens))
    manifest = {**manifest, "tensorrt": {**section, "weights_sha256": manifest["weights_sha256"]}}
    return write_with_file_records(spec.output, manifest)
