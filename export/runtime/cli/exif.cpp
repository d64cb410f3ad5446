// The EXIF orientation tag and the transform that applies it (the same mapping as strsr/imageio.py's _orient).
#include <cstring>

#include "image_file.hpp"

namespace strsr {
namespace {

// Reads a 2- or 4-byte unsigned integer in the blob's byte order; false when it would read past the end.
bool read_uint(const uint8_t* data, size_t size, size_t offset, size_t width, bool big_endian, uint32_t& value) {
    if (offset > size || width > size - offset) return false;
    value = 0;
    for (size_t i = 0; i < width; ++i) {
        const uint32_t byte = data[offset + (big_endian ? i : width - 1 - i)];
        value = (value << 8) | byte;
    }
    return true;
}

}  // namespace

int exif_orientation(const uint8_t* data, size_t size) {
    constexpr uint32_t kOrientationTag = 0x0112;
    if (size < 8) return 1;
    const bool big_endian = std::memcmp(data, "MM\0*", 4) == 0;
    if (!big_endian && std::memcmp(data, "II*\0", 4) != 0) return 1;
    uint32_t ifd = 0, count = 0;
    if (!read_uint(data, size, 4, 4, big_endian, ifd) || !read_uint(data, size, ifd, 2, big_endian, count)) return 1;
    for (uint32_t i = 0; i < count; ++i) {
        const size_t entry = size_t(ifd) + 2 + 12 * size_t(i);
        uint32_t tag = 0, type = 0, value = 0;
        if (!read_uint(data, size, entry, 2, big_endian, tag) || !read_uint(data, size, entry + 2, 2, big_endian, type))
            return 1;
        if (tag != kOrientationTag) continue;
        if (type != 3 || !read_uint(data, size, entry + 8, 2, big_endian, value)) return 1;  // SHORT, inline
        return value >= 1 && value <= 8 ? int(value) : 1;
    }
    return 1;
}

ImageFile apply_orientation(const ImageFile& image, int orientation) {
    if (orientation <= 1 || orientation > 8) return image;
    const bool swaps = orientation >= 5;  // 5-8 turn the image by a quarter: width and height trade places
    ImageFile out = image;
    out.width = swaps ? image.height : image.width;
    out.height = swaps ? image.width : image.height;
    const size_t pixel = size_t(image.channels) * image.sample_bytes();
    const int h = image.height, w = image.width;
    for (int y = 0; y < out.height; ++y)
        for (int x = 0; x < out.width; ++x) {
            int sy = y, sx = x;
            switch (orientation) {
                case 2: sx = w - 1 - x; break;                 // mirror left-right
                case 3: sy = h - 1 - y; sx = w - 1 - x; break;  // half turn
                case 4: sy = h - 1 - y; break;                 // mirror top-bottom
                case 5: sy = x; sx = y; break;                 // transpose
                case 6: sy = h - 1 - x; sx = y; break;         // quarter turn clockwise
                case 7: sy = h - 1 - x; sx = w - 1 - y; break;  // transverse
                case 8: sy = x; sx = w - 1 - y; break;         // quarter turn counter-clockwise
            }
            std::memcpy(out.data.data() + (size_t(y) * size_t(out.width) + size_t(x)) * pixel,
                        image.data.data() + (size_t(sy) * size_t(w) + size_t(sx)) * pixel, pixel);
        }
    return out;
}

}  // namespace strsr
