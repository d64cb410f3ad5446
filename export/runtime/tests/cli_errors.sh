#!/usr/bin/env bash
# strsr-infer's failures: the right exit status (1 image, 2 arguments or export folder) and a message naming the
# problem, never a crash. Usage: cli_errors.sh INFER DATA_DIR
set -uo pipefail
infer=$1 data=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
expect() {  # expect STATUS MESSAGE ARGS...
    local want=$1 needle=$2 got message
    shift 2
    message=$("$infer" "$@" 2>&1 >/dev/null)
    got=$?
    if [[ $got != "$want" || $message != *"$needle"* ]]; then
        echo "FAILED: strsr-infer $* -> status $got, '$message' (want $want, '$needle')"
        failures=$((failures + 1))
    fi
}
printf 'not an image' > "$tmp/text.png"
head -c 100 "$data/inputs/chelsea.png" > "$tmp/truncated.png"
expect 1 "no such file" "$tmp/missing.png" -o "$tmp/o.png" --engine-dir "$data/export"
expect 1 "not a PNG or JPEG image" "$tmp/text.png" -o "$tmp/o.png" --engine-dir "$data/export"
expect 1 "truncated or corrupt PNG" "$tmp/truncated.png" -o "$tmp/o.png" --engine-dir "$data/export"
python - "$tmp/bomb.png" <<'PY'
# a decompression bomb: 5000x4000 RGB (60 MB of pixels) in a 60 KB PNG, over STRSR_MAX_INPUT_PIXELS
import struct, sys, zlib
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
rows = zlib.compressobj(9)
data = b"".join(rows.compress(b"\0" * (1 + 5000 * 3)) for _ in range(4000)) + rows.flush()
with open(sys.argv[1], "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 5000, 4000, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))
PY
expect 1 "bomb.png: 5000x4000 is too large (over 16,777,216 pixels)" "$tmp/bomb.png" -o "$tmp/o.png" \
    --engine-dir "$data/export"
expect 1 "unsupported suffix '.bmp'" "$data/inputs/odd.png" -o "$tmp/o.bmp" --engine-dir "$data/export"
expect 1 "does not exist" "$data/inputs/odd.png" -o "$tmp/no/such/o.png" --engine-dir "$data/export"
expect 2 "no such export folder" "$data/inputs/odd.png" -o "$tmp/o.png" --engine-dir "$tmp/none"
expect 2 "tile size 100 must be a positive multiple of 8" "$data/inputs/odd.png" -o "$tmp/o.png" \
    --engine-dir "$data/export" --tile 100
expect 2 "overlap 128 must be in [0, tile 128)" "$data/inputs/odd.png" -o "$tmp/o.png" \
    --engine-dir "$data/export" --tile 128 --overlap 128
expect 2 "--seed needs a non-negative integer" "$data/inputs/odd.png" -o "$tmp/o.png" --engine-dir "$data/export" \
    --seed -1
expect 2 "unknown rounding 'round'" "$data/inputs/odd.png" -o "$tmp/o.png" --engine-dir "$data/export" \
    --rounding round
cp -r "$data/export" "$tmp/corrupt"  # one byte of a graph changed, its size kept: only --verify finds it
python - "$tmp/corrupt/vae_decoder.onnx" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(-1, 2)
    last = f.read(1)[0]
    f.seek(-1, 2)
    f.write(bytes([last ^ 0x55]))
PY
expect 2 "vae_decoder.onnx: sha256 differs from the manifest's" "$data/inputs/odd.png" -o "$tmp/o.png" \
    --engine-dir "$tmp/corrupt" --verify
printf 'x' >> "$tmp/corrupt/dit_onestep.onnx"
expect 2 "bytes, the manifest says" "$data/inputs/odd.png" -o "$tmp/o.png" --engine-dir "$tmp/corrupt"
expect 2 "--engine-dir is required" "$data/inputs/odd.png" -o "$tmp/o.png"
expect 2 "unknown option --bogus" --bogus
# -o naming the input, however spelled, is refused before anything runs, and the input is left as it was.
mkdir -p "$tmp/in/sub"
cp "$data/inputs/odd.png" "$tmp/in/photo.png"
ln -s photo.png "$tmp/in/link.png"
ln "$tmp/in/photo.png" "$tmp/in/hard.png"
ln -s "$tmp/in" "$tmp/alias"
for out in "$tmp/in/photo.png" "$tmp/in/./photo.png" "$tmp/in/sub/../photo.png" "$tmp/in/link.png" \
           "$tmp/in/hard.png" "$tmp/alias/photo.png"; do
    expect 2 "output would overwrite the input" "$tmp/in/photo.png" -o "$out" --engine-dir "$data/export"
done
(cd "$tmp/in" && "$infer" photo.png -o ./photo.png --engine-dir "$data/export" 2>/dev/null) && {
    echo "FAILED: strsr-infer photo.png -o ./photo.png ran"; failures=$((failures + 1)); }
expect 2 "output would overwrite the input" "$tmp/in/link.png" -o "$tmp/in/photo.png" --engine-dir "$data/export"
cmp -s "$data/inputs/odd.png" "$tmp/in/photo.png" || { echo "FAILED: the input was changed"; failures=$((failures + 1)); }
[[ -L $tmp/in/link.png ]] || { echo "FAILED: the input's symlink was replaced"; failures=$((failures + 1)); }
[[ ! -e $tmp/o.png ]] || { echo "FAILED: a failed run left $tmp/o.png"; failures=$((failures + 1)); }
exit $((failures > 0))
