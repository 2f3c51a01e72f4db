"""A tiny GPU driver for compute-sanitizer (memcheck, racecheck): runs our kernels on
small, odd shapes in every dtype and layout and checks the results against torch.

    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck \
        --error-exitcode 3 python3 benchmarks/sanitize_case.py [--deadline EPOCH]

PYTORCH_NO_CUDA_MEMORY_CACHING=1 makes every tensor its own cudaMalloc, so an access
past a tensor's end lands outside any allocation and memcheck sees it.

Only our kernels (and copies) run on the GPU: inputs are made on the CPU and copied over,
and the references are computed on the CPU in float64, so the sanitizer, which
instruments every kernel in the process (racecheck slowly), spends its time on ours.
The cases run round by round: each round is one (layout, epilogue, dtype) for every
algorithm and tile, the dtype changing fastest, so the first three rounds run every
algorithm and tile in each dtype (channels_last, ReLU + pool): every kernel
instantiation. No case starts past --deadline (a time.time() epoch, as benchmarks/run.py's
--deadline), so the script ends with a verdict and a count of the cases it ran instead
of being killed by the caller's timeout.

Exit code: 0 all ran cases agree with torch; 4 a result differs, or a forced stream-K
did not run (printed); a Python error (a CUDA fault in our kernel raises one) exits 1;
the sanitizer's own findings give its --error-exitcode.
"""
import argparse
import itertools
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script
import vggkern  # noqa: E402
from benchmarks.cases import IMPLICIT_GEMM_TILES, env_var  # noqa: E402  (tiles: less those a failed wgmma probe excludes)
from benchmarks.tiles import is_wgmma  # noqa: E402

MISMATCH = 4
DTYPES = (torch.float16, torch.float32, torch.bfloat16)


def _conv_runs():
    """(algo, forced tile, forced split-K, forced stream-K) per conv run: every algorithm as
    the op picks it; implicit_gemm's default plan here (256 x 64: K = 19; no split), the
    other tiles forced (wg*: wgmma; fp32 as TF32, torch's default), split-K forced (its
    partial sums and reduction kernel), and ws128x256 with stream-K forced on (C = 64: tiles
    in 2 to 5 parts, the fixup's slots and counters; where y is channels_last the launch
    must have recorded that it shared tiles out: NCHW y keeps whole tiles)."""
    algos = vggkern.algorithms()
    runs = [(a, "", "", "") for a in ["auto", *algos]]
    forced = [t for t in IMPLICIT_GEMM_TILES if t != "256x64"]  # 256x64: the default above
    runs += [("implicit_gemm", t, "", "") for t in forced]
    runs += [("implicit_gemm", "", "3", "")] + [("implicit_gemm", t, "3", "") for t in forced if is_wgmma(t)]
    if "ws128x256" in forced and os.environ.get("VGGKERN_IMPLICIT_GEMM_STREAM_K") != "off":  # off: device_run.sh's
        runs.append(("implicit_gemm", "ws128x256", "", "on"))  # scale probe found it wrong or hung
    return runs


