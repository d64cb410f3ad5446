// The ONNX Runtime backend on the tiny preset's export, against the Python ONNX path's outputs (make_reference.sh):
// equal to the last 8-bit level (same graphs, same inputs bit for bit, same floor rounding), identical results from
// 4 concurrent threads on one session, errors on bad input.
// Usage: test_onnxruntime DATA_DIR
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "check.hpp"
#include "image_file.hpp"
#include "strsr/strsr_runtime.hpp"

namespace {

std::filesystem::path data_dir;

std::string read_text(const std::filesystem::path& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

strsr::Options tiled() {
    strsr::Options o;
    o.tile = 128;
    o.overlap = 32;
    return o;
}

int max_abs_diff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
    if (a.size() != b.size()) return 256;
    int worst = 0;
    for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(int(a[i]) - int(b[i])));
    return worst;
}

std::vector<uint8_t> upscale_file(const strsr::Session& session, const std::string& name) {
    const strsr::ImageFile in = strsr::read_image((data_dir / "inputs" / name).string());
    return session.upscale(in.data, in.width, in.height);
}

}  // namespace

TEST(matches_python_onnx_path_tiled) {
    const strsr::Session session((data_dir / "export").string(), tiled());
    const std::vector<uint8_t> got = upscale_file(session, "chelsea.png");
    const strsr::ImageFile want = strsr::read_image((data_dir / "reference/tiled/chelsea.png").string());
    const int diff = max_abs_diff(got, want.data);
    std::printf("tiled (12 tiles) max abs pixel difference vs Python: %d\n", diff);
    CHECK_EQ(diff, 0);
}

TEST(matches_python_onnx_path_padded) {
    const strsr::Session session((data_dir / "export").string());
    const std::vector<uint8_t> got = upscale_file(session, "odd.png");
    const strsr::ImageFile want = strsr::read_image((data_dir / "reference/default/odd.png").string());
    CHECK_EQ(want.width, 244);
    const int diff = max_abs_diff(got, want.data);
    std::printf("padded (61x45 -> 244x180 -> 256x192) max abs pixel difference vs Python: %d\n", diff);
    CHECK_EQ(diff, 0);
}

// RGB16 in and out: the same image at 16 bits gives the 8-bit result within rounding.
TEST(rgb16_agrees_with_rgb8) {
    const strsr::Session session((data_dir / "export").string());
    const strsr::ImageFile in = strsr::read_image((data_dir / "inputs/odd.png").string());
    std::vector<uint16_t> wide(in.data.begin(), in.data.end());
    for (uint16_t& v : wide) v = uint16_t(v * 257);
    const std::vector<uint16_t> out16 = session.upscale(wide, in.width, in.height);
    const std::vector<uint8_t> out8 = session.upscale(in.data, in.width, in.height);
    int worst = 0;
    for (size_t i = 0; i < out8.size(); ++i) worst = std::max(worst, std::abs(int(out16[i]) - 257 * int(out8[i])));
    CHECK(worst <= 257);
}

TEST(four_threads_on_one_session_give_identical_outputs) {
    const strsr::Session session((data_dir / "export").string(), tiled());
    const strsr::ImageFile in = strsr::read_image((data_dir / "inputs/chelsea.png").string());
    const std::vector<uint8_t> serial = session.upscale(in.data, in.width, in.height);
    std::vector<std::vector<uint8_t>> results(8);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            for (int k = 0; k < 2; ++k) results[size_t(2 * t + k)] = session.upscale(in.data, in.width, in.height);
        });
    for (std::thread& t : threads) t.join();
    for (const std::vector<uint8_t>& r : results) CHECK(r == serial);
}

