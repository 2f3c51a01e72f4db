// conv3x3_implicit_gemm's plan: the block tile, the split of K_gemm across blocks, and
// the workspace that split needs. Torch-free and kernel-free: the op computes it once
// (it allocates the workspace) and hands it to the dispatch (which launches) as args.plan.
//
// Tile: the measured table's (conv3x3_tables.h: the build's, or one set at run time; for
// the layers a GPU run timed: see conv3x3_tuning.h). Else, where wgmma runs (below), the
// table's choice for the K of every layer it holds: wg256x64 where K <= 64, wg128x128
// below K = 256, wg128x256 from it (the wgmma-wide policy's tiles; on the H200, a95939d,
// batch 64, fp16: the sweep's fastest on all 9 of VGG16's layer shapes, at 0.70-0.89x the
// mma.sync rule's time; until 2026-12-06 a layer without an entry ran that rule). Else the
// rule: 256 x 64 (4 warps) where K <= 64 and 128 x 128 (4 warps) otherwise (by counting:
// 256 x 64 has a 62% shared-memory cap and 3.5 instructions per mma against 128 x 64's
// 57% and 4.0); 128 x 64 and 256 x 128 where forced or measured fastest.
// Split-K: where the grid has fewer blocks than the GPU has SMs (late VGG layers at small
// batch: conv5 at batch 1 is 2 M tiles x 4 K tiles of 128 x 128 = 8 blocks on 132 SMs, 6%
// of the GPU), the 64-byte K slices are split into S ranges of at least 8
// slices, S <= 16, chosen so that blocks x S reaches the SM count; each block writes its
// fp32 partial sums to a workspace [S][M][K], and a second kernel adds the S partials in
// order, then bias, ReLU and the pool. By counting: conv5 at batch 1 goes from 8 blocks
// x 144 slices to 128 blocks x 9 slices, for 6.4 MB of partials through memory (~2 us).
// ws128x256, persistent (y NHWC), has stream-K instead (stream_k.h): there, and where
// whole tiles would leave the grid's last turn short, the blocks share the tiles' slices
// equally and finish cut tiles in the kernel; VGGKERN_IMPLICIT_GEMM_SPLIT_K keeps split-K.
// wg128x128, wg256x64 (one warpgroup), wg128x256 (two) and ws128x256 and ws128x128 (two
// computing warpgroups, on every item or ping-pong, and a producer warpgroup that makes the
// copies) use wgmma (on an sm_90a build and a compute capability 9.0 GPU, args.wgmma): the
// wg tiles by default there (the H200 checked wg128x128, wg256x64 and wg128x256 against
// the emulator bit for bit), the ws tiles only where forced or measured fastest (they have
// not run on a GPU yet). A measured wgmma tile on a device without wgmma runs as its mma.sync
// fallback: the tile of its shape (wg128x256: 128 x 128, 1 of its 2 blocks per SM). fp32
// (TF32) has entries of its own, measured in fp32 (benchmarks/tune.py); where it has none
// it takes the fp16 entry's tile as it is (until f697b76 a wgmma tile ran as its mma.sync
// twin, as wgmma then read x truncated to TF32: since the kernel rounds x first, the
// wgmma tiles compute what mma.sync does. Measured on the H200, VGG16 fp32 with TF32 at
// batch 64: 10.85 ms on the fp16 entries' tiles (wgmma-wide, the same tiles), 12.20 ms on
// their mma.sync twins; benchmarks/results/focus/2026-12-04_H200_f697b76_*,
// network/2026-12-04_H200_9f429b0_*). A measured tile whose
// shared memory the device cannot give a block (args.smem_optin: 256x128's 136 KiB on a
// compute capability 8.6/8.9 GPU) runs as the rule's tile; a forced one fails at launch,
// naming the bytes it needs and the device's limit.
// Environment (read per launch; tuning knobs for the benchmarks' sweeps):
//   VGGKERN_IMPLICIT_GEMM_TILE=128x64|128x128|256x128|256x64|wg128x128|wg256x64|wg128x256|ws128x256|ws128x128
//                                                        forces the tile; or a wgmma policy
//                              wgmma (wg256x64 where K <= 64, else wg128x128) or
//                              wgmma-wide (the same, and wg128x256 where K >= 256) or
//                              wgmma-ws (the same, with ws128x256 there and ws128x128
//                              for wg128x128),
//                              for timing whole networks on wgmma before a table says so
//   VGGKERN_IMPLICIT_GEMM_SPLIT_K=S                      forces S (1: no split)
//   VGGKERN_IMPLICIT_GEMM_GRID=N                         the ws tiles' persistent grid
//                                                        (default one block per SM)
//   VGGKERN_IMPLICIT_GEMM_STREAM_K=on|off                ws128x256's stream-K (default:
//                                                        where the tiles leave a short turn)
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <iterator>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>

