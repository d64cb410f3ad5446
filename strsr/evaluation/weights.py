"""Weight files for pyiqa's learned metrics: which files each metric needs, where they are found, and a guard that
keeps metric creation off the network.

pyiqa fetches weights while a metric is built: its own checkpoints through ``load_file_from_url`` into
``<torch hub>/pyiqa``, torchvision backbones into ``<torch hub>/checkpoints``, CLIP into ``<torch hub>/clip``, timm and
Q-Align from the Hugging Face hub (which retries for ~48 s before failing when offline). Here every file is looked
up *before* pyiqa runs, in this order: a per-metric path (``--weights METRIC=PATH``), the ``--weights-dir`` folders,
then the cache folder the library itself reads. A missing file is an error naming the file, the metric and where
to put it. While the metric is built, ``offline_loading`` serves the files found and turns any other download
attempt into the same kind of error, at once (Hugging Face in offline mode, no retries).

File names are read from the libraries' own URL tables, so they follow the installed versions.

Weight files from elsewhere are hostile: pyiqa unpickles its checkpoints with `torch.load(weights_only=False)`, which
runs any code a file carries. So every such file is first loaded here with `weights_only=True` (tensors and plain
containers only); one that needs anything else is refused before pyiqa sees it, so its code never runs.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from strsr.spec import MissingWeightsError

__all__ = ["MissingWeightsError", "UnsafeWeightsError", "WeightFile", "offline_loading", "required_files",
           "resolve_weights"]  # fmt: skip

# Files pyiqa unpickles without restriction (its own .pth checkpoints); .mat and .safetensors carry no code.
_PICKLED_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".pkl")


class UnsafeWeightsError(MissingWeightsError):
    """A metric's weight file that would run code when loaded (or cannot be read); it is refused, never loaded."""


@functools.lru_cache(maxsize=64)
def _plain_data_check(path: str, size: int, mtime_ns: int) -> str | None:
    """None if the pickle at `path` loads with weights_only=True, else why not (size and mtime key the cache)."""
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch names what the restricted unpickler refused on a line of its message: "Unsupported global: ..."
        refused = [line.strip() for line in str(err).splitlines() if "Unsupported global" in line]
        if refused:
            return f"loading it would run code from the file ({refused[0].rstrip('.')})"
        return "not a readable PyTorch weights file (its pickle is not plain data)"
    except Exception as err:  # a truncated or foreign file: torch raises RuntimeError, EOFError, ...
        return f"not a readable PyTorch weights file ({type(err).__name__}: {str(err).strip().splitlines()[0]})"
    return None


def check_plain_data(metric: str, path: Path) -> None:
    """Refuse a pickled weight file that holds more than tensors and plain containers."""
    stat = path.stat()
    problem = _plain_data_check(str(path), stat.st_size, stat.st_mtime_ns)
    if problem:
        raise UnsafeWeightsError(f"metric {metric!r}: {path}: refused, {problem}; use the metric's official "
                                 "checkpoint")  # fmt: skip


@dataclass(frozen=True)
class WeightFile:
    """One file a metric loads. `cache`: pyiqa | torchvision | clip | hf-file | hf-repo."""

    name: str  # the file name the library looks for (hf-file: the flat name to use in a --weights-dir folder)
    cache: str
    url: str  # where to download it (for messages)
    what: str
    hf_repo: str | None = None  # hf-*: the hub repository
    hf_filename: str | None = None  # hf-file: the file inside the repository

    def default_location(self) -> Path:
        """The folder (hf-repo: the repository snapshot root) the library reads without our help."""
        hub = Path(torch.hub.get_dir())
        if self.cache in ("pyiqa", "torchvision", "clip"):
            return hub / {"pyiqa": "pyiqa", "torchvision": "checkpoints", "clip": "clip"}[self.cache]
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE) / f"models--{self.hf_repo.replace('/', '--')}"

    def find_in_cache(self) -> Path | None:
        if self.cache in ("pyiqa", "torchvision", "clip"):
            path = self.default_location() / self.name
            return path if path.is_file() else None
        from huggingface_hub import try_to_load_from_cache

        probe = self.hf_filename if self.cache == "hf-file" else "config.json"
        found = try_to_load_from_cache(self.hf_repo, probe)
        if not isinstance(found, str):
            return None
        return Path(found) if self.cache == "hf-file" else Path(found).parent


def _name(url: str) -> str:
    return os.path.basename(urlparse(url).path)


def _pyiqa(url: str, what: str) -> WeightFile:
    return WeightFile(_name(url), "pyiqa", url, what)


