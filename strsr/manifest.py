"""The manifest beside exported artifacts: what they are, what made them, and a hash of the weights in them.

Re-export is skipped only when an existing manifest records the same weights hash and export settings — never
because a file exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from pathlib import Path

import torch

MANIFEST = "manifest.json"
FORMAT = "strsr.export.v1"


class ManifestError(ValueError):
    """A manifest that does not match the artifacts or this machine; the message names the mismatch."""


def weights_hash(module: torch.nn.Module) -> str:
    """sha256 over every parameter and buffer (name, dtype, shape, bytes), in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def tool_versions() -> dict[str, str]:
    import diffusers
    import onnx
    import onnxruntime

    import strsr

    return {"strsr": strsr.__version__, "torch": torch.__version__, "diffusers": diffusers.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version()}  # fmt: skip


def atomic_write(path: Path, write) -> Path:
    """Call `write(temporary_path)` for a file beside `path`, then rename it into place (0644)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_manifest(out_dir: Path, manifest: dict) -> Path:
    return atomic_write(out_dir / MANIFEST, lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=2) + "\n"))


def read_manifest(out_dir: Path) -> dict | None:
    path = out_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ManifestError(f"{path}: not valid JSON ({err})") from None
    if manifest.get("format") != FORMAT:
        raise ManifestError(f"{path}: not a strsr export manifest (format {manifest.get('format')!r})")
    return manifest


def is_current(out_dir: Path, key: dict) -> bool:
    """True when the folder's manifest was made from the same weights and settings and its files are all there."""
    manifest = read_manifest(out_dir)
    if manifest is None or any(manifest.get(k) != v for k, v in key.items()):
        return False
    return all((out_dir / g["file"]).is_file() for g in manifest.get("graphs", {}).values())


def check_manifest(out_dir: Path, *, preset: str, precision: str | None = None) -> dict:
    """The folder's manifest, refusing one made for another preset or precision."""
    manifest = read_manifest(out_dir)
    if manifest is None:
        raise ManifestError(f"{out_dir / MANIFEST}: no export manifest (run strsr-export first)")
    if manifest["preset"] != preset:
        raise ManifestError(f"{out_dir / MANIFEST}: exported for preset {manifest['preset']!r}, not {preset!r}")
    if precision is not None and manifest["precision"] != precision:
        raise ManifestError(f"{out_dir / MANIFEST}: exported in {manifest['precision']}, not {precision}")
    missing = [g["file"] for g in manifest.get("graphs", {}).values() if not (out_dir / g["file"]).is_file()]
    if missing:
        raise ManifestError(f"{out_dir}: manifest lists missing files: {', '.join(missing)}")
    return manifest
