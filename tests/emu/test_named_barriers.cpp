// Named barriers in the emulator (bar.sync / bar.arrive: kernels/simt.cuh's bar_sync and
// bar_arrive; csrc/emu/runtime.cpp): a producer warp hands stages to a consumer warp
// through them, as the warp-specialised implicit GEMM does; the right values arrive, and
// the race detection orders exactly what the barriers order: a consumer that only
// arrives (no wait) or a producer that refills a stage its consumer has not released is
// reported, with both lines. Miscounts end in an error, not a hang: a warp arriving twice
// at one instance, a barrier left half-arrived at the block's end, a bar.sync nobody
// completes, ids and counts out of range, lanes of a warp at different barriers.
#include <vector>

#include "../../csrc/emu/launch.h"
#include "../../csrc/kernels/tensor_core.cuh"
#include "harness.h"

using emu_test::expect_error;
using vk::emu::launch;
using namespace vk::emu;

namespace {

constexpr int kStages = 2, kRounds = 5;
constexpr int kFull = 1, kEmpty = 1 + kStages;  // barrier ids: full[s], empty[s]

enum class Fault { none, consumer_no_wait, producer_no_wait, cp_async };

// Warp 1 (the producer) writes round r's 32 values into stage r % kStages and arrives at
// full[stage]; warp 0 (the consumer) syncs there, adds them up into out[r * 32 + lane]
// (its lane's value plus its neighbour's), and arrives at empty[stage], where the
// producer syncs before it refills the stage. cp_async: the producer copies src instead
// of storing, then waits for its copies before it arrives.
__global__ void ring_kernel(const float* src, float* out, Fault fault) {
  VK_SHARED(float, stage, [kStages][32]);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int r = 0; r < kRounds; ++r) {
    const int s = r % kStages;
    const bool refill = r >= kStages;
    const bool released = r + kStages < kRounds;  // the consumer releases it for a later round
    if (warp == 1) {
      if (refill) {
        if (fault == Fault::producer_no_wait) bar_arrive(kEmpty + s, 64);
        else bar_sync(kEmpty + s, 64);
      }
      if (fault == Fault::cp_async) {
        if (lane % 4 == 0) cp_async_16(&stage[s][lane], src + 32 * r + lane, 16);
        cp_async_commit();
        cp_async_wait<0>();
      } else {
        st_shared(&stage[s][lane], float(100 * r + lane));
      }
      bar_arrive(kFull + s, 64);
    } else {
      if (fault == Fault::consumer_no_wait) bar_arrive(kFull + s, 64);
      else bar_sync(kFull + s, 64);
      out[32 * r + lane] = ld_shared(&stage[s][lane]) + ld_shared(&stage[s][(lane + 1) % 32]);
      if (released) bar_arrive(kEmpty + s, 64);
    }
  }
}

std::vector<float> run_ring(Fault fault) {
  std::vector<float> src(32 * kRounds), out(32 * kRounds, -1.f);
  for (size_t i = 0; i < src.size(); ++i) src[i] = float(7 * i);
  launch("ring_kernel", ring_kernel, dim3(1), dim3(64), 0, static_cast<const float*>(src.data()), out.data(), fault);
  return out;
}

enum class Misuse { twice, left_open, never_completes, id_zero, odd_count, lanes_differ };

__global__ void misuse_kernel(Misuse m) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  switch (m) {
    case Misuse::twice:  // warp 0 arrives twice, with no other warp between
      if (warp == 0) {
        bar_arrive(1, 64);
        bar_arrive(1, 64);
      }
      break;
    case Misuse::left_open:
      if (warp == 0) bar_arrive(1, 64);
      break;
    case Misuse::never_completes:  // warp 1 never arrives
      if (warp == 0) bar_sync(1, 64);
      break;
    case Misuse::id_zero:
      bar_sync(0, 64);
      break;
    case Misuse::odd_count:
      bar_sync(1, 48);
      break;
    case Misuse::lanes_differ:
      if (warp == 0) bar_arrive(lane < 16 ? 1 : 2, 64);
      break;
  }
}

void run_misuse(Misuse m) { launch("misuse_kernel", misuse_kernel, dim3(1), dim3(64), 0, m); }

}  // namespace

EMU_TEST(named_barriers_hand_stages_over) {
  for (Fault fault : {Fault::none, Fault::cp_async}) {
    const std::vector<float> out = run_ring(fault);
    for (int r = 0; r < kRounds; ++r)
      for (int lane = 0; lane < 32; ++lane) {
        auto value = [&](int l) { return fault == Fault::cp_async ? float(7 * (32 * r + l)) : float(100 * r + l); };
        CHECK(out[32 * r + lane] == value(lane) + value((lane + 1) % 32));
      }
  }
}

EMU_TEST(named_barrier_arrive_does_not_acquire) {
  // The emulator happens to run the consumer first: its read comes before the producer's
  // write, which reports (the other order would report at the read).
  expect_error([] { run_ring(Fault::consumer_no_wait); },
               {"shared-memory race", "read at test_named_barriers.cpp", "test_named_barriers.cpp"});
}

EMU_TEST(named_barrier_refill_before_release_races) {
  expect_error([] { run_ring(Fault::producer_no_wait); },
               {"shared-memory race", "this thread writes", "read", "test_named_barriers.cpp"});
}

EMU_TEST(named_barrier_misuse_is_reported) {
  expect_error([] { run_misuse(Misuse::twice); }, {"warp 0 arrives twice", "named barrier 1"});
  expect_error([] { run_misuse(Misuse::left_open); }, {"ends with named barrier 1", "32 of its 64"});
  expect_error([] { run_misuse(Misuse::never_completes); },
               {"can never finish", "bar.sync of named barrier 1", "32 of its 64"});
  expect_error([] { run_misuse(Misuse::id_zero); }, {"named barrier id 0 outside 1..15"});
  expect_error([] { run_misuse(Misuse::odd_count); }, {"48 threads", "multiple of 32"});
  expect_error([] { run_misuse(Misuse::lanes_differ); }, {"different ids"});
}
