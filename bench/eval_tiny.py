"""Closing-note table for strsr-eval: bicubic vs the bundled tiny model on held-out photos, with every metric that
runs offline (pyiqa's weight-free ones) and the periodic-artifact score at 16 px (the full models' period) and at
8 px (the tiny model's own: 2x2 tokens on a 4x pixel-shuffle autoencoder).

    python -m strsr.bench.eval_tiny --json out/eval_tiny.json
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from strsr.bench.report import write_results
from strsr.bench.tiny_eval import held_out_outputs
from strsr.evaluation.grid_artifacts import grid_artifact_scores
from strsr.evaluation.metrics import WEIGHT_FREE_METRICS, MetricSuite
from strsr.evaluation.report import format_table, means
from strsr.inference.pipeline import SuperResolver

log = logging.getLogger("strsr.bench")


def evaluate(resolver: SuperResolver, suite: MetricSuite, seed: int = 0) -> list[dict]:
    rows = []
    for name, kind, method, output, hr in held_out_outputs(resolver, seed):
        output = (output * 255).round() / 255  # scored as the 8-bit file strsr-upscale would write
        row = suite.score(output[0], hr[0])
        score, excess = grid_artifact_scores(output, hr, 8)
        row["grid8"], row["grid8-gt"] = float(score), float(excess)
        rows.append({"method": f"{method} ({kind})", "image": name, **row})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m strsr.bench.eval_tiny", description=__doc__.splitlines()[0])
    p.add_argument("--metrics", default=",".join(WEIGHT_FREE_METRICS), help="comma-separated pyiqa metric names")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    suite = MetricSuite(args.metrics.split(","), device=torch.device("cpu"))
    suite.build()
    resolver = SuperResolver.from_preset("tiny", device="cpu")
    rows = evaluate(resolver, suite)
    columns = suite.columns(with_gt=True)
    columns += [type(columns[0])("grid8", "grid8", False, True), type(columns[0])("grid8-gt", "grid8-gt", True, True)]
    methods = dict.fromkeys(r["method"] for r in rows)
    results = {m: means([r for r in rows if r["method"] == m], columns) for m in methods}
    counts = {m: sum(r["method"] == m for r in rows) for m in methods}
    log.info("%s", format_table(results, columns, counts))
    write_results(args.json, {"means": results, "images": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
