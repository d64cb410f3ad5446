"""The C++ runtime's tiling against strsr's Python pipeline, bit for bit, with the expectations computed here by the
installed strsr and torch (ctest runs this with the strsr_dump tool):

- the tile plan and every tile's weight map (strsr.tiling.plan_tiles / feather_weights) for sides equal to the
  tile, tile + 1, 2 * tile - overlap and one not a multiple of 16, with several overlaps (0, 1, odd, the defaults);
- the ramps: torch.linspace(0, 1, n) and torch.linspace(1, 0, n) in float32 on the CPU for every n in 1..1100;
- the per-tile upsampling of the padded image (strsr.pipeline.upsampled_tile: reflect and replicate pads);
- the blend of given tile outputs (strsr.tiling.run_tiled), not clamped;
- the sampling noise against the recipe src/noise.hpp documents, written out here independently (mt19937-64 from
  its definition, Marsaglia's polar method with math.log): the C++ draws are portable, and not torch's.

Usage: python python_parity.py STRSR_DUMP
"""

from __future__ import annotations

import argparse
import math
import subprocess

import numpy as np
import torch

from strsr.inference.pipeline import upsampled_tile
from strsr.inference.tiling import feather_weights, plan_tiles, run_tiled

# (height, width, tile, overlap): sides tile, tile + 1, 2 * tile - overlap (an exact fit) and 200 (not a multiple of
# 16), their products, overlaps 0, 1 and odd, the official test's 48/12, and the defaults 1024/64 on a long strip.
PLAN_CASES = [
    (128, 128, 128, 32),
    (129, 129, 128, 32),
    (224, 224, 128, 32),
    (200, 200, 128, 32),
    (128, 224, 128, 32),
    (129, 200, 128, 32),
    (224, 129, 128, 32),
    (200, 384, 128, 0),
    (129, 257, 128, 1),
    (200, 150, 64, 37),
    (144, 176, 48, 12),
    (2100, 80, 1024, 64),
    (1984, 48, 1024, 64),
]
# (h, w, tile, overlap) of an LR image: its x4 is padded to multiples of 16, the tiles reach into the padding.
UPSAMPLE_CASES = [
    (37, 53, 64, 16),  # 148 x 212 -> 160 x 224: reflect on both axes
    (1, 1, 16, 4),  # 4 x 4 -> 16 x 16: a pad of 12 on 4 pixels replicates
    (2, 9, 16, 5),  # 8 x 36 -> 16 x 48: replicate rows (pad 8 of 8), reflect columns
    (3, 5, 32, 8),  # 12 x 20 -> 16 x 32: reflect both
    (16, 12, 64, 0),  # no padding at all
]
MAX_STEPS = 1100
NOISE_SEEDS, NOISE_DRAWS = (0, 7, 2**64 - 1), 1001


def dump(tool: str, *args, stdin: bytes | None = None) -> bytes:
    return subprocess.run([tool, *map(str, args)], input=stdin, capture_output=True, check=True).stdout


def same_bits(got: np.ndarray, want: torch.Tensor) -> bool:
    want = want.detach().to(torch.float32).contiguous().numpy().reshape(-1)
    return got.shape == want.shape and np.array_equal(got.view(np.uint32), want.view(np.uint32))


def check_plans(tool: str) -> list[str]:
    failures = []
    for height, width, tile, overlap in PLAN_CASES:
        raw = dump(tool, "plan", height, width, tile, overlap)
        offset, got = 0, []
        while offset < len(raw):
            top, left, h, w = np.frombuffer(raw, np.int32, 4, offset)
            offset += 16
            got.append(((int(top), int(left), int(h), int(w)), np.frombuffer(raw, np.float32, h * w, offset)))
            offset += 4 * h * w
        want = plan_tiles(height, width, tile, overlap)
        case = f"plan {height}x{width} tile {tile} overlap {overlap}"
        if [box for box, _ in got] != [(t.top, t.left, t.height, t.width) for t in want]:
            failures.append(f"{case}: tiles {[box for box, _ in got]} != {want}")
            continue
        for (box, weights), t in zip(got, want):
            if not same_bits(weights, feather_weights(t, height, width, overlap)):
                failures.append(f"{case}: weights of tile {box} differ")
    return failures


