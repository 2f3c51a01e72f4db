// The SIMT emulator's own tests: kernels written as plain CUDA (through
// kernels/simt.cuh), run on the CPU, checked against values computed here.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "../../csrc/emu/launch.h"
#include "../../csrc/kernels/simt.cuh"
#include "harness.h"

using emu_test::expect_error;
using vk::emu::launch;

namespace {

// ---- kernels --------------------------------------------------------------------------

constexpr int kTile = 32;

// Transpose of an R x C matrix through a padded shared tile: blocks of (32, 8)
// threads, each thread moving 4 elements in and 4 out.
__global__ void transpose_kernel(const float* in, float* out, int rows, int cols) {
  VK_SHARED(float, tile, [kTile][kTile + 1]);
  const int x = blockIdx.x * kTile + threadIdx.x;
  for (int j = threadIdx.y; j < kTile; j += blockDim.y) {
    const int y = blockIdx.y * kTile + j;
    if (x < cols && y < rows) tile[j][threadIdx.x] = in[(long long)y * cols + x];
  }
  __syncthreads();
  const int ox = blockIdx.y * kTile + threadIdx.x;
  for (int j = threadIdx.y; j < kTile; j += blockDim.y) {
    const int oy = blockIdx.x * kTile + j;
    if (ox < rows && oy < cols) out[(long long)oy * rows + ox] = tile[threadIdx.x][j];
  }
}

// Sum of each block's slice: shuffle-reduce within warps, then across warps.
__global__ void block_sum_kernel(const float* in, float* out, int n) {
  VK_SHARED(float, partial, [32]);
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  float v = i < n ? in[i] : 0.f;
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < (int)(blockDim.x / 32) ? partial[lane] : 0.f;
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
    if (lane == 0) out[blockIdx.x] = v;
  }
}

// Every shuffle flavour and width, each lane recording what it received.
__global__ void shuffle_modes_kernel(int* out) {
  const int lane = threadIdx.x;
  int* row = out + lane * 5;
  row[0] = __shfl_sync(0xffffffffu, lane * 10, 3);
  row[1] = __shfl_sync(0xffffffffu, lane * 10, lane + 1, 8);
  row[2] = __shfl_up_sync(0xffffffffu, lane * 10, 2, 16);
  row[3] = __shfl_down_sync(0xffffffffu, lane * 10, 3);
  row[4] = __shfl_xor_sync(0xffffffffu, lane * 10, 5, 4);
}

__global__ void vote_kernel(unsigned* out) {
  const int lane = threadIdx.x % 32;
  const unsigned b = __ballot_sync(0xffffffffu, lane % 3 == 0);
  const bool any = __any_sync(0xffffffffu, lane == 7);
  const bool all = __all_sync(0xffffffffu, lane < 40);
  const int count = __syncthreads_count(threadIdx.x % 5 == 0);
  const bool bar_or = __syncthreads_or(threadIdx.x == 99);
  const bool bar_and = __syncthreads_and(threadIdx.x < 99);
  __syncwarp();
  if (threadIdx.x == 0) {
    out[0] = b;
    out[1] = any;
    out[2] = all;
    out[3] = static_cast<unsigned>(count);
    out[4] = bar_or;
    out[5] = bar_and;
  }
}

// Half the block returns before the barrier the other half waits at.
__global__ void divergent_barrier_kernel(float* out) {
  if (threadIdx.x >= 64) return;
  __syncthreads();
  out[threadIdx.x] = 1.f;
}

// The two halves of a warp shuffle with a full mask at two different call sites.
__global__ void divergent_shuffle_kernel(float* out) {
  if (threadIdx.x < 16) {
    out[threadIdx.x] = __shfl_sync(0xffffffffu, 1.f, 0);
  } else {
    out[threadIdx.x] = __shfl_sync(0xffffffffu, 2.f, 0);
  }
}

// Lanes 16..31 have exited; CUDA lets the others use a full mask, but a read of an
// exited lane's value is undefined and reported.
__global__ void exited_lanes_shuffle_kernel(float* out, int src) {
  if (threadIdx.x >= 16) return;
  out[threadIdx.x] = __shfl_sync(0xffffffffu, static_cast<float>(threadIdx.x), src);
}

// Reads shared memory that no thread wrote: must come out as the poison (NaN).
__global__ void unwritten_shared_kernel(float* out) {
  VK_SHARED(float, buf, [64]);
  if (threadIdx.x < 32) buf[threadIdx.x] = static_cast<float>(threadIdx.x);
  __syncthreads();
  out[blockIdx.x * 64 + threadIdx.x] = buf[threadIdx.x];  // elements 32..63 were never written
}

