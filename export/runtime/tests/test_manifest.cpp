// Manifest and condition-file parsing: the real export layout parses; each malformation names its key.
#include <cstring>
#include <filesystem>
#include <fstream>

#include "check.hpp"
#include "error.hpp"
#include "manifest.hpp"
#include "safetensors.hpp"

namespace {

// The structure export/cli.py writes for the tiny preset.
const char* const kManifest = R"({
  "format": "strsr.export.v1", "preset": "tiny", "precision": "fp32", "opset": 20,
  "weights_sha256": "cb32", "family": "flux2", "t1": 0.8, "pixel_multiple": 8, "tile": 1024,
  "condition_file": "condition.safetensors",
  "graphs": {
    "vae_encoder": {"file": "vae_encoder.onnx", "inputs": {"image": ["batch", 3, "height", "width"]},
                    "outputs": ["state"]},
    "dit_onestep": {"file": "dit_onestep.onnx",
                    "inputs": {"state": ["batch", 192, "state_height", "state_width"],
                               "condition": ["batch", "condition_tokens", 64]},
                    "outputs": ["z0"]},
    "vae_decoder": {"file": "vae_decoder.onnx", "inputs": {"state": ["batch", 192, "state_height", "state_width"]},
                    "outputs": ["image"]}
  },
  "tools": {"strsr": "0.1.0"}
})";

std::string replaced(std::string text, const std::string& from, const std::string& to) {
    const size_t at = text.find(from);
    if (at == std::string::npos) throw std::logic_error("test bug: '" + from + "' not in the manifest");
    return text.replace(at, from.size(), to);
}

strsr::Manifest parse(const std::string& text) { return strsr::parse_manifest(text, "m.json"); }

// A safetensors file: 8-byte little-endian header length, JSON header, data.
std::string safetensors(const std::string& header, const std::string& data) {
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[size_t(i)] = char((header.size() >> (8 * i)) & 0xff);
    return out + header + data;
}

std::string floats(std::initializer_list<float> values) {
    std::string out(values.size() * 4, '\0');
    std::memcpy(out.data(), values.begin(), out.size());
    return out;
}

}  // namespace

TEST(real_manifest_parses) {
    const strsr::Manifest m = parse(kManifest);
    CHECK(m.preset == "tiny" && m.family == "flux2" && m.precision == "fp32");
    CHECK_EQ(m.pixel_multiple, 8);
    CHECK_EQ(m.tile, 1024);
    CHECK_NEAR(m.t1, 0.8, 1e-12);
    CHECK(m.graphs.at("dit_onestep").file == "dit_onestep.onnx");
    const std::vector<strsr::Dim>& cond = m.graphs.at("dit_onestep").inputs.at("condition");
    CHECK(cond.size() == 3 && !cond[0].is_static() && cond[1].name == "condition_tokens" && cond[2].size == 64);
    CHECK(m.graphs.at("vae_decoder").outputs.at(0) == "image");
    CHECK(!m.tensorrt.has_value());
    CHECK(m.text == kManifest);
}

TEST(malformed_manifests_name_the_problem) {
    using strsr::parse_manifest;
    const strsr_status M = STRSR_ERROR_MANIFEST;
    CHECK_ERROR(parse("{not json"), M, "m.json: is not valid JSON");
    CHECK_ERROR(parse("[1, 2]"), M, "is not a JSON object");
    CHECK_ERROR(parse(replaced(kManifest, "strsr.export.v1", "other.v9")), M, "'format' is 'other.v9'");
    CHECK_ERROR(parse(replaced(kManifest, "\"preset\": \"tiny\",", "")), M, "'preset' is missing");
    CHECK_ERROR(parse(replaced(kManifest, "\"tile\": 1024", "\"tile\": 1020")), M, "'tile' 1020 is not a multiple");
    CHECK_ERROR(parse(replaced(kManifest, "\"pixel_multiple\": 8", "\"pixel_multiple\": -8")), M,
                "'pixel_multiple' must be a positive integer");
    CHECK_ERROR(parse(replaced(kManifest, "\"t1\": 0.8", "\"t1\": \"0.8\"")), M, "'t1' must be a number");
    CHECK_ERROR(parse(replaced(kManifest, "\"dit_onestep\": {", "\"dit\": {")), M, "'graphs.dit_onestep' is missing");
    CHECK_ERROR(parse(replaced(kManifest, "\"file\": \"vae_encoder.onnx\"", "\"file\": \"../x.onnx\"")), M,
                "'graphs.vae_encoder.file' must not leave the export folder");
    CHECK_ERROR(parse(replaced(kManifest, "\"file\": \"vae_decoder.onnx\"", "\"file\": \"/abs.onnx\"")), M,
                "'graphs.vae_decoder.file' must be a relative file name");
    CHECK_ERROR(parse(replaced(kManifest, "\"condition_tokens\", 64]", "64]")), M,
                "'graphs.dit_onestep.inputs.condition' must have rank 3, got 2");
    CHECK_ERROR(parse(replaced(kManifest, "{\"image\": [", "{\"pixels\": [")), M,
                "'graphs.vae_encoder.inputs' has no input 'image'");
    CHECK_ERROR(parse(replaced(kManifest, "[\"batch\", 3,", "[\"batch\", 0,")), M, "dimension 0 is neither");
    CHECK_ERROR(parse(replaced(kManifest, "\"outputs\": [\"z0\"]", "\"outputs\": []")), M,
                "'graphs.dit_onestep.outputs' must list exactly one output name");
}

