// Torch-side helpers shared by every op implementation (csrc/ops/*.cpp): argument
// checks with messages that name the argument, element-type and layout mapping, and
// running a launcher on the tensor's device (GPU kernels, or the emulator for CPU).
#pragma once

#include <ATen/ATen.h>

#include <cctype>
#include <cstdlib>
#include <limits>
#include <string>
#include <type_traits>

#include "args.h"

#if VK_WITH_CUDA
#include <cuda_runtime_api.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "../cuda/device_attribute.h"
#define VK_CUDA_LAUNCHER(fn) (&fn)
#else
#define VK_CUDA_LAUNCHER(fn) nullptr
#endif

namespace vk {

// A dtype as Python prints it ("torch.float32"), so that the op's messages read as those
// of the Python wrappers and fake kernels (vggkern/ops.py) do.
inline std::string dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "torch.float32";
    case at::kDouble: return "torch.float64";
    case at::kHalf: return "torch.float16";
    case at::kBFloat16: return "torch.bfloat16";
    case at::kByte: return "torch.uint8";
    case at::kChar: return "torch.int8";
    case at::kShort: return "torch.int16";
    case at::kInt: return "torch.int32";
    case at::kLong: return "torch.int64";
    case at::kComplexHalf: return "torch.complex32";
    case at::kComplexFloat: return "torch.complex64";
    case at::kComplexDouble: return "torch.complex128";
    default: {  // the rest print as their ATen name in lower case (bool, float8_e4m3fn, ...)
      std::string name = c10::toString(t);
      for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      return "torch." + name;
    }
  }
}

inline DType checked_dtype(const at::Tensor& t, const char* op, const char* arg) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::float32;
    case at::kHalf: return DType::float16;
    case at::kBFloat16: return DType::bfloat16;
    default:
      TORCH_CHECK_VALUE(false, op, ": expected ", arg, " of dtype float32, float16 or bfloat16, got ",
                        dtype_name(t.scalar_type()));
  }
}

inline void check_device(const at::Tensor& t, const char* op, const char* arg) {
  TORCH_CHECK_VALUE(t.is_cpu() || t.is_cuda(), op, ": expected ", arg, " on a CPU or CUDA device, got ", t.device());
}

// A weight transform's input (winograd_weight, tensor_core_weight): a raw weight (K, C,
// 3, 3) of a float dtype on a CPU or CUDA device. Returns its element type.
inline DType check_raw_weight(const at::Tensor& weight, const char* op) {
  TORCH_CHECK_VALUE(weight.defined(), op, ": expected weight to be a tensor, got None");
  check_device(weight, op, "weight");
  TORCH_CHECK_VALUE(weight.dim() == 4 && weight.size(2) == 3 && weight.size(3) == 3, op,
                    ": expected weight of shape [K, C, 3, 3], got ", weight.sizes());
  return checked_dtype(weight, op, "weight");
}

// The checks every op makes of its activation x (N, C, H, W): device, rank, dtype, C >= 1.
// Returns x's element type.
inline DType check_activation(const at::Tensor& x, const char* op) {
  // The dispatcher passes None as an undefined tensor (it dispatches on the other tensors).
  TORCH_CHECK_VALUE(x.defined(), op, ": expected x to be a tensor, got None");
  check_device(x, op, "x");
  TORCH_CHECK_VALUE(x.dim() == 4, op, ": expected x to be a 4-D tensor (N, C, H, W), got a ", x.dim(),
                    "-D tensor of shape ", x.sizes());
  const DType dtype = checked_dtype(x, op, "x");
  TORCH_CHECK_VALUE(x.size(1) >= 1, op, ": expected x with at least one channel, got shape ", x.sizes());
  return dtype;
}

// check_activation, and a 2x2 window's fit: maxpool2x2's checks of x.
inline DType check_maxpool2x2_input(const at::Tensor& x, const char* op) {
  const DType dtype = check_activation(x, op);
  TORCH_CHECK_VALUE(x.size(2) >= 2 && x.size(3) >= 2, op, ": expected x with H >= 2 and W >= 2 for a 2x2 window, got H=",
                    x.size(2), ", W=", x.size(3));
  return dtype;
}

