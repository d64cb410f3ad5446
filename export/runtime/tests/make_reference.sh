#!/usr/bin/env bash
# Test fixture: the tiny preset's export and the Python ONNX path's outputs (strsr-upscale --runtime onnx) that
# the C++ runtime must reproduce. Usage: make_reference.sh DATA_DIR
#   DATA_DIR/export/             strsr-export --preset tiny (skipped by strsr-export itself when current)
#   DATA_DIR/inputs/             the bundled photo, an odd-sized crop, an RGBA and a grey version of it
#   DATA_DIR/reference/tiled/    chelsea.png with --tile 128 --overlap 32 (12 tiles, feathered seams)
#   DATA_DIR/reference/default/  the others with the defaults (one tile over the image padded to 16)
#   DATA_DIR/reference/nearest/  odd.png with --rounding nearest
set -euo pipefail
data=${1:?usage: make_reference.sh DATA_DIR}
mkdir -p "$data/inputs" "$data/reference/tiled" "$data/reference/default" "$data/reference/nearest"
strsr-export --preset tiny -o "$data/export"
python - "$data/inputs" <<'PY'
import sys
from pathlib import Path

from PIL import Image

from strsr.inference.cli import sample_image

out = Path(sys.argv[1])
photo = Image.open(sample_image()).convert("RGB")
photo.save(out / "chelsea.png")
photo.crop((0, 0, 61, 45)).save(out / "odd.png")  # 244x180 output: not a multiple of 16, so padded
rgba = photo.copy()
rgba.putalpha(Image.linear_gradient("L").resize(photo.size))
rgba.save(out / "rgba.png")
photo.convert("L").save(out / "grey.png")
PY
strsr-upscale "$data/inputs/chelsea.png" -o "$data/reference/tiled" --runtime onnx --engine-dir "$data/export" \
    --tile 128 --overlap 32 --quiet
strsr-upscale "$data/inputs/odd.png" "$data/inputs/rgba.png" "$data/inputs/grey.png" -o "$data/reference/default" \
    --runtime onnx --engine-dir "$data/export" --quiet
strsr-upscale "$data/inputs/odd.png" -o "$data/reference/nearest" --runtime onnx --engine-dir "$data/export" \
    --rounding nearest --quiet
