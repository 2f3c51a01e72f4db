// conv3x3 (algorithm "direct") for CPU tensors: the CUDA kernel's source run by the SIMT emulator.
#include "../common/backends.h"
#include "../common/conv3x3_direct_dispatch.h"
#include "launch.h"

void vk::emu::conv3x3_direct(const Conv3x3Args& args) { conv3x3_direct_dispatch(args, Launcher{}); }
