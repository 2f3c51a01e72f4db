"""A tiny GPU driver for compute-sanitizer (memcheck, racecheck): runs our kernels on
small, odd shapes in every dtype and layout and checks the results against torch.

    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck \
        --error-exitcode 3 python3 benchmarks/sanitize_case.py

PYTORCH_NO_CUDA_MEMORY_CACHING=1 makes every tensor its own cudaMalloc, so an access
past a tensor's end lands outside any allocation and memcheck sees it. Exit code 1 if
a result differs from torch (the sanitizer's own findings give its --error-exitcode).
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script
import vggkern  # noqa: E402
from benchmarks.cases import IMPLICIT_GEMM_TILES  # noqa: E402  (less those a failed wgmma probe excludes)


def main():
    if not torch.cuda.is_available():
        print("sanitize_case: no CUDA GPU: nothing to check")
        return 0
    torch.manual_seed(0)
    bad = 0
    dtypes = (torch.float32, torch.float16, torch.bfloat16)
    for dt in dtypes:
        for cl in (False, True):
            for shape in ((1, 3, 7, 9), (2, 17, 13, 6), (1, 64, 16, 16)):
                x = torch.randn(shape, device="cuda").to(dt)
                if cl:
                    x = x.contiguous(memory_format=torch.channels_last)
                y = vggkern.maxpool2x2(x)
                if not torch.equal(y, F.max_pool2d(x, 2, 2)):
                    print(f"maxpool2x2 mismatch: {dt} cl={cl} {shape}")
                    bad += 1
    print(f"maxpool2x2: {len(dtypes) * 6} cases run")
    if hasattr(vggkern, "conv3x3"):
        algos = ["auto"]
        if hasattr(vggkern, "algorithms"):
            a = vggkern.algorithms()
            algos = sorted(set(algos) | set(a if not isinstance(a, dict) else list(a)))
        n = 0
        # implicit_gemm: its default plan here (256 x 64: K = 19; no split), the other
        # tiles forced (wg*: wgmma; fp32 as TF32, torch's default), and split-K forced
        # (its partial sums and reduction kernel).
        runs = [(a, "", "") for a in algos]
        if "implicit_gemm" in algos:
            forced = [t for t in IMPLICIT_GEMM_TILES if t != "256x64"]  # 256x64: the default above
            runs += [("implicit_gemm", t, "") for t in forced]
            runs += [("implicit_gemm", "", "3")] + [("implicit_gemm", t, "3") for t in forced if t.startswith("wg")]
        for algo, tile, split in runs:
            os.environ["VGGKERN_IMPLICIT_GEMM_TILE"] = tile
            os.environ["VGGKERN_IMPLICIT_GEMM_SPLIT_K"] = split
            for dt in dtypes:
                for cl in (False, True):
                    for relu, pool in ((False, False), (True, False), (True, True)):
                        x = torch.randn(2, 17, 13, 10, device="cuda").to(dt)
                        w = (torch.randn(19, 17, 3, 3, device="cuda") * 0.1).to(dt)
                        b = torch.randn(19, device="cuda").to(dt)
                        if cl:
                            x = x.contiguous(memory_format=torch.channels_last)
                        try:
                            y = vggkern.conv3x3(x, w, b, relu=relu, pool=pool, algo=algo)
                        except (ValueError, NotImplementedError, RuntimeError) as e:
                            print(f"conv3x3 {algo} {dt} cl={cl}: not supported ({str(e)[:80]})")
                            continue
                        ref = F.conv2d(x.float(), w.float(), b.float(), padding=1)
                        ref = F.relu(ref) if relu else ref
                        ref = F.max_pool2d(ref, 2, 2) if pool else ref
                        err = float((y.float() - ref).norm() / ref.norm())
                        n += 1
                        if not err < 5e-2:
                            print(f"conv3x3 mismatch: {algo} {tile} {split} {dt} cl={cl} relu={relu} pool={pool}: "
                                  f"rel err {err:.3g}")
                            bad += 1
        os.environ.pop("VGGKERN_IMPLICIT_GEMM_TILE", None)
        os.environ.pop("VGGKERN_IMPLICIT_GEMM_SPLIT_K", None)
        print(f"conv3x3: {n} cases run")
    else:
        print("conv3x3: not in this build (skipped)")
    torch.cuda.synchronize()
    print("sanitize_case:", "OK" if not bad else f"{bad} MISMATCHES")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
