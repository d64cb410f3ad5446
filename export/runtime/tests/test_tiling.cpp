// Tiling and blending against strsr/tiling.py's values, plus the partition-of-unity and coverage properties.
#include <cmath>
#include <random>

#include "check.hpp"
#include "error.hpp"
#include "tiling.hpp"

using strsr::Tile;

namespace {

bool same(const std::vector<int>& a, const std::vector<int>& b) { return a == b; }

}  // namespace

// Expected values printed by strsr.tiling.tile_starts / _ramp (Python) for the same arguments.
TEST(tile_starts_match_python) {
    CHECK(same(strsr::tile_starts(1000, 256, 32, 4), {0, 188, 372, 560, 744}));
    CHECK(same(strsr::tile_starts(384, 128, 32, 4), {0, 88, 172, 256}));
    CHECK(same(strsr::tile_starts(245, 64, 16, 1), {0, 46, 91, 136, 181}));
    CHECK(same(strsr::tile_starts(50, 64, 16, 4), {0}));
}

TEST(feather_ramp_matches_python) {
    const std::vector<float> both = strsr::feather_ramp(8, true, true, 4);
    const float want_both[] = {0.125f, 0.375f, 0.625f, 0.875f, 0.875f, 0.625f, 0.375f, 0.125f};
    for (int i = 0; i < 8; ++i) CHECK_EQ(both[size_t(i)], want_both[i]);
    const std::vector<float> start = strsr::feather_ramp(6, true, false, 4);
    const float want_start[] = {0.125f, 0.375f, 0.625f, 0.875f, 1.0f, 1.0f};
    for (int i = 0; i < 6; ++i) CHECK_EQ(start[size_t(i)], want_start[i]);
    for (float w : strsr::feather_ramp(5, true, true, 0)) CHECK_EQ(w, 1.0f);
}

// Every pixel is covered; the normalised weights at every pixel sum to 1; the windows respect the overlap.
TEST(tiles_cover_every_pixel_with_weights_summing_to_one) {
    const int shapes[][4] = {{256, 384, 128, 32}, {244, 180, 64, 16}, {1000, 52, 256, 32}, {36, 36, 64, 16},
                             {516, 260, 128, 0}, {4, 400, 64, 60}};
    for (const auto& s : shapes) {
        const int height = s[0], width = s[1], tile = s[2], overlap = s[3];
        const std::vector<Tile> tiles = strsr::plan_tiles(height, width, tile, overlap, 4);
        std::vector<float> weight_sum(size_t(height) * size_t(width), 0.0f);
        std::vector<int> count(weight_sum.size(), 0);
        for (const Tile& t : tiles) {
            CHECK(t.height <= tile && t.width <= tile && t.bottom() <= height && t.right() <= width);
            CHECK(t.top % 4 == 0 && t.left % 4 == 0);
            const std::vector<float> w = strsr::feather_weights(t, height, width, overlap);
            for (int y = 0; y < t.height; ++y)
                for (int x = 0; x < t.width; ++x) {
                    const size_t i = size_t(t.top + y) * size_t(width) + size_t(t.left + x);
                    weight_sum[i] += w[size_t(y) * size_t(t.width) + size_t(x)];
                    ++count[i];
                    CHECK(w[size_t(y) * size_t(t.width) + size_t(x)] > 0.0f);
                }
        }
        // Normalising by the sum gives a partition of unity: per tile weight / sum, summed over tiles, is 1.
        std::vector<double> unity(weight_sum.size(), 0.0);
        for (const Tile& t : tiles) {
            const std::vector<float> w = strsr::feather_weights(t, height, width, overlap);
            for (int y = 0; y < t.height; ++y)
                for (int x = 0; x < t.width; ++x) {
                    const size_t i = size_t(t.top + y) * size_t(width) + size_t(t.left + x);
                    unity[i] += double(w[size_t(y) * size_t(t.width) + size_t(x)]) / double(weight_sum[i]);
                }
        }
        for (size_t i = 0; i < unity.size(); ++i) {
            CHECK(count[i] >= 1);
            CHECK_NEAR(unity[i], 1.0, 1e-6);
        }
    }
}

// With the actual overlap equal to `overlap` the raw ramps already sum to exactly 1 (no normalisation needed).
TEST(facing_ramps_sum_to_exactly_one) {
    const std::vector<int> starts = strsr::tile_starts(224, 128, 32, 4);  // 0, 96: overlap exactly 32
    CHECK(same(starts, {0, 96}));
    const std::vector<Tile> tiles = strsr::plan_tiles(8, 224, 128, 32, 4);
    CHECK_EQ(tiles.size(), size_t(2));
    const std::vector<float> a = strsr::feather_weights(tiles[0], 8, 224, 32);
    const std::vector<float> b = strsr::feather_weights(tiles[1], 8, 224, 32);
    for (int x = 96; x < 128; ++x) CHECK_EQ(a[size_t(x)] + b[size_t(x - 96)], 1.0f);
}

// Blending crops of one image reproduces it: tiles of identical content meet without a seam.
TEST(blender_reproduces_identical_tiles) {
    const int height = 100, width = 140, tile = 48, overlap = 16;
    strsr::Planar image(3, height, width);
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
    for (float& v : image.data) v = uniform(rng);
    strsr::TileBlender blender(3, height, width, overlap);
    for (const Tile& t : strsr::plan_tiles(height, width, tile, overlap, 4)) {
        strsr::Planar crop(3, t.height, t.width);
        for (int c = 0; c < 3; ++c)
            for (int y = 0; y < t.height; ++y)
                for (int x = 0; x < t.width; ++x) crop.at(c, y, x) = image.at(c, t.top + y, t.left + x);
        blender.add(t, crop);
    }
    const strsr::Planar out = blender.result();
    for (size_t i = 0; i < out.data.size(); ++i) CHECK_NEAR(out.data[i], image.data[i], 1e-6);
}

TEST(blender_refuses_uncovered_pixels_and_wrong_shapes) {
    strsr::TileBlender blender(3, 8, 8, 0);
    CHECK_ERROR(blender.add(Tile{0, 0, 4, 4}, strsr::Planar(3, 4, 5)), STRSR_ERROR_INVALID_ARGUMENT, "tile pixels");
    blender.add(Tile{0, 0, 4, 8}, strsr::Planar(3, 4, 8));
    CHECK_ERROR(blender.result(), STRSR_ERROR_INTERNAL, "32 of 64 pixels were not covered");
}

TEST(bad_grids_are_errors) {
    CHECK_ERROR(strsr::tile_starts(100, 64, 64, 4), STRSR_ERROR_INVALID_ARGUMENT, "overlap must satisfy");
    CHECK_ERROR(strsr::tile_starts(100, 0, 0, 1), STRSR_ERROR_INVALID_ARGUMENT, "tile must be positive");
    CHECK_ERROR(strsr::tile_starts(100, 66, 16, 4), STRSR_ERROR_INVALID_ARGUMENT, "multiples of align");
    CHECK_ERROR(strsr::tile_starts(0, 64, 16, 4), STRSR_ERROR_INVALID_ARGUMENT, "length must be positive");
    CHECK_ERROR(strsr::feather_weights(Tile{0, 0, 9, 4}, 8, 8, 2), STRSR_ERROR_INVALID_ARGUMENT, "does not fit");
}

TEST_MAIN()
