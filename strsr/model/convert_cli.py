"""`strsr-convert`: official StrSR checkpoints (state_dict.pth + projector.pth) to and from strsr's safetensors.

    strsr-convert to-strsr StrSR-flux/ -o strsr-flux.safetensors --preset flux2-klein-4b
    strsr-convert to-official strsr-flux.safetensors -o StrSR-flux/ --preset flux2-klein-4b

The model layout comes from the preset, built on the meta device (no weights are read or downloaded); the VLM's
width is Qwen3-VL-4B's (2560) unless `--vlm DIR` (its config only) or `--vlm-width` says otherwise. Every key is
checked: missing, unexpected, wrong shape or rank, and non-tensor values are listed in one error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from strsr.presets import PRESETS, QWEN3_VL_4B_WIDTH
from strsr.spec import HelpFormatter

log = logging.getLogger("strsr.convert")


def vlm_width(folder: Path | None, width: int | None) -> int:
    if folder is None:
        return width or QWEN3_VL_4B_WIDTH
    from transformers import AutoConfig

    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder / 'config.json'}: missing Qwen3-VL config")
    return AutoConfig.from_pretrained(folder, local_files_only=True).text_config.hidden_size


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="strsr-convert", description=__doc__.splitlines()[0].split(": ", 1)[1],
                                formatter_class=HelpFormatter)  # fmt: skip
    p.add_argument("direction", choices=("to-strsr", "to-official"), help="which way to convert")
    p.add_argument("source", type=Path, help="official folder (to-strsr) or strsr .safetensors (to-official)")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="strsr .safetensors (to-strsr) or official folder (to-official)")  # fmt: skip
    p.add_argument("--preset", required=True, choices=list(PRESETS), help="the backbone the checkpoint is for")
    width = p.add_mutually_exclusive_group()
    width.add_argument("--vlm", type=Path, help="local Qwen3-VL folder (only its config is read)")
    width.add_argument("--vlm-width", type=int, help=f"the VLM's text hidden size (default {QWEN3_VL_4B_WIDTH}, "
                                                     "Qwen3-VL-4B)")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="strsr-convert: %(message)s", stream=sys.stderr)
    from strsr.model.build import build_generator
    from strsr.model.checkpoint import CheckpointError, checkpoint_lora_rank
    from strsr.model.official_checkpoint import official_lora_rank, official_to_strsr, strsr_to_official
    from strsr.spec import ModelSpec

    try:
        if a.direction == "to-strsr":
            rank = official_lora_rank(a.source)
        else:
            rank = checkpoint_lora_rank(a.source, PRESETS[a.preset])
        spec = ModelSpec(preset=a.preset, random_weights=True, device="meta", conditioning="vlm",
                         vlm_width=vlm_width(a.vlm, a.vlm_width), lora_rank=rank)  # fmt: skip
        convert = official_to_strsr if a.direction == "to-strsr" else strsr_to_official
        out = convert(a.source, a.output, build_generator(spec))
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        log.error("%s", err)
        return 2
    log.info("wrote %s (LoRA rank %d)", out, rank)
    return 0


if __name__ == "__main__":
    sys.exit(main())
