"""Random conv3x3 cases against the test suite's own bounds (tests/test_conv3x3.py, _check),
through the emulator: shapes, dtypes, algorithms, epilogues, layouts (NCHW, channels_last,
sliced, permuted strides, unaligned storage offsets), input scales, and implicit_gemm's
tiles and split-K, in combinations the fixed CASES do not cover; and, for implicit_gemm and
the Winograd algorithms, the same call again with the weight prepared once
(tensor_core_weight, winograd_weight) in a random layout of its own, which must give the
raw call's output bit for bit. Not collected by pytest
(a manual tool: slow, and random by design).

    python tests/fuzz.py [--minutes M] [--seed S]

Prints each case that fails, then per (algorithm, dtype) the worst ratio
(err - floor) / err_torch seen, the quantity K_FACTOR bounds. First runs (2026-12-02,
~24,000 cases): no failure but two fp32 "direct" cases on channels_last inputs, which set
K_FACTOR's direct fp32 bound (its comment); then --minutes 20 --seed 11: 20,181 cases,
none failed, worst ratios in README.md (Numerics). With prepared weights (2026-12-03,
--minutes 20 --seed 12, beside a CPU-bound build): 13,546 cases, 5,133 of them also with
the prepared weight, none failed. Since (2026-12-04, --minutes 15 --seed 41): 14,967 cases,
5,646 also prepared, none failed (worst ratios in README.md). With the TF32 chain flags
(2026-12-04, --minutes 6 --seed 53): 5,622 cases, 592 also with y_tf32 and x_tf32, none
failed. With ws128x256 among the tiles and its persistent grid drawn (2026-12-04, --minutes
5 --seed 71, beside a CI run): 780 cases, none failed. With ws128x256's copies drawn (TMA
tensor loads or cp.async; 2026-12-05, --minutes 5 --seed 83, beside a CI run): 201 cases,
none failed; a directed run of ws128x256 alone (unpooled where the tensor loads apply,
against its cp.async and mma.sync's 128 x 128, bit for bit) had 423 cases, none failed.
With the pooled layers' tensor loads (slab order; 2026-12-05): directed runs of ws128x256
pooled on even maps, tensor loads required (no split-K, y NHWC; random N, C in 32/64/96, K,
grids of 1-3 blocks, fp16/bf16/TF32-chain fp32), bit for bit against its cp.async and
mma.sync's 128 x 128 and within the float64 bound: 342 + 300 cases, none failed; then
--minutes 6 --seed 97 (beside a CI run): 1,199 cases, none failed. With ws128x128
(2026-12-05): a directed run of it alone (implicit_gemm only, its grid and copies drawn),
--minutes 5 --seed 131: 1,429 cases, none failed. With the ws tiles' staged y stores (tensor
stores; 2026-12-05): a directed run of the two ws tiles alone (stores where allowed, a 16-bit
case also run with y in pairs at random, bit for bit), --minutes 5 --seed 211: 552 cases, none
failed. With ws128x256's stream-K (2026-12-05): a directed run of ws128x256 alone (stream-K on
or by default, no forced split-K, grids drawn), --minutes 5 --seed 307 (beside a CI run): 292
cases, none failed. Then the whole fuzz again on 369ccc8 (2026-12-05, --minutes 15 --seed 401):
10,857 cases (4,079 also prepared, 1,088 with the TF32 chain flags), none failed. On 9db9839
(2026-12-05, --minutes 15 --seed 409): 12,774 cases (4,837 also prepared, 1,290 with the TF32
chain flags), none failed. On eaa1c1b (2026-12-06, --minutes 12 --seed 431; the weight
transforms' new Functions, resolve_algo's layout reading): 9,213 cases (3,404 also prepared,
901 with the TF32 chain flags), none failed.
"""
import argparse
import os
import random
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # test_conv3x3, and the repository (benchmarks)
import vggkern  # noqa: E402
from benchmarks.cases import PREPARED_WEIGHT  # noqa: E402  (the weight prepared once, by algo)
from benchmarks.cases import env_var as env  # noqa: E402  (sets a variable for a block; None: as it is)
from test_conv3x3 import K_FACTOR, TF32_ALGOS, _check, _errors, _round_tf32, _torch_forward  # noqa: E402

