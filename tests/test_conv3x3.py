"""vggkern.conv3x3 against torch: F.conv2d(padding=1) -> relu -> max_pool2d(2, 2).

CPU tensors run the CUDA kernels' own source through the SIMT emulator (which fills
every output with NaN before the kernel, so an unwritten element shows as an
unexpected NaN); CUDA tensors run on the GPU (tests marked `gpu`, skipped without one).

Accuracy rule (DESIGN.md, Numerics): on the same (rounded) inputs, against torch in
float64, our max error must satisfy  err <= k * err_torch + floor,  where err_torch is
torch's own error in the same dtype on the same device (TF32 off), and floor =
eps(dtype) / 4 * max|reference| (half an ulp of the largest output is eps/2 * max)
+ FLOOR_C[algo] * eps(float32) * max(scale) covers cases where torch happens to be
exact: scale (_scale) is the algorithm's a-priori size of its fp32 arithmetic.
"""
import itertools
import math

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch._dynamo.testing import CompileCounterWithBackend
from torch._prims_common import suggest_memory_format

import vggkern

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.gpu,
                                pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")]),
]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]

# k per algorithm and dtype: the multiple of torch's own error (same dtype, against
# float64) that our error may reach. "direct" sums in fp32 with fmaf and rounds once at
# the store, so in fp16/bf16 its error is the output rounding, as torch's is (measured
# on CPU over CASES: ratio 1.00 in every case; 2 leaves room for a torch that happens to
# be luckier on its worst element, e.g. cuDNN); in fp32 both are summation-order
# errors of the same size: ours is a sequential fp32 sum over (c, ky, kx), torch's CPU
# conv sums in blocks, more accurately on channels_last inputs than on NCHW ones. The
# ratio (err - floor) / err_torch, measured on CPU: 0.7 to 2.0 over CASES; over 300
# random shapes (C <= 100) up to 3.9 NCHW and 4.6 channels_last; 8.5 worst seen
# (C=32, K=3, 27x10, channels_last, inputs scaled by 100), found by tests/fuzz.py;
# hence 16. (A lost or doubled term would err by ~|x w|, 1e4 times more.)
#
# Winograd (issue 4): the transforms run in fp32 and the output is rounded once, so in
# fp16/bf16 the error is again the output rounding (measured on CPU over CASES, both
# layouts: (err - floor) / err_torch <= 0.47, as direct's). In fp32 the transforms'
# rounding is amplified by their coefficients: measured on CPU over CASES,
# (err - floor) / err_torch up to 3.1 for F(2x2) and 20.5 for F(4x4) (its A^T holds 8s and
# its B^T 4s and 5s); the bounds leave ~2.5-3x room for other shapes and seeds.
K_FACTOR = {
    "direct": {torch.float32: 16.0, torch.float16: 2.0, torch.bfloat16: 2.0},
    "winograd_f2x2": {torch.float32: 8.0, torch.float16: 2.0, torch.bfloat16: 2.0},
    "winograd_f4x4": {torch.float32: 64.0, torch.float16: 2.0, torch.bfloat16: 2.0},
    # Tensor cores: exact products, fp32 sums (the emulator rounds once per mma), one
    # rounding at the store: in fp16/bf16 the error is the output rounding, as torch's
    # (measured through the emulator over test_conv3x3_implicit_gemm.py: ratio 1.00).
    # float32 here means TF32 math (TF32_ALGOS), its own "dtype" for the bound: err_torch
    # is then torch's error model for TF32, the input rounding, |ref_tf32 - ref64|max with
    # ref_tf32 the float64 conv of x and weight rounded to TF32 (_round_tf32); our error
    # adds only fp32 summation error to it. Measured through the emulator over CASES, both
    # layouts (allow_tf32=True): err / err_tf32 = 0.9999 to 1.0032, (err - floor) / err_tf32
    # <= 1.0000 (torch's own fp32 error is 100-1000x smaller: TF32 is its own precision),
    # hence 2, leaving room for a GPU's tensor-core accumulation order.
    "implicit_gemm": {torch.float16: 2.0, torch.bfloat16: 2.0, torch.float32: 2.0},
}
# The floor's second term, FLOOR_C[algo] * eps(float32) * max over outputs of _scale: the
# fp32 arithmetic's rounding bounded a priori (the standard bound of a sum of products is
# a multiple of eps times the sum of the terms' magnitudes), for problems so small that
# torch's own error, the k term, is exact by luck (few terms, an output after ReLU or
# cancellation much smaller than its terms). Without it the suite's bound failed tiny
# random problems (N <= 2, C <= 8, K <= 4, H, W <= 8, fp32; measured through the
# emulator, 2026-12): winograd_f2x2 108, winograd_f4x4 24, direct 8 of ~19,000 each
# (e.g. f2x2 err 1.2e-7 with torch's 1.1e-9). Winograd's rounding scales with its
# transformed operands, not with |x| * |w|: its scale is the algorithm run on absolute
# values, |A^T| [sum_c (|G| |g| |G^T|) . (|B^T| |d| |B|)] |A| (up to 253x |x| conv |w| on
# CASES for F(4x4)). Measured max (err - old floor - k * err_torch) / (eps * max scale)
# over those problems: direct 0.21, F(2x2) 0.13, F(4x4) 0.080 (without the k term:
# 1.7, 0.28, 0.22); C = about 2x that. In fp16/bf16 the term is ~1e-4 of the first.
FLOOR_C = {"direct": 0.5, "winograd_f2x2": 0.25, "winograd_f4x4": 0.125, "implicit_gemm": 0.5}
# Winograd's transforms (csrc/kernels/winograd_transforms.cuh): B^T, G, A^T per m.
_WINOGRAD = {
    "winograd_f2x2": (2, [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
                      [[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], [[1, 1, 1, 0], [0, 1, -1, -1]]),
    "winograd_f4x4": (4, [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                          [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
                      [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                       [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
                      [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]),
}
# Algorithms that compute float32 with TF32 math (only when TF32 is allowed: allow_tf32
# or torch.backends.cudnn.allow_tf32); _check bounds them against the TF32 error model.
TF32_ALGOS = ("implicit_gemm",)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _inputs(n, c, k, h, w, dtype, device, *, bias=True, channels_last=False, seed=0):
    g = _gen(seed)
    x = torch.randn(n, c, h, w, generator=g).to(dtype)
    wt = (torch.randn(k, c, 3, 3, generator=g) / 3).to(dtype)
    b = torch.randn(k, generator=g).to(dtype) if bias else None
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x.to(device), wt.to(device), None if b is None else b.to(device)


def _round_tf32(t):
    """t rounded to TF32 as cvt.rna.tf32.f32 does (what tensor cores and cuDNN's TF32 do
    to their inputs): keep 10 mantissa bits, round to nearest, ties away from zero; Inf
    and NaN unchanged. Returns float32."""
    return _tf32(t, half_ulp=0x1000)


def _truncate_tf32(t):
    """t with its low 13 mantissa bits dropped (TF32 toward zero: what wgmma's tensor cores
    do, by our reading, to fp32 operands read from shared memory); Inf and NaN unchanged."""
    return _tf32(t, half_ulp=0)


def _tf32(t, half_ulp):
    # The fp32 bits plus half_ulp (0x1000: round to nearest, ties away; 0: truncate), the
    # low 13 bits cleared; Inf and NaN as they are.
    f = t.float()
    r = ((f.view(torch.int32) + half_ulp) & -0x2000).view(torch.float32)
    return torch.where(f.isfinite(), r, f)


def _torch_forward(x, w, b, relu, pool, dtype):
    """torch's own result in `dtype` (float64: the reference), TF32 off."""
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        y = F.conv2d(x.to(dtype), w.to(dtype), None if b is None else b.to(dtype), padding=1)
    if relu:
        y = F.relu(y)
    if pool:
        y = F.max_pool2d(y, 2, 2)
    return y


def _scale(x, w, b, pool, algo):
    """The a-priori size of the algorithm's fp32 arithmetic per output, in float64: the
    algorithm run on absolute values (|x| conv |w| + |b| for a direct sum; Winograd's
    m x m tiles from the origin with |B^T|, |G|, |A^T|), max-pooled as the output is
    (ReLU leaves it as it is)."""
    x, w = x.double().abs(), w.double().abs()
    if algo in _WINOGRAD:
        m, bt, g, at = _WINOGRAD[algo]
        bt, g, at = (torch.tensor(t, dtype=torch.float64, device=x.device).abs() for t in (bt, g, at))
        n, _, h, wd = x.shape
        th, tw = -(-h // m), -(-wd // m)
        d = F.pad(x, (1, tw * m + 1 - wd, 1, th * m + 1 - h)).unfold(2, m + 2, m).unfold(3, m + 2, m)
        prod = torch.einsum("nctuij,kcij->nktuij", bt @ d @ bt.T, g @ w @ g.T)
        s = (at @ prod @ at.T).permute(0, 1, 2, 4, 3, 5).reshape(n, -1, th * m, tw * m)[..., :h, :wd]
    else:
        s = F.conv2d(x, w, padding=1)
    if b is not None:
        s = s + b.double().abs().view(1, -1, 1, 1)
    return F.max_pool2d(s, 2, 2) if pool else s


def _errors(y, x, w, b, relu, pool, algo, ref, finite):
    """(err, err_torch, floor) over ref's finite elements (ref: the float64 result): our
    error, torch's own in x's dtype (for a TF32 algorithm on float32: that of the float64
    conv of x and weight rounded to TF32), and the floor: eps/4 x max|ref|
    + FLOOR_C[algo] x eps(float32) x max _scale (over outputs where both are finite).
    torch's error leaves out elements where torch itself gave NaN or Inf for a finite
    ref: its CPU bfloat16 channels_last conv, on a CPU with AVX512-BF16 (torch 2.14.1),
    gives NaN two columns beside an Inf input, at outputs whose window does not hold it.
    A smaller err_torch, so a stricter bound for us."""
    if algo in TF32_ALGOS and x.dtype == torch.float32:  # TF32: the input rounding is the error model
        own = _torch_forward(_round_tf32(x), _round_tf32(w), b, relu, pool, torch.float64)
    else:
        own = _torch_forward(x, w, b, relu, pool, x.dtype).double()
    err = (y.double() - ref)[finite].abs().max().item()
    own_finite = finite & own.isfinite()
    err_torch = (own - ref)[own_finite].abs().max().item() if own_finite.any() else 0.0
    floor = torch.finfo(x.dtype).eps / 4 * ref[finite].abs().max().item()
    scale = _scale(x, w, b, pool, algo)
    scale_finite = finite & scale.isfinite()
    if scale_finite.any():
        floor += FLOOR_C[algo] * torch.finfo(torch.float32).eps * scale[scale_finite].max().item()
    return err, err_torch, floor


def _check(y, x, w, b, relu, pool, algo="direct"):
    ref = _torch_forward(x, w, b, relu, pool, torch.float64)
    assert y.shape == ref.shape
    assert y.dtype == x.dtype and y.device == x.device
    assert y.is_contiguous(memory_format=suggest_memory_format(x))
    if ref.numel() == 0:
        return
    ours = y.double()
    # NaN and Inf exactly where torch has them; an unwritten (NaN-poisoned) element fails here.
    assert torch.equal(ours.isnan(), ref.isnan()), "NaN pattern differs from torch's"
    assert torch.equal(ours.isinf(), ref.isinf()), "Inf pattern differs from torch's"
    inf = ref.isinf()
    assert torch.equal(ours[inf], ref[inf]), "Inf signs differ from torch's"
    finite = ref.isfinite()
    if not finite.any():
        return
    err, err_torch, floor = _errors(y, x, w, b, relu, pool, algo, ref, finite)
    k = K_FACTOR[algo][x.dtype]
    assert err <= k * err_torch + floor, f"err {err:.3g} > {k} * err_torch {err_torch:.3g} + floor {floor:.3g}"


# (N, C, K, H, W, bias, relu, pool): together they cover N in {0, 1, 3}, C in {1, 3,
# 17, 64, 130}, K in {1, 7, 64, 129}, H, W in {1, 2, 3, 7, 13, 31, 57}, several K
# groups and spatial tiles, partial tiles, odd sizes under the pool, empty results.
CASES = [
    (1, 1, 1, 1, 1, True, False, False),
    (3, 3, 64, 7, 13, True, True, False),
    (1, 17, 7, 13, 7, False, False, True),
    (3, 64, 129, 13, 31, True, True, True),
    (1, 130, 64, 31, 57, False, True, True),
    (0, 3, 7, 7, 7, True, True, True),
    (1, 130, 129, 57, 3, True, False, True),
    (3, 17, 1, 2, 57, False, True, True),
    (1, 64, 7, 3, 2, True, False, False),
    (1, 3, 129, 57, 57, True, True, True),
    (1, 3, 7, 1, 13, True, True, False),  # (with the pool, H=1 is refused: test_bad_inputs)
    (3, 1, 64, 31, 1, False, True, False),
]


# Every (algorithm, dtype) pair the algorithm runs: the dtypes K_FACTOR bounds it in.
ALGO_DTYPES = [pytest.param(a, d, id=f"{a}-{str(d).replace('torch.', '')}") for a in K_FACTOR for d in K_FACTOR[a]]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("algo,dtype", ALGO_DTYPES)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "N{}C{}K{}H{}W{}-b{:d}r{:d}p{:d}".format(*c))
def test_matches_torch(case, dtype, channels_last, algo, device):
    n, c, k, h, w, bias, relu, pool = case
    x, wt, b = _inputs(n, c, k, h, w, dtype, device, bias=bias, channels_last=channels_last, seed=hash(case) % 1000)
    # allow_tf32=True: float32 on tensor cores runs as TF32 (the other algorithms ignore it).
    y = vggkern.conv3x3(x, wt, b, relu=relu, pool=pool, algo=algo, allow_tf32=True)
    _check(y, x, wt, b, relu, pool, algo=algo)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("algo", list(K_FACTOR))
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("bias,relu,pool", list(itertools.product([False, True], repeat=3)))
def test_epilogue_combinations(bias, relu, pool, channels_last, algo, device):
    for dtype in K_FACTOR[algo]:
        x, w, b = _inputs(2, 19, 40, 13, 11, dtype, device, bias=bias, channels_last=channels_last, seed=7)
        _check(vggkern.conv3x3(x, w, b, relu=relu, pool=pool, algo=algo, allow_tf32=True), x, w, b, relu, pool,
               algo=algo)


@pytest.mark.parametrize("device", DEVICES)
def test_int64_index_variant(device, monkeypatch):
    # The kernel's int64-offset variant (used from 2^31 elements on), forced at small sizes.
    monkeypatch.setenv("VGGKERN_FORCE_INT64_INDEX", "1")
    # The last case has K % 8 == 0 and W even: the vector-store epilogues (8 channels, column pairs).
    for case in [(3, 17, 40, 13, 31, True, True, True), (2, 3, 7, 7, 5, False, False, False),
                 (2, 5, 16, 7, 8, True, True, False)]:
        n, c, k, h, w, bias, relu, pool = case
        for channels_last in (False, True):
            x, wt, b = _inputs(n, c, k, h, w, torch.float16, device, bias=bias, channels_last=channels_last, seed=29)
            y64 = vggkern.conv3x3(x, wt, b, relu=relu, pool=pool)
            _check(y64, x, wt, b, relu, pool)
            monkeypatch.setenv("VGGKERN_FORCE_INT64_INDEX", "0")
            assert torch.equal(y64, vggkern.conv3x3(x, wt, b, relu=relu, pool=pool))  # same sums, same order
            monkeypatch.setenv("VGGKERN_FORCE_INT64_INDEX", "1")


@pytest.mark.parametrize("device", DEVICES)
def test_noncontiguous_inputs(device):
    g = _gen(11)
    n, c, k, h, w = 2, 9, 13, 10, 12
    b = torch.randn(2 * k, generator=g).to(device)[::2]
    weight = torch.randn(c, k, 3, 3, generator=g).to(device).transpose(0, 1)  # (K, C, 3, 3), not contiguous
    xs = [
        torch.randn(n, 2 * c, h, w, generator=g).to(device)[:, ::2],  # every other channel
        torch.randn(n, c, w, h, generator=g).to(device).transpose(2, 3),  # H and W swapped
        torch.randn(n, c, h, w + 3, generator=g).to(device).contiguous(memory_format=torch.channels_last)[..., 2:-1],
    ]
    for x in xs:
        assert not x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)
        for relu, pool in [(False, False), (True, True)]:
            ran = vggkern.resolve_algo(x, k, pool=pool)  # "auto": this shape's nearest measurement's
            _check(vggkern.conv3x3(x, weight, b, relu=relu, pool=pool), x, weight, b, relu, pool, algo=ran)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("algo,dtype", ALGO_DTYPES)
def test_views_at_unaligned_storage_offsets(algo, dtype, device):
    # Contiguous views that start one element into their storage (x, the weight laid out
    # (K, 3, 3, C) as nn.Conv3x3 keeps it, the bias): not 16-byte aligned, which vector
    # and cp.async reads need (implicit_gemm read x and such a weight in place and faulted
    # on them: the emulator's alignment check; on a GPU, a misaligned-address error).
    g = _gen(12)
    n, c, k, h, w = 2, 16, 24, 6, 10

    def at_offset_1(shape, permute=None):
        base = torch.randn(math.prod(shape) + 1, generator=g).to(dtype).to(device)
        t = base[1:].view(shape)
        return t.permute(*permute) if permute else t

    weight = at_offset_1((k, 3, 3, c), (0, 3, 1, 2))  # (K, C, 3, 3) in (K, 3, 3, C) order
    b = at_offset_1((k,))
    for x in (at_offset_1((n, c, h, w)), at_offset_1((n, h, w, c), (0, 3, 1, 2))):
        assert x.data_ptr() % 16 and weight.data_ptr() % 16
        for relu, pool in [(False, False), (True, True)]:
            y = vggkern.conv3x3(x, weight, b, relu=relu, pool=pool, algo=algo, allow_tf32=True)
            _check(y, x, weight, b, relu, pool, algo=algo)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("relu,pool", [(False, False), (True, False), (False, True), (True, True)])
def test_nan_inf_propagate_like_torch(relu, pool, dtype, channels_last, device):
    x, w, b = _inputs(2, 5, 6, 11, 13, dtype, device, channels_last=channels_last, seed=3)
    x[0, 1, 0, 0] = float("nan")  # at the image corner: the halo's zero padding beside it
    x[0, 3, 6, 7] = float("nan")
    x[1, 0, 4, 12] = float("inf")
    x[1, 2, 9, 2] = float("-inf")
    b[4] = float("nan")  # a whole output channel
    y = vggkern.conv3x3(x, w, b, relu=relu, pool=pool)
    assert y.isnan().any()
    _check(y, x, w, b, relu, pool)


@pytest.mark.parametrize("device", DEVICES)
def test_algorithms(device):
    names = vggkern.algorithms()
    assert names[0] == "direct" and set(names) == set(K_FACTOR)
    x, w, b = _inputs(1, 5, 9, 8, 9, torch.float16, device, seed=5)  # a dtype every algorithm runs
    auto = vggkern.conv3x3(x, w, b, relu=True, algo="auto")
    for algo in names:
        y = vggkern.conv3x3(x, w, b, relu=True, algo=algo)
        _check(y, x, w, b, True, False, algo=algo)
    assert torch.equal(auto, vggkern.conv3x3(x, w, b, relu=True, algo=names[0]))  # "auto" is the first


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bias,relu,pool,channels_last", [
    (True, False, False, False),
    (False, True, True, False),
    (True, True, True, True),
])
def test_opcheck(bias, relu, pool, channels_last, device):
    x, w, b = _inputs(2, 3, 4, 6, 5, torch.float32, device, bias=bias, channels_last=channels_last, seed=13)
    args = (x.requires_grad_(), w.requires_grad_(), None if b is None else b.requires_grad_())
    torch.library.opcheck(torch.ops.vggkern.conv3x3.default, args, {"relu": relu, "pool": pool, "algo": "auto"})


@pytest.mark.parametrize("device", DEVICES)
def test_torch_compile_fullgraph(device):
    torch._dynamo.reset()

    def block(x, w1, b1, w2, b2):
        y = vggkern.conv3x3(x, w1, b1, relu=True)
        return vggkern.conv3x3(y, w2, b2, relu=True, pool=True).sum(dim=1)

    g = _gen(17)
    x = torch.randn(2, 3, 9, 10, generator=g).to(device)
    w1, b1 = torch.randn(8, 3, 3, 3, generator=g).to(device), torch.randn(8, generator=g).to(device)
    w2, b2 = torch.randn(6, 8, 3, 3, generator=g).to(device), torch.randn(6, generator=g).to(device)
    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x, w1, b1, w2, b2), block(x, w1, b1, w2, b2), rtol=0, atol=0)
    xc = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(compiled(xc, w1, b1, w2, b2), block(xc, w1, b1, w2, b2), rtol=0, atol=0)


def test_torch_compile_dynamic_shapes_backward():
    # dynamic=True: AOTAutograd traces the backward with a symbolic batch and spatial
    # size; one graph serves every size, gradients eager's.
    torch._dynamo.reset()
    g = _gen(19)
    w, b = torch.randn(4, 3, 3, 3, generator=g, requires_grad=True), torch.randn(4, generator=g)

    def loss(x, w):
        return vggkern.conv3x3(x, w, b, relu=True, pool=True, algo="direct").square().sum()

    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(loss, dynamic=True, backend=counter)
    for n, h in ((2, 8), (3, 10), (5, 6)):
        x = torch.randn(n, 3, h, h, generator=g)
        got = torch.autograd.grad(compiled(x, w), w)[0]
        want = torch.autograd.grad(loss(x, w), w)[0]
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert counter.frame_count == 1
    torch._dynamo.reset()


AUTOCAST_CASES = [("cpu", torch.bfloat16), ("cpu", torch.float16)] + [pytest.param("cuda", d, marks=DEVICES[1].marks)
                                                 for d in (torch.float16, torch.bfloat16)]


@pytest.mark.parametrize("device,dtype", AUTOCAST_CASES, ids=str)
def test_autocast_runs_in_the_autocast_dtype(device, dtype):
    """Under torch.autocast conv3x3 is F.conv2d's kind of op: float32 x, weight and bias are
    cast to the autocast dtype (whichever entry: wrapper or torch.ops), bit for bit the
    op on cast operands; a lower-precision x meets a float32 weight; a Winograd U stays
    float32; gradients flow back in float32, as torch's conv's do."""
    g = _gen(61)
    x = torch.randn(2, 8, 9, 10, generator=g).to(device)
    w, b = torch.randn(16, 8, 3, 3, generator=g).to(device), torch.randn(16, generator=g).to(device)
    want = vggkern.conv3x3(x.to(dtype), w.to(dtype), b.to(dtype), relu=True, pool=True, algo="direct")
    u = vggkern.winograd_weight(w, 4)
    with torch.autocast(device, dtype=dtype):
        for y in (vggkern.conv3x3(x, w, b, relu=True, pool=True, algo="direct"),
                  torch.ops.vggkern.conv3x3(x, w, b, True, True, "direct", None),
                  vggkern.conv3x3(x.to(dtype), w, b, relu=True, pool=True, algo="direct")):
            assert y.dtype == dtype and torch.equal(y, want)
        y = vggkern.conv3x3(x, u, b, algo="winograd_f4x4")
        assert y.dtype == dtype
        assert torch.equal(y, vggkern.conv3x3(x.to(dtype), u, b.to(dtype), algo="winograd_f4x4"))
        torch._dynamo.reset()
        compiled = torch.compile(lambda *a: torch.ops.vggkern.conv3x3(*a, True, True, "direct", None),
                                 fullgraph=True, backend="aot_eager")
        assert torch.equal(compiled(x, w, b), want)  # traced through the op's autocast kernel
        torch._dynamo.reset()
    with pytest.raises(ValueError, match="expected weight of the same dtype as x"):  # no autocast: no casts
        vggkern.conv3x3(x.to(dtype), w, b)
    # float64 is not autocast's to cast (torch's conv stays in float64): the op refuses it
    # under autocast as without, whichever entry, rather than running it in the autocast dtype.
    x64, w64, b64 = x.double(), w.double(), b.double()
    with torch.autocast(device, dtype=dtype):
        assert F.conv2d(x64, w64, b64, padding=1).dtype == torch.float64
        for entry in (lambda: vggkern.conv3x3(x64, w64, b64, algo="direct"),
                      lambda: torch.ops.vggkern.conv3x3(x64, w64, b64, False, False, "direct", None)):
            with pytest.raises(ValueError, match="expected x of dtype float32, float16 or bfloat16, got torch.float64"):
                entry()
        with pytest.raises(ValueError, match="expected bias of the same dtype as x"):  # only the float32 ones cast
            vggkern.conv3x3(x, w, b64, algo="direct")
    other = "cuda" if device == "cpu" else "cpu"
    if other == "cpu" or torch.cuda.is_available():
        with torch.autocast(other, dtype=torch.bfloat16):  # another device type's autocast casts nothing here
            assert vggkern.conv3x3(x, w, b, algo="direct").dtype == torch.float32
    xs, ws, bs = (t.clone().requires_grad_() for t in (x, w, b))
    xt, wt, bt = (t.clone().requires_grad_() for t in (x, w, b))
    with torch.autocast(device, dtype=dtype):
        vggkern.conv3x3(xs, ws, bs, relu=True, algo="direct").float().square().sum().backward()
        F.relu(F.conv2d(xt, wt, bt, padding=1)).float().square().sum().backward()
    for ours, torchs in ((xs, xt), (ws, wt), (bs, bt)):
        assert ours.grad.dtype == torch.float32
        torch.testing.assert_close(ours.grad, torchs.grad, rtol=0.05, atol=0.05 * torchs.grad.abs().max().item())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("bias,relu,pool", [(True, False, False), (False, True, False), (True, False, True),
                                            (True, True, True)])
def test_gradients_match_torch(bias, relu, pool, channels_last, device):
    x, w, b = _inputs(2, 5, 6, 9, 7, torch.float32, device, bias=bias, channels_last=channels_last, seed=19)
    leaves = [t.detach().clone().requires_grad_() for t in (x, w) + ((b,) if bias else ())]
    ours_in = [t.detach().clone().requires_grad_() for t in leaves]
    ref = _torch_forward(*leaves[:2], leaves[2] if bias else None, relu, pool, torch.float32)
    ours = vggkern.conv3x3(*ours_in[:2], ours_in[2] if bias else None, relu=relu, pool=pool)
    grad = torch.randn(ref.shape, generator=_gen(23)).to(device)
    ref.backward(grad)
    ours.backward(grad)
    for a, r in zip(ours_in, leaves):
        torch.testing.assert_close(a.grad, r.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("wanted", ["x", "weight", "bias", "x,bias", "x,weight"])
@pytest.mark.parametrize("pool", [True, False], ids=["relu_pool", "relu"])
def test_gradients_of_some_inputs_and_double_backward(wanted, pool, device):
    # The backward (csrc/ops/autograd.cpp) maps "which inputs want a gradient" onto x,
    # weight and bias in that order, and builds its result from differentiable aten ops,
    # so a gradient of a gradient (create_graph) is torch's too; without the pool, with
    # ReLU's mask read from the saved output (y is then saved by its own node).
    x, w, b = _inputs(2, 4, 5, 8, 6, torch.float32, device, seed=29)
    names = ("x", "weight", "bias")
    ref_in = [t.detach().clone().requires_grad_(n in wanted.split(",")) for n, t in zip(names, (x, w, b))]
    ours_in = [t.detach().clone().requires_grad_(t.requires_grad) for t in ref_in]
    ref = _torch_forward(*ref_in, True, pool, torch.float32)
    ours = vggkern.conv3x3(*ours_in, relu=True, pool=pool, algo="direct")
    grad = torch.randn(ref.shape, generator=_gen(31)).to(device).requires_grad_()
    want = [t for t in ref_in if t.requires_grad]
    got = torch.autograd.grad(ours, [t for t in ours_in if t.requires_grad], grad, create_graph=True)
    expected = torch.autograd.grad(ref, want, grad, create_graph=True)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)
    # Second order: d/d(grad) and d/d(each wanted input) of <dL/d(first wanted), v>. The
    # first is linear in grad; the others need the backward's use of the saved x and
    # weight to be differentiable (with "x,weight": d/dweight of <dL/dx, v> is not zero).
    v = torch.randn(got[0].shape, generator=_gen(37)).to(device)
    ours_wanted = [t for t in ours_in if t.requires_grad]
    gg = torch.autograd.grad((got[0] * v).sum(), [grad] + ours_wanted, allow_unused=True)
    ge = torch.autograd.grad((expected[0] * v).sum(), [grad] + want, allow_unused=True)
    for name, a, e, t in zip(["grad"] + wanted.split(","), gg, ge, [grad] + want):
        a = torch.zeros_like(t) if a is None else a  # None: no path, a zero derivative
        e = torch.zeros_like(t) if e is None else e
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5, msg=name)
    if wanted == "x,weight":
        assert ge[2] is not None and ge[2].abs().max() > 0.1  # the mixed derivative is there to compare
    assert all(t.grad is None for t in ours_in)


