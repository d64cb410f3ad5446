"""`strsr-bench --res 1024`: per-stage latency, throughput and memory by backend, with FLOP counts, the fraction
of the GPU's dense peak, and the published references.

    strsr-bench --res 1024 --preset flux2-klein-4b --random-weights --backends eager,compile
    strsr-bench --preset tiny --device cpu --res 256 --json out/bench.json --plot out/bench.png

Each stage gets `--warmup` untimed calls (the first also compiles, and is reported as first_call_ms), then
`--repeats` timed calls after synchronising: CUDA events for PyTorch on a GPU, a wall clock otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from strsr.autoencoders import LATENT_MODES
from strsr.bench import backends as stage_sets
from strsr.bench import references
from strsr.bench.backends import BACKENDS, Inputs, StageSet, Unavailable
from strsr.bench.report import environment
from strsr.conditioning import CONDITIONING_MODES
from strsr.lora import merge_lora
from strsr.pipeline import SuperResolver
from strsr.presets import PRESETS

log = logging.getLogger("strsr.bench")

STAGES = ("conditioning", "vae_encode", "dit", "vae_decode", "one_pass", "upscale")
TOKEN_PIXELS = 16  # one DiT token per 16x16 output pixels for both families


@dataclass(frozen=True)
class BenchSpec:
    preset: str
    res: int
    backends: tuple[str, ...]
    device: str
    random_weights: bool
    pretrained: Path | None
    checkpoint: Path | None
    batch: int
    tile: int
    warmup: int
    repeats: int
    engines: dict[str, Path]
    conditioning: str | None
    prompt: str
    vlm: Path | None
    text_encoder: Path | None
    json: Path | None
    plot: Path | None
    latent: str = "sample"


def parse(argv: list[str] | None) -> BenchSpec:
    p = argparse.ArgumentParser(prog="strsr-bench", description="StrSR per-stage latency by backend "
                                "(strsr-bench kernels: the Triton kernels)")  # fmt: skip
    p.add_argument("--res", type=int, default=1024, help="output side in pixels (x4 of the LR input)")
    p.add_argument("--preset", default="flux2-klein-4b", choices=sorted(PRESETS))
    p.add_argument("--backends", default="eager,compile,onnx,trt-fp16,trt-fp8",
                   help=f"comma-separated, from {', '.join(BACKENDS)}")  # fmt: skip
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    weights = p.add_mutually_exclusive_group()
    weights.add_argument("--random-weights", action="store_true", help="the exact architecture, untrained")
    weights.add_argument("--pretrained", type=Path, help="local diffusers folder of the base model")
    p.add_argument("--checkpoint", type=Path, help="strsr generator weights")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--tile", type=int, default=1024, help="output tile size (stages run on one tile)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--engines", nargs="+", default=[], metavar="BACKEND=DIR",
                   help="strsr-export folders per backend, e.g. onnx=exp/fp32 trt-fp16=exp/fp16 trt-fp8=exp/fp8")
    p.add_argument("--conditioning", choices=CONDITIONING_MODES, help="default: vlm for full presets, none for tiny")
    p.add_argument("--prompt", default="", help="prompt for text conditioning (vlm: default the official one)")
    p.add_argument("--vlm", type=Path, help="local Qwen3-VL folder (vlm conditioning)")
    p.add_argument("--text-encoder", type=Path, help="folder with text_encoder/ and tokenizer/ (text conditioning)")
    p.add_argument("--latent", default="sample", choices=LATENT_MODES,
                   help="VAE encoding: sample (the official one: adds a posterior draw) or mode (default: sample)")
    p.add_argument("--json", type=Path)
    p.add_argument("--plot", type=Path, help="PNG bar chart (log axis) with the reference points")
    a = p.parse_args(argv)
    backends = tuple(b.strip() for b in a.backends.split(",") if b.strip())
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        p.error(f"unknown backend(s) {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
    engines = {}
    for item in a.engines:
        name, _, folder = item.partition("=")
        if name not in BACKENDS or not folder:
            p.error(f"--engines expects BACKEND=DIR with BACKEND in {', '.join(BACKENDS)}, got {item!r}")
        engines[name] = Path(folder)
    if a.res % 64 or a.res <= 0 or a.batch < 1 or a.repeats < 1 or a.warmup < 1:
        p.error("--res must be a positive multiple of 64; --batch, --repeats and --warmup at least 1")
    device = a.device if a.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA GPU is visible")
    return BenchSpec(a.preset, a.res, backends, device, a.random_weights, a.pretrained, a.checkpoint, a.batch,
                     a.tile, a.warmup, a.repeats, engines, a.conditioning, a.prompt, a.vlm, a.text_encoder, a.json,
                     a.plot, a.latent)  # fmt: skip


def measure(fn, device: str, warmup: int, repeats: int, synchronous: bool) -> dict:
    """first_call_ms (compiles included), then median/p90/min over `repeats`, and peak device memory."""
    cuda = device == "cuda"
    start = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize()
    first = (time.perf_counter() - start) * 1e3
    for _ in range(warmup - 1):
        fn()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        if cuda and not synchronous:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            fn()
            end.record()
            end.synchronize()
            times.append(begin.elapsed_time(end))
        else:
            begin = time.perf_counter()
            fn()
            if cuda:
                torch.cuda.synchronize()
            times.append((time.perf_counter() - begin) * 1e3)
    times.sort()
    return {
        "median_ms": statistics.median(times),
        "p90_ms": times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))],
        "min_ms": times[0],
        "first_call_ms": first,
        "runs": repeats,
        # ONNX Runtime and TensorRT allocate outside PyTorch: their peaks are not seen here
        "peak_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda and not synchronous else None,
    }


def stage_flops(resolver: SuperResolver, spec: BenchSpec, inputs: Inputs) -> dict[str, float]:
    """Analytic FLOPs per stage for one call at the benchmark's tile and batch."""
    from strsr.bench.flops import dit_flops, vae_flops

    model = resolver.model
    side = min(spec.res, spec.tile)
    image_tokens = (side // TOKEN_PIXELS) ** 2
    with torch.no_grad():
        text_tokens = model.condition_for(inputs.lr[:1].to(model.device)).tokens.shape[1]
    transformer = model.diffusers_transformer
    dit = dit_flops(dict(transformer.config), model.preset.family, image_tokens, text_tokens)["total"] * spec.batch
    encode = vae_flops(model.vae, side, side, "encode") * spec.batch
    decode = vae_flops(model.vae, side, side, "decode") * spec.batch
    return {"dit": dit, "vae_encode": encode, "vae_decode": decode, "one_pass": dit + encode + decode,
            "image_tokens": image_tokens, "text_tokens": text_tokens}  # fmt: skip


def build_stage_sets(spec: BenchSpec, resolver: SuperResolver, inputs: Inputs) -> tuple[list[StageSet], dict]:
    sets, skipped = [], {}
    weights = ["--random-weights"] if spec.random_weights else []
    weights += ["--pretrained", str(spec.pretrained)] if spec.pretrained else []
    weights += ["--checkpoint", str(spec.checkpoint)] if spec.checkpoint else []
    conditioning = {"--conditioning": spec.conditioning, "--prompt": spec.prompt, "--vlm": spec.vlm,
                    "--text-encoder": spec.text_encoder}  # fmt: skip
    weights += [item for flag, value in conditioning.items() if value for item in (flag, str(value))]
    weights += ["--latent", spec.latent]
    for backend in spec.backends:
        try:
            if backend in ("eager", "compile"):
                sets.append(stage_sets.torch_stages(resolver, inputs, compiled=backend == "compile"))
            elif backend == "onnx":
                folder = spec.engines.get("onnx") or stage_sets.exported_for_bench(spec.preset, spec.tile, weights)
                sets.append(stage_sets.onnx_stages(folder, spec.preset, resolver, inputs, spec.vlm))
            else:
                sets.append(stage_sets.trt_stages(backend, spec.engines.get(backend), spec.preset, resolver, inputs,
                                                  spec.vlm))  # fmt: skip
        except (Unavailable, ImportError, ValueError) as err:
            skipped[backend] = str(err)
            log.warning("%-9s skipped: %s", backend, err)
    return sets, skipped


def run(spec: BenchSpec) -> dict:
    device = torch.device(spec.device)
    dtype = "bfloat16" if spec.device == "cuda" else "float32"
    resolver = SuperResolver.from_preset(spec.preset, pretrained=spec.pretrained, checkpoint=spec.checkpoint,
                                         random_weights=spec.random_weights, device=device, dtype=dtype,
                                         tile=spec.tile, conditioning=spec.conditioning, prompt=spec.prompt,
                                         vlm=spec.vlm, text_encoder=spec.text_encoder, latent=spec.latent)  # fmt: skip
    # deployments run the LoRA folded in (as strsr-export does); an unmerged rank-256 adapter adds ~17% to the DiT
    resolver.model.transformer = merge_lora(resolver.model.transformer)
    inputs = Inputs.make(spec.batch, spec.res, spec.tile, device)
    flops = stage_flops(resolver, spec, inputs)
    gpu = torch.cuda.get_device_name() if spec.device == "cuda" else None
    sets, skipped = build_stage_sets(spec, resolver, inputs)
    refs = references.load()
    records = [{"backend": b, "status": "skipped", "reason": why} for b, why in skipped.items()]
    for stage_set in sets:
        for stage in STAGES:
            record = {"backend": stage_set.backend, "stage": stage, "dtype": stage_set.dtype, "batch": spec.batch,
                      "tile": min(spec.res, spec.tile), "res": spec.res}  # fmt: skip
            try:
                timing = measure(stage_set.stages[stage], spec.device, spec.warmup, spec.repeats,
                                 stage_set.synchronous)  # fmt: skip
            except Exception as err:  # one failing backend (a compiler missing, out of memory) must not hide the rest
                log.error("%-9s %-12s failed: %s", stage_set.backend, stage, _first_line(err))
                records.append({**record, "status": "failed", "reason": _first_line(err)})
                continue
            record.update(status="ok", **timing)
            if stage in ("one_pass", "upscale"):
                record["images_per_s"] = spec.batch / (timing["median_ms"] / 1e3)
            if stage in flops:
                record["tflop"] = flops[stage] / 1e12
                record["tflops_per_s"] = flops[stage] / (timing["median_ms"] / 1e3) / 1e12
                peak = references.peak_tflops(gpu, stage_set.dtype, refs) if gpu else None
                record["peak_fraction"] = record["tflops_per_s"] / peak if peak else None
            records.append(record)
            log.info("%-9s %-12s %9.2f ms", stage_set.backend, stage, timing["median_ms"])
    floors = {stage: references.floors_ms(flops[stage], "bf16", refs) for stage in ("dit", "one_pass")}
    return {
        "spec": _jsonable(spec),
        "device": {"type": spec.device, "gpu": gpu, "cpu": platform.processor() or platform.machine()},
        "flops": flops,
        "references": {"paper": refs["paper"], "peers": refs["peers"], "floors_bf16_ms": floors},
        "results": records,
    }


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def _jsonable(spec: BenchSpec) -> dict:
    fields = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(spec).items() if k not in ("json", "plot")}
    return fields | {"engines": {k: str(v) for k, v in spec.engines.items()}}


