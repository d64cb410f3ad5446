// JPEG through libjpeg(-turbo). Its error handler must not return, so it longjmps back to the function that
// called libjpeg; those functions keep only trivially destructible locals after setjmp.
#include <cstdio>
// jpeglib.h needs size_t and FILE declared first.
#include <jpeglib.h>
// after jpeglib.h: the warning codes (JWRN_JPEG_EOF)
#include <jerror.h>

#include <algorithm>
#include <csetjmp>

#include "image_file.hpp"

namespace strsr {
namespace {

struct ErrorManager {
    jpeg_error_mgr base;
    std::jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
    bool reading_scanlines = false;  // the header and every multi-scan file's scans are in
    bool hit_end = false;            // the data ran out (libjpeg then supplies an EOI marker)
};

void on_error(j_common_ptr cinfo) {
    ErrorManager* err = reinterpret_cast<ErrorManager*>(cinfo->err);
    (*cinfo->err->format_message)(cinfo, err->message);
    std::longjmp(err->jump, 1);
}

// Warnings (e.g. extraneous bytes, a bad Huffman code) are not errors, as in Pillow; a truncated file is (Pillow:
// "image file is truncated"), where libjpeg would fill the missing pixels with grey: the data ending before the
// header and all scans of a multi-scan file are in, or ending in the middle of the scan (the decoder then hits the
// EOI marker libjpeg supplies while it still needs bits). A file that only lacks its final EOI marker decodes, as
// in Pillow: libjpeg reads ahead for it after the last MCU, and needs no more bits.
void on_message(j_common_ptr cinfo, int level) {
    ErrorManager* err = reinterpret_cast<ErrorManager*>(cinfo->err);
    if (level >= 0) return;  // trace messages
    const int code = cinfo->err->msg_code;
    if (code == JWRN_JPEG_EOF) err->hit_end = true;
    const bool truncated = code == JWRN_JPEG_EOF ? !err->reading_scanlines : code == JWRN_HIT_MARKER && err->hit_end;
    if (truncated) {
        cinfo->err->msg_code = JWRN_JPEG_EOF;  // reported as "Premature end of JPEG file"
        on_error(cinfo);
    }
}

constexpr int kExifMarker = JPEG_APP0 + 1;

int orientation_of(const jpeg_decompress_struct& cinfo) {
    for (jpeg_saved_marker_ptr m = cinfo.marker_list; m; m = m->next)
        if (m->marker == kExifMarker && m->data_length > 6 && std::equal(m->data, m->data + 6, "Exif\0\0"))
            return exif_orientation(m->data + 6, m->data_length - 6);
    return 1;
}

// Reads the header and, unless the image is over STRSR_MAX_INPUT_PIXELS (`too_large`), starts decompressing.
bool decode_header(jpeg_decompress_struct& cinfo, ErrorManager& err, const std::string& bytes, ImageFile& image,
                   int& orientation, bool& too_large) {
    if (setjmp(err.jump)) return false;
    jpeg_mem_src(&cinfo, reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<unsigned long>(bytes.size()));
    jpeg_save_markers(&cinfo, kExifMarker, 0xffff);
    jpeg_read_header(&cinfo, TRUE);
    // The saved markers live in libjpeg's image pool, which jpeg_finish_decompress frees: read the EXIF now.
    orientation = orientation_of(cinfo);
    image.width = int(cinfo.image_width);
    image.height = int(cinfo.image_height);
    too_large = too_large_image(cinfo.image_width, cinfo.image_height);
    if (too_large) return true;
    // Grey stays grey; YCbCr and RGB become RGB. CMYK/YCCK decode as CMYK and are refused below.
    if (cinfo.jpeg_color_space != JCS_GRAYSCALE && cinfo.jpeg_color_space != JCS_CMYK &&
        cinfo.jpeg_color_space != JCS_YCCK)
        cinfo.out_color_space = JCS_RGB;
    jpeg_start_decompress(&cinfo);
    image.width = int(cinfo.output_width);
    image.height = int(cinfo.output_height);
    image.channels = cinfo.output_components;
    image.bit_depth = 8;
    return true;
}

bool decode_pixels(jpeg_decompress_struct& cinfo, ErrorManager& err, ImageFile& image) {
    if (setjmp(err.jump)) return false;
    err.reading_scanlines = true;
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = image.data.data() + size_t(cinfo.output_scanline) * image.row_bytes();
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    return true;
}

bool encode_all(jpeg_compress_struct& cinfo, ErrorManager& err, const ImageFile& image, unsigned char** buffer,
                unsigned long* size) {
    if (setjmp(err.jump)) return false;
    jpeg_mem_dest(&cinfo, buffer, size);
    cinfo.image_width = JDIMENSION(image.width);
    cinfo.image_height = JDIMENSION(image.height);
    cinfo.input_components = image.channels;
    cinfo.in_color_space = image.channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, 95, TRUE);
    // No chroma subsampling, as strsr's Python writer: it would blur the colour edges the model restored.
    for (int c = 0; c < cinfo.num_components; ++c) cinfo.comp_info[c].h_samp_factor = cinfo.comp_info[c].v_samp_factor = 1;
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = const_cast<JSAMPROW>(image.data.data() + size_t(cinfo.next_scanline) * image.row_bytes());
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    return true;
}

}  // namespace

ImageFile read_jpeg(const std::string& bytes, const std::string& name) {
    jpeg_decompress_struct cinfo;
    ErrorManager err;
    cinfo.err = jpeg_std_error(&err.base);
    err.base.error_exit = on_error;
    err.base.emit_message = on_message;
    jpeg_create_decompress(&cinfo);
    ImageFile image;
    int orientation = 1;
    bool too_large = false;
    bool ok = decode_header(cinfo, err, bytes, image, orientation, too_large);
    if (ok && too_large) {
        jpeg_destroy_decompress(&cinfo);
        throw ImageFileError(too_large_message(name, image.width, image.height));
    }
    bool cmyk = ok && image.channels == 4;
    if (ok && !cmyk) {
        try {
            image.data.resize(image.row_bytes() * size_t(image.height));
        } catch (const std::bad_alloc&) {
            jpeg_destroy_decompress(&cinfo);
            throw ImageFileError(name + ": image too large to decode");
        }
        ok = decode_pixels(cinfo, err, image);
    }
    jpeg_destroy_decompress(&cinfo);
    if (!ok) throw ImageFileError(name + ": truncated or corrupt JPEG (" + err.message + ")");
    if (cmyk) throw ImageFileError(name + ": CMYK JPEG is not supported by strsr-infer; convert it to RGB");
    return apply_orientation(image, orientation);
}

std::string encode_jpeg(const ImageFile& image, const std::string& name) {
    if (image.bit_depth != 8 || (image.channels != 1 && image.channels != 3))
        throw ImageFileError(name + ": JPEG stores 8-bit grey or RGB only (no alpha, no 16-bit); use .png");
    jpeg_compress_struct cinfo;
    ErrorManager err;
    cinfo.err = jpeg_std_error(&err.base);
    err.base.error_exit = on_error;
    err.base.emit_message = on_message;
    jpeg_create_compress(&cinfo);
    unsigned char* buffer = nullptr;
    unsigned long size = 0;
    const bool ok = encode_all(cinfo, err, image, &buffer, &size);
    jpeg_destroy_compress(&cinfo);
    std::string out = ok ? std::string(reinterpret_cast<const char*>(buffer), size) : std::string();
    std::free(buffer);
    if (!ok) throw ImageFileError(name + ": cannot encode JPEG (" + err.message + ")");
    return out;
}

}  // namespace strsr
