// The official tile plan, its ramps and the blend, from the algorithm's definition (python_parity.py compares the
// same functions with strsr.inference.tiling bit for bit, and the ramps with torch.linspace for every n up to 1100).
#include <cmath>
#include <random>

#include "check.hpp"
#include "error.hpp"
#include "tiling.hpp"

using strsr::Tile;

namespace {

bool same(const std::vector<int>& a, const std::vector<int>& b) { return a == b; }

}  // namespace

// The values tests/test_tiling.py asserts for strsr.tiling.tile_starts.
TEST(tile_starts_known_values) {
    CHECK(same(strsr::tile_starts(97, 128, 32), {0}));
    CHECK(same(strsr::tile_starts(128, 128, 32), {0}));
    CHECK(same(strsr::tile_starts(129, 128, 32), {0, 1}));  // the last tile shifts back to end flush
    CHECK(same(strsr::tile_starts(224, 128, 32), {0, 96}));  // exact fit: overlap exactly 32
    CHECK(same(strsr::tile_starts(100, 48, 12), {0, 36, 52}));
    CHECK(same(strsr::tile_starts(1984, 1024, 64), {0, 960}));
    CHECK(same(strsr::tile_starts(4000, 1024, 64), {0, 960, 1920, 2880, 2976}));
    CHECK(same(strsr::tile_starts(10, 4, 0), {0, 4, 6}));
}

// Every start but the last is a whole number of strides; the last window ends at the edge; neighbours overlap by
// at least `overlap`; one window per stride that fits a whole tile plus one flush with the end.
TEST(tile_starts_sweep) {
    for (int tile = 1; tile < 25; ++tile)
        for (int overlap = 0; overlap < tile; ++overlap)
            for (int length = 1; length < 3 * tile + 7; ++length) {
                const std::vector<int> starts = strsr::tile_starts(length, tile, overlap);
                const int size = std::min(tile, length), stride = tile - overlap;
                CHECK(starts.front() == 0 && starts.back() + size == length);
                for (size_t k = 0; k + 1 < starts.size(); ++k) {
                    CHECK_EQ(starts[k], int(k) * stride);
                    CHECK(starts[k + 1] > starts[k] && starts[k] + size - starts[k + 1] >= overlap);
                }
                const size_t count = length <= tile ? 1
                                                    : size_t((length - tile) / stride + 1) +
                                                          ((length - tile) % stride != 0 ? 1 : 0);
                CHECK_EQ(starts.size(), count);
            }
}

TEST(plan_is_row_major_and_tiles_are_whole) {
    const std::vector<Tile> tiles = strsr::plan_tiles(129, 40, 128, 32);  // rows {0, 1}, one column of 40
    CHECK_EQ(tiles.size(), size_t(2));
    CHECK(tiles[0].top == 0 && tiles[1].top == 1 && tiles[1].left == 0);
    CHECK(tiles[1].height == 128 && tiles[1].width == 40);
    const std::vector<Tile> grid = strsr::plan_tiles(224, 129, 128, 32);
    CHECK_EQ(grid.size(), size_t(4));
    CHECK(grid[1].top == 0 && grid[1].left == 1 && grid[2].top == 96 && grid[2].left == 0);
}

// The exactly representable cases of torch.linspace, and its two halves: start + step * i, end - step * (n - 1 - i).
TEST(linspace_definition) {
    CHECK(strsr::linspace(0.0f, 1.0f, 1) == std::vector<float>({0.0f}));  // torch fills `start`
    CHECK(strsr::linspace(1.0f, 0.0f, 1) == std::vector<float>({1.0f}));
    CHECK(strsr::linspace(0.0f, 1.0f, 2) == std::vector<float>({0.0f, 1.0f}));
    CHECK(strsr::linspace(0.0f, 1.0f, 5) == std::vector<float>({0.0f, 0.25f, 0.5f, 0.75f, 1.0f}));
    CHECK(strsr::linspace(1.0f, 0.0f, 3) == std::vector<float>({1.0f, 0.5f, 0.0f}));
    for (int n : {7, 64, 65, 1023}) {
        const std::vector<float> up = strsr::linspace(0.0f, 1.0f, n);
        const float step = 1.0f / float(n - 1);
        CHECK_EQ(up.front(), 0.0f);
        CHECK_EQ(up.back(), 1.0f);  // the second half counts back from `end`, so the end is exact
        CHECK_EQ(up[1], step);
        for (size_t i = 1; i < up.size(); ++i) CHECK(up[i] > up[i - 1]);
        const std::vector<float> down = strsr::linspace(1.0f, 0.0f, n);
        CHECK(down.front() == 1.0f && down.back() == 0.0f);
    }
    CHECK_ERROR(strsr::linspace(0.0f, 1.0f, 0), STRSR_ERROR_INVALID_ARGUMENT, "at least one step");
}