__global__ void dynamic_shared_kernel(float* out, int n) {
  VK_DYNAMIC_SHARED(float, smem);
  smem[threadIdx.x] = static_cast<float>(threadIdx.x) * 2.f;
  __syncthreads();
  out[threadIdx.x] = smem[n - 1 - threadIdx.x];
}

__global__ void shared_overrun_kernel(float* out) {
  VK_SHARED(float, buf, [8]);
  float* const p = &buf[0];  // through a pointer: the overrun is this test's point, not UB to flag
  p[threadIdx.x] = 1.f;      // launched with 12 threads: writes past the array
  __syncthreads();
  out[threadIdx.x] = buf[0];
}

// A float4 stored 4 bytes into a shared array: a misaligned vector access, which the GPU
// faults on. `aligned` moves it to a 16-byte boundary (the control: no error).
__global__ void misaligned_shared_kernel(float* out, int aligned) {
  VK_SHARED(float, buf, [8]);
  vk::emu::st_shared(reinterpret_cast<float4*>(&buf[aligned ? 4 : 1]), make_float4(1.f, 2.f, 3.f, 4.f));
  __syncthreads();
  out[threadIdx.x] = vk::emu::ld_shared(&buf[aligned ? 4 : 1]);
}

// Each thread of a 3-D grid of 3-D blocks writes its global coordinates.
__global__ void coords_kernel(int* out) {
  const int X = gridDim.x * blockDim.x, Y = gridDim.y * blockDim.y;
  const int x = blockIdx.x * blockDim.x + threadIdx.x;
  const int y = blockIdx.y * blockDim.y + threadIdx.y;
  const int z = blockIdx.z * blockDim.z + threadIdx.z;
  out[(z * Y + y) * X + x] = x + 100 * y + 10000 * z;
}

__global__ void atomics_kernel(int* counter, float* fsum, unsigned* umax, int* imin) {
  atomicAdd(counter, 1);
  atomicAdd(fsum, 0.5f);
  atomicMax(umax, blockIdx.x * blockDim.x + threadIdx.x);
  atomicMin(imin, -static_cast<int>(threadIdx.x));
}

// A full 1024-thread block reversing an array through shared memory, twice.
__global__ void big_block_kernel(const int* in, int* out) {
  VK_SHARED(int, a, [1024]);
  VK_SHARED(int, b, [1024]);
  a[threadIdx.x] = in[threadIdx.x];
  __syncthreads();
  b[threadIdx.x] = a[1023 - threadIdx.x];
  __syncthreads();
  out[threadIdx.x] = b[1023 - threadIdx.x] + b[threadIdx.x];
}

__global__ void vector_types_kernel(const float4* in, float4* out) {
  const float4 v = in[threadIdx.x];
  out[threadIdx.x] = make_float4(v.w, v.z, v.y, v.x);
}

// ---- tests ----------------------------------------------------------------------------

EMU_TEST(shared_transpose) {
  const int rows = 45, cols = 77;
  std::vector<float> in(rows * cols), out(rows * cols, -1.f);
  std::iota(in.begin(), in.end(), 0.f);
  launch("transpose_kernel", transpose_kernel, dim3((cols + 31) / 32, (rows + 31) / 32), dim3(32, 8), 0, in.data(),
         out.data(), rows, cols);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) CHECK(out[c * rows + r] == in[r * cols + c]);
}

EMU_TEST(warp_shuffle_reduction) {
  const int n = 1000, block = 256;
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> d(-50, 50);
  std::vector<float> in(n);
  for (auto& v : in) v = static_cast<float>(d(rng));  // integers: the sum is exact in any order
  const int blocks = (n + block - 1) / block;
  std::vector<float> out(blocks, NAN);
  launch("block_sum_kernel", block_sum_kernel, dim3(blocks), dim3(block), 0, in.data(), out.data(), n);
  for (int b = 0; b < blocks; ++b) {
    float want = 0;
    for (int i = b * block; i < std::min(n, (b + 1) * block); ++i) want += in[i];
    CHECK(out[b] == want);
  }
}

EMU_TEST(shuffle_modes) {
  std::vector<int> out(32 * 5, -1);
  launch("shuffle_modes_kernel", shuffle_modes_kernel, dim3(1), dim3(32), 0, out.data());
  for (int lane = 0; lane < 32; ++lane) {
    const int* r = &out[lane * 5];
    CHECK(r[0] == 30);
    CHECK(r[1] == ((lane & ~7) + ((lane + 1) & 7)) * 10);
    CHECK(r[2] == ((lane % 16) >= 2 ? lane - 2 : lane) * 10);
    CHECK(r[3] == (lane + 3 < 32 ? lane + 3 : lane) * 10);
    const int x = lane ^ 5;
    CHECK(r[4] == (x < (lane & ~3) + 4 ? x : lane) * 10);
  }
}

