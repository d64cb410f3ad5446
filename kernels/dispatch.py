"""Which implementation ("kernel backend") a kernel op runs: an op's `backend=` argument, else the innermost
`use_kernel_backend()` block, else the STRSR_KERNEL_BACKEND environment variable.

Values: "auto" (default), "triton", "reference". "auto" picks Triton for CUDA tensors, or anywhere under
TRITON_INTERPRET=1 (the CPU interpreter the tests use), else the plain-PyTorch reference. An explicit "triton" that
cannot run is an error, never a silent fallback. Triton is imported lazily, so `import strsr` works without it.

"Kernel backend" is only this choice of implementation inside `strsr.kernels`; the DiT's attention backend
(`--attention sdpa|triton|triton-fused`), the inference runtime (`--backend torch|onnx|trt`) and the benchmark's
backends are other things with their own names.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import os

import torch

KERNEL_BACKENDS = ("auto", "triton", "reference")
KERNEL_BACKEND_ENV = "STRSR_KERNEL_BACKEND"
_override: contextvars.ContextVar[str | None] = contextvars.ContextVar("strsr_kernel_backend", default=None)


class KernelBackendError(RuntimeError):
    """A requested kernel backend cannot run here; the message says why."""


@contextlib.contextmanager
def use_kernel_backend(kernel_backend: str):
    """Run kernel ops in this block on `kernel_backend` unless a call passes its own."""
    _check_name(kernel_backend)
    token = _override.set(kernel_backend)
    try:
        yield
    finally:
        _override.reset(token)


def _check_name(kernel_backend: str) -> None:
    if kernel_backend not in KERNEL_BACKENDS:
        raise ValueError(f"unknown kernel backend {kernel_backend!r}; choose one of {', '.join(KERNEL_BACKENDS)}")


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def resolve_kernel_backend(kernel_backend: str | None, tensor: torch.Tensor) -> str:
    """"triton" or "reference" for an op on `tensor`, following the precedence above."""
    requested = kernel_backend or _override.get() or os.environ.get(KERNEL_BACKEND_ENV, "auto")
    _check_name(requested)
    runnable = triton_available() and (tensor.is_cuda or interpreting())
    if requested == "auto":
        return "triton" if runnable else "reference"
    if requested == "triton" and not runnable:
        if not triton_available():
            raise KernelBackendError("kernel backend 'triton' requested but triton is not installed")
        raise KernelBackendError(
            f"kernel backend 'triton' requested for a {tensor.device.type} tensor: Triton needs a CUDA device "
            "(or TRITON_INTERPRET=1 for the slow CPU interpreter)"
        )
    return requested
