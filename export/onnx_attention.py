"""Fused attention in the exported graphs, so no runtime builds the N x N score matrix.

The exporter (opset 23) turns every `scaled_dot_product_attention` into one ONNX `Attention` node. TensorRT (its
ONNX parser from 10.14) builds a fused attention from it, but ONNX Runtime's CPU kernel for that op materialises
the scores: 4.3 GB for one attention over the 16,384 tokens of a 1024-px tile of the tiny preset (measured with ONNX
Runtime 1.32). Its `com.microsoft.MultiHeadAttention` contrib op runs a flash-attention kernel instead (136 MB for
the same call, 4x faster), so exports for ONNX Runtime rewrite each `Attention` node into it:

    (B, H, N, D) --Transpose/Reshape--> (B, N, H*D) --MultiHeadAttention(num_heads=H)--> (B, N, H*D) --> (B, H, N, D)

Only the plain case is rewritten (no mask, no KV cache, not causal, no softcap), which is what the DiTs export.
"""

from __future__ import annotations

import numpy as np

MICROSOFT = "com.microsoft"


def _heads(model, name: str) -> int:
    values = {v.name: v for v in (*model.graph.value_info, *model.graph.input, *model.graph.output)}
    if name not in values:
        raise ValueError(f"attention input {name!r} has no recorded shape")
    dims = values[name].type.tensor_type.shape.dim
    if len(dims) != 4 or not dims[1].HasField("dim_value"):
        raise ValueError(f"attention input {name!r} is not (B, H, N, D) with a fixed head count")
    return dims[1].dim_value


def use_onnxruntime_attention(model) -> int:
    """Rewrite each plain `Attention` node of the onnx.ModelProto `model` (in place) into
    com.microsoft.MultiHeadAttention; returns how many were rewritten. Raises ValueError for an Attention node it
    cannot rewrite (a mask, a cache, causal)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    to_bsd = numpy_helper.from_array(np.array([0, 0, -1], dtype=np.int64), "strsr_attention_bsd")
    nodes, count = [], 0
    for node in graph.node:
        if node.op_type != "Attention" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = len([i for i in node.input if i]) == 3 and len([o for o in node.output if o]) == 1
        if not plain or attributes.get("is_causal", 0) or attributes.get("softcap", 0.0):
            raise ValueError(f"attention node {node.name!r} has a mask, a cache, causality or a softcap")
        heads = _heads(model, node.input[0])
        prefix = f"{node.name or node.output[0]}_mha"
        flat = []
        for i, name in enumerate(node.input[:3]):
            nodes.append(helper.make_node("Transpose", [name], [f"{prefix}_t{i}"], perm=[0, 2, 1, 3]))
            nodes.append(helper.make_node("Reshape", [f"{prefix}_t{i}", to_bsd.name], [f"{prefix}_f{i}"]))
            flat.append(f"{prefix}_f{i}")
        extra = {"scale": attributes["scale"]} if "scale" in attributes else {}
        nodes.append(helper.make_node("MultiHeadAttention", flat, [f"{prefix}_out"], domain=MICROSOFT,
                                      num_heads=heads, **extra))  # fmt: skip
        shape = numpy_helper.from_array(np.array([0, 0, heads, -1], dtype=np.int64), f"{prefix}_bshd")
        graph.initializer.append(shape)
        nodes.append(helper.make_node("Reshape", [f"{prefix}_out", shape.name], [f"{prefix}_bshd_out"]))
        nodes.append(helper.make_node("Transpose", [f"{prefix}_bshd_out"], [node.output[0]], perm=[0, 2, 1, 3]))
        count += 1
    if count:
        graph.initializer.append(to_bsd)
        del graph.node[:]
        graph.node.extend(nodes)
        if not any(o.domain == MICROSOFT for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid(MICROSOFT, 1))
    return count
