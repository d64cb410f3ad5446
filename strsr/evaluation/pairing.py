"""Pair prediction files with ground-truth files by name, and say what did not pair.

The key of a file is its path relative to its folder without the suffix (``sub/0801.png`` and ``sub/0801.jpg``
pair), so outputs written in another format still match. Two files with the same key in one folder (``a.png`` and
``a.jpg``) are ambiguous and an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from strsr.io.images import ImageReadError, find_images

__all__ = ["Pairing", "PairingError", "image_keys", "pair_folders"]


class PairingError(ValueError):
    """Folders that cannot be paired at all (ambiguous names, nothing in common)."""


@dataclass(frozen=True)
class Pairing:
    """pairs: (key, pred, gt or None), sorted by key; pred_only / gt_only: keys found on one side only."""

    pairs: tuple[tuple[str, Path, Path | None], ...]
    pred_only: tuple[str, ...] = ()
    gt_only: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return not self.pred_only and not self.gt_only

    def report(self, pred_dir: Path, gt_dir: Path | None = None, limit: int = 10) -> str:
        """One line per problem kind, listing at most `limit` names each; "" when everything paired."""
        lines = []
        for keys, what in ((self.gt_only, f"in {gt_dir} but missing from {pred_dir}"),
                           (self.pred_only, f"in {pred_dir} but not in {gt_dir} (not scored)")):  # fmt: skip
            if keys:
                shown = ", ".join(keys[:limit]) + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")
                lines.append(f"{len(keys)} image(s) {what}: {shown}")
        return "\n".join(lines)


def image_keys(folder: Path) -> dict[str, Path]:
    """{key: path} for the images under `folder` (recursive). Raises PairingError on a missing folder or clashes."""
    if not folder.is_dir():
        raise PairingError(f"{folder}: not a folder")
    try:
        files = find_images([folder])
    except ImageReadError as err:
        raise PairingError(str(err)) from err
    keys: dict[str, Path] = {}
    for path in files:
        key = path.relative_to(folder).with_suffix("").as_posix()
        if key in keys:
            raise PairingError(f"{folder}: {keys[key].name} and {path.name} have the same name; keep one")
        keys[key] = path
    return keys


def pair_folders(pred_dir: Path, gt_dir: Path | None = None) -> Pairing:
    """Pair by key. Without `gt_dir`, every prediction stands alone. Raises PairingError if nothing pairs."""
    preds = image_keys(pred_dir)
    if gt_dir is None:
        return Pairing(tuple((k, p, None) for k, p in sorted(preds.items())))
    gts = image_keys(gt_dir)
    common = sorted(preds.keys() & gts.keys())
    if not common:
        raise PairingError(
            f"no file in {pred_dir} has a name found in {gt_dir} (e.g. {next(iter(sorted(preds)))} vs "
            f"{next(iter(sorted(gts)))}); files pair by name without the suffix"
        )
    return Pairing(
        pairs=tuple((k, preds[k], gts[k]) for k in common),
        pred_only=tuple(sorted(preds.keys() - gts.keys())),
        gt_only=tuple(sorted(gts.keys() - preds.keys())),
    )
