// Launching a kernel on the SIMT emulator, with the same geometry a CUDA launch uses.
#pragma once

#include "../common/launch_geometry.h"
#include "runtime.h"

namespace vk {
namespace emu {

// Runs kernel(args...) over the grid; the arguments are copied once and shared by
// every emulated thread, as CUDA passes kernel parameters by value.
template <class... Params, class... Args>
void launch(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, Args... args) {
  auto body = [&]() { kernel(args...); };
  run_grid(LaunchParams{name, grid, block, smem}, body);
}

// The launcher policy the per-kernel dispatch templates take (see kernels/*.cuh).
struct Launcher {
  template <class... Params, class... Args>
  void operator()(const char* name, void (*kernel)(Params...), const LaunchGeometry& g, Args... args) const {
    launch(name, kernel, dim3(g.grid.x, g.grid.y, g.grid.z), dim3(g.block.x, g.block.y, g.block.z), g.smem_bytes,
           args...);
  }
};

}  // namespace emu
}  // namespace vk
