"""Training checkpoints: written atomically (temporary directory, then rename), last K kept, latest resumed.

A checkpoint directory `step-00001234/` holds:
    generator.safetensors   trainable generator tensors (strsr format: also what inference loads)
    training.pt             discriminator heads, FDL projections, both optimizers, step, resolved config
    rank-<r>.pt             each rank's RNG states and RealESRGAN pair queue
A directory without the `.tmp` suffix is complete by construction: it only gets its name once every file is in.
"""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from strsr.model.checkpoint import save_generator

_NAME = re.compile(r"^step-(\d{8})$")


def checkpoint_dirs(root: Path) -> list[Path]:
    """Complete checkpoints under `root`, oldest first."""
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name)), key=lambda p: p.name)


def latest_checkpoint(root: Path) -> Path | None:
    found = checkpoint_dirs(root)
    return found[-1] if found else None


def rng_state() -> dict:
    """The process's RNG states as tensors and plain values only, so the file loads with weights_only=True."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                    cached), "torch": torch.get_rng_state()}  # fmt: skip
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def staging_dir(root: Path, step: int) -> Path:
    return root / f"step-{step:08d}.tmp"


def write_shared(staging: Path, generator, training_state: dict) -> None:
    """Rank 0's part: generator tensors and the training state."""
    save_generator(generator, staging / "generator.safetensors")
    torch.save(training_state, staging / "training.pt")


def write_rank(staging: Path, rank: int, rank_state: dict) -> None:
    torch.save(rank_state, staging / f"rank-{rank}.pt")


def publish(root: Path, step: int, keep_last: int) -> Path:
    """Give the staged checkpoint its final name, then drop all but the newest `keep_last`."""
    final = root / f"step-{step:08d}"
    if final.exists():
        shutil.rmtree(final)
    staging_dir(root, step).rename(final)
    for old in checkpoint_dirs(root)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def prepare_staging(root: Path, step: int) -> Path:
    staging = staging_dir(root, step)
    if staging.exists():
        shutil.rmtree(staging)  # left by a crash mid-write: never complete, safe to discard
    staging.mkdir(parents=True)
    return staging
