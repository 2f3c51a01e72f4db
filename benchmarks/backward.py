"""conv3x3's backward with relu and no pool: ReLU's mask from the forward's output y (what
the op's autograd does) against a recomputed pre-activation (what it did before, and still
does with the pool, which needs each window's maximum).

The recomputation is one more conv beside the two of the gradients (x's and the weight's),
so the prediction is ~1.5x on the backward of such a layer: 8 of VGG16's 13 convs (about
half of its conv FLOPs), so ~16% less conv work in a VGG16 backward.

    python -m benchmarks.backward            # CUDA when there is a GPU, else CPU
    python -m benchmarks.backward --device cpu

Median per call (timing.time_gpu on a GPU: rotated inputs, CUDA events; timing.time_cpu
on the CPU, whose numbers are torch's CPU conv, not a GPU's).
"""
import argparse

import torch

import vggkern  # noqa: F401  (registers torch.ops.vggkern)

from benchmarks import timing

# (N, C=K, H=W) of VGG16's relu-only layer shapes at 224 x 224, batch 64 on a GPU, smaller
# on a CPU (the same channel counts).
GPU_SHAPES = [(64, 128, 112), (64, 256, 56), (64, 512, 28), (64, 512, 14)]
CPU_SHAPES = [(4, 64, 56), (2, 128, 56), (8, 256, 28)]


def _inputs(n, c, h, device, dtype):
    def make():
        x = torch.randn(n, c, h, h, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
        w = (torch.randn(c, c, 3, 3, device=device) / (3 * c ** 0.5)).to(dtype)
        b = torch.randn(c, device=device, dtype=dtype)
        y = torch.ops.vggkern.conv3x3(x, w, b, True, False, "auto", None)
        return torch.randn_like(y), x, w, b, y
    return make


def measure(device: str, dtype: torch.dtype) -> list[dict]:
    rows = []
    for n, c, h in GPU_SHAPES if device == "cuda" else CPU_SHAPES:
        make = _inputs(n, c, h, device, dtype)
        ms = {}
        for name, use_y in (("recomputed", False), ("from y", True)):
            def fn(a, use_y=use_y):
                g, x, w, b, y = a
                return torch.ops.vggkern._conv3x3_backward(g, x, w, b, True, False, [True] * 3, y if use_y else None)
            t = timing.time_gpu(fn, make) if device == "cuda" else timing.time_cpu(fn, make, repeats=7)
            ms[name] = t.median_s * 1e3
        rows.append({"shape": (n, c, c, h, h), **ms, "speedup": ms["recomputed"] / ms["from y"]})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    dtype = torch.float16 if args.device == "cuda" else torch.float32
    print(f"{args.device}, {dtype}, channels_last; ms per backward (median)")
    rows = measure(args.device, dtype)
    for r in rows:
        print(f"(N, C, K, H, W) = {r['shape']}: recomputed {r['recomputed']:.2f}, from y {r['from y']:.2f}, "
              f"{r['speedup']:.2f}x")
    print("speed-up from y, per shape:", " ".join(f"{r['speedup']:.2f}x" for r in rows))


if __name__ == "__main__":
    main()
