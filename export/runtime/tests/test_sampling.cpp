// A sampling export's noise path (make_sampling_export.py's hand-made graphs: output = encoder image + noise laid
// out as pixels): each image's noise comes from a fresh generator seeded with the session's seed, drawn tile by tile
// in row-major order, (1, 48, H / 4, W / 4) per tile; the same seed gives the same image, another seed another.
// Usage: test_sampling DIR (with DIR/sample and DIR/mode)
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

#include "check.hpp"
#include "noise.hpp"
#include "resample.hpp"
#include "strsr/strsr_runtime.hpp"
#include "tiling.hpp"

namespace {

std::filesystem::path data_dir;
constexpr int kChannels = 48, kVaeScale = 4;

strsr::Planar test_image(int height, int width) {
    strsr::Planar lr(3, height, width);
    uint32_t state = 99;
    for (float& v : lr.data) {
        state = state * 1664525u + 1013904223u;
        v = float(state >> 8) / float(1 << 24);
    }
    return lr;
}

std::vector<float> run(const std::string& folder, const strsr::Planar& lr, int tile, int overlap, uint64_t seed) {
    strsr::Options options;
    options.tile = tile;
    options.overlap = overlap;
    options.seed = seed;
    const strsr::Session session((data_dir / folder).string(), options);
    return session.upscale_planar(lr.data, lr.width, lr.height);
}

// The pipeline written out for these graphs: per tile, image * 2 - 1 plus the tile's noise (channel
// ((y % 4) * 4 + x % 4) * 3 + c of the latent, DepthToSpace's DCR order), blended, clamped, mapped, cropped.
std::vector<float> expected(const strsr::Planar& lr, int tile, int overlap, uint64_t seed, bool samples) {
    const int height = 4 * lr.height, width = 4 * lr.width;
    const int padded_height = (height + 15) / 16 * 16, padded_width = (width + 15) / 16 * 16;
    strsr::NormalNoise noise(seed);
    strsr::Planar blend(3, padded_height, padded_width);
    strsr::TileBlender blender(3, padded_height, padded_width, tile, overlap, strsr::collect_into(blend));
    for (const strsr::Tile& t : strsr::plan_tiles(padded_height, padded_width, tile, overlap)) {
        strsr::Planar out = strsr::upsampled_tile(lr, t, padded_height, padded_width);
        const int h = t.height / kVaeScale, w = t.width / kVaeScale;
        std::vector<float> eps(size_t(kChannels) * size_t(h) * size_t(w));
        if (samples) noise.fill(eps.data(), eps.size());
        for (int c = 0; c < 3; ++c)
            for (int y = 0; y < t.height; ++y)
                for (int x = 0; x < t.width; ++x) {
                    const int k = ((y % kVaeScale) * kVaeScale + x % kVaeScale) * 3 + c;
                    float& v = out.at(c, y, x);
                    v = v * 2.0f - 1.0f;
                    if (samples) v = v + eps[(size_t(k) * size_t(h) + size_t(y / kVaeScale)) * size_t(w) + size_t(x / kVaeScale)];
                }
        blender.add(t, out);
    }
    blender.finish();
    std::vector<float> result;
    for (int c = 0; c < 3; ++c)
        for (int y = 0; y < height; ++y)
            for (int x = 0; x < width; ++x)
                result.push_back((std::min(std::max(blend.at(c, y, x), -1.0f), 1.0f) + 1.0f) / 2.0f);
    return result;
}

}  // namespace

TEST(same_seed_same_image_other_seed_other_image) {
    const strsr::Planar lr = test_image(13, 20);  // 52 x 80 -> 64 x 80 padded: 9 tiles of 32 at overlap 8
    const std::vector<float> a = run("sample", lr, 32, 8, 0), b = run("sample", lr, 32, 8, 0);
    const std::vector<float> c = run("sample", lr, 32, 8, 1);
    CHECK(a == b);
    CHECK(a != c);
    size_t differ = 0;
    for (size_t i = 0; i < a.size(); ++i) differ += a[i] != c[i];
    std::printf("seed 0 vs 1: %zu of %zu samples differ\n", differ, a.size());
    CHECK(differ > a.size() / 2);
}

// The exact draws for 2, 9 and 1 tiles (drawn in row-major tile order from one generator per image).
TEST(noise_is_drawn_per_image_tile_by_tile) {
    const strsr::Planar lr = test_image(13, 20);
    CHECK(run("sample", lr, 64, 16, 5) == expected(lr, 64, 16, 5, true));  // two 64 x 64 tiles
    CHECK(run("sample", lr, 32, 8, 5) == expected(lr, 32, 8, 5, true));
    CHECK(run("sample", lr, 32, 8, 5) != expected(lr, 32, 8, 6, true));
    CHECK(run("sample", lr, 96, 0, 3) == expected(lr, 96, 0, 3, true));
}

// Each call is a fresh image: concurrent calls on one session draw the same noise as one call alone.
TEST(every_image_restarts_the_generator) {
    const strsr::Planar lr = test_image(9, 7);
    strsr::Options options;
    options.tile = 16;
    options.overlap = 4;
    options.seed = 11;
    const strsr::Session session((data_dir / "sample").string(), options);
    const std::vector<float> first = session.upscale_planar(lr.data, lr.width, lr.height);
    CHECK(first == expected(lr, 16, 4, 11, true));
    std::vector<std::vector<float>> results(4);
    std::vector<std::thread> threads;
    for (size_t t = 0; t < results.size(); ++t)
        threads.emplace_back([&, t] { results[t] = session.upscale_planar(lr.data, lr.width, lr.height); });
    for (std::thread& t : threads) t.join();
    for (const std::vector<float>& r : results) CHECK(r == first);
}

// The same graphs without the noise input: no draws, and the seed changes nothing.
TEST(mode_exports_take_no_noise) {
    const strsr::Planar lr = test_image(13, 20);
    const std::vector<float> a = run("mode", lr, 32, 8, 0);
    CHECK(a == run("mode", lr, 32, 8, 1));
    CHECK(a == expected(lr, 32, 8, 0, false));
}

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: test_sampling DIR (made by make_sampling_export.py)\n");
        return 2;
    }
    data_dir = argv[1];
    for (auto& [name, body] : strsr_test::registry()) {
        const int before = strsr_test::failures();
        try {
            body();
        } catch (const std::exception& e) {
            strsr_test::fail(__FILE__, __LINE__, std::string(name) + " threw: " + e.what());
        }
        std::printf("%s %s\n", strsr_test::failures() == before ? "ok  " : "FAIL", name);
    }
    return strsr_test::failures() ? 1 : 0;
}
