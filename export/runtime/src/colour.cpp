#include "colour.hpp"

#include <algorithm>
#include <cmath>

#include "error.hpp"

namespace strsr {
namespace {

template <typename T>
Planar decode(const T* samples, int width, int height, int channels, float peak) {
    Planar out(3, height, width);
    const size_t pixels = out.plane();
    const int colour = channels <= 2 ? 1 : 3;
    for (size_t i = 0; i < pixels; ++i)
        for (int c = 0; c < 3; ++c)
            out.data[size_t(c) * pixels + i] = float(samples[i * size_t(channels) + size_t(colour == 1 ? 0 : c)]) / peak;
    return out;
}

template <typename T>
void encode(const Planar& image, float peak, strsr_rounding rounding, T* samples) {
    const size_t pixels = image.plane();
    for (size_t i = 0; i < pixels; ++i)
        for (int c = 0; c < image.channels; ++c) {
            const float value = image.data[size_t(c) * pixels + i];
            if (std::isnan(value)) throw Error(STRSR_ERROR_BACKEND, "the model produced NaN pixels");
            const float clamped = std::min(std::max(value, 0.0f), 1.0f);
            // floor: the float32 product truncated (non-negative, so truncation is the floor); nearest: half to even
            samples[i * size_t(image.channels) + size_t(c)] =
                rounding == STRSR_ROUNDING_FLOOR ? T(clamped * peak) : T(std::nearbyint(double(clamped) * double(peak)));
        }
}

}  // namespace

size_t bytes_per_sample(strsr_pixel_format format) {
    switch (format) {
        case STRSR_RGB8: return 1;
        case STRSR_RGB16: return 2;
        case STRSR_PIXEL_FORMAT_MAX_ENUM: break;
    }
    throw Error(STRSR_ERROR_INVALID_ARGUMENT, "unknown pixel format " + std::to_string(int(format)) +
                                                  " (use STRSR_RGB8 or STRSR_RGB16)");
}

Planar interleaved_to_planar(const void* samples, int width, int height, int channels, strsr_pixel_format format) {
    if (channels < 1 || channels > 4) throw Error(STRSR_ERROR_INVALID_ARGUMENT, "channels must be 1 to 4");
    if (bytes_per_sample(format) == 1)
        return decode(static_cast<const uint8_t*>(samples), width, height, channels, 255.0f);
    return decode(static_cast<const uint16_t*>(samples), width, height, channels, 65535.0f);
}

void planar_to_interleaved(const Planar& image, strsr_pixel_format format, void* samples, strsr_rounding rounding) {
    if (rounding != STRSR_ROUNDING_FLOOR && rounding != STRSR_ROUNDING_NEAREST)
        throw Error(STRSR_ERROR_INVALID_ARGUMENT, "unknown rounding " + std::to_string(int(rounding)) +
                                                      " (use STRSR_ROUNDING_FLOOR or STRSR_ROUNDING_NEAREST)");
    if (bytes_per_sample(format) == 1)
        encode(image, 255.0f, rounding, static_cast<uint8_t*>(samples));
    else
        encode(image, 65535.0f, rounding, static_cast<uint16_t*>(samples));
}

}  // namespace strsr
