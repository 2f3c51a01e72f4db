// The Winograd filter transform as the ops use it (csrc/ops/winograd.cpp): conv3x3's
// Winograd algorithms call it on a raw weight.
#pragma once

#include <ATen/ATen.h>

namespace vk {

// U = G g G^T for every (k, c): weight (K, C, 3, 3) -> (alpha^2, C, K) float32 on
// weight's device, alpha = tile + 2. Checks weight and tile, naming `op`.
at::Tensor winograd_weight_transform(const at::Tensor& weight, int64_t tile, const char* op);

}  // namespace vk
