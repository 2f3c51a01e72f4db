// What the torch-side op code hands to a backend's launcher: raw pointers, sizes and
// enums only, so launchers compile without torch headers (nvcc and emulator alike).
#pragma once

#include <cstdint>

namespace vk {

struct ImplicitGemmPlan;  // conv3x3_implicit_gemm_plan.h

enum class DType { float32, float16, bfloat16 };
enum class Layout { nchw, nhwc };  // nhwc = torch.channels_last

inline int dtype_size(DType t) { return t == DType::float32 ? 4 : 2; }

// Whether a pointer suits `bytes`-wide vector or cp.async accesses.
inline bool aligned_to(const void* p, int bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// maxpool2x2: x (N, C, H, W) -> y (N, C, H/2, W/2), both dense in `layout`.
struct Maxpool2x2Args {
  const void* x;
  void* y;
  DType dtype;
  Layout layout;
  int64_t N, C, H, W;
  void* stream;  // cudaStream_t for CUDA tensors, unused on the emulator
};

// conv3x3: y = [maxpool2x2](ReLU?(conv2d(x, weight, bias, stride 1, padding 1))).
// x (N, C, H, W) and y (N, K, H, W), or (N, K, H/2, W/2) when pool, both dense in
// `layout`; weight (K, C, 3, 3) contiguous; bias (K) or nullptr. One dtype for all.
struct Conv3x3Args {
  const void* x;
  const void* weight;
  const void* bias;  // nullptr: no bias
  void* y;
  DType dtype;
  Layout layout;
  int64_t N, C, H, W, K;
  bool relu, pool;
  void* stream;  // cudaStream_t for CUDA tensors, unused on the emulator
  // Winograd algorithms: U = winograd_weight(weight, m), fp32 (alpha^2, C, K); they
  // read U, not weight.
  const float* winograd_u = nullptr;
  // implicit_gemm: the device's multiprocessor count (its split-K choice depends on it;
  // the emulator is given an H100's or H200's 132, so it chooses what those GPUs do),
  // the plan the op chose (tile and split-K: it reads the environment and the measured
  // table once, so the launch runs the plan its workspace was sized for; nullptr: the
  // launcher computes it), and the fp32 workspace a split-K plan needs
  // (workspace_floats(K); without it a split plan is refused).
  int sm_count = 132;
  const ImplicitGemmPlan* plan = nullptr;
  float* workspace = nullptr;
  // implicit_gemm with stream-K (plan.sk.sk_tiles > 0): its fixup_counters() arrival
  // counters, zero at the launch (the workspace holds its fixup slots).
  int32_t* fixup_counters = nullptr;
  // implicit_gemm: whether the device runs the wgmma tiles (a build with sm_90a kernels on
  // a compute capability 9.0 GPU; the emulator runs them everywhere).
  bool wgmma = true;
  // implicit_gemm: the dynamic shared memory a block may opt in to on the device (bytes; 0:
  // no limit, the emulator, which mirrors an H100/H200's 227 KiB that every tile fits). A
  // measured tile that needs more runs as the rule's tile (conv3x3_implicit_gemm_plan.h).
  int64_t smem_optin = 0;
  // implicit_gemm: x is NHWC (`layout`); y is NHWC too, or with y_nchw NCHW (N, K, Ho, Wo),
  // written so by the kernel's epilogue (the op's NCHW calls).
  bool y_nchw = false;
  // float32 (every algorithm): y_tf32, y rounded to TF32 (cvt.rna: 10 mantissa bits) after
  // bias and ReLU; implicit_gemm's TF32 math: x_tf32, x's values are TF32 already (a
  // y_tf32 output), used as they are instead of rounded again. See conv3x3's x_tf32, y_tf32.
  bool x_tf32 = false, y_tf32 = false;
};

// tensor_core_weight: weight (K, C, 3, 3) with any strides (in elements) -> out (K, 3,
// 3, Cp) contiguous, the tensor-core algorithms' weight: channels C..Cp-1 zero, and with
// round_tf32 (float32 only) every value rounded to TF32 as cvt.rna.tf32.f32 does.
struct TensorCoreWeightArgs {
  const void* weight;
  void* out;
  DType dtype;
  int64_t K, C, Cp;
  int64_t stride[4];  // weight's (K, C, 3, 3) strides
  bool round_tf32;
  void* stream;  // cudaStream_t for CUDA tensors, unused on the emulator
};

// tensor_core_input: x (N, C, H, W) with any strides (in elements) -> out (N, H, W, Cp)
// dense (channels_last, 16-byte aligned), the tensor-core algorithms' x: channels C..Cp-1
// zero, values copied as they are.
struct TensorCoreInputArgs {
  const void* x;
  void* out;
  DType dtype;
  int64_t N, C, H, W, Cp;
  int64_t stride[4];  // x's (N, C, H, W) strides
  void* stream;       // cudaStream_t for CUDA tensors, unused on the emulator
};

// winograd_weight: weight (K, C, 3, 3) contiguous -> u (alpha^2, C, K) fp32 contiguous,
// alpha = tile + 2, tile = 2 or 4.
struct WinogradWeightArgs {
  const void* weight;
  float* u;
  DType dtype;
  int64_t K, C;
  int tile;
  void* stream;  // cudaStream_t for CUDA tensors, unused on the emulator
};

}  // namespace vk
