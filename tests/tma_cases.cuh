// The tensor loads' test cases (csrc/kernels/tma.cuh), in one place for two runners:
//   tests/emu/test_tma.cpp       the host compiler: the kernel runs through the SIMT
//                                emulator (CI, no GPU);
//   tests/tensor_core_probe.cu   nvcc: the same kernel on a GPU (benchmarks/device_run.sh
//                                runs it before anything else).
// Each case checks a property the emulator's code plays no part in: the elements a load
// puts in each row of shared memory are those the PTX ISA's rules name (a tile of a
// matrix; for im2col, the implicit GEMM's A rows of a 3 x 3, padding 1 convolution: output
// pixel m0 + j at tap (r, s), zeros outside the image and past the batch). The data are
// coded: every source element's 16 bits are its index + 1 (0 is the zero fill), so a wrong
// element says where the hardware read it from.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "../csrc/kernels/tensor_core.cuh"  // fence_proxy_async
#include "../csrc/kernels/tma.cuh"

namespace vk {
namespace VK_KERNEL_NS {
namespace tma_kernels {

// Element of 16-byte chunk `chunk` of 64-byte row `row` in a 64-byte-swizzled buffer of
// 16-bit elements (the kernels' ImplicitGemmTiling::offset()).
__host__ __device__ inline int swizzled(int row, int chunk) { return row * 32 + (chunk ^ ((row >> 1) & 3)) * 8; }

// One tensor load of `rows` 64-byte rows into a 1024-aligned buffer, by thread 0; every
// thread waits for it and copies its share out, unswizzled, to out[row][32].
template <bool kIm2col>
__global__ void load_kernel(uint16_t* out, const VK_GRID_CONSTANT TensorMap map, int32_t c0, int32_t c1, int32_t c2,
                            int32_t c3, int dw, int dh, int rows) {
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
    uint16_t e[8];
    std::memcpy(e, &v, 16);
    for (int k = 0; k < 8; ++k) out[row * 32 + chunk * 8 + k] = e[k];
  }
}

// Element of 16-byte chunk `chunk` of 128-byte row `row` in a 128-byte-swizzled buffer of
// 16-bit elements (the implicit GEMM's store staging).
__host__ __device__ inline int swizzled128(int row, int chunk) { return row * 64 + (chunk ^ (row & 7)) * 8; }

// One tensor store of a box of `rows` 128-byte rows from a 1024-aligned buffer: every
// thread writes its share of the box, element (r, c) coded r * 64 + c + 1, at its swizzled
// place, fences, and after a barrier thread 0 stores the box at (c0, c1) of the map's
// matrix and waits. `out` is unused: the matrix is the map's (copy_kernel reads it back).
__global__ void store_kernel(uint16_t* out, const VK_GRID_CONSTANT TensorMap map, int32_t c0, int32_t c1, int rows) {
  (void)out;
  VK_DYNAMIC_SHARED(uint16_t, buf);
  for (int i = threadIdx.x; i < rows * 8; i += blockDim.x) {
    const int row = i / 8, chunk = i % 8;
    uint16_t e[8];
    for (int k = 0; k < 8; ++k) e[k] = uint16_t(row * 64 + chunk * 8 + k + 1);
    uint4 v;
    std::memcpy(&v, e, 16);
    st_shared(reinterpret_cast<uint4*>(buf + swizzled128(row, chunk)), v);
  }
  fence_proxy_async();
  __syncthreads();
  if (threadIdx.x == 0) {
    tma_store_2d(&map, c0, c1, buf);
    tma_store_commit();
    tma_store_wait();
  }
}

// out[i] = src[i], i < n (the stored matrix read back, by a launch of its own).
__global__ void copy_kernel(uint16_t* out, const uint16_t* src, int n) {
  for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = src[i];
}

}  // namespace tma_kernels
}  // namespace VK_KERNEL_NS
}  // namespace vk