LAYOUTS = ("nchw", "channels_last", "sliced", "permuted", "offset")
# implicit_gemm: the default tile, or one forced, and split-K by default or forced.
TILES = (None, "128x64", "128x128", "256x128", "256x64", "wg128x128", "wg256x64", "wg128x256", "ws128x256",
         "ws128x128")
SPLITS = (None, None, "1", "2", "3", "5")
# The persistent tiles' grid (ws128x256, ws128x128 with y NHWC; ignored elsewhere): one block per SM,
# or 1-3 blocks taking several work items each.
GRIDS = (None, None, "1", "2", "3")
# Its copies (VGGKERN_IMPLICIT_GEMM_TMA): tensor loads where the call allows them (unset),
# or cp.async.
COPIES = (None, None, "off")
# Its 16-bit y stores (VGGKERN_IMPLICIT_GEMM_TMA_STORE): staged, by tensor stores, where the
# call allows them (unset), or pairs from the accumulators; a staged case is also run with
# the pairs at random, which must give its output bit for bit.
STORES = (None, None, "off")
# Its stream-K (VGGKERN_IMPLICIT_GEMM_STREAM_K): where the grid's last turn would be short
# (unset), forced on (a tile in parts wherever the blocks' ranges cut one), or off.
STREAM_K = (None, "on", "off")


def at_offset(t, off):
    """t's values in fresh storage, starting `off` elements in (unaligned vectors)."""
    return torch.cat([torch.zeros(off, dtype=t.dtype), t.flatten()])[off:].view(t.shape)


def make_x(rng, g, n, c, h, w, dtype, layout):
    scale = rng.choice([1.0, 1e-3, 100.0])
    x = (torch.randn(n, c, h, w + 3, generator=g) * scale).to(dtype)
    if layout == "sliced":
        return x[..., 1:1 + w]
    x = x[..., :w].contiguous()
    if layout == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if layout == "permuted":  # H and W swapped in memory
        return x.transpose(2, 3).contiguous().transpose(2, 3)
    if layout == "offset":  # storage offset of 7 elements: unaligned vectors
        return at_offset(x, 7)
    return x


def restride(rng, t):
    """t's values in a random layout: as made, sliced out of a wider last dimension, its
    last two dimensions' strides swapped, or at an unaligned storage offset."""
    how = rng.choice(["contiguous", "sliced", "permuted", "offset"])
    if how == "sliced":
        wide = torch.zeros(*t.shape[:-1], t.shape[-1] + 3, dtype=t.dtype)
        wide[..., 1:1 + t.shape[-1]] = t
        return wide[..., 1:1 + t.shape[-1]], how
    if how == "permuted":
        return t.transpose(-1, -2).contiguous().transpose(-1, -2), how
    if how == "offset":
        return at_offset(t, rng.randint(1, 7)), how
    return t, how


