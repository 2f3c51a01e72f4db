"""Random conv3x3 cases against the test suite's own bounds (tests/test_conv3x3.py, _check),
through the emulator: shapes, dtypes, algorithms, epilogues, layouts (NCHW, channels_last,
sliced, permuted strides, unaligned storage offsets), input scales, and implicit_gemm's
tiles and split-K, in combinations the fixed CASES do not cover; and, for implicit_gemm and
the Winograd algorithms, the same call again with the weight prepared once
(tensor_core_weight, winograd_weight) in a random layout of its own, which must give the
raw call's output bit for bit. Not collected by pytest
(a manual tool: slow, and random by design).

    python tests/fuzz.py [--minutes M] [--seed S] [--derivatives]

--derivatives fuzzes the derivatives instead (derivatives_case): x's, the weight's and the
bias's gradients and y's tangent, by autograd, torch.func.vjp, forward AD and
torch.func.jvp, the weight raw or through its transform, against float64 torch's, leaving
out only the elements where ReLU's or the pool's derivative is ambiguous at the forward's
rounding. It fails on a ReLU mask that passes gradient where y = 0 (84 of 322 cases, checked
by breaking csrc/ops/autograd.cpp so). First runs (2026-12-06, on 6ad5f88): --minutes 10
--seed 601, 15,212 cases, 7 failed, all tangents with a bias tangent (up to 2.3x torch's
error in bf16: db was added to the tangent apart, one rounding more than torch's); with db
added inside a conv as torch does, --minutes 10 --seed 619 (the weight also through its
transform): 14,731 cases, none failed; worst (err - floor) / err_torch: dx, dweight, dbias,
tangent <= 1.46 in every dtype (bound DERIVATIVE_K = 2); through a float32 Winograd U up
to 34.8 (F(4x4)'s bound, K_FACTOR, 64).

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
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F

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


def random_inputs(rng, algo, dtype, shape, pool_p, relu_p):
    """A random case's epilogue and inputs for shape (N, C, K, H, W): pool (probability
    pool_p, where H, W >= 2), relu (relu_p), a bias (0.7), x's layout and values (make_x),
    weight and bias; also the generator g that made them, and the call's TF32 flag."""
    n, c, k, h, w = shape
    pool = rng.random() < pool_p and h >= 2 and w >= 2
    relu, bias, layout = rng.random() < relu_p, rng.random() < 0.7, rng.choice(LAYOUTS)
    g = torch.Generator().manual_seed(rng.randrange(1 << 30))
    x = make_x(rng, g, n, c, h, w, dtype, layout)
    wt = (torch.randn(k, c, 3, 3, generator=g) / 3).to(dtype)
    b = torch.randn(k, generator=g).to(dtype) if bias else None
    extra = {"allow_tf32": True} if algo in TF32_ALGOS and dtype == torch.float32 else {}
    return pool, relu, bias, layout, g, x, wt, b, extra


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


