"""Every Triton kernel configuration strsr ships, compiled for sm_80, sm_86 and sm_90 on this CPU (Triton's own
ptxas, no GPU): each must fit its architecture's shared memory per block and must not spill registers.

The compilation runs once, in a subprocess without TRITON_INTERPRET (`python -m strsr.kernels.targets`), since the
conftest turns the interpreter on for this whole session and interpreted kernels cannot be compiled. Before these
tables the fused-prologue forward needed 368 KiB on sm_90, the bf16 backward 105 KiB on sm_86, and the fp32
("ieee") attention spilled 14-69 KB per thread.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from strsr.kernels.targets import SHARED_MEMORY_LIMITS, TABLE_ARCHS, table_arch

KIB = 1024


try:
    from strsr.kernels.attention_triton import CONFIGS, FP32_SPILL_BOUND
    from strsr.kernels.targets import shipped_cases
except ImportError:  # no triton: the guard skips
    CONFIGS, FP32_SPILL_BOUND, shipped_cases = {}, 0, None


def _cases() -> list[tuple[int, str]]:
    if shipped_cases is None:
        return []
    return [(arch, label) for arch in TABLE_ARCHS for label, *_ in shipped_cases(arch)]


@pytest.fixture(scope="session")
def compiled():
    """{(arch, label): record} from compiling every shipped configuration for every table architecture."""
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    # one process per architecture, side by side: compiling is single-threaded (3.3 min in a row on 2 cores)
    runs = [subprocess.Popen([sys.executable, "-m", "strsr.kernels.targets", "--arch", str(arch)], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE) for arch in TABLE_ARCHS]  # fmt: skip
    try:
        outputs = [run.communicate(timeout=3000) for run in runs]
    finally:  # a timeout leaves no compiler running past the test
        for run in runs:
            run.kill()
    records = [json.loads(line) for out, _ in outputs for line in out.splitlines() if line.startswith("{")]
    if {r["arch"] for r in records} != set(TABLE_ARCHS):
        pytest.fail("strsr.kernels.targets printed no records for an architecture:\n"
                    + "\n".join(err[-2000:] for _, err in outputs))  # fmt: skip
    return {(r["arch"], r["label"]): r for r in records}


@pytest.mark.slow
@pytest.mark.triton
@pytest.mark.parametrize("arch,label", _cases(), ids=lambda v: f"sm_{v}" if isinstance(v, int) else v)
def test_shipped_config_fits_and_does_not_spill(compiled, arch, label):
    record = compiled.get((arch, label))
    assert record is not None, f"{label} was not compiled for sm_{arch}"
    assert "error" not in record, record["error"]
    assert record["shared"] <= SHARED_MEMORY_LIMITS[arch], (
        f"{label} needs {record['shared'] / KIB:.1f} KiB of shared memory on sm_{arch}, over its "
        f"{SHARED_MEMORY_LIMITS[arch] / KIB:.0f} KiB"
    )
    kernel, dtype_class = label.split()[:2]
    bound = record["spill_bound"]
    assert bound == (FP32_SPILL_BOUND if kernel in CONFIGS and dtype_class == "fp32" else 0) and bound <= 32
    assert record["spill_stores"] <= bound, f"{label} spills {record['spill_stores']} B/thread on sm_{arch}"


def test_every_kernel_has_a_table_for_every_architecture():
    pytest.importorskip("triton")

    for name, by_dtype in CONFIGS.items():
        for dtype_class, tables in by_dtype.items():
            assert sorted(tables) == sorted(TABLE_ARCHS), (name, dtype_class)
            assert all(tables[arch] for arch in TABLE_ARCHS), (name, dtype_class)


def test_architectures_without_a_table_borrow_one_that_fits():
    assert [table_arch(a) for a in TABLE_ARCHS] == list(TABLE_ARCHS)
    assert table_arch(89, 99 * KIB) == 86  # Ada: RTX 4090, L40S
    assert table_arch(87, 163 * KIB) == 80  # Orin
    assert table_arch(100, 227 * KIB) == 90  # Blackwell data-centre parts
    assert table_arch(120, 99 * KIB) == 86  # Blackwell consumer parts
    assert table_arch(75, 64 * KIB) == 86 and table_arch(75) == 86  # nothing fits / unknown: the smallest table
