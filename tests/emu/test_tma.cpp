// The tensor memory accelerator in the emulator (kernels/tma.cuh; csrc/emu/tma_emu.h,
// tma_emu.cpp, runtime.cpp): tile-mode and im2col-mode tensor loads put the right elements
// in the right (64-byte-swizzled) places, zeros outside the tensor, and complete their
// bytes on an mbarrier; the mbarrier's phases and parities work as a ring of stages needs;
// a reader that does not wait for the barrier, and a refill of a stage not yet released,
// are reported as races; misuse is an error, never a hang.
#include <cstdint>
#include <vector>

#include "../../csrc/emu/launch.h"
#include "../tma_cases.cuh"
#include "harness.h"

using emu_test::expect_error;
using vk::emu::launch;
using namespace vk::emu;

namespace {

using vk::emu::tma_kernels::swizzled;

// tests/tma_cases.cuh's runner here: the source in host memory, the kernel on the emulator.
struct EmuRunner {
  const uint16_t* upload(const std::vector<uint16_t>& v) { return v.data(); }
  template <class Kernel, class... Args>
  void launch(const char* name, Kernel kernel, int threads, size_t smem, std::vector<uint16_t>& out,
              const Args&... args) {
    vk::emu::launch(name, kernel, dim3(1), dim3(threads), smem, out.data(), args...);
  }
};

}  // namespace

// A 2-D tile: boxes of 8 rows x 32 columns of a 37 x 70 matrix, at corners that run past
// its edges: zeros there (tests/tma_cases.cuh).
EMU_TEST(tma_tile_2d_box_with_out_of_bound_zeros) {
  EmuRunner runner;
  CHECK(tma_cases::run_tile_cases(runner) == 0);
}

// im2col for a 3 x 3, padding 1 convolution: each row is the implicit GEMM's A row of its
// output pixel at the tap, across rows, images and the batch's end, on x and on the views of
// its even and odd rows that the pooled layers load (tests/tma_cases.cuh).
EMU_TEST(tma_im2col_rows_are_the_implicit_gemm_rows) {
  EmuRunner runner;
  CHECK(tma_cases::run_im2col_cases(runner) == 0);
}

// Tensor stores: boxes of 16 x 64 (128-byte swizzle) into a 37 x 150 matrix, clipped at its
// edges, nothing outside the box written (tests/tma_cases.cuh).
EMU_TEST(tma_store_2d_box_clipped_at_the_edges) {
  EmuRunner runner;
  CHECK(tma_cases::run_store_cases(runner) == 0);
}

