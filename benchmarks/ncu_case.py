"""What limits implicit_gemm, read from the hardware counters: a driver for Nsight Compute.

    ncu --profile-from-start off --clock-control none --section SpeedOfLight ... \
        -o OUT/ncu python3 benchmarks/ncu_case.py
    python -m benchmarks.ncu_summary OUT/ncu.csv     # after ncu --import OUT/ncu.ncu-rep --csv

For each layer (default: VGG16's conv3_2, C = K = 256 at 56x56, where the issue's 50%-of-
peak target applies, and conv5_1, 512 -> 512 at 14x14, whose grid is 2 waves), fp16
channels_last at batch 64: our implicit_gemm on its default tile and on the wgmma tiles
wg128x128, wg128x256, ws128x256 and ws128x128 (where this build and GPU run wgmma and the
run has not left them out: each wg tile against its warp-specialised twin is what the
counters should explain, and on conv5_1 ws128x128's 2.97 waves against 1.48), ws128x256 again with its copies by cp.async (VGGKERN_IMPLICIT_GEMM_TMA=off:
what its tensor loads change) and with the fused pool (the tensor loads' slab order: VGG's
conv3_3 and conv5_3 are these shapes pooled), and torch's conv2d + relu_ (cuDNN,
cudnn.benchmark on). Each is warmed up (cuDNN's autotune, module load), then called once
between cudaProfilerStart and cudaProfilerStop, so ncu with --profile-from-start off
profiles exactly those launches (ncu lists them in this order; the kernels' names tell
ours from cuDNN's). Prints what it profiled, in order. Exit 2 without a GPU.
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script
import vggkern  # noqa: E402
# the tiles (less those a failed wgmma probe excludes), and a variable set for a block
from benchmarks.cases import IMPLICIT_GEMM_TILES, env_var  # noqa: E402

# name, C, K, H=W
LAYERS = (("conv3_2", 256, 256, 56), ("conv5_1", 512, 512, 14))
BATCH = 64


def calls(x, w, b):
    """(label, fn) of what is profiled for one layer."""
    def ours(tile=None, k_order=None, tma=None, pool=False):
        with env_var("VGGKERN_IMPLICIT_GEMM_TILE", tile), env_var("VGGKERN_IMPLICIT_GEMM_K_ORDER", k_order), \
                env_var("VGGKERN_IMPLICIT_GEMM_TMA", tma):
            return vggkern.conv3x3(x, w, b, relu=True, pool=pool, algo="implicit_gemm")  # None: as it is
    fns = [("ours implicit_gemm (default tile)", ours)]
    # (The emulator runs the wgmma tiles too: on the CPU, the wiring is tested with them.)
    if not x.is_cuda or (vggkern.build_info().get("cuda_wgmma") and torch.cuda.get_device_capability() == (9, 0)):
        for tile in ("wg128x128", "wg128x256", "ws128x256", "ws128x128"):
            if tile in IMPLICIT_GEMM_TILES:
                fns.append((f"ours implicit_gemm [{tile}]", lambda tile=tile: ours(tile)))
        if "ws128x256" in IMPLICIT_GEMM_TILES:
            fns.append(("ours implicit_gemm [ws128x256, cp.async]", lambda: ours("ws128x256", tma="off")))
            fns.append(("ours implicit_gemm [ws128x256] + pool", lambda: ours("ws128x256", pool=True)))
    fns.append(("torch conv2d + relu_ (cuDNN)", lambda: F.relu(F.conv2d(x, w, b, padding=1), inplace=True)))
    return fns


def main(argv=None):
    """argv ["--cpu"]: the same calls on a small layer through the emulator, without the
    profiler (the wiring, tested without a GPU)."""
    cpu = "--cpu" in (argv or [])
    if not cpu and not torch.cuda.is_available():
        print("ncu_case: no CUDA GPU: nothing to profile")
        return 2
    device, layers, batch = ("cpu", (("small", 32, 24, 6),), 1) if cpu else ("cuda", LAYERS, BATCH)
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    cl = torch.channels_last
    for name, c, k, h in layers:
        x = torch.randn(batch, c, h, h, device=device).half().contiguous(memory_format=cl)
        w = (torch.randn(k, c, 3, 3, device=device) * (2 / (9 * c)) ** 0.5).half().contiguous(memory_format=cl)
        b = torch.randn(k, device=device).half() * 0.1
        for label, fn in calls(x, w, b):
            for _ in range(1 if cpu else 3):  # warm-up: module load, cuDNN's autotune, the allocator
                fn()
            if not cpu:
                torch.cuda.synchronize()
                torch.cuda.profiler.start()
            fn()
            if not cpu:
                torch.cuda.synchronize()
                torch.cuda.profiler.stop()
            print(f"ncu_case: profiled {name} (C={c}, K={k}, {h}x{h}, N={batch}, fp16 channels_last): {label}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
