"""What every benchmark writes: the machine it ran on, and its records as JSON."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from strsr.io.atomic import write_json as atomic_write_json


def environment(**extra) -> dict:
    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(), **extra}  # fmt: skip


def write_results(path: Path | None, results, **env_extra) -> None:
    """Write {"env": ..., "results": ...} to `path`, atomically (no-op without a path)."""
    if path is not None:
        atomic_write_json(path, {"env": environment(**env_extra), "results": results})
