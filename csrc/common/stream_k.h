// Stream-K: how ws128x256's persistent grid (y NHWC) shares its work where the tiles do
// not divide by the grid (ws128x128 keeps whole tiles: its kStreamK). Host and device
// compute the same schedule from this header (the plan sizes the workspace with it, the
// kernel walks it).
//
// Why: conv5 at batch 64 is 196 tiles of 128 x 256 on 132 SMs. One tile per block and turn
// takes two turns, the second on 64 SMs: 74% of the GPU's tensor time is used (H200,
// a95939d: wg128x256 137 us, 44% of the fp16 peak, where its tiles ran at 59% while they
// ran). Stream-K gives every block the same number of K slices instead: the tiles' slices,
// numbered tile by tile, are cut into G equal ranges, one per block, so a tile may be
// computed in parts by two (or, with short ranges, more) blocks, each adding its slices'
// products; the part that finds the others done adds their sums and runs the epilogue.
//
// Schedule over G blocks: items [0, dp_items) are data-parallel, whole (item d by block
// d % G, in turn: the plan's items, split-K's included); the sk_tiles tiles after them
// (no split-K) are the stream-K region, its sk_tiles x slices slices numbered tile by
// tile, block b taking [begin(b), begin(b + 1)), begin(b) = floor(b I / G). The plan puts
// the remainder and one full turn there (tiles % G + G tiles: every block's range at
// least a tile long, so a tile has at most 2 parts), or every tile where there are fewer
// tiles than blocks; the full turns before it stay whole. A block's range touches
// consecutive tiles, whole except the first and the last: its items are its data-parallel
// ones, then one per tile touched (a segment). 32-bit arithmetic (the consumers compute
// their segment after the main loop, with the accumulators live: a 64-bit division there is
// a call that cost 3 registers and local-memory reloads in the loop, python -m
// benchmarks.sass_loop): the plan keeps dp_items, and sk_tiles x slices x (grid + 1), under
// 2^31.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define VK_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define VK_HOST_DEVICE inline
#endif

namespace vk {

// Block b's segment j of the stream-K region: K slices [kt0, kt0 + n) of stream-K tile
// `tile` (0-based in the region), part `part` of its `parts` (by K order), and `slot`: the
// fixup slot its partial sums go to (2b for the block's first segment, 2b + 1 for its last).
struct StreamKSegment {
  int tile, kt0, n, slot;
  int part, parts;
};

struct StreamKSchedule {
  int grid = 1;      // G: the blocks
  int dp_items = 0;  // items [0, dp_items): whole, block d % G takes item d
  int sk_tiles = 0;  // the stream-K region's tiles (the plan's items dp_items on)
  int slices = 1;    // K slices per tile
  int max_parts = 1;  // the most parts of any stream-K tile

  VK_HOST_DEVICE int sk_slices() const { return sk_tiles * slices; }  // I
  // The first stream-K slice of block b (b = G: the end). The plan keeps I (G + 1) < 2^31.
  VK_HOST_DEVICE int begin(int b) const { return b * sk_slices() / grid; }
  // The block whose range holds slice i: the largest b with begin(b) <= i.
  VK_HOST_DEVICE int block_of(int i) const { return ((i + 1) * grid - 1) / sk_slices(); }
  VK_HOST_DEVICE int dp_count(int b) const { return b < dp_items ? (dp_items - b + grid - 1) / grid : 0; }
  // Block b's items: its data-parallel ones, then a segment per stream-K tile its range touches.
  VK_HOST_DEVICE int items(int b) const {
    const int lo = begin(b), hi = begin(b + 1);
    return dp_count(b) + (hi > lo ? (hi - 1) / slices - lo / slices + 1 : 0);
  }
  // Stream-K tile u's parts: the blocks whose ranges touch it, first_block(u) on.
  VK_HOST_DEVICE int first_block(int u) const { return block_of(u * slices); }
  VK_HOST_DEVICE int parts_of(int u) const {
    return block_of(u * slices + slices - 1) - first_block(u) + 1;
  }
  // The fixup slot of part k of tile u: its block's first segment (2b) or its last (2b +
  // 1). Parts 1 on begin inside the tile, so it is their first: 2 (first_block(u) + k);
  // part 0 is its block's first where that block's range begins at the tile's first slice.
  VK_HOST_DEVICE int slot(int u, int k) const {
    const int b0 = first_block(u);
    return 2 * (b0 + k) + (k == 0 && begin(b0) != u * slices ? 1 : 0);
  }
  // Block b's segment j (0 = its first stream-K item).
  VK_HOST_DEVICE StreamKSegment segment(int b, int j) const {
    const int lo = begin(b), hi = begin(b + 1);
    StreamKSegment s;
    s.tile = lo / slices + j;
    const int start = s.tile * slices;
    s.kt0 = lo > start ? lo - start : 0;
    s.n = (hi < start + slices ? hi - start : slices) - s.kt0;
    s.parts = parts_of(s.tile);
    s.part = b - first_block(s.tile);
    s.slot = slot(s.tile, s.part);  // 2b where j = 0, else 2b + 1
    return s;
  }
};

}  // namespace vk
