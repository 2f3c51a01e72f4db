// Measured choices for conv3x3: implicit_gemm's block tile per layer, and what "auto"
// runs. The tables are generated from a GPU benchmark run (conv3x3_tuned.h, written by
// `python -m benchmarks.tune RESULTS.json --write`); this header looks them up.
// Torch-free and kernel-free: the op (auto, workspace) and the dispatch (tile) include it.
//
// Lookup. A tile entry matches a call whose (C, K, H, W, pool) equal the entry's (C as the
// kernel sees it, a multiple of 8; fp16 or fp32-with-TF32 measurement), the batch nearest N
// (ratio, ties to the larger) deciding among them; where the call's pool setting has none,
// the other's stands in (tuned_tile); no entry: the rule in conv3x3_implicit_gemm_plan.h.
// "auto" takes the measurement of the same (C, K, H, W) nearest the call in dtype, memory
// format, batch and pool (tuned_auto); a layer never measured takes the verdict of the
// measured layer nearest it in work (C, K and N*H*W; an empty table: "direct"). The tables come
// from one GPU (named in kTunedSource); they apply on every device this build runs on,
// the emulator included, so CPU tests see the GPU's choices.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <tuple>

#include "args.h"

namespace vk {

// mNnM: mma.sync tiles; wg128x128, wg256x64 (transposed), wg128x256 (two warpgroups),
// ws128x256 and ws128x128 (warp-specialised): wgmma (sm_90a), see conv3x3_implicit_gemm.cuh.
enum class ImplicitGemmTile { m128n64, m128n128, m256n128, m256n64, wg128x128, wg256x64, wg128x256, ws128x256, ws128x128 };

// The shape a measurement was taken at.
struct TunedShape {
  int64_t C, K, H, W;
  bool pool;
  int64_t N;
};

// tf32: measured in fp32 with TF32 math, for fp32 calls; else in fp16, for every dtype
// (fp32 where it has no tf32 entry: see conv3x3_implicit_gemm_plan.h).
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

// How far an auto entry's measurement stands from a call on the same (C, K, H, W), most
// telling first: fp32 against a 16-bit dtype (other kernels' speeds), the memory format
// (NCHW's implicit_gemm lays x out first), fp16 against bf16 (the same kernels: within 2%
// on the H200 run's layers).
inline int auto_mismatch(const TunedAuto& e, DType dtype, Layout layout) {
  return 4 * ((e.dtype == DType::float32) != (dtype == DType::float32)) + 2 * (e.layout != layout) +
         (e.dtype != dtype);
}

// How far a measured shape stands from a call's in the work its kernels see: the product
// of the ratios (larger over smaller) of C (as the kernel sees it), K and the output pixels
// N*H*W, i.e. exp of their summed |ln| (no log per entry: a few divisions).
inline double work_distance(const TunedShape& s, int64_t N, int64_t Cp, int64_t K, int64_t H, int64_t W) {
  const auto ratio = [](double a, double b) {
    a = a < 1.0 ? 1.0 : a, b = b < 1.0 ? 1.0 : b;
    return a > b ? a / b : b / a;
  };
  return ratio(double(s.C), double(Cp)) * ratio(double(s.K), double(K)) *
         ratio(double(s.N) * double(s.H) * double(s.W), double(N) * double(H) * double(W));
}

// "auto"'s pick. The table holds both verdicts (direct where implicit_gemm did not win);
// the entry of the same (C, K, H, W) measured nearest the call decides: least auto_mismatch,
// then nearest batch (nearer_batch), then the same pool setting. A layer measured in one
// dtype or format only (a time-limited run measures the headline fp16 channels_last first)
// so takes that verdict in the others.
// A layer never measured (another image size, other channel counts) takes the verdict of
// the entry nearest it: least auto_mismatch, then least work_distance, then the same pool
// setting (then, for an answer that does not depend on the table's order, the larger
// work, C, K, and fp16 before bf16). Measured on the H200 (a95939d, 199 entries):
// implicit_gemm won on every layer with C >= 64 (175 entries: every dtype, format and
// batch) by 2.3-14x; direct only on conv1_1 (C = 3) at batch 1 and in fp32 NCHW. Until
// 2026-12-06 a layer never measured ran direct (VGG16 at 256 x 256, say: every layer).
// An empty table: direct. C: the call's channel count (padded to a multiple of 8 here, as
// the kernel sees it).
inline TunedAlgo tuned_auto(const TunedAuto* table, size_t count, DType dtype, Layout layout, int64_t N, int64_t C,
                            int64_t K, int64_t H, int64_t W, bool pool, bool tf32_allowed) {
  const int64_t Cp = (C + 7) / 8 * 8;
  const TunedAuto* best = nullptr;
  for (size_t i = 0; i < count; ++i) {
    const TunedAuto& e = table[i];
    if (!(e.shape.C == Cp && e.shape.K == K && e.shape.H == H && e.shape.W == W)) continue;
    if (best != nullptr) {
      const int m = auto_mismatch(e, dtype, layout), mb = auto_mismatch(*best, dtype, layout);
      if (m != mb) {
        if (m > mb) continue;
      } else if (e.shape.N != best->shape.N) {
        if (!nearer_batch(N, e.shape.N, best->shape.N)) continue;
      } else if (e.shape.pool != pool || best->shape.pool == pool) {
        continue;
      }
    }
    best = &e;
  }
  if (best == nullptr) {
    // Nearer: a tuple compared in order (the first difference decides).
    const auto key = [&](const TunedAuto& e) {
      const TunedShape& s = e.shape;
      return std::make_tuple(auto_mismatch(e, dtype, layout), work_distance(s, N, Cp, K, H, W), s.pool != pool,
                             -double(s.N) * double(s.H) * double(s.W), -s.C, -s.K, e.dtype != DType::float16);
    };
    decltype(key(table[0])) best_key{};
    for (size_t i = 0; i < count; ++i) {
      const auto k = key(table[i]);
      if (best == nullptr || k < best_key) best = &table[i], best_key = k;
    }
  }
  if (best == nullptr) return TunedAlgo::direct;
  if (best->algo == TunedAlgo::implicit_gemm && dtype == DType::float32 && !tf32_allowed) return TunedAlgo::direct;
  return best->algo;
}

}  // namespace vk
