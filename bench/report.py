"""What every benchmark writes: the machine it ran on, and its records as JSON."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch


def environment(**extra) -> dict:
    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(), **extra}  # fmt: skip


def write_json(path: Path | None, results, **env_extra) -> None:
    """Write {"env": ..., "results": ...} to `path` (no-op without a path)."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"env": environment(**env_extra), "results": results}, indent=2) + "\n")