// The memory format an output takes: the input's, by torch's own rule.
inline Layout layout_of(at::MemoryFormat f) { return f == at::MemoryFormat::ChannelsLast ? Layout::nhwc : Layout::nchw; }

// Debug aid: outputs filled with NaN before the kernel runs, so an element a kernel
// fails to write shows. Always on the emulator (cheap next to emulation); on the GPU
// when VGGKERN_POISON_OUTPUTS=1.
inline void poison_output(at::Tensor& y) {
  static const bool on_gpu = [] {
    const char* e = std::getenv("VGGKERN_POISON_OUTPUTS");
    return e != nullptr && e[0] == '1';
  }();
  if (y.is_cpu() || on_gpu) y.fill_(std::numeric_limits<float>::quiet_NaN());
}

#if VK_WITH_CUDA
// A CUDA device attribute of x's GPU, read once per device (cuda/device_attribute.h).
template <cudaDeviceAttr kAttr>
int device_attribute(const at::Tensor& x, const char* what) {
  int value = 0;
  TORCH_CHECK(cuda::device_attribute<kAttr>(x.device().index(), value) == cudaSuccess, "vggkern: cannot read the ",
              what, " of ", x.device());
  return value;
}
#endif

// The multiprocessor count of x's GPU; for CPU tensors, which run on the emulator, the
// 132 of an H100 SXM or H200, so that the emulator makes the same shape-dependent choices
// (implicit_gemm's split-K) as those GPUs.
inline int sm_count_of(const at::Tensor& x) {
#if VK_WITH_CUDA
  if (x.is_cuda()) {
    const int count = device_attribute<cudaDevAttrMultiProcessorCount>(x, "multiprocessor count");
    TORCH_CHECK(count > 0, "vggkern: cannot read the multiprocessor count of ", x.device());
    return count;
  }
#endif
  (void)x;
  return 132;
}

// The dynamic shared memory a block may opt in to on x's GPU (bytes); 0 for CPU tensors
// (the emulator: no limit below what every tile needs).
inline int64_t smem_optin_of(const at::Tensor& x) {
#if VK_WITH_CUDA
  if (x.is_cuda()) return device_attribute<cudaDevAttrMaxSharedMemoryPerBlockOptin>(x, "shared memory per block");
#endif
  (void)x;
  return 0;
}

// Does x's device run implicit_gemm's wgmma tiles? They are built where
// TORCH_CUDA_ARCH_LIST names 9.0a (VK_WGMMA) and run on compute capability 9.0 exactly
// (H100/H200: an sm_90a binary runs nowhere else). The emulator runs them for CPU tensors.
inline bool wgmma_on(const at::Tensor& x) {
#if VK_WITH_CUDA
  if (x.is_cuda()) {
#if VK_WGMMA
    return device_attribute<cudaDevAttrComputeCapabilityMajor>(x, "compute capability") == 9 &&
           device_attribute<cudaDevAttrComputeCapabilityMinor>(x, "compute capability") == 0;
#else
    return false;
#endif
  }
#endif
  (void)x;
  return true;
}

// Runs the op's launcher on x's device: the CUDA launcher on x's current stream, or
// the emulator for CPU tensors.
// (Args is deduced from `args` alone, so a CPU-only build may pass nullptr for the
// CUDA launcher: see VK_CUDA_LAUNCHER.)
template <class Args>
using Launch = void (*)(const Args&);

template <class Args>
void launch_on_device(const at::Tensor& x, Args& args, Launch<std::remove_const_t<Args>> cuda_launcher,
                      Launch<std::remove_const_t<Args>> emu_launcher, const char* op) {
  if (!x.is_cuda()) {
    emu_launcher(args);
    return;
  }
#if VK_WITH_CUDA
  const c10::cuda::CUDAGuard guard(x.device());
  args.stream = c10::cuda::getCurrentCUDAStream(x.device().index()).stream();
  cuda_launcher(args);
#else
  (void)cuda_launcher;
  TORCH_CHECK(false, op, ": this vggkern was built without CUDA kernels (no nvcc at install time); "
              "reinstall on a machine with the CUDA toolkit, or pass CPU tensors");
#endif
}

}  // namespace vk
