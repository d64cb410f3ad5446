#!/usr/bin/env bash
# strsr-infer on the fixture's inputs against strsr-upscale's outputs: the same samples (the same official tiling,
# arithmetic and floor rounding), size, channels (grey stays grey, alpha is kept) and bit depth; --rounding nearest
# against strsr-upscale --rounding nearest. Usage: cli_parity.sh INFER DIFF DATA_DIR
set -euo pipefail
infer=$1 diff=$2 data=$3
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$infer" "$data/inputs/chelsea.png" -o "$out/chelsea.png" --engine-dir "$data/export" --tile 128 --overlap 32
"$diff" "$data/reference/tiled/chelsea.png" "$out/chelsea.png" 0
for name in odd rgba grey; do
    "$infer" "$data/inputs/$name.png" -o "$out/$name.png" --engine-dir "$data/export"
    "$diff" "$data/reference/default/$name.png" "$out/$name.png" 0
done
"$infer" "$data/inputs/odd.png" -o "$out/odd_nearest.png" --engine-dir "$data/export" --rounding nearest
"$diff" "$data/reference/nearest/odd.png" "$out/odd_nearest.png" 0
