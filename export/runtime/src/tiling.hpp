// Output-space tiling with linear feathering: the C++ twin of strsr/tiling.py (same window placement, same ramp,
// same float32 arithmetic), so both runtimes cut and blend an image identically.
#pragma once

#include <cstdint>
#include <vector>

#include "image.hpp"

namespace strsr {

struct Tile {
    int top = 0;
    int left = 0;
    int height = 0;
    int width = 0;
    int bottom() const { return top + height; }
    int right() const { return left + width; }
};

// Window starts covering [0, length): first 0, last window ending at `length`, neighbours overlapping by at least
// `overlap`, starts multiples of `align`, as few windows as that allows, spread evenly. Throws on bad arguments.
std::vector<int> tile_starts(int length, int tile, int overlap, int align = 1);

// Row-major tiles covering (height, width): the product of tile_starts along each axis.
std::vector<Tile> plan_tiles(int height, int width, int tile, int overlap, int align = 1);

// (length) weights: 1, ramping to (i + 0.5) / overlap at each feathered end (the smaller ramp wins).
std::vector<float> feather_ramp(int length, bool feather_start, bool feather_end, int overlap);

// (tile.height * tile.width) separable weights; sides on the image border are not feathered.
std::vector<float> feather_weights(const Tile& tile, int height, int width, int overlap);

// Accumulates feathered tiles into a float32 canvas and normalises by the weight sum.
class TileBlender {
public:
    TileBlender(int channels, int height, int width, int overlap);
    void add(const Tile& tile, const Planar& pixels);
    // The normalised blend; throws if some pixel was covered by no tile.
    Planar result() const;

private:
    Planar canvas_;
    std::vector<float> weight_sum_;
    int overlap_;
};

}  // namespace strsr
