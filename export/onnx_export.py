"""Export the three stages to ONNX with the dynamo exporter, then check each in ONNX Runtime against PyTorch.

Graphs are traced at batch 2 and a non-square size (torch.export specialises dimensions of size 0 and 1), with the
batch and spatial dimensions dynamic; the parity check then runs at a different size than the one traced.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from strsr.export.cli import ATTENTION_OPS
from strsr.export.graphs import DitOneStepGraph, ProjectorGraph, VaeDecoderGraph, VaeEncoderGraph, exportable
from strsr.export.onnx_attention import use_onnxruntime_attention
from strsr.io.atomic import atomic_write
from strsr.model.generator import StrSRGenerator

log = logging.getLogger("strsr.export")

# 23: scaled_dot_product_attention exports as one fused ONNX `Attention` node (strsr.export.onnx_attention)
OPSET = 23
_EXTERNAL_DATA_BYTES = 2 * 1024**3  # protobuf's limit: larger graphs keep their weights beside them


@dataclass(frozen=True)
class GraphSpec:
    name: str
    inputs: dict[str, tuple[int, ...]]  # traced example shapes
    outputs: tuple[str, ...]
    dynamic: dict[str, dict[int, str]]  # input -> {axis: dim name}; empty: a static graph for one tile shape
    derived: dict[str, tuple[str, int]] = field(default_factory=dict)  # dim name -> (base dim name, multiplier)


def graph_specs(model: StrSRGenerator, tile: int, condition_tokens: int) -> list[GraphSpec]:
    """Example shapes: batch 2, a non-square tile, so every exported dimension stays symbolic.

    Z-Image's DiT computes per-sample sequence lengths in Python, which tracing bakes in: its DiT graph is static,
    built for one `tile` x `tile` output tile at batch 1 and `condition_tokens` conditioning tokens (the VAE graphs
    stay dynamic). A VLM-conditioned model adds the adapter (`projector`: VLM features -> conditioning tokens).
    """
    multiple = model.preset.latents.pixel_multiple
    height, width = 2 * multiple, 3 * multiple
    state_channels, state_scale = _state_geometry(model)
    state = (2, state_channels, height // state_scale, width // state_scale)
    cond = (2, 3, model.preset.condition_width)  # 3 tokens: a traced length of 1 would be specialised
    image_dims = {0: "batch", 2: "height", 3: "width"}
    state_dims = {0: "batch", 2: "state_height", 3: "state_width"}
    if model.preset.family == "zimage":
        tile_state = (1, state_channels, tile // state_scale, tile // state_scale)
        dit = GraphSpec("dit_onestep", {"state": tile_state, "condition": (1, condition_tokens, cond[2])}, ("z0",), {})
    else:
        dit = GraphSpec("dit_onestep", {"state": state, "condition": cond}, ("z0",),
                        {"state": state_dims, "condition": {0: "batch", 1: "condition_tokens"}})  # fmt: skip
    encoder = GraphSpec("vae_encoder", {"image": (2, 3, height, width)}, ("state",), {"image": image_dims})
    if model.codec.samples:  # the posterior noise comes in beside the image; its sides are the image's over s
        scale = model.preset.latents.vae_scale
        noise = model.codec.latent_shape((2, 3, height, width))
        encoder = GraphSpec("vae_encoder", {"image": (2, 3, height, width), "noise": noise}, ("state",),
                            {"image": image_dims, "noise": {0: "batch", 2: "latent_height", 3: "latent_width"}},
                            {"height": ("latent_height", scale), "width": ("latent_width", scale)})  # fmt: skip
    specs = [
        encoder,
        dit,
        GraphSpec("vae_decoder", {"state": state}, ("image",), {"state": state_dims}),
    ]
    if model.image_conditioned:
        features = (2, 3, model.conditioning.adapter.vlm_width)
        specs.append(GraphSpec("projector", {"features": features}, ("condition",),
                               {"features": {0: "batch", 1: "condition_tokens"}}))  # fmt: skip
    return specs


def _state_geometry(model: StrSRGenerator) -> tuple[int, int]:
    """Channels of the state the Euler step acts on, and pixels per state position."""
    spec = model.preset.latents
    if model.preset.family == "flux2":
        return spec.channels * 4, spec.pixel_multiple  # 2x2 patchified latents
    return spec.channels, spec.vae_scale


def tile_input_shapes(model: StrSRGenerator, tile: int, condition_tokens: int) -> dict[str, dict[str, tuple]]:
    """Each graph's input shapes for one full `tile` x `tile` output tile at batch 1 (what engines optimise for)."""
    channels, scale = _state_geometry(model)
    state = (1, channels, tile // scale, tile // scale)
    encoder = {"image": (1, 3, tile, tile)}
    if model.codec.samples:
        encoder["noise"] = model.codec.latent_shape((1, 3, tile, tile))
    shapes = {"vae_encoder": encoder,
              "dit_onestep": {"state": state, "condition": (1, condition_tokens, model.preset.condition_width)},
              "vae_decoder": {"state": state}}  # fmt: skip
    if model.image_conditioned:
        shapes["projector"] = {"features": (1, condition_tokens, model.conditioning.adapter.vlm_width)}
    return shapes


def _module(model: StrSRGenerator, name: str) -> torch.nn.Module:
    graphs = {"vae_encoder": VaeEncoderGraph, "dit_onestep": DitOneStepGraph, "vae_decoder": VaeDecoderGraph,
              "projector": ProjectorGraph}  # fmt: skip
    return graphs[name](model).eval()


def _example(spec: GraphSpec, seed: int, scale: int = 1) -> dict[str, torch.Tensor]:
    """Inputs for `spec`, with spatial sizes multiplied by `scale` (a size other than the traced one)."""
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, shape in spec.inputs.items():
        shape = list(shape)
        for axis in spec.dynamic.get(name, {}):
            if axis >= 2:
                shape[axis] *= scale
        tensors[name] = torch.rand(shape, generator=gen) * 2 - 1
    return tensors


def export_graph(model: StrSRGenerator, spec: GraphSpec, out_dir: Path, attention_op: str = "onnxruntime") -> Path:
    """Write `<out_dir>/<name>.onnx` atomically (a temporary file in the same folder, then rename), its attention
    as `attention_op` says: "onnx" (the standard Attention node, for TensorRT) or "onnxruntime" (ONNX Runtime's
    fused MultiHeadAttention)."""
    path = _export_graph(model, spec, out_dir)
    if attention_op == "onnxruntime":
        rewrite_graph(path, use_onnxruntime_attention)
    elif attention_op != "onnx":
        raise ValueError(f"unknown attention op {attention_op!r}; choose from {', '.join(ATTENTION_OPS)}")
    return path


def rewrite_graph(path: Path, rewrite) -> None:
    """Apply `rewrite(model_proto)` to the graph file at `path`; weights kept outside it stay where they are."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    if rewrite(model):
        atomic_write(path, lambda tmp: onnx.save_model(model, tmp))


def _export_graph(model: StrSRGenerator, spec: GraphSpec, out_dir: Path) -> Path:
    import onnx
    from torch.export import Dim

    module = _module(model, spec.name)
    dims: dict[str, Dim] = {}
    for name, (base, factor) in spec.derived.items():  # e.g. the image's height as 8 x the latent's
        dims[name] = dims.setdefault(base, Dim(base, min=1, max=1 << 11)) * factor
    dynamic_shapes = {
        name: {axis: dims.setdefault(dim, Dim(dim, min=1, max=1 << 14)) for axis, dim in axes.items()}
        for name, axes in spec.dynamic.items()
    } or None
    example = _example(spec, seed=0)
    with exportable(model), torch.no_grad():
        program = torch.onnx.export(module, tuple(example.values()), dynamo=True, input_names=list(spec.inputs),
                                    output_names=list(spec.outputs), dynamic_shapes=dynamic_shapes,
                                    opset_version=OPSET, verbose=False)  # fmt: skip
    # protobuf cannot even measure a message over 2 GB, so decide from the weights' size
    weight_bytes = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    target = out_dir / f"{spec.name}.onnx"
    if weight_bytes < _EXTERNAL_DATA_BYTES * 0.9:
        return atomic_write(target, lambda tmp: onnx.save_model(program.model_proto, tmp))
    # Weights go to <name>.onnx.data, which the graph names: stage both under their final names, then publish.
    staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{spec.name}."))
    try:
        program.save(str(staging / target.name), external_data=True)
        publish_staged(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def publish_staged(staging: Path, out_dir: Path) -> None:
    """Move a staged graph and its external data into `out_dir`: the data first and the graph last, so a complete
    graph never points at missing weights."""
    for produced in sorted(staging.iterdir(), key=lambda p: p.suffix == ".onnx"):
        os.chmod(produced, 0o644)
        os.replace(produced, out_dir / produced.name)


def external_data_files(path: Path) -> list[str]:
    """The files (beside the graph) holding its external weights, by the names the graph gives them."""
    import onnx
    from onnx.external_data_helper import uses_external_data as tensor_uses_external_data

    graph = onnx.load(str(path), load_external_data=False).graph
    names = {entry.value for t in graph.initializer if tensor_uses_external_data(t)
             for entry in t.external_data if entry.key == "location"}  # fmt: skip
    return sorted(names)


def uses_external_data(path: Path) -> bool:
    return bool(external_data_files(path))


def check_parity(model: StrSRGenerator, spec: GraphSpec, path: Path, scale: int = 2) -> float:
    """Max abs difference between ONNX Runtime (CPU) and PyTorch at a size other than the traced one."""
    import onnxruntime as ort

    example = _example(spec, seed=1, scale=scale)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {k: v.numpy() for k, v in example.items()})[0]
    with torch.no_grad():
        want = _module(model, spec.name)(*example.values()).float().numpy()
    if got.shape != want.shape:
        raise AssertionError(f"{path.name}: ONNX output {got.shape} differs from PyTorch {want.shape}")
    return float(np.abs(got - want).max())
