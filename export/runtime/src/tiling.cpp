#include "tiling.hpp"

#include <algorithm>
#include <string>

#include "error.hpp"

namespace strsr {
namespace {

[[noreturn]] void invalid(const std::string& message) { throw Error(STRSR_ERROR_INVALID_ARGUMENT, message); }

void validate_grid(int tile, int overlap, int align) {
    if (tile <= 0) invalid("tile must be positive, got " + std::to_string(tile));
    if (overlap < 0 || overlap >= tile)
        invalid("overlap must satisfy 0 <= overlap < tile, got overlap=" + std::to_string(overlap) +
                ", tile=" + std::to_string(tile));
    if (align < 1) invalid("align must be >= 1, got " + std::to_string(align));
    if (tile % align || overlap % align)
        invalid("tile (" + std::to_string(tile) + ") and overlap (" + std::to_string(overlap) +
                ") must be multiples of align (" + std::to_string(align) + ")");
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }  // a >= 0, b > 0

}  // namespace

std::vector<int> tile_starts(int length, int tile, int overlap, int align) {
    validate_grid(tile, overlap, align);
    if (length < 1) invalid("length must be positive, got " + std::to_string(length));
    if (length <= tile) return {0};
    const int64_t span = length - tile;
    const int64_t stride = tile - overlap;
    const int64_t num_steps = ceil_div(span, stride);
    // Start k is align * ceil(k * span / (num_steps * align)); strsr/tiling.py proves the overlap guarantee.
    const int64_t denom = num_steps * align;
    std::vector<int> starts;
    for (int64_t k = 0; k <= num_steps; ++k) starts.push_back(int(align * ceil_div(k * span, denom)));
    return starts;
}

std::vector<Tile> plan_tiles(int height, int width, int tile, int overlap, int align) {
    const std::vector<int> rows = tile_starts(height, tile, overlap, align);
    const std::vector<int> cols = tile_starts(width, tile, overlap, align);
    std::vector<Tile> tiles;
    for (int top : rows)
        for (int left : cols) tiles.push_back({top, left, std::min(tile, height - top), std::min(tile, width - left)});
    return tiles;
}

std::vector<float> feather_ramp(int length, bool feather_start, bool feather_end, int overlap) {
    std::vector<float> weights(size_t(length), 1.0f);
    if (overlap == 0) return weights;
    const float denom = float(overlap);
    for (int i = 0; i < length; ++i) {
        // Pixel centres (i + 0.5) keep the ramp positive and make facing ramps sum to exactly 1.
        const float centre = float(i) + 0.5f;
        if (feather_start) weights[size_t(i)] = std::min(weights[size_t(i)], centre / denom);
        if (feather_end) weights[size_t(i)] = std::min(weights[size_t(i)], (float(length) - centre) / denom);
    }
    return weights;
}

std::vector<float> feather_weights(const Tile& tile, int height, int width, int overlap) {
    if (overlap < 0) invalid("overlap must be non-negative, got " + std::to_string(overlap));
    if (tile.top < 0 || tile.left < 0 || tile.height <= 0 || tile.width <= 0 || tile.bottom() > height ||
        tile.right() > width)
        invalid("tile does not fit in a " + std::to_string(height) + "x" + std::to_string(width) + " image");
    const std::vector<float> rows = feather_ramp(tile.height, tile.top > 0, tile.bottom() < height, overlap);
    const std::vector<float> cols = feather_ramp(tile.width, tile.left > 0, tile.right() < width, overlap);
    std::vector<float> weights(rows.size() * cols.size());
    for (size_t y = 0; y < rows.size(); ++y)
        for (size_t x = 0; x < cols.size(); ++x) weights[y * cols.size() + x] = rows[y] * cols[x];
    return weights;
}

TileBlender::TileBlender(int channels, int height, int width, int overlap)
    : canvas_(channels, height, width), weight_sum_(size_t(height) * size_t(width), 0.0f), overlap_(overlap) {
    if (channels < 1 || height < 1 || width < 1) invalid("canvas dims must be positive");
    if (overlap < 0) invalid("overlap must be non-negative, got " + std::to_string(overlap));
}

void TileBlender::add(const Tile& tile, const Planar& pixels) {
    if (pixels.channels != canvas_.channels || pixels.height != tile.height || pixels.width != tile.width)
        invalid("tile pixels must be (" + std::to_string(canvas_.channels) + ", " + std::to_string(tile.height) +
                ", " + std::to_string(tile.width) + ")");
    const std::vector<float> weights = feather_weights(tile, canvas_.height, canvas_.width, overlap_);
    for (int c = 0; c < canvas_.channels; ++c)
        for (int y = 0; y < tile.height; ++y)
            for (int x = 0; x < tile.width; ++x)
                canvas_.at(c, tile.top + y, tile.left + x) +=
                    pixels.at(c, y, x) * weights[size_t(y) * size_t(tile.width) + size_t(x)];
    for (int y = 0; y < tile.height; ++y)
        for (int x = 0; x < tile.width; ++x)
            weight_sum_[size_t(tile.top + y) * size_t(canvas_.width) + size_t(tile.left + x)] +=
                weights[size_t(y) * size_t(tile.width) + size_t(x)];
}

Planar TileBlender::result() const {
    const size_t uncovered = size_t(std::count(weight_sum_.begin(), weight_sum_.end(), 0.0f));
    if (uncovered)
        throw Error(STRSR_ERROR_INTERNAL, std::to_string(uncovered) + " of " + std::to_string(weight_sum_.size()) +
                                              " pixels were not covered by any tile");
    Planar out(canvas_.channels, canvas_.height, canvas_.width);
    for (size_t c = 0; c < size_t(canvas_.channels); ++c)
        for (size_t i = 0; i < weight_sum_.size(); ++i)
            out.data[c * weight_sum_.size() + i] = canvas_.data[c * weight_sum_.size() + i] / weight_sum_[i];
    return out;
}

}  // namespace strsr
