"""Training recipes: TOML files parsed into nested dataclasses, with typed `--set section.key=value` overrides.

Unknown sections or keys are errors (a typo must not silently train with a default), and the resolved config is
written beside the run so a run can always be reproduced.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from strsr.degradation.config import DegradationConfig
from strsr.io.atomic import write_json
from strsr.spec import ModelSpec
from strsr.train import RECIPES

IMAGE_SOURCES = ("pip", "debian")


@dataclass
class TrainingImage:
    """One training photo that an installable package ships, pinned by the sha256 of its file.

    source "pip": `path` is relative to the installed distribution `package` (importlib.metadata's
    `locate_file`, e.g. scikit-image's "skimage/data/astronaut.png"); "debian": `path` is absolute and the Debian
    package `package` installs it. A missing file or another sha256 stops the run before training starts.
    """

    path: str
    sha256: str
    package: str
    source: str = "pip"


@dataclass
class DataConfig:
    folders: list[str] = field(default_factory=list)
    file_lists: list[str] = field(default_factory=list)  # JSONL files, one {"path": ...} object per line
    path_key: str = "path"
    skimage_images: list[str] = field(default_factory=list)  # photos shipped with scikit-image, by name
    images: list[TrainingImage] = field(default_factory=list)  # pinned package files ([[data.images]] tables)
    max_short_side: int | None = None  # larger photos are first resized to this short side (the official resize)
    resolution: int = 1024  # HR crop side
    crop: str = "center"  # "center", "random" (the official resize-then-crop rules) or "patch" (see strsr.train.data)
    flip: bool = False  # random horizontal flips (the official runs have none)


@dataclass
class LossConfig:
    lambda_l1: float = 1.0
    lambda_lpips: float = 3.0
    lambda_gan: float = 0.1
    lambda_fdl: float | None = None  # None: the stage's (0 in stage 1, 0.002 in stage 2)
    lambda_r1: float = 10.0
    r1_sigma: float = 0.005
    r1_noise: str = "uniform"
    # FDL input: "raw" feeds the generator's [-1, 1] images to the VGG's ImageNet normalisation unchanged, as the
    # official trainer does (and lambda_fdl = 0.002 is tuned for); "[-1,1]" maps them to [0, 1] first.
    fdl_input_range: str = "raw"
    fdl_seed: int = 0
    fdl_num_proj: int = 256
    fdl_batch: int | None = None  # FDL on the first N images of each batch only (its CPU cost); None: all of them
    vgg16_weights: str | None = None  # LPIPS backbone (torchvision VGG16 state dict)
    vgg19_weights: str | None = None  # FDL feature extractor (torchvision VGG19 state dict)


@dataclass
class DiscriminatorConfig:
    model: str = "convnext_xxlarge"  # an open_clip ConvNeXt CLIP model, "tiny" (tests) or "scratch" (no weights)
    weights: str | None = None  # local open_clip checkpoint file


@dataclass
class OptimConfig:
    lr_g: float = 5e-6
    lr_d: float = 1e-6
    lr_adapter: float | None = None  # the VLM adapter's own group; None: lr_g
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    batch_size: int = 1  # per process
    # the last N steps before run.max_steps anneal every learning rate to 0 on a half cosine (the cooldown of a
    # warmup-stable-decay schedule); 0: constant learning rates
    lr_cooldown_steps: int = 0


@dataclass
class RunConfig:
    output_dir: str = "runs/strsr"
    stage: int = 1
    max_steps: int = 40_000
    seed: int = 0
    checkpoint_every: int = 1000
    keep_last: int = 3
    log_every: int = 10
    sample_every: int = 500
    grid_every: int = 100  # log the periodic-artifact score (grid16 in strsr-eval) every N steps; 0: never
    tensorboard: bool = True  # also log to TensorBoard (metrics.jsonl in the run folder is always written)
    resume_from: str | None = None  # a checkpoint (or run) directory whose full state starts this run (stage 2)
    gradient_checkpointing: bool = True  # recompute the DiT's activations in the backward pass (memory for time)
    zero_init_velocity: bool = False  # zero the DiT's output projection: training starts at the bicubic result


@dataclass
class TrainConfig:
    """`[model]` is a `strsr.spec.ModelSpec`: the same fields (and checks) as every other entry point's model
    options; its `checkpoint` is the weights training starts from, `precision` the weights' dtype (auto: bf16 on a
    GPU, under bf16 autocast)."""

    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataConfig = field(default_factory=DataConfig)
    degradation: DegradationConfig = field(default_factory=DegradationConfig)  # strsr.degradation.config's
    loss: LossConfig = field(default_factory=LossConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict:
        """Plain values only (paths as text): what config.json and a checkpoint's training state hold."""
        def plain(value):
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [plain(v) for v in value]
            return str(value) if isinstance(value, Path) else value

        return plain(dataclasses.asdict(self))


