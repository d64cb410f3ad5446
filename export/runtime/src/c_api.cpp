// The C boundary: every entry point catches everything, maps it to a status and a thread-local message. Every
// argument is validated here, enums included (they have a fixed underlying type, so any int32_t is a value of the
// type and reaches these checks without undefined behaviour).
#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <new>
#include <string>

#include "colour.hpp"
#include "error.hpp"
#include "pipeline.hpp"
#include "resample.hpp"
#include "strsr/strsr_runtime.h"

struct strsr_session {
    strsr::Upscaler upscaler;
    std::string device;
    strsr_rounding rounding;

    strsr_session(const char* dir, const strsr_options& options) : upscaler(dir, options), rounding(options.rounding) {
        device = upscaler.backend().device();
    }
};

namespace {

thread_local std::string last_error;

template <typename F>
strsr_status guarded(F&& body) noexcept {
    try {
        body();
        return STRSR_OK;
    } catch (const strsr::Error& e) {
        last_error = e.what();
        return e.status();
    } catch (const std::bad_alloc&) {
        last_error = "out of memory";
        return STRSR_ERROR_OUT_OF_MEMORY;
    } catch (const std::exception& e) {
        last_error = std::string("internal error: ") + e.what();
        return STRSR_ERROR_INTERNAL;
    } catch (...) {
        last_error = "internal error: unknown exception";
        return STRSR_ERROR_INTERNAL;
    }
}

[[noreturn]] void invalid(const std::string& message) { throw strsr::Error(STRSR_ERROR_INVALID_ARGUMENT, message); }

// The one size limit of the API and of strsr-infer's readers, STRSR_MAX_INPUT_PIXELS; it also keeps 4x sizes and
// indices far from int overflow (a side is at most 2^24, its 4x 2^26).
void check_size(int width, int height) {
    const std::string size = std::to_string(width) + "x" + std::to_string(height);
    if (width < 1 || height < 1) invalid("image size " + size + " must be at least 1x1");
    if (int64_t(width) * int64_t(height) > STRSR_MAX_INPUT_PIXELS)
        invalid("image size " + size + " is too large (over " + std::to_string(STRSR_MAX_INPUT_PIXELS) +
                " pixels, STRSR_MAX_INPUT_PIXELS)");
}

void check_format(strsr_pixel_format format) {
    if (format != STRSR_RGB8 && format != STRSR_RGB16)
        invalid("unknown pixel format " + std::to_string(int(format)) + " (use STRSR_RGB8 or STRSR_RGB16)");
}

bool one_of(int32_t value, std::initializer_list<int32_t> allowed) {
    return std::find(allowed.begin(), allowed.end(), value) != allowed.end();
}

// Every enum and flag of strsr_options; tile and overlap against the manifest are the Upscaler's.
void check_options(const strsr_options& o) {
    if (!one_of(o.backend, {STRSR_BACKEND_AUTO, STRSR_BACKEND_ONNXRUNTIME, STRSR_BACKEND_TENSORRT}))
        invalid("unknown backend " + std::to_string(int(o.backend)) +
                " (use STRSR_BACKEND_AUTO, STRSR_BACKEND_ONNXRUNTIME or STRSR_BACKEND_TENSORRT)");
    if (!one_of(o.device, {STRSR_DEVICE_AUTO, STRSR_DEVICE_CPU, STRSR_DEVICE_CUDA}))
        invalid("unknown device " + std::to_string(int(o.device)) +
                " (use STRSR_DEVICE_AUTO, STRSR_DEVICE_CPU or STRSR_DEVICE_CUDA)");
    if (!one_of(o.rounding, {STRSR_ROUNDING_FLOOR, STRSR_ROUNDING_NEAREST}))
        invalid("unknown rounding " + std::to_string(int(o.rounding)) +
                " (use STRSR_ROUNDING_FLOOR or STRSR_ROUNDING_NEAREST)");
    const std::pair<const char*, int> counts[] = {{"device_index", o.device_index}, {"tile", o.tile},
                                                  {"intra_op_threads", o.intra_op_threads},
                                                  {"max_contexts", o.max_contexts}};
    for (const auto& [name, value] : counts)
        if (value < 0) invalid(std::string("options.") + name + " must be >= 0, got " + std::to_string(value));
    if (o.overlap < -1) invalid("options.overlap must be >= 0 (or -1: the default), got " + std::to_string(o.overlap));
    const std::pair<const char*, int> flags[] = {{"cuda_graph", o.cuda_graph}, {"verify", o.verify}};
    for (const auto& [name, value] : flags)
        if (value != 0 && value != 1)
            invalid(std::string("options.") + name + " must be 0 or 1, got " + std::to_string(value));
}

void check_count(const char* what, size_t got, size_t want, const char* unit) {
    if (got != want)
        invalid(std::string(what) + " holds " + std::to_string(got) + " " + unit + ", expected " +
                std::to_string(want));
}

}  // namespace

