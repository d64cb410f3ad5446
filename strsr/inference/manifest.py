"""The manifest beside exported artifacts: what they are, what made them, a hash of the weights in them, and the
size and sha256 of every file it names.

An export folder may come from someone else, so it is read as hostile input: every file name must stay inside the
folder (no absolute paths, no `..`, no symlink that leads out), every named file must be listed with its size, and a
file whose size (always checked) or hash (checked on export and on `--verify`) differs is refused. Each malformed
case ends in one line naming the folder and the problem. Re-export is skipped only when an existing manifest records
the same weights hash and settings and its files check out — never because a file exists.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path, PurePosixPath

import torch

from strsr.io.atomic import atomic_write
from strsr.spec import CONDITIONING_MODES

MANIFEST = "manifest.json"
FORMAT = "strsr.export.v1"
STAGES = ("vae_encoder", "dit_onestep", "vae_decoder")
_HASH_CHUNK = 1 << 24


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


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_record(path: Path) -> dict:
    """What the manifest keeps of a file it names: its size and sha256."""
    return {"bytes": path.stat().st_size, "sha256": file_sha256(path)}


def inside(folder: Path, name: object, what: str) -> Path:
    """`folder / name` for a name read from a manifest; refuses a non-string, an absolute path, `..`, and a symlink
    (anywhere on the way) that resolves outside `folder`."""
    where = folder / MANIFEST
    if not isinstance(name, str) or not name:
        raise ManifestError(f"{where}: {what} must be a file name, got {name!r}")
    relative = PurePosixPath(name)
    if relative.is_absolute() or "\\" in name or ":" in relative.parts[0] or ".." in relative.parts:
        raise ManifestError(f"{where}: {what} {name!r} must not leave the export folder")
    path = folder / relative
    if not path.resolve().is_relative_to(folder.resolve()):
        raise ManifestError(f"{where}: {what} {name!r} is a link that leaves the export folder")
    return path


def write_manifest(out_dir: Path, manifest: dict) -> Path:
    text = json.dumps(manifest, indent=2) + "\n"
    return atomic_write(out_dir / MANIFEST, lambda tmp: Path(tmp).write_text(text))


def read_manifest(out_dir: Path) -> dict | None:
    """The folder's manifest as written (None when there is none); only its JSON and format are checked here."""
    path = out_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ManifestError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ManifestError(f"{path}: not a strsr export manifest (format {got!r})")
    return manifest


def _section(manifest: dict, key: str, kind: type, where: Path):
    value = manifest.get(key)
    if not isinstance(value, kind):
        article = "an object" if kind is dict else f"a {kind.__name__}"
        raise ManifestError(f"{where}: '{key}' is missing or not {article}")
    return value


def referenced_files(out_dir: Path, manifest: dict) -> dict[str, str]:
    """Every file the manifest points at, {name: what it is}, each checked to stay inside the folder."""
    where = out_dir / MANIFEST
    graphs = _section(manifest, "graphs", dict, where)
    names = {}
    for stage, graph in graphs.items():
        if not isinstance(graph, dict):
            raise ManifestError(f"{where}: graph {stage!r} is not an object")
        names[graph.get("file")] = f"graph {stage!r}"
        for extra in graph.get("external_data", []):
            names[extra] = f"graph {stage!r} external data"
    conditioning = conditioning_entry(manifest, where)
    if conditioning["mode"] != "vlm":
        names[conditioning.get("file")] = "conditioning file"
    engines = (manifest.get("tensorrt") or {}).get("engines", {})
    if not isinstance(engines, dict):
        raise ManifestError(f"{where}: 'tensorrt.engines' is not an object")
    for stage, engine in engines.items():
        names[engine.get("file") if isinstance(engine, dict) else engine] = f"TensorRT engine {stage!r}"
    for name, what in names.items():
        inside(out_dir, name, what)
    return names


def conditioning_entry(manifest: dict, where: Path) -> dict:
    """The manifest's conditioning section, {"mode": ..., "file": ...}; exports from before it only had a file."""
    entry = manifest.get("conditioning")
    if entry is None and "condition_file" in manifest:
        entry = {"mode": "none", "file": manifest["condition_file"]}
    if not isinstance(entry, dict) or entry.get("mode") not in CONDITIONING_MODES:
        raise ManifestError(f"{where}: 'conditioning' must say its mode ({', '.join(CONDITIONING_MODES)})")
    return entry


def verify_files(out_dir: Path, manifest: dict, *, hashes: bool) -> None:
    """Every referenced file exists inside the folder with the recorded size, and (`hashes`) the recorded sha256."""
    where = out_dir / MANIFEST
    records = manifest.get("files")
    if not isinstance(records, dict):
        raise ManifestError(f"{where}: no file records (made by an older strsr-export: re-export with --force)")
    for name, what in referenced_files(out_dir, manifest).items():
        record = records.get(name)
        if not isinstance(record, dict) or not isinstance(record.get("bytes"), int):
            raise ManifestError(f"{where}: {what} {name!r} has no size and hash record")
        path = inside(out_dir, name, what)
        if not path.is_file():
            raise ManifestError(f"{out_dir}: {what} {name} is missing")
        size = path.stat().st_size
        if size != record["bytes"]:
            raise ManifestError(f"{path}: {size} bytes, the manifest says {record['bytes']} (truncated or replaced; "
                                "re-export)")  # fmt: skip
        if hashes and file_sha256(path) != record.get("sha256"):
            raise ManifestError(f"{path}: sha256 differs from the manifest's (corrupt or replaced; re-export)")


def is_current(out_dir: Path, key: dict) -> bool:
    """True when the folder's manifest was made from the same weights and settings and every file it names is
    there with its recorded size and hash."""
    try:
        manifest = read_manifest(out_dir)
        if manifest is None or any(manifest.get(k) != v for k, v in key.items()):
            return False
        verify_files(out_dir, manifest, hashes=True)
    except ManifestError:
        return False
    return True


def check_manifest(out_dir: Path, *, preset: str, precision: str | None = None, verify: bool = False) -> dict:
    """The folder's manifest, validated: made for `preset` (and `precision`), the three stage graphs present, every
    file inside the folder with its recorded size (and hash when `verify`)."""
    manifest = read_manifest(out_dir)
    where = out_dir / MANIFEST
    if manifest is None:
        raise ManifestError(f"{where}: no export manifest (run strsr-export first)")
    if manifest.get("preset") != preset:
        raise ManifestError(f"{where}: exported for preset {manifest.get('preset')!r}, not {preset!r}")
    if precision is not None and manifest.get("precision") != precision:
        raise ManifestError(f"{where}: exported in {manifest.get('precision')}, not {precision}")
    graphs = _section(manifest, "graphs", dict, where)
    missing = [s for s in STAGES if s not in graphs]
    if missing:
        raise ManifestError(f"{where}: export lacks graphs {', '.join(missing)}")
    verify_files(out_dir, manifest, hashes=verify)
    return manifest