class ConfigError(ValueError):
    """A recipe or override that does not fit the config schema; the message names the key."""


def _coerce(value, annotation, where: str):
    """Check/convert `value` against a field annotation (str, int, float, bool, tuples, lists, optionals)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if dataclasses.is_dataclass(annotation):  # a table, e.g. one [[data.images]] entry
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        fields = _section_types(annotation)
        unknown = [k for k in value if k not in fields]
        missing = [f.name for f in dataclasses.fields(annotation)
                   if f.name not in value and f.default is dataclasses.MISSING]  # fmt: skip
        if unknown or missing:
            problem = f"unknown key {unknown[0]!r}" if unknown else f"missing key {missing[0]!r}"
            raise ConfigError(f"{where}: {problem}; keys: {', '.join(fields)}")
        return annotation(**{k: _coerce(v, fields[k], f"{where}.{k}") for k, v in value.items()})
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        items = [_coerce(v, args[0], f"{where}[{i}]" if dataclasses.is_dataclass(args[0]) else where)
                 for i, v in enumerate(value)]  # fmt: skip
        if origin is tuple and len(args) > 1 and args[1] is not Ellipsis and len(items) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(items)}")
        return tuple(items) if origin is tuple else items
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if annotation is str and isinstance(value, str):
        return value
    if annotation is Path and isinstance(value, str):
        return Path(value)
    raise ConfigError(f"{where}: expected {getattr(annotation, '__name__', annotation)}, got {value!r}")


def _section_types(cls) -> dict[str, type]:
    return typing.get_type_hints(cls)


def from_dict(data: dict, config: TrainConfig | None = None) -> TrainConfig:
    """Build a TrainConfig from nested dicts (over `config`'s values, or the defaults), rejecting unknown sections and
    keys; the `[model]` table is checked as a ModelSpec."""
    config = config or TrainConfig()
    sections = _section_types(TrainConfig)
    for section, values in data.items():
        if section not in sections:
            raise ConfigError(f"unknown config section [{section}]; known: {', '.join(sections)}")
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] must be a table")
        target = getattr(config, section)
        fields = _section_types(type(target))
        typed = {}
        for key, value in values.items():
            if key not in fields:
                raise ConfigError(f"unknown key {section}.{key}; known: {', '.join(fields)}")
            typed[key] = _coerce(value, fields[key], f"{section}.{key}")
        if target.__dataclass_params__.frozen:  # [model], [degradation]: a new value, checked by its class
            try:
                setattr(config, section, dataclasses.replace(target, **typed))
            except ValueError as err:  # SpecError and the degradation's own checks
                raise ConfigError(f"[{section}] {err}") from None
        else:
            for key, value in typed.items():
                setattr(target, key, value)
    return config


def apply_override(config: TrainConfig, assignment: str) -> None:
    """Apply one `section.key=value`; the value is parsed as a TOML value, or taken as a bare string."""
    if "=" not in assignment or "." not in assignment.split("=", 1)[0]:
        raise ConfigError(f"override {assignment!r} must look like section.key=value")
    path, raw = assignment.split("=", 1)
    section, key = path.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word such as runs/x or tiny
    from_dict({section: {key: value}}, config)


def recipe_path(name_or_path: str) -> Path:
    """A recipe file: a path, or the name of one shipped in strsr/train/recipes."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"{path}: recipe file not found")
        return path
    if name_or_path not in RECIPES:
        raise ConfigError(f"unknown recipe {name_or_path!r}; shipped recipes: {', '.join(RECIPES)}")
    return Path(str(resources.files("strsr.train") / "recipes" / f"{name_or_path}.toml"))


def load_config(recipe: str, overrides: list[str] = ()) -> TrainConfig:
    path = recipe_path(recipe)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    config = from_dict(data)
    for assignment in overrides:
        apply_override(config, assignment)
    validate(config)
    return config


def validate(config: TrainConfig) -> None:
    """Every value checked against its range before anything is built; raises ConfigError naming the key."""
    from strsr.losses.fdl import INPUT_RANGES

    choices = {
        "loss.fdl_input_range": (config.loss.fdl_input_range, INPUT_RANGES),
        "data.crop": (config.data.crop, ("center", "random", "patch")),
        "loss.r1_noise": (config.loss.r1_noise, ("uniform", "gaussian")),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{key}={value!r}; choose one of {', '.join(allowed)}")
    if config.model.mode == "vlm" and not config.model.vlm:
        raise ConfigError("model.vlm: VLM conditioning needs the local Qwen3-VL folder "
                          "(--set model.vlm=/models/Qwen3-VL-4B-Instruct), or set model.conditioning")  # fmt: skip
    if config.run.stage not in (1, 2):
        raise ConfigError(f"run.stage={config.run.stage}; StrSR trains in stages 1 and 2")
    run, optim, loss, data = config.run, config.optim, config.loss, config.data
    at_least = {"run.max_steps": (run.max_steps, 1), "run.checkpoint_every": (run.checkpoint_every, 1),
                "run.log_every": (run.log_every, 1), "run.keep_last": (run.keep_last, 1),
                "run.sample_every": (run.sample_every, 0), "run.grid_every": (run.grid_every, 0),
                "optim.batch_size": (optim.batch_size, 1), "optim.lr_cooldown_steps": (optim.lr_cooldown_steps, 0),
                "data.resolution": (data.resolution, 64),
                "loss.fdl_num_proj": (loss.fdl_num_proj, 1),
                **({"loss.fdl_batch": (loss.fdl_batch, 1)} if loss.fdl_batch is not None else {})}  # fmt: skip
    for key, (value, low) in at_least.items():
        if value < low:
            raise ConfigError(f"{key}={value} must be at least {low}")
    if data.resolution % 64:
        raise ConfigError(f"data.resolution={data.resolution} must be a multiple of 64")
    positive = {"optim.lr_g": optim.lr_g, "optim.lr_d": optim.lr_d, "optim.grad_clip": optim.grad_clip,
                **({"optim.lr_adapter": optim.lr_adapter} if optim.lr_adapter is not None else {})}  # fmt: skip
    weights = {"optim.weight_decay": optim.weight_decay, "loss.lambda_l1": loss.lambda_l1,
               "loss.lambda_lpips": loss.lambda_lpips, "loss.lambda_gan": loss.lambda_gan,
               "loss.lambda_r1": loss.lambda_r1, "loss.r1_sigma": loss.r1_sigma,
               **({"loss.lambda_fdl": loss.lambda_fdl} if loss.lambda_fdl is not None else {})}  # fmt: skip
    for key, value in {**positive, **weights}.items():
        if not math.isfinite(value) or value < 0 or (key in positive and value == 0):
            raise ConfigError(f"{key}={value} must be a finite number {'above' if key in positive else 'at least'} 0")
    if not all(0 <= b < 1 for b in optim.betas):
        raise ConfigError(f"optim.betas={optim.betas} must lie in [0, 1)")
    out = Path(run.output_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"run.output_dir={run.output_dir}: is a file, not a folder")
    if not (data.folders or data.file_lists or data.skimage_images or data.images):
        raise ConfigError("no training data: set data.folders, data.file_lists, data.skimage_images or data.images")
    if data.max_short_side is not None and data.max_short_side < data.resolution:
        raise ConfigError(f"data.max_short_side={data.max_short_side} must be at least data.resolution "
                          f"({data.resolution})")  # fmt: skip
    for i, image in enumerate(data.images):
        if image.source not in IMAGE_SOURCES:
            raise ConfigError(f"data.images[{i}].source={image.source!r}; choose one of {', '.join(IMAGE_SOURCES)}")
        if len(image.sha256) != 64 or any(ch not in "0123456789abcdef" for ch in image.sha256):
            raise ConfigError(f"data.images[{i}].sha256 must be 64 lowercase hex digits, got {image.sha256!r}")


def loss_weights(config: TrainConfig):
    """The objectives' weights for this run; lambda_fdl follows the stage unless set explicitly."""
    from strsr.losses.objectives import LossWeights

    loss = config.loss
    overrides = dict(lambda_l1=loss.lambda_l1, lambda_lpips=loss.lambda_lpips, lambda_gan=loss.lambda_gan,
                     lambda_r1=loss.lambda_r1)  # fmt: skip
    weights = LossWeights.for_stage(config.run.stage, **overrides)
    if loss.lambda_fdl is not None:
        weights = dataclasses.replace(weights, lambda_fdl=loss.lambda_fdl)
    return weights


def write_resolved(config: TrainConfig, path: Path) -> None:
    write_json(path, config.to_dict())
