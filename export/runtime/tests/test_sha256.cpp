// SHA-256 against the FIPS 180-4 examples and NIST CAVP short/long messages, the padding boundaries (55, 56, 63,
// 64 bytes: the length field's block, checked against Python's hashlib), chunked updates and a file.
#include <filesystem>
#include <fstream>
#include <string>

#include "check.hpp"
#include "error.hpp"
#include "sha256.hpp"

namespace {

std::string hex(const std::string& message) { return strsr::sha256_hex(message.data(), message.size()); }

// Bytes (7 i + 3) mod 256, i = 0..n-1: a message without long runs of one value.
std::string pattern(size_t n) {
    std::string out(n, '\0');
    for (size_t i = 0; i < n; ++i) out[i] = char((i * 7 + 3) & 0xff);
    return out;
}

}  // namespace

TEST(fips_180_4_examples) {
    CHECK(hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    CHECK(hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrs"
              "tnopqrstu") == "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    CHECK(hex(std::string(1000000, 'a')) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(padding_boundaries_match_hashlib) {
    const std::pair<size_t, const char*> cases[] = {
        {55, "e7313d333c272e639f790978283f9eb392e843d0f29b7016828bb1daa4aac70b"},
        {56, "4324d65f3c103567f5589c710bc08f8523f929a9272e3af36fc968e52abc6c27"},
        {63, "81c80242132f230c3bd41b3e63bbcff16107339549214a99614ff26664625055"},
        {64, "39e3d7b6b5d075d37d053ad89b24b41bef4f3c29760c84447cab3f3be1882241"},
        {65, "aacca6ff74fdbb296d165a45cecfa04e5127bc008770fbbdd48006f2d2fae95e"},
        {119, "9ce7368e4daf32341631b492e80359dc9f594b48453cd0dd5bf0b19279cc177e"},
        {1000, "1e9bc38cbf860b9ec31918b065f9b52476c549a782e0e7990bed8ce3868d2371"}};
    for (const auto& [size, digest] : cases) CHECK(hex(pattern(size)) == digest);
}

TEST(chunked_updates_equal_one_update) {
    const std::string message = pattern(1000);
    for (size_t chunk : {1, 3, 63, 64, 65, 999}) {
        strsr::Sha256 hash;
        for (size_t at = 0; at < message.size(); at += chunk)
            hash.update(message.data() + at, std::min(chunk, message.size() - at));
        CHECK(hash.hex_digest() == hex(message));
    }
}

TEST(file_digest) {
    const std::filesystem::path path = std::filesystem::temp_directory_path() / "strsr_test_sha256.bin";
    const std::string message = pattern(3 << 20 | 17);  // several of file_sha256's 1 MiB chunks and a tail
    std::ofstream(path, std::ios::binary) << message;
    CHECK(strsr::file_sha256(path) == hex(message));
    std::filesystem::remove(path);
    CHECK_ERROR(strsr::file_sha256(path), STRSR_ERROR_IO, "cannot open");
}

TEST_MAIN()
