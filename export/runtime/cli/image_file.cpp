#include "image_file.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "strsr/strsr_runtime.h"

namespace strsr {
namespace {

std::string lower_suffix(const std::string& path) {
    std::string suffix = std::filesystem::path(path).extension().string();
    std::transform(suffix.begin(), suffix.end(), suffix.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    return suffix;
}

}  // namespace

bool too_large_image(uint64_t width, uint64_t height) { return width * height > uint64_t(STRSR_MAX_INPUT_PIXELS); }

std::string too_large_message(const std::string& name, int64_t width, int64_t height) {
    std::string limit = std::to_string(STRSR_MAX_INPUT_PIXELS);  // with thousands separators, as Python's {:,}
    for (size_t at = limit.size(); at > 3; at -= 3) limit.insert(at - 3, ",");
    return name + ": " + std::to_string(width) + "x" + std::to_string(height) + " is too large (over " + limit +
           " pixels)";
}

ImageFile read_image(const std::string& path) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) throw ImageFileError(path + ": no such file");
    if (std::filesystem::is_directory(path, ec)) throw ImageFileError(path + ": is a folder, not an image file");
    std::ifstream in(path, std::ios::binary);
    std::ostringstream buffer;
    buffer << in.rdbuf();
    if (!in) throw ImageFileError(path + ": cannot read");
    const std::string bytes = buffer.str();
    if (bytes.empty()) throw ImageFileError(path + ": empty file (0 bytes)");
    if (bytes.size() >= 8 && bytes.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0) return read_png(bytes, path);
    if (bytes.size() >= 3 && bytes.compare(0, 3, "\xff\xd8\xff") == 0) return read_jpeg(bytes, path);
    throw ImageFileError(path + ": not a PNG or JPEG image (strsr-infer reads .png and .jpg)");
}

void write_image(const std::string& path, const ImageFile& image) {
    const std::string suffix = lower_suffix(path);
    std::string encoded;
    if (suffix == ".png")
        encoded = encode_png(image, path);
    else if (suffix == ".jpg" || suffix == ".jpeg")
        encoded = encode_jpeg(image, path);
    else
        throw ImageFileError(path + ": unsupported suffix '" + suffix + "' (use .png, .jpg or .jpeg)");
    const std::filesystem::path target(path);
    std::error_code ec;
    const std::filesystem::path folder = target.has_parent_path() ? target.parent_path() : ".";
    if (!std::filesystem::is_directory(folder, ec))
        throw ImageFileError(path + ": folder " + folder.string() + " does not exist");
    // A hidden temporary beside the target, renamed over it: a failure never leaves a partial output file.
    const std::filesystem::path temp =
        folder / ("." + target.filename().string() + "." + std::to_string(std::random_device{}()) + ".tmp");
    {
        std::ofstream out(temp, std::ios::binary | std::ios::trunc);
        out.write(encoded.data(), std::streamsize(encoded.size()));
        out.close();
        if (!out) {
            std::filesystem::remove(temp, ec);
            throw ImageFileError(path + ": cannot write to folder " + folder.string());
        }
    }
    std::filesystem::rename(temp, target, ec);
    if (ec) {
        const std::string reason = ec.message();
        std::filesystem::remove(temp, ec);
        throw ImageFileError(path + ": cannot write (" + reason + ")");
    }
}

}  // namespace strsr
