// Launch geometry shared by the CUDA and emulator launchers: each kernel has one host
// function that computes it, and both backends launch with exactly that.
#pragma once

#include <cstddef>
#include <cstdlib>

namespace vk {

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};

struct LaunchGeometry {
  Dim3 grid;
  Dim3 block;
  size_t smem_bytes = 0;  // dynamic shared memory
};

// Testing aid: VGGKERN_FORCE_INT64_INDEX=1 makes every dispatcher pick its int64-offset
// kernel variant (normally used only from 2^31 elements on), so tests reach it at small
// sizes. Read per launch, since tests toggle it; a getenv is noise next to a launch.
inline bool force_int64_index() {
  const char* e = std::getenv("VGGKERN_FORCE_INT64_INDEX");
  return e != nullptr && e[0] == '1';
}

inline unsigned ceil_div_u32(long long a, long long b) { return static_cast<unsigned>((a + b - 1) / b); }

}  // namespace vk
