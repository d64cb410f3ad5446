#!/usr/bin/env bash
# strsr-infer --seed on a sampling export (make_sampling_export.py): the same seed writes the same file, another
# seed a different one, and a mode export ignores the seed. Usage: cli_sampling.sh INFER DIFF SAMPLING_DIR DATA_DIR
set -euo pipefail
infer=$1 diff=$2 exports=$3 data=$4
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
photo=$data/inputs/odd.png
"$infer" "$photo" -o "$out/a.png" --engine-dir "$exports/sample" --tile 64 --overlap 16 --seed 7
"$infer" "$photo" -o "$out/b.png" --engine-dir "$exports/sample" --tile 64 --overlap 16 --seed 7
"$infer" "$photo" -o "$out/c.png" --engine-dir "$exports/sample" --tile 64 --overlap 16 --seed 8
"$infer" "$photo" -o "$out/d.png" --engine-dir "$exports/sample" --tile 64 --overlap 16
cmp "$out/a.png" "$out/b.png"
if "$diff" "$out/a.png" "$out/c.png" 0; then echo "FAILED: seeds 7 and 8 gave the same image"; exit 1; fi
if "$diff" "$out/a.png" "$out/d.png" 0; then echo "FAILED: seeds 7 and the default 0 gave the same image"; exit 1; fi
"$infer" "$photo" -o "$out/m0.png" --engine-dir "$exports/mode" --tile 64 --overlap 16 --seed 7
"$infer" "$photo" -o "$out/m1.png" --engine-dir "$exports/mode" --tile 64 --overlap 16 --seed 8
cmp "$out/m0.png" "$out/m1.png"
