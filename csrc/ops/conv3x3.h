// conv3x3's TF32 policy (csrc/ops/conv3x3.cpp), also exposed as vggkern._C.tf32_allowed()
// so that the Python wrapper and fake kernel decide exactly as the op does.
#pragma once

#include <optional>

namespace vk {

// Whether a float32 conv may run on tensor cores with TF32 math: allow_tf32 when given,
// else torch's setting for cuDNN convolutions (torch.backends.cudnn.allow_tf32, or
// torch.backends.cudnn.conv.fp32_precision == "tf32"), read at call time.
bool tf32_allowed(std::optional<bool> allow_tf32);

}  // namespace vk