namespace {

constexpr int kStages = 2, kRounds = 5, kEmpty = 1;  // empty[s]: named barriers 1, 2

enum class Fault { none, no_wait, early_release };

// A ring as the warp-specialised kernel runs it: warp 1's lane 0 loads round r's 8 x 32
// tile (rows r..r+7 of a matrix) into stage r % kStages, announced on full[stage]; warp 0
// waits there with parity (r / kStages) % 2, sums each column, and releases the stage
// through the named barrier empty[stage] (bar.arrive; the producer bar.syncs before a
// refill). Faults: the consumer reads without waiting, or releases before it reads.
__global__ void ring_kernel(const TensorMap map, float* out, Fault fault) {
  VK_DYNAMIC_SHARED(uint16_t, buf);
  VK_SHARED(uint64_t, full, [kStages]);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (threadIdx.x < kStages) mbar_init(&full[threadIdx.x], 1);
  mbar_init_fence();
  __syncthreads();
  for (int r = 0; r < kRounds; ++r) {
    const int s = r % kStages;
    uint16_t* const stage = buf + s * 8 * 32;
    if (warp == 1) {
      if (r >= kStages) bar_sync(kEmpty + s, 64);
      if (lane == 0) {
        mbar_arrive_expect_tx(&full[s], 8 * 64);
        tma_load_2d(stage, &map, 0, r, &full[s]);
      }
    } else {
      if (fault != Fault::no_wait) mbar_wait(&full[s], (r / kStages) % 2);
      const bool release = r + kStages < kRounds;
      if (release && fault == Fault::early_release) bar_arrive(kEmpty + s, 64);
      const int col = 2 * (lane % 16);  // lanes 16..31 read the same pairs again
      float sum[2] = {0.f, 0.f};
      for (int row = 0; row < 8; ++row) {
        const uint32_t v = ld_shared(reinterpret_cast<const uint32_t*>(stage + swizzled(row, col / 8) + col % 8));
        sum[0] += float(v & 0xffffu), sum[1] += float(v >> 16);
      }
      if (lane < 16) out[32 * r + col] = sum[0], out[32 * r + col + 1] = sum[1];
      if (release && fault != Fault::early_release) bar_arrive(kEmpty + s, 64);
    }
  }
}

std::vector<float> run_ring(Fault fault) {
  constexpr int R = kRounds + 7;
  std::vector<uint16_t> m(R * 32);
  for (int i = 0; i < R * 32; ++i) m[i] = uint16_t(3 * i + 1);
  TensorMap map;
  if (!vk::emu::encode_rows(&map, m.data(), vk::emu::TmaElement::f16, R, 32, 32, 8).empty()) throw std::logic_error("map");
  std::vector<float> out(32 * kRounds, -1.f), want(32 * kRounds, 0.f);
  launch("ring_kernel", ring_kernel, dim3(1), dim3(64), kStages * 512, map, out.data(), fault);
  for (int r = 0; r < kRounds; ++r)
    for (int c = 0; c < 32; ++c)
      for (int row = 0; row < 8; ++row) want[32 * r + c] += float(m[(r + row) * 32 + c]);
  if (out != want) throw std::runtime_error("ring: wrong sums");
  return out;
}

enum class Misuse { uninitialised, twice, extra_arrival, bytes_left, never_completes, misaligned, outside_box,
                    unfenced };

__global__ void misuse_kernel(const TensorMap map, Misuse m) {
  VK_DYNAMIC_SHARED(unsigned char, buf);
  VK_SHARED(uint64_t, bar, [1]);
  if (threadIdx.x != 0) return;
  if (m != Misuse::uninitialised) mbar_init(bar, 1);
  if (m != Misuse::uninitialised && m != Misuse::unfenced) mbar_init_fence();
  switch (m) {
    case Misuse::uninitialised:
      mbar_wait(bar, 0);
      break;
    case Misuse::twice:
      mbar_init(bar, 1);
      break;
    case Misuse::extra_arrival:
      mbar_arrive_expect_tx(bar, 64);
      mbar_arrive(bar);
      break;
    case Misuse::bytes_left:
      mbar_arrive_expect_tx(bar, 64);
      break;
    case Misuse::never_completes:
      mbar_wait(bar, 0);
      break;
    case Misuse::misaligned:
      mbar_arrive_expect_tx(bar, 8 * 64);
      tma_load_2d(buf + 64, &map, 0, 0, bar);
      break;
    case Misuse::outside_box:
      mbar_arrive_expect_tx(bar, 8 * 64);
      tma_load_im2col(buf, &map, 0, -2, 0, 0, 0, 0, bar);
      break;
    case Misuse::unfenced:  // a load on a barrier whose init the async proxy was not shown
      mbar_arrive_expect_tx(bar, 8 * 64);
      tma_load_2d(buf, &map, 0, 0, bar);
      mbar_wait(bar, 0);
      break;
  }
}

void run_misuse(Misuse m) {
  static std::vector<uint16_t> x(2 * 4 * 4 * 32, 1);
  TensorMap map;
  if (m == Misuse::outside_box) vk::emu::encode_conv3x3_im2col(&map, x.data(), vk::emu::TmaElement::f16, 2, 4, 4, 32, 32, 8);
  else vk::emu::encode_rows(&map, x.data(), vk::emu::TmaElement::f16, 32, 32, 32, 8);
  launch("misuse_kernel", misuse_kernel, dim3(1), dim3(32), 2048, map, m);
}

}  // namespace

