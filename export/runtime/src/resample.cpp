#include "resample.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "error.hpp"

namespace strsr {
namespace {

// Keys' cubic convolution with A = -0.75 (PyTorch's and OpenCV's choice), evaluated as PyTorch evaluates it.
constexpr float kA = -0.75f;
float cubic_near(float x) { return ((kA + 2) * x - (kA + 3)) * x * x + 1; }     // |x| <= 1
float cubic_far(float x) { return ((kA * x - 5 * kA) * x + 8 * kA) * x - 4 * kA; }  // 1 < |x| < 2

// Per output coordinate: the four clamped source indices and their weights.
struct Taps {
    int64_t index[4];
    float weight[4];
};

std::vector<Taps> axis_taps(int begin, int count, int input_size) {
    std::vector<Taps> taps(static_cast<size_t>(count));
    for (int i = 0; i < count; ++i) {
        // align_corners=False, scale_factor=4: source = (dst + 0.5) / 4 - 0.5, not clamped at 0 for cubic.
        const float real = 0.25f * (float(begin + i) + 0.5f) - 0.5f;
        const int64_t floor_index = std::min(int64_t(std::floor(real)), int64_t(input_size) - 1);
        const float t = std::min(std::max(real - float(floor_index), 0.0f), 1.0f);
        Taps& tap = taps[size_t(i)];
        tap.weight[0] = cubic_far(t + 1.0f);
        tap.weight[1] = cubic_near(t);
        tap.weight[2] = cubic_near(1.0f - t);
        tap.weight[3] = cubic_far(1.0f - t + 1.0f);
        for (int j = 0; j < 4; ++j)
            tap.index[j] = std::max(std::min(floor_index - 1 + j, int64_t(input_size) - 1), int64_t(0));
    }
    return taps;
}

}  // namespace

Planar upsample_x4_region(const Planar& lr, const Tile& region, bool clamp) {
    if (region.top < 0 || region.left < 0 || region.height <= 0 || region.width <= 0 ||
        int64_t(region.bottom()) > int64_t(lr.height) * kScale || int64_t(region.right()) > int64_t(lr.width) * kScale)
        throw Error(STRSR_ERROR_INVALID_ARGUMENT, "upsampling region lies outside the x4 image");
    const std::vector<Taps> rows = axis_taps(region.top, region.height, lr.height);
    const std::vector<Taps> cols = axis_taps(region.left, region.width, lr.width);
    Planar out(lr.channels, region.height, region.width);
    for (int c = 0; c < lr.channels; ++c) {
        const float* plane = lr.data.data() + size_t(c) * lr.plane();
        for (int y = 0; y < region.height; ++y) {
            const Taps& ry = rows[size_t(y)];
            for (int x = 0; x < region.width; ++x) {
                const Taps& cx = cols[size_t(x)];
                // Rows first, then the column sum over them, accumulating left to right as PyTorch does.
                float value = 0.0f;
                for (int j = 0; j < 4; ++j) {
                    const float* row = plane + ry.index[j] * lr.width;
                    float h = row[cx.index[0]] * cx.weight[0];
                    for (int k = 1; k < 4; ++k) h += row[cx.index[k]] * cx.weight[k];
                    value = j == 0 ? h * ry.weight[0] : value + h * ry.weight[j];
                }
                out.at(c, y, x) = clamp ? std::min(std::max(value, 0.0f), 1.0f) : value;
            }
        }
    }
    return out;
}

Planar upsample_x4(const Planar& lr, bool clamp) {
    return upsample_x4_region(lr, Tile{0, 0, lr.height * kScale, lr.width * kScale}, clamp);
}

Planar pad_to_multiple(const Planar& image, int multiple) {
    if (multiple < 1) throw Error(STRSR_ERROR_INVALID_ARGUMENT, "pad multiple must be positive");
    const int pad_h = (multiple - image.height % multiple) % multiple;
    const int pad_w = (multiple - image.width % multiple) % multiple;
    if (!pad_h && !pad_w) return image;
    const bool reflect = pad_h < image.height && pad_w < image.width;
    auto source = [reflect](int i, int size) {
        if (i < size) return i;
        return reflect ? 2 * (size - 1) - i : size - 1;
    };
    Planar out(image.channels, image.height + pad_h, image.width + pad_w);
    for (int c = 0; c < image.channels; ++c)
        for (int y = 0; y < out.height; ++y)
            for (int x = 0; x < out.width; ++x)
                out.at(c, y, x) = image.at(c, source(y, image.height), source(x, image.width));
    return out;
}

}  // namespace strsr
