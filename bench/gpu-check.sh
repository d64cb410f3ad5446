#!/usr/bin/env bash
# The one prepared GPU check (issue 19 §3): on a CUDA machine, in under 9 minutes, writes JSON to bench/results/:
#   <device>-env.json            GPU, compute capability, library versions
#   <device>-kernel-tests.json   the Triton kernel tests compiled for this GPU (STRSR_TEST_ON_GPU=1, no interpreter):
#                                attention fp32/fp16/bf16 forward and gradients, the spectral (FDL) kernels in fp32
#                                and fp64, and the sm_80/86/90 shared-memory guard
#   <device>-attention.json      Triton attention vs every SDPA backend at B1 H24 N4608 D128 bf16 (fwd, fwd+bwd)
#   <device>-fdl.json            the FDL pieces (fused kernel, reference, the official FDL's layer) at 512² and 1024²
#   <device>-pipeline-bf16.json  strsr-bench --res 1024, flux2-klein-4b --random-weights, eager and compile (bf16)
#   <device>-pipeline-fp8.json   the same with --quantize fp8 (torchao row-wise FP8), eager and compile
#   <device>-steps.json          each step's exit status, seconds and time limit
# Each step has its own time limit (530 s in all, so the whole check ends within 9 minutes) and a failing or timed-out
# step does not stop the others (the script exits 1 at the end).
#
# The GPU machine has torch 2.11, triton 3.6, transformers, peft and onnx, but not these; carry their wheels in
# .whl/ (gitignored), e.g. `pip download --no-deps -d .whl <name>==<version> ...` on a machine with an index. The
# versions are the ones strsr is tested with (this repo's venv); they are installed with --no-deps:
#   diffusers==0.42.1           the backbones (FLUX.2 klein, Z-Image) and their VAEs
#   importlib_metadata==10.2.0  diffusers' dependency, with zipp==4.1.2 and lazy-importer==0.1.0
#   torchao==0.18.0             --quantize fp8 / int8-weight
#   pytest==9.2.0               the kernel tests, with iniconfig==2.3.1, pluggy==1.7.0, pygments==2.21.0 if missing
# diffusers' other dependencies come with transformers; carry these too where the machine's are older than
# diffusers 0.42.1 asks: huggingface_hub==2.4.0 (>=1.32), safetensors==0.8.0 (>=0.8), Pillow==12.3.0. strsr itself
# is installed from this tree (`pip install --no-deps -e .`).
#
#   bash bench/gpu-check.sh [--wheels DIR]   on the GPU machine (DIR default .whl; absent: nothing installed)
#   bash bench/gpu-check.sh --dry-run        on any machine: every command, module, test file and flag it would
#                                            use is checked to exist and parse, in seconds (CI runs this)
set -uo pipefail
cd "$(dirname "$0")/.."

dry=0
wheels=.whl
while (($#)); do
    case "$1" in
        --dry-run) dry=1 ;;
        --wheels) wheels="$2"; shift ;;
        *) echo "gpu-check: unknown option $1 (use --dry-run or --wheels DIR)" >&2; exit 2 ;;
    esac
    shift
done

PY=${PYTHON:-python}
KERNEL_TESTS=(tests/test_attention_kernel.py tests/test_kernels_cuda.py tests/test_kernel_targets.py)
BENCH=(--res 1024 --preset flux2-klein-4b --random-weights --device cuda --runtimes eager,compile --warmup 2
       --repeats 10)
steps=()
failed=0

# step NAME LIMIT_S COMMAND...: run it under `timeout`, record its exit status and seconds
step() {
    local name=$1 limit=$2 start rc
    shift 2
    start=$(date +%s%N)
    echo "== $name (limit ${limit}s): $*"
    timeout --kill-after=10 "$limit" "$@"
    rc=$?
    ((rc == 0)) || { failed=1; echo "== $name: exit $rc" >&2; }
    steps+=("$name $rc $limit $((($(date +%s%N) - start) / 1000000))")
}

if ((dry)); then
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
    for tool in timeout "$PY"; do
        command -v "$tool" >/dev/null || { echo "gpu-check --dry-run: $tool not found" >&2; exit 1; }
    done
    # on a CPU: the benchmarks parse the flags they get on the GPU and say they need one (exit 0); the test files
    # and strsr-bench's flags are compiled and parsed, not run (CI's pytest run collects the tests themselves)
    step compile-kernel-tests 30 "$PY" -m py_compile "${KERNEL_TESTS[@]}"
    step kernel-benches 60 "$PY" -c 'import sys
