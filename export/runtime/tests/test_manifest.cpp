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
  "tools": {"strsr": "0.1.0"},
  "files": {
    "vae_encoder.onnx": {"bytes": 1, "sha256": "3f79bb7b435b05321651daefd374cdc681dc06faa65e374e38337b88ca046dea"},
    "dit_onestep.onnx": {"bytes": 1, "sha256": "18ac3e7343f016890c510e93f935261169d9e3f565436429830faf0934f4f8e4"},
    "vae_decoder.onnx": {"bytes": 1, "sha256": "4c94485e0c21ae6c41ce1dfe7b6bfaceea5ab68e40a2476f50208e526f506080"},
    "condition.safetensors": {"bytes": 1,
                              "sha256": "2e7d2c03a9507ae265ecf5b5356885a53393a2029d241394997265a1a25aefc6"}}
})";

// The one-byte files whose sizes and sha256 kManifest records.
void write_export_files(const std::filesystem::path& dir) {
    const std::pair<const char*, const char*> files[] = {
        {"vae_encoder.onnx", "e"}, {"dit_onestep.onnx", "d"}, {"vae_decoder.onnx", "v"}, {"condition.safetensors", "c"}};
    for (const auto& [name, content] : files) std::ofstream(dir / name) << content;
}

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
    const std::string text_mode =
        replaced(replaced(kManifest, "\"condition_file\": \"condition.safetensors\",",
                          "\"conditioning\": {\"mode\": \"text\", \"file\": \"text.safetensors\"},"),
                 "\"condition.safetensors\": {\"bytes\"", "\"text.safetensors\": {\"bytes\"");
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
    const std::string records = "\"files\": {\"e.plan\": {\"bytes\": 9}, \"d.plan\": {\"bytes\": 9}, \"v.plan\": {\"bytes\": 9}, ";
    const std::string with_engines = replaced(replaced(kManifest, "\"graphs\": {", engines + "\"graphs\": {"),
                                              "\"files\": {", records);
    const strsr::Manifest m = parse(with_engines);
    CHECK_EQ(m.files.at("d.plan").bytes, 9u);
    CHECK_ERROR(parse(replaced(with_engines, "\"d.plan\": {\"bytes\": 9}, ", "")), STRSR_ERROR_MANIFEST,
                "m.json: TensorRT engine 'dit_onestep' 'd.plan' has no size and hash record");
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
    std::ofstream(dir / "vae_encoder.onnx") << "e";
    CHECK_ERROR(strsr::read_manifest(dir), STRSR_ERROR_IO,
                "manifest lists missing files: dit_onestep.onnx, vae_decoder.onnx, condition.safetensors");
    write_export_files(dir);
    CHECK_EQ(strsr::read_manifest(dir).tile, 1024);
    CHECK_EQ(strsr::read_manifest(dir, true).tile, 1024);
    std::filesystem::remove_all(dir);
}

// strsr/manifest.py's verify_files: every file the runtime opens has a size record, checked always; its sha256 is
// checked when asked; a manifest from before the records is refused.
TEST(file_records_are_required_and_checked) {
    const strsr_status M = STRSR_ERROR_MANIFEST;
    const std::string without = std::string(kManifest).substr(0, std::string(kManifest).find(",\n  \"files\"")) + "\n}";
    CHECK_ERROR(parse(without), M, "m.json: no file records (made by an older strsr-export: re-export with --force)");
    CHECK_ERROR(parse(replaced(kManifest, "\"files\": {", "\"files\": [], \"x\": {")), M, "no file records");
    CHECK_ERROR(parse(replaced(kManifest, "\"vae_decoder.onnx\": {\"bytes\": 1", "\"vae_decoder.onnx\": {\"size\": 1")), M,
                "m.json: graph 'vae_decoder' 'vae_decoder.onnx' has no size and hash record");
    CHECK_ERROR(parse(replaced(kManifest, "\"condition.safetensors\": {\"bytes\": 1", "\"condition.safetensors\": {\"bytes\": -1")),
                M, "conditioning file 'condition.safetensors' has no size and hash record");
    CHECK_ERROR(parse(replaced(kManifest, "\"dit_onestep.onnx\": {\"bytes\": 1", "\"dit_onestep.onnx\": {\"bytes\": \"1\"")),
                M, "graph 'dit_onestep' 'dit_onestep.onnx' has no size and hash record");

    const std::filesystem::path dir = std::filesystem::temp_directory_path() / "strsr_test_file_records";
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "manifest.json") << kManifest;
    write_export_files(dir);
    std::ofstream(dir / "dit_onestep.onnx") << "dd";  // truncated or replaced: the size differs
    CHECK_ERROR(strsr::read_manifest(dir), M, "dit_onestep.onnx: 2 bytes, the manifest says 1 (truncated or replaced; re-export)");
    std::ofstream(dir / "dit_onestep.onnx") << "x";  // the same size, other bytes: only the hash tells
    CHECK_EQ(strsr::read_manifest(dir).tile, 1024);
    CHECK_ERROR(strsr::read_manifest(dir, true), M,
                "dit_onestep.onnx: sha256 differs from the manifest's (corrupt or replaced; re-export)");
    std::filesystem::remove_all(dir);
}