// Newer exports record how they are conditioned; older ones only name the null tokens' file.
TEST(conditioning_section) {
    const strsr::Manifest old_style = parse(kManifest);
    CHECK(old_style.conditioning == "none" && old_style.condition_file == "condition.safetensors");
    const std::string text_mode = replaced(kManifest, "\"condition_file\": \"condition.safetensors\",",
                                           "\"conditioning\": {\"mode\": \"text\", \"file\": \"text.safetensors\"},");
    const strsr::Manifest m = parse(text_mode);
    CHECK(m.conditioning == "text" && m.condition_file == "text.safetensors");
    const strsr::Manifest vlm = parse(replaced(kManifest, "\"condition_file\": \"condition.safetensors\",",
                                               "\"conditioning\": {\"mode\": \"vlm\", \"prompt\": \"p\"},"));
    CHECK(vlm.conditioning == "vlm" && vlm.condition_file.empty());
    CHECK_ERROR(parse(replaced(text_mode, "\"mode\": \"text\"", "\"mode\": \"clip\"")), STRSR_ERROR_MANIFEST,
                "'conditioning.mode' is 'clip', not none, text or vlm");
    CHECK_ERROR(parse(replaced(text_mode, ", \"file\": \"text.safetensors\"", "")), STRSR_ERROR_MANIFEST,
                "'conditioning.file' is missing");
}

// "latent": a sampling encoder takes "noise" beside "image"; absent, null or "mode": the image alone.
TEST(latent_section) {
    const strsr::Manifest old_style = parse(kManifest);
    CHECK(!old_style.latent.samples);
    CHECK(!parse(replaced(kManifest, "\"tile\": 1024,", "\"tile\": 1024, \"latent\": null,")).latent.samples);
    const std::string mode = replaced(kManifest, "\"tile\": 1024,",
                                      "\"tile\": 1024, \"latent\": {\"mode\": \"mode\", \"channels\": 48, \"vae_scale\": 4},");
    CHECK(!parse(mode).latent.samples);
    const std::string noise = "\"image\": [\"batch\", 3, \"height\", \"width\"], "
                              "\"noise\": [\"batch\", 48, \"latent_height\", \"latent_width\"]";
    const std::string sample = replaced(replaced(mode, "\"mode\": \"mode\"", "\"mode\": \"sample\""),
                                        "\"image\": [\"batch\", 3, \"height\", \"width\"]", noise);
    const strsr::Manifest m = parse(sample);
    CHECK(m.latent.samples && m.latent.channels == 48 && m.latent.vae_scale == 4);
    const strsr_status M = STRSR_ERROR_MANIFEST;
    CHECK_ERROR(parse(replaced(sample, "\"mode\": \"sample\"", "\"mode\": \"mean\"")), M,
                "'latent.mode' is 'mean', not sample or mode");
    CHECK_ERROR(parse(replaced(sample, ", \"channels\": 48", "")), M, "'latent.channels' is missing");
    CHECK_ERROR(parse(replaced(sample, "\"vae_scale\": 4", "\"vae_scale\": 0")), M,
                "'latent.vae_scale' must be a positive integer");
    CHECK_ERROR(parse(replaced(sample, "\"channels\": 48", "\"channels\": 16")), M,
                "'graphs.vae_encoder.inputs.noise' has 48 channels, latent.channels says 16");
    CHECK_ERROR(parse(replaced(sample, noise, "\"image\": [\"batch\", 3, \"height\", \"width\"]")), M,
                "'graphs.vae_encoder.inputs' has no input 'noise'");
    CHECK_ERROR(parse(replaced(mode, "\"image\": [\"batch\", 3, \"height\", \"width\"]", noise)), M,
                "has 'noise', but the latent mode is not sample");
    CHECK_ERROR(parse(replaced(kManifest, "\"tile\": 1024,", "\"tile\": 1024, \"latent\": \"sample\",")), M,
                "'latent' must be an object");
}

