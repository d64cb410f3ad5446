// Image files for strsr-infer: PNG (8/16-bit, grey, grey+alpha, RGB, RGBA, palette) through libpng and JPEG
// through libjpeg, decoded upright (EXIF orientation applied) like strsr/imageio.py. The library takes buffers.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace strsr {

class ImageFileError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct ImageFile {
    int width = 0;
    int height = 0;
    int channels = 0;   // 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA
    int bit_depth = 8;  // 8: one byte per sample; 16: native-endian uint16 per sample
    std::vector<uint8_t> data;  // interleaved samples, rows top to bottom

    size_t sample_bytes() const { return bit_depth == 16 ? 2 : 1; }
    size_t row_bytes() const { return size_t(width) * size_t(channels) * sample_bytes(); }
};

// Read by content (PNG or JPEG signature). Throws ImageFileError "<path>: <reason>"; images over
// STRSR_MAX_INPUT_PIXELS (the C API's limit) are refused from their header, before any pixel is decoded, with
// "<path>: WxH is too large (over N pixels)" as strsr-upscale words it.
ImageFile read_image(const std::string& path);

// The size check shared by the codecs: width * height over STRSR_MAX_INPUT_PIXELS, and its message.
bool too_large_image(uint64_t width, uint64_t height);
std::string too_large_message(const std::string& name, int64_t width, int64_t height);

// Write by suffix (.png, .jpg, .jpeg) to a temporary file beside `path`, then rename it into place.
// JPEG takes 8-bit grey or RGB only. Throws ImageFileError.
void write_image(const std::string& path, const ImageFile& image);

// Codec entry points (png_file.cpp, jpeg_file.cpp); `name` is used in messages.
ImageFile read_png(const std::string& bytes, const std::string& name);
ImageFile read_jpeg(const std::string& bytes, const std::string& name);
std::string encode_png(const ImageFile& image, const std::string& name);
std::string encode_jpeg(const ImageFile& image, const std::string& name);

// EXIF (exif.cpp): the orientation tag (1-8, 1 if absent or unreadable) of a TIFF-structured EXIF blob, and the
// transform that makes an image upright, as Pillow's ImageOps.exif_transpose does.
int exif_orientation(const uint8_t* data, size_t size);
ImageFile apply_orientation(const ImageFile& image, int orientation);

}  // namespace strsr
