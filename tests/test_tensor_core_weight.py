"""vggkern.tensor_core_weight: the weight laid out once as conv3x3's tensor-core algorithm
reads it, (K, 3, 3, Cp), and conv3x3 / nn.Conv3x3 taking it: the same output bit for bit
as from the raw weight, without the per-call layout launch (counted by the emulator), the
same derivatives, and refusals in the op's words. CPU through the emulator, and on the GPU
when there is one."""
import pytest
import torch
import torch.nn.functional as F

import vggkern
from test_conv3x3 import DEVICES, _check, _inputs, _round_tf32
from vggkern import _C

ALGO = "implicit_gemm"
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def _kernels(f):
    """The kernels f launches (CPU: the emulator's per-kernel counts), and f's result."""
    _C.emu_reset_global_stats()
    y = f()
    return set(_C.emu_global_stats()), y


def _padded_channels(c):
    return (c + 7) // 8 * 8


# Every element where the reference puts it: out[k, r, s, c] = weight[k, c, r, s], zeros
# past C (C = 3, VGG's first layer, and 13 padded; 16 not), float32 rounded to TF32 (the
# tests' cvt.rna reference), 16-bit unchanged; any input strides; Inf and NaN kept.
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("c", [3, 13, 16])
def test_layout_and_rounding(c, dtype, device):
    g = torch.Generator().manual_seed(c)
    w = (torch.randn(5, c, 3, 3, generator=g) * 3).to(dtype)
    w[1, 0, 2, 1] = float("inf")
    w[4, c - 1, 0, 0] = float("nan")
    w = w.to(device)
    for name, wl in {"contiguous": w, "channels_last": w.contiguous(memory_format=torch.channels_last),
                     "C outermost": w.transpose(0, 1).contiguous().transpose(0, 1)}.items():
        out = vggkern.tensor_core_weight(wl)
        cp = _padded_channels(c)
        assert out.shape == (5, 3, 3, cp) and out.dtype == dtype and out.device == w.device, name
        assert out.is_contiguous(), name
        want = torch.zeros(5, 3, 3, cp, dtype=torch.float32)
        want[..., :c] = w.cpu().float().permute(0, 2, 3, 1)
        if dtype == torch.float32:
            want = _round_tf32(want)
        assert torch.equal(out.cpu().float().nan_to_num(7.0), want.nan_to_num(7.0)), name
        assert out.cpu().float().isnan().sum() == 1 and out[1, 2, 1, 0].isinf(), name
    if dtype == torch.float32:  # the rounding did something here: not all of w is TF32 already
        assert not torch.equal(vggkern.tensor_core_weight(w)[..., :c].cpu(), w.cpu().permute(0, 2, 3, 1))


# conv3x3 given tensor_core_weight(w) gives what it gives for w, bit for bit, for every
# dtype (float32 as TF32), C padded or not, NCHW and channels_last x, the fused epilogue,
# "auto" (which the laid-out weight makes implicit_gemm), and a laid-out weight that is
# a strided or misaligned view (copied); and on the emulator it launches the conv kernel
# alone, where the raw weight costs a tensor_core_weight_kernel launch per call.
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n,c,k,h,w,relu,pool,channels_last", [
    (2, 3, 24, 7, 9, True, False, False), (1, 16, 40, 8, 6, True, True, True), (2, 13, 8, 5, 11, False, True, True)])
def test_conv3x3_takes_it_bit_for_bit(n, c, k, h, w, relu, pool, channels_last, dtype, device):
    x, wt, b = _inputs(n, c, k, h, w, dtype, device, channels_last=channels_last, seed=c + k)
    want = vggkern.conv3x3(x, wt, b, relu=relu, pool=pool, algo=ALGO, allow_tf32=True)
    _check(want, x, wt, b, relu, pool, algo=ALGO)
    wl = vggkern.tensor_core_weight(wt)
    buffer = torch.empty(wl.numel() + 1, dtype=dtype, device=device)
    views = {"as made": wl, "auto": wl,
             "strided": torch.cat([wl, wl], dim=3)[..., :wl.shape[3]],
             "misaligned": buffer[1:].view(wl.shape).copy_(wl)}
    for name, weight in views.items():
        algo = "auto" if name == "auto" else ALGO
        kernels, y = _kernels(lambda: vggkern.conv3x3(x, weight, b, relu=relu, pool=pool, algo=algo,
                                                      allow_tf32=True))
        assert torch.equal(y, want), name
        if device == "cpu":
            assert "tensor_core_weight_kernel" not in kernels and "conv3x3_implicit_gemm_kernel" in kernels, name
    if device == "cpu":
        kernels, _ = _kernels(lambda: vggkern.conv3x3(x, wt, b, relu=relu, pool=pool, algo=ALGO, allow_tf32=True))
        assert "tensor_core_weight_kernel" in kernels  # what the laid-out weight saves


