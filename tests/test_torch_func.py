"""conv3x3 and maxpool2x2 under torch.func (grad, vjp, jvp, jacrev, hessian, vmap) and
forward-mode AD, against torch's own ops under the same transforms.

The op's autograd is a C++ autograd::Function, which torch.func refuses; vggkern.conv3x3
and the modules apply a Python autograd.Function there instead (vggkern/ops.py,
_Conv3x3Function), whose forward is the op's and whose derivatives are torch's. So:
values are the op's own, bit for bit; derivatives are torch's, with ReLU's mask read from
the op's output and, with the pool, each window's maximum from the pre-activation torch
recomputes; vmap folds the batch into the op's N (or, for a batch
of filters over one input, K), loops over the elements only where both are batched, and
never falls back to torch's own per-element loop.
"""
import copy

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch.func import functional_call, grad, grad_and_value, hessian, jacrev, jvp, stack_module_state, vjp, vmap

import vggkern

RELU_POOL = [(False, False), (True, False), (False, True), (True, True)]


def _inputs(n=2, c=3, h=6, w=6, k=4, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g)
    weight = torch.randn(k, c, 3, 3, generator=g) / 3
    bias = torch.randn(k, generator=g)
    return x.to(device), weight.to(device), bias.to(device)


def _torch(x, weight, bias, relu, pool):
    y = F.conv2d(x, weight, bias, padding=1)
    if relu:
        y = F.relu(y)
    return F.max_pool2d(y, 2, 2) if pool else y


def _ours(x, weight, bias, relu, pool):
    return vggkern.conv3x3(x, weight, bias, relu=relu, pool=pool, algo="direct")


def _spy_on_plain_calls(monkeypatch, record):
    # record(args) for each call of the op on plain tensors: what the vmap rule runs.
    op, batched = torch.ops.vggkern.conv3x3, torch._C._functorch.is_batchedtensor

    def spy(*a):
        if not (batched(a[0]) or batched(a[1])):
            record(a)
        return op(*a)

    monkeypatch.setattr(torch.ops.vggkern, "conv3x3", spy)


@pytest.fixture(autouse=True)
def _no_vmap_fallback():
    # torch's per-element fallback (a loop, "There is a performance drop...") must never run.
    # Its warning is a C++ TORCH_WARN that does not reach Python's warnings here, so the
    # fallback is disabled instead: reaching it raises.
    functorch = torch._C._functorch
    enabled = functorch._is_vmap_fallback_enabled()
    functorch._set_vmap_fallback_enabled(False)
    try:
        yield
    finally:
        functorch._set_vmap_fallback_enabled(enabled)


def test_the_vmap_fallback_is_refused():
    # The fixture's premise: an op without a batching rule raises instead of looping.
    with pytest.raises(RuntimeError, match="fallback"):
        torch.vmap(lambda t: torch.histc(t, bins=4))(torch.randn(2, 3, 4))  # histc: no batching rule


