// conv3x3_implicit_gemm's launch: block tile (implicit_gemm_tile below), element type
// and math (fp16 and bf16 on their own mma; fp32 with TF32 math: the op sends fp32 here
// only when TF32 is allowed), index type, and geometry: 3 dtypes x 3 tiles x 2 index
// types = 18 instantiations. Compiled
// into both backends, which pass their own Launcher, so the GPU and the emulator run
// the same choice. Expects what the op prepares: x and y NHWC, weight (K, 3, 3, C),
// C a multiple of 8.
#pragma once

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "../kernels/conv3x3_implicit_gemm.cuh"
#include "args.h"
#include "launch_geometry.h"

namespace vk {

template <class T, VK_KERNEL_NS::MmaType kMma, int kWarpsM, int kWarpsN, class Index, class Launcher>
void conv3x3_implicit_gemm_run(const Conv3x3Args& a, const Launcher& launch) {
  using namespace VK_KERNEL_NS;
  using L = ImplicitGemmTiling<T, kWarpsM, kWarpsN>;
  constexpr int kBN = L::kBN;
  ImplicitGemmParams<Index> p;
  p.N = a.N, p.C = a.C, p.H = a.H, p.W = a.W, p.K = a.K;
  p.M = a.pool ? 4 * a.N * (a.H / 2) * (a.W / 2) : a.N * a.H * a.W;
  p.k_blocks = (a.K + kBN - 1) / kBN;
  p.relu = a.relu, p.pool = a.pool;
  const int64_t blocks = (int64_t(p.M) + L::kBM - 1) / L::kBM * p.k_blocks;
  if (blocks > (int64_t(1) << 31) - 1 || a.H > INT32_MAX - 2 || a.W > INT32_MAX - 2)
    throw std::invalid_argument("vggkern.conv3x3: too many blocks for one implicit_gemm launch");
  LaunchGeometry g;
  g.block.x = L::kThreads;
  g.grid.x = static_cast<unsigned>(blocks);  // M tile b / k_blocks, K tile b % k_blocks
  g.smem_bytes = L::kSmemBytes;
  launch("conv3x3_implicit_gemm_kernel", conv3x3_implicit_gemm_kernel<T, kMma, kWarpsM, kWarpsN, Index>, g,
         static_cast<const T*>(a.x), static_cast<const T*>(a.weight), static_cast<const T*>(a.bias),
         static_cast<T*>(a.y), p);
}

// The block tile (M x K outputs; warps of 64 x 64): 128 x 64 where K <= 64, else 128 x
// 128. The environment variable VGGKERN_IMPLICIT_GEMM_TILE forces one of the three
// ("128x64", "128x128", "256x128"), read per launch: a tuning knob, so that a benchmark
// can time every tile on every layer (benchmarks/cases.py) and the table above is chosen
// from measurements.
enum class ImplicitGemmTile { m128n64, m128n128, m256n128 };

inline ImplicitGemmTile implicit_gemm_tile(int64_t K) {
  const char* forced = std::getenv("VGGKERN_IMPLICIT_GEMM_TILE");
  if (forced == nullptr || forced[0] == '\0') return K <= 64 ? ImplicitGemmTile::m128n64 : ImplicitGemmTile::m128n128;
  const std::string name(forced);
  if (name == "128x64") return ImplicitGemmTile::m128n64;
  if (name == "128x128") return ImplicitGemmTile::m128n128;
  if (name == "256x128") return ImplicitGemmTile::m256n128;
  throw std::invalid_argument("vggkern.conv3x3: VGGKERN_IMPLICIT_GEMM_TILE must be 128x64, 128x128 or 256x128, got '" +
                              name + "'");
}

template <class T, VK_KERNEL_NS::MmaType kMma, int kWarpsM, int kWarpsN, class Launcher>
void conv3x3_implicit_gemm_indexed(const Conv3x3Args& a, const Launcher& launch) {
  const int64_t limit = int64_t(1) << 31;
  const int64_t y_numel = a.N * a.K * a.H * a.W;  // pooled y is smaller
  const bool fits32 = !force_int64_index() && a.N * a.H * a.W * a.C < limit && a.K * 9 * a.C < limit && y_numel < limit;
  if (fits32) conv3x3_implicit_gemm_run<T, kMma, kWarpsM, kWarpsN, int32_t>(a, launch);
  else conv3x3_implicit_gemm_run<T, kMma, kWarpsM, kWarpsN, int64_t>(a, launch);
}

template <class T, VK_KERNEL_NS::MmaType kMma, class Launcher>
void conv3x3_implicit_gemm_typed(const Conv3x3Args& a, const Launcher& launch) {
  switch (implicit_gemm_tile(a.K)) {
    case ImplicitGemmTile::m128n64:
      conv3x3_implicit_gemm_indexed<T, kMma, 2, 1>(a, launch);
      break;
    case ImplicitGemmTile::m128n128:
      conv3x3_implicit_gemm_indexed<T, kMma, 2, 2>(a, launch);
      break;
    case ImplicitGemmTile::m256n128:
      conv3x3_implicit_gemm_indexed<T, kMma, 4, 2>(a, launch);
      break;
  }
}

template <class Launcher>
void conv3x3_implicit_gemm_dispatch(const Conv3x3Args& a, const Launcher& launch) {
  if (a.layout != Layout::nhwc || a.C % 8 != 0)
    throw std::invalid_argument("vggkern.conv3x3: implicit_gemm expects NHWC input with C a multiple of 8");
  switch (a.dtype) {
    case DType::float16:
      conv3x3_implicit_gemm_typed<__half, VK_KERNEL_NS::MmaType::f16>(a, launch);
      break;
    case DType::bfloat16:
      conv3x3_implicit_gemm_typed<__nv_bfloat16, VK_KERNEL_NS::MmaType::bf16>(a, launch);
      break;
    case DType::float32:  // TF32 math; whether it is allowed is the op's decision (csrc/ops/conv3x3.cpp)
      conv3x3_implicit_gemm_typed<float, VK_KERNEL_NS::MmaType::tf32>(a, launch);
      break;
  }
}

}  // namespace vk
