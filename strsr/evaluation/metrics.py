"""The metric set of the StrSR paper (Sec. 4.1, Tables 1-4) through pyiqa, plus strsr's periodic-artifact score.

Settings. The paper says only "all the metrics are evaluated by pyiqa" (no colour space, crop border or Y/RGB
choice is stated), so every metric runs with pyiqa's defaults, on full images, inputs as RGB floats in [0, 1]:

* PSNR: RGB, no crop border (pyiqa ``psnr``; ``psnry`` is the Y-channel variant);
* SSIM: on the Y channel (BT.601, pyiqa ``ssim``: ``test_y_channel=True``), no crop border, no downsampling;
* LPIPS: AlexNet, v0.1; DISTS: VGG16;
* NIQE: Y channel, no crop border; MANIQA: KonIQ-10k weights; MUSIQ: KonIQ-10k weights; QAlign: quality task;
  QualiCLIP: the base (not "+") model on CLIP RN50;
* grid16: `strsr.evaluation.grid_artifacts.grid_artifact_scores` with a 16-px period; with a ground truth also
  ``grid16-gt``, the prediction's score minus the GT's.

Any other pyiqa metric name works too; its direction and FR/NR kind come from pyiqa's own table.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from strsr.evaluation.grid_artifacts import grid_artifact_scores
from strsr.evaluation.metric_sets import PAPER_METRICS, WEIGHT_FREE_METRICS
from strsr.evaluation.weights import MissingWeightsError, offline_loading, resolve_weights

__all__ = ["PAPER_METRICS", "WEIGHT_FREE_METRICS", "MetricSpec", "MetricSuite", "grid_name", "import_pyiqa", "spec"]

log = logging.getLogger("strsr.evaluation")

_HEADERS = {"psnr": "PSNR", "ssim": "SSIM", "lpips": "LPIPS", "dists": "DISTS", "niqe": "NIQE", "maniqa": "MAN.",
            "musiq": "MUS.", "qalign": "QAli.", "qualiclip": "Qual."}  # fmt: skip


@dataclass(frozen=True)
class MetricSpec:
    name: str  # column name, = the pyiqa metric name (or gridN / gridN-gt)
    header: str  # table header, the paper's abbreviation where it has one
    full_reference: bool
    lower_better: bool


def grid_name(period: int) -> str:
    return f"grid{period}"


def import_pyiqa():
    """pyiqa, or an ImportError that says how to install what it needs (it does not declare all of it)."""
    # pyiqa pulls in bitsandbytes, whose CPU backend warns on import when the `kernels` hub package is absent
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    try:
        import pyiqa
    except ModuleNotFoundError as err:
        hints = {
            "pyiqa": "install the eval extra: pip install 'strsr[eval]'",
            "pkg_resources": "pyiqa's `clip` dependency imports pkg_resources, gone in setuptools 81: "
                             "pip install 'setuptools<81'",
            "icecream": "pyiqa's Q-Align code imports icecream, which pyiqa does not declare: pip install icecream",
        }  # fmt: skip
        hint = hints.get(err.name, "pip install 'strsr[eval]'")
        raise ImportError(f"strsr-eval cannot import pyiqa ({err}); {hint}") from err
    from pyiqa.utils import get_root_logger

    get_root_logger().setLevel(logging.WARNING)  # pyiqa logs every network and metric it creates at INFO
    return pyiqa


def spec(name: str) -> MetricSpec:
    """Direction and kind of a metric column; raises ValueError for a name pyiqa does not know."""
    if name.startswith("grid") and name.removeprefix("grid").split("-")[0].isdigit():
        return MetricSpec(name, name, name.endswith("-gt"), True)
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    if name not in DEFAULT_CONFIGS:
        raise ValueError(f"unknown metric {name!r}: not a pyiqa metric (see pyiqa.list_models()) nor gridN")
    config = DEFAULT_CONFIGS[name]
    return MetricSpec(name, _HEADERS.get(name, name), config["metric_mode"] == "FR", config.get("lower_better", False))


def _hf_cache() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


class MetricSuite:
    """Builds the requested metrics once (offline, weights checked first) and scores (pred, gt) pairs.

    names: pyiqa metric names; the grid score is always added. weights: {metric: file or folder} overrides;
    weights_dirs: folders searched for any metric's files.
    """

    def __init__(self, names: Sequence[str], *, device: torch.device, weights_dirs: Sequence[Path] = (),
                 weights: Mapping[str, Path] | None = None, grid_period: int = 16):  # fmt: skip
        import_pyiqa()
        self.device = device
        self.grid_period = grid_period
        self.specs = [spec(n) for n in names if not n.startswith("grid")]
        self._weights_dirs = tuple(weights_dirs)
        self._weights = dict(weights or {})
        self._metrics: dict[str, torch.nn.Module] = {}

    def check_weights(self) -> dict[str, str]:
        """{metric: error message} for every metric whose weight files are missing; builds nothing."""
        problems = {}
        for s in self.specs:
            try:
                resolve_weights(s.name, self._weights_dirs, self._weights.get(s.name))
            except MissingWeightsError as err:
                problems[s.name] = str(err)
        return problems

    def drop(self, names: Sequence[str]) -> None:
        self.specs = [s for s in self.specs if s.name not in names]

    def build(self) -> None:
        """Create every pyiqa metric; raises MissingWeightsError (before any download) when a file is missing."""
        pyiqa = import_pyiqa()
        for s in self.specs:
            found = resolve_weights(s.name, self._weights_dirs, self._weights.get(s.name))
            try:
                with offline_loading(s.name, found):
                    self._metrics[s.name] = pyiqa.create_metric(s.name, device=self.device)
            except OSError as err:  # Hugging Face in offline mode: a file missing from its cache fails at once
                raise MissingWeightsError(
                    f"metric {s.name!r} needs files from the Hugging Face hub that are not in its local cache "
                    f"({_hf_cache()}): {str(err).splitlines()[0]}"
                ) from err

    def columns(self, with_gt: bool) -> list[MetricSpec]:
        grid = grid_name(self.grid_period)
        cols = [s for s in self.specs if with_gt or not s.full_reference] + [spec(grid)]
        return cols + ([spec(f"{grid}-gt")] if with_gt else [])

    @torch.no_grad()
    def score(self, pred: torch.Tensor, gt: torch.Tensor | None) -> dict[str, float]:
        """pred, gt: (3, H, W) float in [0, 1], same size. Returns {column: value}."""
        x = pred[None].float().to(self.device)
        y = gt[None].float().to(self.device) if gt is not None else None
        row = {}
        for s in self.specs:
            if s.full_reference and y is None:
                continue
            metric = self._metrics[s.name]
            row[s.name] = float(metric(x, y) if s.full_reference else metric(x))
        grid = grid_name(self.grid_period)
        try:
            score, excess = grid_artifact_scores(x, y, self.grid_period)
            row[grid] = float(score)
            if excess is not None:
                row[f"{grid}-gt"] = float(excess)
        except ValueError as err:  # an image smaller than the score's window: no value, the rest still count
            log.warning("%s: %s", grid, err)
            row[grid] = float("nan")
            if y is not None:
                row[f"{grid}-gt"] = float("nan")
        return row
