// image_diff A B MAX: exit 0 when two images have the same size and channels and no sample differs by more than
// MAX; prints the largest difference and how many samples differ. For the CLI parity tests.
#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "image_file.hpp"

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: image_diff A B MAX\n");
        return 2;
    }
    try {
        const strsr::ImageFile a = strsr::read_image(argv[1]), b = strsr::read_image(argv[2]);
        if (a.width != b.width || a.height != b.height || a.channels != b.channels || a.bit_depth != b.bit_depth) {
            std::fprintf(stderr, "image_diff: %s is %dx%dx%d@%d, %s is %dx%dx%d@%d\n", argv[1], a.width, a.height,
                         a.channels, a.bit_depth, argv[2], b.width, b.height, b.channels, b.bit_depth);
            return 1;
        }
        int worst = 0;
        size_t differing = 0;
        for (size_t i = 0; i < a.data.size(); ++i) {
            const int d = std::abs(int(a.data[i]) - int(b.data[i]));
            worst = std::max(worst, d);
            differing += d != 0;
        }
        std::printf("%s: max abs difference %d, %zu of %zu samples differ\n", argv[2], worst, differing, a.data.size());
        return worst <= std::atoi(argv[3]) ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "image_diff: %s\n", e.what());
        return 2;
    }
}