def required_files(metric: str) -> tuple[WeightFile, ...]:
    """The files `pyiqa.create_metric(metric)` loads with the default options, the metric's own checkpoint first.

    Metrics not listed here are weight-free or unknown to strsr; for the latter, `offline_loading` still catches
    their downloads and names the file.
    """
    from pyiqa.archs import clip_model, dists_arch, lpips_arch, maniqa_arch, musiq_arch, niqe_arch, qualiclip_arch
    from timm.models import get_pretrained_cfg
    from torchvision.models import AlexNet_Weights, VGG16_Weights

    alexnet, vgg16 = AlexNet_Weights.IMAGENET1K_V1.url, VGG16_Weights.IMAGENET1K_V1.url
    vit = get_pretrained_cfg("vit_base_patch8_224").hf_hub_id
    table = {
        "lpips": (_pyiqa(lpips_arch.default_model_urls["0.1_alex"], "LPIPS v0.1 linear layers (AlexNet)"),
                  WeightFile(_name(alexnet), "torchvision", alexnet, "torchvision AlexNet ImageNet weights")),
        "dists": (_pyiqa(dists_arch.default_model_urls["url"], "DISTS alpha/beta weights"),
                  WeightFile(_name(vgg16), "torchvision", vgg16, "torchvision VGG16 ImageNet weights")),
        "niqe": (_pyiqa(niqe_arch.default_model_urls["url"], "NIQE pristine model parameters"),),
        "maniqa": (_pyiqa(maniqa_arch.default_model_urls["koniq"], "MANIQA KonIQ-10k checkpoint"),
                   WeightFile(f"{vit.split('/')[-1]}.safetensors", "hf-file",
                              f"https://huggingface.co/{vit}/resolve/main/model.safetensors",
                              "timm ViT-B/8 ImageNet weights (MANIQA's backbone)", vit, "model.safetensors")),
        "musiq": (_pyiqa(musiq_arch.default_model_urls["koniq10k"], "MUSIQ KonIQ-10k checkpoint"),),
        "qualiclip": (_pyiqa(qualiclip_arch.default_model_urls["qualiclip"], "QualiCLIP checkpoint"),
                      WeightFile(_name(clip_model._MODELS["RN50"]), "clip", clip_model._MODELS["RN50"],
                                 "OpenAI CLIP RN50 weights")),
        "qalign": (WeightFile("one-align", "hf-repo", "https://huggingface.co/q-future/one-align",
                              "Q-Align model folder (mPLUG-Owl2, about 16 GB)", "q-future/one-align"),),
    }  # fmt: skip
    return table.get(metric, ())


def _where_to_put(metric: str, file: WeightFile) -> str:
    if file.cache == "hf-repo":
        return (f"download the repository {file.url} into the Hugging Face cache ({file.default_location()}, e.g. "
                f"`hf download {file.hf_repo}` on a connected machine), or into a folder named {file.name}/ inside a "
                f"--weights-dir folder, or pass --weights {metric}=/path/to/{file.name}")  # fmt: skip
    target = f"{file.default_location()}/" if file.cache != "hf-file" else f"the Hugging Face cache ({file.hf_repo})"
    return (f"download {file.url} and save it as {file.name} in {target} or in a --weights-dir folder"
            + (f", or pass --weights {metric}=/path/to/{file.name}" if file.cache == "pyiqa" else ""))


def resolve_weights(metric: str, search_dirs: Sequence[Path] = (), override: Path | None = None) -> dict[str, Path]:
    """Find every file `metric` needs: {file name: path}. Raises MissingWeightsError listing all that are missing.

    override: a file (it stands for the metric's own checkpoint, whatever its name) or a folder searched first.
    """
    files = required_files(metric)
    found: dict[str, Path] = {}
    missing = []
    for i, file in enumerate(files):
        candidates = []
        if override is not None:
            if override.is_file() and i == 0:
                found[file.name] = override
                continue
            candidates.append(override)
        candidates += list(search_dirs)
        hit = next((d / file.name for d in candidates if (d / file.name).exists()), None) or file.find_in_cache()
        if hit is None:
            missing.append(f"  {file.name} ({file.what}): {_where_to_put(metric, file)}")
        else:
            found[file.name] = hit
    if override is not None and not override.exists():
        raise MissingWeightsError(f"{metric}: --weights {metric}={override}: no such file or folder")
    if missing:
        searched = ", ".join(str(d) for d in [*([override] if override else []), *search_dirs]) or "none given"
        raise MissingWeightsError(
            f"metric {metric!r} cannot be built offline: {len(missing)} weight file(s) missing "
            f"(searched: --weights folders {searched}, and the library caches)\n" + "\n".join(missing)
        )
    for file in files:
        path = found[file.name]
        if file.cache == "pyiqa" and path.is_file() and path.suffix.lower() in _PICKLED_SUFFIXES:
            check_plain_data(metric, path)
    return found


