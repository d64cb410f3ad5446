#include "manifest.hpp"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "error.hpp"
#include "sha256.hpp"

namespace strsr {
namespace {

using nlohmann::json;

class Parser {
public:
    explicit Parser(std::string source) : source_(std::move(source)) {}

    [[noreturn]] void fail(const std::string& key, const std::string& problem) const {
        throw Error(STRSR_ERROR_MANIFEST, source_ + ": " + (key.empty() ? "" : "'" + key + "' ") + problem);
    }

    const json& field(const json& object, const std::string& parent, const std::string& name) const {
        const std::string key = parent.empty() ? name : parent + "." + name;
        const auto it = object.find(name);
        if (it == object.end()) fail(key, "is missing");
        return *it;
    }

    std::string string(const json& object, const std::string& parent, const std::string& name) const {
        const json& value = field(object, parent, name);
        if (!value.is_string()) fail(join(parent, name), "must be a string, got " + std::string(value.type_name()));
        return value.get<std::string>();
    }

    // A file inside the export folder: a plain relative path that cannot climb out of it (the rules of
    // strsr/manifest.py's `inside`; symlinks are resolved when the file is checked, in verified_file).
    std::string file(const json& object, const std::string& parent, const std::string& name) const {
        return file_name(field(object, parent, name), join(parent, name));
    }

    std::string file_name(const json& value, const std::string& key) const {
        if (!value.is_string()) fail(key, "must be a file name, got " + value.dump());
        const std::string name = value.get<std::string>();
        const std::filesystem::path path(name);
        if (name.empty() || path.is_absolute()) fail(key, "must be a relative file name");
        bool leaves = name.find('\\') != std::string::npos || path.begin()->string().find(':') != std::string::npos;
        for (const auto& part : path) leaves = leaves || part == "..";
        if (leaves) fail(key, "must not leave the export folder (" + name + ")");
        return name;
    }

    int positive_int(const json& object, const std::string& parent, const std::string& name) const {
        const json& value = field(object, parent, name);
        if (!value.is_number_integer() || value.get<int64_t>() < 1 || value.get<int64_t>() > (int64_t(1) << 30))
            fail(join(parent, name), "must be a positive integer, got " + value.dump());
        return value.get<int>();
    }

    const json& object(const json& parent_object, const std::string& parent, const std::string& name) const {
        const json& value = field(parent_object, parent, name);
        if (!value.is_object()) fail(join(parent, name), "must be an object, got " + std::string(value.type_name()));
        return value;
    }

    GraphInfo graph(const json& graphs, const std::string& stage) const {
        const std::string key = "graphs." + stage;
        const json& g = object(graphs, "graphs", stage);
        GraphInfo info;
        info.file = file(g, key, "file");
        if (g.contains("external_data")) {
            const json& extra = g.at("external_data");
            if (!extra.is_array()) fail(key + ".external_data", "must be a list of file names");
            for (const json& name : extra) info.external_data.push_back(file_name(name, key + ".external_data"));
        }
        for (const auto& [name, shape] : object(g, key, "inputs").items()) {
            const std::string input_key = key + ".inputs." + name;
            if (!shape.is_array() || shape.empty()) fail(input_key, "must be a non-empty list of dimensions");
            std::vector<Dim> dims;
            for (const json& d : shape) {
                if (d.is_number_integer() && d.get<int64_t>() >= 1)
                    dims.push_back({d.get<int64_t>(), ""});
                else if (d.is_string() && !d.get<std::string>().empty())
                    dims.push_back({-1, d.get<std::string>()});
                else
                    fail(input_key, "dimension " + d.dump() + " is neither a positive size nor an axis name");
            }
            info.inputs[name] = std::move(dims);
        }
        const json& outputs = field(g, key, "outputs");
        if (!outputs.is_array() || outputs.size() != 1 || !outputs[0].is_string())
            fail(key + ".outputs", "must list exactly one output name");
        info.outputs.push_back(outputs[0].get<std::string>());
        return info;
    }

