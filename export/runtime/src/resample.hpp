// Bicubic x4 upsampling and border padding, bit-for-bit the arithmetic of the Python pipeline's
// F.interpolate(mode="bicubic", align_corners=False) and F.pad(mode="reflect"/"replicate").
#pragma once

#include "image.hpp"
#include "tiling.hpp"

namespace strsr {

constexpr int kScale = 4;

// The output pixels `region` (in the 4x image) of the bicubic x4 upsampling of `lr`, clamped to [0, 1] when
// `clamp` is set. Equals cropping the full upsampled image: taps outside `lr` take the nearest border pixel.
Planar upsample_x4_region(const Planar& lr, const Tile& region, bool clamp = true);

// The whole image: (C, 4h, 4w).
Planar upsample_x4(const Planar& lr, bool clamp = true);

// Pad bottom and right to multiples of `multiple`: reflect (mirror without repeating the edge) when both pads are
// smaller than their sides, else replicate, as the Python pipeline does.
Planar pad_to_multiple(const Planar& image, int multiple);

}  // namespace strsr