def test_float32_laid_out_is_not_rounded_again():
    # The op trusts a float32 laid-out weight to be TF32 already (tensor_core_weight's):
    # one that is not reaches mma.sync with its low bits, which the emulator's tensor core
    # truncates; so the result differs from the rounded weight's, which shows that the op
    # skipped the rounding pass rather than redoing it.
    g = torch.Generator().manual_seed(9)
    x = torch.randint(-2, 3, (1, 8, 5, 6), generator=g).float().contiguous(memory_format=torch.channels_last)
    w = 1 + torch.randint(0, 1024, (8, 8, 3, 3), generator=g) / 1024 + 3 / 4096  # 3/4 of a TF32 ulp over
    rounded = vggkern.conv3x3(x, vggkern.tensor_core_weight(w), algo=ALGO, allow_tf32=True)
    assert torch.equal(rounded.double(), F.conv2d(x.double(), _round_tf32(w).double(), padding=1))
    unrounded = vggkern.conv3x3(x, w.permute(0, 2, 3, 1).contiguous(), algo=ALGO, allow_tf32=True)
    assert not torch.equal(unrounded, rounded)


# Refusals, in the same words from the wrapper, torch.ops and the fake kernel (meta).
def test_refusals():
    x = torch.randn(1, 16, 4, 4, dtype=torch.float16)
    w = torch.randn(8, 16, 3, 3, dtype=torch.float16)
    wl = vggkern.tensor_core_weight(w)
    cases = [
        # a laid-out weight whose Cp does not match x's C
        (lambda t: (t(x[:, :8]), wl), {"algo": ALGO}, r"or tensor_core_weight\(weight\) of shape \[K, 3, 3, 8\], "
                                                      r"got \[8, 3, 3, 16\]"),
        # taken by the tensor-core algorithm only
        (lambda t: (t(x), wl), {"algo": "direct"}, r"expected weight of shape \[K, C, 3, 3\] with C=16 matching x, "
                                                   r"got \[8, 3, 3, 16\]"),
        (lambda t: (t(x), wl.float()), {"algo": ALGO}, "expected weight of the same dtype as x"),
        (lambda t: (t(x).float(), wl.float()), {"algo": "auto", "allow_tf32": False}, "needs TF32"),
    ]
    for make, kwargs, match in cases:
        for device in ("cpu", "meta"):
            xx, ww = make(lambda t: t.to(device))
            ww = ww.to(device)
            with pytest.raises(ValueError, match=match):
                vggkern.conv3x3(xx, ww, **kwargs)
            with pytest.raises(ValueError, match=match):
                torch.ops.vggkern.conv3x3(xx, ww, None, False, False, kwargs["algo"], kwargs.get("allow_tf32"))
    for bad, err, match in [(torch.randn(8, 16, 3, 3).int(), ValueError, "dtype float32, float16 or bfloat16"),
                            (torch.randn(8, 16, 3, 2), ValueError, r"shape \[K, C, 3, 3\]"),
                            (torch.randn(16, 3, 3), ValueError, r"shape \[K, C, 3, 3\]"),
                            (None, TypeError, "weight")]:
        # (torch.ops given None has no tensor to dispatch on: the dispatcher's own error.)
        for f in (vggkern.tensor_core_weight,) + ((torch.ops.vggkern.tensor_core_weight,) if bad is not None else ()):
            with pytest.raises(err, match=match):
                f(bad)
        if bad is not None:
            with pytest.raises(err, match=match):
                torch.ops.vggkern.tensor_core_weight(bad.to("meta"))
    assert vggkern.tensor_core_weight(torch.empty(0, 5, 3, 3)).shape == (0, 3, 3, 8)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    x, w, b = _inputs(2, 5, 16, 6, 5, torch.float16, device, channels_last=True, seed=13)
    torch.library.opcheck(torch.ops.vggkern.tensor_core_weight.default, (w,))
    torch.library.opcheck(torch.ops.vggkern.tensor_core_weight.default, (w.float().requires_grad_(),))
    wl = vggkern.tensor_core_weight(w)
    for args in [(x, wl, b, True, True, ALGO), (x.contiguous(), wl, None, False, False, "auto")]:
        torch.library.opcheck(torch.ops.vggkern.conv3x3.default, args)