    static std::string join(const std::string& parent, const std::string& name) {
        return parent.empty() ? name : parent + "." + name;
    }

private:
    std::string source_;
};

// The tensors the pipeline feeds each stage, with their ranks.
void require_input(const Parser& p, const GraphInfo& graph, const std::string& stage, const std::string& name,
                   size_t rank) {
    const auto it = graph.inputs.find(name);
    if (it == graph.inputs.end()) p.fail("graphs." + stage + ".inputs", "has no input '" + name + "'");
    if (it->second.size() != rank)
        p.fail("graphs." + stage + ".inputs." + name,
               "must have rank " + std::to_string(rank) + ", got " + std::to_string(it->second.size()));
}

// Every file the manifest names, as strsr/manifest.py's referenced_files describes it: {name, what}; the TensorRT
// engines only `with_engines`.
std::vector<std::pair<std::string, std::string>> referenced_files(const Manifest& m, bool with_engines) {
    std::vector<std::pair<std::string, std::string>> files;
    for (const char* stage : kStages) {
        const GraphInfo& graph = m.graphs.at(stage);
        files.emplace_back(graph.file, "graph '" + std::string(stage) + "'");
        for (const std::string& extra : graph.external_data)
            files.emplace_back(extra, "graph '" + std::string(stage) + "' external data");
    }
    if (!m.condition_file.empty()) files.emplace_back(m.condition_file, "conditioning file");
    if (m.tensorrt && with_engines)
        for (const auto& [stage, engine] : m.tensorrt->engines) files.emplace_back(engine, "TensorRT engine '" + stage + "'");
    return files;
}

// "files": {name: {"bytes": N, "sha256": hex}}; each named file needs a record with its size.
std::map<std::string, FileRecord> file_records(const Parser& p, const json& root, const Manifest& m) {
    const auto section = root.find("files");
    if (section == root.end() || !section->is_object())
        p.fail("", "no file records (made by an older strsr-export: re-export with --force)");
    std::map<std::string, FileRecord> records;
    for (const auto& [name, what] : referenced_files(m, true)) {
        const auto it = section->find(name);
        const bool sized = it != section->end() && it->is_object() && it->contains("bytes") &&
                           it->at("bytes").is_number_unsigned();
        if (!sized) p.fail("", what + " '" + name + "' has no size and hash record");
        FileRecord record;
        record.bytes = it->at("bytes").get<uint64_t>();
        if (it->contains("sha256") && it->at("sha256").is_string()) record.sha256 = it->at("sha256").get<std::string>();
        records[name] = record;
    }
    return records;
}

bool within(const std::filesystem::path& root, const std::filesystem::path& path) {
    return std::mismatch(root.begin(), root.end(), path.begin(), path.end()).first == root.end();
}

}  // namespace

Manifest parse_manifest(const std::string& text, const std::string& source) {
    const Parser p(source);
    json root;
    try {
        root = json::parse(text);
    } catch (const json::parse_error& e) {
        p.fail("", std::string("is not valid JSON (") + e.what() + ")");
    }
    if (!root.is_object()) p.fail("", "is not a JSON object");
    Manifest m;
    m.format = p.string(root, "", "format");
    if (m.format != kManifestFormat)
        p.fail("format", "is '" + m.format + "', not " + kManifestFormat + " (not a strsr export manifest)");
    m.preset = p.string(root, "", "preset");
    m.family = p.string(root, "", "family");
    m.precision = p.string(root, "", "precision");
    m.opset = p.positive_int(root, "", "opset");
    m.pixel_multiple = p.positive_int(root, "", "pixel_multiple");
    m.tile = p.positive_int(root, "", "tile");
    if (m.tile % m.pixel_multiple)
        p.fail("tile", std::to_string(m.tile) + " is not a multiple of pixel_multiple " +
                           std::to_string(m.pixel_multiple));
    const json& t1 = p.field(root, "", "t1");
    if (!t1.is_number()) p.fail("t1", "must be a number, got " + t1.dump());
    m.t1 = t1.get<double>();
    // "conditioning": {"mode", "file"} in newer exports; older ones have only "condition_file" (null tokens).
    if (root.contains("conditioning")) {
        const json& c = p.object(root, "", "conditioning");
        m.conditioning = p.string(c, "conditioning", "mode");
        if (m.conditioning != "none" && m.conditioning != "text" && m.conditioning != "vlm")
            p.fail("conditioning.mode", "is '" + m.conditioning + "', not none, text or vlm");
        if (m.conditioning != "vlm") m.condition_file = p.file(c, "conditioning", "file");
    } else {
        m.condition_file = p.file(root, "", "condition_file");
    }
    const json& graphs = p.object(root, "", "graphs");
    for (const char* stage : kStages) m.graphs[stage] = p.graph(graphs, stage);
    require_input(p, m.graphs["vae_encoder"], "vae_encoder", "image", 4);
    require_input(p, m.graphs["dit_onestep"], "dit_onestep", "state", 4);
    require_input(p, m.graphs["dit_onestep"], "dit_onestep", "condition", 3);
    require_input(p, m.graphs["vae_decoder"], "vae_decoder", "state", 4);
    // "latent": {"mode": "sample", "channels": C, "vae_scale": s} or {"mode": "mode"}; absent or null: the mode.
    if (root.contains("latent") && !root.at("latent").is_null()) {
        const json& latent = p.object(root, "", "latent");
        const std::string mode = p.string(latent, "latent", "mode");
        if (mode != "sample" && mode != "mode") p.fail("latent.mode", "is '" + mode + "', not sample or mode");
        if (mode == "sample") {
            m.latent.samples = true;
            m.latent.channels = p.positive_int(latent, "latent", "channels");
            m.latent.vae_scale = p.positive_int(latent, "latent", "vae_scale");
        }
    }
    const auto& encoder_inputs = m.graphs["vae_encoder"].inputs;
    if (m.latent.samples) {
        require_input(p, m.graphs["vae_encoder"], "vae_encoder", "noise", 4);
        const Dim& channels = encoder_inputs.at("noise")[1];
        if (channels.is_static() && channels.size != m.latent.channels)
            p.fail("graphs.vae_encoder.inputs.noise", "has " + std::to_string(channels.size) +
                                                          " channels, latent.channels says " +
                                                          std::to_string(m.latent.channels));
    } else if (encoder_inputs.count("noise")) {
        p.fail("graphs.vae_encoder.inputs", "has 'noise', but the latent mode is not sample");
    }
    if (encoder_inputs.size() != (m.latent.samples ? 2u : 1u))
        p.fail("graphs.vae_encoder.inputs", m.latent.samples ? "must be image and noise" : "must be image alone");
    if (root.contains("tensorrt")) {
        const json& trt = p.object(root, "", "tensorrt");
        TensorRtInfo info;
        info.version = p.string(trt, "tensorrt", "version");
        info.compute_capability = p.string(trt, "tensorrt", "compute_capability");
        const json& engines = p.object(trt, "tensorrt", "engines");
        // strsr-export writes {"file": ..., "onnx": ..., "profile": ...} per engine
        for (const char* stage : kStages)
            info.engines[stage] =
                p.file(p.object(engines, "tensorrt.engines", stage), "tensorrt.engines." + std::string(stage), "file");
        m.tensorrt = std::move(info);
    }
    m.files = file_records(p, root, m);
    m.text = text;
    return m;
}

std::string read_file(const std::filesystem::path& path) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))
        throw Error(STRSR_ERROR_IO, path.string() + ": is a folder, not a file");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(STRSR_ERROR_IO, path.string() + ": cannot open (missing or unreadable)");
    std::ostringstream buffer;
    buffer << in.rdbuf();
    if (in.bad()) throw Error(STRSR_ERROR_IO, path.string() + ": read error");
    return buffer.str();
}