def _pre_activation_zero_in_tf32_only(device):
    """x, weight, bias whose pre-activation the TF32 kernels compute as exactly r (x's third
    channel, TF32 values: 0 on about half of the 2 x 2 windows, else normal) and IEEE fp32
    as r + (a - tf32(a)): the first two channels hold a and -tf32(a), the weight's centre
    taps are 1 and the others 0. Where r = 0, TF32's y is 0 and fp32's sign is a's rounding
    error's."""
    g = _gen(43)
    a = torch.randn(1, 1, 6, 8, generator=g)
    zero_windows = (torch.rand(1, 1, 3, 4, generator=g) < 0.5).repeat_interleave(2, 2).repeat_interleave(2, 3)
    r = _round_tf32(torch.randn(1, 1, 6, 8, generator=g)) * ~zero_windows
    x = torch.cat([a, -_round_tf32(a), r], dim=1)
    w = torch.zeros(2, 3, 3, 3)
    w[:, :, 1, 1] = 1.0
    w[1, 2, 1, 1] = -1.0  # the second output channel sees -r: its mask is the other pixels
    return x.to(device), w.to(device), torch.zeros(2, device=device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("pool", [False, True], ids=["relu", "relu_pool"])
@pytest.mark.parametrize("path", ["autograd", "torch.func.vjp", "forward_ad", "torch.func.jvp"])
def test_relu_mask_is_the_forwards_own(path, pool, device):
    """The derivatives pass through ReLU where the forward's y > 0, as torch's relu takes
    its mask from its result, not where a recomputed pre-activation is > 0 (with the pool,
    to the window's maximum, where its pooled y > 0). Here the forward runs TF32
    (allow_tf32=True; the emulator on the CPU) and torch's conv IEEE fp32 (TF32 off), and
    their signs differ at the TF32 result's zeros."""
    x, w, b = _pre_activation_zero_in_tf32_only(device)
    kw = dict(relu=True, pool=pool, algo="implicit_gemm", allow_tf32=True)
    with vggkern.set_cpu_backend("emulator"), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        y = vggkern.conv3x3(x, w, b, **kw)
        pre = F.conv2d(x[:, 2:].double(), w[:, 2:].double(), padding=1)  # the TF32 kernels' value, exactly
        pooled, indices = F.max_pool2d_with_indices(pre, 2) if pool else (pre, None)
        assert torch.equal(y.double(), F.relu(pooled))
        recomputed = F.conv2d(x, w, b, padding=1)
        recomputed = F.max_pool2d(recomputed, 2) if pool else recomputed
        mask = (y > 0).double()
        assert ((recomputed > 0).double() != mask).sum() >= 3  # the case is there: a recomputed mask differs

        def unpool(t):  # pooled values back to their windows' maxima (zeros elsewhere)
            return F.max_unpool2d(t, indices, 2, output_size=pre.shape[2:]) if pool else t

        def gather(t):  # each window's value at its maximum
            return t.flatten(2).gather(2, indices.flatten(2)).view_as(indices) if pool else t

        g = torch.randn(y.shape, generator=_gen(47)).to(device)
        dx, dw, db = (torch.randn(t.shape, generator=_gen(53 + i)).to(device) for i, t in enumerate((x, w, b)))
        x64, w64, gm = x.double(), w.double(), unpool(g.double() * mask)
        if path in ("autograd", "torch.func.vjp"):
            if path == "autograd":
                leaves = [t.clone().requires_grad_() for t in (x, w, b)]
                vggkern.conv3x3(*leaves, **kw).backward(g)
                got = [t.grad for t in leaves]
            else:
                got = torch.func.vjp(lambda *a: vggkern.conv3x3(*a, **kw), x, w, b)[1](g)
            expected = [torch.nn.grad.conv2d_input(x.shape, w64, gm, padding=1),
                        torch.nn.grad.conv2d_weight(x64, w.shape, gm, padding=1), gm.sum((0, 2, 3))]
        else:
            if path == "forward_ad":
                with fwAD.dual_level():
                    out = vggkern.conv3x3(*(fwAD.make_dual(t, d) for t, d in zip((x, w, b), (dx, dw, db))), **kw)
                    got = [fwAD.unpack_dual(out).tangent]
            else:
                got = [torch.func.jvp(lambda *a: vggkern.conv3x3(*a, **kw), (x, w, b), (dx, dw, db))[1]]
            tangent = (F.conv2d(dx.double(), w64, padding=1) + F.conv2d(x64, dw.double(), padding=1)
                       + db.double().view(1, -1, 1, 1))
            expected = [mask * gather(tangent)]
    for a, e in zip(got, expected):
        torch.testing.assert_close(a.double(), e, rtol=1e-5, atol=1e-5)


def test_compiled_autograd_traces_the_backward():
    """The C++ backward is traceable (is_traceable): torch.compile's compiled autograd
    captures it, and its gradients are torch's."""
    torch._dynamo.reset()
    x, w, b = _inputs(2, 3, 4, 6, 6, torch.float32, "cpu", seed=41)
    ours = [t.detach().clone().requires_grad_() for t in (x, w, b)]
    ref = [t.detach().clone().requires_grad_() for t in (x, w, b)]
    _torch_forward(*ref, True, True, torch.float32).square().sum().backward()
    f = torch.compile(lambda *a: torch.ops.vggkern.conv3x3(*a, True, True, "direct", None).square().sum(),
                      backend="aot_eager")
    counters = torch._dynamo.utils.counters
    counters.clear()
    try:
        with torch._dynamo.compiled_autograd._enable(torch.compile(backend="aot_eager")):
            f(*ours).backward()
    finally:
        torch._dynamo.reset()
    assert counters["compiled_autograd"]["captures"] == 1
    for a, r in zip(ours, ref):
        torch.testing.assert_close(a.grad, r.grad, rtol=1e-5, atol=1e-5)


def _bad(**over):
    x = torch.randn(1, 4, 5, 5)
    args = {"x": x, "weight": torch.randn(3, 4, 3, 3), "bias": torch.randn(3), "algo": "auto"}
    args.update(over)
    return args


BAD_INPUTS = [
    (_bad(weight=torch.randn(3, 5, 3, 3)), r"expected weight of shape \[K, C, 3, 3\] with C=4 matching x, got \[3, 5, 3, 3\]"),
    (_bad(weight=torch.randn(3, 4, 5, 5)), r"expected weight of shape \[K, C, 3, 3\] with C=4 matching x, got \[3, 4, 5, 5\]"),
    (_bad(weight=torch.randn(3, 4, 9)), r"expected weight of shape \[K, C, 3, 3\]"),
    (_bad(weight=torch.randn(0, 4, 3, 3), bias=None), r"expected weight with at least one output channel"),
    (_bad(x=torch.randn(4, 5, 5)), r"expected x to be a 4-D tensor"),
    (_bad(x=torch.randint(0, 9, (1, 4, 5, 5))), r"expected x of dtype float32, float16 or bfloat16"),
    (_bad(x=torch.randn(1, 4, 5, 5, dtype=torch.float64)), r"expected x of dtype float32, float16 or bfloat16"),
    (_bad(x=torch.randn(1, 4, 0, 5)), r"expected x with H >= 1 and W >= 1"),
    (_bad(weight=torch.randn(3, 4, 3, 3, dtype=torch.float16)), r"expected weight of the same dtype as x"),
    (_bad(weight=torch.randint(0, 9, (3, 4, 3, 3))), r"expected weight of the same dtype as x"),
    (_bad(bias=torch.randn(3, dtype=torch.bfloat16)), r"expected bias of the same dtype as x"),
    (_bad(bias=torch.randn(4)), r"expected bias of shape \[K\] with K=3 matching weight, got \[4\]"),
    (_bad(algo="winograd"), r'unknown algo "winograd"; expected one of "auto", "direct"'),
    # The pool's window must fit (as F.max_pool2d: an empty result is refused, not returned).
    (_bad(x=torch.randn(1, 4, 1, 8), pool=True), r"pool=True: expected x with H >= 2 and W >= 2 .* got H=1, W=8"),
    (_bad(x=torch.randn(2, 4, 9, 1), pool=True, algo="implicit_gemm"), r"pool=True: .* got H=9, W=1"),
]


@pytest.mark.parametrize("entry", ["wrapper", "op"])
@pytest.mark.parametrize("args,match", BAD_INPUTS, ids=range(len(BAD_INPUTS)))
def test_bad_inputs(args, match, entry):
    assert_refused(args, match, entry)


def assert_refused(args, match, entry):
    """The wrapper (entry "wrapper") or the registered op refuses args with ValueError(match)."""
    with pytest.raises(ValueError, match="vggkern.conv3x3: " + match):
        if entry == "wrapper":
            vggkern.conv3x3(args["x"], args["weight"], args["bias"], pool=args.get("pool", False), algo=args["algo"])
        else:
            torch.ops.vggkern.conv3x3(args["x"], args["weight"], args["bias"], False, args.get("pool", False),
                                      args["algo"])


@pytest.mark.parametrize("args", [a for a, _ in BAD_INPUTS], ids=range(len(BAD_INPUTS)))
def test_bad_inputs_are_refused_in_the_same_words_everywhere(args):
    # The wrapper leaves the checks to the op; traced calls get the fake kernel's
    # (_check_conv3x3_inputs): all three say the same, dtypes as Python prints them.
    def message(call):
        with pytest.raises(ValueError) as e:
            call()
        return str(e.value).splitlines()[0]

    x, w, b, pool, algo = args["x"], args["weight"], args["bias"], args.get("pool", False), args["algo"]
    wrapper = message(lambda: vggkern.conv3x3(x, w, b, pool=pool, algo=algo))
    assert wrapper == message(lambda: torch.ops.vggkern.conv3x3(x, w, b, False, pool, algo))
    assert wrapper == message(lambda: vggkern.ops._check_conv3x3_inputs(x, w, b, algo, None, pool))
    assert "Float" not in wrapper and "Half" not in wrapper and "Double" not in wrapper


# What is not a tensor (or a flag not a bool) is named: a TypeError from the wrappers, a
# ValueError from the op (whose schema turns None into an undefined tensor).
def test_arguments_that_are_not_tensors():
    x, w, b = torch.randn(1, 4, 5, 5), torch.randn(3, 4, 3, 3), torch.randn(3)
    for call, match in [(lambda: vggkern.conv3x3([[1.0]], w, b), "expected x to be a torch.Tensor, got list"),
                        (lambda: vggkern.conv3x3(x, None, b), "expected weight to be a torch.Tensor, got NoneType"),
                        (lambda: vggkern.conv3x3(x, w, 3.0), "expected bias to be a torch.Tensor, got float"),
                        (lambda: vggkern.maxpool2x2(x.numpy()), "maxpool2x2: expected x to be a torch.Tensor"),
                        (lambda: vggkern.winograd_weight("w", 2), "winograd_weight: expected weight to be a torch")]:
        with pytest.raises(TypeError, match=match):
            call()
    for flags, match in [({"pool": None}, "pool to be a bool, got None"), ({"relu": 1}, "relu to be a bool, got 1"),
                         ({"allow_tf32": "yes"}, "allow_tf32 to be a bool, got 'yes'")]:
        with pytest.raises(TypeError, match="vggkern.conv3x3: expected " + match):
            vggkern.conv3x3(x, w, b, **flags)
    with pytest.raises(ValueError, match="vggkern.conv3x3: expected weight to be a tensor, got None"):
        torch.ops.vggkern.conv3x3(x, None, b, False, False, "auto")
    with pytest.raises(ValueError, match="vggkern.conv3x3: expected x to be a tensor, got None"):
        torch.ops.vggkern.conv3x3(None, w, b, False, False, "auto")  # dispatched on the weight's device
    with torch.autocast("cpu", dtype=torch.bfloat16):  # through the op's autocast kernel first
        with pytest.raises(ValueError, match="vggkern.conv3x3: expected x to be a tensor, got None"):
            torch.ops.vggkern.conv3x3(None, w, b, False, False, "auto")
    with pytest.raises(ValueError, match=r"expected tile 2 \(F\(2x2,3x3\)\) or 4 \(F\(4x4,3x3\)\), got '2'"):
        vggkern.winograd_weight(w, "2")


# A tensor that is not dense (sparse, mkldnn, quantized, nested) has no kernel of ours: the
# functions, and the ops called directly, name the argument (the dispatcher's
# NotImplementedError would name only the backend); the modules hand it to torch's ops,
# as nn.Conv2d and nn.MaxPool2d would.
def test_tensors_that_are_not_dense():
    x, w, b = torch.randn(1, 4, 6, 6), torch.randn(3, 4, 3, 3), torch.randn(3)
    g = torch.randn(1, 3, 6, 6)  # y's gradient, for the derivative ops
    not_dense = {"sparse_coo": lambda t: t.to_sparse(),
                 "sparse_csr": lambda t: t.reshape(-1, t.shape[-1]).to_sparse_csr(),
                 "mkldnn": lambda t: t.to_mkldnn(),
                 "nested": lambda t: torch.nested.nested_tensor([t, t]),
                 "quantized": lambda t: torch.quantize_per_tensor(t, 0.1, 0, torch.quint8)}
    for kind, make in not_dense.items():
        for call, name in [(lambda: vggkern.conv3x3(make(x), w, b), "conv3x3: expected x"),
                           (lambda: vggkern.conv3x3(x, make(w), b), "conv3x3: expected weight"),
                           (lambda: vggkern.conv3x3(x, w, make(b)), "conv3x3: expected bias"),
                           (lambda: vggkern.maxpool2x2(make(x)), "maxpool2x2: expected x"),
                           (lambda: vggkern.winograd_weight(make(w), 2), "winograd_weight: expected weight"),
                           (lambda: vggkern.tensor_core_weight(make(w)), "tensor_core_weight: expected weight"),
                           (lambda: torch.ops.vggkern.conv3x3(make(x), w, b), "conv3x3: expected x"),
                           (lambda: torch.ops.vggkern.conv3x3(x, make(w), b), "conv3x3: expected weight"),
                           (lambda: torch.ops.vggkern.conv3x3(x, w, make(b), True), "conv3x3: expected bias"),
                           (lambda: torch.ops.vggkern.maxpool2x2(make(x)), "maxpool2x2: expected x"),
                           (lambda: torch.ops.vggkern.winograd_weight(make(w), 4), "winograd_weight: expected weight"),
                           (lambda: torch.ops.vggkern.tensor_core_weight(make(w)),
                            "tensor_core_weight: expected weight"),
                           (lambda: torch.ops.vggkern._conv3x3_backward(make(g), x, w, b, False, False, [True] * 3),
                            "_conv3x3_backward: expected grad"),
                           (lambda: torch.ops.vggkern._conv3x3_backward(g, x, w, make(b), False, False, [True] * 3),
                            "_conv3x3_backward: expected bias"),
                           (lambda: torch.ops.vggkern._conv3x3_jvp(x, w, b, None, make(w), None, False, False),
                            "_conv3x3_jvp: expected weight_tangent")]:
            with pytest.raises(ValueError, match=f"vggkern.{name} to be a dense \\(strided\\) tensor, got a {kind} "):
                call()
    conv, pool = vggkern.Conv3x3(4, 3, relu=True), vggkern.MaxPool2x2()
    reference = torch.nn.Sequential(torch.nn.Conv2d(4, 3, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2, 2))
    reference[0].load_state_dict(conv.state_dict())
    with vggkern.cpu_backend("emulator"), torch.no_grad():
        y = pool(conv(x.to_mkldnn()))  # torch's ops take mkldnn tensors
        assert y.layout == torch._mkldnn and torch.equal(y.to_dense(), reference(x.to_mkldnn()).to_dense())
        with pytest.raises(Exception) as ours:
            conv(x.to_sparse())
        with pytest.raises(Exception) as theirs:
            reference[0](x.to_sparse())
        assert str(ours.value) == str(theirs.value)  # refused in torch's words


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_device_mismatch():
    x, w, b = _inputs(1, 4, 3, 5, 5, torch.float32, "cuda")
    with pytest.raises(ValueError, match=r"expected weight on the same device as x"):
        vggkern.conv3x3(x, w.cpu(), b)
    with pytest.raises(ValueError, match=r"expected bias on the same device as x"):
        torch.ops.vggkern.conv3x3(x, w, b.cpu(), False, False, "auto")


def _phase_wavefronts(words):
    """Wavefronts of one shared-memory phase: the most distinct 4-byte words one of the 32
    banks holds among its addresses (an independent count of what the emulator counts)."""
    banks = {}
    for word in words:
        banks.setdefault(word % 32, set()).add(word)
    return max(len(v) for v in banks.values())


def _direct_staging_store_wavefronts(channels_inner):
    """conv3x3_direct's staging stores per block and chunk of 8 channels, from its
    documented layout: s_in [8][18][24], planes 436 floats apart (items in x's order: W
    fastest for NCHW, C for NHWC), and s_w [8][9][36] (a warp: 8 (c, tap) rows x 4 k),
    4-byte stores, one phase of 32 lanes per warp instruction. Returns (instructions,
    wavefronts)."""
    def sites():
        for i0 in range(0, 8 * 18 * 18, 32):  # s_in: item i = warp's first + lane
            words = []
            for i in range(i0, min(i0 + 32, 8 * 18 * 18)):
                if channels_inner:
                    cc, s, r = i % 8, (i // 8) % 18, i // 8 // 18
                else:
                    s, r, cc = i % 18, (i // 18) % 18, i // 18 // 18
                words.append(cc * 436 + r * 24 + s)
            yield words
        for group in range(32 * 72 // 32):  # s_w: a warp's 8 (c, tap) rows x 4 k
            yield [8 * 436 + (group % 9 * 8 + lane // 4) * 36 + group // 9 * 4 + lane % 4 for lane in range(32)]
    counts = [_phase_wavefronts(w) for w in sites()]
    return len(counts), sum(counts)


# The direct kernel's shared memory (its header): the hot loop's reads (per channel, 4
# rows x 2 float2 of the input patch and 9 taps x 2 float4 of weights, broadcast to the
# warp) are free of bank conflicts, and the staging stores cost what the layout says they
# cost (the emulator counts every ld_shared / st_shared; the model above counts the same
# addresses independently). 2592 staging items over 256 threads: warp 0 makes one more
# pass, each warp's lanes the same number.
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("n,c,k,h,w", [(1, 8, 32, 16, 16), (2, 11, 40, 17, 9)])
def test_direct_shared_memory_banks(n, c, k, h, w, channels_last):
    from vggkern import _C

    x, wt, b = _inputs(n, c, k, h, w, torch.float32, "cpu", channels_last=channels_last, seed=c + k)
    _C.emu_reset_bank_stats()
    y = vggkern.conv3x3(x, wt, b, relu=True, algo="direct")
    stats = _C.emu_bank_stats()
    _check(y, x, wt, b, True, False, algo="direct")
    blocks = n * -(-h // 16) * -(-w // 16) * -(-k // 32)
    chunks = -(-c // 8)
    loads = stats["load"]
    assert loads["instructions"] == blocks * 8 * c * (8 + 18)  # per warp and channel
    assert loads["ideal"] == blocks * 8 * c * (8 * 2 + 18 * 4)  # float2: 2 phases, float4: 4
    assert loads["wavefronts"] == loads["ideal"], stats
    per_chunk, wavefronts = _direct_staging_store_wavefronts(channels_last)
    stores = stats["store"]
    assert stores["instructions"] == blocks * chunks * per_chunk
    assert stores["wavefronts"] == blocks * chunks * wavefronts, stats
