// Planar float images, the pipeline's working format: (channels, height, width), row-major, values in [0, 1]
// outside the model and in [-1, 1] at its boundary.
#pragma once

#include <cstddef>
#include <vector>

namespace strsr {

struct Planar {
    int channels = 0;
    int height = 0;
    int width = 0;
    std::vector<float> data;

    Planar() = default;
    Planar(int c, int h, int w) : channels(c), height(h), width(w), data(size_t(c) * size_t(h) * size_t(w)) {}

    size_t plane() const { return size_t(height) * size_t(width); }
    float& at(int c, int y, int x) { return data[size_t(c) * plane() + size_t(y) * size_t(width) + size_t(x)]; }
    float at(int c, int y, int x) const { return data[size_t(c) * plane() + size_t(y) * size_t(width) + size_t(x)]; }
};

}  // namespace strsr
