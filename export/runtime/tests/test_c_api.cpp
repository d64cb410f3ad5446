// The C boundary without a model: every bad input returns a status and a message, never aborts; the message is
// per thread. Runs in every configuration, with or without backends.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "check.hpp"
#include "strsr/strsr_runtime.h"

namespace {

bool has(const char* message, const char* needle) { return std::strstr(message, needle) != nullptr; }

// A folder that passes manifest and condition checks; its graphs are not ONNX, so backends refuse them. Its files
// are recorded with their sizes (and no sha256, so `verify` refuses them).
std::filesystem::path fake_export(int condition_width) {
    const std::filesystem::path dir = std::filesystem::temp_directory_path() / "strsr_test_c_api";
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    for (const char* f : {"e.onnx", "d.onnx", "v.onnx"}) std::ofstream(dir / f) << "not an onnx graph";
    const std::string header = R"({"condition":{"dtype":"F32","shape":[1,2,)" + std::to_string(condition_width) +
                               R"(],"data_offsets":[0,)" + std::to_string(8 * condition_width) + "]}}";
    std::string file(8, '\0');
    file[0] = char(header.size());
    file += header + std::string(size_t(8 * condition_width), '\0');
    std::ofstream(dir / "condition.safetensors", std::ios::binary) << file;
    std::ofstream(dir / "manifest.json") << R"({"format": "strsr.export.v1", "preset": "tiny", "precision": "fp32",
      "opset": 20, "family": "flux2", "t1": 0.8, "pixel_multiple": 8, "tile": 128,
      "condition_file": "condition.safetensors", "graphs": {
      "vae_encoder": {"file": "e.onnx", "inputs": {"image": ["b", 3, "h", "w"]}, "outputs": ["state"]},
      "dit_onestep": {"file": "d.onnx", "inputs": {"state": ["b", 192, "h", "w"], "condition": ["b", "l", 64]},
                      "outputs": ["z0"]},
      "vae_decoder": {"file": "v.onnx", "inputs": {"state": ["b", 192, "h", "w"]}, "outputs": ["image"]}},
      "files": {"e.onnx": {"bytes": 17}, "d.onnx": {"bytes": 17}, "v.onnx": {"bytes": 17},
                "condition.safetensors": {"bytes": )" + std::to_string(file.size()) + "}}}";
    return dir;
}

}  // namespace

TEST(options_defaults) {
    strsr_options options;
    std::memset(&options, 0x5a, sizeof(options));
    strsr_options_init(&options);
    CHECK(options.backend == STRSR_BACKEND_AUTO && options.device == STRSR_DEVICE_AUTO);
    CHECK(options.tile == 0 && options.overlap == -1 && options.max_contexts == 0);
    CHECK(options.rounding == STRSR_ROUNDING_FLOOR && options.seed == 0);
    strsr_options_init(nullptr);  // a no-op
}

TEST(null_and_missing_arguments) {
    strsr_session* session = reinterpret_cast<strsr_session*>(0x1);
    CHECK_EQ(strsr_session_create(nullptr, nullptr, &session), STRSR_ERROR_INVALID_ARGUMENT);
    CHECK(session == nullptr);
    CHECK(has(strsr_last_error(), "engine_dir is NULL"));
    CHECK_EQ(strsr_session_create("/x", nullptr, nullptr), STRSR_ERROR_INVALID_ARGUMENT);
    CHECK_EQ(strsr_session_create("/nonexistent/strsr", nullptr, &session), STRSR_ERROR_IO);
    CHECK(has(strsr_last_error(), "/nonexistent/strsr: no such export folder"));
    uint8_t pixel[3] = {0, 0, 0};
    uint8_t out[48];
    CHECK_EQ(strsr_upscale(nullptr, STRSR_RGB8, pixel, 3, 1, 1, out, 48), STRSR_ERROR_INVALID_ARGUMENT);
    CHECK(has(strsr_last_error(), "session is NULL"));
    strsr_info info;
    CHECK_EQ(strsr_session_info(nullptr, &info), STRSR_ERROR_INVALID_ARGUMENT);
    CHECK(strsr_session_manifest(nullptr) == nullptr);
    strsr_session_destroy(nullptr);  // a no-op, like free(NULL)
}