// ONNX external data files are opened by ONNX Runtime beside the graph: named in the manifest, recorded and checked.
TEST(external_data_is_recorded_and_checked) {
    const std::string text = replaced(replaced(kManifest, "\"file\": \"dit_onestep.onnx\",",
                                               "\"file\": \"dit_onestep.onnx\", \"external_data\": [\"dit.data\"],"),
                                      "\"files\": {", "\"files\": {\"dit.data\": {\"bytes\": 3}, ");
    const strsr::Manifest m = parse(text);
    CHECK(m.graphs.at("dit_onestep").external_data == std::vector<std::string>({"dit.data"}));
    CHECK_ERROR(parse(replaced(text, "\"dit.data\": {\"bytes\": 3}, ", "")), STRSR_ERROR_MANIFEST,
                "graph 'dit_onestep' external data 'dit.data' has no size and hash record");
    CHECK_ERROR(parse(replaced(text, "[\"dit.data\"]", "[\"../dit.data\"]")), STRSR_ERROR_MANIFEST,
                "'graphs.dit_onestep.external_data' must not leave the export folder (../dit.data)");
    CHECK_ERROR(parse(replaced(text, "[\"dit.data\"]", "\"dit.data\"")), STRSR_ERROR_MANIFEST,
                "'graphs.dit_onestep.external_data' must be a list of file names");
    const std::filesystem::path dir = std::filesystem::temp_directory_path() / "strsr_test_external_data";
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "manifest.json") << text;
    write_export_files(dir);
    CHECK_ERROR(strsr::read_manifest(dir), STRSR_ERROR_IO, "manifest lists missing files: dit.data");
    std::ofstream(dir / "dit.data") << "abcd";
    CHECK_ERROR(strsr::read_manifest(dir), STRSR_ERROR_MANIFEST, "dit.data: 4 bytes, the manifest says 3");
    std::ofstream(dir / "dit.data") << "abc";
    CHECK(strsr::read_manifest(dir).graphs.at("dit_onestep").external_data.size() == 1);
    std::filesystem::remove_all(dir);
}

// A name may not climb out (absolute, .., a backslash or a drive) and a symlink inside may not lead out.
TEST(files_stay_inside_the_export_folder) {
    const strsr_status M = STRSR_ERROR_MANIFEST;
    CHECK_ERROR(parse(replaced(kManifest, "\"file\": \"vae_encoder.onnx\"", "\"file\": \"..\\\\x.onnx\"")), M,
                "'graphs.vae_encoder.file' must not leave the export folder");
    CHECK_ERROR(parse(replaced(kManifest, "\"file\": \"vae_encoder.onnx\"", "\"file\": \"C:x.onnx\"")), M,
                "'graphs.vae_encoder.file' must not leave the export folder");
    CHECK_ERROR(parse(replaced(kManifest, "\"file\": \"vae_encoder.onnx\"", "\"file\": 123")), M,
                "'graphs.vae_encoder.file' must be a file name, got 123");
    CHECK_ERROR(parse(replaced(kManifest, "\"condition_file\": \"condition.safetensors\"", "\"condition_file\": \"a/../../c\"")),
                M, "'condition_file' must not leave the export folder");
    const std::filesystem::path root = std::filesystem::temp_directory_path() / "strsr_test_links";
    const std::filesystem::path dir = root / "export";
    std::filesystem::remove_all(root);
    std::filesystem::create_directories(dir / "sub");
    std::ofstream(dir / "manifest.json") << kManifest;
    write_export_files(dir);
    std::ofstream(root / "outside.onnx") << "d";  // the right size and even the right hash, but not in the folder
    std::filesystem::remove(dir / "dit_onestep.onnx");
    std::filesystem::create_symlink("../outside.onnx", dir / "dit_onestep.onnx");
    CHECK_ERROR(strsr::read_manifest(dir), M,
                "manifest.json: graph 'dit_onestep' 'dit_onestep.onnx' is a link that leaves the export folder");
    std::filesystem::remove(dir / "dit_onestep.onnx");
    std::filesystem::rename(root / "outside.onnx", dir / "sub" / "inside.onnx");
    std::filesystem::create_symlink("sub/inside.onnx", dir / "dit_onestep.onnx");  // a link within the folder is fine
    CHECK_EQ(strsr::read_manifest(dir, true).tile, 1024);
    std::filesystem::remove_all(root);
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
    // Shapes whose element count or byte count wraps around 2^64 are errors, never 0 elements.
    CHECK_ERROR(parse_st(safetensors(
                    R"({"condition":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", "")),
                M, "shape [4294967296,4294967296] has more elements than 2^64");
    CHECK_ERROR(parse_st(safetensors(
                    R"({"condition":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}})", "")),
                M, "is too large (over 2^64 bytes)");
    CHECK_ERROR(parse_st(safetensors(
                    R"({"condition":{"dtype":"F32","shape":[65536,65536,65536],"data_offsets":[0,8]}})", data)),
                M, "do not match its shape");
    CHECK_ERROR(parse_st(safetensors(R"({"condition":{"dtype":"F32","shape":[-1,2],"data_offsets":[0,8]}})", data)),
                M, "bad shape [-1,2]");
    const strsr::Tensor empty =
        parse_st(safetensors(R"({"condition":{"dtype":"F32","shape":[0,8],"data_offsets":[0,0]}})", ""));
    CHECK(empty.data.empty() && empty.shape == std::vector<int64_t>({0, 8}));
}

TEST_MAIN()