from strsr.bench import kernels_attention, kernels_fdl
sys.exit(kernels_attention.main(["--json", sys.argv[1]]) or kernels_fdl.main(sys.argv[2:]))' \
        "$out/attention.json" --sizes 512 1024 --json "$out/fdl.json"
    for quantize in none fp8; do
        step "parse-pipeline-$quantize" 30 "$PY" -c 'import sys
from strsr.bench.pipeline_bench import parse
spec = parse(sys.argv[1:]).model
assert spec.mode == "none", f"random weights should not need --vlm, got conditioning {spec.mode}"' \
            "${BENCH[@]}" --quantize "$quantize" -o "$out/pipeline.json"
    done
    results=$out
    device=dry-run
else
    if [[ -d $wheels ]] && compgen -G "$wheels/*.whl" >/dev/null; then
        step install-wheels 40 "$PY" -m pip install -q --no-index --no-deps "$wheels"/*.whl
    fi
    step install-strsr 40 "$PY" -m pip install -q --no-deps --no-build-isolation -e .
    step imports 20 "$PY" -c 'import diffusers, pytest, torchao, triton; import strsr.model.build, strsr.bench.cli'
    results=bench/results
    mkdir -p "$results"
    device=$("$PY" -c 'import re, torch; print(re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name().lower()))') \
        || { echo "gpu-check: no CUDA device (use --dry-run on a machine without one)" >&2; exit 2; }
    "$PY" - "$results/$device-env.json" <<'EOF'
import json, sys
import torch, triton
versions = {"torch": torch.__version__, "triton": triton.__version__, "cuda": torch.version.cuda}
for name in ("diffusers", "transformers", "peft", "torchao"):
    try:
        versions[name] = __import__(name).__version__
    except ImportError as err:
        versions[name] = f"missing: {err}"
env = {"gpu": torch.cuda.get_device_name(), "capability": ".".join(map(str, torch.cuda.get_device_capability())),
       "memory_gib": torch.cuda.get_device_properties(0).total_memory / 2**30, **versions}
json.dump(env, open(sys.argv[1], "w"), indent=2)
print(env)
EOF
    step kernel-tests 100 env STRSR_TEST_ON_GPU=1 "$PY" -m pytest -q --import-mode=importlib -p no:cacheprovider \
        --junitxml "$results/$device-kernel-tests.xml" "${KERNEL_TESTS[@]}"
    "$PY" - "$results/$device-kernel-tests.xml" "$results/$device-kernel-tests.json" <<'EOF'
import json, sys
import xml.etree.ElementTree as ET
cases = []
for case in ET.parse(sys.argv[1]).iter("testcase"):
    outcome = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
    detail = next((c.get("message", "") for c in case if c.tag in ("failure", "error", "skipped")), "")
    cases.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                  "seconds": float(case.get("time", 0)), "detail": detail[:300]})
json.dump({"tests": cases, "counts": {o: sum(c["outcome"] == o for c in cases) for o in
           ("passed", "failure", "error", "skipped")}}, open(sys.argv[2], "w"), indent=2)
EOF
    step attention-bench 60 "$PY" -m strsr.bench.kernels_attention --json "$results/$device-attention.json"
    step fdl-bench 60 "$PY" -m strsr.bench.kernels_fdl --sizes 512 1024 --json "$results/$device-fdl.json"
    step pipeline-bf16 110 "$PY" -m strsr.bench.cli "${BENCH[@]}" -o "$results/$device-pipeline-bf16.json"
    step pipeline-fp8 100 "$PY" -m strsr.bench.cli "${BENCH[@]}" --quantize fp8 -o "$results/$device-pipeline-fp8.json"
fi

"$PY" - "$results/$device-steps.json" "$device" "${steps[@]}" <<'EOF'
import json, sys
rows = [arg.split() for arg in sys.argv[3:]]
steps = [{"step": n, "exit": int(rc), "limit_s": int(lim), "seconds": int(ms) / 1e3} for n, rc, lim, ms in rows]
json.dump({"dry_run": sys.argv[2] == "dry-run", "steps": steps}, open(sys.argv[1], "w"), indent=2)
for s in steps:
    print(f"{s['step']:<24} exit {s['exit']:<4} {s['seconds']:7.1f} s (limit {s['limit_s']} s)")
EOF
exit $failed