TEST(tensorrt_section) {
    const std::string engines =
        "\"tensorrt\": {\"version\": \"10.7.0\", \"compute_capability\": \"9.0\", \"engines\": "
        "{\"vae_encoder\": {\"file\": \"e.plan\"}, \"dit_onestep\": {\"file\": \"d.plan\"}, "
        "\"vae_decoder\": {\"file\": \"v.plan\"}}},";
    const strsr::Manifest m = parse(replaced(kManifest, "\"graphs\": {", engines + "\"graphs\": {"));
    CHECK(m.tensorrt.has_value() && m.tensorrt->version == "10.7.0" && m.tensorrt->engines.at("dit_onestep") == "d.plan");
    CHECK_ERROR(parse(replaced(kManifest, "\"graphs\": {", "\"tensorrt\": {\"version\": \"10\"}, \"graphs\": {")),
                STRSR_ERROR_MANIFEST, "'tensorrt.compute_capability' is missing");
}

TEST(read_manifest_checks_the_folder) {
    const std::filesystem::path dir = std::filesystem::temp_directory_path() / "strsr_test_manifest";
    std::filesystem::remove_all(dir);
    CHECK_ERROR(strsr::read_manifest(dir), STRSR_ERROR_IO, "no such export folder");
    std::filesystem::create_directories(dir);
    CHECK_ERROR(strsr::read_manifest(dir), STRSR_ERROR_IO, "manifest.json: no export manifest");
    std::ofstream(dir / "manifest.json") << kManifest;
    std::ofstream(dir / "vae_encoder.onnx") << "x";
    CHECK_ERROR(strsr::read_manifest(dir), STRSR_ERROR_IO,
                "manifest lists missing files: condition.safetensors, dit_onestep.onnx, vae_decoder.onnx");
    for (const char* f : {"condition.safetensors", "dit_onestep.onnx", "vae_decoder.onnx"}) std::ofstream(dir / f) << "x";
    CHECK_EQ(strsr::read_manifest(dir).tile, 1024);
    std::filesystem::remove_all(dir);
}

TEST(condition_safetensors_parses) {
    const std::string file = safetensors(
        R"({"__metadata__":{"k":"v"},"condition":{"dtype":"F32","shape":[1,2,2],"data_offsets":[0,16]}})",
        floats({1.0f, -2.0f, 0.5f, 3.25f}));
    const strsr::Tensor t = strsr::parse_safetensors(file, "condition", "c.safetensors");
    CHECK(t.shape == std::vector<int64_t>({1, 2, 2}));
    CHECK(t.data == std::vector<float>({1.0f, -2.0f, 0.5f, 3.25f}));
}

TEST(malformed_safetensors_are_errors) {
    const strsr_status M = STRSR_ERROR_MANIFEST;
    const std::string data = floats({1.0f, 2.0f});
    auto parse_st = [](const std::string& bytes) { return strsr::parse_safetensors(bytes, "condition", "c.st"); };
    CHECK_ERROR(parse_st("abc"), M, "c.st: too short");
    CHECK_ERROR(parse_st(std::string("\xff\xff\xff\xff\x00\x00\x00\x00{}", 10)), M, "header length");
    CHECK_ERROR(parse_st(safetensors("{oops", data)), M, "header is not valid JSON");
    CHECK_ERROR(parse_st(safetensors(R"({"other":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", data)), M,
                "has no tensor 'condition'");
    CHECK_ERROR(parse_st(safetensors(R"({"condition":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]}})", data)),
                M, "dtype BF16, expected F32");
    CHECK_ERROR(parse_st(safetensors(R"({"condition":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data)),
                M, "do not match its shape");
    CHECK_ERROR(parse_st(safetensors(R"({"condition":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", data)),
                M, "do not match its shape or the file size");
}

TEST_MAIN()
