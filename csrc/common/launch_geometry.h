// Launch geometry shared by the CUDA and emulator launchers: each kernel has one host
// function that computes it, and both backends launch with exactly that.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace vk {

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};

struct LaunchGeometry {
  Dim3 grid;
  Dim3 block;
  size_t smem_bytes = 0;  // dynamic shared memory
};

// s as a whole decimal integer in [lo, hi] (into out), else false: the integer
// environment variables' parse (VGGKERN_MAX_GRID_BLOCKS, VGGKERN_IMPLICIT_GEMM_SPLIT_K,
// the emulator's settings); each caller words its own error.
inline bool parse_integer(const char* s, int64_t lo, int64_t hi, int64_t& out) {
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) return false;
  out = v;
  return true;
}

// Testing aid: VGGKERN_FORCE_INT64_INDEX=1 makes every dispatcher pick its int64-offset
// kernel variant (normally used only from 2^31 elements on), so tests reach it at small
// sizes. Read per launch, since tests toggle it; a getenv is noise next to a launch.
inline bool force_int64_index() {
  const char* e = std::getenv("VGGKERN_FORCE_INT64_INDEX");
  return e != nullptr && e[0] == '1';
}

// Testing aid: VGGKERN_MAX_GRID_BLOCKS=B caps the grid of the grid-stride kernels
// (maxpool2x2) at B blocks instead of 2^20, which only inputs past 2^28 work items reach, so
// tests run the loop's later trips at small sizes. Read per launch; anything but an integer
// from 1 to 2^20 is an error naming the variable.
inline int64_t grid_stride_max_blocks() {
  constexpr int64_t kMax = int64_t(1) << 20;
  const char* e = std::getenv("VGGKERN_MAX_GRID_BLOCKS");
  int64_t v = kMax;
  if (e != nullptr && e[0] != '\0' && !parse_integer(e, 1, kMax, v))
    throw std::invalid_argument(std::string("vggkern: VGGKERN_MAX_GRID_BLOCKS must be an integer from 1 to 1048576, "
                                            "got '") + e + "'");
  return v;
}

// The geometry of a grid-stride kernel over `items` work items (maxpool2x2,
// tensor_core_input): 256-thread blocks, one item per thread, up to 2^20 blocks (or
// VGGKERN_MAX_GRID_BLOCKS: tests), beyond which the kernel's loop takes the rest.
inline LaunchGeometry grid_stride_geometry(int64_t items) {
  LaunchGeometry g;
  g.block.x = 256;
  const int64_t blocks = (items + 255) / 256, cap = grid_stride_max_blocks();
  g.grid.x = static_cast<unsigned>(blocks < 1 ? 1 : blocks < cap ? blocks : cap);
  return g;
}

}  // namespace vk
