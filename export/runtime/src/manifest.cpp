#include "manifest.hpp"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "error.hpp"

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

    // A file inside the export folder: a plain relative path that cannot climb out of it.
    std::string file(const json& object, const std::string& parent, const std::string& name) const {
        const std::string value = string(object, parent, name);
        const std::filesystem::path path(value);
        if (value.empty() || path.is_absolute()) fail(join(parent, name), "must be a relative file name");
        for (const auto& part : path)
            if (part == "..") fail(join(parent, name), "must not leave the export folder (" + value + ")");
        return value;
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

Manifest read_manifest(const std::filesystem::path& dir) {
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec))
        throw Error(STRSR_ERROR_IO, dir.string() + ": no such export folder (run strsr-export first)");
    const std::filesystem::path path = dir / "manifest.json";
    if (!std::filesystem::exists(path, ec))
        throw Error(STRSR_ERROR_IO, path.string() + ": no export manifest (run strsr-export first)");
    Manifest m = parse_manifest(read_file(path), path.string());
    std::vector<std::string> files;
    if (!m.condition_file.empty()) files.push_back(m.condition_file);
    for (const auto& [stage, graph] : m.graphs) files.push_back(graph.file);
    std::string missing;
    for (const std::string& f : files)
        if (!std::filesystem::is_regular_file(dir / f, ec)) missing += (missing.empty() ? "" : ", ") + f;
    if (!missing.empty()) throw Error(STRSR_ERROR_IO, dir.string() + ": manifest lists missing files: " + missing);
    return m;
}

}  // namespace strsr
