// Bicubic x4 upsampling and the pipeline's padding, bit-for-bit the arithmetic of the Python pipeline's
// F.interpolate(mode="bicubic", align_corners=False) as PyTorch's AVX2 CPU kernel computes it (see
// resample.cpp) and its one pad of the upsampled image (strsr/pipeline.py's padded_source and upsampled_tile).
#pragma once

#include <vector>

#include "image.hpp"
#include "tiling.hpp"

namespace strsr {

constexpr int kScale = 4;

// The output pixels `region` (in the 4x image) of the bicubic x4 upsampling of `lr`, clamped to [0, 1] when
// `clamp` is set. Equals cropping the full upsampled image: taps outside `lr` take the nearest border pixel.
Planar upsample_x4_region(const Planar& lr, const Tile& region, bool clamp = true);

// The whole image: (C, 4h, 4w).
Planar upsample_x4(const Planar& lr, bool clamp = true);

// The pixels at output rows `rows` and columns `cols` (indices into the 4x image) of the clamped bicubic x4
// upsampling of `lr`: (C, rows.size(), cols.size()), each pixel exactly as in the whole upsampled image.
Planar upsample_x4_at(const Planar& lr, const std::vector<int>& rows, const std::vector<int>& cols);

// The source position of each of `padded` positions along a side of `length` padded at its end: reflected as
// F.pad(mode="reflect") does (mirror without repeating the edge) when the pad is shorter than the side, else the
// edge replicated (reflect cannot pad that far). Throws unless 1 <= length <= padded.
std::vector<int> padded_source(int length, int padded);

// `tile` of the clamped bicubic x4 upsampling of `lr` padded at its bottom and right to (padded_height,
// padded_width) by padded_source per axis: (C, tile.height, tile.width), computed from the tile's own source
// pixels, so the padded full-size image is never held.
Planar upsampled_tile(const Planar& lr, const Tile& tile, int padded_height, int padded_width);

}  // namespace strsr