def ratio(y, x, wt, b, relu, pool, algo):
    """(err - floor) / err_torch, the quantity K_FACTOR bounds (0 where nothing is finite)."""
    ref = _torch_forward(x, wt, b, relu, pool, torch.float64)
    finite = ref.isfinite()
    if not finite.any():
        return 0.0
    err, err_torch, floor = _errors(y, x, wt, b, relu, pool, algo, ref, finite)
    return (err - floor) / err_torch if err_torch else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    worst, cases, failures, prepared_cases, chain_cases = {}, 0, 0, 0, 0
    t_end = time.time() + 60 * args.minutes
    while time.time() < t_end:
        algo = rng.choice(list(K_FACTOR))
        dtype = rng.choice(list(K_FACTOR[algo]))
        n, c = rng.choice([0, 1, 1, 2, 3]), rng.choice([1, 2, 3, 5, 8, 9, 16, 17, 31, 32, 33, 64, 65, 100])
        k = rng.choice([1, 2, 7, 8, 9, 16, 17, 32, 33, 63, 64, 65, 96, 128, 129])
        h, w = rng.randint(1, 40), rng.randint(1, 40)
        if n * c * h * w * k > 3_000_000:
            continue
        pool = rng.random() < 0.4 and h >= 2 and w >= 2
        relu, bias, layout = rng.random() < 0.5, rng.random() < 0.7, rng.choice(LAYOUTS)
        g = torch.Generator().manual_seed(rng.randrange(1 << 30))
        x = make_x(rng, g, n, c, h, w, dtype, layout)
        wt = (torch.randn(k, c, 3, 3, generator=g) / 3).to(dtype)
        b = torch.randn(k, generator=g).to(dtype) if bias else None
        extra = {"allow_tf32": True} if algo in TF32_ALGOS and dtype == torch.float32 else {}
        tile, split = (rng.choice(TILES), rng.choice(SPLITS)) if algo == "implicit_gemm" else (None, None)
        ws = bool(tile and tile.startswith("ws"))
        grid, copies, stores, stream_k = ((rng.choice(GRIDS), rng.choice(COPIES), rng.choice(STORES),
                                           rng.choice(STREAM_K)) if ws else (None,) * 4)
        case = dict(algo=algo, dtype=str(dtype), shape=(n, c, k, h, w), relu=relu, pool=pool, bias=bias,
                    layout=layout, tile=tile, split_k=split, grid=grid, tma=copies, tma_store=stores,
                    stream_k=stream_k)
        cases += 1

        def conv(weight, x=x, stores=stores, **flags):
            with env("VGGKERN_IMPLICIT_GEMM_TILE", tile), env("VGGKERN_IMPLICIT_GEMM_SPLIT_K", split), \
                    env("VGGKERN_IMPLICIT_GEMM_GRID", grid), env("VGGKERN_IMPLICIT_GEMM_TMA", copies), \
                    env("VGGKERN_IMPLICIT_GEMM_TMA_STORE", stores), env("VGGKERN_IMPLICIT_GEMM_STREAM_K", stream_k):
                return vggkern.conv3x3(x, weight, b, relu=relu, pool=pool, algo=algo, **extra, **flags)
        try:
            y = conv(wt)
            if y.numel():
                key = (algo, str(dtype).removeprefix("torch."))
                worst[key] = max(worst.get(key, 0.0), ratio(y, x, wt, b, relu, pool, algo))
            _check(y, x, wt, b, relu, pool, algo)
            if ws and stores is None and dtype != torch.float32 and rng.random() < 0.5:
                case["pairs_too"] = True
                torch.testing.assert_close(conv(wt, stores="off"), y, rtol=0, atol=0, equal_nan=True,
                                           msg=lambda m: "y stored in pairs differs from the staged stores: " + m)
            if algo in PREPARED_WEIGHT and rng.random() < 0.5:
                prepared, how = restride(rng, PREPARED_WEIGHT[algo](vggkern, wt))
                case["prepared_weight"] = how
                prepared_cases += 1
                torch.testing.assert_close(conv(prepared), y, rtol=0, atol=0, equal_nan=True,
                                           msg=lambda m: "prepared weight differs from the raw call: " + m)
            if dtype == torch.float32 and rng.random() < 0.3:  # TF32 chains (tests/test_tf32_chain.py)
                case["tf32_chain"] = True
                chain_cases += 1
                torch.testing.assert_close(conv(wt, y_tf32=True), _round_tf32(y), rtol=0, atol=0, equal_nan=True,
                                           msg=lambda m: "y_tf32 is not the output rounded to TF32: " + m)
                if algo in TF32_ALGOS:  # x given rounded, and said so: what the kernel computes from x
                    torch.testing.assert_close(conv(wt, x=_round_tf32(x), x_tf32=True), y, rtol=0, atol=0,
                                               equal_nan=True, msg=lambda m: "x_tf32 on rounded x differs: " + m)
        except Exception as e:  # noqa: BLE001
            failures += 1
            print("FAIL", case, f"{type(e).__name__}: {str(e)[:300]}", flush=True)
    print(f"{cases} cases ({prepared_cases} also with a prepared weight, {chain_cases} with TF32 chain flags), "
          f"{failures} failed")
    for (algo, dtype), r in sorted(worst.items()):
        k = K_FACTOR[algo][getattr(torch, dtype)]
        print(f"  {algo:15s} {dtype:9s} worst (err - floor) / err_torch {r:6.2f}  (K_FACTOR {k})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
