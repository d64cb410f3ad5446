#include "tiling.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "error.hpp"

namespace strsr {
namespace {

constexpr float kMinWeightSum = 1e-6f;  // the official division floor

[[noreturn]] void invalid(const std::string& message) { throw Error(STRSR_ERROR_INVALID_ARGUMENT, message); }

void validate_grid(int tile, int overlap) {
    if (tile <= 0) invalid("tile must be positive, got " + std::to_string(tile));
    if (overlap < 0 || overlap >= tile)
        invalid("overlap must satisfy 0 <= overlap < tile, got overlap=" + std::to_string(overlap) +
                ", tile=" + std::to_string(tile));
}

}  // namespace

std::vector<int> tile_starts(int length, int tile, int overlap) {
    validate_grid(tile, overlap);
    if (length < 1) invalid("length must be positive, got " + std::to_string(length));
    const int last = std::max(0, length - tile);
    std::vector<int> starts;
    for (int start = 0; start <= last; start += tile - overlap) starts.push_back(start);
    if (starts.back() != last) starts.push_back(last);
    return starts;
}

std::vector<Tile> plan_tiles(int height, int width, int tile, int overlap) {
    const std::vector<int> rows = tile_starts(height, tile, overlap);
    const std::vector<int> cols = tile_starts(width, tile, overlap);
    std::vector<Tile> tiles;
    tiles.reserve(rows.size() * cols.size());
    for (int top : rows)
        for (int left : cols) tiles.push_back({top, left, std::min(tile, height), std::min(tile, width)});
    return tiles;
}

std::vector<float> linspace(float start, float end, int steps) {
    if (steps < 1) invalid("linspace needs at least one step, got " + std::to_string(steps));
    if (steps == 1) return {start};
    const float step = (end - start) / float(steps - 1);
    const int halfway = steps / 2;
    std::vector<float> values(static_cast<size_t>(steps));
    for (int i = 0; i < steps; ++i)
        values[size_t(i)] = i < halfway ? std::fma(step, float(i), start) : std::fma(-step, float(steps - i - 1), end);
    return values;
}

std::vector<float> feather_weights(const Tile& tile, int height, int width, int overlap) {
    if (overlap < 0) invalid("overlap must be non-negative, got " + std::to_string(overlap));
    if (tile.top < 0 || tile.left < 0 || tile.height <= 0 || tile.width <= 0 || tile.bottom() > height ||
        tile.right() > width)
        invalid("tile does not fit in a " + std::to_string(height) + "x" + std::to_string(width) + " image");
    const bool top = tile.top > 0, bottom = tile.bottom() < height, left = tile.left > 0, right = tile.right() < width;
    if (overlap > 0 && (((top || bottom) && tile.height < overlap) || ((left || right) && tile.width < overlap)))
        invalid("a ramp of " + std::to_string(overlap) + " does not fit a " + std::to_string(tile.height) + "x" +
                std::to_string(tile.width) + " tile");
    std::vector<float> weights(size_t(tile.height) * size_t(tile.width), 1.0f);
    if (overlap == 0) return weights;
    const std::vector<float> rising = linspace(0.0f, 1.0f, overlap);
    const std::vector<float> falling = linspace(1.0f, 0.0f, overlap);
    // The factor of the first `overlap` and the last `overlap` indices along a side of n (they may overlap).
    auto ramp = [&](bool at_start, bool at_end, int n) {
        std::vector<float> start(size_t(n), 1.0f), end(size_t(n), 1.0f);
        for (int i = 0; i < overlap; ++i) {
            if (at_start) start[size_t(i)] = rising[size_t(i)];
            if (at_end) end[size_t(n - overlap + i)] = falling[size_t(i)];
        }
        return std::make_pair(start, end);
    };
    const auto [row_start, row_end] = ramp(top, bottom, tile.height);
    const auto [col_start, col_end] = ramp(left, right, tile.width);
    // One float32 rounding per factor, in torch's order: ((1 * top) * bottom) * left) * right. A factor of 1 is
    // exact, so multiplying by it where no ramp applies changes nothing.
    for (size_t y = 0; y < size_t(tile.height); ++y) {
        const float row = row_start[y] * row_end[y];
        for (size_t x = 0; x < size_t(tile.width); ++x)
            weights[y * size_t(tile.width) + x] = row * col_start[x] * col_end[x];
    }
    return weights;
}

TileBlender::TileBlender(int channels, int height, int width, int tile, int overlap, Emit emit)
    : height_(height), width_(width), overlap_(overlap), band_height_(std::min(tile, height)), emit_(std::move(emit)) {
    if (channels < 1 || height < 1 || width < 1) invalid("canvas dims must be positive");
    validate_grid(tile, overlap);
    band_ = Planar(channels, band_height_, width);
    weight_sum_.assign(size_t(band_height_) * size_t(width), 0.0f);
    rows_.channels = channels;
    rows_.width = width;
    rows_.data.reserve(band_.data.size());
}

void TileBlender::add(const Tile& tile, const Planar& pixels) {
    if (pixels.channels != band_.channels || pixels.height != tile.height || pixels.width != tile.width)
        invalid("tile pixels must be (" + std::to_string(band_.channels) + ", " + std::to_string(tile.height) +
                ", " + std::to_string(tile.width) + ")");
    if (finished_) invalid("tile added after finish()");
    if (tile.top != top_) {  // a new row of tiles: the rows above it are final
        if (tile.top < top_ || tile.top - top_ > band_height_)
            invalid("tiles must come in plan order (a tile at row " + std::to_string(tile.top) + " after row " +
                    std::to_string(top_) + ")");
        emit_rows(tile.top - top_);
    }
    if (tile.bottom() > top_ + band_height_) invalid("tile is taller than the band of " + std::to_string(band_height_));
    const std::vector<float> weights = feather_weights(tile, height_, width_, overlap_);
    const int y0 = tile.top - top_;
    for (int c = 0; c < band_.channels; ++c)
        for (int y = 0; y < tile.height; ++y)
            for (int x = 0; x < tile.width; ++x)
                band_.at(c, y0 + y, tile.left + x) +=
                    pixels.at(c, y, x) * weights[size_t(y) * size_t(tile.width) + size_t(x)];
    for (int y = 0; y < tile.height; ++y)
        for (int x = 0; x < tile.width; ++x)
            weight_sum_[size_t(y0 + y) * size_t(width_) + size_t(tile.left + x)] +=
                weights[size_t(y) * size_t(tile.width) + size_t(x)];
}

void TileBlender::finish() {
    if (finished_) invalid("finish() called twice");
    emit_rows(band_height_);
    finished_ = true;
}

// Divides the band's first `count` rows into rows_, hands them out, then moves the band down by `count` rows.
void TileBlender::emit_rows(int count) {
    const size_t row = size_t(width_), n = size_t(count) * row, plane = band_.plane();
    rows_.height = count;
    rows_.data.resize(size_t(band_.channels) * n);
    for (size_t c = 0; c < size_t(band_.channels); ++c)
        for (size_t i = 0; i < n; ++i)
            rows_.data[c * n + i] = band_.data[c * plane + i] / std::max(weight_sum_[i], kMinWeightSum);
    emit_(top_, rows_);
    auto shift = [&](float* values) {  // rows [count, band) to the top, zeros below
        std::copy(values + n, values + plane, values);
        std::fill(values + (plane - n), values + plane, 0.0f);
    };
    for (size_t c = 0; c < size_t(band_.channels); ++c) shift(band_.data.data() + c * plane);
    shift(weight_sum_.data());
    top_ += count;
}

TileBlender::Emit collect_into(Planar& whole) {
    return [&whole](int top, const Planar& rows) {
        for (int c = 0; c < rows.channels; ++c)
            for (int y = 0; y < rows.height && top + y < whole.height; ++y)
                std::copy_n(rows.data.data() + size_t(c) * rows.plane() + size_t(y) * size_t(rows.width),
                            std::min(rows.width, whole.width), &whole.at(c, top + y, 0));
    };
}

}  // namespace strsr
