// Interleaved RGB8/RGB16 buffers <-> planar float32 in [0, 1], with the Python image I/O's exact conventions:
// decode as float32(sample) / float32(peak), encode as rint(clamp(value, 0, 1) * peak) in double precision.
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

// Interleaved samples of all planes of `image` (any channel count). Throws on NaN (a broken model output).
void planar_to_interleaved(const Planar& image, strsr_pixel_format format, void* samples);

}  // namespace strsr
