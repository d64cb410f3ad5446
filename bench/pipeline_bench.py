"""`strsr-bench --res 1024`: per-stage latency, throughput and memory by backend, with FLOP counts, the fraction
of the GPU's dense peak, and the published references.

    strsr-bench --res 1024 --preset flux2-klein-4b --random-weights --runtimes eager,compile [--quantize fp8]
    strsr-bench --preset tiny --device cpu --res 256 -o out/bench.json --plot out/bench.png

The PyTorch runtimes time the model every inference path runs (`build_inference_generator`: LoRA merged, then
`--quantize`); `compile` is that model after `--compile`'s regional compilation, timed after eager (it compiles the
same model in place), with the compilation's time reported on its own (`compile_s`). Each stage gets `--warmup`
untimed calls (the first is reported as first_call_ms), then `--repeats` timed calls after synchronising.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from strsr.spec import HelpFormatter, ModelSpec, SpecError

log = logging.getLogger("strsr.bench")

STAGES = ("conditioning", "vae_encode", "dit", "vae_decode", "one_pass", "upscale")
RUNTIMES = ("eager", "compile", "onnx", "trt-fp16", "trt-fp8")


@dataclass(frozen=True)
class PipelineBenchSpec:
    model: ModelSpec
    res: int
    runtimes: tuple[str, ...]
    batch: int
    tile: int
    warmup: int
    repeats: int
    engines: dict[str, Path]
    output: Path | None
    plot: Path | None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="strsr-bench", formatter_class=HelpFormatter,
                                description="StrSR per-stage latency by runtime (strsr-bench kernels: the Triton "
                                            "kernels)")  # fmt: skip
    p.add_argument("--res", type=int, default=1024, help="output side in pixels (x4 of the LR input)")
    p.add_argument("--runtimes", default="eager,compile,onnx,trt-fp16,trt-fp8",
                   help=f"comma-separated, from {', '.join(RUNTIMES)} (--compile adds compile)")  # fmt: skip
    ModelSpec.add_args(p)
    p.set_defaults(preset="flux2-klein-4b")
    p.add_argument("--batch", type=int, default=1, help="images per call")
    p.add_argument("--tile", type=int, default=1024, help="output tile size (stages run on one tile)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls before timing")
    p.add_argument("--repeats", type=int, default=10, help="timed calls")
    p.add_argument("--engines", nargs="+", default=[], metavar="RUNTIME=DIR",
                   help="strsr-export folders per runtime, e.g. onnx=exp/fp32 trt-fp16=exp/fp16 trt-fp8=exp/fp8")
    p.add_argument("-o", "--output", type=Path, help="JSON report (environment, FLOPs, references, every record)")
    p.add_argument("--plot", type=Path, help="PNG bar chart (log axis) with the reference points")
    return p


def parse(argv: list[str] | None) -> PipelineBenchSpec:
    p = build_parser()
    a = p.parse_args(argv)
    runtimes = {r.strip() for r in a.runtimes.split(",") if r.strip()} | ({"compile"} if a.compile else set())
    unknown = sorted(runtimes - set(RUNTIMES))
    if unknown:
        p.error(f"unknown runtime(s) {', '.join(unknown)}; choose from {', '.join(RUNTIMES)}")
    runtimes = tuple(r for r in RUNTIMES if r in runtimes)  # eager before compile: compile changes the model
    engines = {}
    for item in a.engines:
        name, _, folder = item.partition("=")
        if name not in RUNTIMES or not folder:
            p.error(f"--engines expects RUNTIME=DIR with RUNTIME in {', '.join(RUNTIMES)}, got {item!r}")
        engines[name] = Path(folder)
    if a.res % 64 or a.res <= 0 or a.batch < 1 or a.repeats < 1 or a.warmup < 1:
        p.error("--res must be a positive multiple of 64; --batch, --repeats and --warmup at least 1")
    try:
        model = ModelSpec.from_args(a, compile=False)  # the compile runtime compiles, after eager is timed
    except ValueError as err:
        p.error(str(err))
    return PipelineBenchSpec(model, a.res, runtimes, a.batch, a.tile, a.warmup, a.repeats, engines, a.output,
                             a.plot)  # fmt: skip


def stage_flops(resolver, spec: PipelineBenchSpec, inputs) -> dict[str, float]:
    """Analytic FLOPs per stage for one call at the benchmark's tile and batch."""
    import torch

    from strsr.bench.flops import dit_flops, image_tokens, vae_flops

    model = resolver.model
    side = min(spec.res, spec.tile)
    tokens = image_tokens(model.preset, side, side)
    with torch.no_grad():
        text_tokens = model.condition_for(inputs.lr[:1].to(model.device)).tokens.shape[1]
    transformer = model.diffusers_transformer
    dit = dit_flops(dict(transformer.config), model.preset.family, tokens, text_tokens)["total"] * spec.batch
    encode = vae_flops(model.vae, side, side, "encode") * spec.batch
    decode = vae_flops(model.vae, side, side, "decode") * spec.batch
    return {"dit": dit, "vae_encode": encode, "vae_decode": decode, "one_pass": dit + encode + decode,
            "image_tokens": tokens, "text_tokens": text_tokens}  # fmt: skip


