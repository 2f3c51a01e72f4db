// tensor_core_weight (the tensor-core algorithms' weight layout) for CPU tensors: the
// CUDA kernel's source run by the SIMT emulator.
#include "../common/backends.h"
#include "../common/tensor_core_weight_dispatch.h"
#include "launch.h"

void vk::emu::tensor_core_weight(const TensorCoreWeightArgs& args) { tensor_core_weight_dispatch(args, Launcher{}); }