Manifest read_manifest(const std::filesystem::path& dir, bool verify_hashes) {
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec))
        throw Error(STRSR_ERROR_IO, dir.string() + ": no such export folder (run strsr-export first)");
    const std::filesystem::path path = dir / "manifest.json";
    if (!std::filesystem::exists(path, ec))
        throw Error(STRSR_ERROR_IO, path.string() + ": no export manifest (run strsr-export first)");
    Manifest m = parse_manifest(read_file(path), path.string());
    // What every backend opens; TensorRT engines are checked by the TensorRT backend, which alone opens them.
    const std::vector<std::pair<std::string, std::string>> files = referenced_files(m, false);
    std::string missing;
    for (const auto& [name, what] : files)
        if (!std::filesystem::is_regular_file(dir / name, ec)) missing += (missing.empty() ? "" : ", ") + name;
    if (!missing.empty()) throw Error(STRSR_ERROR_IO, dir.string() + ": manifest lists missing files: " + missing);
    for (const auto& [name, what] : files) verified_file(dir, m, name, what, verify_hashes);
    return m;
}

std::filesystem::path verified_file(const std::filesystem::path& dir, const Manifest& manifest, const std::string& name,
                                    const std::string& what, bool verify_hashes) {
    const std::string where = (dir / "manifest.json").string();
    const auto record = manifest.files.find(name);
    if (record == manifest.files.end())
        throw Error(STRSR_ERROR_MANIFEST, where + ": " + what + " '" + name + "' has no size and hash record");
    const std::filesystem::path path = dir / name;
    std::error_code root_error, path_error;
    const std::filesystem::path root = std::filesystem::weakly_canonical(dir, root_error);
    const std::filesystem::path resolved = std::filesystem::weakly_canonical(path, path_error);
    if (root_error || path_error || !within(root, resolved))
        throw Error(STRSR_ERROR_MANIFEST, where + ": " + what + " '" + name + "' is a link that leaves the export folder");
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec))
        throw Error(STRSR_ERROR_IO, dir.string() + ": " + what + " " + name + " is missing");
    const uintmax_t size = std::filesystem::file_size(path, ec);
    if (ec) throw Error(STRSR_ERROR_IO, path.string() + ": cannot read its size (" + ec.message() + ")");
    if (size != record->second.bytes)
        throw Error(STRSR_ERROR_MANIFEST, path.string() + ": " + std::to_string(size) + " bytes, the manifest says " +
                                              std::to_string(record->second.bytes) +
                                              " (truncated or replaced; re-export)");
    if (verify_hashes && file_sha256(path) != record->second.sha256)
        throw Error(STRSR_ERROR_MANIFEST,
                    path.string() + ": sha256 differs from the manifest's (corrupt or replaced; re-export)");
    return path;
}

}  // namespace strsr
