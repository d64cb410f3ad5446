// One interface for the inference engines: a backend runs the three exported stages, VAE encode -> one-step DiT
// -> VAE decode, on one padded tile. Tiling, padding and blending stay in the backend-independent pipeline.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "image.hpp"
#include "manifest.hpp"
#include "safetensors.hpp"
#include "strsr/strsr_runtime.h"

namespace strsr {

struct BackendOptions {
    strsr_device device = STRSR_DEVICE_AUTO;
    int device_index = 0;
    int intra_op_threads = 0;
    bool cuda_graph = false;
    int max_contexts = 2;
    bool verify_files = false;  // check the sha256 of the files the backend opens beyond read_manifest's (engines)
};

class Backend {
public:
    virtual ~Backend() = default;
    virtual const char* name() const = 0;
    virtual std::string device() const = 0;
    // (3, H, W) in [-1, 1], H and W multiples of the pixel multiple -> (3, H, W). `noise` is the encoder's noise
    // input, (1, C, H / s, W / s), for a sampling export, else null. Safe to call from many threads.
    virtual Planar run(const Planar& image, const Tensor* noise) const = 0;
};

// Each factory checks the manifest against what it loads and throws Error naming any mismatch. A backend not
// compiled into this build throws Error(STRSR_ERROR_BACKEND) saying which CMake option enables it.
std::unique_ptr<Backend> make_onnxruntime_backend(const std::filesystem::path& dir, const Manifest& manifest,
                                                  const Tensor& condition, const BackendOptions& options);
std::unique_ptr<Backend> make_tensorrt_backend(const std::filesystem::path& dir, const Manifest& manifest,
                                               const Tensor& condition, const BackendOptions& options);

bool have_onnxruntime();
bool have_tensorrt();

}  // namespace strsr