TEST(bad_options_and_condition_are_refused_before_any_backend) {
    const std::filesystem::path dir = fake_export(64);
    strsr_session* session = nullptr;
    strsr_options options;
    strsr_options_init(&options);
    options.tile = 60;
    CHECK_EQ(strsr_session_create(dir.c_str(), &options, &session), STRSR_ERROR_INVALID_ARGUMENT);
    CHECK(has(strsr_last_error(), "tile size 60 must be a positive multiple of 8"));
    options.tile = 0;
    options.overlap = 128;  // not below the manifest's tile of 128
    CHECK_EQ(strsr_session_create(dir.c_str(), &options, &session), STRSR_ERROR_INVALID_ARGUMENT);
    CHECK(has(strsr_last_error(), "overlap 128 must be in [0, tile 128)"));
    options.overlap = -2;
    CHECK_EQ(strsr_session_create(dir.c_str(), &options, &session), STRSR_ERROR_INVALID_ARGUMENT);
    options.overlap = 6;  // any overlap below the tile: no multiple-of-4 rule
    options.rounding = strsr_rounding(5);
    CHECK_EQ(strsr_session_create(dir.c_str(), &options, &session), STRSR_ERROR_INVALID_ARGUMENT);
    CHECK(has(strsr_last_error(), "unknown rounding 5"));
    const std::filesystem::path narrow = fake_export(32);
    CHECK_EQ(strsr_session_create(narrow.c_str(), nullptr, &session), STRSR_ERROR_MANIFEST);
    CHECK(has(strsr_last_error(), "condition has shape [1, 2, 32]"));
    CHECK(session == nullptr);
    std::string manifest = [&] {
        std::ifstream in(dir / "manifest.json");
        return std::string(std::istreambuf_iterator<char>(in), {});
    }();
    manifest.replace(manifest.find("\"condition_file\": \"condition.safetensors\","), 42,
                     "\"conditioning\": {\"mode\": \"vlm\", \"prompt\": \"p\"},");
    std::ofstream(dir / "manifest.json") << manifest;
    CHECK_EQ(strsr_session_create(dir.c_str(), nullptr, &session), STRSR_ERROR_MANIFEST);
    CHECK(has(strsr_last_error(), "this export is VLM-conditioned"));
    std::filesystem::remove_all(dir);
}

// With ONNX Runtime: it cannot parse the fake graphs; without: the build says how to add it. Either way an error.
TEST(unloadable_graphs_are_a_backend_error) {
    const std::filesystem::path dir = fake_export(64);
    strsr_session* session = nullptr;
    CHECK_EQ(strsr_session_create(dir.c_str(), nullptr, &session), STRSR_ERROR_BACKEND);
    CHECK(has(strsr_last_error(), "ONNX Runtime"));
    strsr_options options;
    strsr_options_init(&options);
    options.backend = strsr_backend(42);
    CHECK_EQ(strsr_session_create(dir.c_str(), &options, &session), STRSR_ERROR_INVALID_ARGUMENT);
    CHECK(has(strsr_last_error(), "unknown backend 42"));
    std::filesystem::remove_all(dir);
}

// Sizes are checked before any backend opens a file; sha256 only with `verify`; no "files": an older export.
TEST(export_files_are_checked_against_their_records) {
    const std::filesystem::path dir = fake_export(64);
    strsr_session* session = nullptr;
    strsr_options options;
    strsr_options_init(&options);
    options.verify = 1;
    CHECK_EQ(strsr_session_create(dir.c_str(), &options, &session), STRSR_ERROR_MANIFEST);
    CHECK(has(strsr_last_error(), "e.onnx: sha256 differs from the manifest's (corrupt or replaced; re-export)"));
    std::ofstream(dir / "d.onnx", std::ios::app) << "!";
    CHECK_EQ(strsr_session_create(dir.c_str(), nullptr, &session), STRSR_ERROR_MANIFEST);
    CHECK(has(strsr_last_error(), "d.onnx: 18 bytes, the manifest says 17 (truncated or replaced; re-export)"));
    std::string manifest = [&] {
        std::ifstream in(dir / "manifest.json");
        return std::string(std::istreambuf_iterator<char>(in), {});
    }();
    manifest.replace(manifest.find("\"files\""), 7, "\"filez\"");
    std::ofstream(dir / "manifest.json") << manifest;
    CHECK_EQ(strsr_session_create(dir.c_str(), nullptr, &session), STRSR_ERROR_MANIFEST);
    CHECK(has(strsr_last_error(), "manifest.json: no file records (made by an older strsr-export: re-export with --force)"));
    CHECK(session == nullptr);
    std::filesystem::remove_all(dir);
}

