// manifest.json of an `strsr-export` folder (format strsr.export.v1, written by strsr/manifest.py and
// export/cli.py), parsed and validated up front so a bad folder fails with the key at fault named.
//
// The folder may come from someone else, so it is hostile input, read by strsr/manifest.py's rules: every file name
// stays inside the folder (no absolute path, backslash, drive, `..`, or symlink that resolves outside), every file
// the runtime opens is listed in "files" with {"bytes", "sha256"}, its size is checked before it is opened and its
// sha256 when asked (strsr_options.verify, strsr-infer --verify). A manifest without "files" predates the records
// and is refused.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace strsr {

inline constexpr const char* kManifestFormat = "strsr.export.v1";
inline constexpr std::array<const char*, 3> kStages = {"vae_encoder", "dit_onestep", "vae_decoder"};

// One tensor dimension as the manifest records it: a fixed size, or a symbolic name for a dynamic axis.
struct Dim {
    int64_t size = -1;  // -1: dynamic
    std::string name;
    bool is_static() const { return size >= 0; }
};

struct GraphInfo {
    std::string file;
    std::vector<std::string> external_data;  // files beside the graph holding its weights (ONNX Runtime opens them)
    std::map<std::string, std::vector<Dim>> inputs;
    std::vector<std::string> outputs;
};

// Optional section for TensorRT engines built for one GPU architecture by one TensorRT version.
struct TensorRtInfo {
    std::string version;             // "10.7.0": engines only load in the TensorRT they were built with
    std::string compute_capability;  // "9.0": engines only run on that GPU architecture
    std::map<std::string, std::string> engines;  // stage -> engine file
};

// How the encoder graph encodes: "mode" (the posterior's mode or a deterministic autoencoder; no extra input) or
// "sample" (its input `noise`, (B, channels, H / vae_scale, W / vae_scale) standard normal, is the posterior's eps).
struct LatentInfo {
    bool samples = false;
    int channels = 0;
    int vae_scale = 1;
};

// What "files" records of one file: its size (checked always) and sha256 (checked when verifying).
struct FileRecord {
    uint64_t bytes = 0;
    std::string sha256;  // lowercase hex as hashlib writes it; may be empty, which no file matches
};

struct Manifest {
    std::string format;
    std::string preset;
    std::string family;
    std::string precision;
    int opset = 0;
    int pixel_multiple = 0;
    int tile = 0;
    double t1 = 0.0;
    std::string conditioning = "none";  // none or text: stored tokens; vlm: Qwen3-VL in PyTorch (not run here)
    std::string condition_file;         // the stored tokens; empty for vlm
    LatentInfo latent;                  // "latent" section; absent or null in older exports: the mode
    std::map<std::string, GraphInfo> graphs;
    std::optional<TensorRtInfo> tensorrt;
    std::map<std::string, FileRecord> files;  // a record for every file named above (others are ignored)
    std::string text;  // the JSON as read, for strsr_session_manifest()
};

// Parse and validate manifest text; `source` names it in errors. Throws Error(STRSR_ERROR_MANIFEST).
Manifest parse_manifest(const std::string& text, const std::string& source);

// <dir>/manifest.json, parsed; every graph, its external data and the condition file are checked with
// verified_file (all missing ones named in one IO error). Throws Error (IO or MANIFEST).
Manifest read_manifest(const std::filesystem::path& dir, bool verify_hashes = false);

// `dir / name` for a file the manifest names (`what`, e.g. "graph 'vae_encoder'", names it in errors), checked before
// anything opens it: inside `dir` after resolving symlinks, a regular file, of the size "files" records and, when
// `verify_hashes`, of its sha256. Throws Error(STRSR_ERROR_IO) if it is missing, else Error(STRSR_ERROR_MANIFEST).
std::filesystem::path verified_file(const std::filesystem::path& dir, const Manifest& manifest, const std::string& name,
                                    const std::string& what, bool verify_hashes);

// The whole contents of a file; throws Error(STRSR_ERROR_IO) naming the path.
std::string read_file(const std::filesystem::path& path);

}  // namespace strsr
