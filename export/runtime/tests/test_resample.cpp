// Bicubic x4 and padding against values printed by PyTorch (F.interpolate bicubic, align_corners=False;
// F.pad reflect) for the same inputs; per-tile upsampling of the padded image against the whole image padded
// (python_parity.py compares it with strsr.pipeline.upsampled_tile bit for bit).
#include <cstdint>

#include "check.hpp"
#include "error.hpp"
#include "resample.hpp"

namespace {

// torch.rand(1, 1, 3, 4, generator=torch.Generator().manual_seed(0))
const float kInput[12] = {0.49625658988952637f, 0.7682217955589294f,  0.08847743272781372f, 0.13203048706054688f,
                          0.30742281675338745f, 0.6340786814689636f,  0.4900934100151062f,  0.8964447379112244f,
                          0.455627977848053f,   0.6323062777519226f,  0.3488934636116028f,  0.40171730518341064f};

// Rows 0, 1, 5 and 11 of F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False) (not clamped).
const int kRows[4] = {0, 1, 5, 11};
const float kExpected[4][16] = {
    {0.48778361082077026f, 0.49791282415390015f, 0.5523664951324463f, 0.661527693271637f, 0.7682667374610901f,
     0.8081838488578796f, 0.7248326539993286f, 0.5457772612571716f, 0.32763734459877014f, 0.12399489432573318f,
     -0.00827441643923521f, -0.0354594960808754f, -0.0019693244248628616f, 0.04008975997567177f,
     0.048314642161130905f, 0.048455335199832916f},
    {0.48036283254623413f, 0.49057137966156006f, 0.545183002948761f, 0.6537413597106934f, 0.7601654529571533f,
     0.8013926148414612f, 0.7218636870384216f, 0.5473392009735107f, 0.33419957756996155f, 0.13618823885917664f,
     0.009929933585226536f, -0.012942666187882423f, 0.023509996011853218f, 0.06796861439943314f,
     0.07841984927654266f, 0.0790868028998375f},
    {0.2800743877887726f, 0.2927076816558838f, 0.3531252145767212f, 0.44856929779052734f, 0.5495616793632507f,
     0.6271969079971313f, 0.6481443047523499f, 0.5902530550956726f, 0.5053144097328186f, 0.4532460868358612f,
     0.4857785701751709f, 0.5793055891990662f, 0.6976452469825745f, 0.8089810609817505f, 0.8803468346595764f,
     0.8953456878662109f},
    {0.45431002974510193f, 0.4604114592075348f, 0.4917132258415222f, 0.5493307709693909f, 0.607202410697937f,
     0.6368138790130615f, 0.6122519969940186f, 0.541141927242279f, 0.4500526785850525f, 0.36523476243019104f,
     0.31339991092681885f, 0.30560043454170227f, 0.3226339817047119f, 0.3428405225276947f, 0.34836867451667786f,
     0.34890127182006836f}};

strsr::Planar input() {
    strsr::Planar lr(1, 3, 4);
    lr.data.assign(kInput, kInput + 12);
    return lr;
}

}  // namespace

TEST(bicubic_matches_pytorch) {
    const strsr::Planar up = strsr::upsample_x4(input(), /*clamp=*/false);
    CHECK_EQ(up.height, 12);
    CHECK_EQ(up.width, 16);
    for (int r = 0; r < 4; ++r)
        for (int x = 0; x < 16; ++x) CHECK_NEAR(up.at(0, kRows[r], x), kExpected[r][x], 2e-7);
}

TEST(bicubic_clamps_to_unit_range) {
    const strsr::Planar up = strsr::upsample_x4(input());
    CHECK_EQ(up.at(0, 0, 10), 0.0f);  // -0.0083 before clamping
    CHECK_NEAR(up.at(0, 0, 4), kExpected[0][4], 2e-7);
}

// A region equals the crop of the whole upsampled image, including regions touching the borders.
TEST(bicubic_region_equals_crop) {
    const strsr::Planar full = strsr::upsample_x4(input());
    const strsr::Tile regions[] = {{0, 0, 12, 16}, {4, 8, 8, 8}, {0, 12, 4, 4}, {8, 0, 4, 16}};
    for (const strsr::Tile& t : regions) {
        const strsr::Planar part = strsr::upsample_x4_region(input(), t);
        for (int y = 0; y < t.height; ++y)
            for (int x = 0; x < t.width; ++x) CHECK_EQ(part.at(0, y, x), full.at(0, t.top + y, t.left + x));
    }
    CHECK_ERROR(strsr::upsample_x4_region(input(), strsr::Tile{0, 0, 13, 4}), STRSR_ERROR_INVALID_ARGUMENT,
                "outside");
}

