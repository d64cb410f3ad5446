"""GPU targets the kernels ship launch configurations for, and compiling a launch for one of them without a GPU.

Each op keeps a table of launch configurations per architecture (`device_table_arch` picks one), because what fits
differs: the opt-in shared memory per block is 163 KiB on sm_80 (A100), 99 KiB on sm_86/sm_89 (RTX 30xx/40xx,
A6000, L40S) and 227 KiB on sm_90 (H100/H200) (CUDA C Programming Guide, "Compute capabilities", technical
specifications). A device whose architecture has no table of its own gets the table of the largest known
architecture whose limit it meets (a Blackwell sm_100 part takes sm_90's, an sm_120 one sm_86's); Triton's
autotuner then still skips a configuration that fails to launch there.

`compile_for_target` compiles one kernel launch (the same arguments and keywords as `kernel[grid](...)`) for a
named target, e.g. sm_90, with the ptxas that ships in the Triton wheel, and reports its shared memory and register
spills. That is what `tests/test_kernel_targets.py` runs on a CPU-only machine for every configuration shipped. It
binds the arguments with Triton's own launcher code (`JITFunction.create_binder`'s pieces), so the specialisation
(pointer alignment, integers divisible by 16 or equal to 1) is the one a real launch on that GPU would compile.
Triton is imported inside the functions: importing this module needs none.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import re
from typing import Any, Sequence

import torch

KIB = 1024
# Opt-in shared memory per block (cudaDevAttrMaxSharedMemoryPerBlockOptin), what Triton checks before a launch.
SHARED_MEMORY_LIMITS = {80: 163 * KIB, 86: 99 * KIB, 89: 99 * KIB, 90: 227 * KIB}
TABLE_ARCHS = (80, 86, 90)  # architectures with launch tables, each compiled by the CPU guard


def device_arch(device: torch.device) -> int:
    """10 * major + minor compute capability of a CUDA device, e.g. 90 for an H100."""
    major, minor = torch.cuda.get_device_capability(device)
    return 10 * major + minor


def table_arch(arch: int, shared_memory: int | None = None) -> int:
    """The architecture whose launch table sm_`arch` uses: its own, else the table architecture with the most shared
    memory that `shared_memory` (bytes per block) still holds, e.g. sm_89 -> 86, sm_100 -> 90, sm_120 -> 86; the
    smallest table when nothing is known or nothing fits."""
    if arch in TABLE_ARCHS:
        return arch
    fitting = [a for a in TABLE_ARCHS if shared_memory is not None and SHARED_MEMORY_LIMITS[a] <= shared_memory]
    smallest = min(TABLE_ARCHS, key=lambda a: SHARED_MEMORY_LIMITS[a])
    return max(fitting, key=lambda a: (SHARED_MEMORY_LIMITS[a], a)) if fitting else smallest


@functools.cache
def device_table_arch(device: torch.device) -> int:
    """The launch-table architecture (one of TABLE_ARCHS) for a CUDA device."""
    props = torch.cuda.get_device_properties(device)
    return table_arch(device_arch(device), getattr(props, "shared_memory_per_block_optin", None))


@dataclasses.dataclass(frozen=True)
class CompileReport:
    """What ptxas reports for one compiled kernel."""

    name: str
    arch: int
    shared: int  # bytes of shared memory per block (static + the dynamic amount Triton launches with)
    registers: int  # per thread
    spill_stores: int  # bytes per thread
    spill_loads: int

    @property
    def fits(self) -> bool:
        return self.shared <= SHARED_MEMORY_LIMITS[self.arch]


def compile_for_target(kernel, args: Sequence[Any], kwargs: dict[str, Any], arch: int) -> CompileReport:
    """Compile `kernel[grid](*args, **kwargs)` for sm_`arch` without a GPU and report its resources.

    args/kwargs as for a launch: tensors (any device: only dtype and alignment matter), ints, floats, constexprs
    and the launch options (num_warps, num_stages). Raises what Triton raises if the kernel does not compile.
    Always compiles afresh (Triton's cache would skip ptxas, whose log is where the spills are reported).
    """
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import create_function_from_signature

    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound_args, specialization, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound_args, specialization, options)
    log = io.StringIO()
    with triton.knobs.compilation.scope(), triton.knobs.nvidia.scope(), contextlib.redirect_stdout(log):
        triton.knobs.compilation.always_compile = True
        triton.knobs.nvidia.dump_ptxas_log = True  # Triton prints ptxas -v's report
        compiled = triton.compile(ASTSource(kernel, signature, constexprs, attrs), target=target,
                                  options=options.__dict__)  # fmt: skip
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log.getvalue())
    registers = re.search(r"Used (\d+) registers", log.getvalue())
    if spills is None or registers is None:
        raise RuntimeError(f"no ptxas -v report for {kernel.fn.__name__}:\n{log.getvalue()}")
    return CompileReport(kernel.fn.__name__, arch, compiled.metadata.shared, int(registers.group(1)),
                         int(spills.group(1)), int(spills.group(2)))  # fmt: skip


def shipped_cases(arch: int):
    """Every kernel launch configuration strsr ships for table architecture `arch`: (label, kernel, args, kwargs,
    the spill bytes per thread it may have)."""
    from strsr.kernels import attention_triton, spectral_sw_triton

    yield from attention_triton.compile_cases(arch)
    yield from spectral_sw_triton.compile_cases(arch)


def main(argv: list[str] | None = None) -> int:
    """`python -m strsr.kernels.targets [--arch 80 86 90]`: compile every shipped configuration for each target and
    print one JSON line per kernel (what tests/test_kernel_targets.py asserts on); exit 1 if any does not fit or
    spills over its bound."""
    import argparse
    import json
    import os

    parser = argparse.ArgumentParser(prog="python -m strsr.kernels.targets", description=main.__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, nargs="+", default=list(TABLE_ARCHS), choices=TABLE_ARCHS)
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        parser.error("unset TRITON_INTERPRET: interpreted kernels cannot be compiled")
    import triton

    failed = False
    for arch in args.arch:
        for label, kernel, kernel_args, kwargs, spill_bound in shipped_cases(arch):
            record = {"arch": arch, "label": label, "triton": triton.__version__, "spill_bound": spill_bound}
            try:
                report = compile_for_target(kernel, kernel_args, kwargs, arch)
                record.update(dataclasses.asdict(report), limit=SHARED_MEMORY_LIMITS[arch], fits=report.fits)
                failed |= not report.fits or report.spill_stores > spill_bound
            except Exception as err:  # noqa: BLE001  (reported, and the next configuration still compiles)
                record["error"] = f"{type(err).__name__}: {err}"[:500]
                failed = True
            print(json.dumps(record), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
