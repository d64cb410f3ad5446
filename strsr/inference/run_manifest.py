"""The JSON record of one strsr-upscale run (`--manifest FILE`): its settings, and per image the input, the output,
what happened to it and how long it took. Written atomically (`strsr.io.atomic.write_json`), so a reader sees the
previous record or the complete new one.

    {"format": "strsr.run.v1", "tool": "strsr-upscale", "strsr": "0.1.0", "started": "2026-...Z", "seconds": 3.2,
     "settings": {"model": {...ModelSpec...}, "outscale": 2.0, "ext": "auto", ...},
     "images": [{"input": "in/a.png", "output": "out/a.png", "status": "written", "seconds": 1.5,
                 "size": [192, 128]}, {"input": ..., "status": "skipped", "reason": "output exists"}, ...],
     "counts": {"written": 1, "skipped": 1, "failed": 0}}

Under torchrun each rank writes its own file, `FILE` with `.rank<N>` before the suffix.
"""

from __future__ import annotations

import dataclasses
import os
import time
from datetime import datetime, timezone
from pathlib import Path

FORMAT = "strsr.run.v1"
STATUSES = ("written", "skipped", "failed")


def rank_path(path: Path, env=os.environ) -> Path:
    """`path` for this process: itself alone, `name.rank<N>.json` under a torchrun of several ranks."""
    if int(env.get("WORLD_SIZE", 1)) <= 1:
        return Path(path)
    path = Path(path)
    return path.with_name(f"{path.stem}.rank{int(env.get('RANK', 0))}{path.suffix}")


class RunManifest:
    """Collects a run's records; `write(path)` stores them."""

    def __init__(self, tool: str, settings: dict):
        import strsr

        self.tool = tool
        self.version = strsr.__version__
        self.settings = {k: _plain(v) for k, v in settings.items()}
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
        self._clock = time.perf_counter()
        self.images: list[dict] = []

    def add(self, source: Path, target: Path, status: str, *, seconds: float | None = None,
            size: tuple[int, int] | None = None, reason: str | None = None) -> None:  # fmt: skip
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
        record = {"input": str(source), "output": str(target), "status": status}
        if seconds is not None:
            record["seconds"] = round(seconds, 4)
        if size is not None:
            record["size"] = list(size)
        if reason is not None:
            record["reason"] = reason
        self.images.append(record)

    def as_dict(self) -> dict:
        counts = {s: sum(r["status"] == s for r in self.images) for s in STATUSES}
        return {"format": FORMAT, "tool": self.tool, "strsr": self.version, "started": self.started,
                "seconds": round(time.perf_counter() - self._clock, 4), "settings": self.settings,
                "images": self.images, "counts": counts}  # fmt: skip

    def write(self, path: Path) -> Path:
        from strsr.io.atomic import write_json

        return write_json(path, self.as_dict())


def _plain(value):
    """Settings as JSON values: dataclasses (ModelSpec, OutputOptions) as dicts, paths as text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
