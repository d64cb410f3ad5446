"""Test fixture: two tiny hand-made exports in the strsr.export.v1 layout whose encoders differ only in the latent
mode, for the C++ runtime's noise path (no named preset has a small KL VAE, so strsr-export cannot make one).

    DIR/sample/  "latent": {"mode": "sample", "channels": 48, "vae_scale": 4}: state = SpaceToDepth(image, 4) + noise
    DIR/mode/    "latent": {"mode": "mode"}:                                   state = SpaceToDepth(image, 4)

The DiT passes the state through (plus 0 x the mean of the condition, so that input is used) and the decoder is
DepthToSpace(state, 4): the output is the encoder's image plus the noise laid out as pixels, so a test can check
every draw exactly. Each manifest records its files' sizes and sha256 as strsr-export does (strsr.inference.manifest).
Usage: python make_sampling_export.py DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper
from safetensors.numpy import save_file

from strsr.inference.manifest import file_record, referenced_files

CHANNELS, SCALE, CONDITION_WIDTH = 48, 4, 8
OPSET = 17


def tensor(name: str, dims: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def save(graph: onnx.GraphProto, path: Path) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    onnx.save(model, path)


def encoder(samples: bool) -> onnx.GraphProto:
    image = tensor("image", ["batch", 3, "height", "width"])
    state = tensor("state", ["batch", CHANNELS, "latent_height", "latent_width"])
    if not samples:
        nodes = [helper.make_node("SpaceToDepth", ["image"], ["state"], blocksize=SCALE)]
        return helper.make_graph(nodes, "vae_encoder", [image], [state])
    noise = tensor("noise", ["batch", CHANNELS, "latent_height", "latent_width"])
    nodes = [
        helper.make_node("SpaceToDepth", ["image"], ["latent"], blocksize=SCALE),
        helper.make_node("Add", ["latent", "noise"], ["state"]),
    ]
    return helper.make_graph(nodes, "vae_encoder", [image, noise], [state])


def dit() -> onnx.GraphProto:
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    nodes = [
        helper.make_node("ReduceMean", ["condition"], ["mean"], keepdims=1),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["state", "nothing"], ["z0"]),
    ]
    state = ["batch", CHANNELS, "state_height", "state_width"]
    condition = tensor("condition", ["batch", "condition_tokens", CONDITION_WIDTH])
    return helper.make_graph(nodes, "dit_onestep", [tensor("state", state), condition], [tensor("z0", state)],
                             initializer=[zero])  # fmt: skip


def decoder() -> onnx.GraphProto:
    nodes = [helper.make_node("DepthToSpace", ["state"], ["image"], blocksize=SCALE, mode="DCR")]
    state = tensor("state", ["batch", CHANNELS, "state_height", "state_width"])
    return helper.make_graph(nodes, "vae_decoder", [state], [tensor("image", ["batch", 3, "height", "width"])])


def manifest(samples: bool) -> dict:
    encoder_inputs = {"image": ["batch", 3, "height", "width"]}
    if samples:
        encoder_inputs["noise"] = ["batch", CHANNELS, "latent_height", "latent_width"]
    state = ["batch", CHANNELS, "state_height", "state_width"]
    latent = {"mode": "sample", "channels": CHANNELS, "vae_scale": SCALE} if samples else {"mode": "mode"}
    return {
        "format": "strsr.export.v1", "preset": "tiny", "family": "flux2", "precision": "fp32", "opset": OPSET,
        "t1": 0.8, "pixel_multiple": 8, "tile": 64,
        "conditioning": {"mode": "none", "file": "condition.safetensors"},
        "latent": latent,
        "graphs": {
            "vae_encoder": {"file": "vae_encoder.onnx", "inputs": encoder_inputs, "outputs": ["state"]},
            "dit_onestep": {"file": "dit_onestep.onnx",
                            "inputs": {"state": state, "condition": ["batch", "condition_tokens", CONDITION_WIDTH]},
                            "outputs": ["z0"]},
            "vae_decoder": {"file": "vae_decoder.onnx", "inputs": {"state": state}, "outputs": ["image"]},
        },
    }  # fmt: skip


def write_export(out: Path, samples: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save(encoder(samples), out / "vae_encoder.onnx")
    save(dit(), out / "dit_onestep.onnx")
    save(decoder(), out / "vae_decoder.onnx")
    save_file({"condition": np.zeros((1, 2, CONDITION_WIDTH), np.float32)}, out / "condition.safetensors")
    content = manifest(samples)
    # every file recorded with its size and sha256, as strsr-export records them
    content["files"] = {name: file_record(out / name) for name in referenced_files(out, content)}
    (out / "manifest.json").write_text(json.dumps(content, indent=2))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="folder to write sample/ and mode/ into")
    out = p.parse_args(argv).out
    write_export(out / "sample", samples=True)
    write_export(out / "mode", samples=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
