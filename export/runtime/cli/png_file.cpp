// PNG through libpng. libpng reports errors by longjmp, so each function that calls it keeps only trivially
// destructible locals after setjmp and turns the saved message into an exception once libpng has returned.
#include <png.h>

#include <csetjmp>
#include <cstring>

#include "image_file.hpp"

namespace strsr {
namespace {

struct Io {
    const std::string* input = nullptr;
    size_t offset = 0;
    std::string* output = nullptr;
    char message[256] = {0};
};

void on_error(png_structp png, png_const_charp message) {
    Io* io = static_cast<Io*>(png_get_error_ptr(png));
    std::snprintf(io->message, sizeof io->message, "%s", message);
    png_longjmp(png, 1);
}

void on_warning(png_structp, png_const_charp) {}  // benign ancillary-chunk issues; Pillow ignores them too

void read_bytes(png_structp png, png_bytep out, png_size_t length) {
    Io* io = static_cast<Io*>(png_get_io_ptr(png));
    if (length > io->input->size() - io->offset) png_error(png, "truncated file");
    std::memcpy(out, io->input->data() + io->offset, length);
    io->offset += length;
}

void write_bytes(png_structp png, png_bytep data, png_size_t length) {
    static_cast<Io*>(png_get_io_ptr(png))->output->append(reinterpret_cast<const char*>(data), length);
}

void flush(png_structp) {}

// Header pass: size, channels, depth after the expansions below. Returns false on a libpng error; sets
// `too_large` (and stops before libpng allocates rows) when the size is over STRSR_MAX_INPUT_PIXELS.
bool read_header(png_structp png, png_infop info, Io& io, ImageFile& image, bool& too_large) {
    if (setjmp(png_jmpbuf(png))) return false;
    png_set_read_fn(png, &io, read_bytes);
    png_read_info(png, info);
    image.width = int(png_get_image_width(png, info));
    image.height = int(png_get_image_height(png, info));
    too_large = too_large_image(png_get_image_width(png, info), png_get_image_height(png, info));
    if (too_large) return true;
    const int colour = png_get_color_type(png, info);
    const int depth = png_get_bit_depth(png, info);
    if (colour == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (colour == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);  // a colour key becomes alpha
    if (depth == 16) png_set_swap(png);  // PNG stores big-endian; the buffers are native (little) endian
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    image.channels = png_get_channels(png, info);
    image.bit_depth = png_get_bit_depth(png, info);
    return true;
}

bool read_pixels(png_structp png, png_infop info, png_bytepp rows, int& orientation) {
    if (setjmp(png_jmpbuf(png))) return false;
    png_read_image(png, rows);
    png_read_end(png, info);
    png_uint_32 size = 0;
    png_bytep exif = nullptr;
#ifdef PNG_eXIf_SUPPORTED
    if (png_get_eXIf_1(png, info, &size, &exif) && exif) orientation = exif_orientation(exif, size);
#endif
    return true;
}

bool write_all(png_structp png, png_infop info, Io& io, const ImageFile& image, png_bytepp rows) {
    if (setjmp(png_jmpbuf(png))) return false;
    static const int kColour[] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
                                  PNG_COLOR_TYPE_RGB_ALPHA};
    png_set_write_fn(png, &io, write_bytes, flush);
    png_set_IHDR(png, info, png_uint_32(image.width), png_uint_32(image.height), image.bit_depth,
                 kColour[image.channels], PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    if (image.bit_depth == 16) png_set_swap(png);
    png_write_image(png, rows);
    png_write_end(png, info);
    return true;
}

}  // namespace

ImageFile read_png(const std::string& bytes, const std::string& name) {
    Io io;
    io.input = &bytes;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &io, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : nullptr;
    if (!info) {
        png_destroy_read_struct(&png, nullptr, nullptr);
        throw ImageFileError(name + ": out of memory in libpng");
    }
    // libpng's own width and height limits off (up to PNG's 2^31 - 1): the pixel count is checked after the header
    // against the one limit every reader and the API share, so a bomb is "too large", not "corrupt".
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    ImageFile image;
    int orientation = 1;
    bool too_large = false;
    bool ok = read_header(png, info, io, image, too_large);
    if (ok && too_large) {
        png_destroy_read_struct(&png, &info, nullptr);
        throw ImageFileError(too_large_message(name, image.width, image.height));
    }
    std::vector<png_bytep> rows;
    if (ok) {
        try {
            image.data.resize(image.row_bytes() * size_t(image.height));
        } catch (const std::bad_alloc&) {
            png_destroy_read_struct(&png, &info, nullptr);
            throw ImageFileError(name + ": image too large to decode");
        }
        for (int y = 0; y < image.height; ++y) rows.push_back(image.data.data() + size_t(y) * image.row_bytes());
        ok = read_pixels(png, info, rows.data(), orientation);
    }
    png_destroy_read_struct(&png, &info, nullptr);
    if (!ok) throw ImageFileError(name + ": truncated or corrupt PNG (" + io.message + ")");
    if (image.width == 0 || image.height == 0) throw ImageFileError(name + ": image has zero width or height");
    return apply_orientation(image, orientation);
}

std::string encode_png(const ImageFile& image, const std::string& name) {
    if (image.channels < 1 || image.channels > 4 || (image.bit_depth != 8 && image.bit_depth != 16))
        throw ImageFileError(name + ": cannot write " + std::to_string(image.channels) + " channels at " +
                             std::to_string(image.bit_depth) + " bits as PNG");
    std::string out;
    Io io;
    io.output = &out;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &io, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : nullptr;
    if (!info) {
        png_destroy_write_struct(&png, nullptr);
        throw ImageFileError(name + ": out of memory in libpng");
    }
    std::vector<png_bytep> rows;
    for (int y = 0; y < image.height; ++y)
        rows.push_back(const_cast<png_bytep>(image.data.data() + size_t(y) * image.row_bytes()));
    const bool ok = write_all(png, info, io, image, rows.data());
    png_destroy_write_struct(&png, &info);
    if (!ok) throw ImageFileError(name + ": cannot encode PNG (" + io.message + ")");
    return out;
}

}  // namespace strsr
