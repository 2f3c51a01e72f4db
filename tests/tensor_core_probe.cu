// The tensor-core wrappers on a GPU: the cases of tests/tensor_core_cases.cuh (which
// tests/emu/test_tensor_core.cpp runs through the emulator in CI), compiled by nvcc and
// run on the device. Every case checks a property the emulator's code plays no part in
// (a GEMM equals the exact product of its inputs; an ldmatrix register holds the
// elements the PTX ISA names), so passing here means the emulator's fragment layouts are
// the hardware's for these instructions. Where a case differs, its lines name the
// elements, and the coordinate patterns say which row, column or k they came from.
//
//   nvcc -std=c++17 -O2 -gencode arch=compute_90a,code=sm_90a -o tensor_core_probe tests/tensor_core_probe.cu
//   ./tensor_core_probe     # exit 0: every case passes; 1: a case differs or a CUDA error; 2: no GPU
//
// benchmarks/device_run.sh builds and runs it first, before the extension's own tests:
// a wrapper that is wrong shows there by name, not as a conv that differs. CMake builds
// it where it finds nvcc (so CI compiles it) and ctest runs it, skipped without a GPU.
// The wgmma cases run only on compute capability 9.0 from an sm_90a build; then the
// tensor-load cases (tests/tma_cases.cuh: TMA tile and im2col loads, mbarriers), whose
// lines name the source element each wrong one came from. They run last, since a fault
// there ends the process.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <type_traits>
#include <vector>

#include "tensor_core_cases.cuh"
#include "tma_cases.cuh"

namespace {

void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  std::printf("tensor-core probe: %s failed: %s\n", what, cudaGetErrorString(e));
  std::exit(1);
}

// The runner on the GPU: each std::vector argument goes to a device buffer of its own.
struct DeviceBuffers {
  std::vector<void*> held;
  ~DeviceBuffers() {
    for (void* p : held) cudaFree(p);
  }
  template <class T>
  const T* operator()(const std::vector<T>& v) {
    void* p = nullptr;
    check(cudaMalloc(&p, v.size() * sizeof(T)), "cudaMalloc");
    held.push_back(p);
    check(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy to the GPU");
    return static_cast<const T*>(p);
  }
  template <class T, class = std::enable_if_t<std::is_scalar_v<T> || std::is_enum_v<T>>>
  T operator()(T v) {
    return v;
  }
};

const auto gpu_launch = [](const char* name, auto kernel, int threads, size_t smem, auto& out, const auto&... args) {
  using Out = typename std::remove_reference_t<decltype(out)>::value_type;
  DeviceBuffers buffers;
  Out* d_out = nullptr;
  check(cudaMalloc(&d_out, out.size() * sizeof(Out)), "cudaMalloc");
  buffers.held.push_back(d_out);
  check(cudaMemcpy(d_out, out.data(), out.size() * sizeof(Out), cudaMemcpyHostToDevice), "cudaMemcpy to the GPU");
  if (smem > 48 * 1024)
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)), name);
  kernel<<<1, threads, smem>>>(d_out, buffers(args)...);
  check(cudaGetLastError(), name);
  check(cudaDeviceSynchronize(), name);
  check(cudaMemcpy(out.data(), d_out, out.size() * sizeof(Out), cudaMemcpyDeviceToHost), "cudaMemcpy from the GPU");
};

// tests/tma_cases.cuh's runner on the GPU: sources uploaded once (their tensor maps name
// the device addresses), each launch's output copied back.
struct TmaRunner {
  DeviceBuffers buffers;
  const uint16_t* upload(const std::vector<uint16_t>& v) { return buffers(v); }
  template <class Kernel, class... Args>
  void launch(const char* name, Kernel kernel, int threads, size_t smem, std::vector<uint16_t>& out,
              const Args&... args) {
    uint16_t* d_out = nullptr;
    check(cudaMalloc(&d_out, out.size() * sizeof(uint16_t)), "cudaMalloc");
    check(cudaMemcpy(d_out, out.data(), out.size() * sizeof(uint16_t), cudaMemcpyHostToDevice), "cudaMemcpy to the GPU");
    kernel<<<1, threads, smem>>>(d_out, args...);
    check(cudaGetLastError(), name);
    check(cudaDeviceSynchronize(), name);
    check(cudaMemcpy(out.data(), d_out, out.size() * sizeof(uint16_t), cudaMemcpyDeviceToHost), "cudaMemcpy from the GPU");
    cudaFree(d_out);
  }
};

// Whether the code the GPU runs was built for sm_90a (wgmma's PTX exists only there).
__global__ void built_for_sm90a_kernel(int* out) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  *out = 1;
#else
  *out = 0;
#endif
}

bool built_for_sm90a() {
  std::vector<int> out(1, 0);
  gpu_launch("built_for_sm90a_kernel", built_for_sm90a_kernel, 1, 0, out);
  return out[0] == 1;
}

}  // namespace

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("tensor-core probe: no GPU: nothing run\n");
    return 2;
  }
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  std::printf("tensor-core probe: %s, compute capability %d.%d\n", prop.name, prop.major, prop.minor);
  if (prop.major < 8) {
    std::printf("tensor-core probe: needs compute capability 8.0 or newer: nothing run\n");
    return 2;
  }
  int failed = tc_cases::run_ldmatrix_cases(gpu_launch) + tc_cases::run_mma_cases(gpu_launch);
  if (prop.major == 9 && prop.minor == 0 && built_for_sm90a()) {
    failed += tc_cases::run_wgmma_cases(gpu_launch);
    TmaRunner tma;
    failed += tma_cases::run_tile_cases(tma) + tma_cases::run_im2col_cases(tma) + tma_cases::run_store_cases(tma);
  } else {
    std::printf("tensor-core probe: wgmma and tensor-load cases skipped (compute capability 9.0 and an sm_90a build "
                "only)\n");
  }
  std::printf("tensor-core probe: %s\n", failed ? "SOME CASES DIFFER" : "every case passes");
  return failed ? 1 : 0;
}
