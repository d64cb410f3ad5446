// strsr_runtime.hpp: a thin header-only C++17 wrapper over the C API (strsr_runtime.h): RAII sessions, vectors
// in and out, and strsr::Error exceptions on the C++ side of the boundary.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "strsr/strsr_runtime.h"

namespace strsr {

class RuntimeError : public std::runtime_error {
public:
    RuntimeError(strsr_status status, const std::string& message)
        : std::runtime_error(message), status_(status) {}
    strsr_status status() const noexcept { return status_; }

private:
    strsr_status status_;
};

inline void check(strsr_status status) {
    if (status != STRSR_OK) throw RuntimeError(status, strsr_last_error());
}

struct Options : strsr_options {
    Options() { strsr_options_init(this); }
};

// One loaded export; share one Session across threads (see strsr_runtime.h).
class Session {
public:
    explicit Session(const std::string& engine_dir, const Options& options = Options()) {
        check(strsr_session_create(engine_dir.c_str(), &options, &session_));
    }
    ~Session() { strsr_session_destroy(session_); }
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;
    Session(Session&& other) noexcept : session_(std::exchange(other.session_, nullptr)) {}
    Session& operator=(Session&& other) noexcept {
        std::swap(session_, other.session_);
        return *this;
    }

    // Tightly packed interleaved RGB, width x height -> 4*width x 4*height.
    std::vector<uint8_t> upscale(const std::vector<uint8_t>& rgb, int width, int height) const {
        std::vector<uint8_t> out(rgb.size() * STRSR_SCALE * STRSR_SCALE);
        check(strsr_upscale(session_, STRSR_RGB8, rgb.data(), rgb.size(), width, height, out.data(), out.size()));
        return out;
    }
    std::vector<uint16_t> upscale(const std::vector<uint16_t>& rgb, int width, int height) const {
        std::vector<uint16_t> out(rgb.size() * STRSR_SCALE * STRSR_SCALE);
        check(strsr_upscale(session_, STRSR_RGB16, rgb.data(), rgb.size() * 2, width, height, out.data(),
                            out.size() * 2));
        return out;
    }
    // Planar float32 (3, height, width) in [0, 1] -> (3, 4*height, 4*width).
    std::vector<float> upscale_planar(const std::vector<float>& planes, int width, int height) const {
        std::vector<float> out(planes.size() * STRSR_SCALE * STRSR_SCALE);
        check(strsr_upscale_planar(session_, planes.data(), planes.size(), width, height, out.data(), out.size()));
        return out;
    }

    strsr_info info() const {
        strsr_info info{};
        check(strsr_session_info(session_, &info));
        return info;
    }
    std::string manifest_json() const { return strsr_session_manifest(session_); }
    strsr_session* get() const { return session_; }

private:
    strsr_session* session_ = nullptr;
};

}  // namespace strsr
