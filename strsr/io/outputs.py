"""Output names for a batch of inputs: one output per input, never two inputs on one output, never over an input.

A folder input keeps its layout under the output folder; a file input goes to the output folder by its name. Inputs
that would still share an output name are told apart as little as needed, and each renaming is reported:
- by their source format where that differs (photo.jpg, photo.png -> photo-jpg.png, photo-png.png), and
- by the folders they come from, one level at a time (d1/a.png, d2/a.png -> d1/a.png, d2/a.png under the output).
The same file given twice (alone and inside a given folder) is processed once.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from strsr.io.images import find_images

log = logging.getLogger("strsr")


@dataclass(frozen=True)
class _Source:
    path: Path
    anchor: Path  # the folder `relative` is relative to: the input folder, or a file input's own folder
    relative: Path


def plan_outputs(inputs: list[Path], out_dir: Path, name: Callable[[Path], Path]) -> list[tuple[Path, Path]]:
    """(input, output) pairs in input order. `name(relative)` turns a source's relative path into its output's
    relative path (e.g. a new suffix); raises ValueError if an output would replace an input."""
    sources, seen = [], set()
    for item in inputs:
        found = [(f, item, f.relative_to(item)) for f in find_images([item])] if item.is_dir() else [
            (item, item.parent, Path(item.name))]  # fmt: skip
        for path, anchor, relative in found:
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            sources.append(_Source(path, anchor, relative))
    relatives = [s.relative for s in sources]
    depth = [0] * len(sources)
    while True:
        targets = [name(r) for r in relatives]
        counts = Counter(targets)
        clashing = [i for i, t in enumerate(targets) if counts[t] > 1]
        if not clashing:
            break
        for target in {targets[i] for i in clashing}:
            group = [i for i in clashing if targets[i] == target]
            _tell_apart(group, sources, relatives, depth)
    renamed = [(s.path, r) for s, r in zip(sources, relatives) if r != s.relative]
    for path, relative in renamed:
        log.info("%s shares its output name with another input: writing %s", path, name(relative))
    pairs = [(s.path, out_dir / name(r)) for s, r in zip(sources, relatives)]
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
