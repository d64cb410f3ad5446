"""strsr: one-step diffusion-transformer x4 super-resolution (StrSR) on diffusers backbones."""

from importlib import import_module

__version__ = "0.1.0"

# Public names resolve lazily, so `import strsr` stays cheap (no diffusers/transformers import until used).
_EXPORTS = {
    "SuperResolver": "strsr.pipeline",
    "StrSRGenerator": "strsr.model",
    "build_generator": "strsr.build",
    "get_preset": "strsr.presets",
    "PRESETS": "strsr.presets",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'strsr' has no attribute {name!r}")
