// strsr_dump: the runtime's tiling, ramps, padded upsampling, blending and noise as raw little-endian numbers on
// stdout, for python_parity.py to compare with strsr.inference.tiling / strsr.inference.pipeline (and the noise recipe) bit for bit.
//
//   strsr_dump plan H W TILE OVERLAP         per tile: int32 top, left, height, width, then float32 weights
//   strsr_dump linspaces START END N         float32 linspace(START, END, n) for n = 1..N, concatenated
//   strsr_dump upsample h w PH PW TOP LEFT TH TW   stdin: (3, h, w) float32 LR; out: the (3, TH, TW) tile
//   strsr_dump noise SEED N                  float32: the first N draws of NormalNoise(SEED)
//   strsr_dump blend H W TILE OVERLAP        stdin: each planned tile's (3, th, tw) float32 pixels in plan order;
//                                            out: the (3, H, W) blend
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "error.hpp"
#include "noise.hpp"
#include "resample.hpp"
#include "tiling.hpp"

namespace {

void put(const void* data, size_t bytes) {
    if (std::fwrite(data, 1, bytes, stdout) != bytes) throw std::runtime_error("short write");
}

void put_floats(const std::vector<float>& values) { put(values.data(), values.size() * sizeof(float)); }

void get_floats(std::vector<float>& values) {
    if (std::fread(values.data(), sizeof(float), values.size(), stdin) != values.size())
        throw std::runtime_error("short read on stdin");
}

int arg(char** argv, int i) { return std::atoi(argv[i]); }

}  // namespace

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "";
    try {
        if (mode == "plan" && argc == 6) {
            const int height = arg(argv, 2), width = arg(argv, 3), tile = arg(argv, 4), overlap = arg(argv, 5);
            for (const strsr::Tile& t : strsr::plan_tiles(height, width, tile, overlap)) {
                const int32_t box[4] = {t.top, t.left, t.height, t.width};
                put(box, sizeof(box));
                put_floats(strsr::feather_weights(t, height, width, overlap));
            }
        } else if (mode == "linspaces" && argc == 5) {
            for (int n = 1; n <= arg(argv, 4); ++n)
                put_floats(strsr::linspace(std::strtof(argv[2], nullptr), std::strtof(argv[3], nullptr), n));
        } else if (mode == "upsample" && argc == 10) {
            strsr::Planar lr(3, arg(argv, 2), arg(argv, 3));
            get_floats(lr.data);
            const strsr::Tile tile{arg(argv, 6), arg(argv, 7), arg(argv, 8), arg(argv, 9)};
            put_floats(strsr::upsampled_tile(lr, tile, arg(argv, 4), arg(argv, 5)).data);
        } else if (mode == "noise" && argc == 4) {
            std::vector<float> values(size_t(arg(argv, 3)));
            strsr::NormalNoise(std::strtoull(argv[2], nullptr, 10)).fill(values.data(), values.size());
            put_floats(values);
        } else if (mode == "blend" && argc == 6) {
            const int height = arg(argv, 2), width = arg(argv, 3), tile = arg(argv, 4), overlap = arg(argv, 5);
            strsr::Planar blend(3, height, width);  // the streamed row blocks, gathered
            strsr::TileBlender blender(3, height, width, tile, overlap, strsr::collect_into(blend));
            for (const strsr::Tile& t : strsr::plan_tiles(height, width, tile, overlap)) {
                strsr::Planar pixels(3, t.height, t.width);
                get_floats(pixels.data);
                blender.add(t, pixels);
            }
            blender.finish();
            put_floats(blend.data);
        } else {
            std::fprintf(stderr, "usage: strsr_dump plan|linspaces|upsample|noise|blend ARGS... (see strsr_dump.cpp)\n");
            return 2;
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "strsr_dump: %s\n", e.what());
        return 1;
    }
    return std::fflush(stdout) == 0 ? 0 : 1;
}