def build_runtime(runtime: str, spec: PipelineBenchSpec, resolver, inputs):
    """The stages of one runtime; raises `Unavailable` (or ImportError/ValueError) when it cannot run here."""
    from strsr.bench import runtimes

    if runtime in ("eager", "compile"):
        return runtimes.torch_stages(resolver, inputs, compiled=runtime == "compile", quantize=spec.model.quantize)
    if runtime == "onnx":
        folder = spec.engines.get("onnx") or runtimes.exported_for_bench(spec.model, spec.tile)
        return runtimes.onnx_stages(folder, spec.model, resolver, inputs)
    return runtimes.trt_stages(runtime, spec.engines.get(runtime), spec.model, resolver, inputs)


def time_stages(stage_set, spec: PipelineBenchSpec, flops: dict, gpu: str | None, refs: dict) -> list[dict]:
    from strsr.bench import references
    from strsr.bench.timing import measure

    records = []
    for stage in STAGES:
        record = {"runtime": stage_set.runtime, "stage": stage, "dtype": stage_set.dtype, "batch": spec.batch,
                  "tile": min(spec.res, spec.tile), "res": spec.res}  # fmt: skip
        if stage_set.quantize is not None:
            record["quantize"] = stage_set.quantize
        if stage_set.compile_s is not None:
            record["compile_s"] = stage_set.compile_s
        try:
            timing = measure(stage_set.stages[stage], warmup=spec.warmup, repeats=spec.repeats)
        except Exception as err:  # one failing runtime (a compiler missing, out of memory) must not hide the rest
            log.error("%-9s %-12s failed: %s", stage_set.runtime, stage, _first_line(err))
            records.append({**record, "status": "failed", "reason": _first_line(err)})
            continue
        if stage_set.runtime not in ("eager", "compile"):
            timing["peak_mib"] = None  # ONNX Runtime and TensorRT allocate outside PyTorch: not seen here
        record.update(status="ok", **timing)
        if stage in ("one_pass", "upscale"):
            record["images_per_s"] = spec.batch / (timing["median_ms"] / 1e3)
        if stage in flops:
            record["tflop"] = flops[stage] / 1e12
            record["tflops_per_s"] = flops[stage] / (timing["median_ms"] / 1e3) / 1e12
            peak = references.peak_tflops(gpu, stage_set.dtype, refs) if gpu else None
            record["peak_fraction"] = record["tflops_per_s"] / peak if peak else None
        records.append(record)
        log.info("%-9s %-12s %9.2f ms", stage_set.runtime, stage, timing["median_ms"])
    return records


def run(spec: PipelineBenchSpec) -> dict:
    import torch

    from strsr.bench import references, runtimes
    from strsr.bench.runtimes import Inputs
    from strsr.inference.pipeline import SuperResolver

    not_run = quantize_not_run(spec.model)
    model = spec.model.replace(quantize="none") if not_run else spec.model  # the other runtimes still run
    # the model users run (LoRA merged, --quantize applied); an unmerged rank-256 adapter adds ~17% to the DiT
    resolver = SuperResolver.from_spec(model, tile=spec.tile)
    inputs = Inputs.make(spec.batch, spec.res, spec.tile)
    flops = stage_flops(resolver, spec, inputs)
    device = resolver.model.device
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    refs = references.load()
    records = []
    for runtime in spec.runtimes:  # built and timed one after the other: compile changes the eager model in place
        if not_run and runtime in ("eager", "compile"):
            records.append({"runtime": runtime, "status": "not run", "quantize": spec.model.quantize,
                            "reason": not_run})  # fmt: skip
            log.warning("%-9s not run: %s", runtime, not_run)
            continue
        try:
            stage_set = build_runtime(runtime, spec, resolver, inputs)
        except (runtimes.Unavailable, ImportError, ValueError) as err:
            records.append({"runtime": runtime, "status": "skipped", "reason": str(err)})
            log.warning("%-9s skipped: %s", runtime, err)
            continue
        if stage_set.compile_s is not None:
            log.info("%-9s compiled the DiT blocks in %.1f s (first call)", runtime, stage_set.compile_s)
        records.extend(time_stages(stage_set, spec, flops, gpu, refs))
    floors = {stage: references.floors_ms(flops[stage], "bf16", refs) for stage in ("dit", "one_pass")}
    return {
        "spec": _jsonable(spec),
        "device": {"type": device.type, "gpu": gpu, "cpu": platform.processor() or platform.machine()},
        "flops": flops,
        "references": {"paper": refs["paper"], "peers": refs["peers"], "floors_bf16_ms": floors},
        "results": records,
    }


