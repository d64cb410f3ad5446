#include "resample.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "error.hpp"

namespace strsr {
namespace {

// Keys' cubic convolution with A = -0.75 (PyTorch's and OpenCV's choice), evaluated as PyTorch evaluates it.
constexpr float kA = -0.75f;
float cubic_near(float x) { return ((kA + 2) * x - (kA + 3)) * x * x + 1; }     // |x| <= 1
float cubic_far(float x) { return ((kA * x - 5 * kA) * x + 8 * kA) * x - 4 * kA; }  // 1 < |x| < 2

// ATen's Interpolate<2, float, ..., 4>::eval sums, per output pixel, each of the four source rows over its four
// columns, then the four row sums: `out = v0 * w0; out += v1 * w1; out += v2 * w2; out += v3 * w3`. PyTorch's AVX2
// kernel is compiled with FMA contraction, which turns that into fma(v0, w0, v1 * w1), then fma(v2, w2, .), then
// fma(v3, w3, .): reproduced here with std::fma (this file builds with -ffp-contract=off). Found by matching torch
// 2.14's F.interpolate bit for bit among the contraction patterns (python_parity.py checks it; its AVX512 build is
// expected to match but was not checked); torch under ATEN_CPU_CAPABILITY=default rounds every product and sum and
// differs in the last bit. The weights need no such care: at scale 4 the fractions are 1/8, 3/8, 5/8, 7/8 and every
// coefficient is exact.
float weighted_sum(float v0, float v1, float v2, float v3, const float* w) {
    return std::fma(v3, w[3], std::fma(v2, w[2], std::fma(v0, w[0], v1 * w[1])));
}

// Per output coordinate: the four clamped source indices and their weights.
struct Taps {
    int64_t index[4];
    float weight[4];
};

Taps taps_at(int output_index, int input_size) {
    // align_corners=False, scale_factor=4: source = (dst + 0.5) / 4 - 0.5, not clamped at 0 for cubic.
    const float real = 0.25f * (float(output_index) + 0.5f) - 0.5f;
    const int64_t floor_index = std::min(int64_t(std::floor(real)), int64_t(input_size) - 1);
    const float t = std::min(std::max(real - float(floor_index), 0.0f), 1.0f);
    Taps tap;
    tap.weight[0] = cubic_far(t + 1.0f);
    tap.weight[1] = cubic_near(t);
    tap.weight[2] = cubic_near(1.0f - t);
    tap.weight[3] = cubic_far(1.0f - t + 1.0f);
    for (int j = 0; j < 4; ++j)
        tap.index[j] = std::max(std::min(floor_index - 1 + j, int64_t(input_size) - 1), int64_t(0));
    return tap;
}

std::vector<Taps> axis_taps(const std::vector<int>& indices, int input_size) {
    std::vector<Taps> taps;
    taps.reserve(indices.size());
    for (int i : indices) {
        if (i < 0 || int64_t(i) >= int64_t(input_size) * kScale)
            throw Error(STRSR_ERROR_INVALID_ARGUMENT, "upsampling region lies outside the x4 image");
        taps.push_back(taps_at(i, input_size));
    }
    return taps;
}

std::vector<int> range(int begin, int count) {
    std::vector<int> indices(size_t(std::max(count, 0)));
    for (int i = 0; i < count; ++i) indices[size_t(i)] = begin + i;
    return indices;
}

Planar resample(const Planar& lr, const std::vector<Taps>& rows, const std::vector<Taps>& cols, bool clamp) {
    Planar out(lr.channels, int(rows.size()), int(cols.size()));
    for (int c = 0; c < lr.channels; ++c) {
        const float* plane = lr.data.data() + size_t(c) * lr.plane();
        for (int y = 0; y < out.height; ++y) {
            const Taps& ry = rows[size_t(y)];
            for (int x = 0; x < out.width; ++x) {
                const Taps& cx = cols[size_t(x)];
                float sums[4];
                for (int j = 0; j < 4; ++j) {
                    const float* row = plane + ry.index[j] * lr.width;
                    sums[j] = weighted_sum(row[cx.index[0]], row[cx.index[1]], row[cx.index[2]], row[cx.index[3]],
                                           cx.weight);
                }
                const float value = weighted_sum(sums[0], sums[1], sums[2], sums[3], ry.weight);
                out.at(c, y, x) = clamp ? std::min(std::max(value, 0.0f), 1.0f) : value;
            }
        }
    }
    return out;
}

}  // namespace

Planar upsample_x4_region(const Planar& lr, const Tile& region, bool clamp) {
    if (region.height <= 0 || region.width <= 0)
        throw Error(STRSR_ERROR_INVALID_ARGUMENT, "upsampling region lies outside the x4 image");
    return resample(lr, axis_taps(range(region.top, region.height), lr.height),
                    axis_taps(range(region.left, region.width), lr.width), clamp);
}

Planar upsample_x4(const Planar& lr, bool clamp) {
    return upsample_x4_region(lr, Tile{0, 0, lr.height * kScale, lr.width * kScale}, clamp);
}

Planar upsample_x4_at(const Planar& lr, const std::vector<int>& rows, const std::vector<int>& cols) {
    return resample(lr, axis_taps(rows, lr.height), axis_taps(cols, lr.width), true);
}

std::vector<int> padded_source(int length, int padded) {
    if (length < 1 || padded < length)
        throw Error(STRSR_ERROR_INVALID_ARGUMENT, "cannot pad a side of " + std::to_string(length) + " to " +
                                                      std::to_string(padded));
    const bool reflect = padded - length < length;
    std::vector<int> source(static_cast<size_t>(padded));
    for (int i = 0; i < padded; ++i) source[size_t(i)] = i < length ? i : reflect ? 2 * (length - 1) - i : length - 1;
    return source;
}

Planar upsampled_tile(const Planar& lr, const Tile& tile, int padded_height, int padded_width) {
    if (tile.top < 0 || tile.left < 0 || tile.height <= 0 || tile.width <= 0 || tile.bottom() > padded_height ||
        tile.right() > padded_width)
        throw Error(STRSR_ERROR_INVALID_ARGUMENT, "tile lies outside the padded image");
    const std::vector<int> rows = padded_source(lr.height * kScale, padded_height);
    const std::vector<int> cols = padded_source(lr.width * kScale, padded_width);
    return upsample_x4_at(lr, std::vector<int>(rows.begin() + tile.top, rows.begin() + tile.bottom()),
                          std::vector<int>(cols.begin() + tile.left, cols.begin() + tile.right()));
}

}  // namespace strsr
