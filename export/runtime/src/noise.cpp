#include "noise.hpp"

#include <cmath>

namespace strsr {

double portable_log(double x) {
    // x = m * 2^e with m in [sqrt(1/2), sqrt(2)); log(m) = 2 atanh(f), f = (m - 1) / (m + 1), |f| < 0.1716, whose
    // odd series f + f^3/3 + ... reaches double precision by the f^23 term. ln 2 is split so e * ln2_hi is exact.
    int e = 0;
    double m = std::frexp(x, &e);  // m in [0.5, 1)
    if (m < 0.70710678118654752440) {
        m *= 2.0;
        e -= 1;
    }
    const double f = (m - 1.0) / (m + 1.0);
    const double f2 = f * f;
    double series = 1.0 / 23.0;
    for (int k = 21; k >= 1; k -= 2) series = series * f2 + 1.0 / double(k);
    constexpr double ln2_hi = 6.93147180369123816490e-01;  // 0x3fe62e42fee00000: few bits, e * ln2_hi is exact
    constexpr double ln2_lo = 1.90821492927058770002e-10;
    return double(e) * ln2_hi + (2.0 * f * series + double(e) * ln2_lo);
}

double NormalNoise::uniform() { return double(engine_() >> 11) * 0x1.0p-53; }

float NormalNoise::next() {
    if (has_spare_) {
        has_spare_ = false;
        return spare_;
    }
    double a = 0.0, b = 0.0, s = 0.0;
    do {
        a = 2.0 * uniform() - 1.0;
        b = 2.0 * uniform() - 1.0;
        s = a * a + b * b;
    } while (s >= 1.0 || s == 0.0);
    const double factor = std::sqrt(-2.0 * portable_log(s) / s);
    spare_ = float(b * factor);
    has_spare_ = true;
    return float(a * factor);
}

void NormalNoise::fill(float* values, size_t count) {
    for (size_t i = 0; i < count; ++i) values[i] = next();
}

}  // namespace strsr
