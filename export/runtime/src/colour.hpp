// Interleaved RGB8/RGB16 buffers <-> planar float32 in [0, 1], with the Python image I/O's exact conventions
// (strsr/imageio.py's `quantize`): decode as float32(sample) / float32(peak); encode clamp(value, 0, 1), then
// floor: truncate float32(clamped * float32(peak)) (torchvision's ToPILImage, the official scripts' output), or
// nearest: rint(clamped * peak) in double precision, half to even.
#pragma once

#include <cstddef>
#include <cstdint>

#include "image.hpp"
#include "strsr/strsr_runtime.h"

namespace strsr {

// Bytes per image sample for a pixel format; throws on an unknown format.
size_t bytes_per_sample(strsr_pixel_format format);

// (3, height, width) planes from `channels` interleaved samples per pixel (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA;
// grey is replicated to three planes, alpha is dropped); `samples` are uint8 or native uint16.
Planar interleaved_to_planar(const void* samples, int width, int height, int channels, strsr_pixel_format format);

// Interleaved samples of all planes of `image` (any channel count). Throws on NaN (a broken model output) and on
// an unknown rounding.
void planar_to_interleaved(const Planar& image, strsr_pixel_format format, void* samples,
                           strsr_rounding rounding = STRSR_ROUNDING_FLOOR);

}  // namespace strsr
