"""Output names for a batch of inputs: one output per input, never two inputs on one output, never over an input.

A folder input keeps its layout under the output folder; a file input goes to the output folder by its name. Inputs
that would still share an output name are told apart as little as needed, and each renaming is reported:
- by their source format where that differs (photo.jpg, photo.png -> photo-jpg.png, photo-png.png), and
- by the folders they come from, one level at a time (d1/a.png, d2/a.png -> d1/a.png, d2/a.png under the output).
The same file given twice (alone and inside a given folder) is processed once.

`plan_upscale_outputs` names outputs as Real-ESRGAN's inference script does: `<stem>.<ext>`, or `<stem>_<suffix>.<ext>`
with a suffix, where `ext` "auto" keeps the input's own format (`photo.jpg` -> `photo.jpg`) and any other value
(`png`, `jpg`, `webp`, `tif`) is used for every input. With "auto", `a.png` and `a.jpg` do not clash at all; with one
forced format they become `a-png.png` and `a-jpg.png` (Real-ESRGAN would write both to `a.png`, the second over the
first).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from strsr.io.formats import EXTENSIONS, FORMAT_BY_SUFFIX
from strsr.io.images import find_images

log = logging.getLogger("strsr")


@dataclass(frozen=True)
class _Source:
    path: Path
    anchor: Path  # the folder `relative` is relative to: the input folder, or a file input's own folder
    relative: Path
    found: bool  # found by searching a folder (not named on the command line)


def plan_outputs(inputs: list[Path], out_dir: Path, name: Callable[[Path], Path]) -> list[tuple[Path, Path]]:
    """(input, output) pairs in input order. `name(relative)` turns a source's relative path into its output's
    relative path (e.g. a new suffix); raises ValueError if an output would replace an input."""
    return _plan(_sources(inputs), out_dir, lambda relative, source: name(relative))


def plan_upscale_outputs(inputs: list[Path], out_dir: Path, *, ext: str = "auto",
                         suffix: str = "") -> list[tuple[Path, Path]]:  # fmt: skip
    """strsr-upscale's (input, output) pairs: Real-ESRGAN's names (see the module docstring). A file found in a given
    folder that is the output another input of this run would write (`a_out.png` beside `a.png`, from an earlier run
    with `--suffix out` into the input folder) is not taken as an input. Raises ValueError for an unknown `ext`, a
    `suffix` with a path separator, or an output that would replace an input."""
    if ext not in EXTENSIONS:
        raise ValueError(f"--ext {ext!r}: choose from {', '.join(EXTENSIONS)}")
    if "/" in suffix or "\\" in suffix:
        raise ValueError(f"--suffix {suffix!r}: a suffix cannot contain a path separator")
    tag = f"_{suffix}" if suffix else ""
    formats: dict[Path, str] = {}

    def name(relative: Path, source: _Source) -> Path:
        if source.path not in formats:
            formats[source.path] = auto_suffix(source.path) if ext == "auto" else f".{ext}"
        return relative.with_name(f"{relative.stem}{tag}{formats[source.path]}")

    sources = _sources(inputs)
    while True:
        pairs = _plan(sources, out_dir, name, check=False)
        targets = {target.resolve(): src for src, target in pairs}
        earlier = [s for s in sources if s.found and targets.get(s.path.resolve(), s.path) != s.path]
        if not earlier:
            return _plan(sources, out_dir, name)
        for s in earlier:
            log.info("%s is the output of %s in this run: not taken as an input", s.path, targets[s.path.resolve()])
        sources = [s for s in sources if s not in earlier]


def auto_suffix(path: Path) -> str:
    """The output suffix `--ext auto` gives `path`: its own (spelled as given) when it is one strsr writes and the
    file really is in that format, else `.png`. A file whose header cannot be read keeps its suffix: loading it will
    report the problem."""
    want = FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if want is None:
        return ".png"
    try:
        with Image.open(path) as image:  # reads the header only
            found = image.format
    except (OSError, UnidentifiedImageError, ValueError):
        return path.suffix
    return path.suffix if found == want else ".png"


def _sources(inputs: list[Path]) -> list[_Source]:
    sources, seen = [], set()
    for item in inputs:
        found = [(f, item, f.relative_to(item), True) for f in find_images([item])] if item.is_dir() else [
            (item, item.parent, Path(item.name), False)]  # fmt: skip
        for path, anchor, relative, in_folder in found:
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            sources.append(_Source(path, anchor, relative, in_folder))
    return sources


def _plan(sources: list[_Source], out_dir: Path, name: Callable[[Path, _Source], Path],
          check: bool = True) -> list[tuple[Path, Path]]:  # fmt: skip
    relatives = [s.relative for s in sources]
    depth = [0] * len(sources)
    while True:
        targets = [name(r, s) for r, s in zip(relatives, sources)]
        counts = Counter(targets)
        clashing = [i for i, t in enumerate(targets) if counts[t] > 1]
        if not clashing:
            break
        for target in {targets[i] for i in clashing}:
            group = [i for i in clashing if targets[i] == target]
            _tell_apart(group, sources, relatives, depth)
    pairs = [(s.path, out_dir / t) for s, t in zip(sources, targets)]
    if not check:
        return pairs
    for s, r, t in zip(sources, relatives, targets):
        if r != s.relative:
            log.info("%s shares its output name with another input: writing %s", s.path, t)
    resolved_inputs = {s.path.resolve() for s in sources}
    for _, target in pairs:
        if target.resolve() in resolved_inputs:
            raise ValueError(f"{target}: output would overwrite an input; choose another output folder")
    return pairs


def _tell_apart(group: list[int], sources: list[_Source], relatives: list[Path], depth: list[int]) -> None:
    """Rename the members of `group` (indices that share an output) one step further apart, in place."""
    suffixes = Counter(relatives[i].suffix.lower() for i in group)
    if len(suffixes) > 1:  # tag the source format where it differs
        for i in group:
            if relatives[i].suffix:
                r = relatives[i]
                relatives[i] = r.with_name(f"{r.stem}-{r.suffix[1:].lower()}{r.suffix}")
        return
    for i in group:  # otherwise one more folder level of where each came from
        parts = sources[i].anchor.resolve().parts[1:]  # without the root
        depth[i] += 1
        if depth[i] <= len(parts):
            relatives[i] = Path(*parts[-depth[i] :]) / sources[i].relative
        else:  # every folder level is the same: only possible for distinct files by a numbered name
            r = relatives[i]
            relatives[i] = r.with_name(f"{r.stem}-{depth[i] - len(parts)}{r.suffix}")