// Any int in an enum or flag field is safe: an unknown one is an invalid argument named in the message, checked
// before the folder is even looked at (under UBSan an out-of-range enum load would abort the test).
TEST(out_of_range_options_are_invalid_arguments) {
    struct Case {
        void (*set)(strsr_options&);
        const char* message;
    };
    const Case cases[] = {
        {[](strsr_options& o) { o.backend = strsr_backend(-1); }, "unknown backend -1 (use STRSR_BACKEND_AUTO"},
        {[](strsr_options& o) { o.backend = strsr_backend(3); }, "unknown backend 3"},
        {[](strsr_options& o) { o.device = strsr_device(77); }, "unknown device 77 (use STRSR_DEVICE_AUTO"},
        {[](strsr_options& o) { o.device = strsr_device(-5); }, "unknown device -5"},
        {[](strsr_options& o) { o.rounding = strsr_rounding(-3); }, "unknown rounding -3 (use STRSR_ROUNDING_FLOOR"},
        {[](strsr_options& o) { o.rounding = strsr_rounding(INT32_MIN); }, "unknown rounding -2147483648"},
        {[](strsr_options& o) { o.device_index = -1; }, "options.device_index must be >= 0, got -1"},
        {[](strsr_options& o) { o.tile = -8; }, "options.tile must be >= 0, got -8"},
        {[](strsr_options& o) { o.intra_op_threads = -2; }, "options.intra_op_threads must be >= 0"},
        {[](strsr_options& o) { o.max_contexts = -1; }, "options.max_contexts must be >= 0"},
        {[](strsr_options& o) { o.overlap = -2; }, "options.overlap must be >= 0 (or -1: the default), got -2"},
        {[](strsr_options& o) { o.cuda_graph = 2; }, "options.cuda_graph must be 0 or 1, got 2"},
        {[](strsr_options& o) { o.verify = -1; }, "options.verify must be 0 or 1, got -1"},
    };
    for (const Case& c : cases) {
        strsr_options options;
        strsr_options_init(&options);
        c.set(options);
        strsr_session* session = nullptr;
        CHECK_EQ(strsr_session_create("/nonexistent/strsr", &options, &session), STRSR_ERROR_INVALID_ARGUMENT);
        if (!has(strsr_last_error(), c.message)) std::fprintf(stderr, "got '%s', want '%s'\n", strsr_last_error(), c.message);
        CHECK(has(strsr_last_error(), c.message));
        CHECK(session == nullptr);
    }
    CHECK(std::strcmp(strsr_status_name(strsr_status(-1)), "unknown status") == 0);
}

// The pixel format and the size are checked first, with or without a session: one documented size limit.
TEST(pixel_format_and_size_limit) {
    uint8_t pixel[3] = {0, 0, 0};
    uint8_t out[48];
    for (int format : {-5, 0, 3, 77, INT32_MAX}) {
        CHECK_EQ(strsr_upscale(nullptr, strsr_pixel_format(format), pixel, 3, 1, 1, out, 48),
                 STRSR_ERROR_INVALID_ARGUMENT);
        CHECK(has(strsr_last_error(), ("unknown pixel format " + std::to_string(format)).c_str()));
    }
    CHECK_EQ(strsr_upscale(nullptr, STRSR_RGB8, pixel, 3, 5000, 4000, out, 48), STRSR_ERROR_INVALID_ARGUMENT);
    CHECK(has(strsr_last_error(), "image size 5000x4000 is too large (over 16777216 pixels, STRSR_MAX_INPUT_PIXELS)"));
    CHECK_EQ(strsr_upscale(nullptr, STRSR_RGB8, pixel, 3, 1 << 24 | 1, 1, out, 48), STRSR_ERROR_INVALID_ARGUMENT);
    CHECK(has(strsr_last_error(), "is too large"));
    CHECK_EQ(strsr_upscale(nullptr, STRSR_RGB8, pixel, 3, 1 << 16, 1 << 16, out, 48), STRSR_ERROR_INVALID_ARGUMENT);
    CHECK(has(strsr_last_error(), "is too large"));
    CHECK_EQ(strsr_upscale(nullptr, STRSR_RGB8, pixel, 3, 4096, 4096, out, 48), STRSR_ERROR_INVALID_ARGUMENT);
    CHECK(has(strsr_last_error(), "session is NULL"));  // 4096 x 4096 is exactly the limit
    CHECK_EQ(strsr_upscale(nullptr, STRSR_RGB8, pixel, 3, 0, 4, out, 48), STRSR_ERROR_INVALID_ARGUMENT);
    CHECK(has(strsr_last_error(), "image size 0x4 must be at least 1x1"));
    float planes[3] = {0, 0, 0}, big[48];
    CHECK_EQ(strsr_upscale_planar(nullptr, planes, 3, 8192, 4096, big, 48), STRSR_ERROR_INVALID_ARGUMENT);
    CHECK(has(strsr_last_error(), "image size 8192x4096 is too large"));
}

TEST(last_error_is_per_thread) {
    strsr_session* session = nullptr;
    CHECK_EQ(strsr_session_create("/nonexistent/a", nullptr, &session), STRSR_ERROR_IO);
    std::string other;
    std::thread([&] {
        other = strsr_last_error();  // nothing failed on this thread yet
        strsr_session* s = nullptr;
        (void)strsr_session_create("/nonexistent/b", nullptr, &s);
    }).join();
    CHECK(other.empty());
    CHECK(has(strsr_last_error(), "/nonexistent/a"));
}

TEST(names_and_version) {
    CHECK(std::strcmp(strsr_status_name(STRSR_ERROR_MANIFEST), "manifest error") == 0);
    CHECK(std::strcmp(strsr_status_name(strsr_status(99)), "unknown status") == 0);
    CHECK(std::strlen(strsr_version()) > 0);
}

TEST_MAIN()