def table(report: dict) -> str:
    header = ("backend", "stage", "median ms", "p90 ms", "peak MiB", "TFLOP/s", "% peak")
    rows = ["{:<9} {:<12} {:>10} {:>9} {:>9} {:>8} {:>7}".format(*header)]
    for r in report["results"]:
        if r["status"] != "ok":
            rows.append(f"{r['backend']:<9} {r.get('stage', '-'):<12} {r['status']}: {r['reason']}")
            continue
        peak = "-" if r.get("peak_mib") is None else f"{r['peak_mib']:.0f}"
        tflops = "-" if "tflops_per_s" not in r else f"{r['tflops_per_s']:.3g}"
        fraction = "-" if r.get("peak_fraction") is None else f"{100 * r['peak_fraction']:.0f}%"
        rows.append(f"{r['backend']:<9} {r['stage']:<12} {r['median_ms']:>10.2f} {r['p90_ms']:>9.2f} {peak:>9} "
                    f"{tflops:>8} {fraction:>7}")  # fmt: skip
    flops = report["flops"]
    rows.append(f"DiT {flops['dit'] / 1e12:.3g} TFLOP at {flops['image_tokens']} image + {flops['text_tokens']} "
                f"text tokens; VAE encode {flops['vae_encode'] / 1e12:.3g}, decode {flops['vae_decode'] / 1e12:.3g} "
                "TFLOP")  # fmt: skip
    floors = report["references"]["floors_bf16_ms"]["one_pass"]
    rows.append("bf16 FLOP floor of one pass: " + ", ".join(f"{gpu} {ms:.3g} ms" for gpu, ms in floors.items()))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    spec = parse(argv)
    logging.basicConfig(level=logging.WARNING, format="strsr-bench: %(message)s", stream=sys.stderr)
    logging.getLogger("strsr").setLevel(logging.INFO)
    try:
        report = run(spec)
    except (FileNotFoundError, ValueError) as err:
        log.error("%s", err)
        return 2
    print(table(report))
    failed = [r for r in report["results"] if r["status"] == "failed"]
    if spec.json:
        spec.json.parent.mkdir(parents=True, exist_ok=True)
        spec.json.write_text(json.dumps({"env": environment(), **report}, indent=2) + "\n")
    if spec.plot:
        from strsr.bench.plot import bar_chart

        bar_chart(report, spec.plot)
    return 1 if failed else 0