extern "C" {

void strsr_options_init(strsr_options* options) {
    if (!options) return;
    *options = strsr_options{};
    options->backend = STRSR_BACKEND_AUTO;
    options->device = STRSR_DEVICE_AUTO;
    options->overlap = -1;
    options->rounding = STRSR_ROUNDING_FLOOR;
    options->seed = 0;
    options->verify = 0;
}

strsr_status strsr_session_create(const char* engine_dir, const strsr_options* options, strsr_session** session) {
    return guarded([&] {
        if (!session) invalid("session out-pointer is NULL");
        *session = nullptr;
        if (!engine_dir || !*engine_dir) invalid("engine_dir is NULL or empty");
        strsr_options defaults;
        strsr_options_init(&defaults);
        const strsr_options& chosen = options ? *options : defaults;
        check_options(chosen);
        *session = new strsr_session(engine_dir, chosen);
    });
}

void strsr_session_destroy(strsr_session* session) { delete session; }

strsr_status strsr_upscale(strsr_session* session, strsr_pixel_format format, const void* input,
                           size_t input_bytes, int width, int height, void* output, size_t output_bytes) {
    return guarded([&] {
        check_format(format);
        check_size(width, height);
        if (!session) invalid("session is NULL");
        if (!input || !output) invalid("input or output buffer is NULL");
        const size_t bytes = size_t(width) * size_t(height) * 3 * strsr::bytes_per_sample(format);
        check_count("input buffer", input_bytes, bytes, "bytes");
        check_count("output buffer", output_bytes, bytes * strsr::kScale * strsr::kScale, "bytes");
        const strsr::Planar lr = strsr::interleaved_to_planar(input, width, height, 3, format);
        // each finished block of rows straight into its place in the caller's buffer (rows are contiguous there)
        const size_t row_bytes = size_t(width) * strsr::kScale * 3 * strsr::bytes_per_sample(format);
        session->upscaler.upscale(lr, [&](int top, const strsr::Planar& rows) {
            strsr::planar_to_interleaved(rows, format, static_cast<uint8_t*>(output) + size_t(top) * row_bytes,
                                         session->rounding);
        });
    });
}

strsr_status strsr_upscale_planar(strsr_session* session, const float* input, size_t input_count, int width,
                                  int height, float* output, size_t output_count) {
    return guarded([&] {
        check_size(width, height);
        if (!session) invalid("session is NULL");
        if (!input || !output) invalid("input or output buffer is NULL");
        const size_t count = size_t(width) * size_t(height) * 3;
        check_count("input buffer", input_count, count, "floats");
        check_count("output buffer", output_count, count * strsr::kScale * strsr::kScale, "floats");
        strsr::Planar lr(3, height, width);
        lr.data.assign(input, input + count);
        const size_t plane = count / 3 * strsr::kScale * strsr::kScale;  // 4h x 4w
        session->upscaler.upscale(lr, [&](int top, const strsr::Planar& rows) {
            for (size_t c = 0; c < 3; ++c)
                std::copy_n(rows.data.data() + c * rows.plane(), rows.plane(),
                            output + c * plane + size_t(top) * size_t(rows.width));
        });
    });
}

strsr_status strsr_session_info(const strsr_session* session, strsr_info* info) {
    return guarded([&] {
        if (!session || !info) invalid("session or info is NULL");
        const strsr::Manifest& m = session->upscaler.manifest();
        info->preset = m.preset.c_str();
        info->family = m.family.c_str();
        info->precision = m.precision.c_str();
        info->backend = session->upscaler.backend().name();
        info->device = session->device.c_str();
        info->pixel_multiple = m.pixel_multiple;
        info->tile = session->upscaler.tile();
        info->overlap = session->upscaler.overlap();
        info->t1 = m.t1;
    });
}

const char* strsr_session_manifest(const strsr_session* session) {
    return session ? session->upscaler.manifest().text.c_str() : nullptr;
}

const char* strsr_last_error(void) { return last_error.c_str(); }

const char* strsr_status_name(strsr_status status) {
    switch (status) {
        case STRSR_OK: return "ok";
        case STRSR_ERROR_INVALID_ARGUMENT: return "invalid argument";
        case STRSR_ERROR_IO: return "I/O error";
        case STRSR_ERROR_MANIFEST: return "manifest error";
        case STRSR_ERROR_BACKEND: return "backend error";
        case STRSR_ERROR_OUT_OF_MEMORY: return "out of memory";
        case STRSR_ERROR_INTERNAL: return "internal error";
        case STRSR_STATUS_MAX_ENUM: break;
    }
    return "unknown status";
}

const char* strsr_version(void) { return STRSR_VERSION; }

}  // extern "C"