// A middle tile of a 3 x 3 grid ramps on all four sides, the factors multiplied top, bottom, left, right.
TEST(feather_weights_multiply_the_ramps_in_order) {
    const int overlap = 5;
    const std::vector<float> rising = strsr::linspace(0.0f, 1.0f, overlap);
    const std::vector<float> falling = strsr::linspace(1.0f, 0.0f, overlap);
    const Tile middle{6, 6, 8, 8};  // in a 20 x 20 image: ramps overlap inside the tile (8 < 2 * 5)
    const std::vector<float> w = strsr::feather_weights(middle, 20, 20, overlap);
    auto factor = [&](int i, int n, bool start, bool end) {
        float f = 1.0f;
        if (start && i < overlap) f *= rising[size_t(i)];
        if (end && i >= n - overlap) f *= falling[size_t(i - (n - overlap))];
        return f;
    };
    for (int y = 0; y < 8; ++y)
        for (int x = 0; x < 8; ++x) {
            float want = factor(y, 8, true, true);  // ((1 * top) * bottom), then * left, then * right
            if (x < overlap) want *= rising[size_t(x)];
            if (x >= 8 - overlap) want *= falling[size_t(x - 3)];
            CHECK_EQ(w[size_t(y * 8 + x)], want);
        }
    // Image edges get no ramp; overlap 0 none at all.
    for (float v : strsr::feather_weights(Tile{0, 0, 8, 8}, 8, 8, overlap)) CHECK_EQ(v, 1.0f);
    for (float v : strsr::feather_weights(Tile{4, 4, 8, 8}, 20, 20, 0)) CHECK_EQ(v, 1.0f);
    const std::vector<float> top_left = strsr::feather_weights(Tile{0, 0, 8, 8}, 20, 20, overlap);
    CHECK_EQ(top_left[0], 1.0f);
    CHECK_EQ(top_left[size_t(7 * 8 + 7)], 0.0f);  // falling ramps end at 0 on both axes
}

// The whole-canvas blend, written out: every tile's pixels * weights and its weights summed into full-size float32
// buffers in plan order, then divided by the weight sum floored at 1e-6 (what strsr/tiling.py did before it streamed).
strsr::Planar whole_canvas_blend(const std::vector<strsr::Planar>& tiles, int height, int width, int tile, int overlap) {
    strsr::Planar canvas(3, height, width);
    std::vector<float> sum(size_t(height) * size_t(width), 0.0f);
    size_t k = 0;
    for (const Tile& t : strsr::plan_tiles(height, width, tile, overlap)) {
        const std::vector<float> w = strsr::feather_weights(t, height, width, overlap);
        const strsr::Planar& pixels = tiles[k++];
        for (int c = 0; c < 3; ++c)
            for (int y = 0; y < t.height; ++y)
                for (int x = 0; x < t.width; ++x)
                    canvas.at(c, t.top + y, t.left + x) += pixels.at(c, y, x) * w[size_t(y * t.width + x)];
        for (int y = 0; y < t.height; ++y)
            for (int x = 0; x < t.width; ++x) sum[size_t((t.top + y) * width + t.left + x)] += w[size_t(y * t.width + x)];
    }
    for (int c = 0; c < 3; ++c)
        for (size_t i = 0; i < sum.size(); ++i) canvas.data[size_t(c) * sum.size() + i] /= std::max(sum[i], 1e-6f);
    return canvas;
}

