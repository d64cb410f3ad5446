// strsr-infer's image readers on hostile and unusual files, as strsr/imageio.py reads them: EXIF orientation applied
// (JPEG APP1 and PNG eXIf), a truncated JPEG refused (one that only lacks its EOI marker read, as Pillow reads it),
// and images over STRSR_MAX_INPUT_PIXELS refused from their header with "too large" (decompression bombs).
#include <cstring>
#include <string>

#include "check.hpp"
#include "image_file.hpp"
#include "strsr/strsr_runtime.h"

namespace {

// An RGB image whose left half (x < width / 2) is black and right half white.
strsr::ImageFile halves(int width, int height) {
    strsr::ImageFile image;
    image.width = width;
    image.height = height;
    image.channels = 3;
    image.data.resize(image.row_bytes() * size_t(height));
    for (int y = 0; y < height; ++y)
        for (int x = 0; x < width; ++x)
            for (int c = 0; c < 3; ++c) image.data[(size_t(y) * size_t(width) + size_t(x)) * 3 + size_t(c)] = x < width / 2 ? 0 : 255;
    return image;
}

int grey_at(const strsr::ImageFile& image, int y, int x) {
    return image.data[(size_t(y) * size_t(image.width) + size_t(x)) * size_t(image.channels)];
}

std::string big_endian(uint32_t value, int bytes) {
    std::string out;
    for (int i = bytes - 1; i >= 0; --i) out += char((value >> (8 * i)) & 0xff);
    return out;
}

// A big-endian TIFF blob with one IFD entry: Orientation (0x0112), SHORT, `orientation`.
std::string exif_blob(int orientation) {
    return std::string("MM\0*", 4) + big_endian(8, 4) + big_endian(1, 2) + big_endian(0x0112, 2) + big_endian(3, 2) +
           big_endian(1, 4) + big_endian(uint32_t(orientation), 2) + big_endian(0, 2) + big_endian(0, 4);
}

// CRC-32 as PNG chunks use it (ISO 3309, reflected, polynomial 0xedb88320).
uint32_t crc32(const std::string& bytes) {
    uint32_t crc = 0xffffffffu;
    for (unsigned char byte : bytes) {
        crc ^= byte;
        for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
    }
    return crc ^ 0xffffffffu;
}

std::string png_chunk(const std::string& type, const std::string& data) {
    return big_endian(uint32_t(data.size()), 4) + type + data + big_endian(crc32(type + data), 4);
}

const std::string kPngSignature("\x89PNG\r\n\x1a\n", 8);

// A PNG that claims width x height RGB8 pixels, with a few bytes of image data (a bomb's header).
std::string png_header_only(uint32_t width, uint32_t height) {
    const std::string ihdr = big_endian(width, 4) + big_endian(height, 4) + std::string("\x08\x02\x00\x00\x00", 5);
    return kPngSignature + png_chunk("IHDR", ihdr) + png_chunk("IDAT", std::string("\x78\x9c\x03\x00", 4)) +
           png_chunk("IEND", "");
}

}  // namespace

TEST(jpeg_exif_orientation_is_applied) {
    const std::string jpeg = strsr::encode_jpeg(halves(16, 8), "t.jpg");
    const std::string app1 = "Exif" + std::string(2, '\0') + exif_blob(6);
    const std::string marked = jpeg.substr(0, 2) + "\xff\xe1" + big_endian(uint32_t(app1.size() + 2), 2) + app1 +
                               jpeg.substr(2);
    const strsr::ImageFile plain = strsr::read_jpeg(jpeg, "t.jpg");
    CHECK(plain.width == 16 && plain.height == 8);
    // Orientation 6: shown turned a quarter clockwise, so the source's left (black) half becomes the top.
    const strsr::ImageFile upright = strsr::read_jpeg(marked, "t.jpg");
    CHECK_EQ(upright.width, 8);
    CHECK_EQ(upright.height, 16);
    if (upright.width == 8 && upright.height == 16) {
        CHECK(grey_at(upright, 2, 4) < 64);
        CHECK(grey_at(upright, 13, 4) > 192);
    }
}