def _reference_grads(x, w, b, relu, pool, grad):
    # float64 torch of the same values: conv2d -> relu -> max_pool2d.
    xd, wd, bd = (t.detach().double().requires_grad_() for t in (x, w, b))
    y = F.conv2d(xd, wd, bd, padding=1)
    y = F.relu(y) if relu else y
    y = F.max_pool2d(y, 2) if pool else y
    y.backward(grad.double())
    return xd.grad, wd.grad, bd.grad


# Gradients through tensor_core_weight and the conv: x's, the raw weight's (through the
# layout, back to (K, C, 3, 3)) and a laid-out leaf's ((K, 3, 3, Cp), zero past C), against
# float64 torch. Weights and x small integers over 4, so TF32 and the sums are exact.
@pytest.mark.parametrize("relu,pool", [(False, False), (True, True)])
def test_gradients(relu, pool):
    g = torch.Generator().manual_seed(3)
    x = (torch.randint(-4, 5, (2, 3, 6, 8), generator=g) / 4).requires_grad_()
    w = (torch.randint(-4, 5, (8, 3, 3, 3), generator=g) / 4).requires_grad_()
    b = (torch.randint(-4, 5, (8,), generator=g) / 4).requires_grad_()
    y = vggkern.conv3x3(x, vggkern.tensor_core_weight(w), b, relu=relu, pool=pool, allow_tf32=True)
    grad = torch.randint(-3, 4, y.shape, generator=g).float()
    y.backward(grad)
    gx, gw, gb = _reference_grads(x, w, b, relu, pool, grad)
    for ours, ref, name in ((x.grad, gx, "x"), (w.grad, gw, "weight"), (b.grad, gb, "bias")):
        assert ours.shape == ref.shape and torch.allclose(ours.double(), ref, rtol=1e-6, atol=1e-6), name
    leaf = vggkern.tensor_core_weight(w.detach()).requires_grad_()
    vggkern.conv3x3(x.detach(), leaf, b.detach(), relu=relu, pool=pool, allow_tf32=True).backward(grad)
    assert leaf.grad.shape == (8, 3, 3, 8) and torch.equal(leaf.grad[..., 3:], torch.zeros(8, 3, 3, 5))
    assert torch.allclose(leaf.grad[..., :3].permute(0, 3, 1, 2).double(), gw, rtol=1e-6, atol=1e-6)


# torch.func: jvp with a laid-out weight's tangent (forward-mode: conv is bilinear), and
# vmap over inputs (one conv: the batch joins N) and over laid-out weights (they join K).
def test_torch_func():
    g = torch.Generator().manual_seed(4)
    x = torch.randint(-4, 5, (2, 5, 6, 7), generator=g) / 4
    w = torch.randint(-4, 5, (8, 5, 3, 3), generator=g) / 4
    dx, dw = torch.randint(-4, 5, x.shape, generator=g) / 4, torch.randint(-4, 5, w.shape, generator=g) / 4
    wl, dwl = vggkern.tensor_core_weight(w), vggkern.tensor_core_weight(dw)

    def f(x, wl):
        return vggkern.conv3x3(x, wl, relu=True, allow_tf32=True)

    y, t = torch.func.jvp(f, (x, wl), (dx, dwl))
    ref_y, ref_t = torch.func.jvp(lambda x, w: F.relu(F.conv2d(x, w, padding=1)), (x.double(), w.double()),
                                  (dx.double(), dw.double()))
    assert torch.equal(y.double(), ref_y) and torch.allclose(t.double(), ref_t, atol=1e-6)
    xs = torch.stack([x, -x])
    ys = torch.func.vmap(f, in_dims=(0, None))(xs, wl)
    assert torch.equal(ys[1], f(-x, wl))
    wls = torch.stack([wl, vggkern.tensor_core_weight(-w)])
    ys = torch.func.vmap(f, in_dims=(None, 0))(x, wls)
    assert torch.equal(ys[0], y) and torch.equal(ys[1], f(x, wls[1]))


