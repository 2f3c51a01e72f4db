// Measured choices for conv3x3: implicit_gemm's block tile per layer, and what "auto"
// runs. The tables are generated from a GPU benchmark run (conv3x3_tuned.h, written by
// `python -m benchmarks.tune RESULTS.json --write`); this header looks them up.
// Torch-free and kernel-free: the op (auto, workspace) and the dispatch (tile) include it.
//
// Lookup: a table entry matches a call whose (C, K, H, W, pool) equal the entry's (C as
// the kernel sees it, a multiple of 8; for "auto" also dtype and layout; for a tile, fp16
// or fp32-with-TF32 measurement); among the
// entries that match, the one measured at the batch nearest N (ratio, ties to the larger)
// decides; a tile entry of the other pool setting stands in where the call's has none
// (tuned_tile). No match: the rules in conv3x3_implicit_gemm_plan.h (tile) and "direct"
// (auto). The tables come from one GPU (named in kTunedSource); they apply on every
// device this build runs on, the emulator included, so CPU tests see the GPU's choices.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "args.h"

namespace vk {

// mNnM: mma.sync tiles; wg128x128, wg256x64 (transposed) and wg128x256 (two warpgroups):
// wgmma (sm_90a), see conv3x3_implicit_gemm.cuh.
enum class ImplicitGemmTile { m128n64, m128n128, m256n128, m256n64, wg128x128, wg256x64, wg128x256 };

// The shape a measurement was taken at.
struct TunedShape {
  int64_t C, K, H, W;
  bool pool;
  int64_t N;
};

// tf32: measured in fp32 with TF32 math, for fp32 calls; else in fp16, for every dtype
// (fp32 where it has no tf32 entry, a wgmma tile there as its mma.sync twin: see
// conv3x3_implicit_gemm_plan.h).
struct TunedTile {
  TunedShape shape;
  ImplicitGemmTile tile;
  bool tf32;
};

// "auto"'s pick among the algorithms it may choose: "direct", or "implicit_gemm" (fp32
// only where TF32 is allowed: an fp32 implicit_gemm entry was measured with TF32 on, and
// without TF32 auto falls back to direct). Winograd is never auto's pick: its error bound
// is looser than direct's (README, Numerics); it runs where asked for by name.
enum class TunedAlgo { direct, implicit_gemm };

struct TunedAuto {
  DType dtype;
  Layout layout;
  TunedShape shape;
  TunedAlgo algo;
};

// Is batch `candidate` nearer to n than `best` (by ratio: |log(m / n)|; ties: the larger)?
inline bool nearer_batch(int64_t n, int64_t candidate, int64_t best) {
  const double nn = n > 0 ? double(n) : 1.0;
  const double dc = std::fabs(std::log(double(candidate) / nn)), db = std::fabs(std::log(double(best) / nn));
  return dc < db || (dc == db && candidate > best);
}

inline bool same_layer(const TunedShape& s, int64_t C, int64_t K, int64_t H, int64_t W, bool pool) {
  return s.C == C && s.K == K && s.H == H && s.W == W && s.pool == pool;
}

// The entry of `table` (count entries) for this call, or nullptr.
template <class Entry, class Match>
const Entry* tuned_entry(const Entry* table, size_t count, int64_t N, Match&& match) {
  const Entry* best = nullptr;
  for (size_t i = 0; i < count; ++i) {
    if (!match(table[i])) continue;
    if (best == nullptr || nearer_batch(N, table[i].shape.N, best->shape.N)) best = &table[i];
  }
  return best;
}

// The entry measured in fp32 with TF32 (tf32) or in fp16 (!tf32) for this layer, or nullptr.
// A layer with no entry for its own epilogue takes the one measured on the same (C, K, H, W)
// with the other (pooled or not): the sweep times each shape once, with the epilogue of
// VGG's layer that pools (conv3_3 for conv3_2's shape), and the pool changes only the
// epilogue, not the main loop the tile shapes. Measured on the H200
// (benchmarks/results/2026-12-04_H200_a95939d.json, batch 64, fp16 channels_last, one tile):
// relu and relu_pool within 2% on conv1_2, conv2_2, conv4_2 and conv5, 8% on conv3_2.
inline const TunedTile* tuned_tile(const TunedTile* table, size_t count, bool tf32, int64_t N, int64_t C, int64_t K,
                                   int64_t H, int64_t W, bool pool) {
  for (const bool p : {pool, !pool}) {
    const TunedTile* e = tuned_entry(
        table, count, N, [&](const TunedTile& t) { return t.tf32 == tf32 && same_layer(t.shape, C, K, H, W, p); });
    if (e != nullptr) return e;
  }
  return nullptr;
}

// C: the call's channel count (padded to a multiple of 8 here, as the kernel sees it).
inline TunedAlgo tuned_auto(const TunedAuto* table, size_t count, DType dtype, Layout layout, int64_t N, int64_t C,
                            int64_t K, int64_t H, int64_t W, bool pool, bool tf32_allowed) {
  const int64_t Cp = (C + 7) / 8 * 8;
  const TunedAuto* e = tuned_entry(table, count, N, [&](const TunedAuto& t) {
    return t.dtype == dtype && t.layout == layout && same_layer(t.shape, Cp, K, H, W, pool);
  });
  if (e == nullptr) return TunedAlgo::direct;
  if (e->algo == TunedAlgo::implicit_gemm && dtype == DType::float32 && !tf32_allowed) return TunedAlgo::direct;
  return e->algo;
}

}  // namespace vk