EMU_TEST(votes_and_counting_barriers) {
  std::vector<unsigned> out(6, 12345);
  launch("vote_kernel", vote_kernel, dim3(1), dim3(100), 0, out.data());
  unsigned ballot = 0;
  for (int l = 0; l < 32; ++l)
    if (l % 3 == 0) ballot |= 1u << l;
  CHECK(out[0] == ballot);
  CHECK(out[1] == 1u);
  CHECK(out[2] == 1u);
  CHECK(out[3] == 20u);  // threads 0, 5, ..., 95
  CHECK(out[4] == 1u);
  CHECK(out[5] == 0u);
}

EMU_TEST(divergent_barrier_is_reported) {
  std::vector<float> out(128, 0.f);
  expect_error([&] { launch("divergent_barrier_kernel", divergent_barrier_kernel, dim3(2), dim3(128), 0, out.data()); },
               {"divergent_barrier_kernel", "__syncthreads()", "64 of 128", "exited"});
}

EMU_TEST(divergent_shuffle_is_reported) {
  std::vector<float> out(32, 0.f);
  expect_error([&] { launch("divergent_shuffle_kernel", divergent_shuffle_kernel, dim3(1), dim3(32), 0, out.data()); },
               {"divergent_shuffle_kernel", "different warp collectives"});
}

EMU_TEST(exited_lanes_in_shuffle_mask) {
  std::vector<float> out(32, -1.f);
  launch("exited_lanes_shuffle_kernel", exited_lanes_shuffle_kernel, dim3(1), dim3(32), 0, out.data(), 5);
  for (int i = 0; i < 16; ++i) CHECK(out[i] == 5.f);
  expect_error([&] {
    launch("exited_lanes_shuffle_kernel", exited_lanes_shuffle_kernel, dim3(1), dim3(32), 0, out.data(), 20);
  }, {"reads lane 20", "exited"});
}

EMU_TEST(unwritten_shared_read_is_poisoned) {
  const int blocks = 3;
  std::vector<float> out(blocks * 64, 0.f);
  launch("unwritten_shared_kernel", unwritten_shared_kernel, dim3(blocks), dim3(64), 0, out.data());
  for (int b = 0; b < blocks; ++b)
    for (int t = 0; t < 64; ++t) {
      if (t < 32) CHECK(out[b * 64 + t] == static_cast<float>(t));
      else CHECK(std::isnan(out[b * 64 + t]));
    }
}

EMU_TEST(dynamic_shared_memory) {
  const int n = 96;
  std::vector<float> out(n, -1.f);
  launch("dynamic_shared_kernel", dynamic_shared_kernel, dim3(1), dim3(n), n * sizeof(float), out.data(), n);
  for (int i = 0; i < n; ++i) CHECK(out[i] == 2.f * (n - 1 - i));
}

EMU_TEST(shared_overrun_is_reported) {
  std::vector<float> out(12, 0.f);
  expect_error([&] { launch("shared_overrun_kernel", shared_overrun_kernel, dim3(1), dim3(12), 0, out.data()); },
               {"shared_overrun_kernel", "wrote past the end"});
}

EMU_TEST(misaligned_shared_vector_is_reported) {
  std::vector<float> out(1, 0.f);
  launch("misaligned_shared_kernel", misaligned_shared_kernel, dim3(1), dim3(1), 0, out.data(), 1);
  CHECK(out[0] == 1.f);
  expect_error([&] { launch("misaligned_shared_kernel", misaligned_shared_kernel, dim3(1), dim3(1), 0, out.data(), 0); },
               {"misaligned shared store of 16 bytes at shared offset", "test_emulator.cpp"});
}

EMU_TEST(grid_and_block_3d) {
  const dim3 grid(3, 2, 2), block(4, 3, 5);
  const int X = 12, Y = 6, Z = 10;
  std::vector<int> out(X * Y * Z, -1);
  launch("coords_kernel", coords_kernel, grid, block, 0, out.data());
  for (int z = 0; z < Z; ++z)
    for (int y = 0; y < Y; ++y)
      for (int x = 0; x < X; ++x) CHECK(out[(z * Y + y) * X + x] == x + 100 * y + 10000 * z);
}

