"""Write a file so that readers see the old file or the complete new one, never a part, even after a crash."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[str], object], mode: int = 0o644) -> Path:
    """Call `write(temporary_path)` for a hidden file beside `path`, flush it to disk, give it `mode`, rename it over
    `path` and flush the folder entry. On any failure (Ctrl-C included) the temporary file is removed and `path` is
    untouched."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())  # the data is on disk before the name points at it
        os.chmod(tmp, mode)  # after writing: mkstemp creates 0600, and a writer may recreate the file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)
    return path


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename) to disk; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, data, *, indent: int = 2) -> Path:
    """`data` as JSON at `path`, atomically (the folder is created if missing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=indent, default=str) + "\n"  # paths and other scalars as their text
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))
