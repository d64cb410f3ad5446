// The x4 pipeline of strsr/pipeline.py (SuperResolver.upscale_tensor) around a Backend, tiled as the official
// StrSR scripts tile: bicubic x4, one pad of the upsampled image to a multiple of lcm(16, pixel multiple) (reflect,
// per axis; replicate where the pad is not shorter than the side), the official tile plan over the padded image,
// one model pass per tile on x * 2 - 1, the raw outputs blended in [-1, 1] (strsr/tiling.py's weights and
// division), then clamp(-1, 1), (x + 1) / 2 and the crop to 4h x 4w. Each tile's upsampled pixels are computed
// from the LR image directly, bit-identical to cropping the padded full-size image, which is never held, and the
// blend streams finished rows (TileBlender), so the float32 working memory is one band of tiles, not the canvas.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>

#include "backend.hpp"
#include "image.hpp"
#include "manifest.hpp"
#include "strsr/strsr_runtime.h"

namespace strsr {

// The official scripts pad to 16 (VAE 8x, token patch 2x); a pixel multiple not dividing 16 pads to the lcm.
constexpr int kOfficialPadMultiple = 16;

class Upscaler {
public:
    // Loads and checks everything up front; throws Error naming the problem.
    Upscaler(const std::filesystem::path& engine_dir, const strsr_options& options);

    // Receives the (3, n, 4w) output rows [top, top + n) in [0, 1], top to bottom; `rows` is valid during the call.
    using RowSink = std::function<void(int top, const Planar& rows)>;

    // (3, h, w) finite values in [0, 1] -> the (3, 4h, 4w) result in [0, 1], handed to `sink` row block by row block
    // as the tiles finish. Const and thread-safe: each call has its own buffers and, for a sampling export, its own
    // noise generator seeded with the session's seed (drawn tile by tile, row-major).
    void upscale(const Planar& lr, const RowSink& sink) const;

    const Manifest& manifest() const { return manifest_; }
    const Backend& backend() const { return *backend_; }
    int tile() const { return tile_; }
    int overlap() const { return overlap_; }
    // What the image is padded to a multiple of: lcm(16, pixel multiple).
    int pad_multiple() const;

private:
    Manifest manifest_;
    std::unique_ptr<Backend> backend_;
    int tile_ = 0;
    int overlap_ = 0;
    uint64_t seed_ = 0;
};

}  // namespace strsr