def ambiguous(a64, tol, relu, pool):
    """Per output element, whether ReLU's or the pool's derivative at the exact
    pre-activation a64 could differ from its derivative at any value within tol of it (the
    forward's rounding): a pre-activation within tol of 0 under ReLU; with the pool, a window
    whose two largest values lie within 2 tol (which pixel is the maximum) or, under ReLU,
    whose maximum lies within tol of 0."""
    if pool:
        n, k, h, w = a64.shape
        windows = a64[..., :h // 2 * 2, :w // 2 * 2].unfold(2, 2, 2).unfold(3, 2, 2).reshape(n, k, h // 2, w // 2, 4)
        top = windows.topk(2, dim=-1).values
        tie = top[..., 0] - top[..., 1] <= 2 * tol
        return (tie & (top[..., 0] > -tol)) | (top[..., 0].abs() <= tol) if relu else tie
    return a64.abs() <= tol if relu else torch.zeros(a64.shape, dtype=torch.bool)


# (err - floor) / err_torch of a derivative, the bound: the derivatives are torch's own ops
# in x's dtype on the forward's masks (csrc/ops/autograd.cpp), so their error is torch's.
DERIVATIVE_K = 2.0
# The floor's a-priori term (derivative_errors), as the forward's FLOOR_C.
FLOOR_D = 0.5


def derivative_errors(got, ours, reference, scale):
    """(err, err_torch, floor) of one derivative: ours and torch's own in x's dtype against
    the float64 reference; floor eps(dtype) / 4 x max|reference| + FLOOR_D x eps(float32) x
    max scale, scale the sums of its terms' magnitudes (a sum's a-priori rounding, as the
    forward's floor: tests/test_conv3x3.py, FLOOR_C): torch's own error is a loose yardstick
    for a float32 sum, whose size depends on its order, and the derivatives' convs may sum
    in another order than torch's (another layout, a laid-out weight)."""
    ref = reference.double()
    if not ref.numel():
        return 0.0, 0.0, 0.0
    floor = torch.finfo(ours.dtype).eps / 4 * ref.abs().max().item()
    if scale.numel():
        floor += FLOOR_D * torch.finfo(torch.float32).eps * scale.max().item()
    return (got.double() - ref).abs().max().item(), (ours.double() - ref).abs().max().item(), floor


def derivatives_case(rng, case):
    """One random case of conv3x3's derivatives (--derivatives): the gradients of x, weight
    and bias (autograd or torch.func.vjp) and y's tangent (forward AD or torch.func.jvp)
    against float64 torch's, with torch's own in x's dtype as the yardstick. Where ReLU's or
    the pool's derivative is ambiguous at the forward's rounding (ambiguous()), y's
    gradient is 0 and the tangent is not compared: there any answer is the right one for
    some rounding. The weight is passed raw or, at random, through its transform
    (PREPARED_WEIGHT) inside the differentiated function. Fills ``case`` (what a failure
    prints); returns {(derivative, dtype): worst ratio}, or raises on a failure."""
    algo = rng.choice(list(K_FACTOR))
    dtype = rng.choice(list(K_FACTOR[algo]))
    n, c = rng.choice([0, 1, 1, 2, 3]), rng.choice([1, 2, 3, 5, 8, 9, 16, 17, 32, 33])
    k = rng.choice([1, 2, 7, 8, 9, 16, 17, 32, 33])
    h, w = rng.randint(1, 24), rng.randint(1, 24)
    pool, relu, bias, layout, g, x, wt, b, extra = random_inputs(rng, algo, dtype, (n, c, k, h, w), 0.5, 0.7)
    kind = rng.choice(["autograd", "torch.func.vjp", "forward_ad", "torch.func.jvp"])
    inputs = [t for t in (x, wt, b) if t is not None]
    wanted = [i for i in range(len(inputs)) if rng.random() < 0.6] or [rng.randrange(len(inputs))]
    # The weight passed raw, or prepared in the call (winograd_weight, tensor_core_weight:
    # its derivatives then reach the raw weight through the transform's).
    prepared = algo in PREPARED_WEIGHT and rng.random() < 0.3
    case.update(algo=algo, dtype=str(dtype), shape=(n, c, k, h, w), relu=relu, pool=pool, bias=bias, layout=layout,
                path=kind, wanted=wanted, prepared=prepared)

    def ours(x, weight, *bias):
        weight = PREPARED_WEIGHT[algo](vggkern, weight) if prepared else weight
        return vggkern.conv3x3(x, weight, *bias, relu=relu, pool=pool, algo=algo, **extra)

    def torchs(x, weight, *bias, dt=dtype):  # torch's conv -> relu -> pool in dt (IEEE: TF32 off)
        if prepared and algo in TF32_ALGOS and dtype == torch.float32:
            # tensor_core_weight rounds a float32 weight to TF32, and its derivatives pass
            # through: the conv's derivatives are then those of the rounded weight.
            weight = weight + (_round_tf32(weight.detach().float()).to(weight.dtype) - weight.detach())
        return _torch_forward(x, weight, *(bias or (None,)), relu, pool, dt)

    # The ambiguity tolerance: twice the larger forward error (ours, torch's in dtype)
    # of the pre-activation, which the derivatives' masks are read from.
    x64, w64, b64 = (None if t is None else t.double() for t in (x, wt, b))
    a64 = F.conv2d(x64, w64, b64, padding=1)
    a_ours = vggkern.conv3x3(x, wt, b, algo=algo, **extra).double()
    a_torch = _torch_forward(x, wt, b, False, False, dtype).double()
    tol = 2 * max((a_ours - a64).abs().max().item(), (a_torch - a64).abs().max().item()) if a64.numel() else 0.0
    amb = ambiguous(a64, tol, relu, pool)
    case["ambiguous"] = int(amb.sum())
    worst = {}
    # Through a Winograd U the derivatives are the Winograd computation's (in float32), whose
    # rounding the forward's bound covers.
    bound = max(DERIVATIVE_K, K_FACTOR[algo][dtype]) if prepared and algo.startswith("winograd") else DERIVATIVE_K

    def record(name, got, own, ref, scale):
        err, err_torch, floor = derivative_errors(got, own, ref, scale)
        r = (err - floor) / err_torch if err_torch else (0.0 if err <= floor else float("inf"))
        key = (name + (" (U)" if bound != DERIVATIVE_K else ""), str(dtype).removeprefix("torch."))
        worst[key] = max(worst.get(key, 0.0), r)
        if err > bound * err_torch + floor:
            raise AssertionError(f"{name}: err {err:.3g} > {bound} x torch's {err_torch:.3g} + floor {floor:.3g}")

    if kind in ("autograd", "torch.func.vjp"):
        shape = (n, k) + ((h // 2, w // 2) if pool else (h, w))
        dy = torch.randn(shape, generator=g, dtype=torch.float64).masked_fill(amb, 0).to(dtype)
        dy, case["dy_layout"] = restride(rng, dy)
        if kind == "autograd":
            leaves = [t.detach().requires_grad_(i in wanted) for i, t in enumerate(inputs)]  # x's layout kept
            ours(*leaves).backward(dy)
            got = [leaves[i].grad for i in wanted]
        else:
            def f(*picked):
                args = list(inputs)
                for i, t in zip(wanted, picked):
                    args[i] = t
                return ours(*args)
            got = list(torch.func.vjp(f, *(inputs[i] for i in wanted))[1](dy))
        own_and_ref = []
        for dt in (dtype, torch.float64):
            leaves = [t.detach().to(dt, copy=True).requires_grad_(i in wanted) for i, t in enumerate(inputs)]
            torchs(*leaves, dt=dt).backward(dy.to(dt))
            own_and_ref.append([leaves[i].grad for i in wanted])
        # The gradient reaching the pre-activation, then the sums of magnitudes per derivative.
        a = a64.detach().requires_grad_()
        epilogue = F.relu(a) if relu else a
        (F.max_pool2d(epilogue, 2, 2) if pool else epilogue).backward(dy.double())
        gp = a.grad.abs()
        scales = [torch.nn.grad.conv2d_input(x.shape, w64.abs(), gp, padding=1),
                  torch.nn.grad.conv2d_weight(x64.abs(), wt.shape, gp, padding=1), gp.sum((0, 2, 3))]
        for i, gt, own, ref in zip(wanted, got, *own_and_ref):
            assert gt.dtype == dtype and gt.shape == inputs[i].shape, (gt.dtype, gt.shape)
            record("d" + ("x", "weight", "bias")[i], gt, own, ref, scales[i])
    else:
        tangents = [torch.randn(t.shape, generator=g).to(dtype) if i in wanted else torch.zeros_like(t)
                    for i, t in enumerate(inputs)]
        if kind == "forward_ad":
            with fwAD.dual_level():
                out = ours(*(fwAD.make_dual(t, d) if i in wanted else t
                             for i, (t, d) in enumerate(zip(inputs, tangents))))
                got = fwAD.unpack_dual(out).tangent
            got = torch.zeros_like(out) if got is None else got
        else:
            got = torch.func.jvp(ours, tuple(inputs), tuple(tangents))[1]
        ref = torch.func.jvp(lambda *a: torchs(*a, dt=torch.float64), tuple(t.double() for t in inputs),
                             tuple(t.double() for t in tangents))[1]
        own = torch.func.jvp(torchs, tuple(inputs), tuple(tangents))[1]
        assert got.dtype == dtype and got.shape == ref.shape, (got.dtype, got.shape)
        keep = ~amb
        scale = sum(F.conv2d(*(t.double().abs() for t in pair), padding=1)
                    for pair in ((tangents[0], wt), (x, tangents[1]))) + (
            tangents[2].double().abs().view(1, -1, 1, 1) if bias else 0)
        record("tangent", got[keep], own[keep], ref[keep], scale)
    return worst


def derivatives_main(args):
    rng = random.Random(args.seed)
    worst, cases, failures, ambiguous_cases = {}, 0, 0, 0
    t_end = time.time() + 60 * args.minutes
    while time.time() < t_end:
        cases += 1
        case = {}
        try:
            for key, r in derivatives_case(rng, case).items():
                worst[key] = max(worst.get(key, 0.0), r)
            ambiguous_cases += bool(case["ambiguous"])
        except Exception as e:  # noqa: BLE001
            failures += 1
            print("FAIL", case, f"{type(e).__name__}: {str(e)[:300]}", flush=True)
    print(f"{cases} derivative cases ({ambiguous_cases} with ambiguous elements left out), {failures} failed")
    for (name, dtype), r in sorted(worst.items()):
        print(f"  {name:12s} {dtype:9s} worst (err - floor) / err_torch {r:6.2f}")
    return 1 if failures else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--derivatives", action="store_true",
                    help="fuzz conv3x3's gradients and tangents instead of its forward (derivatives_case)")
    args = ap.parse_args()
    if args.derivatives:
        return derivatives_main(args)
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
        pool, relu, bias, layout, g, x, wt, b, extra = random_inputs(rng, algo, dtype, (n, c, k, h, w), 0.4, 0.5)
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
