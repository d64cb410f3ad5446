// SHA-256 (FIPS 180-4), for checking an export's files against the sha256 its manifest records (strsr-export writes
// it with Python's hashlib). Written here because none of the runtime's dependencies (nlohmann-json, ONNX Runtime,
// libpng, libjpeg) exposes a hash; tests/test_sha256.cpp checks it against the FIPS 180-4 / NIST CAVP test vectors.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace strsr {

class Sha256 {
public:
    Sha256();
    void update(const void* data, size_t size);
    // The digest of everything updated so far, as 64 lowercase hex digits; the object is spent afterwards.
    std::string hex_digest();

private:
    void compress(const uint8_t* block);

    std::array<uint32_t, 8> state_;
    std::array<uint8_t, 64> block_{};
    size_t used_ = 0;       // bytes in block_
    uint64_t length_ = 0;   // message bytes so far
};

std::string sha256_hex(const void* data, size_t size);

// The sha256 of a file's contents, read in chunks; throws Error(STRSR_ERROR_IO) naming the path.
std::string file_sha256(const std::filesystem::path& path);

}  // namespace strsr