EMU_TEST(atomics) {
  int counter = 0, imin = 0;
  float fsum = 0.f;
  unsigned umax = 0;
  launch("atomics_kernel", atomics_kernel, dim3(37), dim3(96), 0, &counter, &fsum, &umax, &imin);
  CHECK(counter == 37 * 96);
  CHECK(fsum == 0.5f * 37 * 96);
  CHECK(umax == 37u * 96u - 1u);
  CHECK(imin == -95);
}

EMU_TEST(block_of_1024_threads) {
  std::vector<int> in(1024), out(1024, -1);
  std::iota(in.begin(), in.end(), 5);
  launch("big_block_kernel", big_block_kernel, dim3(2), dim3(1024), 0, in.data(), out.data());
  for (int i = 0; i < 1024; ++i) CHECK(out[i] == in[i] + in[1023 - i]);
}

EMU_TEST(invalid_launch_is_reported) {
  std::vector<float> out(1);
  expect_error([&] { launch("divergent_barrier_kernel", divergent_barrier_kernel, dim3(1), dim3(2048), 0, out.data()); },
               {"invalid block"});
  expect_error([&] { launch("dynamic_shared_kernel", dynamic_shared_kernel, dim3(1), dim3(1), 300000, out.data(), 1); },
               {"dynamic shared memory"});
}

EMU_TEST(vector_types) {
  std::vector<float4> in(8), out(8);
  for (int i = 0; i < 8; ++i) in[i] = make_float4(i, i + 0.25f, i + 0.5f, i + 0.75f);
  launch("vector_types_kernel", vector_types_kernel, dim3(1), dim3(8), 0, in.data(), out.data());
  for (int i = 0; i < 8; ++i) CHECK(out[i].x == in[i].w && out[i].y == in[i].z && out[i].z == in[i].y && out[i].w == in[i].x);
  static_assert(alignof(float4) == 16 && sizeof(float4) == 16, "float4 layout");
}

// Every finite binary16 value converts to float exactly and back to itself; halfway
// points between neighbours round to the even one; overflow goes to infinity.
EMU_TEST(half_conversions) {
  for (unsigned h = 0; h < 0x10000u; ++h) {
    const unsigned short bits = static_cast<unsigned short>(h);
    const unsigned exp = (h >> 10) & 31, man = h & 1023;
    const float f = __half2float(__ushort_as_half(bits));
    if (exp == 31) {
      CHECK(man ? std::isnan(f) : std::isinf(f));
      continue;
    }
    const double mag = exp ? std::ldexp(1024.0 + man, int(exp) - 25) : std::ldexp(double(man), -24);
    CHECK(double(f) == ((h & 0x8000u) ? -mag : mag));
    CHECK(__half_as_ushort(__float2half_rn(f)) == bits);
    if ((h & 0x7fffu) < 0x7bffu) {  // halfway to the next magnitude up
      const float next = __half2float(__ushort_as_half(static_cast<unsigned short>(bits + 1)));
      const float mid = static_cast<float>((double(f) + double(next)) / 2);
      const unsigned short want = (bits & 1u) ? static_cast<unsigned short>(bits + 1) : bits;
      CHECK(__half_as_ushort(__float2half_rn(mid)) == want);
    }
  }
  CHECK(std::isinf(__half2float(__float2half_rn(65520.f))));
  CHECK(__half2float(__float2half_rn(65519.f)) == 65504.f);
  CHECK(__hisnan(__float2half_rn(NAN)));
}

EMU_TEST(bfloat16_conversions) {
  for (unsigned b = 0; b < 0x10000u; ++b) {
    const unsigned short bits = static_cast<unsigned short>(b);
    const float f = __bfloat162float(__ushort_as_bfloat16(bits));
    uint32_t u;
    std::memcpy(&u, &f, 4);
    CHECK(u == (b << 16));
    if (std::isnan(f)) {
      CHECK(__hisnan(__float2bfloat16_rn(f)));
      continue;
    }
    CHECK(__bfloat16_as_ushort(__float2bfloat16_rn(f)) == bits);
    if ((b & 0x7fffu) < 0x7f7fu) {
      const uint32_t mid_bits = (b << 16) | 0x8000u;  // exactly halfway to the next magnitude up
      float mid;
      std::memcpy(&mid, &mid_bits, 4);
      const unsigned short want = (bits & 1u) ? static_cast<unsigned short>(bits + 1) : bits;
      CHECK(__bfloat16_as_ushort(__float2bfloat16_rn(mid)) == want);
    }
  }
}

}  // namespace
