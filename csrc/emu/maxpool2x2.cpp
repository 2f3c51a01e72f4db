// maxpool2x2 for CPU tensors: the CUDA kernel's source run by the SIMT emulator.
#include "../common/backends.h"
#include "../common/maxpool2x2_dispatch.h"
#include "launch.h"

void vk::emu::maxpool2x2(const Maxpool2x2Args& args) { maxpool2x2_dispatch(args, Launcher{}); }
