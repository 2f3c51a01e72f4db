"""Winograd F(2x2,3x3) and F(4x4,3x3): the transforms, the filter-transform op
vggkern.winograd_weight, and what conv3x3's Winograd algorithms add to the common conv
suite (tests/test_conv3x3.py runs its accuracy cases for every algorithm in K_FACTOR):
the pre-transformed weight path, its checks, odd sizes under the pool, the int64-index
variant, and the NaN/Inf contract.

NaN/Inf contract of the Winograd algorithms (differs from direct's, which is torch's):
an output tile is computed from its whole (m+2)x(m+2) input tile, so a NaN/Inf input
may turn any output of the m x m tiles whose input tile holds it into NaN (or Inf).
Where torch's result is NaN or Inf, ours is NaN or the same Inf; outside those tiles
every output is finite where torch's is and matches it as usual.
"""
import pytest
import torch
import torch.nn.functional as F

import vggkern
from test_conv3x3 import K_FACTOR, _check, _inputs, _phase_wavefronts, _torch_forward, assert_refused

ALGOS = {"winograd_f2x2": 2, "winograd_f4x4": 4}
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# ---- the transforms --------------------------------------------------------------------


@pytest.mark.parametrize("tile", [2, 4])
def test_matrices_shapes(tile):
    b, g, a = torch.ops.vggkern._winograd_matrices(tile)
    alpha = tile + 2
    assert b.shape == (alpha, alpha) and g.shape == (alpha, 3) and a.shape == (alpha, tile)
    assert b.dtype == g.dtype == a.dtype == torch.float64


