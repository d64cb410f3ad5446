// The x4 pipeline of strsr/pipeline.py (SuperResolver.upscale_tensor) around a Backend: bicubic x4 per output
// tile, reflect padding to the pixel multiple, one model pass, crop, linear-feathered blending.
#pragma once

#include <filesystem>
#include <memory>

#include "backend.hpp"
#include "image.hpp"
#include "manifest.hpp"
#include "strsr/strsr_runtime.h"

namespace strsr {

class Upscaler {
public:
    // Loads and checks everything up front; throws Error naming the problem.
    Upscaler(const std::filesystem::path& engine_dir, const strsr_options& options);

    // (3, h, w) in [0, 1] -> (3, 4h, 4w) in [0, 1]. Const and thread-safe: each call has its own buffers.
    Planar upscale(const Planar& lr) const;

    const Manifest& manifest() const { return manifest_; }
    const Backend& backend() const { return *backend_; }
    int tile() const { return tile_; }
    int overlap() const { return overlap_; }

private:
    // One model pass on an upsampled crop (3, H, W) in [0, 1]; pads to the pixel multiple and crops back.
    Planar restore(const Planar& upsampled) const;

    Manifest manifest_;
    std::unique_ptr<Backend> backend_;
    int tile_ = 0;
    int overlap_ = 0;
};

}  // namespace strsr