TEST(png_exif_orientation_is_applied) {
    const std::string png = strsr::encode_png(halves(16, 8), "t.png");
    const size_t iend = png.size() - 12;  // the last chunk: length 0, "IEND", CRC
    const std::string marked = png.substr(0, iend) + png_chunk("eXIf", exif_blob(8)) + png.substr(iend);
    const strsr::ImageFile upright = strsr::read_png(marked, "t.png");
    // Orientation 8: turned a quarter counter-clockwise, the source's left (black) half goes to the bottom.
    CHECK_EQ(upright.width, 8);
    CHECK_EQ(upright.height, 16);
    if (upright.width == 8 && upright.height == 16) {
        CHECK_EQ(grey_at(upright, 2, 4), 255);
        CHECK_EQ(grey_at(upright, 13, 4), 0);
    }
}

TEST(truncated_jpeg_is_an_error) {
    const std::string jpeg = strsr::encode_jpeg(halves(64, 48), "t.jpg");
    try {
        strsr::read_jpeg(jpeg.substr(0, jpeg.size() / 2), "half.jpg");
        CHECK(!"a truncated JPEG was accepted");
    } catch (const strsr::ImageFileError& e) {
        CHECK(std::string(e.what()) == "half.jpg: truncated or corrupt JPEG (Premature end of JPEG file)");
    }
    // Cut anywhere in the scan (after the SOS header, before the EOI marker): always an error, never grey pixels.
    const size_t scan = jpeg.find("\xff\xda");
    size_t accepted = 0;
    for (size_t cut = scan + 4; cut + 2 < jpeg.size(); ++cut) {
        try {
            strsr::read_jpeg(jpeg.substr(0, cut), "cut.jpg");
            ++accepted;
        } catch (const strsr::ImageFileError&) {
        }
    }
    CHECK_EQ(accepted, 0u);
    // Only the final EOI marker missing: every pixel is there (Pillow reads such files too).
    const strsr::ImageFile whole = strsr::read_jpeg(jpeg, "t.jpg");
    const strsr::ImageFile no_eoi = strsr::read_jpeg(jpeg.substr(0, jpeg.size() - 2), "t.jpg");
    CHECK(whole.data == no_eoi.data);
}

// One limit, STRSR_MAX_INPUT_PIXELS, for both readers and the API; bombs stop at the header.
TEST(images_over_the_pixel_limit_are_too_large) {
    auto message = [](auto&& read) {
        try {
            read();
        } catch (const strsr::ImageFileError& e) {
            return std::string(e.what());
        }
        return std::string("(no error)");
    };
    CHECK(message([] { return strsr::read_png(png_header_only(5000, 4000), "bomb.png"); }) ==
          "bomb.png: 5000x4000 is too large (over 16,777,216 pixels)");
    CHECK(message([] { return strsr::read_png(png_header_only(70000, 240), "wide.png"); }) ==
          "wide.png: 70000x240 is too large (over 16,777,216 pixels)");
    CHECK(message([] { return strsr::read_png(png_header_only(0x7fffffff, 0x7fffffff), "huge.png"); }) ==
          "huge.png: 2147483647x2147483647 is too large (over 16,777,216 pixels)");
    // Exactly the limit is decoded (and this data is not a real image).
    CHECK(message([] { return strsr::read_png(png_header_only(4096, 4096), "edge.png"); })
              .find("edge.png: truncated or corrupt PNG") == 0);
    std::string jpeg = strsr::encode_jpeg(halves(16, 8), "t.jpg");
    const size_t sof = jpeg.find("\xff\xc0");
    CHECK(sof != std::string::npos);
    jpeg.replace(sof + 5, 4, big_endian(500, 2) + big_endian(40000, 2));  // SOF0: precision, height, width
    CHECK(message([&] { return strsr::read_jpeg(jpeg, "bomb.jpg"); }) ==
          "bomb.jpg: 40000x500 is too large (over 16,777,216 pixels)");
    CHECK(strsr::too_large_image(4096, 4096) == false && strsr::too_large_image(4097, 4096));
    CHECK_EQ(STRSR_MAX_INPUT_PIXELS, 4096 * 4096);
}

TEST_MAIN()