TEST(constant_image_stays_constant) {
    strsr::Planar lr(3, 5, 7);
    for (float& v : lr.data) v = 0.25f;
    for (float v : strsr::upsample_x4(lr).data) CHECK_NEAR(v, 0.25f, 1e-7);
}

// F.pad(arange(n).view(1, 1, 1, n), (0, p - n, 0, 0), mode="reflect"), and replicate where reflect cannot pad.
TEST(padded_source_reflects_like_f_pad) {
    CHECK(strsr::padded_source(5, 8) == std::vector<int>({0, 1, 2, 3, 4, 3, 2, 1}));
    CHECK(strsr::padded_source(13, 16) == std::vector<int>({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 11, 10, 9}));
    CHECK(strsr::padded_source(4, 4) == std::vector<int>({0, 1, 2, 3}));
    CHECK(strsr::padded_source(4, 7) == std::vector<int>({0, 1, 2, 3, 2, 1, 0}));  // a pad of 3 < 4 reflects
    CHECK(strsr::padded_source(4, 8) == std::vector<int>({0, 1, 2, 3, 3, 3, 3, 3}));  // a pad of 4 replicates
    CHECK(strsr::padded_source(1, 3) == std::vector<int>({0, 0, 0}));
    CHECK_ERROR(strsr::padded_source(5, 4), STRSR_ERROR_INVALID_ARGUMENT, "cannot pad");
    CHECK_ERROR(strsr::padded_source(0, 4), STRSR_ERROR_INVALID_ARGUMENT, "cannot pad");
}

// Each tile of the padded image computed on its own equals the same window of the straightforward version: the
// whole image upsampled, then padded (mirror rows/columns beyond the edge, or repeat the edge when the pad is not
// shorter than the side), then cropped.
TEST(upsampled_tiles_equal_the_padded_full_image) {
    const int sizes[][4] = {{37, 53, 160, 224}, {1, 1, 16, 16}, {2, 9, 16, 48}, {3, 5, 16, 32}, {16, 12, 64, 48},
                            {5, 3, 32, 16}};
    uint32_t state = 12345;
    for (const auto& s : sizes) {
        strsr::Planar lr(3, s[0], s[1]);
        for (float& v : lr.data) {
            state = state * 1664525u + 1013904223u;
            v = float(state >> 8) / float(1 << 24);
        }
        const strsr::Planar full = strsr::upsample_x4(lr);
        const int height = full.height, width = full.width, padded_height = s[2], padded_width = s[3];
        auto source = [](int i, int length, int padded) {
            if (i < length) return i;
            return padded - length < length ? 2 * (length - 1) - i : length - 1;
        };
        strsr::Planar padded(3, padded_height, padded_width);
        for (int c = 0; c < 3; ++c)
            for (int y = 0; y < padded_height; ++y)
                for (int x = 0; x < padded_width; ++x)
                    padded.at(c, y, x) =
                        full.at(c, source(y, height, padded_height), source(x, width, padded_width));
        for (const strsr::Tile& t : strsr::plan_tiles(padded_height, padded_width, 16, 4)) {
            const strsr::Planar tile = strsr::upsampled_tile(lr, t, padded_height, padded_width);
            CHECK(tile.channels == 3 && tile.height == t.height && tile.width == t.width);
            bool equal = true;
            for (int c = 0; c < 3; ++c)
                for (int y = 0; y < t.height; ++y)
                    for (int x = 0; x < t.width; ++x)
                        equal = equal && tile.at(c, y, x) == padded.at(c, t.top + y, t.left + x);
            CHECK(equal);
        }
    }
    strsr::Planar lr(3, 2, 2);
    CHECK_ERROR(strsr::upsampled_tile(lr, strsr::Tile{0, 0, 16, 20}, 16, 16), STRSR_ERROR_INVALID_ARGUMENT,
                "outside the padded image");
}

TEST_MAIN()
