"""The paper's FDL ablation (§3.4, Fig. 6) in miniature: tiny stage 2 with and without FDL, from the same stage-1
checkpoint and seeds, scored on the held-out set of `strsr.bench.tiny_eval` (grid score at the tiny DiT's own 8-px
period and its excess over the ground truth, PSNR, SSIM, PIQE), with a plot.

    strsr-train tiny                                                     # stage 1 -> runs/tiny
    strsr-train tiny-stage2                                              # with FDL -> runs/tiny-stage2
    strsr-train tiny-stage2 --set loss.lambda_fdl=0 --set run.output_dir=runs/tiny-stage2-nofdl
    python -m strsr.bench.fdl_ablation --json out/fdl_ablation.json --plot out/fdl_ablation.png

Repeats with other seeds (`--set run.seed=N` on both arms) are paired by position: `--with-fdl A1 A2
--without-fdl B1 B2`; each pair is its own row per input kind, and the paired FDL - no-FDL differences are
summarised (mean, min, max over the pairs).

The two stage-2 runs differ only in lambda_fdl: the same batches, degradations and R1 noise (every draw is seeded by
(seed, batch, rank, stream)), the same discriminator and optimiser state from stage 1. The plot shows the training
monitor (grid excess of each logged training prediction, from metrics.jsonl) and the held-out means per input kind.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from strsr.bench.report import write_results
from strsr.bench.tiny_eval import KINDS, evaluate, format_summary, summary

log = logging.getLogger("strsr.bench")

METRICS = ("grid8-gt", "psnr", "piqe")


def final_weights(run: Path) -> Path:
    """The generator of a checkpoint folder, or of a run folder's latest complete checkpoint."""
    from strsr.train import checkpointing as ckpt

    if (run / "generator.safetensors").is_file():
        return run / "generator.safetensors"
    found = ckpt.latest_checkpoint(run / "checkpoints")
    if found is None:
        raise SystemExit(f"{run}: no complete checkpoint; train it first (see this module's docstring)")
    return found / "generator.safetensors"


def pair_names(pairs: int) -> list[tuple[str, str]]:
    """(FDL arm, no-FDL arm) method names of each pair; with more than one pair its position is in the names."""
    if pairs == 1:
        return [("stage 2 + FDL", "stage 2, no FDL")]
    return [(f"stage 2 + FDL #{i}", f"stage 2, no FDL #{i}") for i in range(1, pairs + 1)]


def arm_names(with_fdl: list[Path], without_fdl: list[Path]) -> dict[str, Path]:
    """{method name: run} of both arms, pair by pair."""
    names = {}
    for (fdl_name, plain_name), fdl_run, plain_run in zip(pair_names(len(with_fdl)), with_fdl, without_fdl):
        names.update({fdl_name: fdl_run, plain_name: plain_run})
    return names


def paired_differences(table: list[dict], pairs: int) -> list[dict]:
    """Per input kind and metric: FDL minus no-FDL for each pair (same seeds), and their mean, min and max."""
    value = {(r["kind"], r["method"]): r for r in table}
    out = []
    for kind in KINDS:
        for metric in METRICS:
            diffs = [value[kind, a][metric] - value[kind, b][metric] for a, b in pair_names(pairs)]
            out.append({"kind": kind, "metric": metric, "differences": diffs, "mean": sum(diffs) / pairs,
                        "min": min(diffs), "max": max(diffs)})  # fmt: skip
    return out


def monitor(run: Path) -> list[tuple[int, float]]:
    """(step, grid excess of the training prediction) from a run's metrics.jsonl."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [(line["step"], line["monitor/grid_excess"]) for line in lines if "monitor/grid_excess" in line]


def plot(path: Path, table: list[dict], curves: dict[str, list[tuple[int, float]]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 1 + len(METRICS), figsize=(4.2 * (1 + len(METRICS)), 3.6))
    for name, points in curves.items():
        if points:
            steps, values = zip(*points)
            window = 5  # the monitor is one training batch per point: a running mean shows the trend
            smooth = [sum(values[max(0, i - window + 1): i + 1]) / len(values[max(0, i - window + 1): i + 1])
                      for i in range(len(values))]  # fmt: skip
            axes[0].plot(steps, smooth, label=name)
    axes[0].set(title="training: grid8 excess (running mean of 5)", xlabel="step", ylabel="dB")
    axes[0].legend(fontsize=8)
    methods = list(dict.fromkeys(r["method"] for r in table))
    width = 0.8 / len(methods)
    for ax, metric in zip(axes[1:], METRICS):
        for m, method in enumerate(methods):
            values = [next(r[metric] for r in table if r["kind"] == k and r["method"] == method) for k in KINDS]
            ax.bar([k + (m - (len(methods) - 1) / 2) * width for k in range(len(KINDS))], values, width, label=method)
        ax.set_xticks(range(len(KINDS)), KINDS, fontsize=8)
        ax.set_title(f"held-out {metric}" + (" (lower better)" if metric != "psnr" else ""))
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m strsr.bench.fdl_ablation", description=__doc__.splitlines()[0])
    p.add_argument("--stage1", type=Path, default=Path("runs/tiny"))
    p.add_argument("--with-fdl", type=Path, nargs="+", default=[Path("runs/tiny-stage2")])
    p.add_argument("--without-fdl", type=Path, nargs="+", default=[Path("runs/tiny-stage2-nofdl")])
    p.add_argument("--tile", type=int, help="output tile (default: the tiny preset's)")
    p.add_argument("--json", type=Path)
    p.add_argument("--plot", type=Path)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    if len(args.with_fdl) != len(args.without_fdl):
        p.error("--with-fdl and --without-fdl pair runs by position: give as many of each")
    runs = {"stage 1": args.stage1, **arm_names(args.with_fdl, args.without_fdl)}
    rows = evaluate({name: final_weights(run) for name, run in runs.items()}, tile=args.tile)
    table = summary(rows)
    log.info("%s", format_summary(table))
    differences = paired_differences(table, len(args.with_fdl))
    for d in differences:
        log.info("FDL - no FDL, %-12s %-8s mean %+.2f (min %+.2f, max %+.2f)", d["kind"], d["metric"], d["mean"],
                 d["min"], d["max"])  # fmt: skip
    curves = {name: monitor(run) for name, run in runs.items() if name != "stage 1"}
    if args.plot:
        plot(args.plot, table, curves)
        log.info("plot: %s", args.plot)
    write_results(args.json, {"summary": table, "rows": rows, "monitor": curves, "paired": differences,
                              "weights": {name: str(final_weights(run)) for name, run in runs.items()}})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
