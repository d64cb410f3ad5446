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
void encode(const Planar& image, double peak, T* samples) {
    const size_t pixels = image.plane();
    for (size_t i = 0; i < pixels; ++i)
        for (int c = 0; c < image.channels; ++c) {
            const float value = image.data[size_t(c) * pixels + i];
            if (std::isnan(value)) throw Error(STRSR_ERROR_BACKEND, "the model produced NaN pixels");
            const double clamped = std::min(std::max(double(value), 0.0), 1.0);
            samples[i * size_t(image.channels) + size_t(c)] = T(std::nearbyint(clamped * peak));  // half to even
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

void planar_to_interleaved(const Planar& image, strsr_pixel_format format, void* samples) {
    if (bytes_per_sample(format) == 1)
        encode(image, 255.0, static_cast<uint8_t*>(samples));
    else
        encode(image, 65535.0, static_cast<uint16_t*>(samples));
}

}  // namespace strsr