def quantize_not_run(model: ModelSpec) -> str | None:
    """Why the PyTorch runtimes cannot run `--quantize` on this device (fp8 before sm_89), or None."""
    from strsr.model.build import resolve_device
    from strsr.model.quantize import check_quantize_supported

    try:
        check_quantize_supported(model.quantize, resolve_device(model.device))
    except SpecError as err:
        return "needs sm_89+ (" + str(err).partition("; ")[2] + ")"
    return None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def _jsonable(spec: PipelineBenchSpec) -> dict:
    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return str(value) if isinstance(value, Path) else value

    return {k: plain(v) for k, v in asdict(spec).items() if k not in ("output", "plot")}


def table(report: dict) -> str:
    header = ("runtime", "stage", "median ms", "p90 ms", "peak MiB", "TFLOP/s", "% peak")
    rows = ["{:<9} {:<12} {:>10} {:>9} {:>9} {:>8} {:>7}".format(*header)]
    for r in report["results"]:
        if r["status"] != "ok":
            rows.append(f"{r['runtime']:<9} {r.get('stage', '-'):<12} {r['status']}: {r['reason']}")
            continue
        if r["stage"] == STAGES[0] and "compile_s" in r:
            rows.append(f"{r['runtime']:<9} compiled the DiT blocks in {r['compile_s']:.1f} s (the first DiT call, "
                        "not in the times below)")  # fmt: skip
        peak = "-" if r.get("peak_mib") is None else f"{r['peak_mib']:.0f}"
        tflops = "-" if "tflops_per_s" not in r else f"{r['tflops_per_s']:.3g}"
        fraction = "-" if r.get("peak_fraction") is None else f"{100 * r['peak_fraction']:.0f}%"
        rows.append(f"{r['runtime']:<9} {r['stage']:<12} {r['median_ms']:>10.2f} {r['p90_ms']:>9.2f} {peak:>9} "
                    f"{tflops:>8} {fraction:>7}")  # fmt: skip
    flops = report["flops"]
    rows.append(f"DiT {flops['dit'] / 1e12:.3g} TFLOP at {flops['image_tokens']} image + {flops['text_tokens']} "
                f"text tokens; VAE encode {flops['vae_encode'] / 1e12:.3g}, decode {flops['vae_decode'] / 1e12:.3g} "
                "TFLOP")  # fmt: skip
    quantize = report["spec"]["model"]["quantize"]
    if quantize != "none":
        rows.append(f"PyTorch runtimes with --quantize {quantize} (the DiT's linear layers)")
    floors = report["references"]["floors_bf16_ms"]["one_pass"]
    rows.append("bf16 FLOP floor of one pass: " + ", ".join(f"{gpu} {ms:.3g} ms" for gpu, ms in floors.items()))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    spec = parse(argv)
    logging.basicConfig(level=logging.WARNING, format="strsr-bench: %(message)s", stream=sys.stderr)
    logging.getLogger("strsr").setLevel(logging.INFO)
    try:
        report = run(spec)
    except (FileNotFoundError, ValueError) as err:  # missing weights, a bad spec, a checkpoint that does not fit
        log.error("%s", err)
        return 2
    print(table(report))
    failed = [r for r in report["results"] if r["status"] == "failed"]
    if spec.output:
        from strsr.bench.report import environment
        from strsr.io.atomic import write_json

        write_json(spec.output, {"env": environment(), **report})
    if spec.plot:
        from strsr.bench.plot import bar_chart

        bar_chart(report, spec.plot)
    return 1 if failed else 0
