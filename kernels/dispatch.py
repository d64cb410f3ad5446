"""Which implementation a kernel op runs: `backend=` argument, else `use_backend()`, else STRSR_KERNEL_BACKEND.

Values: "auto" (default), "triton", "reference". "auto" picks Triton for CUDA tensors, or anywhere under
TRITON_INTERPRET=1 (the CPU interpreter used by the tests), else the reference. An explicit "triton" that cannot run
is an error, never a silent fallback. Triton is imported lazily, so `import strsr` works without it.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import os

import torch

BACKENDS = ("auto", "triton", "reference")
_override: contextvars.ContextVar[str | None] = contextvars.ContextVar("strsr_kernel_backend", default=None)


class KernelBackendError(RuntimeError):
    """A requested kernel backend cannot run here; the message says why."""


@contextlib.contextmanager
def use_backend(backend: str):
    """Run kernel ops in this block with `backend` unless a call passes its own."""
    _check_name(backend)
    token = _override.set(backend)
    try:
        yield
    finally:
        _override.reset(token)


def _check_name(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown kernel backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def resolve_backend(backend: str | None, tensor: torch.Tensor) -> str:
    """"triton" or "reference" for an op on `tensor`, following the precedence above."""
    requested = backend or _override.get() or os.environ.get("STRSR_KERNEL_BACKEND", "auto")
    _check_name(requested)
    runnable = triton_available() and (tensor.is_cuda or interpreting())
    if requested == "auto":
        return "triton" if runnable else "reference"
    if requested == "triton" and not runnable:
        if not triton_available():
            raise KernelBackendError("backend 'triton' requested but triton is not installed")
        raise KernelBackendError(
            f"backend 'triton' requested for a {tensor.device.type} tensor: Triton needs a CUDA device "
            "(or TRITON_INTERPRET=1 for the slow CPU interpreter)"
        )
    return requested
