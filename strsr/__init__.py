"""strsr: one-step diffusion-transformer x4 super-resolution (StrSR) on diffusers backbones.

Layout (dependencies run one way, top to bottom): `spec` and `presets` (plain data, no torch) <- `io` (images,
output names, atomic writes) <- `model` (the generator and its parts, checkpoints, `build_generator`) <- `inference`
(tiling, `SuperResolver`, the ONNX Runtime and TensorRT runtimes, strsr-upscale) <- `evaluation`, and the training
side: `degradation`, `losses`, then `strsr.train`; `strsr.export` and `strsr.bench` sit on top; `strsr.kernels` needs
only torch and triton.
"""

from importlib import import_module

__version__ = "0.1.0"

# Public names resolve lazily, so `import strsr` stays cheap (no diffusers/transformers import until used).
_EXPORTS = {
    "SuperResolver": "strsr.inference.pipeline",
    "StrSRPipeline": "strsr.inference.diffusers_pipeline",
    "StrSRGenerator": "strsr.model.generator",
    "build_generator": "strsr.model.build",
    "ModelSpec": "strsr.spec",
    "get_preset": "strsr.presets",
    "PRESETS": "strsr.presets",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'strsr' has no attribute {name!r}")
