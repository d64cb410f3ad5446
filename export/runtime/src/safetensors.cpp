#include "safetensors.hpp"

#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>

#include "error.hpp"
#include "manifest.hpp"

namespace strsr {

Tensor parse_safetensors(const std::string& bytes, const std::string& name, const std::string& source) {
    auto fail = [&](const std::string& problem) { throw Error(STRSR_ERROR_MANIFEST, source + ": " + problem); };
    if (bytes.size() < 8) fail("too short for a safetensors file (" + std::to_string(bytes.size()) + " bytes)");
    uint64_t header_size = 0;
    for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | uint8_t(bytes[size_t(i)]);
    if (header_size > bytes.size() - 8) fail("header length " + std::to_string(header_size) + " exceeds the file");
    nlohmann::json header;
    try {
        header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + std::ptrdiff_t(header_size));
    } catch (const nlohmann::json::parse_error& e) {
        fail(std::string("header is not valid JSON (") + e.what() + ")");
    }
    if (!header.is_object() || !header.contains(name) || !header[name].is_object())
        fail("has no tensor '" + name + "'");
    const nlohmann::json& entry = header[name];
    if (entry.value("dtype", "") != "F32")
        fail("tensor '" + name + "' has dtype " + entry.value("dtype", "?") + ", expected F32");
    const nlohmann::json& shape = entry.value("shape", nlohmann::json());
    const nlohmann::json& offsets = entry.value("data_offsets", nlohmann::json());
    if (!shape.is_array() || !offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned())
        fail("tensor '" + name + "' lacks a valid shape or data_offsets");
    Tensor tensor;
    // The element count and its bytes in checked arithmetic: a shape whose product wraps (e.g. [2^32, 2^32]) is an
    // error, not 0 elements. Any count whose bytes exceed the file is refused below, before anything is allocated.
    uint64_t count = 1;
    for (const nlohmann::json& d : shape) {
        if (!d.is_number_unsigned() || d.get<uint64_t>() > uint64_t(INT64_MAX)) fail("bad shape " + shape.dump());
        tensor.shape.push_back(d.get<int64_t>());
        if (__builtin_mul_overflow(count, d.get<uint64_t>(), &count))
            fail("tensor '" + name + "' shape " + shape.dump() + " has more elements than 2^64");
    }
    uint64_t count_bytes = 0;
    if (__builtin_mul_overflow(count, uint64_t(sizeof(float)), &count_bytes))
        fail("tensor '" + name + "' shape " + shape.dump() + " is too large (over 2^64 bytes)");
    const uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
    const uint64_t data_size = bytes.size() - 8 - header_size;
    if (begin > end || end > data_size || end - begin != count_bytes)
        fail("tensor '" + name + "' data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
             ") do not match its shape or the file size");
    tensor.data.resize(size_t(count));
    // safetensors stores little-endian; so does every machine this runtime targets (x86-64, aarch64).
    if (count) std::memcpy(tensor.data.data(), bytes.data() + 8 + header_size + begin, size_t(end - begin));
    return tensor;
}

Tensor read_safetensors(const std::filesystem::path& path, const std::string& name) {
    return parse_safetensors(read_file(path), name, path.string());
}

}  // namespace strsr