# nn.Conv3x3 keeps tensor_core_weight(weight) for the tensor-core algorithm where the op
# would otherwise lay it out on every call (float32, rounded to TF32; C not a multiple of
# 8; a 16-bit weight not channels_last), and uses a 16-bit channels_last weight with C a
# multiple of 8 as it is (the same bytes): either way, after the first call a forward
# launches no weight layout: the conv kernel alone (with C = 3, x's padding to 8 channels
# too: tests/test_tensor_core_input.py), the output the op's for the raw weight; an
# in-place change of the weight is seen.
@pytest.mark.parametrize("dtype,c", [(torch.float32, 16), (torch.float16, 3), (torch.bfloat16, 8)], ids=str)
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
def test_module_keeps_the_laid_out_weight(dtype, c, layout, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)  # what the module's float32 call follows
    m = vggkern.Conv3x3(c, 24, relu=True, algo=ALGO).to(dtype)
    m.weight.data = m.weight.data.contiguous(memory_format=layout)
    as_is = dtype != torch.float32 and c % 8 == 0 and layout == torch.channels_last
    x, _, _ = _inputs(1, c, 24, 6, 7, dtype, "cpu", channels_last=True, seed=3)
    with vggkern.cpu_backend("emulator"), torch.no_grad():
        m(x)
        kernels, y = _kernels(lambda: m(x))
        assert kernels == {"conv3x3_implicit_gemm_kernel"} | ({"tensor_core_input_kernel"} if c % 8 else set()), kernels
        if as_is:
            assert m._weight_cache is None and m._prepared()[0] is m.weight
        else:
            assert torch.equal(m._weight_cache[2], vggkern.tensor_core_weight(m.weight))
        assert torch.equal(y, vggkern.conv3x3(x, m.weight, m.bias, relu=True, algo=ALGO))
        m.weight.mul_(-1)
        assert torch.equal(m(x), vggkern.conv3x3(x, m.weight, m.bias, relu=True, algo=ALGO))
    _check(y, x, -m.weight, m.bias, True, False, algo=ALGO)


# Under torch.autocast a float32 laid-out weight is cast to the autocast dtype as it is:
# from its TF32 values, not the raw weight's. Cast twice (fp32 -> TF32, ties away; -> bf16,
# ties to even), a value just under a bfloat16 tie rounds up where the raw weight's one cast
# rounds it down: one bf16 ulp on such elements (about 1 in 32 of random weights), so the
# output is then not the raw weight's bit for bit. Laying out the cast weight,
# tensor_core_weight(w.to(dtype)), is; nn.Conv3x3 under autocast does that (cast, then
# laid out, cached).
def test_autocast_casts_a_laid_out_weight_as_it_is(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    g = torch.Generator().manual_seed(21)
    x = torch.randn(1, 16, 6, 7, generator=g).contiguous(memory_format=torch.channels_last)
    w = torch.randn(8, 16, 3, 3, generator=g)
    bits = w.view(torch.int32)
    w[0] = ((bits[0] & ~0xFFFF) | 0x7FFF).view(torch.float32)  # filter 0: every value just under a bf16 tie
    wl = vggkern.tensor_core_weight(w)
    assert not torch.equal(wl.bfloat16().permute(0, 3, 1, 2), w.bfloat16())  # the double rounding
    with torch.autocast("cpu", dtype=torch.bfloat16):
        raw = vggkern.conv3x3(x, w, algo=ALGO)
        laid_out = vggkern.conv3x3(x, wl, algo=ALGO)
        cast_first = vggkern.conv3x3(x, vggkern.tensor_core_weight(w.bfloat16()), algo=ALGO)
    assert raw.dtype == laid_out.dtype == cast_first.dtype == torch.bfloat16
    assert torch.equal(laid_out, vggkern.conv3x3(x.bfloat16(), wl.bfloat16(), algo=ALGO))  # cast as it is
    assert torch.equal(cast_first, raw) and not torch.equal(laid_out[:, 0], raw[:, 0])
    m = vggkern.Conv3x3(16, 8, bias=False, algo=ALGO)
    with torch.no_grad():
        m.weight.copy_(w)
    with vggkern.cpu_backend("emulator"), torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(m(x), raw) and torch.equal(m(x), raw)  # the cached cast weight too
