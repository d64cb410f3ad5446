"""`strsr-train`: train with a TOML recipe, or export a checkpoint's inference weights.

    strsr-train tiny                                   # the shipped tiny recipe, on CPU
    torchrun --nproc_per_node=8 -m strsr.train.cli flux2-klein-4b-stage1 --set model.pretrained=/models/klein
    strsr-train tiny --resume                          # continue from the latest complete checkpoint
    strsr-train export-weights runs/tiny -o strsr-tiny.safetensors
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

from strsr.spec import HelpFormatter
from strsr.train import RECIPES

log = logging.getLogger("strsr.train")


def export_weights(source: Path, output: Path) -> Path:
    """Copy the generator weights of a checkpoint (or a run's latest one) to `output`, atomically."""
    from strsr.io.atomic import atomic_write
    from strsr.model.checkpoint import CheckpointError, read_metadata
    from strsr.train import checkpointing as ckpt

    directory = source
    if not (source / "generator.safetensors").is_file():
        directory = ckpt.latest_checkpoint(source) or ckpt.latest_checkpoint(source / "checkpoints")
        if directory is None:
            raise CheckpointError(f"{source}: no complete checkpoint found")
    weights = directory / "generator.safetensors"
    read_metadata(weights)  # refuse anything that is not a strsr checkpoint
    output.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(output, lambda tmp: shutil.copyfile(weights, tmp))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="strsr-train: %(message)s", stream=sys.stderr)
    if argv[:1] == ["export-weights"]:
        p = argparse.ArgumentParser(prog="strsr-train export-weights", formatter_class=HelpFormatter,
                                    description="the generator weights of a checkpoint, for strsr-upscale")
        p.add_argument("source", type=Path, help="a checkpoint directory or a run directory")
        p.add_argument("-o", "--output", type=Path, required=True, help="the .safetensors file to write")
        args = p.parse_args(argv[1:])
        from strsr.model.checkpoint import CheckpointError

        try:
            log.info("wrote %s", export_weights(args.source, args.output))
        except CheckpointError as err:
            log.error("%s", err)
            return 2
        return 0

    p = argparse.ArgumentParser(prog="strsr-train", description="Train StrSR with a TOML recipe.",
                                formatter_class=HelpFormatter)  # fmt: skip
    p.add_argument("recipe", help=f"a recipe file or a shipped recipe: {', '.join(RECIPES)}")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a recipe value, typed against the config (repeatable)")  # fmt: skip
    p.add_argument("--resume", action="store_true", help="continue from the latest complete checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="start over in a run.output_dir that already holds checkpoints (they are deleted)")
    args = p.parse_args(argv)
    from strsr.model.checkpoint import CheckpointError
    from strsr.train.config import ConfigError, load_config

    try:
        config = load_config(args.recipe, args.overrides)
    except (ConfigError, ValueError) as err:
        log.error("%s", err)
        return 2

    from strsr.train.data import DatasetError
    from strsr.train.trainer import Trainer, TrainingDiverged

    trainer = None
    try:
        trainer = Trainer(config, resume=args.resume, overwrite=args.overwrite)
        trainer.train()
    except (DatasetError, CheckpointError, FileNotFoundError) as err:
        log.error("%s", err)
        return 2
    except TrainingDiverged as err:
        log.error("%s", err)
        return 3
    finally:
        if trainer is not None:
            trainer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