@pytest.mark.parametrize("relu,pool", RELU_POOL)
def test_grad_and_vjp_match_torch(relu, pool, device):
    x, w, b = _inputs(seed=1, device=device)
    loss = lambda f: lambda x, w, b: f(x, w, b, relu, pool).square().sum()  # noqa: E731
    (gx, gw, gb), value = grad_and_value(loss(_ours), argnums=(0, 1, 2))(x, w, b)
    expected = grad(loss(_torch), argnums=(0, 1, 2))(x, w, b)
    assert torch.equal(value, _ours(x, w, b, relu, pool).square().sum())  # the op's own forward
    for got, want in zip((gx, gw, gb), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    no_bias = grad(loss(_ours), argnums=(0, 1))(x, w, None)  # without bias (two tensor inputs)
    for got, want in zip(no_bias, grad(loss(_torch), argnums=(0, 1))(x, w, None)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    y, pullback = vjp(lambda w: _ours(x, w, b, relu, pool), w)
    v = torch.randn(y.shape, generator=torch.Generator().manual_seed(2)).to(device)
    torch.testing.assert_close(pullback(v)[0], vjp(lambda w: _torch(x, w, b, relu, pool), w)[1](v)[0],
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("relu,pool", RELU_POOL)
def test_forward_mode_matches_torch(relu, pool, device):
    # jvp (torch.func) and torch.autograd.forward_ad with the op itself: torch's tangent.
    x, w, b = _inputs(seed=3, device=device)
    g = torch.Generator().manual_seed(4)
    tx, tw, tb = (torch.randn(t.shape, generator=g).to(device) for t in (x, w, b))
    y, t = jvp(lambda *a: _ours(*a, relu, pool), (x, w, b), (tx, tw, tb))
    y_ref, t_ref = jvp(lambda *a: _torch(*a, relu, pool), (x, w, b), (tx, tw, tb))
    assert torch.equal(y, _ours(x, w, b, relu, pool))
    torch.testing.assert_close(t, t_ref, rtol=1e-5, atol=1e-5)
    with fwAD.dual_level():  # a tangent for weight only
        out = torch.ops.vggkern.conv3x3(x, fwAD.make_dual(w, tw), b, relu, pool, "direct")
        t = fwAD.unpack_dual(out).tangent
    t_ref = jvp(lambda w: _torch(x, w, b, relu, pool), (w,), (tw,))[1]
    torch.testing.assert_close(t, t_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_16_bit_tangent_has_torchs_error(dtype, device):
    """x's, the weight's and the bias's tangents together, in a 16-bit dtype: the tangent is
    conv(dx, w) + conv(x, dw) + db with db added inside a conv, as torch's own convolution
    derivative adds it, so it is rounded as often as torch's and errs as much against
    float64. (With db summed apart, one rounding more, it erred up to 2.3x torch's in
    bf16 and 1.3x at the median over 60 such cases; tests/fuzz.py --derivatives found it.)"""
    g = torch.Generator().manual_seed(7)
    ratios = []
    for _ in range(8):  # magnitudes where a rounding of the sum shows: |y| ~ 1e3
        prim = [(torch.randn(s, generator=g) * m).to(dtype).to(device) for s, m in
                (((2, 9, 12, 10), 30), ((9, 9, 3, 3), 1 / 3), ((9,), 30))]
        tang = [(torch.randn(p.shape, generator=g) * m).to(dtype).to(device) for p, m in zip(prim, (30, 1, 30))]
        ours = jvp(lambda *a: _ours(*a, False, False), tuple(prim), tuple(tang))[1]
        torchs = jvp(lambda *a: _torch(*a, False, False), tuple(prim), tuple(tang))[1]
        exact = jvp(lambda *a: _torch(*a, False, False), tuple(p.double() for p in prim),
                    tuple(t.double() for t in tang))[1]
        assert ours.dtype == dtype
        ratios.append(((ours.double() - exact).abs().max() / (torchs.double() - exact).abs().max()).item())
    assert max(ratios) <= 1.1, ratios


def test_second_derivatives_match_torch(device):
    # hessian is jacfwd(jacrev): forward mode over reverse mode, through the composite backward.
    x, w, b = _inputs(1, 2, 4, 4, 3, seed=5, device=device)
    h = hessian(lambda x: _ours(x, w, b, True, True).square().sum())(x)
    h_ref = hessian(lambda x: _torch(x, w, b, True, True).square().sum())(x)
    torch.testing.assert_close(h, h_ref, rtol=1e-5, atol=1e-5)
    j = jacrev(lambda w: vggkern.maxpool2x2(_ours(x, w, b, True, False)))(w)
    j_ref = jacrev(lambda w: F.max_pool2d(_torch(x, w, b, True, False), 2, 2))(w)
    torch.testing.assert_close(j, j_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_vmap_folds_the_batch_into_one_call(channels_last, device, monkeypatch):
    x, w, b = _inputs(6, 3, 6, 6, 4, seed=6, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(7)
    ws, bs = (torch.randn(3, *t.shape, generator=g).to(device) for t in (w, b))
    calls = []
    _spy_on_plain_calls(monkeypatch, lambda a: calls.append((tuple(a[0].shape), tuple(a[1].shape))))
    # A batch of inputs through one conv: one call, the batch joined to N; exact.
    y = vmap(lambda x: _ours(x, w, b, True, True))(x.view(2, 3, 3, 6, 6))
    assert torch.equal(y, _ours(x, w, b, True, True).view(2, 3, 4, 3, 3))
    # One input through a batch of convs (an ensemble): one call, the filters side by side.
    y = vmap(lambda w, b: _ours(x, w, b, True, False))(ws, bs)
    assert torch.equal(y, torch.stack([_ours(x, ws[i], bs[i], True, False) for i in range(3)]))
    assert calls == [((6, 3, 6, 6), (4, 3, 3, 3)), ((6, 3, 6, 6), (12, 3, 3, 3))]
    # Both batched: one call per element.
    y = vmap(lambda x, w: _ours(x, w, b, False, False))(x.view(3, 2, 3, 6, 6), ws)
    assert torch.equal(y, torch.stack([_ours(x[2 * i:2 * i + 2], ws[i], b, False, False) for i in range(3)]))
    y = vmap(vggkern.maxpool2x2, in_dims=1)(x.view(2, 3, 3, 6, 6))
    assert torch.equal(y, F.max_pool2d(x, 2, 2).view(2, 3, 3, 3, 3).transpose(0, 1))


def test_vmap_with_every_default_argument(device):
    # conv3x3(x, w) with no bias and every flag at its default: torch.library's vmap
    # helper then passes the rule in_dims for x and the weight alone (the trailing
    # arguments at their defaults are left out), which the rule unpacked as three.
    x, w, _ = _inputs(4, 3, 6, 6, 4, seed=16, device=device)
    ws = torch.randn(3, *w.shape, generator=torch.Generator().manual_seed(17)).to(device)
    y = vmap(lambda x: vggkern.conv3x3(x, w))(x.view(2, 2, 3, 6, 6))
    assert torch.equal(y, torch.stack([vggkern.conv3x3(x[:2], w), vggkern.conv3x3(x[2:], w)]))
    y = vmap(lambda w: vggkern.conv3x3(x, w))(ws)
    assert torch.equal(y, torch.stack([vggkern.conv3x3(x, wi) for wi in ws]))
    y = vmap(lambda x, w: vggkern.conv3x3(x, w))(x.view(2, 2, 3, 6, 6), ws[:2])
    assert torch.equal(y, torch.stack([vggkern.conv3x3(x[2 * i:2 * i + 2], ws[i]) for i in range(2)]))


def test_vmap_resolves_auto_for_an_element(device, monkeypatch):
    # A folded call runs the algorithm "auto" picks for one element (its N, its K), as a
    # loop of unbatched calls would, not for the folded batch: the tuned table's pick
    # depends on N, and another algorithm would round differently.
    x, w, b = _inputs(6, 3, 6, 6, 4, seed=14, device=device)
    ws = torch.randn(3, *w.shape, generator=torch.Generator().manual_seed(15)).to(device)
    asked, algos = [], []
    resolve = vggkern.ops.resolve_algo

    def spy_resolve(x, k, **kw):
        asked.append((tuple(x.shape), k, x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()))
        return resolve(x, k, **kw)

    monkeypatch.setattr(vggkern.ops, "resolve_algo", spy_resolve)
    _spy_on_plain_calls(monkeypatch, lambda a: algos.append(a[5]))
    auto = lambda x, w: vggkern.conv3x3(x, w, b, relu=True, pool=True)  # noqa: E731
    y = vmap(lambda x: auto(x, w))(x.view(2, 3, 3, 6, 6))
    y_ens = vmap(lambda w: auto(x, w))(ws)
    assert asked == [((3, 3, 6, 6), 4, False), ((6, 3, 6, 6), 4, False)]
    assert algos == [resolve(x[:3], 4, pool=True), resolve(x, 4, pool=True)]
    monkeypatch.undo()
    assert torch.equal(y, torch.stack([auto(x[:3], w), auto(x[3:], w)]))
    assert torch.equal(y_ens, torch.stack([auto(x, wi) for wi in ws]))
    # Nested vmap: an element of the innermost level, whose layout the outer level's
    # BatchedTensor cannot tell (here channels_last); and an empty batch.
    xs = x.contiguous(memory_format=torch.channels_last).view(2, 3, 1, 3, 6, 6)
    monkeypatch.setattr(vggkern.ops, "resolve_algo", spy_resolve)
    asked.clear()
    y = vmap(vmap(lambda x: auto(x, w)))(xs)
    assert asked == [((1, 3, 6, 6), 4, True)]
    assert vmap(lambda x: auto(x, w))(x[:0].view(0, 1, 3, 6, 6)).shape == (0, 1, 4, 3, 3)
    monkeypatch.undo()
    assert torch.equal(y, torch.stack([torch.stack([auto(xs[i, j], w) for j in range(3)]) for i in range(2)]))


def test_per_sample_gradients(device):
    # vmap over grad: each input's own gradient, as a loop of torch autograd computes it.
    x, w, b = _inputs(3, 3, 6, 6, 4, seed=8, device=device)

    def loss(w, b, x):
        return vggkern.maxpool2x2(_ours(x[None], w, b, True, False)).square().sum()

    gw, gb = vmap(grad(loss, argnums=(0, 1)), in_dims=(None, None, 0))(w, b, x)
    for i in range(3):
        wi, bi = w.clone().requires_grad_(), b.clone().requires_grad_()
        F.max_pool2d(_torch(x[i:i + 1], wi, bi, True, False), 2, 2).square().sum().backward()
        torch.testing.assert_close(gw[i], wi.grad, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(gb[i], bi.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("algo", ["auto", "direct", "winograd_f2x2"])
def test_modules_under_functional_call_vmap_and_grad(algo, device):
    # A model ensemble (stack_module_state + vmap) and per-sample gradients through the
    # modules, on our kernels (the emulator on CPU); with Winograd, whose prepared
    # weight is cached outside transforms.
    torch.manual_seed(9)

    def model():
        return torch.nn.Sequential(vggkern.Conv3x3(3, 4, relu=True, pool=True, algo=algo),
                                   vggkern.Conv3x3(4, 5, relu=True, algo=algo), vggkern.MaxPool2x2()).to(device)

    models = [model() for _ in range(3)]
    x = torch.randn(2, 3, 8, 8).to(device)
    with vggkern.cpu_backend("emulator"):
        params, buffers = stack_module_state(models)
        skeleton = copy.deepcopy(models[0]).to("meta")
        ensemble = vmap(lambda p, x: functional_call(skeleton, (p, buffers), (x,)), in_dims=(0, None))
        expected = torch.stack([m(x) for m in models])
        assert torch.equal(ensemble(params, x), expected)
        with torch.no_grad():
            assert torch.equal(ensemble(params, x), expected)
        m = models[0]
        p = {k: v.detach() for k, v in m.named_parameters()}
        per_sample = vmap(grad(lambda p, x: functional_call(m, p, (x[None],)).square().sum()), in_dims=(None, 0))(p, x)
    for i in range(2):
        ref = {k: v.detach().clone().requires_grad_() for k, v in m.named_parameters()}
        functional_call(m, ref, (x[i:i + 1],)).square().sum().backward()  # torch's layers (CPU backend "torch")
        for k in ref:
            torch.testing.assert_close(per_sample[k][i], ref[k].grad, rtol=1e-4, atol=1e-5)


def test_refusals_under_transforms():
    x, w, b = _inputs(seed=10)
    # The registered op itself under a transform that differentiates it: refused by name
    # (the transform's dispatch has already reached the op's C++ autograd).
    with pytest.raises(NotImplementedError, match=r"vggkern.conv3x3: under torch.func transforms .* call "
                                                  r"vggkern.conv3x3 or the vggkern modules"):
        grad(lambda w: torch.ops.vggkern.conv3x3(x, w, b, False, False, "direct").sum())(w)
    with pytest.raises(NotImplementedError, match="vggkern.conv3x3: under torch.func transforms"):
        jvp(lambda x: torch.ops.vggkern.conv3x3(x, w, b, False, False, "direct"), (x,), (x,))
    # ... and the weight transforms' ops, which the Python functions run as Functions there
    for name, args in (("winograd_weight", (2,)), ("tensor_core_weight", ())):
        op = getattr(torch.ops.vggkern, name)
        with pytest.raises(NotImplementedError, match=rf"vggkern.{name}: under torch.func transforms .* call "
                                                      rf"vggkern.{name}, which"):
            grad(lambda w: op(w, *args).sum())(w)
        with pytest.raises(NotImplementedError, match=rf"vggkern.{name}: under torch.func transforms"):
            jvp(lambda w: op(w, *args), (w,), (w,))
        assert vmap(lambda w: op(w, *args))(w[None]).shape == op(w, *args)[None].shape  # nothing to differentiate
    # Under vmap, what an element is, not the folded batch.
    with pytest.raises(ValueError, match=r"conv3x3: expected x to be a 4-D tensor \(N, C, H, W\), got a 3-D tensor "
                                         r"of shape \[3, 6, 6\]"):
        vmap(lambda x: vggkern.conv3x3(x, w, b))(x)
    with pytest.raises(ValueError, match=r"maxpool2x2: expected x to be a 4-D tensor .* shape \[3, 6, 6\]"):
        vmap(vggkern.maxpool2x2)(x)
    # maxpool2x2's checks still name the argument where torch's max_pool2d runs it.
    with pytest.raises(ValueError, match="vggkern.maxpool2x2: expected x with H >= 2 and W >= 2"):
        grad(lambda x: vggkern.maxpool2x2(x).sum())(torch.randn(1, 2, 1, 4))


_B = "vggkern._conv3x3_backward"
_J = "vggkern._conv3x3_jvp"


@pytest.mark.parametrize("call, match", [
    # (grad, x, weight, bias, pool) for the backward; x, weight, bias, tangents for the jvp.
    (lambda x, w, b, g: torch.ops.vggkern._conv3x3_backward(g, x, torch.randn(4, 3, 5, 5), b, False, False,
                                                            [True] * 3),
     _B + r": expected weight of shape \[K, C, 3, 3\] with C=3 matching x.*got \[4, 3, 5, 5\]"),
    (lambda x, w, b, g: torch.ops.vggkern._conv3x3_backward(g, x, w[:, :2], b, False, False, [True] * 3),
     _B + r": expected weight of shape .*got \[4, 2, 3, 3\]"),
    (lambda x, w, b, g: torch.ops.vggkern._conv3x3_backward(g, x, torch.randn(16, 2, 4), b, False, False,
                                                            [True] * 3),
     _B + r": expected weight of shape .*winograd_weight\(weight, m\)'s .*got \[16, 2, 4\]"),
    (lambda x, w, b, g: torch.ops.vggkern._conv3x3_backward(g, x, w.half(), b, False, False, [True] * 3),
     _B + r": expected weight of dtype torch.float32, got torch.float16"),
    (lambda x, w, b, g: torch.ops.vggkern._conv3x3_backward(g, x, w, b[:3], False, False, [True] * 3),
     _B + r": expected bias of shape \[K\] with K=4 matching weight, got \[3\]"),
    (lambda x, w, b, g: torch.ops.vggkern._conv3x3_backward(g, x, w, b, False, True, [True] * 3),
     _B + r": expected grad of shape \[2, 4, 3, 3\], got \[2, 4, 6, 6\]"),
    (lambda x, w, b, g: torch.ops.vggkern._conv3x3_backward(g.double(), x, w, b, False, False, [True] * 3),
     _B + r": expected grad of dtype torch.float32 on cpu, got torch.float64 on cpu"),
    (lambda x, w, b, g: torch.ops.vggkern._conv3x3_backward(g, x.long(), w, b, False, False, [True] * 3),
     _B + r": expected x of dtype float32, float16 or bfloat16, got torch.int64"),
    (lambda x, w, b, g: torch.ops.vggkern._conv3x3_backward(g, x[0], w, b, False, False, [True] * 3),
     _B + r": expected x to be a 4-D tensor \(N, C, H, W\), got shape \[3, 6, 6\]"),
    (lambda x, w, b, g: torch.ops.vggkern._conv3x3_backward(g, x, w, b, True, False, [True] * 3, g[:, :3]),
     _B + r": expected y of shape \[2, 4, 6, 6\], got \[2, 3, 6, 6\]"),
    (lambda x, w, b, g: torch.ops.vggkern._conv3x3_backward(g, x, w, b, True, False, [True] * 3, g.half()),
     _B + r": expected y of dtype torch.float32 on cpu, got torch.float16 on cpu"),
    (lambda x, w, b, g: torch.ops.vggkern._conv3x3_jvp(x, w, b, x, None, None, True, True, g),
     _J + r": expected y of shape \[2, 4, 3, 3\], got \[2, 4, 6, 6\]"),
    (lambda x, w, b, g: torch.ops.vggkern._conv3x3_jvp(x, w, b, x[:, :2], None, None, False, False),
     _J + r": expected x_tangent of shape \[2, 3, 6, 6\], got \[2, 2, 6, 6\]"),
    (lambda x, w, b, g: torch.ops.vggkern._conv3x3_jvp(x, w, b, None, w[..., :2], None, False, False),
     _J + r": expected weight_tangent of shape \[4, 3, 3, 3\], got \[4, 3, 3, 2\]"),
    (lambda x, w, b, g: torch.ops.vggkern._conv3x3_jvp(x, w, None, None, None, b, False, False),
     _J + r": expected no bias_tangent without a bias"),
    (lambda x, w, b, g: torch.ops.vggkern._conv3x3_jvp(x, torch.randn(4, 3, 1, 1), b, x, None, None, False, False),
     _J + r": expected weight of shape .*got \[4, 3, 1, 1\]"),
])
def test_derivative_ops_name_bad_inputs(call, match):
    # The derivative ops (internal: conv3x3's backward and forward derivative) check their
    # inputs as the forward does, so a direct call gets a named error, not aten's from deep
    # inside (or, for a bias of the wrong length, a gradient of the weight's K).
    x, w, b = _inputs(seed=12)
    with pytest.raises(ValueError, match=match):
        call(x, w, b, torch.randn(2, 4, 6, 6))


def test_derivative_ops_take_every_weight_form():
    # The checks let through what the forward takes: a raw weight, a laid-out one, a U. The
    # raw weight's gradients are torch's (float64). The laid-out weight's is the raw one's,
    # laid out, zeros in the padded channels (x's gradient the same conv's, up to the
    # laid-out weight's TF32 rounding). A U's is the forward's adjoint, <gU, D> =
    # <g, conv3x3(x, D)> for every D of U's shape (the conv is linear in its weight): on
    # random D, which reach the directions that w's gradient through U (G^T gU G) does not.
    x, w, b = _inputs(seed=13)
    g = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(14))
    gx, gw, gb = torch.ops.vggkern._conv3x3_backward(g, x, w, b, False, False, [True] * 3)
    x64, w64 = x.double().requires_grad_(), w.double().requires_grad_()
    for got, want in zip((gx, gw, gb), (*torch.autograd.grad(F.conv2d(x64, w64, padding=1), (x64, w64),
                                                               g.double()), g.double().sum((0, 2, 3)))):
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
    laid = vggkern.tensor_core_weight(w)
    gx2, gw2, gb2 = torch.ops.vggkern._conv3x3_backward(g, x, laid, b, False, False, [True] * 3)
    assert gw2.shape == laid.shape
    torch.testing.assert_close(gw2, F.pad(gw.permute(0, 2, 3, 1), (0, laid.shape[3] - w.shape[1])),
                               rtol=0, atol=0)
    torch.testing.assert_close(gb2, gb)
    torch.testing.assert_close(gx2, gx, rtol=2e-3, atol=2e-3)
    for m in (2, 4):
        u = vggkern.winograd_weight(w, m)
        gx2, gu, gb2 = torch.ops.vggkern._conv3x3_backward(g, x, u, b, False, False, [True] * 3)
        assert gu.shape == u.shape
        torch.testing.assert_close(gb2, gb)
        torch.testing.assert_close(gx2, gx, rtol=2e-3, atol=2e-3)
        for seed in range(3):
            d = torch.randn(u.shape, generator=torch.Generator().manual_seed(seed))
            y = torch.ops.vggkern.conv3x3(x, d, None, False, False, f"winograd_f{m}x{m}").double()
            lhs, rhs = (gu.double() * d.double()).sum(), (g.double() * y).sum()
            assert abs(lhs - rhs) <= 1e-5 * (gu.double().norm() * d.double().norm()), (m, seed, lhs, rhs)


def test_frozen_op_under_transforms_runs_the_op():
    # Nothing to differentiate through the op (constant inputs): the op runs as it is.
    x, w, b = _inputs(1, 3, 5, 5, 4, seed=11)
    s = torch.tensor(2.0)
    y = _ours(x, w, b, True, False)
    assert torch.equal(grad(lambda s: torch.ops.vggkern.conv3x3(x, w, b, True, False, "direct").sum() * s)(s),
                       y.sum())
    assert torch.equal(grad(lambda s: vggkern.maxpool2x2(x).sum() * s)(s), F.max_pool2d(x, 2, 2).sum())


def test_torch_compile_over_transforms(device):
    # dynamo (torch 2.14) traces into the Function's forward under a transform. vmap alone:
    # the op's vmap rule runs in the graph, fullgraph, exact. A transform that
    # differentiates: the op is reached and refused by name with fullgraph=True; without
    # it, a graph break there: the transform runs eagerly, torch's derivatives, the code
    # around it compiled. (aot_eager: dynamo's own backend="eager" fails on any graph
    # break inside grad, with torch ops alone too.)
    x, w, b = _inputs(4, 3, 6, 6, 4, seed=12, device=device)
    g = torch.Generator().manual_seed(13)
    ws, bs = (torch.randn(3, *t.shape, generator=g).to(device) for t in (w, b))
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return torch._dynamo.backends.debugging.aot_eager(gm, example_inputs)

    def ensemble(ws, bs):
        return vmap(lambda w, b: vggkern.maxpool2x2(_ours(x, w, b, True, False)))(ws, bs)

    torch._dynamo.reset()
    assert torch.equal(torch.compile(ensemble, fullgraph=True, backend=backend)(ws, bs), ensemble(ws, bs))
    assert len(graphs) == 1
    models = [torch.nn.Sequential(vggkern.Conv3x3(3, 4, relu=True, pool=True, algo="direct")).to(device)
              for _ in range(3)]
    with vggkern.cpu_backend("emulator"), torch.no_grad():  # the modules: a model ensemble
        params, buffers = stack_module_state(models)
        skeleton = copy.deepcopy(models[0]).to("meta")
        modules = vmap(lambda p, x: functional_call(skeleton, (p, buffers), (x,)), in_dims=(0, None))
        assert torch.equal(torch.compile(modules, fullgraph=True, backend="aot_eager")(params, x), modules(params, x))

    def two_convs(f):
        return lambda w: f(f(x, w, b, True, False), w[:, :3].repeat(1, 4, 1, 1)[:, :4], b, True, True).square().sum()

    graphs.clear()
    grads = torch.compile(lambda w: grad(two_convs(_ours))(w.sin()).cos(), backend=backend)(w)
    assert torch.equal(grads, grad(two_convs(_ours))(w.sin()).cos())  # as eager
    torch.testing.assert_close(grads, grad(two_convs(_torch))(w.sin()).cos(), rtol=1e-4, atol=1e-4)
    # Graphs: sin before the transform, cos after it, and the Function's forward (the op
    # alone, on plain tensors) for each conv, called by the eager transform.
    calls = [str(n.target) for gm in graphs for n in gm.graph.nodes if n.op.startswith("call")]
    assert calls == ["sin", "vggkern.conv3x3", "vggkern.conv3x3", "cos"], calls
    torch._dynamo.reset()
    with pytest.raises(Exception, match=r"vggkern.conv3x3: under torch.func transforms .* without fullgraph=True"):
        torch.compile(lambda w: grad(two_convs(_ours))(w), fullgraph=True, backend="aot_eager")(w)


@pytest.mark.parametrize("tile", [2, 4])
def test_derivatives_for_x_through_a_pre_transformed_weight(tile):
    # grad, jvp and per-sample vmap(grad) over x with U = winograd_weight(w, tile) held
    # constant: torch's derivatives through w, in float64.
    x, w, b = _inputs(seed=11)
    u, algo = vggkern.winograd_weight(w, tile), f"winograd_f{tile}x{tile}"

    def ours(x):
        return vggkern.conv3x3(x, u, b, relu=True, algo=algo)

    def theirs(x):
        return F.relu(F.conv2d(x, w.double(), b.double(), padding=1))

    torch.testing.assert_close(grad(lambda x: ours(x).square().sum())(x).double(),
                               grad(lambda x: theirs(x).square().sum())(x.double()), rtol=1e-5, atol=1e-5)
    t = torch.randn(x.shape, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(jvp(ours, (x,), (t,))[1].double(), jvp(theirs, (x.double(),), (t.double(),))[1],
                               rtol=1e-5, atol=1e-5)
    per_sample = vmap(grad(lambda xi: ours(xi.unsqueeze(0)).square().sum()))(x)
    torch.testing.assert_close(per_sample.double(), grad(lambda x: theirs(x).square().sum())(x.double()),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("algo", ["direct", "winograd_f2x2", "implicit_gemm"])
def test_forward_ad_through_a_modules_prepared_weight(algo):
    # A Conv3x3 prepares its weight (Winograd's U, the tensor-core layout, a channels_last
    # weight made contiguous for direct) as a detached copy: a weight carrying a forward-mode
    # tangent (functional_call with a dual tensor) must go to the op raw, or its tangent is
    # lost (it was: the output's tangent came from the bias alone, or was None). fp16 on the
    # emulator; the tangent of a conv is the conv of the tangents (it is bilinear): torch's
    # in float64.
    x, _, _ = _inputs(seed=21)
    tw = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(22))
    tb = torch.randn(4, generator=torch.Generator().manual_seed(23))
    m = vggkern.Conv3x3(3, 4, algo=algo).half()
    w, b = m.weight.detach(), m.bias.detach()
    if algo == "direct":  # not direct's layout: prepared (made contiguous) before the fix
        w = w.contiguous(memory_format=torch.channels_last)
    for bias_tangent in (tb, None):
        want = F.conv2d(x.double(), tw.double(), None if bias_tangent is None else tb.double(), padding=1)
        with vggkern.cpu_backend("emulator"), fwAD.dual_level():
            b_in = b if bias_tangent is None else fwAD.make_dual(b, bias_tangent.half())
            y = torch.func.functional_call(m, {"weight": fwAD.make_dual(w, tw.half()), "bias": b_in}, (x.half(),))
            t = fwAD.unpack_dual(y).tangent
        assert t is not None and t.shape == want.shape
        assert (t.double() - want).abs().max().item() <= 2e-3 * want.abs().max().item()


_TRANSFORMS = {"winograd_f2x2": lambda w: vggkern.winograd_weight(w, 2),
               "winograd_f4x4": lambda w: vggkern.winograd_weight(w, 4),
               "implicit_gemm": vggkern.tensor_core_weight}


@pytest.mark.parametrize("algo", list(_TRANSFORMS))
def test_derivatives_through_a_weight_transform(algo):
    # grad, jvp, forward_ad (through the op itself too), vmap and vmap(grad) through
    # winograd_weight and tensor_core_weight, taken with respect to the raw weight: torch's
    # conv's, in float64. A linear loss (y . v), so that the derivatives do not depend on
    # the forward's rounding (TF32 on implicit_gemm). Before these transforms had Functions
    # of their own, forward mode dropped the tangent (zeros, or None) and grad refused.
    x, w, b = _inputs(seed=13)
    prepare = _TRANSFORMS[algo]
    v = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(14))
    t = torch.randn(w.shape, generator=torch.Generator().manual_seed(15))

    def ours(w):
        return vggkern.conv3x3(x, prepare(w), b, algo=algo, allow_tf32=True)

    def theirs(w):
        return F.conv2d(x.double(), w, b.double(), padding=1)

    def close(got, want):  # float32 sums (F(4x4)'s transforms amplify their rounding): relative to the largest
        assert got.shape == want.shape
        assert (got.double() - want).abs().max().item() <= 1e-5 * want.abs().max().item()

    want_grad = grad(lambda w: (theirs(w) * v.double()).sum())(w.double())
    close(grad(lambda w: (ours(w) * v).sum())(w), want_grad)
    wr = w.clone().requires_grad_()
    (ours(wr) * v).sum().backward()
    close(wr.grad, want_grad)
    want_tangent = jvp(theirs, (w.double(),), (t.double(),))[1]
    close(jvp(ours, (w,), (t,))[1], want_tangent)
    with fwAD.dual_level():
        close(fwAD.unpack_dual(ours(fwAD.make_dual(w, t))).tangent, want_tangent)
        # the op itself: the transform of the tangent (both are linear), bit for bit
        prepared_tangent = fwAD.unpack_dual(prepare(fwAD.make_dual(w, t))).tangent
    if algo == "implicit_gemm":  # laid out as the weight is, not rounded to TF32 (the identity, as backward)
        assert torch.equal(prepared_tangent[..., :3], t.permute(0, 2, 3, 1))
        assert not prepared_tangent[..., 3:].any()
    else:
        assert torch.equal(prepared_tangent, prepare(t))
    # a batch of weights (an ensemble): the transform's and the conv's values bit for bit
    # each weight's own, in one call (the autouse fixture refuses torch's per-element
    # fallback); and per-weight gradients, each of its own loss (a v of its own: a linear
    # loss's gradient does not depend on w, so only distinct v's show a mix-up of weights)
    ws = torch.stack([w, 2 * w, -w])
    assert torch.equal(vmap(prepare)(ws), torch.stack([prepare(e) for e in ws]))
    assert torch.equal(vmap(ours)(ws), torch.stack([ours(e) for e in ws]))
    vs = torch.stack([v, -2 * v, torch.randn(v.shape, generator=torch.Generator().manual_seed(16))])
    per_weight = vmap(grad(lambda w, v: (ours(w) * v).sum()))(ws, vs)
    for i in range(3):
        close(per_weight[i], grad(lambda w: (theirs(w) * vs[i].double()).sum())(ws[i].double()))


@pytest.mark.parametrize("algo", ["winograd_f2x2", "implicit_gemm"])
def test_torch_compile_through_a_weight_transform(algo):
    # As conv3x3's Function (test_torch_compile_over_transforms): the backward through the
    # transform, and vmap over it, compile whole (fullgraph) and equal eager; a transform
    # that differentiates through it runs eagerly at a graph break, as eager.
    x, w, _ = _inputs(seed=16)
    prepare = _TRANSFORMS[algo]

    def loss(w):
        return vggkern.conv3x3(x, prepare(w), algo=algo, allow_tf32=True).square().sum()

    torch._dynamo.reset()
    wc, we = w.clone().requires_grad_(), w.clone().requires_grad_()
    torch.compile(loss, fullgraph=True, backend="aot_eager")(wc).backward()
    loss(we).backward()
    assert torch.equal(wc.grad, we.grad)
    ws = torch.stack([w, -w])
    assert torch.equal(torch.compile(vmap(prepare), fullgraph=True, backend="aot_eager")(ws), vmap(prepare)(ws))
    torch._dynamo.reset()
    assert torch.equal(torch.compile(lambda w: grad(loss)(w.sin()), backend="aot_eager")(w), grad(loss)(w.sin()))


@pytest.mark.parametrize("tile", [2, 4])
def test_derivatives_for_a_pre_transformed_weight_itself(tile):
    # grad, jvp and per-sample vmap(grad) over U (one winograd_weight did not make: trained
    # in the Winograd domain): those of the kernels' computation, the float64 tile-by-tile
    # reference's (tests/test_winograd.py).
    from test_winograd import _winograd_reference

    x, w, b = _inputs(seed=12)
    algo = f"winograd_f{tile}x{tile}"
    u = vggkern.winograd_weight(w, tile) + 0.1 * torch.randn((tile + 2) ** 2, 3, 4,
                                                             generator=torch.Generator().manual_seed(5))

    def ours(u, x=x):
        return vggkern.conv3x3(x, u, b, relu=True, algo=algo)

    def theirs(u, x=x):
        return _winograd_reference(x, u, b, tile, relu=True)

    def close(got, want):  # float32 Winograd rounding (F(4x4)'s transforms amplify it): relative to the largest
        assert (got.double() - want).abs().max().item() <= 1e-5 * want.abs().max().item()

    close(grad(lambda u: ours(u).square().sum())(u), grad(lambda u: theirs(u).square().sum())(u.double()))
    t = torch.randn(u.shape, generator=torch.Generator().manual_seed(6))
    close(jvp(ours, (u,), (t,))[1], jvp(theirs, (u.double(),), (t.double(),))[1])
    per_sample = vmap(grad(lambda u, xi: ours(u, xi.unsqueeze(0)).square().sum()), in_dims=(None, 0))(u, x)
    for i in range(x.shape[0]):
        close(per_sample[i], grad(lambda u: theirs(u, x[i:i + 1]).square().sum())(u.double()))