TEST(bad_buffers_return_errors_and_the_session_survives) {
    const strsr::Session session((data_dir / "export").string());
    strsr_session* s = session.get();
    std::vector<uint8_t> in(4 * 4 * 3, 128), out(16 * 16 * 3);
    auto has = [](const char* needle) { return std::string(strsr_last_error()).find(needle) != std::string::npos; };
    CHECK_EQ(strsr_upscale(s, STRSR_RGB8, in.data(), in.size() - 1, 4, 4, out.data(), out.size()),
             STRSR_ERROR_INVALID_ARGUMENT);
    CHECK(has("input buffer holds 47 bytes, expected 48"));
    CHECK_EQ(strsr_upscale(s, STRSR_RGB8, in.data(), in.size(), 4, 4, out.data(), out.size() + 3),
             STRSR_ERROR_INVALID_ARGUMENT);
    CHECK(has("output buffer holds 771 bytes, expected 768"));
    CHECK_EQ(strsr_upscale(s, STRSR_RGB16, in.data(), in.size(), 4, 4, out.data(), out.size()),
             STRSR_ERROR_INVALID_ARGUMENT);
    CHECK_EQ(strsr_upscale(s, STRSR_RGB8, in.data(), in.size(), 0, 4, out.data(), out.size()),
             STRSR_ERROR_INVALID_ARGUMENT);
    CHECK(has("image size 0x4"));
    CHECK_EQ(strsr_upscale(s, STRSR_RGB8, in.data(), in.size(), -4, -4, out.data(), out.size()),
             STRSR_ERROR_INVALID_ARGUMENT);
    CHECK_EQ(strsr_upscale(s, STRSR_RGB8, in.data(), in.size(), 1 << 20, 1, out.data(), out.size()),
             STRSR_ERROR_INVALID_ARGUMENT);
    CHECK_EQ(strsr_upscale(s, STRSR_RGB8, nullptr, in.size(), 4, 4, out.data(), out.size()),
             STRSR_ERROR_INVALID_ARGUMENT);
    CHECK_EQ(strsr_upscale(s, strsr_pixel_format(3), in.data(), in.size(), 4, 4, out.data(), out.size()),
             STRSR_ERROR_INVALID_ARGUMENT);
    CHECK(has("unknown pixel format 3"));
    CHECK_EQ(strsr_upscale(s, strsr_pixel_format(-5), in.data(), in.size(), 4, 4, out.data(), out.size()),
             STRSR_ERROR_INVALID_ARGUMENT);  // was undefined behaviour (UBSan aborted)
    CHECK(has("unknown pixel format -5"));
    std::vector<float> planes(3 * 4 * 4, 0.5f), big(3 * 16 * 16);
    CHECK_EQ(strsr_upscale_planar(s, planes.data(), planes.size(), 4, 3, big.data(), big.size()),
             STRSR_ERROR_INVALID_ARGUMENT);
    // NaN and infinities are refused, as strsr.inference.pipeline refuses them (they would spread through whole tiles).
    for (float bad : {std::nanf(""), INFINITY, -INFINITY}) {
        std::vector<float> poisoned = planes;
        poisoned[17] = bad;
        CHECK_EQ(strsr_upscale_planar(s, poisoned.data(), poisoned.size(), 4, 4, big.data(), big.size()),
                 STRSR_ERROR_INVALID_ARGUMENT);
        CHECK(has("the LR image has NaN or infinite values"));
    }
    // A smallest image still works after all that.
    std::vector<uint8_t> one = {10, 200, 30}, sixteen(16 * 3);
    CHECK_EQ(strsr_upscale(s, STRSR_RGB8, one.data(), 3, 1, 1, sixteen.data(), sixteen.size()), STRSR_OK);
    CHECK_EQ(strsr_upscale_planar(s, planes.data(), planes.size(), 4, 4, big.data(), big.size()), STRSR_OK);
}

TEST(info_and_manifest) {
    const strsr::Session session((data_dir / "export").string(), tiled());
    const strsr_info info = session.info();
    CHECK(std::string(info.preset) == "tiny" && std::string(info.backend) == "onnxruntime");
    CHECK(std::string(info.device) == "cpu" && std::string(info.family) == "flux2");
    CHECK_EQ(info.tile, 128);
    CHECK_EQ(info.overlap, 32);
    CHECK_EQ(info.pixel_multiple, 8);
    CHECK(session.manifest_json() == read_text(data_dir / "export/manifest.json"));
}

