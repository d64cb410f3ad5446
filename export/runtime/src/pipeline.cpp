#include "pipeline.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "error.hpp"
#include "noise.hpp"
#include "resample.hpp"
#include "tiling.hpp"

namespace strsr {
namespace {

constexpr int kDefaultOverlap = 64;  // strsr-upscale's default

// The condition tensor must be (1, tokens, width) with the width and any fixed sizes the DiT graph declares.
void check_condition(const Tensor& condition, const GraphInfo& dit, const std::string& source) {
    const std::vector<Dim>& dims = dit.inputs.at("condition");
    bool ok = condition.shape.size() == dims.size() && !condition.shape.empty() && condition.shape[0] == 1;
    for (size_t i = 1; ok && i < dims.size(); ++i)
        ok = !dims[i].is_static() || dims[i].size == condition.shape[i];
    if (!ok) {
        std::string shape;
        for (int64_t d : condition.shape) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
        throw Error(STRSR_ERROR_MANIFEST, source + ": condition has shape [" + shape +
                                              "], which the DiT graph's 'condition' input does not accept");
    }
}

std::unique_ptr<Backend> make_backend(const std::filesystem::path& dir, const Manifest& manifest,
                                      const Tensor& condition, const strsr_options& o) {
    BackendOptions options;
    options.device = o.device;
    options.device_index = o.device_index;
    options.intra_op_threads = o.intra_op_threads;
    options.cuda_graph = o.cuda_graph != 0;
    options.max_contexts = o.max_contexts > 0 ? o.max_contexts : 2;
    options.verify_files = o.verify != 0;
    switch (o.backend) {
        case STRSR_BACKEND_ONNXRUNTIME: return make_onnxruntime_backend(dir, manifest, condition, options);
        case STRSR_BACKEND_TENSORRT: return make_tensorrt_backend(dir, manifest, condition, options);
        case STRSR_BACKEND_AUTO:
            if (have_tensorrt() && manifest.tensorrt && o.device != STRSR_DEVICE_CPU)
                return make_tensorrt_backend(dir, manifest, condition, options);
            return make_onnxruntime_backend(dir, manifest, condition, options);
        case STRSR_BACKEND_MAX_ENUM: break;
    }
    throw Error(STRSR_ERROR_INVALID_ARGUMENT, "unknown backend " + std::to_string(int(o.backend)));
}

}  // namespace

Upscaler::Upscaler(const std::filesystem::path& engine_dir, const strsr_options& options)
    : manifest_(read_manifest(engine_dir, options.verify != 0)), seed_(options.seed) {
    const int multiple = manifest_.pixel_multiple;
    tile_ = options.tile == 0 ? manifest_.tile : options.tile;
    overlap_ = options.overlap == -1 ? kDefaultOverlap : options.overlap;
    if (tile_ <= 0 || tile_ % multiple)
        throw Error(STRSR_ERROR_INVALID_ARGUMENT, "tile size " + std::to_string(tile_) +
                                                      " must be a positive multiple of " + std::to_string(multiple));
    if (overlap_ < 0 || overlap_ >= tile_)
        throw Error(STRSR_ERROR_INVALID_ARGUMENT, "overlap " + std::to_string(overlap_) + " must be in [0, tile " +
                                                      std::to_string(tile_) + ")");
    if (manifest_.conditioning == "vlm")
        throw Error(STRSR_ERROR_MANIFEST, (engine_dir / "manifest.json").string() +
                                              ": this export is VLM-conditioned; the VLM runs only in PyTorch "
                                              "(strsr-upscale --runtime onnx --vlm), the C++ runtime takes exports "
                                              "with none or text conditioning");
    const std::filesystem::path condition_path = engine_dir / manifest_.condition_file;
    const Tensor condition = read_safetensors(condition_path, "condition");
    check_condition(condition, manifest_.graphs.at("dit_onestep"), condition_path.string());
    backend_ = make_backend(engine_dir, manifest_, condition, options);
}

int Upscaler::pad_multiple() const { return std::lcm(kOfficialPadMultiple, manifest_.pixel_multiple); }

void Upscaler::upscale(const Planar& lr, const RowSink& sink) const {
    if (lr.channels != 3 || lr.height < 1 || lr.width < 1)
        throw Error(STRSR_ERROR_INVALID_ARGUMENT, "expected a (3, h, w) image with h, w >= 1");
    // as strsr.inference.pipeline refuses them: NaN would spread through every tile it touches, infinities too
    if (!std::all_of(lr.data.begin(), lr.data.end(), [](float v) { return std::isfinite(v); }))
        throw Error(STRSR_ERROR_INVALID_ARGUMENT, "the LR image has NaN or infinite values");
    const int height = lr.height * kScale, width = lr.width * kScale;
    const int multiple = pad_multiple();
    const int padded_height = (height + multiple - 1) / multiple * multiple;
    const int padded_width = (width + multiple - 1) / multiple * multiple;
    // Finished rows of the padded blend -> clamp(-1, 1), (x + 1) / 2, the padding's rows and columns cut off.
    auto finish_rows = [&](int top, const Planar& rows) {
        if (top >= height) return;
        Planar out(3, std::min(rows.height, height - top), width);
        for (int c = 0; c < 3; ++c)
            for (int y = 0; y < out.height; ++y)
                for (int x = 0; x < width; ++x)
                    out.at(c, y, x) = (std::min(std::max(rows.at(c, y, x), -1.0f), 1.0f) + 1.0f) / 2.0f;
        sink(top, out);
    };
    NormalNoise generator(seed_);  // a fresh one per image, as strsr-upscale seeds one per image
    Tensor noise;
    TileBlender blender(3, padded_height, padded_width, tile_, overlap_, finish_rows);
    for (const Tile& tile : plan_tiles(padded_height, padded_width, tile_, overlap_)) {
        Planar image = upsampled_tile(lr, tile, padded_height, padded_width);
        for (float& v : image.data) v = v * 2.0f - 1.0f;
        if (manifest_.latent.samples) {
            const int scale = manifest_.latent.vae_scale;
            noise.shape = {1, manifest_.latent.channels, tile.height / scale, tile.width / scale};
            noise.data.resize(size_t(noise.shape[1]) * size_t(noise.shape[2]) * size_t(noise.shape[3]));
            generator.fill(noise.data.data(), noise.data.size());  // (1, C, h, w) row-major, as torch.randn
        }
        blender.add(tile, backend_->run(image, manifest_.latent.samples ? &noise : nullptr));
    }
    blender.finish();
}

}  // namespace strsr
