// conv3x3's TF32 policy and its "auto" choice (csrc/ops/conv3x3.cpp), also exposed as
// vggkern._C.tf32_allowed() and vggkern._C.conv3x3_auto() so that the Python wrapper,
// the fake kernel and the nn modules decide exactly as the op does.
#pragma once

#include <cstdint>
#include <optional>

#include "../common/args.h"

namespace vk {

// Whether a float32 conv may run on tensor cores with TF32 math: allow_tf32 when given,
// else torch's setting for cuDNN convolutions (torch.backends.cudnn.allow_tf32, or
// torch.backends.cudnn.conv.fp32_precision == "tf32"), read at call time.
bool tf32_allowed(std::optional<bool> allow_tf32);

// What algo="auto" runs for x (N, C, H, W) in `dtype` and `layout` with K output channels:
// the measured table's pick (common/conv3x3_tuning.h: the layer's, else the nearest
// layer's), "direct" with an empty table.
const char* conv3x3_auto(DType dtype, Layout layout, int64_t N, int64_t C, int64_t H, int64_t W, int64_t K,
                         bool pool, bool tf32);

}  // namespace vk
