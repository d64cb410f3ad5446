// Colour conversion: the Python image I/O's conventions (float32 sample / peak in; floor or nearest out).
#include <cmath>
#include <cstdint>
#include <limits>

#include "check.hpp"
#include "colour.hpp"
#include "error.hpp"

TEST(rgb8_decodes_as_float32_division) {
    const uint8_t pixels[6] = {0, 128, 255, 1, 2, 3};  // two RGB pixels
    const strsr::Planar p = strsr::interleaved_to_planar(pixels, 2, 1, 3, STRSR_RGB8);
    CHECK_EQ(p.channels, 3);
    CHECK_EQ(p.at(0, 0, 0), 0.0f);
    CHECK_EQ(p.at(1, 0, 0), 128.0f / 255.0f);
    CHECK_EQ(p.at(2, 0, 0), 1.0f);
    CHECK_EQ(p.at(0, 0, 1), 1.0f / 255.0f);
    CHECK_EQ(p.at(2, 0, 1), 3.0f / 255.0f);
}

TEST(grey_is_replicated_and_alpha_dropped) {
    const uint16_t grey_alpha[4] = {65535, 7, 257, 65535};  // two grey+alpha pixels, 16-bit
    const strsr::Planar p = strsr::interleaved_to_planar(grey_alpha, 2, 1, 2, STRSR_RGB16);
    for (int c = 0; c < 3; ++c) {
        CHECK_EQ(p.at(c, 0, 0), 1.0f);
        CHECK_EQ(p.at(c, 0, 1), 257.0f / 65535.0f);
    }
    const uint8_t rgba[4] = {10, 20, 30, 40};
    const strsr::Planar q = strsr::interleaved_to_planar(rgba, 1, 1, 4, STRSR_RGB8);
    CHECK_EQ(q.at(2, 0, 0), 30.0f / 255.0f);
}

// Both roundings give every sample back (float32(k / 255) * 255 never falls below k).
TEST(every_8bit_value_round_trips) {
    uint8_t in[256 * 3], out[256 * 3];
    for (int i = 0; i < 256 * 3; ++i) in[i] = uint8_t(i / 3);
    for (strsr_rounding rounding : {STRSR_ROUNDING_FLOOR, STRSR_ROUNDING_NEAREST}) {
        strsr::planar_to_interleaved(strsr::interleaved_to_planar(in, 256, 1, 3, STRSR_RGB8), STRSR_RGB8, out, rounding);
        for (int i = 0; i < 256 * 3; ++i) CHECK_EQ(int(out[i]), int(in[i]));
    }
}

TEST(16bit_values_round_trip) {
    const uint16_t in[6] = {0, 1, 257, 32768, 65534, 65535};
    uint16_t out[6];
    strsr::planar_to_interleaved(strsr::interleaved_to_planar(in, 2, 1, 3, STRSR_RGB16), STRSR_RGB16, out);
    for (int i = 0; i < 6; ++i) CHECK_EQ(int(out[i]), int(in[i]));
}

// The default, floor, truncates float32(value * peak) as strsr.imageio.quantize does (torchvision's ToPILImage).
TEST(encoding_floors_by_default) {
    strsr::Planar p(1, 1, 6);
    p.data = {-0.5f, 1.5f, 0.5f, 0.999f, 1.0f / 255.0f, std::nextafter(1.0f / 255.0f, 0.0f)};
    uint8_t out[6];
    strsr::planar_to_interleaved(p, STRSR_RGB8, out);
    const int want[6] = {0, 255, 127, 254, 1, int(std::nextafter(1.0f / 255.0f, 0.0f) * 255.0f)};
    for (int i = 0; i < 6; ++i) CHECK_EQ(int(out[i]), want[i]);
    strsr::Planar exact(1, 1, 2);
    exact.data = {0.5f, 0.25f};  // * 65535 = 32767.5 and 16383.75
    uint16_t out16[2];
    strsr::planar_to_interleaved(exact, STRSR_RGB16, out16, STRSR_ROUNDING_FLOOR);
    CHECK_EQ(int(out16[0]), 32767);
    CHECK_EQ(int(out16[1]), 16383);
}

// nearest clamps to [0, 1] and rounds value * peak in double half to even, like numpy.rint.
TEST(nearest_clamps_and_rounds_half_to_even) {
    strsr::Planar p(1, 1, 5);
    p.data = {-0.5f, 1.5f, float(0.5 / 255.0), float(1.5 / 255.0), float(2.5 / 255.0)};
    uint8_t out[5];
    strsr::planar_to_interleaved(p, STRSR_RGB8, out, STRSR_ROUNDING_NEAREST);
    CHECK_EQ(int(out[0]), 0);
    CHECK_EQ(int(out[1]), 255);
    // float(k.5 / 255) * 255 in double lands within 1e-7 of k.5; rint picks the side float rounding chose.
    CHECK_EQ(int(out[2]), int(std::nearbyint(double(float(0.5 / 255.0)) * 255.0)));
    CHECK_EQ(int(out[3]), int(std::nearbyint(double(float(1.5 / 255.0)) * 255.0)));
    strsr::Planar exact(1, 1, 2);
    exact.data = {0.5f, 0.25f};  // * 65535 = 32767.5 and 16383.75
    uint16_t out16[2];
    strsr::planar_to_interleaved(exact, STRSR_RGB16, out16, STRSR_ROUNDING_NEAREST);
    CHECK_EQ(int(out16[0]), 32768);  // half to even
    CHECK_EQ(int(out16[1]), 16384);
}

TEST(nan_and_bad_formats_are_errors) {
    strsr::Planar p(3, 1, 1);
    p.data = {0.0f, std::numeric_limits<float>::quiet_NaN(), 0.0f};
    uint8_t out[3];
    CHECK_ERROR(strsr::planar_to_interleaved(p, STRSR_RGB8, out), STRSR_ERROR_BACKEND, "NaN");
    CHECK_ERROR(strsr::bytes_per_sample(strsr_pixel_format(9)), STRSR_ERROR_INVALID_ARGUMENT, "unknown pixel format");
    CHECK_ERROR(strsr::interleaved_to_planar(out, 1, 1, 5, STRSR_RGB8), STRSR_ERROR_INVALID_ARGUMENT, "channels");
    p.data = {0.0f, 0.0f, 0.0f};
    CHECK_ERROR(strsr::planar_to_interleaved(p, STRSR_RGB8, out, strsr_rounding(7)), STRSR_ERROR_INVALID_ARGUMENT,
                "unknown rounding 7");
}

TEST_MAIN()
