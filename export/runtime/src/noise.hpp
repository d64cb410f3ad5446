// Standard normal float32 noise for sampling exports (the VAE posterior's eps), from a generator whose draws are
// the same on every platform, compiler and standard library: not PyTorch's (strsr-upscale draws with torch, so a
// sampling export gives per-seed reproducible outputs here that differ from Python's).
//
// Engine: std::mt19937_64 seeded with the 64-bit seed (its output sequence is fixed by the C++ standard).
// Uniforms: u = (x >> 11) * 2^-53, in [0, 1). Normals: Marsaglia's polar method in IEEE double: a = 2u1 - 1,
// b = 2u2 - 1, s = a^2 + b^2 (pairs with s >= 1 or s == 0 are rejected), f = sqrt(-2 log(s) / s), giving a * f and
// then b * f, each rounded to float32. log is computed here from +, -, *, / and frexp alone (std::log's last bit
// differs between libraries), so only correctly rounded operations are involved.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>

namespace strsr {

class NormalNoise {
public:
    explicit NormalNoise(uint64_t seed) : engine_(seed) {}
    float next();
    void fill(float* values, size_t count);

private:
    double uniform();

    std::mt19937_64 engine_;
    bool has_spare_ = false;
    float spare_ = 0.0f;
};

// The natural logarithm of a positive finite double to within a few units in the last place, from basic
// arithmetic only (bit-identical everywhere); exposed for its test.
double portable_log(double x);

}  // namespace strsr