@pytest.mark.parametrize("tile", [2, 4])
def test_winograd_identity(tile):
    # A^T [(G g G^T) ⊙ (B^T d B)] A == the valid 3x3 correlation of d with g, in float64
    # with the kernels' own (fp32) constants: exact for F(2x2) (0, ±1, ±1/2); for F(4x4)
    # G's 1/6, 1/12, 1/24 are fp32-rounded, so equal up to ~fp32 eps.
    b, g, a = torch.ops.vggkern._winograd_matrices(tile)
    gen = _gen(tile)
    d = torch.randn(200, tile + 2, tile + 2, generator=gen, dtype=torch.float64)
    w = torch.randn(200, 3, 3, generator=gen, dtype=torch.float64)
    u = g @ w @ g.T
    v = b.T @ d @ b
    y = a.T @ (u * v) @ a
    ref = torch.stack([F.conv2d(d[i][None, None], w[i][None, None])[0, 0] for i in range(len(d))])
    scale = ref.abs().amax(dim=(1, 2), keepdim=True) + d.abs().amax(dim=(1, 2), keepdim=True)
    tol = 1e-14 if tile == 2 else 1e-6  # measured 2.2e-7 = 1.9 fp32 eps
    assert ((y - ref).abs() / scale).max().item() < tol
    if tile == 4:  # the rounding of G is the only difference: exact G gives float64-exact results
        g_exact = torch.tensor([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                                [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=torch.float64)
        torch.testing.assert_close(g, g_exact, rtol=2 ** -24, atol=0)
        y = a.T @ ((g_exact @ w @ g_exact.T) * v) @ a
        assert ((y - ref).abs() / scale).max().item() < 1e-13


def test_matrices_bad_tile():
    with pytest.raises(ValueError, match="expected tile 2 or 4, got 3"):
        torch.ops.vggkern._winograd_matrices(3)


# ---- winograd_weight -------------------------------------------------------------------


def _u_reference(weight, tile):
    _, g, _ = torch.ops.vggkern._winograd_matrices(tile)
    g = g.to(weight.device)
    alpha = tile + 2
    u = torch.einsum("ia,kcab,jb->ijck", g, weight.double(), g)
    return u.reshape(alpha * alpha, weight.shape[1], weight.shape[0])


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_winograd_weight_values(tile, dtype, device):
    w = torch.randn(37, 11, 3, 3, generator=_gen(41)).to(dtype).to(device)
    u = vggkern.winograd_weight(w, tile)
    assert u.shape == ((tile + 2) ** 2, 11, 37) and u.dtype == torch.float32 and u.is_contiguous()
    assert u.device == w.device
    # fp32 sums of a few fp32-exact products: within a few fp32 ulps of the float64 value.
    torch.testing.assert_close(u.double(), _u_reference(w, tile), rtol=1e-6, atol=1e-6)
    assert torch.equal(u, torch.ops.vggkern.winograd_weight(w.transpose(2, 3).contiguous().transpose(2, 3), tile))


@pytest.mark.parametrize("tile", [2, 4])
def test_winograd_weight_gradient(tile):
    w = torch.randn(5, 3, 3, 3, generator=_gen(43)).requires_grad_()
    gu = torch.randn((tile + 2) ** 2, 3, 5, generator=_gen(44))
    vggkern.winograd_weight(w, tile).backward(gu)
    w2 = w.detach().clone().requires_grad_()
    _, g, _ = torch.ops.vggkern._winograd_matrices(tile)
    torch.einsum("ia,kcab,jb->ijck", g.float(), w2, g.float()).reshape(gu.shape).backward(gu)
    torch.testing.assert_close(w.grad, w2.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("entry", ["wrapper", "op"])
@pytest.mark.parametrize("weight,tile,match", [
    (torch.randn(3, 4, 3, 3), 3, r"expected tile 2 \(F\(2x2,3x3\)\) or 4 \(F\(4x4,3x3\)\), got 3"),
    (torch.randn(3, 4, 9), 2, r"expected weight of shape \[K, C, 3, 3\], got \[3, 4, 9\]"),
    (torch.randn(3, 4, 5, 5), 4, r"expected weight of shape \[K, C, 3, 3\], got \[3, 4, 5, 5\]"),
    (torch.randn(3, 4, 3, 3, dtype=torch.float64), 2, r"expected weight of dtype float32, float16 or bfloat16"),
])
def test_winograd_weight_bad_inputs(weight, tile, match, entry):
    fn = vggkern.winograd_weight if entry == "wrapper" else torch.ops.vggkern.winograd_weight
    with pytest.raises(ValueError, match="vggkern.winograd_weight: " + match):
        fn(weight, tile)


@pytest.mark.parametrize("tile", [2.0, 4.0])
def test_winograd_weight_refuses_a_float_tile(tile):
    # 2.0 == 2 passed the wrapper's check, and the dispatcher then refused it with its own
    # RuntimeError (a float for an int), not the wrapper's ValueError naming the tile.
    with pytest.raises(ValueError, match=r"vggkern.winograd_weight: expected tile 2 .* got " + str(tile)):
        vggkern.winograd_weight(torch.randn(3, 4, 3, 3), tile)


def test_winograd_weight_opcheck():
    w = torch.randn(4, 3, 3, 3, generator=_gen(45)).requires_grad_()
    torch.library.opcheck(torch.ops.vggkern.winograd_weight.default, (w, 4))


# ---- conv3x3 with the Winograd algorithms ----------------------------------------------


@pytest.mark.parametrize("algo", list(ALGOS))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_pre_transformed_weight(algo, dtype, device):
    # conv3x3(x, winograd_weight(w, m)) is conv3x3(x, w) bit for bit (the op transforms w
    # with the same kernel), and matches torch.
    x, w, b = _inputs(2, 21, 35, 11, 14, dtype, device, seed=47)
    u = vggkern.winograd_weight(w, ALGOS[algo])
    for relu, pool, channels_last in [(True, False, False), (False, True, True)]:
        xi = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        y = vggkern.conv3x3(xi, u, b, relu=relu, pool=pool, algo=algo)
        _check(y, xi, w, b, relu, pool, algo=algo)
        assert torch.equal(y, vggkern.conv3x3(xi, w, b, relu=relu, pool=pool, algo=algo))
        assert torch.equal(y, torch.ops.vggkern.conv3x3(xi, u, b, relu, pool, algo))


@pytest.mark.parametrize("algo", list(ALGOS))
def test_pool_odd_sizes(algo, device):
    # Partial tiles at the border under the pool: the last pooled row/column of an odd
    # H/W lies in a tile whose other half is outside the image (F(4x4): windows at every
    # position inside a tile). NCHW with W % 4 == 0 (i = 4, 6): F(4x4) stores a tile's pooled
    # row as one vector, and a tile's second pooled row at an odd H's last row (no window)
    # must not be stored.
    shapes = [(1, 5, 9, 7, 9), (2, 3, 33, 5, 11), (1, 8, 6, 15, 3), (1, 4, 4, 3, 17), (2, 3, 8, 7, 8),
              (1, 6, 5, 5, 12), (1, 6, 40, 9, 4)]
    for i, (n, c, k, h, w) in enumerate(shapes):
        for dtype in (torch.float32, torch.bfloat16):
            x, wt, b = _inputs(n, c, k, h, w, dtype, device, seed=50 + i, channels_last=i % 2 == 1)
            _check(vggkern.conv3x3(x, wt, b, relu=True, pool=True, algo=algo), x, wt, b, True, True, algo=algo)


@pytest.mark.parametrize("algo", list(ALGOS))
def test_int64_index_variant(algo, device, monkeypatch):
    # W = 8 and 12 (multiples of m): the NCHW row-vector stores (store_rows), pooled or not.
    for shape, pool in [((2, 10, 40, 9, 13), True), ((2, 5, 16, 7, 8), False), ((1, 3, 8, 9, 12), True)]:
        x, w, b = _inputs(*shape, torch.float16, device, seed=31)
        for channels_last in (False, True):
            xi = x.contiguous(memory_format=torch.channels_last) if channels_last else x
            monkeypatch.setenv("VGGKERN_FORCE_INT64_INDEX", "1")
            y64 = vggkern.conv3x3(xi, w, b, relu=True, pool=pool, algo=algo)
            _check(y64, xi, w, b, True, pool, algo=algo)
            monkeypatch.setenv("VGGKERN_FORCE_INT64_INDEX", "0")
            assert torch.equal(y64, vggkern.conv3x3(xi, w, b, relu=True, pool=pool, algo=algo))


@pytest.mark.parametrize("algo", list(ALGOS))
def test_range_far_from_the_maximum_stays_finite(algo, device):
    """README, Range: the transforms run in fp32, so fp16 inputs near fp16's maximum (65504)
    transform without overflow; and float32 inputs of scale 1e35, below the measured onset
    of non-finite outputs (3e36 for F(4x4)), give finite outputs within the bound."""
    g = _gen(41)
    w = torch.randn(8, 4, 3, 3, generator=g) * 0.02
    b = torch.randn(8, generator=g)
    x = torch.rand(2, 4, 8, 12, generator=g) * 2 - 1
    for dtype, scale in ((torch.float16, 6e4), (torch.float32, 1e35)):
        xs, ws, bs = (t.to(device, dtype) for t in (x * scale, w, b))
        ref = F.conv2d(xs.double(), ws.double(), bs.double(), padding=1)
        assert ref.abs().max() < torch.finfo(dtype).max / 2  # the case: outputs well inside the range
        assert xs.abs().max() > scale / 2
        y = vggkern.conv3x3(xs, ws, bs, algo=algo)
        assert y.isfinite().all(), dtype
        _check(y, xs, ws, bs, False, False, algo=algo)


def _spread_mask(x, m, pool):
    """(N, Ho, Wo) bool: the outputs whose m x m tile's (m+2)x(m+2) input tile holds a
    non-finite input (any channel)."""
    bad = (~x.isfinite()).any(dim=1, keepdim=True).double()  # (N, 1, H, W)
    n, _, h, w = bad.shape
    th, tw = -(-h // m), -(-w // m)
    # Input tile of tile (i, j): rows i*m - 1 .. i*m + m in x, i.e. i*m .. i*m + m + 1 padded by 1.
    padded = F.pad(bad, (1, tw * m + 1 - w, 1, th * m + 1 - h))
    tiles = F.max_pool2d(padded, m + 2, m)[:, 0] > 0  # (N, th, tw)
    px = tiles.repeat_interleave(m, 1).repeat_interleave(m, 2)[:, :h, :w]
    return px[:, : h // 2 * 2 : 2, : w // 2 * 2 : 2] if pool else px


@pytest.mark.parametrize("algo", list(ALGOS))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("relu,pool", [(False, False), (True, False), (True, True)])
def test_nan_inf_contract(relu, pool, dtype, algo, device):
    m = ALGOS[algo]
    x, w, b = _inputs(2, 5, 6, 17, 19, dtype, device, channels_last=dtype == torch.float16, seed=3)
    x[0, 1, 0, 0] = float("nan")  # at the image corner: the zero padding beside it
    x[0, 3, 9, 10] = float("nan")
    x[1, 0, 4, 18] = float("inf")
    x[1, 2, 13, 2] = float("-inf")
    b[4] = float("nan")  # a whole output channel
    y = vggkern.conv3x3(x, w, b, relu=relu, pool=pool, algo=algo).double()
    ref = _torch_forward(x, w, b, relu, pool, torch.float64)
    spread = _spread_mask(x, m, pool)[:, None].expand_as(ref).clone()
    spread[:, 4] = True
    ours_bad, ref_bad = ~y.isfinite(), ~ref.isfinite()
    # Where torch has NaN/Inf, so do we (an Inf of torch's sign, or NaN).
    assert ours_bad[ref_bad].all(), "an output torch has as NaN/Inf is finite"
    inf = ref.isinf() & y.isinf()
    assert torch.equal(y[inf], ref[inf]), "Inf signs differ from torch's"
    # NaN/Inf only within the tiles of the non-finite inputs (and the NaN-bias channel).
    assert not (ours_bad & ~spread).any(), "NaN/Inf outside the tiles of the non-finite inputs"
    assert ours_bad[:, 4].all()
    # Everything outside those tiles matches torch within the algorithm's bound.
    keep = ~spread
    assert keep.any()
    own = _torch_forward(x, w, b, relu, pool, dtype).double()
    err = (y - ref)[keep].abs().max().item()
    err_torch = (own - ref)[keep].abs().max().item()
    floor = torch.finfo(dtype).eps / 4 * ref[keep].abs().max().item()
    assert err <= K_FACTOR[algo][dtype] * err_torch + floor


def _bad(**over):
    x = torch.randn(1, 4, 5, 5)
    args = {"x": x, "weight": torch.randn(16, 4, 3), "bias": torch.randn(3), "algo": "winograd_f2x2"}
    args.update(over)
    return args


BAD_INPUTS = [
    # a U of the other tile size, or of another C
    (_bad(weight=torch.randn(36, 4, 3)),
     r"expected weight of shape \[K, C, 3, 3\], or winograd_weight\(weight, 2\) of shape \[16, C, K\], with C=4 "
     r"matching x, got \[36, 4, 3\]"),
    (_bad(weight=torch.randn(16, 4, 3), algo="winograd_f4x4"),
     r"expected weight of shape \[K, C, 3, 3\], or winograd_weight\(weight, 4\) of shape \[36, C, K\], with C=4 matching x, got \[16, 4, 3\]"),
    (_bad(weight=torch.randn(16, 5, 3)), r"expected weight of shape .* of shape \[16, C, K\], with C=4 matching x, got \[16, 5, 3\]"),
    (_bad(weight=torch.randn(16, 4, 0), bias=None), r"expected weight with at least one output channel"),
    (_bad(weight=torch.randn(16, 4, 3, dtype=torch.float16)),
     r"expected a pre-transformed weight \(winograd_weight\) of dtype float32, got"),
    (_bad(bias=torch.randn(4)), r"expected bias of shape \[K\] with K=3 matching weight, got \[4\]"),
    (_bad(weight=torch.randn(3, 5, 3, 3)),
     r"expected weight of shape \[K, C, 3, 3\] with C=4 matching x, or winograd_weight\(weight, 2\) of shape "
     r"\[16, C, K\], got \[3, 5, 3, 3\]"),
    (_bad(weight=torch.randn(3, 4, 3, 3, dtype=torch.float16)), r"expected weight of the same dtype as x"),
    # a U is a weight only for the Winograd algorithms
    (_bad(algo="direct"), r"expected weight of shape \[K, C, 3, 3\] with C=4 matching x, got \[16, 4, 3\]"),
    (_bad(algo="auto"), r"expected weight of shape \[K, C, 3, 3\] with C=4 matching x, got \[16, 4, 3\]"),
]


@pytest.mark.parametrize("entry", ["wrapper", "op"])
@pytest.mark.parametrize("args,match", BAD_INPUTS, ids=range(len(BAD_INPUTS)))
def test_bad_inputs(args, match, entry):
    assert_refused(args, match, entry)


@pytest.mark.parametrize("algo", list(ALGOS))
@pytest.mark.parametrize("relu,pool", [(False, False), (True, True)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_for_x_and_bias_through_pre_transformed_weight(algo, relu, pool, dtype):
    # A frozen model's U = winograd_weight(w, m) gives x and bias their gradients: torch's
    # (float64) through w, within the Winograd computation's float32 rounding and dtype's.
    x, w, b = _inputs(2, 5, 6, 7, 9, dtype, "cpu", seed=53)
    u = vggkern.winograd_weight(w, ALGOS[algo])
    xg, bg = x.clone().requires_grad_(), b.clone().requires_grad_()
    y = vggkern.conv3x3(xg, u, bg, relu=relu, pool=pool, algo=algo)
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    gx, gb = torch.autograd.grad(y, (xg, bg), dy)
    assert gx.dtype == gb.dtype == dtype
    if pool:
        _assert_pool_choices_are_clear(_torch_forward(x.double(), w.double(), b.double(), False, False,
                                                      torch.float64), dtype)
    x64, b64 = x.double().requires_grad_(), b.double().requires_grad_()
    y64 = _torch_forward(x64, w.double(), b64, relu, pool, torch.float64)
    tol = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}[dtype]
    for got, want in zip((gx, gb), torch.autograd.grad(y64, (x64, b64), dy.double())):
        assert (got.double() - want).abs().max().item() <= tol * want.abs().max().item()


def _assert_pool_choices_are_clear(z, dtype):
    """The gradient of ReLU + 2x2 pool goes to each window's max if it is > 0. The rounded
    computation (dtype) makes float64's choice where no window's max lies within dtype's
    rounding (relative) of its runner-up, nor within the fp32 sums' error of 0. Asserts
    that the data (z: the conv's float64 output before ReLU) is so, so that the gradients
    may be compared with float64's."""
    eps = torch.finfo(dtype).eps
    n, k, h, w = z.shape
    win = z[:, :, :h // 2 * 2, :w // 2 * 2].reshape(n, k, h // 2, 2, w // 2, 2).transpose(3, 4).reshape(
        n, k, h // 2, w // 2, 4)
    top = win.topk(2, dim=-1).values
    assert (top[..., 0].abs() > 1e-4 * z.abs().max()).all(), "a window's max is within the sums' error of 0"
    live = top[..., 0] > 0
    assert ((top[..., 0] - top[..., 1])[live] > 4 * eps * top[..., 0][live]).all(), \
        "a window's max is within rounding of another"


def _winograd_reference(x, u, b, tile, relu=False, pool=False):
    """What the Winograd kernels compute with any U (one winograd_weight did not make
    too), in float64, tile by tile: each m x m output tile from its (m+2) x (m+2) input
    tile d (padding 1, tiles from (0, 0), zeros past the edge) as A^T [sum_c U_ck ⊙ (B^T d
    B)] A; then bias, ReLU, pool. Differentiable (torch's autograd gives the reference
    derivatives)."""
    bt, _, a = torch.ops.vggkern._winograd_matrices(tile)
    alpha = tile + 2
    n, c, h, w = x.shape
    tiles_h, tiles_w = -(-h // tile), -(-w // tile)
    xp = F.pad(x.double(), (1, tiles_w * tile + 1 - w, 1, tiles_h * tile + 1 - h))
    uk = u.double().reshape(alpha, alpha, c, u.shape[2])
    rows = []
    for i in range(tiles_h):
        cols = []
        for j in range(tiles_w):
            d = xp[:, :, i * tile:i * tile + alpha, j * tile:j * tile + alpha]
            v = bt.T @ d @ bt
            cols.append(a.T @ torch.einsum("pqck,ncpq->nkpq", uk, v) @ a)
        rows.append(torch.cat(cols, dim=3))
    y = torch.cat(rows, dim=2)[:, :, :h, :w]
    if b is not None:
        y = y + b.double().view(1, -1, 1, 1)
    if relu:
        y = F.relu(y)
    return F.max_pool2d(y, 2, 2) if pool else y


@pytest.mark.parametrize("algo", list(ALGOS))
@pytest.mark.parametrize("relu,pool", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_derivatives_of_any_pre_transformed_weight(algo, relu, pool, dtype, channels_last, device):
    # A U that winograd_weight did not make (trained or pruned in the Winograd domain: not
    # a 3x3 conv) has its own gradient, and x and bias theirs, those of the computation the
    # kernels do with it: the tile-by-tile float64 reference's (CPU), by torch's autograd.
    tile = ALGOS[algo]
    x, _, b = _inputs(2, 3, 5, 7, 9, dtype, "cpu", channels_last=channels_last, seed=59)  # no near-ties
    u = torch.randn((tile + 2) ** 2, 3, 5, generator=_gen(58))
    u[u.abs() < 0.5] = 0  # pruned in the Winograd domain
    xg, ug, bg = (t.to(device).requires_grad_() for t in (x, u, b))
    y = vggkern.conv3x3(xg, ug, bg, relu=relu, pool=pool, algo=algo)
    x64, u64, b64 = (t.double().requires_grad_() for t in (x, u, b))
    ref = _winograd_reference(x64, u64, b64, tile, relu, pool)
    tol = {torch.float32: 1e-5, torch.float16: 2e-3}[dtype]
    # The forward first: the reference is the kernels' computation.
    assert (y.double().cpu() - ref).abs().max().item() <= tol * ref.abs().max().item()
    dy = torch.randn(y.shape, generator=_gen(59)).to(dtype)
    got = torch.autograd.grad(y, (xg, ug, bg), dy.to(device))
    assert [(g.dtype, g.device.type) for g in got] == [(dtype, device), (torch.float32, device), (dtype, device)]
    assert got[0].is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    got = [g.cpu() for g in got]
    if pool:
        _assert_pool_choices_are_clear(_winograd_reference(x64.detach(), u64.detach(), b64.detach(), tile), dtype)
    for name, g, want in zip("xUb", got, torch.autograd.grad(ref, (x64, u64, b64), dy.double())):
        err = (g.double() - want).abs().max().item()
        assert err <= tol * want.abs().max().item(), f"d{name}: {err:.3g} vs max {want.abs().max().item():.3g}"


@pytest.mark.parametrize("algo", list(ALGOS))
def test_weight_gradient_through_winograd_weight(algo):
    # w -> U = winograd_weight(w, m) -> conv3x3(x, U): w's gradient through U is torch's
    # conv2d's (float64), so a model may keep its weights and train through the transform.
    x, w, b = _inputs(2, 4, 6, 7, 6, torch.float32, "cpu", seed=60)
    wg = w.clone().requires_grad_()
    y = vggkern.conv3x3(x, vggkern.winograd_weight(wg, ALGOS[algo]), b, relu=True, pool=True, algo=algo)
    dy = torch.randn(y.shape, generator=_gen(61))
    (got,) = torch.autograd.grad(y, wg, dy)
    w64 = w.double().requires_grad_()
    (want,) = torch.autograd.grad(_torch_forward(x.double(), w64, b.double(), True, True, torch.float64), w64,
                                  dy.double())
    assert (got.double() - want).abs().max().item() <= 1e-5 * want.abs().max().item()


def test_double_backward_through_pre_transformed_weight():
    # An input-gradient penalty (the gradient of |dL/dx|^2) on a frozen model using U, and
    # the same penalty's gradient for U itself (the reference's for any U).
    x, w, b = _inputs(2, 3, 4, 6, 6, torch.float32, "cpu", seed=55)
    u = vggkern.winograd_weight(w, 4)

    def penalty_grad(f, x, u):
        x = x.clone().requires_grad_()
        (g,) = torch.autograd.grad(f(x, u).square().sum(), x, create_graph=True)
        return torch.autograd.grad(g.square().sum(), (x, u) if u.requires_grad else x)

    (ours,) = penalty_grad(lambda x, u: vggkern.conv3x3(x, u, b, relu=True, algo="winograd_f4x4"), x, u)
    (ref,) = penalty_grad(lambda x, w: F.relu(F.conv2d(x, w, b.double(), padding=1)), x.double(), w.double())
    assert (ours.double() - ref).abs().max().item() <= 1e-5 * ref.abs().max().item()
    u = u + 0.1 * torch.randn(u.shape, generator=_gen(56))  # out of winograd_weight's range
    ours = penalty_grad(lambda x, u: vggkern.conv3x3(x, u, b, relu=True, algo="winograd_f4x4"), x,
                        u.requires_grad_())
    ref = penalty_grad(lambda x, u: _winograd_reference(x, u, b, 4, relu=True), x.double(),
                       u.detach().double().requires_grad_())
    for got, want in zip(ours, ref):
        assert (got.double() - want).abs().max().item() <= 1e-5 * want.abs().max().item()


def test_forward_ad_and_compile_through_pre_transformed_weight():
    import torch.autograd.forward_ad as fwad

    x, w, b = _inputs(2, 3, 5, 6, 7, torch.float32, "cpu", seed=54)
    u = vggkern.winograd_weight(w, 4)
    t = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    with fwad.dual_level():
        out = fwad.unpack_dual(vggkern.conv3x3(fwad.make_dual(x, t), u, b, relu=True, algo="winograd_f4x4")).tangent
    _, want = torch.func.jvp(lambda x: F.relu(F.conv2d(x, w.double(), b.double(), padding=1)), (x.double(),),
                             (t.double(),))
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-5)
    # A tangent for U itself: the reference's (any U; this one winograd_weight made).
    tu = torch.randn(u.shape, generator=torch.Generator().manual_seed(3))
    with fwad.dual_level():
        out = fwad.unpack_dual(vggkern.conv3x3(x, fwad.make_dual(u, tu), b, relu=True, algo="winograd_f4x4")).tangent
    _, want = torch.func.jvp(lambda u: _winograd_reference(x, u, b, 4, relu=True), (u.double(),), (tu.double(),))
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-5)

    def loss(x, u):
        return vggkern.conv3x3(x, u, b, relu=True, pool=True, algo="winograd_f4x4").square().sum()

    torch._dynamo.reset()
    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    (xe, ue), (xc, uc) = [(x.clone().requires_grad_(), u.clone().requires_grad_()) for _ in range(2)]
    loss(xe, ue).backward()
    compiled(xc, uc).backward()
    torch.testing.assert_close(xc.grad, xe.grad, rtol=0, atol=0)
    torch.testing.assert_close(uc.grad, ue.grad, rtol=0, atol=0)


@pytest.mark.parametrize("algo", list(ALGOS))
def test_opcheck_and_gradients(algo):
    x, w, b = _inputs(2, 3, 4, 6, 5, torch.float32, "cpu", seed=13)
    args = (x.requires_grad_(), w.requires_grad_(), b.requires_grad_())
    torch.library.opcheck(torch.ops.vggkern.conv3x3.default, args, {"relu": True, "pool": True, "algo": algo})
    u = vggkern.winograd_weight(w.detach(), ALGOS[algo]).requires_grad_()
    torch.library.opcheck(torch.ops.vggkern.conv3x3.default, (x, u, b), {"relu": True, "pool": True, "algo": algo})


def test_torch_compile_fullgraph():
    torch._dynamo.reset()

    def block(x, w, b):
        u = vggkern.winograd_weight(w, 4)
        return vggkern.conv3x3(x, u, b, relu=True, pool=True, algo="winograd_f4x4")

    x, w, b = _inputs(2, 3, 5, 9, 10, torch.float32, "cpu", seed=17)
    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x, w, b), block(x, w, b), rtol=0, atol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_device_mismatch():
    x, w, b = _inputs(1, 4, 3, 5, 5, torch.float32, "cuda")
    with pytest.raises(ValueError, match=r"expected weight on the same device as x"):
        vggkern.conv3x3(x, vggkern.winograd_weight(w, 2).cpu(), b, algo="winograd_f2x2")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
@pytest.mark.parametrize("algo", list(ALGOS))
def test_backward_through_u_never_synchronizes(algo):
    """The derivatives through a U (x's, the bias's, U's, and through winograd_weight the
    weight's) take their transform matrices from a per-device cache after the first call:
    no host-to-GPU copy, which would synchronize (refused here) and break a CUDA graph's
    capture."""
    x, w, b = _inputs(2, 8, 16, 12, 12, torch.float32, "cuda", seed=23)
    w.requires_grad_()

    def step():
        xg = x.detach().requires_grad_()
        y = vggkern.conv3x3(xg, vggkern.winograd_weight(w, ALGOS[algo]), b, relu=True, algo=algo)
        y.square().sum().backward()
        return xg.grad

    want = step()  # the first call fills the caches
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        got = step()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


# ---- shared-memory banks ---------------------------------------------------------------


def _accesses(lanes, nbytes):
    """One warp instruction: (ideal, wavefronts); lanes' first word addresses in lane order,
    phases of 32 (4-byte), 16 (8-byte) or 8 (16-byte) lanes."""
    per = 128 // nbytes
    phases = [_phase_wavefronts([a + j for a in lanes[p:p + per] for j in range(nbytes // 4)])
              for p in range(0, len(lanes), per)]
    return len(phases), sum(phases)


def _winograd_bank_model(m, nhwc, itemsize=4):
    """The kernel's shared accesses per block, from its header's layout: {site: [warp
    instructions, ideal, wavefronts]} per chunk (V and U stores), per channel (the GEMM's
    float4 reads) or once (the M dump and the epilogue's reads). F(2x2): 256 threads, 32
    tiles; F(4x4): 288, 16; 32 K, 8 channels per chunk. s_v [8][P][BT + 4] with channel
    planes of P (BT + 4) floats + 4 (NHWC, or where that is a multiple of 32), s_u
    [8][P][36] after it; s_m: row p * 32 + k of BT tiles, rows BT (NCHW) or BT + 4 (NHWC)
    floats apart, row group g = row // 8 shifted by 4 (g % 2) + 16 (g // 2) floats. The
    NHWC epilogue takes its items in runs of 32 bytes of y's channels (32 / itemsize)."""
    a = m + 2
    P, (threads, BT) = a * a, {2: (256, 32), 4: (288, 16)}[m]
    BK, CC, tg_n = 32, 8, BT // 8
    vs, us, ms = BT + 4, BK + 4, BT + 4 if nhwc else BT
    run = 32 // itemsize

    def m_at(row, t):
        return row * ms + 4 * (row // 8 % 2) + 16 * (row // 16) + t
    vplane = P * vs + (4 if nhwc or P * vs % 32 == 0 else 0)
    u0 = CC * max(P * vs + 4, vplane)
    out = {}

    def add(site, lanes, nbytes):
        c = out.setdefault(site, [0, 0, 0])
        ideal, wavefronts = _accesses(lanes, nbytes)
        c[0], c[1], c[2] = c[0] + 1, c[1] + ideal, c[2] + wavefronts

    def passes(total):  # for (i = tid; i < total; i += threads): each warp's k-th pass
        calls = {}
        for tid in range(threads):
            for k, i in enumerate(range(tid, total, threads)):
                calls.setdefault((tid // 32, k), []).append(i)
        return calls.values()

    for items in passes(CC * BT):  # stage 1: V, items (channel, tile) in x's order
        ct = [(i % CC, i // CC) if nhwc else (i // BT, i % BT) for i in items]
        for q in range(P):
            add("v", [c * vplane + q * vs + t for c, t in ct], 4)
    for items in passes(CC * P * BK):  # stage 1: U, K fastest
        add("u", [u0 + ((i // BK) % CC * P + i // BK // CC) * us + i % BK for i in items], 4)
    for w in range(threads // 32):  # thread (position, tile group, K group)
        thr = [(t // (tg_n * 4), t % (tg_n * 4) % tg_n, t % (tg_n * 4) // tg_n) for t in range(32 * w, 32 * w + 32)]
        for h in (0, 4):
            add("gemm", [pos * vs + tg * 8 + h for pos, tg, kg in thr], 16)
        for h in (0, 4):
            add("gemm", [u0 + pos * us + kg * 8 + h for pos, tg, kg in thr], 16)
        for j in range(8):
            for h in (0, 4):
                add("m_dump", [m_at(pos * BK + kg * 8 + j, tg * 8 + h) for pos, tg, kg in thr], 16)
    for items in passes(BT * BK):  # epilogue: items (tile, k), channel runs for NHWC
        kt = [(i % run + run * (i // (run * BT)), i // run % BT) if nhwc else (i // BT, i % BT) for i in items]
        for q in range(P):
            add("m_read", [m_at(q * BK + k, t) for k, t in kt], 4)
    return out


# The Winograd kernels' shared memory, counted by the emulator (every ld_shared /
# st_shared) and by the model above from the documented layout: they must agree exactly.
# Then, per site: the GEMM's float4 reads (the hot loop), stage 1's stores, the M dump and
# the epilogue's reads are free of bank conflicts, except fp16/bf16 NHWC's epilogue reads
# (16-channel runs: 2-way). Before the M rows were shifted per group of 8, the dump was
# 2-way (F(2x2)) or 4-way (F(4x4)) and NHWC's reads 4-way; before the V planes were
# padded, NHWC's V stores were 8-way (F(2x2)) or 4-way (F(4x4)).
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("algo", list(ALGOS))
def test_shared_memory_banks(algo, channels_last, dtype):
    from vggkern import _C

    m = ALGOS[algo]
    n, c, k, h, w = 2, 11, 40, 13, 10
    x, wt, b = _inputs(n, c, k, h, w, dtype, "cpu", channels_last=channels_last, seed=m)
    _C.emu_reset_bank_stats()
    y = vggkern.conv3x3(x, wt, b, relu=True, algo=algo)
    stats = _C.emu_bank_stats()
    _check(y, x, wt, b, True, False, algo=algo)
    tiles = n * -(-h // m) * -(-w // m)
    bt = 32 if m == 2 else 16
    blocks, chunks = -(-tiles // bt) * -(-k // 32), -(-c // 8)
    model = _winograd_bank_model(m, channels_last, dtype.itemsize)
    per_block = {"load": [c * model["gemm"][i] + model["m_read"][i] for i in range(3)],
                 "store": [chunks * (model["v"][i] + model["u"][i]) + model["m_dump"][i] for i in range(3)]}
    for path, (instructions, ideal, wavefronts) in per_block.items():
        got = stats[path]
        assert (got["instructions"], got["ideal"], got["wavefronts"]) == \
            (blocks * instructions, blocks * ideal, blocks * wavefronts), (path, stats, model)
    for site in ("gemm", "v", "u", "m_dump"):
        assert model[site][1] == model[site][2], (site, model)  # conflict-free
    m_read_ways = 2 if channels_last and dtype.itemsize == 2 else 1
    assert model["m_read"][2] == m_read_ways * model["m_read"][1], model