// A manifest that disagrees with its graphs is refused at load, naming the graph, tensor and shapes.
TEST(manifest_mismatches_are_refused) {
    const std::filesystem::path copy = std::filesystem::temp_directory_path() / "strsr_test_mismatch";
    auto variant = [&](const std::string& from, const std::string& to) {
        std::filesystem::remove_all(copy);
        std::filesystem::copy(data_dir / "export", copy);
        std::string text = read_text(copy / "manifest.json");
        const size_t at = text.find(from);
        if (at != std::string::npos) text.replace(at, from.size(), to);
        std::ofstream(copy / "manifest.json") << text;
        strsr_session* s = nullptr;
        const strsr_status status = strsr_session_create(copy.c_str(), nullptr, &s);
        strsr_session_destroy(s);
        return std::make_pair(status, std::string(strsr_last_error()));
    };
    auto [status, message] = variant("192,", "191,");
    CHECK_EQ(status, STRSR_ERROR_MANIFEST);
    CHECK(message.find("dit_onestep.onnx: input 'state' has shape [?, 192, ?, ?] in the graph but "
                       "[batch, 191, state_height, state_width] in the manifest") != std::string::npos);
    std::tie(status, message) = variant("\"z0\"", "\"z1\"");
    CHECK_EQ(status, STRSR_ERROR_MANIFEST);
    CHECK(message.find("graph output is 'z0', the manifest says 'z1'") != std::string::npos);
    std::tie(status, message) = variant("\"files\":", "\"old_files\":");
    CHECK_EQ(status, STRSR_ERROR_MANIFEST);
    CHECK(message.find("manifest.json: no file records (made by an older strsr-export: re-export with --force)") !=
          std::string::npos);
    strsr_session* s = nullptr;
    std::filesystem::copy_file(data_dir / "export/manifest.json", copy / "manifest.json",
                               std::filesystem::copy_options::overwrite_existing);
    std::filesystem::remove(copy / "vae_decoder.onnx");
    CHECK_EQ(strsr_session_create(copy.c_str(), nullptr, &s), STRSR_ERROR_IO);
    CHECK(std::string(strsr_last_error()).find("manifest lists missing files: vae_decoder.onnx") != std::string::npos);
    std::ofstream(copy / "vae_decoder.onnx") << "truncated";  // refused by its size before ONNX Runtime reads it
    CHECK_EQ(strsr_session_create(copy.c_str(), nullptr, &s), STRSR_ERROR_MANIFEST);
    CHECK(std::string(strsr_last_error()).find("vae_decoder.onnx: 9 bytes, the manifest says") != std::string::npos);
    CHECK(s == nullptr);
    std::filesystem::remove_all(copy);
}

// strsr_options.verify: the sha256 of every file is checked at load; a same-size corruption is found only then.
TEST(verify_checks_every_file_hash) {
    const std::filesystem::path copy = std::filesystem::temp_directory_path() / "strsr_test_verify";
    std::filesystem::remove_all(copy);
    std::filesystem::copy(data_dir / "export", copy);
    strsr::Options options;
    options.verify = 1;
    CHECK(strsr::Session(copy.string(), options).info().tile > 0);
    {
        std::fstream graph(copy / "vae_decoder.onnx", std::ios::in | std::ios::out | std::ios::binary);
        graph.seekg(-1, std::ios::end);
        const char last = char(graph.get());
        graph.seekp(-1, std::ios::end);
        graph.put(char(last ^ 0x55));
    }
    strsr_session* s = nullptr;
    CHECK_EQ(strsr_session_create(copy.c_str(), &options, &s), STRSR_ERROR_MANIFEST);
    CHECK(std::string(strsr_last_error()).find("vae_decoder.onnx: sha256 differs from the manifest's") !=
          std::string::npos);
    CHECK(s == nullptr);
    std::filesystem::remove_all(copy);
}

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: test_onnxruntime DATA_DIR (made by make_reference.sh)\n");
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
