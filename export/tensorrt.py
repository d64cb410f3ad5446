"""TensorRT engines from the exported ONNX graphs (`strsr-export --trt`), through TensorRT's Python API.

Networks are strongly typed: each engine runs in the precision its ONNX graph carries (fp32, fp16 from the half
export, FP8 from the Q/DQ graph), which is also the only mode TensorRT 11 keeps. One optimisation profile per graph
covers batch 1..max_batch and spatial sizes up to the tile, optimised for one full tile; a Z-Image DiT graph is
static already. A timing cache beside the engines makes rebuilds fast. Engines are written atomically and recorded
in the manifest with the TensorRT version and the GPU they were built on, since an engine runs only there.

This module is written against TensorRT 10's documented Python API; TensorRT cannot be installed on the machines
strsr is developed on, so it is exercised only where a user has TensorRT and a GPU (tests marked `trt`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from strsr.inference.tensorrt_runtime import gpu_identity
from strsr.io.atomic import atomic_write

log = logging.getLogger("strsr.export")

TIMING_CACHE = "timing.cache"
WORKSPACE_BYTES = 8 << 30


@dataclass(frozen=True)
class Profile:
    """Shapes for one input: the smallest, the one to optimise for, and the largest."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


def profiles_for(graph: dict, tile_shapes: dict[str, tuple[int, ...]], max_batch: int) -> dict[str, Profile]:
    """Profiles for a manifest graph entry: symbolic dims span 1..the tile's size, batch 1..max_batch.

    `tile_shapes` gives each input's shape for one full tile at batch 1; fixed dims come from the manifest.
    """
    profiles = {}
    for name, dims in graph["inputs"].items():
        tile = tile_shapes[name]
        if all(isinstance(d, int) for d in dims):
            profiles[name] = Profile(tuple(dims), tuple(dims), tuple(dims))
            continue
        low = tuple(1 if isinstance(d, str) else d for d in dims)
        high = tuple(max_batch if (i == 0 and isinstance(d, str)) else (t if isinstance(d, str) else d)
                     for i, (d, t) in enumerate(zip(dims, tile)))  # fmt: skip
        profiles[name] = Profile(low, tuple(tile), high)
    return profiles


def build_engine(onnx_path: Path, engine_path: Path, profiles: dict[str, Profile], cache_path: Path) -> dict:
    """Parse `onnx_path`, build a strongly typed engine with one optimisation profile, write it atomically."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # from a file, so external weights next to it are found
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{onnx_path.name}: TensorRT could not parse the graph: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    profile = builder.create_optimization_profile()
    for name, shapes in profiles.items():
        profile.set_shape(name, shapes.min, shapes.opt, shapes.max)
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"{onnx_path.name}: TensorRT failed to build an engine (see its log above)")
    atomic_write(engine_path, lambda tmp: Path(tmp).write_bytes(memoryview(serialized)))
    atomic_write(cache_path, lambda tmp: Path(tmp).write_bytes(memoryview(config.get_timing_cache().serialize())))
    return {
        "file": engine_path.name,
        "onnx": onnx_path.name,
        "profile": {name: {"min": p.min, "opt": p.opt, "max": p.max} for name, p in profiles.items()},
    }


def build_engines(out_dir: Path, manifest: dict, tile_shapes: dict[str, dict[str, tuple[int, ...]]],
                  max_batch: int = 1) -> dict:  # fmt: skip
    """Engines for every graph in the manifest; returns the manifest's `tensorrt` section."""
    import tensorrt as trt

    engines = {}
    for name, graph in manifest["graphs"].items():
        profiles = profiles_for(graph, tile_shapes[name], max_batch)
        engines[name] = build_engine(out_dir / graph["file"], out_dir / f"{name}.plan", profiles,
                                     out_dir / TIMING_CACHE)  # fmt: skip
        log.info("%-12s TensorRT engine built: %s", name, engines[name]["file"])
    return {"version": trt.__version__, **gpu_identity(), "engines": engines}
