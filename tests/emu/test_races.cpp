// The emulator's race detection on shared memory (csrc/emu/runtime.cpp, "races on shared
// memory"): what compute-sanitizer's racecheck reports on a GPU, reported on the CPU with
// both source lines. Each kernel races only when asked to (`race`), so every case also
// runs without its race and must then pass and give the right values: the detection
// neither misses a race nor flags an ordered access.
#include <vector>

#include "../../csrc/emu/launch.h"
#include "../../csrc/kernels/tensor_core.cuh"
#include "harness.h"

using emu_test::expect_error;
using vk::emu::launch;
using namespace vk::emu;  // the kernels' namespace (VK_KERNEL_NS) on the emulator

namespace {

enum class Race { none, read_after_write, write_after_read, write_after_write, several_readers };

// Thread `a` and thread `b` (of warps 0 and 1, or lanes of one warp) meet at word 0.
// The emulator runs thread a first, so for write_after_read a reads and b writes.
__global__ void two_threads_kernel(float* out, Race race, int a, int b) {
  VK_SHARED(float, s, [4]);
  const int t = threadIdx.x;
  if (t == a) {
    if (race == Race::write_after_read) out[0] = ld_shared(&s[0]);
    else if (race != Race::several_readers) st_shared(&s[0], 1.f);
  }
  if (race == Race::several_readers && (t == a + 1 || t == a + 2)) out[t] = ld_shared(&s[0]);
  if (race == Race::none) __syncthreads();
  if (t == b) {
    if (race == Race::read_after_write || race == Race::none) out[1] = ld_shared(&s[0]);
    else st_shared(&s[0], 2.f);
  }
}

// Lane 0 writes, lane 1 reads, with or without a __syncwarp() between them.
__global__ void warp_kernel(float* out, bool syncwarp) {
  VK_SHARED(float, s, [32]);
  if (threadIdx.x == 0) st_shared(&s[0], 5.f);
  if (syncwarp) __syncwarp();
  if (threadIdx.x == 1) out[0] = ld_shared(&s[0]);
}

// A shuffle is no memory barrier: lane 0 writes, all lanes shuffle, lane 1 reads.
__global__ void shuffle_is_no_barrier_kernel(float* out) {
  VK_SHARED(float, s, [32]);
  if (threadIdx.x == 0) st_shared(&s[0], 5.f);
  const float v = __shfl_sync(0xffffffffu, 1.f, 0);
  if (threadIdx.x == 1) out[0] = ld_shared(&s[0]) + v;
}

// Thread 0 copies 16 bytes with cp.async; thread 32 reads them once they landed (its
// wait, then a barrier), or, with `early`, while the copy is still in flight: after a
// barrier that follows the issue but precedes the wait. With `own`, thread 0 reads its
// own destination before its wait.
__global__ void copy_kernel(const float* src, float* out, bool early, bool own) {
  VK_SHARED(float, s, [4]);
  if (threadIdx.x == 0) {
    cp_async_16(&s[0], src, 16);
    cp_async_commit();
  }
  __syncthreads();
  if (early && threadIdx.x == 32) out[0] = ld_shared(&s[0]);
  __syncthreads();
  if (threadIdx.x == 0) {
    if (own) out[2] = ld_shared(&s[0]);
    cp_async_wait<0>();
  }
  __syncthreads();
  if (threadIdx.x == 32) out[1] = ld_shared(&s[1]);
}

// A scan of one warp in shared memory (Hillis-Steele), every step between __syncwarp()s:
// each lane reads a word other lanes read before the last __syncwarp(), then writes its own.
__global__ void warp_scan_kernel(float* out) {
  VK_SHARED(float, s, [32]);
  const int lane = threadIdx.x;
  st_shared(&s[lane], 1.f);
  __syncwarp();
  for (int d = 1; d < 32; d *= 2) {
    const float v = lane >= d ? ld_shared(&s[lane - d]) : 0.f;
    __syncwarp();
    if (lane >= d) st_shared(&s[lane], ld_shared(&s[lane]) + v);
    __syncwarp();
  }
  out[lane] = ld_shared(&s[lane]);
}

// ldmatrix reads its rows when the warp executes it: lanes 0-7 overwrite the row each
// addressed right after (their own row, in their own program order), which must not
// change what the other lanes received.
__global__ void ldmatrix_then_overwrite_kernel(uint32_t* out) {
  VK_SHARED(uint32_t, s, [8][4]);
  const int lane = threadIdx.x;
  if (lane < 8)
    for (int i = 0; i < 4; ++i) st_shared(&s[lane][i], static_cast<uint32_t>(lane * 4 + i));
  __syncwarp();
  uint32_t r[1];
  ldmatrix<1>(r, &s[lane % 8][0]);
  if (lane < 8) st_shared(&s[lane][0], 0xdeaddeadu);
  out[lane] = r[0];
}

// A pipeline's stage reuse: every thread reads the stage (its own 16-byte row and its
// neighbour's) and then refills its row by cp.async. Without the barrier between the
// reads and the refill, a thread overwrites a row its neighbour still reads.
__global__ void stage_reuse_kernel(const float* src, float* out, bool barrier) {
  VK_SHARED(float4, s, [64]);
  const int t = threadIdx.x, next = (t + 1) % 64;
  st_shared(&s[t], make_float4(t, t, t, t));
  __syncthreads();
  out[t] = ld_shared(&s[t]).x + ld_shared(&s[next]).y;
  if (barrier) __syncthreads();
  cp_async_16(&s[t], src + 4 * t);
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();
  out[64 + t] = ld_shared(&s[next]).z;
}

EMU_TEST(race_between_warps_is_reported) {
  std::vector<float> out(64, 0.f);
  auto run = [&](Race r) {
    launch("two_threads_kernel", two_threads_kernel, dim3(1), dim3(64), 0, out.data(), r, 0, 32);
  };
  run(Race::none);
  CHECK(out[1] == 1.f);
  expect_error([&] { run(Race::read_after_write); },
               {"two_threads_kernel", "thread (32,0,0)", "shared-memory race: this thread reads shared address",
                "thread (0,0,0) wrote at test_races.cpp:", "no barrier between"});
  expect_error([&] { run(Race::write_after_read); },
               {"thread (32,0,0)", "this thread writes shared address", "thread (0,0,0) read at test_races.cpp:"});
  expect_error([&] { run(Race::write_after_write); },
               {"thread (32,0,0)", "this thread writes shared address", "thread (0,0,0) wrote"});
  expect_error([&] { run(Race::several_readers); },
               {"this thread writes shared address", "several threads read (the last, thread (2,0,0),"});
}

EMU_TEST(race_within_a_warp_needs_syncwarp) {
  std::vector<float> out(1, 0.f);
  launch("warp_kernel", warp_kernel, dim3(1), dim3(32), 0, out.data(), true);
  CHECK(out[0] == 5.f);
  expect_error([&] { launch("warp_kernel", warp_kernel, dim3(1), dim3(32), 0, out.data(), false); },
               {"warp_kernel", "thread (1,0,0)", "this thread reads", "thread (0,0,0) wrote"});
  expect_error([&] { launch("shuffle_kernel", shuffle_is_no_barrier_kernel, dim3(1), dim3(32), 0, out.data()); },
               {"thread (1,0,0)", "this thread reads", "thread (0,0,0) wrote"});
  // Lanes 1 and 2 of two_threads_kernel: one warp, no __syncwarp().
  std::vector<float> out2(64, 0.f);
  expect_error([&] {
    launch("two_threads_kernel", two_threads_kernel, dim3(1), dim3(64), 0, out2.data(), Race::read_after_write, 1, 2);
  }, {"thread (2,0,0)", "thread (1,0,0) wrote"});
}

EMU_TEST(race_with_a_copy_in_flight_is_reported) {
  const float src[4] = {1, 2, 3, 4};
  std::vector<float> out(3, 0.f);
  for (const char* mode : {"", "eager"}) {  // either end of the copy's window
    setenv("VGGKERN_EMU_CP_ASYNC", mode, 1);
    launch("copy_kernel", copy_kernel, dim3(1), dim3(64), 0, src, out.data(), false, false);
    CHECK(out[1] == 2.f);
    expect_error([&] { launch("copy_kernel", copy_kernel, dim3(1), dim3(64), 0, src, out.data(), true, false); },
                 {"copy_kernel", "thread (32,0,0)", "shared-memory race", "still in flight"});
  }
  unsetenv("VGGKERN_EMU_CP_ASYNC");
  expect_error([&] { launch("copy_kernel", copy_kernel, dim3(1), dim3(64), 0, src, out.data(), true, false); },
               {"thread (32,0,0)", "this thread reads shared address",
                "is the destination of a cp.async that thread (0,0,0) issued at test_races.cpp:", "still in flight"});
  // Its own thread may not read it before the wait either, and that read does not hide
  // another thread's earlier one.
  for (bool other : {false, true})
    expect_error([&] { launch("copy_kernel", copy_kernel, dim3(1), dim3(64), 0, src, out.data(), other, true); },
                 {other ? "thread (32,0,0)" : "thread (0,0,0)", "is the destination of a cp.async", "still in flight"});
}

EMU_TEST(syncwarp_orders_a_warp_scan) {
  std::vector<float> out(32, 0.f);
  launch("warp_scan_kernel", warp_scan_kernel, dim3(1), dim3(32), 0, out.data());
  for (int lane = 0; lane < 32; ++lane) CHECK(out[lane] == static_cast<float>(lane + 1));
}

EMU_TEST(ldmatrix_reads_when_the_warp_executes_it) {
  std::vector<uint32_t> out(32, 0u);
  launch("ldmatrix_then_overwrite_kernel", ldmatrix_then_overwrite_kernel, dim3(1), dim3(32), 0, out.data());
  for (int lane = 0; lane < 32; ++lane) {  // lane (g, t) holds row g, halves 2t and 2t + 1: word t of row g
    const uint32_t g = lane / 4, t = lane % 4;
    CHECK(out[lane] == g * 4 + t);
  }
}

EMU_TEST(race_on_a_refilled_stage_is_reported) {
  std::vector<float> src(4 * 64), out(128, 0.f);
  for (int i = 0; i < 4 * 64; ++i) src[i] = 100.f + i / 4;
  launch("stage_reuse_kernel", stage_reuse_kernel, dim3(2), dim3(64), 0, src.data(), out.data(), true);
  for (int t = 0; t < 64; ++t) {
    CHECK(out[t] == static_cast<float>(t + (t + 1) % 64));
    CHECK(out[64 + t] == 100.f + (t + 1) % 64);  // the refilled row
  }
  expect_error([&] {
    launch("stage_reuse_kernel", stage_reuse_kernel, dim3(2), dim3(64), 0, src.data(), out.data(), false);
  }, {"stage_reuse_kernel", "this thread's cp.async writes", "several threads read", "test_races.cpp:"});
}

}  // namespace
