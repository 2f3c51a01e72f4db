"""Numerics of vggkern.conv3x3's algorithms on VGG16's layer shapes: error against a
float64 torch reference, per algorithm and dtype, printed as a markdown table.

    python benchmarks/winograd_numerics.py [--crop 28] [--device cpu] [--per-layer]

Data as a trained-from-scratch VGG16 would see at initialisation: the first layer's
input is an ImageNet-normalised image-like tensor (uniform [0, 1] pixels, torchvision's
mean/std); every other layer's input is ReLU(N(0, 1)) (>= 0, half zeros, as after a
ReLU); weights He-initialised (N(0, 2 / (9 C)), torchvision's kaiming_normal_ fan-out
differs only in scale); bias N(0, 0.01^2). Conv + bias only (no ReLU/pool, which would
hide errors). Batch 1. On CPU the kernels run through the SIMT emulator, so the
spatial size is cropped to min(H, crop) (default 28: conv5_x keeps its 14x14); the
error depends on C (the sum's length) and on the tile transforms, not on H x W.

Metrics per layer, y = ours, r = float64 reference on the same (rounded) inputs:
  max rel  = max|y - r| / max|r|      (the worst element, relative to the output's range)
  mean rel = mean|y - r| / mean|r|
The table gives, per algorithm x dtype, the worst max rel and the worst mean rel over
the 13 layers, and torch's own error (F.conv2d in that dtype on the same device, TF32
off) for scale.
"""
import argparse

import torch
import torch.nn.functional as F

import vggkern

# VGG16 (config D): (name, C, K, H=W at 224x224 input)
VGG16 = [
    ("conv1_1", 3, 64, 224), ("conv1_2", 64, 64, 224),
    ("conv2_1", 64, 128, 112), ("conv2_2", 128, 128, 112),
    ("conv3_1", 128, 256, 56), ("conv3_2", 256, 256, 56), ("conv3_3", 256, 256, 56),
    ("conv4_1", 256, 512, 28), ("conv4_2", 512, 512, 28), ("conv4_3", 512, 512, 28),
    ("conv5_1", 512, 512, 14), ("conv5_2", 512, 512, 14), ("conv5_3", 512, 512, 14),
]
ALGOS = ["direct", "winograd_f2x2", "winograd_f4x4"]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
DNAME = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


def layer_data(c, k, h, seed):
    g = torch.Generator().manual_seed(seed)
    if c == 3:
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        x = (torch.rand(1, 3, h, h, generator=g) - mean) / std
    else:
        x = torch.relu(torch.randn(1, c, h, h, generator=g))
    w = torch.randn(k, c, 3, 3, generator=g) * (2.0 / (9 * c)) ** 0.5
    b = torch.randn(k, generator=g) * 0.01
    return x, w, b


def errors(y, ref):
    d = (y.double() - ref).abs()
    return d.max().item() / ref.abs().max().item(), d.mean().item() / ref.abs().mean().item()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--crop", type=int, default=28, help="spatial size cap (H = W = min(H, crop))")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--per-layer", action="store_true", help="also print every layer's errors")
    args = ap.parse_args()

    worst = {}  # (algo or "torch", dtype) -> [max rel, mean rel]
    rows = []
    for i, (name, c, k, h) in enumerate(VGG16):
        h = min(h, args.crop)
        x, w, b = layer_data(c, k, h, seed=i)
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            for dtype in DTYPES:
                xd, wd, bd = (t.to(dtype).to(args.device) for t in (x, w, b))
                ref = F.conv2d(xd.double(), wd.double(), bd.double(), padding=1)
                results = {"torch": F.conv2d(xd, wd, bd, padding=1)}
                for algo in ALGOS:
                    results[algo] = vggkern.conv3x3(xd, wd, bd, algo=algo)
                for who, y in results.items():
                    mx, mn = errors(y, ref)
                    acc = worst.setdefault((who, dtype), [0.0, 0.0])
                    acc[0], acc[1] = max(acc[0], mx), max(acc[1], mn)
                    rows.append((name, c, k, h, who, DNAME[dtype], mx, mn))
        print(f"<!-- {name} done -->", flush=True)

    if args.per_layer:
        print("\n| layer | C | K | HxW | algorithm | dtype | max rel | mean rel |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for name, c, k, h, who, dt, mx, mn in rows:
            print(f"| {name} | {c} | {k} | {h}x{h} | {who} | {dt} | {mx:.2e} | {mn:.2e} |")

    print(f"\nVGG16's 13 conv layers, batch 1, H = W = min(H, {args.crop}), device {args.device}; "
          "worst over the layers; torch = F.conv2d in the same dtype (TF32 off), for scale.\n")
    print("| algorithm | dtype | max rel error | mean rel error | torch's max rel | torch's mean rel |")
    print("| --- | --- | --- | --- | --- | --- |")
    for algo in ALGOS:
        for dtype in DTYPES:
            mx, mn = worst[(algo, dtype)]
            tmx, tmn = worst[("torch", dtype)]
            print(f"| {algo} | {DNAME[dtype]} | {mx:.2e} | {mn:.2e} | {tmx:.2e} | {tmn:.2e} |")


if __name__ == "__main__":
    main()
