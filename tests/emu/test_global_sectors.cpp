// The emulator's global-memory sector accounting (csrc/emu/global_stats.h): each case's
// counts are worked out by hand from its addresses (32-byte sectors, the bytes the active
// lanes touch, ideal = ceil(distinct bytes / 32) per warp-wide instruction).
#include <cstdint>
#include <vector>

#include "../../csrc/emu/launch.h"
#include "../../csrc/kernels/tensor_core.cuh"
#include "harness.h"

using emu_test::expect_error;
using vk::emu::launch;
using namespace vk::emu;  // the kernels' namespace (VK_KERNEL_NS) on the emulator

namespace {

enum class Pattern { consecutive, stride2, misaligned, broadcast, odd_lanes_off, one_lane_off_once, short_trips };

// One warp; src is 256-byte aligned and holds 128 floats.
__global__ void load_kernel(const float* src, float* out, Pattern pattern) {
  const int lane = threadIdx.x;
  float sum = 0.f;
  switch (pattern) {
    case Pattern::consecutive: sum = ld_global(src + lane); break;
    case Pattern::stride2: sum = ld_global(src + 2 * lane); break;
    case Pattern::misaligned: sum = ld_global(src + 1 + lane); break;
    case Pattern::broadcast: sum = ld_global(src); break;
    case Pattern::odd_lanes_off: sum = ld_global(src + lane, lane % 2 == 0); break;
    case Pattern::one_lane_off_once:  // lane 5 is predicated off in the first of three calls only
      for (int j = 0; j < 3; ++j) sum += ld_global(src + 32 * j + lane, !(j == 0 && lane == 5));
      break;
    case Pattern::short_trips:  // lanes 16..31 leave the loop after one trip
      for (int j = 0; j < (lane < 16 ? 2 : 1); ++j) sum += ld_global(src + 32 * j + lane);
      break;
  }
  out[lane] = sum;
}

// Stores of float4 (16 bytes per lane) from a warp, and a barrier inside a loop: in trip 0
// only lane 0 stores, in trip 1 every lane. The lanes meet again after the barrier.
__global__ void store_kernel(float4* dst, float* flag) {
  const int lane = threadIdx.x;
  st_global(dst + lane, make_float4(1.f, 2.f, 3.f, 4.f));
  for (int trip = 0; trip < 2; ++trip) {
    if (lane == 0 || trip == 1) st_global(flag + lane, static_cast<float>(trip));
    __syncthreads();
  }
}

// cp.async's global side: 32 lanes x 16 bytes, lanes >= 24 copy zeros (no source read).
__global__ void copy_kernel(const float* src, float* out) {
  VK_SHARED(float, s, [128]);
  const int lane = threadIdx.x;
  cp_async_16(&s[4 * lane], src + 4 * lane, lane < 24 ? 16 : 0);
  cp_async_commit();
  cp_async_wait<0>();
  out[lane] = s[4 * lane];
}

// A float4 store one float past a 16-byte boundary.
__global__ void misaligned_kernel(float* dst) { st_global(reinterpret_cast<float4*>(dst + 1), make_float4(0.f, 0.f, 0.f, 0.f)); }

struct Counts {
  uint64_t instructions, bytes, ideal, sectors;
};
bool operator==(const GlobalSectorCounts& a, const Counts& b) {
  return a.instructions == b.instructions && a.bytes == b.bytes && a.ideal == b.ideal && a.sectors == b.sectors;
}

// The counts of the one kernel launched since the reset.
GlobalSectorStats stats_of(const char* kernel) {
  const auto all = global_sector_stats();
  CHECK(all.size() == 1 && all.count(kernel) == 1);
  return all.at(kernel);
}

GlobalSectorCounts loads_of(Pattern pattern) {
  alignas(256) static float src[128];
  std::vector<float> out(32);
  reset_global_sector_stats();
  launch("load_kernel", load_kernel, dim3(1), dim3(32), 0, static_cast<const float*>(src), out.data(), pattern);
  return stats_of("load_kernel").load;
}

}  // namespace

EMU_TEST(global_sectors_of_loads) {
  CHECK(loads_of(Pattern::consecutive) == (Counts{1, 128, 4, 4}));
  CHECK(loads_of(Pattern::stride2) == (Counts{1, 128, 4, 8}));     // half of each sector unused
  CHECK(loads_of(Pattern::misaligned) == (Counts{1, 128, 4, 5}));  // 4 bytes into a fifth sector
  CHECK(loads_of(Pattern::broadcast) == (Counts{1, 4, 1, 1}));
  CHECK(loads_of(Pattern::odd_lanes_off) == (Counts{1, 64, 2, 4}));
  // Lane 5's first call, predicated off, still counts as its call: the lanes meet in order.
  CHECK(loads_of(Pattern::one_lane_off_once) == (Counts{3, 124 + 128 + 128, 4 + 4 + 4, 4 + 4 + 4}));
  // The second trip's instruction has the 16 lanes that made it (flushed at the block's end).
  CHECK(loads_of(Pattern::short_trips) == (Counts{2, 128 + 64, 4 + 2, 4 + 2}));
}

EMU_TEST(global_sectors_of_stores_meet_after_a_barrier) {
  alignas(256) static float4 dst[32];
  alignas(256) static float flag[32];
  reset_global_sector_stats();
  launch("store_kernel", store_kernel, dim3(1), dim3(32), 0, dst, flag);
  // 512 bytes of float4; lane 0 alone in trip 0; all 32 lanes in trip 1 (had the count of
  // calls per site not restarted at the barrier, lane 0's second call would have met the
  // others' first: 2 partial instructions instead of 1).
  const GlobalSectorStats s = stats_of("store_kernel");
  CHECK(s.store == (Counts{3, 512 + 4 + 128, 16 + 1 + 4, 16 + 1 + 4}));
  CHECK(s.load == (Counts{0, 0, 0, 0}));
}

EMU_TEST(global_sectors_of_cp_async_sources) {
  alignas(256) static float src[128];
  std::vector<float> out(32);
  reset_global_sector_stats();
  launch("copy_kernel", copy_kernel, dim3(1), dim3(32), 0, static_cast<const float*>(src), out.data());
  // 24 lanes x 16 bytes read; the 8 zero-fill lanes read nothing.
  CHECK(stats_of("copy_kernel").cp_async == (Counts{1, 384, 12, 12}));
}

EMU_TEST(misaligned_global_vector_is_reported) {
  alignas(256) static float dst[8];
  expect_error([&] { launch("misaligned_kernel", misaligned_kernel, dim3(1), dim3(32), 0, dst); },
               {"misaligned global store of 16 bytes", "test_global_sectors.cpp"});
}
