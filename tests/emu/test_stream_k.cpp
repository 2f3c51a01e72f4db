// Stream-K's schedule (csrc/common/stream_k.h), walked as the kernel walks it, against
// what it promises: every slice of every tile computed exactly once (data-parallel items
// whole, stream-K segments as ranges), each block's stream-K share within one slice of
// every other's, a tile's parts numbered in K order by consecutive blocks, each part's
// fixup slot the one the finisher computes for it (slot(u, k)) and no slot used twice,
// and no tile in more parts than the plan's max_parts; and the plan's choice: where the
// whole tiles leave a short last turn (conv5 at batch 64), or forced, or not at all.
#include <algorithm>
#include <cstdlib>
#include <map>
#include <set>
#include <vector>

#include "../../csrc/common/conv3x3_implicit_gemm_plan.h"
#include "harness.h"

namespace {

// Walk the plan's schedule; fail on any broken promise.
void check_schedule(const vk::ImplicitGemmPlan& plan) {
  const vk::StreamKSchedule& sk = plan.sk;
  const int64_t tiles = plan.m_tiles * plan.k_blocks;
  CHECK(plan.splits == 1 && sk.dp_items + sk.sk_tiles == tiles && sk.slices == plan.slices);
  CHECK(sk.dp_items % sk.grid == 0);  // whole turns only
  std::vector<int64_t> covered(tiles * sk.slices, 0);
  std::map<int64_t, std::vector<std::pair<int64_t, int>>> parts;  // sk tile -> (block, part) in order
  std::set<int64_t> slots;
  int64_t fewest = INT64_MAX, most = 0;
  for (int64_t b = 0; b < sk.grid; ++b) {
    int64_t share = 0;
    for (int64_t j = 0; j < sk.items(b); ++j) {
      if (j < sk.dp_count(b)) {  // data-parallel: whole item b + j G
        const int64_t d = b + j * sk.grid;
        CHECK(d < sk.dp_items);
        for (int64_t k = 0; k < sk.slices; ++k) ++covered[d * sk.slices + k];
        continue;
      }
      const vk::StreamKSegment s = sk.segment(b, j - sk.dp_count(b));
      CHECK(s.tile >= 0 && s.tile < sk.sk_tiles && s.n >= 1 && s.kt0 >= 0 && s.kt0 + s.n <= sk.slices);
      for (int64_t k = s.kt0; k < s.kt0 + s.n; ++k) ++covered[(sk.dp_items + s.tile) * sk.slices + k];
      share += s.n;
      CHECK(s.parts >= 1 && s.parts <= sk.max_parts && s.part >= 0 && s.part < s.parts);
      CHECK((s.parts == 1) == (s.n == sk.slices));  // a tile in one part is whole
      if (s.parts > 1) {
        CHECK(s.slot == sk.slot(s.tile, s.part) && (s.slot == 2 * b || s.slot == 2 * b + 1));
        CHECK(s.part == 0 || s.slot == 2 * (sk.first_block(s.tile) + s.part));  // the finisher's formula
        CHECK(slots.insert(s.slot).second);
      }
      parts[s.tile].push_back({b, s.part});
    }
    fewest = std::min(fewest, share), most = std::max(most, share);
  }
  for (int64_t c : covered) CHECK(c == 1);
  CHECK(most - fewest <= 1 && fewest >= 1);
  for (const auto& [u, list] : parts) {
    CHECK(static_cast<int>(list.size()) == sk.parts_of(u));
    for (size_t k = 0; k < list.size(); ++k)
      CHECK(list[k].second == static_cast<int>(k) && list[k].first == list[0].first + static_cast<int64_t>(k));
  }
}

vk::ImplicitGemmPlan plan_for(int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, bool pool, vk::ImplicitGemmTile t,
                              const char* stream_k, const char* grid, const char* split = "") {
  vk::Conv3x3Args a{};
  a.dtype = vk::DType::float16;
  a.N = N, a.C = C, a.H = H, a.W = W, a.K = K, a.pool = pool, a.sm_count = 132;
  setenv("VGGKERN_IMPLICIT_GEMM_STREAM_K", stream_k, 1);
  setenv("VGGKERN_IMPLICIT_GEMM_GRID", grid, 1);
  setenv("VGGKERN_IMPLICIT_GEMM_SPLIT_K", split, 1);
  const vk::ImplicitGemmPlan p = vk::implicit_gemm_plan(a, t);
  unsetenv("VGGKERN_IMPLICIT_GEMM_STREAM_K");
  unsetenv("VGGKERN_IMPLICIT_GEMM_GRID");
  unsetenv("VGGKERN_IMPLICIT_GEMM_SPLIT_K");
  return p;
}

EMU_TEST(stream_k_schedule_covers_every_slice_once) {
  using T = vk::ImplicitGemmTile;
  // conv5 at batch 64 on 132 SMs: 196 tiles of 128 x 256, 144 slices each; all stream-K (the
  // remainder, 64, and one turn), each block 213-214 slices, a tile in at most 2 parts.
  const vk::ImplicitGemmPlan conv5 = plan_for(64, 512, 14, 14, 512, false, T::ws128x256, "", "");
  CHECK(conv5.sk.sk_tiles == 196 && conv5.sk.dp_items == 0 && conv5.grid() == 132 && conv5.sk.max_parts == 2);
  CHECK(conv5.workspace_floats(512) == 2 * 132 * 128 * 256 && conv5.fixup_counters() == 196);
  check_schedule(conv5);
  // conv4 at batch 64: 784 tiles, 5.94 turns: whole tiles (the default), or forced: 4 turns
  // whole (528 tiles), the other 124 and a turn's 132 by stream-K.
  const vk::ImplicitGemmPlan conv4 = plan_for(64, 512, 28, 28, 512, true, T::ws128x256, "", "");
  CHECK(conv4.sk.sk_tiles == 0 && conv4.grid() == 132 && conv4.workspace_floats(512) == 0);
  const vk::ImplicitGemmPlan conv4_on = plan_for(64, 512, 28, 28, 512, true, T::ws128x256, "on", "");
  CHECK(conv4_on.sk.sk_tiles == 124 + 132 && conv4_on.sk.dp_items == 528);
  check_schedule(conv4_on);
  // Fewer tiles than blocks: conv5 at batch 1 (4 tiles of 144 slices) on 72 blocks of 8
  // slices, 18 parts a tile, in place of split-K; pooled at batch 4 (8 tiles, 132 blocks).
  const vk::ImplicitGemmPlan small = plan_for(1, 512, 14, 14, 512, false, T::ws128x256, "", "");
  CHECK(small.splits == 1 && small.grid() == 72 && small.sk.max_parts == 18);
  check_schedule(small);
  check_schedule(plan_for(4, 512, 14, 14, 512, true, T::ws128x256, "", ""));
  // Odd grids and shapes, forced on: every promise holds (parts up to 3 where ranges are
  // shorter than a tile).
  for (const char* grid : {"1", "2", "3", "5", "7", "13", "132"})
    for (const int64_t C : {8, 64, 200})
      check_schedule(plan_for(3, C, 11, 13, 300, false, T::ws128x256, "on", grid));
  // Not chosen: turned off, K split by force, ws128x128 (whole tiles: the kernel's
  // kStreamK), a tile that is not a persistent ws tile.
  const vk::ImplicitGemmPlan pingpong = plan_for(1, 512, 14, 14, 512, false, T::ws128x128, "on", "");
  CHECK(pingpong.persistent && pingpong.sk.sk_tiles == 0);
  CHECK(plan_for(64, 512, 14, 14, 512, false, T::ws128x256, "off", "").sk.sk_tiles == 0);
  CHECK(plan_for(64, 512, 14, 14, 512, false, T::ws128x256, "", "", "2").sk.sk_tiles == 0);
  const vk::ImplicitGemmPlan wg = plan_for(64, 512, 14, 14, 512, false, T::wg128x256, "on", "");
  CHECK(wg.sk.sk_tiles == 0 && !wg.persistent && wg.grid() == wg.blocks());
}

}  // namespace
