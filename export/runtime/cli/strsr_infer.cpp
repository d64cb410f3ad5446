// strsr-infer: x4 super-resolution of one PNG/JPEG file with an `strsr-export` folder, the C++ counterpart of
// `strsr-upscale IN -o OUTDIR --runtime onnx --engine-dir DIR` (same pipeline, same grey and alpha handling).
//
//   strsr-infer photo.png -o photo_x4.png --engine-dir exported/ [--tile 1024] [--overlap 64] [--seed 0]
//
// Exit status: 0 done, 1 the image could not be read, upscaled or written, 2 bad arguments (an output that is the
// input included) or export folder.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <new>
#include <string>
#include <vector>

#include "colour.hpp"
#include "image_file.hpp"
#include "resample.hpp"
#include "strsr/strsr_runtime.hpp"

namespace {

const char* const kUsage =
    "usage: strsr-infer IN -o OUT --engine-dir DIR [--tile N] [--overlap N] [--seed N]\n"
    "                   [--rounding floor|nearest] [--backend auto|onnxruntime|tensorrt]\n"
    "                   [--device auto|cpu|cuda[:N]] [--threads N] [--cuda-graph] [--verify] [--timing]\n"
    "\n"
    "  IN                 PNG or JPEG image (8 or 16 bit; grey, RGB, with or without alpha)\n"
    "  -o, --output OUT   output file, .png or .jpg (16-bit sources give 16-bit PNG)\n"
    "  --engine-dir DIR   strsr-export output folder\n"
    "  --tile N           output tile size in pixels (default: the export's tile)\n"
    "  --overlap N        overlap between output tiles in pixels, below the tile (default: 64)\n"
    "  --seed N           sampling exports: seed of the posterior noise, a fresh generator per image\n"
    "                     (default: 0; the runtime's own draws, not PyTorch's: reproducible here, not equal to\n"
    "                     strsr-upscale's)\n"
    "  --rounding MODE    float to integer samples: floor (default, as strsr-upscale and the official scripts)\n"
    "                     or nearest\n"
    "  --threads N        ONNX Runtime CPU threads (default: its own choice)\n"
    "  --cuda-graph       TensorRT: replay a CUDA graph for repeated tile shapes\n"
    "  --verify           check every export file's sha256 against the manifest (sizes are always checked)\n"
    "  --timing           print the load and upscale times to stderr\n";

struct Args {
    std::string input, output, engine_dir;
    strsr::Options options;
    bool timing = false;
};

int usage_error(const std::string& message) {
    std::fprintf(stderr, "strsr-infer: %s\n%s", message.c_str(), kUsage);
    return 2;
}

bool parse_seed(const std::string& text, uint64_t& value) {
    if (text.empty() || text[0] < '0' || text[0] > '9') return false;  // strtoull would take "-1" as 2^64 - 1
    char* end = nullptr;
    errno = 0;
    const unsigned long long parsed = std::strtoull(text.c_str(), &end, 10);
    if (*end || errno == ERANGE) return false;
    value = uint64_t(parsed);
    return true;
}

bool parse_int(const std::string& text, int& value) {
    char* end = nullptr;
    const long parsed = std::strtol(text.c_str(), &end, 10);
    if (text.empty() || *end || parsed < 0 || parsed > (1 << 20)) return false;
    value = int(parsed);
    return true;
}

// Returns an exit status >= 0 to stop (help or error), -1 to go on.
int parse(int argc, char** argv, Args& args) {
    std::vector<std::string> positional;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        auto value = [&](std::string& out) {
            if (i + 1 >= argc) return false;
            out = argv[++i];
            return true;
        };
        std::string v;
        if (arg == "-h" || arg == "--help") {
            std::fputs(kUsage, stdout);
            return 0;
        } else if (arg == "-o" || arg == "--output") {
            if (!value(args.output)) return usage_error(arg + " needs a file name");
        } else if (arg == "--engine-dir") {
            if (!value(args.engine_dir)) return usage_error("--engine-dir needs a folder");
        } else if (arg == "--tile" || arg == "--overlap" || arg == "--threads") {
            int n = 0;
            if (!value(v) || !parse_int(v, n)) return usage_error(arg + " needs a non-negative integer");
            (arg == "--tile" ? args.options.tile : arg == "--overlap" ? args.options.overlap
                                                                      : args.options.intra_op_threads) = n;
        } else if (arg == "--seed") {
            if (!value(v) || !parse_seed(v, args.options.seed))
                return usage_error("--seed needs a non-negative integer below 2^64");
        } else if (arg == "--rounding") {
            if (!value(v)) return usage_error("--rounding needs a mode");
            if (v == "floor") args.options.rounding = STRSR_ROUNDING_FLOOR;
            else if (v == "nearest") args.options.rounding = STRSR_ROUNDING_NEAREST;
            else return usage_error("unknown rounding '" + v + "' (floor or nearest)");
        } else if (arg == "--backend") {
            if (!value(v)) return usage_error("--backend needs a name");
            if (v == "auto") args.options.backend = STRSR_BACKEND_AUTO;
            else if (v == "onnxruntime") args.options.backend = STRSR_BACKEND_ONNXRUNTIME;
            else if (v == "tensorrt") args.options.backend = STRSR_BACKEND_TENSORRT;
            else return usage_error("unknown backend '" + v + "'");
        } else if (arg == "--device") {
            if (!value(v)) return usage_error("--device needs a name");
            if (v == "auto") args.options.device = STRSR_DEVICE_AUTO;
            else if (v == "cpu") args.options.device = STRSR_DEVICE_CPU;
            else if (v == "cuda") args.options.device = STRSR_DEVICE_CUDA;
            else if (v.rfind("cuda:", 0) == 0 && parse_int(v.substr(5), args.options.device_index))
                args.options.device = STRSR_DEVICE_CUDA;
            else return usage_error("unknown device '" + v + "' (auto, cpu, cuda, cuda:N)");
        } else if (arg == "--cuda-graph") {
            args.options.cuda_graph = 1;
        } else if (arg == "--verify") {
            args.options.verify = 1;
        } else if (arg == "--timing") {
            args.timing = true;
        } else if (!arg.empty() && arg[0] == '-') {
            return usage_error("unknown option " + arg);
        } else {
            positional.push_back(arg);
        }
    }
    if (positional.size() != 1) return usage_error("give exactly one input image");
    if (args.output.empty()) return usage_error("-o OUT is required");
    if (args.engine_dir.empty()) return usage_error("--engine-dir is required");
    args.input = positional[0];
    return -1;
}

