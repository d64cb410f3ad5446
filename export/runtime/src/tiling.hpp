// Output-space tiling as the official StrSR scripts tile (`infer_tiled`): the C++ twin of strsr/tiling.py, with
// the same window placement, the same ramps and the same float32 arithmetic, so both runtimes blend identically.
//
// - tile_starts: 0, stride, 2 * stride, ... (stride = tile - overlap) while a whole tile fits, then length - tile
//   if the steps do not land on it, so the last window ends flush with the edge. A side no longer than the tile is
//   one window of the side's length.
// - feather_weights: 1, times linspace(0, 1, overlap) over the first `overlap` rows (columns) of a window whose top
//   (left) is not the image edge and linspace(1, 0, overlap) over the last rows (columns) of one whose bottom
//   (right) is not, multiplied top, bottom, left, right in that order (float32 products round as torch's do).
//   overlap 0: no ramps.
// - TileBlender: accumulates pixels * weights and the weights in float32 in tile order and divides by the weight
//   sum floored at 1e-6 (the official division), not clamped; like strsr/tiling.py's blend_tiles it streams: rows
//   are final once the plan moves to the next row of tiles, so only one band of tile height is held in float32,
//   and each pixel still sums its tiles in plan order (the values of a whole-image canvas, bit for bit).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "image.hpp"

namespace strsr {

struct Tile {
    int top = 0;
    int left = 0;
    int height = 0;
    int width = 0;
    int bottom() const { return top + height; }
    int right() const { return left + width; }
};

// Window starts along an axis of `length` pixels; window k spans [starts[k], starts[k] + min(tile, length)).
// Throws Error(INVALID_ARGUMENT) unless tile > 0, 0 <= overlap < tile and length > 0.
std::vector<int> tile_starts(int length, int tile, int overlap);

// Row-major tiles covering (height, width): the product of tile_starts along each axis, each min(tile, side) big.
std::vector<Tile> plan_tiles(int height, int width, int tile, int overlap);

// torch.linspace(start, end, steps) in float32 as PyTorch's CPU kernel computes it (ATen's linspace_kernel, serial
// in torch 2.14): step = (end - start) / (steps - 1) in float32; element i is start + step * i for i < steps / 2
// and end - step * (steps - 1 - i) after, each a fused multiply-add rounded once, as the kernel is compiled with FMA
// contraction in PyTorch's AVX2 build (checked with torch 2.14 for every steps up to 1100; its AVX512 build is
// expected to match but was not checked; under ATEN_CPU_CAPABILITY=default torch rounds the product first and
// differs in the last bit for most steps from 10 up). steps == 1 gives {start}, as torch does.
std::vector<float> linspace(float start, float end, int steps);

// (tile.height * tile.width) float32 weights of `tile` inside a (height, width) image, row-major.
std::vector<float> feather_weights(const Tile& tile, int height, int width, int overlap);

// Blends tiles given in plan_tiles order over a (channels, height, width) image into one band of min(tile, height)
// rows plus its weight sums, and hands each finished block of rows to `emit` top to bottom: (top, rows) with rows
// (channels, n, width) = band / max(weight_sum, 1e-6), valid during the call.
class TileBlender {
public:
    using Emit = std::function<void(int top, const Planar& rows)>;
    TileBlender(int channels, int height, int width, int tile, int overlap, Emit emit);
    // Blend `pixels` (channels, tile.height, tile.width) in; emits the rows above `tile` first if it starts a new
    // row of tiles. Throws Error(INVALID_ARGUMENT) on a wrong shape or a tile out of plan order.
    void add(const Tile& tile, const Planar& pixels);
    // Emits the last band; call once after the last tile.
    void finish();

private:
    void emit_rows(int count);

    int height_, width_, overlap_, band_height_;
    int top_ = 0;  // image row of the band's first row
    bool finished_ = false;
    Planar band_;
    std::vector<float> weight_sum_;
    Planar rows_;  // the block handed to emit_, reused
    Emit emit_;
};

// An Emit that copies each block into `whole` (channels, height, width), for callers that want the whole blend.
TileBlender::Emit collect_into(Planar& whole);

}  // namespace strsr