#include "args.h"
#include "conv3x3_tables.h"
#include "launch_geometry.h"
#include "stream_k.h"

namespace vk {

struct ImplicitGemmPlan {
  ImplicitGemmTile tile;
  int bm, bn;
  int64_t M;                 // GEMM rows: N*H*W, or 4 * N*(H/2)*(W/2) with pool
  int64_t m_tiles, k_blocks;
  int64_t slices;            // 64-byte K slices of K_gemm = 9*C
  int splits;                // S: K ranges, one block each (1: no split-K)
  int64_t slices_per_split;
  // The work items (M tile, K tile, split) and the grid that takes them: one block each,
  // or, persistent (the ws tiles with y NHWC), sk.grid blocks in turn, with stream-K's
  // region where the plan chose it (sk.sk_tiles > 0; stream_k.h).
  bool persistent = false;
  StreamKSchedule sk;
  int64_t blocks() const { return m_tiles * k_blocks * splits; }
  int64_t grid() const { return persistent ? int64_t(sk.grid) : blocks(); }
  // fp32 elements of the workspace: split-K's partial sums [S][M][K], or stream-K's fixup
  // slots (two per block, a tile's BM x BN sums each); 0 with neither.
  int64_t workspace_floats(int64_t K) const {
    return splits > 1 ? int64_t(splits) * M * K : sk.sk_tiles > 0 ? 2 * int64_t(sk.grid) * bm * bn : 0;
  }
  // Stream-K's arrival counters, one int per stream-K tile, zero before the launch.
  int64_t fixup_counters() const { return sk.sk_tiles; }
};

// The tiles' names, by ImplicitGemmTile.
inline constexpr const char* kImplicitGemmTileNames[] = {"128x64",    "128x128",  "256x128",  "256x64",
                                                         "wg128x128", "wg256x64", "wg128x256", "ws128x256",
                                                         "ws128x128"};

inline const char* implicit_gemm_tile_name(ImplicitGemmTile t) { return kImplicitGemmTileNames[static_cast<int>(t)]; }

// The tile of that name; anything else is an error naming `source`.
inline ImplicitGemmTile implicit_gemm_tile_named(const std::string& name, const char* source) {
  std::string valid;
  for (size_t i = 0; i < std::size(kImplicitGemmTileNames); ++i) {
    if (name == kImplicitGemmTileNames[i]) return static_cast<ImplicitGemmTile>(i);
    valid += (i == 0 ? "" : i + 1 == std::size(kImplicitGemmTileNames) ? " or " : ", ");
    valid += kImplicitGemmTileNames[i];
  }
  throw std::invalid_argument(std::string("vggkern.conv3x3: ") + source + " must be " + valid +
                              (std::string(source) == "VGGKERN_IMPLICIT_GEMM_TILE" ? " (or wgmma, wgmma-wide, wgmma-ws)" : "") +
                              ", got '" + name + "'");
}

// The wgmma policies' tile for a layer of K output channels: wgmma: wg256x64 where K <=
// 64, else wg128x128; wgmma-wide: also wg128x256 where K >= 256; wgmma-ws: ws128x256 there
// and ws128x128 for wg128x128 (its warp-specialised twin where K < 256).
inline bool is_wgmma_policy(const std::string& name) {
  return name == "wgmma" || name == "wgmma-wide" || name == "wgmma-ws";
}
inline ImplicitGemmTile wgmma_policy_tile(const std::string& policy, int64_t K) {
  if (K <= 64) return ImplicitGemmTile::wg256x64;
  if (policy == "wgmma-ws") return K < 256 ? ImplicitGemmTile::ws128x128 : ImplicitGemmTile::ws128x256;
  return K < 256 || policy == "wgmma" ? ImplicitGemmTile::wg128x128 : ImplicitGemmTile::wg128x256;
}

// One of implicit_gemm's two-way switches (VGGKERN_IMPLICIT_GEMM_NCHW_Y, _K_ORDER), read
// per launch since the tests and benchmarks toggle them: unset, `a` or `b`,
// else an error naming the variable. True where it is set to `on`.
inline bool env_switch(const char* name, const std::string& a, const std::string& b, const std::string& on) {
  const char* e = std::getenv(name);
  const std::string v = e != nullptr ? e : "";
  if (!v.empty() && v != a && v != b)
    throw std::invalid_argument(std::string("vggkern.conv3x3: ") + name + " must be \"" + a + "\" or \"" + b +
                                "\", got '" + v + "'");
  return v == on;
}

inline bool is_wgmma(ImplicitGemmTile t) {
  return t == ImplicitGemmTile::wg128x128 || t == ImplicitGemmTile::wg256x64 || t == ImplicitGemmTile::wg128x256 ||
         t == ImplicitGemmTile::ws128x256 || t == ImplicitGemmTile::ws128x128;
}

// What a wgmma tile runs as where wgmma does not: the mma.sync tile of its shape, or
// (wg128x256 and ws128x256, which have none) of its 128 rows and half its columns.
inline ImplicitGemmTile mma_sync_twin(ImplicitGemmTile t) {
  switch (t) {
    case ImplicitGemmTile::wg128x128:
    case ImplicitGemmTile::wg128x256:
    case ImplicitGemmTile::ws128x256:
    case ImplicitGemmTile::ws128x128: return ImplicitGemmTile::m128n128;
    case ImplicitGemmTile::wg256x64: return ImplicitGemmTile::m256n64;
    default: return t;
  }
}

// The block tile (BM rows = output pixels, BN columns = output channels).
inline int tile_rows(ImplicitGemmTile t) {
  return t == ImplicitGemmTile::m256n128 || t == ImplicitGemmTile::m256n64 || t == ImplicitGemmTile::wg256x64 ? 256
                                                                                                               : 128;
}
inline int tile_columns(ImplicitGemmTile t) {
  return t == ImplicitGemmTile::wg128x256 || t == ImplicitGemmTile::ws128x256                                 ? 256
         : t == ImplicitGemmTile::m128n64 || t == ImplicitGemmTile::m256n64 || t == ImplicitGemmTile::wg256x64 ? 64
                                                                                                               : 128;
}

// Dynamic shared memory per block of each tile, by ImplicitGemmTile: the larger of its
// stages (64-byte rows, either element size) and its fp32 epilogue tile, i.e. the kernel's
// ImplicitGemmTiling::kSmemBytes (conv3x3_implicit_gemm_run checks that they agree):
// 48, 68, 136, 80, 96, 100, 144, 144 and 128 KiB; with 16-bit elements the ws tiles add
// their epilogue's staging of y (one BM x BN tile per computing group: ws128x256 64 KiB,
// 208 in all; ws128x128 2 x 32 KiB, 192 in all).
inline constexpr int64_t kImplicitGemmTileSmemBytes[] = {49152, 69632,  139264, 81920, 98304,
                                                         102400, 147456, 147456, 131072};

inline int64_t tile_smem_bytes(ImplicitGemmTile t, int element_bytes) {
  const int64_t staging = element_bytes != 2                 ? 0
                          : t == ImplicitGemmTile::ws128x256 ? 128 * 256 * 2
                          : t == ImplicitGemmTile::ws128x128 ? 2 * 128 * 128 * 2
                                                             : 0;
  return kImplicitGemmTileSmemBytes[static_cast<int>(t)] + staging;
}

// Can this call run a wgmma tile? On a device (and build) that has wgmma.
inline bool wgmma_runs(const Conv3x3Args& a) { return a.wgmma; }

// Does the tile's shared memory fit what a block may have on this device? (A table measured
// on an H100 may name 256x128, whose 136 KiB a compute capability 8.6/8.9 GPU's 99 KiB
// cannot hold.)
inline bool tile_fits(const Conv3x3Args& a, ImplicitGemmTile t) {
  return a.smem_optin <= 0 || tile_smem_bytes(t, a.dtype == DType::float32 ? 4 : 2) <= a.smem_optin;
}

// VGGKERN_IMPLICIT_GEMM_TILE, else the measured table, else the rule. a.C: as the kernel sees it.
inline ImplicitGemmTile implicit_gemm_tile(const Conv3x3Args& a) {
  const char* forced = std::getenv("VGGKERN_IMPLICIT_GEMM_TILE");
  if (forced != nullptr && forced[0] != '\0') {
    const std::string name(forced);
    const ImplicitGemmTile t = is_wgmma_policy(name) ? wgmma_policy_tile(name, a.K)
                                                     : implicit_gemm_tile_named(name, "VGGKERN_IMPLICIT_GEMM_TILE");
    if (is_wgmma(t) && !wgmma_runs(a))
      throw std::invalid_argument(std::string("vggkern.conv3x3: VGGKERN_IMPLICIT_GEMM_TILE=") + forced +
                                  " runs only on a build for sm_90a (TORCH_CUDA_ARCH_LIST=9.0a) and a compute "
                                  "capability 9.0 GPU (H100/H200)");
    return t;
  }
  // fp32: its own (tf32) entry first, else the fp16 one; a wgmma tile runs on a device that
  // has wgmma, else as its mma.sync twin.
  const bool fp32 = a.dtype == DType::float32;
  const TunedTables tables = tuned_tables();
  auto lookup = [&](bool tf32) {
    return tuned_tile(tables.tiles, tables.n_tiles, tf32, a.N, a.C, a.K, a.H, a.W, a.pool);
  };
  const TunedTile* t = fp32 ? lookup(true) : nullptr;
  if (t == nullptr) t = lookup(false);
  if (t != nullptr) {
    const ImplicitGemmTile tile = is_wgmma(t->tile) && !wgmma_runs(a) ? mma_sync_twin(t->tile) : t->tile;
    if (tile_fits(a, tile)) return tile;
  }
  // No entry (or one that cannot run here): where wgmma runs, the tile the table holds for
  // each K it measured (wgmma-wide's), else mma.sync's rule.
  if (wgmma_runs(a)) {
    const ImplicitGemmTile wide = wgmma_policy_tile("wgmma-wide", a.K);
    if (tile_fits(a, wide)) return wide;
  }
  return a.K <= 64 ? ImplicitGemmTile::m256n64 : ImplicitGemmTile::m128n128;
}

// A persistent tile's grid: VGGKERN_IMPLICIT_GEMM_GRID (a positive integer: the tests run
// several items per block with it), else the device's SM count. Read per launch.
inline int64_t implicit_gemm_grid(const Conv3x3Args& a) {
  const char* e = std::getenv("VGGKERN_IMPLICIT_GEMM_GRID");
  if (e == nullptr || *e == '\0') return a.sm_count > 0 ? a.sm_count : 1;
  int64_t v;
  if (!parse_integer(e, 1, INT32_MAX, v))
    throw std::invalid_argument(std::string("vggkern.conv3x3: VGGKERN_IMPLICIT_GEMM_GRID must be a positive integer, got '") +
                                e + "'");
  return v;
}

// Stream-K for ws128x256, persistent (stream_k.h): VGGKERN_IMPLICIT_GEMM_STREAM_K unset
// (where the whole tiles would leave under 90% of the grid's turns used), "on" (wherever
// the tile is ws128x256, persistent, and K is not split: so that the tests and a GPU run
// measure it) or "off". Read per launch.
enum class StreamKKnob { where_short, on, off };
inline StreamKKnob implicit_gemm_stream_k_knob() {
  const char* e = std::getenv("VGGKERN_IMPLICIT_GEMM_STREAM_K");
  const std::string v = e != nullptr ? e : "";
  if (v.empty()) return StreamKKnob::where_short;
  if (v == "on") return StreamKKnob::on;
  if (v == "off") return StreamKKnob::off;
  throw std::invalid_argument("vggkern.conv3x3: VGGKERN_IMPLICIT_GEMM_STREAM_K must be \"on\" or \"off\" (or unset), "
                              "got '" + v + "'");
}

inline bool is_ws(ImplicitGemmTile t) { return t == ImplicitGemmTile::ws128x256 || t == ImplicitGemmTile::ws128x128; }

// by the rule above (or VGGKERN_IMPLICIT_GEMM_SPLIT_K).
inline ImplicitGemmPlan implicit_gemm_plan(const Conv3x3Args& a, ImplicitGemmTile tile) {
  // A plan is for a launch with work: the op returns an empty y before it (and refuses C or
  // K = 0 and a pool of H or W < 2); a C++ caller of the launcher gets this (the split-K
  // rule below would divide by zero blocks or slices).
  if (a.N < 1 || a.C < 1 || a.H < 1 || a.W < 1 || a.K < 1 || (a.pool && (a.H < 2 || a.W < 2)))
    throw std::invalid_argument("vggkern.conv3x3: an implicit_gemm plan needs N, C, H, W, K >= 1 (H, W >= 2 with "
                                "pool), got N=" + std::to_string(a.N) + ", C=" + std::to_string(a.C) + ", H=" +
                                std::to_string(a.H) + ", W=" + std::to_string(a.W) + ", K=" + std::to_string(a.K) +
                                (a.pool ? ", pool" : ""));
  ImplicitGemmPlan p;
  p.tile = tile;
  p.bm = tile_rows(tile);
  p.bn = tile_columns(tile);
  p.M = a.pool ? 4 * a.N * (a.H / 2) * (a.W / 2) : a.N * a.H * a.W;
  p.m_tiles = (p.M + p.bm - 1) / p.bm;
  p.k_blocks = (a.K + p.bn - 1) / p.bn;
  const int64_t slice = 64 / dtype_size(a.dtype);
  p.slices = (9 * a.C + slice - 1) / slice;
  if (p.slices > INT32_MAX)  // the kernel counts K slices in int (k_tiles, kt0, n_tiles)
    throw std::invalid_argument("vggkern.conv3x3: C = " + std::to_string(a.C) + " is too many input channels for "
                                "implicit_gemm (" + std::to_string(p.slices) + " K slices of 64 bytes, more than "
                                "2^31 - 1); use algo=\"direct\"");

  constexpr int64_t kMinSlices = 8, kMaxSplits = 16;
  int64_t splits = 1;
  const char* forced = std::getenv("VGGKERN_IMPLICIT_GEMM_SPLIT_K");
  if (forced != nullptr && forced[0] != '\0') {
    if (!parse_integer(forced, 1, 64, splits))
      throw std::invalid_argument(std::string("vggkern.conv3x3: VGGKERN_IMPLICIT_GEMM_SPLIT_K must be an integer in "
                                              "[1, 64], got '") + forced + "'");
  } else {
    const int64_t blocks = p.m_tiles * p.k_blocks;
    if (blocks < a.sm_count) {
      splits = (a.sm_count + blocks - 1) / blocks;
      if (splits > kMaxSplits) splits = kMaxSplits;
      if (splits > p.slices / kMinSlices) splits = p.slices / kMinSlices;
      if (splits < 1) splits = 1;
    }
  }
  // The persistent ws tiles (y NHWC): stream-K in place of split-K's choice where the whole
  // tiles would leave the grid's last turn short (not where VGGKERN_IMPLICIT_GEMM_SPLIT_K is
  // set), or wherever K is not split with VGGKERN_IMPLICIT_GEMM_STREAM_K=on; else their
  // items in turn on at most implicit_gemm_grid() blocks.
  p.persistent = is_ws(tile) && !a.y_nchw;
  const bool stream_k_tile = p.persistent && tile == ImplicitGemmTile::ws128x256;  // the kernel's kStreamK
  const StreamKKnob stream_k = implicit_gemm_stream_k_knob();  // read (and checked) whatever the tile
  const int64_t grid_blocks = implicit_gemm_grid(a);           // the same
  const bool split_forced = forced != nullptr && forced[0] != '\0';
  if (stream_k_tile && (stream_k == StreamKKnob::on ? !split_forced || splits == 1
                                                   : stream_k == StreamKKnob::where_short && !split_forced)) {
    const int64_t tiles = p.m_tiles * p.k_blocks, g0 = grid_blocks;
    // The region: every tile where there are fewer than blocks, else the remainder and one
    // full turn (each block's range then at least a tile, so a tile has at most 2 parts),
    // ranges of at least min(8, slices) slices (fewer blocks where the tiles are few).
    const int64_t sk_tiles = tiles < g0 ? tiles : tiles % g0 + g0;
    const int64_t grid = std::min(g0, std::max<int64_t>(1, sk_tiles * p.slices / std::min(kMinSlices, p.slices)));
    const int64_t turns = (tiles + g0 - 1) / g0;
    const bool short_turn = tiles * 10 < turns * g0 * 9;  // under 90% of the turns' blocks busy
    if ((stream_k == StreamKKnob::on || short_turn) && sk_tiles * p.slices <= INT32_MAX / (grid + 1) &&
        tiles <= INT32_MAX) {  // the schedule's 32-bit arithmetic (stream_k.h)
      splits = 1;
      p.sk.grid = static_cast<int>(grid);
      p.sk.dp_items = static_cast<int>(tiles - sk_tiles);  // a multiple of g0 = grid, or 0
      p.sk.sk_tiles = static_cast<int>(sk_tiles);
      p.sk.slices = static_cast<int>(p.slices);
      for (int u = 0; u < p.sk.sk_tiles; ++u) p.sk.max_parts = std::max(p.sk.max_parts, p.sk.parts_of(u));
    }
  }
  if (splits > p.slices) splits = p.slices;
  p.slices_per_split = (p.slices + splits - 1) / splits;
  p.splits = static_cast<int>((p.slices + p.slices_per_split - 1) / p.slices_per_split);  // none empty
  if (p.sk.sk_tiles == 0) {  // items in turn (persistent) or one block each (a launch refuses 2^31 blocks)
    const int64_t items = std::min<int64_t>(p.blocks(), INT32_MAX);
    p.sk.grid = static_cast<int>(p.persistent ? std::min(items, grid_blocks) : items);
    p.sk.dp_items = static_cast<int>(items);
    p.sk.slices = static_cast<int>(p.slices_per_split);
  }
  return p;
}

// How the last ws-tile launch of this process copied its stages (the dispatch records it):
// by tensor loads ("tma"), or by cp.async, and why ("cp_async", with the refusal: the call's
// shape, VGGKERN_IMPLICIT_GEMM_TMA, or a tensor map the driver would not encode). With the
// knob unset a call that cannot have the tensor loads runs on cp.async without an error,
// so this is how a benchmark row (benchmarks/cases.py: copies_ran) or a user says which
// path a timing measured. Its y stores likewise: from the epilogue's staging by tensor
// stores ("tma"), or from the accumulators in pairs of channels ("pairs", and why), or, y
// NCHW, through the fp32 tile in shared memory ("nchw_tile"). And its schedule: stream_k,
// "" (whole tiles) or "<sk_tiles> of <tiles> tiles on <grid> blocks". Empty tile: no ws
// launch yet.
struct ImplicitGemmCopies {
  std::string tile, path, reason, stores, stores_reason, stream_k;
};
inline std::mutex implicit_gemm_copies_mutex;
inline ImplicitGemmCopies implicit_gemm_copies_record;
inline void record_implicit_gemm_copies(ImplicitGemmCopies c) {
  const std::lock_guard<std::mutex> lock(implicit_gemm_copies_mutex);
  implicit_gemm_copies_record = std::move(c);
}
inline ImplicitGemmCopies last_implicit_gemm_copies() {
  const std::lock_guard<std::mutex> lock(implicit_gemm_copies_mutex);
  return implicit_gemm_copies_record;
}

// The plan the op hands to the launch: implicit_gemm_tile's tile.
inline ImplicitGemmPlan implicit_gemm_plan(const Conv3x3Args& a) { return implicit_gemm_plan(a, implicit_gemm_tile(a)); }

}  // namespace vk