def _refuse(metric: str, url: str, target: str) -> MissingWeightsError:
    return MissingWeightsError(
        f"metric {metric!r} tried to download {_name(url)} ({url}); strsr-eval never downloads: save that file as "
        f"{target} (or in a --weights-dir folder) and run again"
    )


@contextlib.contextmanager
def offline_loading(metric: str, found: Mapping[str, Path]) -> Iterator[None]:
    """While building `metric`: serve the files in `found`, refuse every download at once."""
    import huggingface_hub.constants
    import torch.hub
    import torchvision.models._api as tv_api
    from pyiqa.archs import clip_model
    from pyiqa.utils import download_util
    from timm.models import _builder

    original_load_file = download_util.load_file_from_url
    original_tv_load = tv_api.load_state_dict_from_url
    original_clip_download = clip_model._download
    original_hf_load = _builder.load_state_dict_from_hf

    def load_file_from_url(url, model_dir=None, progress=True, file_name=None):
        name = file_name or _name(url)
        if name in found:
            return str(found[name])
        cached = Path(model_dir or download_util.DEFAULT_CACHE_DIR) / name
        if cached.is_file():
            return str(cached)
        raise _refuse(metric, url, str(cached))

    def load_state_dict_from_url(url, *args, **kwargs):
        name = kwargs.get("file_name") or _name(url)
        if name in found:
            return torch.load(found[name], map_location="cpu", weights_only=True)
        return original_tv_load(url, *args, **kwargs)  # reads the torch hub cache; a download hits the guard below

    def download_url_to_file(url, dst, *args, **kwargs):
        raise _refuse(metric, url, str(dst))

    def clip_download(url, root):
        if _name(url) in found:
            return str(found[_name(url)])
        if not (Path(root) / _name(url)).is_file():
            raise _refuse(metric, url, str(Path(root) / _name(url)))
        return original_clip_download(url, root)

    def load_state_dict_from_hf(model_id, filename="pytorch_model.bin", *args, **kwargs):
        flat = f"{model_id.split('/')[-1]}.safetensors"
        if flat in found and found[flat].suffix == ".safetensors" and found[flat].is_file():
            from safetensors.torch import load_file

            return load_file(found[flat], device="cpu")
        return original_hf_load(model_id, filename, *args, **kwargs)  # offline mode: cache or an immediate error

    # pyiqa's arch modules bind `load_file_from_url` by name: patch every binding of the original.
    bindings = [module for name, module in list(sys.modules.items())
                if name.startswith("pyiqa") and getattr(module, "load_file_from_url", None) is original_load_file]
    patches = [(m, "load_file_from_url", load_file_from_url) for m in bindings] + [
        (tv_api, "load_state_dict_from_url", load_state_dict_from_url),
        (torch.hub, "download_url_to_file", download_url_to_file),
        (download_util, "download_url_to_file", download_url_to_file),
        (clip_model, "_download", clip_download),
        (_builder, "load_state_dict_from_hf", load_state_dict_from_hf),
        (huggingface_hub.constants, "HF_HUB_OFFLINE", True),
    ]
    qalign_dir = found.get("one-align")
    if qalign_dir is not None and "pyiqa.archs.qalign_arch" in sys.modules:
        patches += _qalign_redirect(sys.modules["pyiqa.archs.qalign_arch"], qalign_dir)
    saved = [(obj, attr, getattr(obj, attr)) for obj, attr, _ in patches]
    try:
        for obj, attr, value in patches:
            setattr(obj, attr, value)
        yield
    finally:
        for obj, attr, value in saved:
            setattr(obj, attr, value)


def _qalign_redirect(module, folder: Path) -> list:
    """Q-Align hard-codes its hub id; point both from_pretrained calls at a local folder instead."""

    def redirected(cls):
        class Local:
            @staticmethod
            def from_pretrained(repo, *args, **kwargs):
                return cls.from_pretrained(str(folder) if repo == "q-future/one-align" else repo, *args, **kwargs)

        return Local

    return [(module, "MPLUGOwl2LlamaForCausalLM", redirected(module.MPLUGOwl2LlamaForCausalLM)),
            (module, "CLIPImageProcessor", redirected(module.CLIPImageProcessor))]  # fmt: skip
