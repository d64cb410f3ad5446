"""Regional compilation of the DiT for inference: `torch.compile` on each repeated transformer block.

The blocks of a DiT are a few classes repeated many times (FLUX.2: 5 double-stream + 20 single-stream blocks in the
4B; Z-Image: 30 main + 4 refiner blocks of one class), so compiling each block instead of the whole model compiles
one graph per block class that every instance reuses: compile time of a block or two, the runtime of a full
compile's fused kernels. diffusers' `compile_repeated_blocks` finds the classes from the model's `_repeated_blocks`.
Shapes are static (`dynamic=False`): the official tile plan cuts every tile to the full tile size (the last one flush
with the edge), so one graph serves all of them; an image smaller than a tile compiles once more at its size.
"""

from __future__ import annotations

from torch import nn

from strsr.model.lora import base_transformer

# torch.compile's default backend (Triton kernels on a GPU, C++/OpenMP on a CPU); tests on a small CPU pass
# "aot_eager", which traces the same graphs without generating code.
DEFAULT_BACKEND = "inductor"


def repeated_blocks(transformer: nn.Module) -> list[nn.Module]:
    """The transformer's repeated blocks, the modules regional compilation compiles."""
    model = base_transformer(transformer)
    classes = set(getattr(model, "_repeated_blocks", ()))
    return [m for m in model.modules() if type(m).__name__ in classes]


def compile_blocks(transformer: nn.Module, *, backend: str = DEFAULT_BACKEND) -> int:
    """Compile each repeated block of `transformer` in place (compilation itself happens at the first call of each
    block class and shape); returns the number of blocks."""
    blocks = repeated_blocks(transformer)
    if not blocks:
        raise ValueError(f"{type(base_transformer(transformer)).__name__} names no repeated blocks to compile")
    base_transformer(transformer).compile_repeated_blocks(backend=backend, dynamic=False)
    return len(blocks)


def is_compiled(module: nn.Module) -> bool:
    """True once `module.compile()` has wrapped its forward."""
    return getattr(module, "_compiled_call_impl", None) is not None
