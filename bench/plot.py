"""A bar chart of one-pass and end-to-end latency per runtime on a log axis (like the paper's Fig. 12), with the
published references as labelled reference lines."""

from __future__ import annotations

from pathlib import Path


def bar_chart(report: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    ok = [r for r in report["results"] if r["status"] == "ok" and r["stage"] in ("one_pass", "upscale")]
    labels = [f"{r['runtime']}\n{r['stage']}" for r in ok]
    seconds = [r["median_ms"] / 1e3 for r in ok]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(ok) + 3), 4.5))
    ax.bar(labels, seconds, color="tab:blue")
    for x, s in enumerate(seconds):
        ax.annotate(f"{s * 1e3:.0f} ms" if s < 1 else f"{s:.2f} s", (x, s), ha="center", va="bottom", fontsize=8)
    for peer in report["references"]["peers"]:
        ax.axhline(peer["seconds"], color="tab:gray", linestyle="--", linewidth=0.8)
        ax.annotate(f"{peer['name']} {peer['seconds']} s", (len(ok) - 0.55, peer["seconds"]), ha="right",
                    va="bottom", fontsize=8, color="tab:gray")  # fmt: skip
    ax.set_yscale("log")
    ax.set_ylabel("seconds (log scale)")
    device = report["device"]["gpu"] or f"CPU ({report['device']['cpu']})"
    spec = report["spec"]
    ax.set_title(f"{spec['model']['preset']}, {spec['res']}x{spec['res']} output, batch {spec['batch']} on {device}\n"
                 "references: published timings for a 1024x1024 input (GPU not stated)", fontsize=9)  # fmt: skip
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