namespace tma_cases {

using vk::VK_KERNEL_NS::TensorMap;
using vk::VK_KERNEL_NS::TmaElement;

// Compares a load's rows with what they must hold; prints up to `lines` differences, each
// with the coordinates of the element the hardware put there (decode: its code - 1 as a
// source index, or "zero").
template <class Decode>
int compare(const std::vector<uint16_t>& got, const std::vector<uint16_t>& want, Decode decode, std::string* report,
            int lines = 8, size_t width = 32) {
  int bad = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (got[i] == want[i]) continue;
    if (bad++ < lines) {
      char buf[200];
      std::snprintf(buf, sizeof buf, "\n    row %zu element %zu: got %s, want %s", i / width, i % width,
                    got[i] ? decode(got[i] - 1).c_str() : "zero", want[i] ? decode(want[i] - 1).c_str() : "zero");
      *report += buf;
    }
  }
  return bad;
}

inline bool print_case(const std::string& name, int bad, int total, const std::string& lines) {
  std::printf("tensor-load case %s: %s", name.c_str(), bad ? "DIFFERS" : "ok");
  if (bad) std::printf(" (%d of %d elements)%s", bad, total, lines.c_str());
  std::printf("\n");
  return bad != 0;
}

// runner.upload(vector<uint16_t>) -> const uint16_t* (where the load reads it);
// runner.launch(name, kernel, threads, smem, out vector, map, scalars...).
template <class Runner>
int run_tile_cases(Runner& runner) {
  namespace k = vk::VK_KERNEL_NS::tma_kernels;
  // A 37 x 70 matrix, boxes of 8 rows x 32 columns at corners that run past its right and
  // bottom edges, and before its left and top ones.
  constexpr int R = 37, C = 70, kRows = 8;
  std::vector<uint16_t> m(R * C);
  for (int i = 0; i < R * C; ++i) m[i] = uint16_t(i + 1);
  TensorMap map;
  const std::string why = vk::VK_KERNEL_NS::encode_rows(&map, runner.upload(m), TmaElement::f16, R, C, 32, kRows);
  if (!why.empty()) return print_case("tile (encode: " + why + ")", 1, 1, "");
  auto decode = [](int i) { return "(" + std::to_string(i / C) + ", " + std::to_string(i % C) + ")"; };
  int failed = 0;
  const int corners[][2] = {{0, 0}, {48, 3}, {64, 33}, {-8, 30}, {16, -3}};
  for (const auto& q : corners) {
    std::vector<uint16_t> out(kRows * 32, 0xDEAD), want(kRows * 32);
    runner.launch("tma load_kernel<tile>", k::load_kernel<false>, 64, size_t(1024), out, map, q[0], q[1], 0, 0, 0, 0,
                  kRows);
    for (int r = 0; r < kRows; ++r)
      for (int c = 0; c < 32; ++c) {
        const int row = q[1] + r, col = q[0] + c;
        want[r * 32 + c] = row >= 0 && row < R && col >= 0 && col < C ? m[row * C + col] : 0;
      }
    std::string lines;
    const int bad = compare(out, want, decode, &lines);
    failed += print_case("tile 8x32 at (" + std::to_string(q[1]) + ", " + std::to_string(q[0]) + ")", bad,
                         kRows * 32, lines);
  }
  return failed;
}

