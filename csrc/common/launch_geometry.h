// Launch geometry shared by the CUDA and emulator launchers: each kernel has one host
// function that computes it, and both backends launch with exactly that.
#pragma once

#include <cstddef>

namespace vk {

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};

struct LaunchGeometry {
  Dim3 grid;
  Dim3 block;
  size_t smem_bytes = 0;  // dynamic shared memory
};

inline unsigned ceil_div_u32(long long a, long long b) { return static_cast<unsigned>((a + b - 1) / b); }

}  // namespace vk