def _on_gpu(t, channels_last=False):
    t = t.cuda()
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deadline", type=float, default=None,
                        help="time.time() past which no new case starts")
    parser.add_argument("--rounds", type=int, default=None,
                        help="run only the first ROUNDS (layout, epilogue, dtype) rounds of conv cases")
    args = parser.parse_args(argv)
    start = time.monotonic()
    if not torch.cuda.is_available():
        print("sanitize_case: no CUDA GPU: nothing to check")
        return 0
    g = torch.Generator().manual_seed(0)
    bad = 0

    pool_cases = list(itertools.product(DTYPES, (False, True), ((1, 3, 7, 9), (2, 17, 13, 6), (1, 64, 16, 16))))
    for dt, cl, shape in pool_cases:
        x = torch.randn(shape, generator=g).to(dt)
        y = vggkern.maxpool2x2(_on_gpu(x, cl)).cpu()
        if not torch.equal(y, F.max_pool2d(x.float(), 2, 2).to(dt)):  # max is exact in any precision
            print(f"maxpool2x2 mismatch: {dt} cl={cl} {shape}")
            bad += 1
    print(f"maxpool2x2: {len(pool_cases)} cases run")

    runs = _conv_runs()
    rounds = [(dt, cl, epilogue) for cl, epilogue, dt in
              itertools.product((True, False), ((True, True), (False, False), (True, False)), DTYPES)]
    rounds = rounds[:args.rounds] if args.rounds is not None else rounds
    total = len(rounds) * len(runs)
    ran, skipped, bad = _conv_cases(rounds, runs, args.deadline, g, bad)
    torch.cuda.synchronize()
    cut = f", {total - ran - skipped} not started (past the deadline)" if ran + skipped < total else ""
    print(f"conv3x3: {ran} of {total} cases run, {skipped} refused{cut}")
    print("sanitize_case:", "OK" if not bad else f"{bad} MISMATCHES", f"({time.monotonic() - start:.0f} s)")
    return MISMATCH if bad else 0


def _launch_record():
    """What this process's last ws-tile launch recorded (its tile, copies, schedule)."""
    return vggkern._C.implicit_gemm_last_copies() or {}


def _shared_tiles():
    # Forced on, stream-K must have run: a memcheck of whole tiles would pass for it.
    ran = _launch_record()
    return ran.get("tile") == "ws128x256" and bool(ran.get("stream_k"))


def _conv_cases(rounds, runs, deadline, g, bad):
    """Runs the conv cases, round by round, until the deadline: (ran, refused, bad)."""
    ran = skipped = 0
    for (dt, cl, (relu, pool)), (algo, tile, split, stream_k) in itertools.product(rounds, runs):
        if deadline is not None and time.time() > deadline:
            break
        # A ws tile with C = 32: its tensor loads, where unpooled and 16-bit; stream-K's with
        # C = 64: 18 slices a tile, so that ranges of 8 or more cut tiles into parts.
        c = 64 if stream_k else 32 if tile.startswith("ws") else 17
        x = torch.randn(2, c, 13, 10, generator=g).to(dt)
        w = (torch.randn(19, c, 3, 3, generator=g) * 0.1).to(dt)
        b = torch.randn(19, generator=g).to(dt)
        sk = f" stream_k={stream_k}" if stream_k else ""
        label = f"conv3x3 {algo} tile={tile or '-'} split={split or '-'}{sk} {dt} cl={cl} relu={relu} pool={pool}"
        try:
            with env_var("VGGKERN_IMPLICIT_GEMM_TILE", tile), env_var("VGGKERN_IMPLICIT_GEMM_SPLIT_K", split), \
                    env_var("VGGKERN_IMPLICIT_GEMM_STREAM_K", stream_k or None):  # unforced: as exported
                y = vggkern.conv3x3(_on_gpu(x, cl), _on_gpu(w), _on_gpu(b), relu=relu, pool=pool, algo=algo)
        except (ValueError, NotImplementedError) as e:  # a refused combination, not a fault
            print(f"{label}: not supported ({str(e)[:100]})")
            skipped += 1
            continue
        if stream_k == "on" and cl and not _shared_tiles():  # NCHW y: whole tiles (their stores)
            print(f"{label}: stream-K did not run (the launch recorded {_launch_record()})")
            bad += 1
        ref = F.conv2d(x.double(), w.double(), b.double(), padding=1)
        ref = F.relu(ref) if relu else ref
        ref = F.max_pool2d(ref, 2, 2) if pool else ref
        # Per element (a single wrong one counts), against the largest: 16-bit outputs round
        # at 2^-8 of themselves, TF32 sums of 17 x 9 terms are ~1e-3 off.
        err = float((y.cpu().double() - ref).abs().max() / ref.abs().max())
        ran += 1
        if not err < 1e-2:
            print(f"{label}: MISMATCH, rel err {err:.3g}")
            bad += 1
    return ran, skipped, bad


if __name__ == "__main__":
    sys.exit(main())
