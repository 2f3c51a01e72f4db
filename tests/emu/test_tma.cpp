// The tensor memory accelerator in the emulator (kernels/tma.cuh; csrc/emu/tma_emu.h,
// tma_emu.cpp, runtime.cpp): tile-mode and im2col-mode tensor loads put the right elements
// in the right (64-byte-swizzled) places, zeros outside the tensor, and complete their
// bytes on an mbarrier; the mbarrier's phases and parities work as a ring of stages needs;
// a reader that does not wait for the barrier, and a refill of a stage not yet released,
// are reported as races; misuse is an error, never a hang.
#include <cstdint>
#include <vector>

#include "../../csrc/emu/launch.h"
#include "../../csrc/kernels/tma.cuh"
#include "harness.h"

using emu_test::expect_error;
using vk::emu::launch;
using namespace vk::emu;

namespace {

// Element of 16-byte chunk `chunk` of 64-byte row `row` in a 64-byte-swizzled buffer of
// 16-bit elements (the kernels' ImplicitGemmTiling::offset()).
int swizzled(int row, int chunk) { return row * 32 + (chunk ^ ((row >> 1) & 3)) * 8; }

// One tensor load of `rows` 64-byte rows into a 1024-aligned buffer, by thread 0; every
// thread waits for it and copies its share out, unswizzled, to out[row][32].
template <bool kIm2col>
__global__ void load_kernel(const TensorMap map, int32_t c0, int32_t c1, int32_t c2, int32_t c3, int dw, int dh,
                            int rows, uint16_t* out) {
  VK_DYNAMIC_SHARED(uint16_t, buf);
  VK_SHARED(uint64_t, bar, [1]);
  if (threadIdx.x == 0) {
    mbar_init(bar, 1);
    mbar_init_fence();
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    mbar_arrive_expect_tx(bar, 64u * rows);
    if constexpr (kIm2col) tma_load_im2col(buf, &map, c0, c1, c2, c3, uint16_t(dw), uint16_t(dh), bar);
    else tma_load_2d(buf, &map, c0, c1, bar);
  }
  mbar_wait(bar, 0);
  for (int i = threadIdx.x; i < rows * 4; i += blockDim.x) {
    const int row = i / 4, chunk = i % 4;
    const uint4 v = ld_shared(reinterpret_cast<const uint4*>(buf + swizzled(row, chunk)));
    std::memcpy(out + row * 32 + chunk * 8, &v, 16);
  }
}

}  // namespace

// A 2-D tile: a 37 x 70 matrix of 16-bit values, boxes of 8 rows x 32 columns at corners
// that run past its right and bottom edges (and before its left one): zeros there.
EMU_TEST(tma_tile_2d_box_with_out_of_bound_zeros) {
  constexpr int R = 37, C = 70, kRows = 8;
  std::vector<uint16_t> m(R * C);
  for (int i = 0; i < R * C; ++i) m[i] = uint16_t(i + 1);
  TensorMap map;
  CHECK(vk::emu::encode_rows(&map, m.data(), vk::emu::TmaElement::f16, R, C, 32, kRows).empty());
  const int corners[][2] = {{0, 0}, {48, 3}, {64, 33}, {-8, 30}, {16, -3}};
  for (const auto& k : corners) {
    std::vector<uint16_t> out(kRows * 32, 0xDEAD);
    launch("load_kernel", load_kernel<false>, dim3(1), dim3(64), 1024, map, k[0], k[1], 0, 0, 0, 0, kRows, out.data());
    for (int r = 0; r < kRows; ++r)
      for (int c = 0; c < 32; ++c) {
        const int row = k[1] + r, col = k[0] + c;
        const uint16_t want = row >= 0 && row < R && col >= 0 && col < C ? m[row * C + col] : 0;
        CHECK(out[r * 32 + c] == want);
      }
  }
}

// im2col for a 3 x 3, padding 1 convolution: x (N=2, H=3, W=5, C=64) in NHWC; 16 output
// pixels from flat pixel m0 on (n, h, w in NHW order, into the next image and past the
// last one), channels 32..63, tap (r, s): row j must hold x[n][h + r - 1][w + s - 1]
// (zeros outside the image, and past the batch) for output pixel m0 + j: the implicit
// GEMM's A rows.
EMU_TEST(tma_im2col_rows_are_the_implicit_gemm_rows) {
  constexpr int N = 2, H = 3, W = 5, C = 64, kPixels = 16, c0 = 32;
  std::vector<uint16_t> x(N * H * W * C);
  for (size_t i = 0; i < x.size(); ++i) x[i] = uint16_t(i + 1);
  TensorMap map;
  CHECK(vk::emu::encode_conv3x3_im2col(&map, x.data(), vk::emu::TmaElement::bf16, N, H, W, C, 32, kPixels).empty());
  for (int m0 : {0, 7, 13, 22}) {
    const int n0 = m0 / (H * W), h0 = m0 / W % H, w0 = m0 % W;
    for (int tap = 0; tap < 9; ++tap) {
      const int r = tap / 3, s = tap % 3;
      std::vector<uint16_t> out(kPixels * 32, 0xDEAD);
      launch("load_kernel", load_kernel<true>, dim3(1), dim3(64), 1024, map, c0, w0 - 1, h0 - 1, n0, s, r, kPixels,
             out.data());
      for (int j = 0; j < kPixels; ++j) {
        const int m = m0 + j, n = m / (H * W), h = m / W % H + r - 1, w = m % W + s - 1;
        const bool inside = n < N && h >= 0 && h < H && w >= 0 && w < W;
        for (int c = 0; c < 32; ++c)
          CHECK(out[j * 32 + c] == (inside ? x[((n * H + h) * W + w) * C + c0 + c] : 0));
      }
    }
  }
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

enum class Misuse { uninitialised, twice, extra_arrival, bytes_left, never_completes, misaligned, outside_box };

__global__ void misuse_kernel(const TensorMap map, Misuse m) {
  VK_DYNAMIC_SHARED(unsigned char, buf);
  VK_SHARED(uint64_t, bar, [1]);
  if (threadIdx.x != 0) return;
  if (m != Misuse::uninitialised) mbar_init(bar, 1);
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
}