// im2col: x (N=2, H=4, W=5, C=64) in NHWC, or (row_step 2) the view of its even or odd
// rows as an (N, 2, W, C) tensor (the pooled layers' maps: a row stride of 2W pixels, the
// odd view's base one row in); 16 output pixels of that tensor from flat pixel m0 on (n,
// h, w in NHW order, into the next image and past the last one), channels 32..63, every tap
// (r, s) as offsets (s, r): row j holds view row h + r - 1, column w + s - 1 of output pixel
// m0 + j (zeros outside the view: view rows -1 and H / row_step).
template <class Runner>
int run_im2col_cases(Runner& runner) {
  namespace k = vk::VK_KERNEL_NS::tma_kernels;
  constexpr int N = 2, H = 4, W = 5, C = 64, kPixels = 16, c0 = 32;
  std::vector<uint16_t> x(N * H * W * C);
  for (size_t i = 0; i < x.size(); ++i) x[i] = uint16_t(i + 1);
  auto decode = [](int i) {
    const int c = i % C, p = i / C;
    return "x[n " + std::to_string(p / (H * W)) + "][h " + std::to_string(p / W % H) + "][w " + std::to_string(p % W) +
           "][c " + std::to_string(c) + "]";
  };
  int failed = 0;
  const int views[][2] = {{1, 0}, {2, 0}, {2, 1}};  // (row_step, first_row)
  for (const auto& view : views) {
    const int step = view[0], first = view[1], Hv = H / step;
    const std::string name = step == 1 ? "im2col" : "im2col of rows " + std::to_string(first) + " + 2k";
    TensorMap map;
    const std::string why = vk::VK_KERNEL_NS::encode_conv3x3_im2col(&map, runner.upload(x), TmaElement::bf16, N, H, W,
                                                                    C, 32, kPixels, step, first);
    if (!why.empty()) {
      failed += print_case(name + " (encode: " + why + ")", 1, 1, "");
      continue;
    }
    for (int m0 : {0, 7, 13, N * Hv * W - 11}) {
      const int n0 = m0 / (Hv * W), h0 = m0 / W % Hv, w0 = m0 % W;
      for (int tap = 0; tap < 9; ++tap) {
        const int r = tap / 3, s = tap % 3;
        std::vector<uint16_t> out(kPixels * 32, 0xDEAD), want(kPixels * 32);
        runner.launch("tma load_kernel<im2col>", k::load_kernel<true>, 64, size_t(1024), out, map, c0, w0 - 1, h0 - 1,
                      n0, s, r, kPixels);
        for (int j = 0; j < kPixels; ++j) {
          const int m = m0 + j, n = m / (Hv * W), h = m / W % Hv + r - 1, w = m % W + s - 1;
          const bool inside = n < N && h >= 0 && h < Hv && w >= 0 && w < W;
          const int row = h * step + first;  // x's row
          for (int c = 0; c < 32; ++c) want[j * 32 + c] = inside ? x[((n * H + row) * W + w) * C + c0 + c] : 0;
        }
        std::string lines;
        const int bad = compare(out, want, decode, &lines);
        failed += print_case(name + ", 16 pixels from " + std::to_string(m0) + ", tap (" + std::to_string(r) + ", " +
                                 std::to_string(s) + ")",
                             bad, kPixels * 32, lines);
      }
    }
  }
  return failed;
}

// Tensor stores (the implicit GEMM's epilogue): boxes of 16 rows x 64 columns (128-byte
// rows, 128-byte swizzle) into a 37 x 150 matrix, inside it and running past its right and
// bottom edges; every element outside the box (and outside the matrix) keeps its value.
template <class Runner>
int run_store_cases(Runner& runner) {
  namespace k = vk::VK_KERNEL_NS::tma_kernels;
  constexpr int R = 37, C = 150, kRows = 16, kUntouched = 0x8000;
  auto decode = [](int i) {
    return i + 1 >= kUntouched ? "untouched (" + std::to_string(i + 1 - kUntouched) + ")"
                               : "box (" + std::to_string(i / 64) + ", " + std::to_string(i % 64) + ")";
  };
  int failed = 0;
  const int corners[][2] = {{0, 0}, {64, 3}, {96, 8}, {32, 29}};
  for (const auto& q : corners) {
    std::vector<uint16_t> m(R * C);
    for (int i = 0; i < R * C; ++i) m[i] = uint16_t(kUntouched + i % 1000);
    const uint16_t* dst = runner.upload(m);
    TensorMap map;
    const std::string why = vk::VK_KERNEL_NS::encode_rows(&map, dst, TmaElement::f16, R, C, 64, kRows, 128);
    if (!why.empty()) return print_case("store (encode: " + why + ")", 1, 1, "");
    std::vector<uint16_t> unused(1), got(R * C, 0xDEAD), want = m;
    runner.launch("tma store_kernel", k::store_kernel, 64, size_t(kRows * 128), unused, map, q[0], q[1], kRows);
    runner.launch("tma copy_kernel", k::copy_kernel, 256, size_t(0), got, dst, R * C);
    for (int r = 0; r < kRows; ++r)
      for (int c = 0; c < 64; ++c) {
        const int row = q[1] + r, col = q[0] + c;
        if (row < R && col < C) want[row * C + col] = uint16_t(r * 64 + c + 1);
      }
    std::string lines;
    const int bad = compare(got, want, decode, &lines, 8, C);
    failed += print_case("store 16x64 at (" + std::to_string(q[1]) + ", " + std::to_string(q[0]) + ")", bad, R * C,
                         lines);
  }
  return failed;
}

}  // namespace tma_cases
