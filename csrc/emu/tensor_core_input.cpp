// tensor_core_input (the tensor-core algorithms' layout of x) for CPU tensors: the CUDA
// kernel's source run by the SIMT emulator.
#include "../common/backends.h"
#include "../common/tensor_core_input_dispatch.h"
#include "launch.h"

void vk::emu::tensor_core_input(const TensorCoreInputArgs& args) { tensor_core_input_dispatch(args, Launcher{}); }
