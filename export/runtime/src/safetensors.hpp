// One float32 tensor out of a .safetensors file (8-byte little-endian header length, JSON header, raw data):
// the export's condition.safetensors holds the fixed null/text embedding the DiT is conditioned on.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace strsr {

struct Tensor {
    std::vector<int64_t> shape;
    std::vector<float> data;
};

// Parse `bytes` (a whole file; `source` names it in errors) and return tensor `name`, which must be F32.
// Throws Error(STRSR_ERROR_MANIFEST) on any malformation.
Tensor parse_safetensors(const std::string& bytes, const std::string& name, const std::string& source);

Tensor read_safetensors(const std::filesystem::path& path, const std::string& name);

}  // namespace strsr
