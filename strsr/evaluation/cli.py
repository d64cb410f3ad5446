"""`strsr-eval`: score super-resolved folders with the paper's metrics (pyiqa) and the periodic-artifact score.

    strsr-eval --pred out/strsr --pred bicubic=out/bicubic --gt DIV2K_valid_HR --csv scores.csv
    strsr-eval --lr DIV2K_valid_LR --pred out/tiny --gt DIV2K_valid_HR --preset tiny --metrics offline

Files pair by name (suffix ignored); what is missing on either side is reported. Nothing is downloaded: learned
metrics need their weight files on disk (--weights-dir, --weights METRIC=PATH, or the libraries' caches), and a
missing one is named with where to put it. Exit status: 0, 1 if some images failed, 2 for bad input.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from strsr.evaluation.metric_sets import PAPER_METRICS, WEIGHT_FREE_METRICS
from strsr.spec import HelpFormatter, ModelSpec

log = logging.getLogger("strsr.evaluation")

ALIASES = {"paper": PAPER_METRICS, "offline": WEIGHT_FREE_METRICS}


class UsageError(ValueError):
    """Bad command-line input; main() logs it and exits with status 2."""


@dataclass(frozen=True)
class EvalConfig:
    preds: tuple[tuple[str, Path], ...]  # (method name, folder)
    gt: Path | None
    lr: Path | None
    model: ModelSpec  # for --lr
    tile: int | None
    overlap: int
    metrics: tuple[str, ...]
    weights_dirs: tuple[Path, ...]
    weights: tuple[tuple[str, Path], ...]
    skip_unavailable: bool
    grid_period: int
    csv: Path | None
    output: Path | None
    quiet: bool


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="strsr-eval", description=__doc__.splitlines()[0].split(": ", 1)[1],
                                formatter_class=HelpFormatter)  # fmt: skip
    p.add_argument("--pred", action="append", required=True, metavar="[NAME=]DIR",
                   help="folder of results, one table row each (repeatable); with --lr, where the outputs go")
    p.add_argument("--gt", type=Path, help="ground-truth folder; without it only no-reference metrics run")
    p.add_argument("--lr", type=Path, help="low-resolution folder: upscale it into the (single) --pred folder first")
    p.add_argument("--metrics", default=None,
                   help="comma-separated pyiqa names, or 'paper' (default: "
                        + ",".join(PAPER_METRICS) + ") or 'offline' (" + ",".join(WEIGHT_FREE_METRICS) + ")")
    p.add_argument("--weights-dir", action="append", type=Path, default=[],
                   help="folder holding metric weight files by their file names (repeatable)")
    p.add_argument("--weights", action="append", default=[], metavar="METRIC=PATH",
                   help="a metric's own checkpoint file, or a folder searched first for its files (repeatable)")
    p.add_argument("--skip-unavailable", action="store_true", help="drop metrics whose weights are missing, warn")
    p.add_argument("--grid-period", type=int, default=16, help="artifact period in pixels (16 = grid16)")
    p.add_argument("-o", "--output", type=Path, help="JSON report: settings, per-method means and per-image scores")
    p.add_argument("--csv", type=Path, help="per-image scores and per-method means")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    ModelSpec.add_args(p, title="model (for --lr, as strsr-upscale; --device also runs the metrics)")
    p.add_argument("--tile", type=int, help="--lr: output tile size (default: the preset's)")
    p.add_argument("--overlap", type=int, default=64, help="--lr: overlap between output tiles")
    return p


def _pairs_arg(items: list[str], flag: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        if flag == "--weights" and not sep:
            raise UsageError(f"--weights {item!r}: expected METRIC=PATH")
        out.append((name, value) if sep and name else ("", item))
    return out


def _metric_names(text: str | None, with_gt: bool) -> tuple[str, ...]:
    from strsr.evaluation.metrics import spec

    requested = [t.strip() for t in (text or "paper").split(",") if t.strip()]
    names: list[str] = []
    for item in requested:
        expanded = ALIASES.get(item, (item,))
        for name in expanded:
            try:
                s = spec(name)
            except ValueError as err:
                raise UsageError(str(err)) from err
            if s.full_reference and not with_gt:
                if item in ALIASES:
                    continue  # an alias without --gt keeps its no-reference part
                raise UsageError(f"{name} is a full-reference metric: it needs --gt")
            if not name.startswith("grid") and name not in names:
                names.append(name)
    return tuple(names)


def validate(args: argparse.Namespace) -> EvalConfig:
    """Everything checked before any work; raises UsageError naming the problem."""
    preds = []
    for name, folder in _pairs_arg(args.pred, "--pred"):
        path = Path(folder)
        preds.append((name or path.name or str(path), path))
    if len({n for n, _ in preds}) != len(preds):
        preds = [(str(p), p) for _, p in preds]  # same folder names: tell rows apart by the whole path
    if args.lr is not None:
        if len(preds) != 1:
            raise UsageError("--lr writes into one --pred folder: give exactly one --pred")
        if not args.lr.is_dir():
            raise UsageError(f"--lr {args.lr}: not a folder")
        out = preds[0][1].resolve()
        if out == args.lr.resolve() or out.is_relative_to(args.lr.resolve()):
            raise UsageError(f"--pred {preds[0][1]} is inside --lr {args.lr}: the upscaled images would go among "
                             "the inputs; choose another folder")  # fmt: skip
    else:
        for _, path in preds:
            if not path.is_dir():
                raise UsageError(f"--pred {path}: not a folder")
    if args.gt is not None and not args.gt.is_dir():
        raise UsageError(f"--gt {args.gt}: not a folder")
    if args.grid_period < 2:
        raise UsageError(f"--grid-period {args.grid_period}: must be at least 2")
    weights = []
    for metric, value in _pairs_arg(args.weights, "--weights"):
        if not Path(value).exists():
            raise UsageError(f"--weights {metric}={value}: no such file or folder")
        weights.append((metric, Path(value)))
    for folder in args.weights_dir:
        if not folder.is_dir():
            raise UsageError(f"--weights-dir {folder}: not a folder")
    try:
        model = ModelSpec.from_args(args)
    except ValueError as err:
        raise UsageError(str(err)) from None
    metrics = _metric_names(args.metrics, args.gt is not None)
    return EvalConfig(
        preds=tuple(preds), gt=args.gt, lr=args.lr, model=model, tile=args.tile, overlap=args.overlap,
        metrics=metrics, weights_dirs=tuple(args.weights_dir), weights=tuple(weights),
        skip_unavailable=args.skip_unavailable, grid_period=args.grid_period, csv=args.csv, output=args.output,
        quiet=args.quiet,
    )  # fmt: skip


def upscale_folder(config: EvalConfig) -> int:
    """Run the model over every LR image into the --pred folder (same relative names, .png); an image that fails
    is reported on one line and the others go on. Returns the number of failures."""
    from tqdm import tqdm

    from strsr.inference.pipeline import SuperResolver
    from strsr.io.images import ImageError, load_image
    from strsr.io.outputs import plan_outputs

    resolver = SuperResolver.from_spec(config.model, tile=config.tile, overlap=config.overlap)
    if resolver.weights_are_random:
        log.warning("weights are random (preset %r, no checkpoint): scores measure the pipeline, not a model",
                    config.model.preset)  # fmt: skip
    failures = 0
    jobs = plan_outputs([config.lr], config.preds[0][1], lambda relative: relative.with_suffix(".png"))
    for source, target in tqdm(jobs, desc="upscaling", unit="img", disable=config.quiet):
        try:
            result = resolver.upscale_image(load_image(source), alpha=False)
            target.parent.mkdir(parents=True, exist_ok=True)
            result.save(target)
        except (ImageError, ValueError, RuntimeError) as err:  # one bad image: report it, go on with the rest
            failures += 1
            log.error("%s: not upscaled (%s)", source, str(err).splitlines()[0])
    return failures


def _suite(config: EvalConfig, device):
    from strsr.evaluation.metrics import MetricSuite
    from strsr.spec import MissingWeightsError

    suite = MetricSuite(config.metrics, device=device, weights_dirs=config.weights_dirs,
                        weights=dict(config.weights), grid_period=config.grid_period)  # fmt: skip
    problems = suite.check_weights()
    if problems and not config.skip_unavailable:
        raise MissingWeightsError("\n".join(problems.values()) + "\n(or run with --skip-unavailable to drop them)")
    for metric, message in problems.items():
        log.warning("skipping %s: %s", metric, message.splitlines()[0])
    suite.drop(list(problems))
    suite.build()
    return suite


def evaluate(config: EvalConfig) -> tuple[list[dict], list, dict[str, int], int]:
    """Score every paired image: (rows, columns, images per method, failures)."""
    from tqdm import tqdm

    from strsr.evaluation.pairing import pair_folders
    from strsr.io.images import ImageError, load_image
    from strsr.model.build import resolve_device

    device = resolve_device(config.model.device)
    failures = upscale_folder(config) if config.lr is not None else 0
    pairings = []
    for method, folder in config.preds:
        pairing = pair_folders(folder, config.gt)
        if not pairing.complete:
            log.warning("%s:\n%s", method, pairing.report(folder, config.gt))
        pairings.append((method, pairing))
    suite = _suite(config, device)
    columns = suite.columns(with_gt=config.gt is not None)
    jobs = [(method, key, pred, gt) for method, pairing in pairings for key, pred, gt in pairing.pairs]
    rows, counts = [], {m: 0 for m, _ in config.preds}
    for method, key, pred_path, gt_path in tqdm(jobs, desc="scoring", unit="img", disable=config.quiet):
        try:
            pred = load_image(pred_path).rgb
            gt = load_image(gt_path).rgb if gt_path is not None else None
        except ImageError as err:
            failures += 1
            log.error("%s", err)
            continue
        if gt is not None and pred.shape != gt.shape:
            failures += 1
            log.error("%s: %dx%d but its ground truth %s is %dx%d; not scored", pred_path, pred.shape[2],
                      pred.shape[1], gt_path, gt.shape[2], gt.shape[1])  # fmt: skip
            continue
        try:
            scores = suite.score(pred, gt)
        except (RuntimeError, ValueError) as err:  # e.g. an image smaller than a metric's window
            failures += 1
            log.error("%s: not scored (%s)", pred_path, str(err).splitlines()[0])
            continue
        rows.append({"method": method, "image": key, **scores})
        counts[method] += 1
    return rows, columns, counts, failures


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="strsr-eval: %(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    from strsr.evaluation.metrics import import_pyiqa
    from strsr.evaluation.report import format_table, means, write_csv, write_report

    try:
        import_pyiqa()
        config = validate(args)
        rows, columns, counts, failures = evaluate(config)
    # bad options, folders that do not pair, an unreadable image, a checkpoint that does not fit (ValueErrors);
    # missing weight files (FileNotFoundError); a missing extra (ImportError)
    except (ValueError, FileNotFoundError, ImportError) as err:
        log.error("%s", str(err).strip())
        return 2
    results = {m: means([r for r in rows if r["method"] == m], columns) for m, _ in config.preds}
    sys.stdout.write(format_table(results, columns, counts) + "\n")
    settings = {"gt": str(config.gt) if config.gt else None, "grid_period": config.grid_period,
                "metrics": list(config.metrics), "pyiqa_defaults": True}  # fmt: skip
    if config.csv:
        write_csv(config.csv, rows, columns)
    if config.output:
        write_report(config.output, rows, columns, settings)
    if failures:
        log.error("%d image(s) could not be scored", failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
