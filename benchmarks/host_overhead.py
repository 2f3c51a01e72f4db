"""Host-side cost of our Python path per conv call, no GPU needed.

Each call gets a batch of N = 0, so the op returns before any kernel launch: what is
timed is the Python and dispatcher work that precedes every launch (argument checks,
autocast and autograd dispatch, the module's prepared-weight lookup, FusedSequential's
fusion decision). At small batch on a GPU that work runs ahead of the kernels it
enqueues only if it is shorter than they are, so it bounds eager-mode latency (CUDA
graphs remove it). torch's own F.conv2d on the same empty input is the reference.

    python -m benchmarks.host_overhead        # best of 7 repeats, microseconds per call

Under torch.no_grad except the last two rows, which time a training forward.
"""
import time

import torch
import torch.nn.functional as F

import vggkern


def _best_us(f, n: int, reps: int) -> float:
    for _ in range(max(1, n // 10)):
        f()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(n):
            f()
        best = min(best, (time.perf_counter() - t) / n)
    return best * 1e6


def measure(n: int = 3000, reps: int = 7) -> dict[str, float]:
    """{what: best microseconds per call} for one VGG-sized conv and VGG16's features."""
    x = torch.randn(0, 64, 56, 56)
    w, b = torch.randn(64, 64, 3, 3), torch.randn(64)
    conv = vggkern.Conv3x3(64, 64, relu=True, algo="direct").eval()
    model = vggkern.vgg16(include_top=False, algo="direct").eval()
    features = model.features
    image = torch.randn(0, 3, 224, 224)
    out = {}
    with torch.no_grad():
        out["F.conv2d + relu (torch)"] = _best_us(lambda: F.relu(F.conv2d(x, w, b, padding=1)), n, reps)
        out["torch.ops.vggkern.conv3x3"] = _best_us(
            lambda: torch.ops.vggkern.conv3x3(x, w, b, True, False, "direct", None), n, reps)
        out["vggkern.conv3x3 (checked wrapper)"] = _best_us(
            lambda: vggkern.conv3x3(x, w, b, relu=True, algo="direct"), n, reps)
        with vggkern.cpu_backend("emulator"):  # the kernels' path, as CUDA tensors take it
            out["Conv3x3 module"] = _best_us(lambda: conv(x), n, reps)
            out["VGG16 features, 13 fused convs (per forward)"] = _best_us(lambda: features(image),
                                                                           max(1, n // 10), reps)
            out["VGG16 model, include_top=False (per forward)"] = _best_us(lambda: model(image),
                                                                           max(1, n // 10), reps)
        with vggkern.cpu_backend("torch"):
            out["VGG16 features on torch's ops, 31 layers (per forward)"] = _best_us(
                lambda: features(image), max(1, n // 10), reps)
    # A training step's forward: x and the parameters want gradients, so autograd
    # records the op (its backward is not timed).
    xg = x.clone().requires_grad_()
    out["F.conv2d + relu (torch), recording autograd"] = _best_us(
        lambda: F.relu(F.conv2d(xg, conv.weight, conv.bias, padding=1)), n, reps)
    with vggkern.cpu_backend("emulator"):
        out["Conv3x3 module, recording autograd"] = _best_us(lambda: conv(xg), n, reps)
    return out


def main() -> None:
    for what, us in measure().items():
        print(f"{us:9.1f} us  {what}")


if __name__ == "__main__":
    main()