// Whether writing `output` would replace `input`: the same file by another spelling of its path (./, .., a
// symlink on the way, a symlink or hard link as the output), as strsr-upscale refuses an output over an input.
bool same_file(const std::string& input, const std::string& output) {
    std::error_code ec;
    if (std::filesystem::equivalent(input, output, ec)) return true;  // both exist: one inode
    const std::filesystem::path a = std::filesystem::weakly_canonical(input, ec);
    if (ec) return false;
    const std::filesystem::path b = std::filesystem::weakly_canonical(output, ec);
    return !ec && a == b;
}

double milliseconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

// The upscaled image in the source's kind: grey stays grey (mean of the three model channels, as strsr-upscale),
// alpha is bicubic-upsampled on its own (it is not an image the model knows) and re-attached.
strsr::ImageFile assemble(const strsr::ImageFile& source, const strsr::Planar& rgb, bool jpeg,
                          strsr_rounding rounding) {
    const bool grey = source.channels <= 2;
    const bool alpha = (source.channels == 2 || source.channels == 4) && !jpeg;
    if (jpeg && (source.channels == 2 || source.channels == 4))
        std::fprintf(stderr, "strsr-infer: JPEG has no alpha channel; alpha dropped\n");
    const strsr_pixel_format format = source.bit_depth == 16 && !jpeg ? STRSR_RGB16 : STRSR_RGB8;
    strsr::Planar out((grey ? 1 : 3) + (alpha ? 1 : 0), rgb.height, rgb.width);
    const size_t plane = rgb.plane();
    if (grey) {
        for (size_t i = 0; i < plane; ++i) out.data[i] = (rgb.data[i] + rgb.data[plane + i] + rgb.data[2 * plane + i]) / 3.0f;
    } else {
        std::copy(rgb.data.begin(), rgb.data.end(), out.data.begin());
    }
    if (alpha) {
        strsr::Planar lr_alpha(1, source.height, source.width);
        const float peak = source.bit_depth == 16 ? 65535.0f : 255.0f;
        const size_t channels = size_t(source.channels);
        for (size_t i = 0; i < lr_alpha.plane(); ++i) {
            const size_t at = i * channels + channels - 1;
            const float sample = source.bit_depth == 16 ? float(reinterpret_cast<const uint16_t*>(source.data.data())[at])
                                                        : float(source.data[at]);
            lr_alpha.data[i] = sample / peak;
        }
        const strsr::Planar up = strsr::upsample_x4(lr_alpha);
        std::copy(up.data.begin(), up.data.end(), out.data.begin() + std::ptrdiff_t(size_t(out.channels - 1) * plane));
    }
    strsr::ImageFile result;
    result.width = out.width;
    result.height = out.height;
    result.channels = out.channels;
    result.bit_depth = format == STRSR_RGB16 ? 16 : 8;
    result.data.resize(result.row_bytes() * size_t(result.height));
    strsr::planar_to_interleaved(out, format, result.data.data(), rounding);
    return result;
}