// Streaming the blend a band at a time gives the whole-canvas values bit for bit, in row blocks handed out top to
// bottom, one per row of tiles, none taller than the tile; tiles of identical content blend back to it.
TEST(streamed_blend_equals_the_whole_canvas_bit_for_bit) {
    const int shapes[][4] = {{100, 140, 48, 16}, {129, 224, 128, 32}, {64, 200, 64, 1}, {96, 70, 32, 0},
                             {150, 150, 64, 37}, {40, 40, 64, 16}, {2100, 24, 1024, 64}, {120, 72, 64, 60}};
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    for (const auto& s : shapes) {
        const int height = s[0], width = s[1], tile = s[2], overlap = s[3];
        strsr::Planar image(3, height, width);
        for (float& v : image.data) v = uniform(rng);
        std::vector<strsr::Planar> crops, noisy;
        for (const Tile& t : strsr::plan_tiles(height, width, tile, overlap)) {
            strsr::Planar crop(3, t.height, t.width), other(3, t.height, t.width);
            for (int c = 0; c < 3; ++c)
                for (int y = 0; y < t.height; ++y)
                    for (int x = 0; x < t.width; ++x) {
                        crop.at(c, y, x) = image.at(c, t.top + y, t.left + x);
                        other.at(c, y, x) = uniform(rng);  // tiles that disagree: the sums' rounding shows
                    }
            crops.push_back(crop);
            noisy.push_back(other);
        }
        for (const std::vector<strsr::Planar>* tiles : {&crops, &noisy}) {
            strsr::Planar out(3, height, width);
            std::vector<std::pair<int, int>> blocks;  // (top, rows)
            auto collect = strsr::collect_into(out);
            strsr::TileBlender blender(3, height, width, tile, overlap, [&](int top, const strsr::Planar& rows) {
                blocks.emplace_back(top, rows.height);
                collect(top, rows);
            });
            size_t k = 0;
            for (const Tile& t : strsr::plan_tiles(height, width, tile, overlap)) blender.add(t, (*tiles)[k++]);
            blender.finish();
            CHECK(out.data == whole_canvas_blend(*tiles, height, width, tile, overlap).data);
            CHECK_EQ(blocks.size(), strsr::tile_starts(height, tile, overlap).size());
            int next = 0;
            for (const auto& [top, rows] : blocks) {
                CHECK_EQ(top, next);
                CHECK(rows >= 1 && rows <= tile);
                next = top + rows;
            }
            CHECK_EQ(next, height);
        }
        strsr::Planar out(3, height, width);
        strsr::TileBlender blender(3, height, width, tile, overlap, strsr::collect_into(out));
        size_t k = 0;
        for (const Tile& t : strsr::plan_tiles(height, width, tile, overlap)) blender.add(t, crops[k++]);
        blender.finish();
        for (size_t i = 0; i < out.data.size(); ++i) CHECK_NEAR(out.data[i], image.data[i], 1e-5);  // overlap 60: a pixel sums dozens of tiles
    }
}

// The official division floors the weight sum at 1e-6: uncovered pixels come out 0, not an error; no clamping.
TEST(blender_floors_the_weight_sum_and_does_not_clamp) {
    strsr::Planar out(3, 8, 8);
    strsr::TileBlender blender(3, 8, 8, 8, 0, strsr::collect_into(out));
    CHECK_ERROR(blender.add(Tile{0, 0, 4, 4}, strsr::Planar(3, 4, 5)), STRSR_ERROR_INVALID_ARGUMENT, "tile pixels");
    strsr::Planar pixels(3, 4, 8);
    for (float& v : pixels.data) v = 1.5f;
    blender.add(Tile{0, 0, 4, 8}, pixels);
    blender.finish();
    CHECK_EQ(out.at(0, 0, 0), 1.5f);
    CHECK_EQ(out.at(2, 7, 7), 0.0f);
    CHECK_ERROR(blender.finish(), STRSR_ERROR_INVALID_ARGUMENT, "finish() called twice");
}

// Rows are handed out once the plan passes them, so tiles must come in plan order.
TEST(blender_refuses_tiles_out_of_plan_order) {
    auto ignore = [](int, const strsr::Planar&) {};
    strsr::TileBlender blender(3, 200, 64, 64, 16, ignore);
    blender.add(Tile{48, 0, 64, 64}, strsr::Planar(3, 64, 64));
    CHECK_ERROR(blender.add(Tile{0, 0, 64, 64}, strsr::Planar(3, 64, 64)), STRSR_ERROR_INVALID_ARGUMENT,
                "tiles must come in plan order (a tile at row 0 after row 48)");
    CHECK_ERROR(blender.add(Tile{136, 0, 64, 64}, strsr::Planar(3, 64, 64)), STRSR_ERROR_INVALID_ARGUMENT,
                "tiles must come in plan order");
}

TEST(bad_grids_are_errors) {
    CHECK_ERROR(strsr::tile_starts(100, 64, 64), STRSR_ERROR_INVALID_ARGUMENT, "overlap must satisfy");
    CHECK_ERROR(strsr::tile_starts(100, 64, -1), STRSR_ERROR_INVALID_ARGUMENT, "overlap must satisfy");
    CHECK_ERROR(strsr::tile_starts(100, 0, 0), STRSR_ERROR_INVALID_ARGUMENT, "tile must be positive");
    CHECK_ERROR(strsr::tile_starts(0, 64, 16), STRSR_ERROR_INVALID_ARGUMENT, "length must be positive");
    CHECK_ERROR(strsr::feather_weights(Tile{0, 0, 9, 4}, 8, 8, 2), STRSR_ERROR_INVALID_ARGUMENT, "does not fit");
    CHECK_ERROR(strsr::feather_weights(Tile{2, 0, 4, 4}, 8, 8, 5), STRSR_ERROR_INVALID_ARGUMENT, "does not fit a");
}

TEST_MAIN()
