// The element type of a DType, for the launch dispatchers of every op (compiled by
// nvcc and by the host compiler for the emulator alike).
#pragma once

#include "../kernels/simt.cuh"
#include "args.h"

namespace vk {

// Calls fn(T{}) with T = float, __half or __nv_bfloat16.
template <class Fn>
void dispatch_dtype(DType t, Fn&& fn) {
  switch (t) {
    case DType::float32: fn(float{}); break;
    case DType::float16: fn(__half{}); break;
    case DType::bfloat16: fn(__nv_bfloat16{}); break;
  }
}

}  // namespace vk