namespace {

enum class StoreFault { none, no_fence, no_barrier, rewrite_before_wait, no_wait };

// The epilogue's use of a tensor store, twice over one staging box (16 x 64, 128-byte
// swizzle): every thread writes its share (round r: element value r + 1), fences, a barrier,
// thread 0 stores the box at rows 16r and commits; before the second round's writes thread 0
// waits for the first store's reads and a barrier tells the others. Faults: a writer that
// does not fence; the issue without the barrier; the second round written before the wait;
// no wait at all.
__global__ void store_rounds_kernel(const TensorMap map, StoreFault fault) {
  VK_DYNAMIC_SHARED(uint32_t, buf);
  for (int r = 0; r < 2; ++r) {
    if (r == 1) {
      if (threadIdx.x == 0 && fault != StoreFault::rewrite_before_wait && fault != StoreFault::no_wait)
        tma_store_wait_read();
      __syncthreads();
    }
    for (int i = threadIdx.x; i < 16 * 32; i += blockDim.x) st_shared(buf + i, uint32_t(r + 1) * 0x10001u);
    if (fault != StoreFault::no_fence) fence_proxy_async();
    if (fault != StoreFault::no_barrier) __syncthreads();
    if (threadIdx.x == 0) {
      tma_store_2d(&map, 0, 16 * r, buf);
      tma_store_commit();
    }
  }
  if (threadIdx.x == 0 && fault != StoreFault::no_wait) tma_store_wait();
}

void run_store_rounds(StoreFault fault) {
  std::vector<uint16_t> m(32 * 64, 0);
  TensorMap map;
  if (!vk::emu::encode_rows(&map, m.data(), vk::emu::TmaElement::f16, 32, 64, 64, 16, 128).empty())
    throw std::logic_error("map");
  launch("store_rounds_kernel", store_rounds_kernel, dim3(1), dim3(64), 16 * 128, map, fault);
  for (int i = 0; i < 32 * 64; ++i)
    if (m[i] != i / (16 * 64) + 1) throw std::runtime_error("store rounds: wrong element " + std::to_string(i));
}

}  // namespace

// A staging buffer reused by tensor stores: right with its fences, barriers and waits;
// each one left out is reported.
EMU_TEST(tma_store_staging_reuse_and_its_faults) {
  run_store_rounds(StoreFault::none);
  expect_error([] { run_store_rounds(StoreFault::no_fence); }, {"asynchronous-proxy read (tensor store)", "fence.proxy.async"});
  expect_error([] { run_store_rounds(StoreFault::no_barrier); }, {"shared-memory race", "test_tma.cpp"});
  expect_error([] { run_store_rounds(StoreFault::rewrite_before_wait); },
               {"shared-memory race", "while the tensor store was in flight"});
  expect_error([] { run_store_rounds(StoreFault::no_wait); }, {"exits with tensor stores"});
}

EMU_TEST(tma_ring_of_stages_through_mbarrier_phases) { run_ring(Fault::none); }

EMU_TEST(tma_reader_without_mbarrier_wait_is_a_race) {
  expect_error([] { run_ring(Fault::no_wait); }, {"shared-memory race", "test_tma.cpp"});
}

EMU_TEST(tma_refill_before_release_is_a_race) {
  expect_error([] { run_ring(Fault::early_release); }, {"shared-memory race", "test_tma.cpp"});
}

EMU_TEST(tma_misuse_is_reported) {
  expect_error([] { run_misuse(Misuse::uninitialised); }, {"used before its mbarrier.init"});
  expect_error([] { run_misuse(Misuse::twice); }, {"initialised twice"});
  expect_error([] { run_misuse(Misuse::extra_arrival); }, {"more arrivals than its count"});
  expect_error([] { run_misuse(Misuse::bytes_left); }, {"expecting 64 bytes", "never came"});
  expect_error([] { run_misuse(Misuse::never_completes); }, {"can never finish", "mbarrier", "1 arrivals"});
  expect_error([] { run_misuse(Misuse::misaligned); }, {"not 128-byte aligned"});
  expect_error([] { run_misuse(Misuse::outside_box); }, {"outside the bounding box"});
  expect_error([] { run_misuse(Misuse::unfenced); }, {"has not run mbar_init_fence()", "initialised at"});
}