// The source upscaled x4 as the file to write. RGB sources whose depth the output keeps go through strsr_upscale,
// which writes the output samples straight into the file's buffer as rows finish (no float copy of the image);
// grey, alpha and 16-bit -> JPEG take the planar float result and assemble it.
strsr::ImageFile upscale(const strsr::Session& session, const strsr::ImageFile& source, bool jpeg,
                         strsr_rounding rounding) {
    const strsr_pixel_format format = source.bit_depth == 16 ? STRSR_RGB16 : STRSR_RGB8;
    if (source.channels == 3 && !(jpeg && source.bit_depth == 16)) {
        strsr::ImageFile result;
        result.width = source.width * STRSR_SCALE;
        result.height = source.height * STRSR_SCALE;
        result.channels = 3;
        result.bit_depth = source.bit_depth;
        result.data.resize(result.row_bytes() * size_t(result.height));
        strsr::check(strsr_upscale(session.get(), format, source.data.data(), source.data.size(), source.width,
                                   source.height, result.data.data(), result.data.size()));
        return result;
    }
    const strsr::Planar lr =
        strsr::interleaved_to_planar(source.data.data(), source.width, source.height, source.channels, format);
    strsr::Planar rgb(3, lr.height * STRSR_SCALE, lr.width * STRSR_SCALE);
    rgb.data = session.upscale_planar(lr.data, lr.width, lr.height);
    return assemble(source, rgb, jpeg, rounding);
}

}  // namespace

int main(int argc, char** argv) {
    Args args;
    const int stop = parse(argc, argv, args);
    if (stop >= 0) return stop;
    if (same_file(args.input, args.output)) {
        std::fprintf(stderr, "strsr-infer: %s: output would overwrite the input %s; choose another output file\n",
                     args.output.c_str(), args.input.c_str());
        return 2;
    }
    try {
        const auto load_start = std::chrono::steady_clock::now();
        const strsr::Session session(args.engine_dir, args.options);
        const double load_ms = milliseconds_since(load_start);
        try {
            const strsr::ImageFile source = strsr::read_image(args.input);
            std::string suffix = std::filesystem::path(args.output).extension().string();
            std::transform(suffix.begin(), suffix.end(), suffix.begin(), [](unsigned char c) { return char(std::tolower(c)); });
            const bool jpeg = suffix == ".jpg" || suffix == ".jpeg";
            const auto start = std::chrono::steady_clock::now();
            const strsr::ImageFile result = upscale(session, source, jpeg, args.options.rounding);
            const double upscale_ms = milliseconds_since(start);
            strsr::write_image(args.output, result);
            if (args.timing) {
                const strsr_info info = session.info();
                std::fprintf(stderr, "strsr-infer: load %.1f ms, upscale %.1f ms (%dx%d -> %dx%d, %s on %s)\n",
                             load_ms, upscale_ms, source.width, source.height, result.width, result.height,
                             info.backend, info.device);
            }
        } catch (const strsr::ImageFileError& e) {
            std::fprintf(stderr, "strsr-infer: %s\n", e.what());
            return 1;
        } catch (const strsr::RuntimeError& e) {
            std::fprintf(stderr, "strsr-infer: %s: failed (%s)\n", args.input.c_str(), e.what());
            return 1;
        } catch (const std::bad_alloc&) {
            std::fprintf(stderr, "strsr-infer: %s: out of memory (the input, its x4 output and one band of tiles "
                                 "must fit)\n", args.input.c_str());
            return 1;
        }
    } catch (const strsr::RuntimeError& e) {
        std::fprintf(stderr, "strsr-infer: %s\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "strsr-infer: %s\n", e.what());
        return 1;
    }
    std::fprintf(stderr, "strsr-infer: %s -> %s\n", args.input.c_str(), args.output.c_str());
    return 0;
}