def check_linspace(tool: str) -> list[str]:
    failures = []
    for start, end in ((0, 1), (1, 0)):
        got = np.frombuffer(dump(tool, "linspaces", start, end, MAX_STEPS), np.float32)
        offset = 0
        for n in range(1, MAX_STEPS + 1):
            if not same_bits(got[offset : offset + n], torch.linspace(start, end, n)):
                failures.append(f"linspace({start}, {end}, {n}) differs")
            offset += n
        if offset != got.size:
            failures.append(f"linspaces({start}, {end}) gave {got.size} values, expected {offset}")
    return failures


def check_upsampling(tool: str) -> list[str]:
    failures = []
    generator = torch.Generator().manual_seed(0)
    for h, w, tile, overlap in UPSAMPLE_CASES:
        lr = torch.rand(1, 3, h, w, generator=generator)
        height, width = -(-4 * h // 16) * 16, -(-4 * w // 16) * 16
        for t in plan_tiles(height, width, tile, overlap):
            got = np.frombuffer(
                dump(tool, "upsample", h, w, height, width, t.top, t.left, t.height, t.width,
                     stdin=lr.numpy().tobytes()),
                np.float32,
            )  # fmt: skip
            if not same_bits(got, upsampled_tile(lr, t, height, width)):
                failures.append(f"upsampled tile {t} of a {h}x{w} image padded to {height}x{width} differs")
    return failures


def check_blend(tool: str) -> list[str]:
    failures = []
    generator = torch.Generator().manual_seed(1)
    for height, width, tile, overlap in PLAN_CASES[:11]:
        tiles = plan_tiles(height, width, tile, overlap)
        outputs = [torch.rand(1, 3, t.height, t.width, generator=generator) * 2.4 - 1.2 for t in tiles]
        stdin = b"".join(o.numpy().tobytes() for o in outputs)
        got = np.frombuffer(dump(tool, "blend", height, width, tile, overlap, stdin=stdin), np.float32)
        produced = iter(outputs)
        want = run_tiled(lambda t: next(produced), 1, 3, height, width, tile, overlap)
        if not same_bits(got, want):
            failures.append(f"blend {height}x{width} tile {tile} overlap {overlap} differs")
    return failures


def mt19937_64(seed: int):
    """The 64-bit Mersenne Twister of Matsumoto and Nishimura (std::mt19937_64), from its definition."""
    mask = 2**64 - 1
    state = [seed & mask]
    for i in range(1, 312):
        state.append((6364136223846793005 * (state[-1] ^ (state[-1] >> 62)) + i) & mask)
    while True:
        for k in range(312):
            x = (state[k] & 0xFFFFFFFF80000000) | (state[(k + 1) % 312] & 0x7FFFFFFF)
            state[k] = state[(k + 156) % 312] ^ (x >> 1) ^ (0xB5026F5AA96619E9 if x & 1 else 0)
        for y in state:
            y ^= (y >> 29) & 0x5555555555555555
            y ^= (y << 17) & 0x71D67FFFEDA60000
            y ^= (y << 37) & 0xFFF7EEE000000000
            yield (y ^ (y >> 43)) & mask


def polar_normals(seed: int, count: int) -> np.ndarray:
    bits = mt19937_64(seed)
    values = []
    while len(values) < count:
        a, b = (2.0 * ((next(bits) >> 11) * 2.0**-53) - 1.0 for _ in range(2))
        s = a * a + b * b
        if 0.0 < s < 1.0:
            factor = math.sqrt(-2.0 * math.log(s) / s)
            values += [a * factor, b * factor]
    return np.array(values[:count], np.float32)


def check_noise(tool: str) -> list[str]:
    engine = mt19937_64(5489)
    for _ in range(9999):
        next(engine)
    if next(engine) != 9981545732273789042:  # the C++ standard's check of mt19937_64
        return ["the Python mt19937_64 reference is wrong"]
    failures = []
    for seed in NOISE_SEEDS:
        got = np.frombuffer(dump(tool, "noise", seed, NOISE_DRAWS), np.float32)
        if not same_bits(got, torch.from_numpy(polar_normals(seed, NOISE_DRAWS))):
            failures.append(f"noise of seed {seed} differs from the documented recipe")
    return failures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tool", help="the strsr_dump executable")
    tool = p.parse_args(argv).tool
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}")
    failures = []
    for name, check in (("plans", check_plans), ("linspace", check_linspace), ("upsampling", check_upsampling),
                        ("blend", check_blend), ("noise", check_noise)):  # fmt: skip
        found = check(tool)
        print(f"{'ok  ' if not found else 'FAIL'} {name}: {len(found)} mismatches")
        failures += found
    for failure in failures[:20]:
        print(f"FAILED {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
