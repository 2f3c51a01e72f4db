"""TF32 chains: conv3x3's y_tf32 (y rounded to TF32 after bias and ReLU) and x_tf32 (x is
TF32 already: TF32 math uses it as it is), and FusedSequential, which chains the convs of a
model that run TF32 math so that each kernel's main loop skips rounding x. On the emulator
(CPU) and on the GPU when there is one: the chained result must equal the unchained one bit
for bit, since rounding commutes with ReLU and max-pool."""
import pytest
import torch
from torch import nn

import vggkern
from test_conv3x3 import DEVICES, _inputs, _round_tf32, _truncate_tf32

from benchmarks.tiles import is_wgmma

ALGO = "implicit_gemm"
# Every main loop: the default (where wgmma runs, the emulator included, wgmma-wide's tile;
# elsewhere mma.sync's 256 x 64 for K <= 64 and 128 x 128 above), mma.sync's four tiles, the
# five wgmma tiles, and split-K (the reduce kernel's epilogue).
TILE_SPLITS = [("", ""), ("128x128", ""), ("256x64", ""), ("128x64", ""), ("wg128x128", ""), ("wg256x64", ""),
               ("wg128x256", ""), ("ws128x256", ""), ("ws128x128", ""), ("", "3"), ("128x128", "3"),
               ("wg128x128", "2")]


@pytest.fixture
def emulator():
    vggkern.set_cpu_backend("emulator")
    yield
    vggkern.set_cpu_backend("torch")


def _wgmma_runs(device):
    return device == "cpu" or bool(vggkern.build_info().get("cuda_wgmma") and
                                   torch.cuda.get_device_capability() == (9, 0))


def _runs_wgmma(tile, device):
    """Does this tile ("": the default, the rule here) run wgmma on this device?"""
    return is_wgmma(tile) if tile else _wgmma_runs(device)


def _tile(monkeypatch, tile, split, device):
    if is_wgmma(tile) and not _wgmma_runs(device):
        pytest.skip("wgmma tile: needs an sm_90a build on a compute capability 9.0 GPU")
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", tile)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_SPLIT_K", split)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("tile,split", TILE_SPLITS)
@pytest.mark.parametrize("k,relu,pool,channels_last", [(40, True, True, True), (136, False, False, False),
                                                       (72, True, False, True)])
def test_y_tf32_rounds_the_output(tile, split, k, relu, pool, channels_last, device, monkeypatch):
    """y_tf32: the output is the plain output rounded as cvt.rna rounds (before the pool in
    the kernel, which commutes), in x's memory format."""
    _tile(monkeypatch, tile, split, device)
    x, w, b = _inputs(2, 24, k, 9, 11, torch.float32, device, channels_last=channels_last, seed=k + 7)
    plain = vggkern.conv3x3(x, w, b, relu=relu, pool=pool, algo=ALGO, allow_tf32=True)
    y = vggkern.conv3x3(x, w, b, relu=relu, pool=pool, algo=ALGO, allow_tf32=True, y_tf32=True)
    assert y.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert torch.equal(y, _round_tf32(plain))
    assert not torch.equal(y, plain)  # the data has bits below TF32's


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("algo", ["direct", "winograd_f2x2"])
def test_y_tf32_on_fp32_algorithms(algo, device):
    """The algorithms that compute float32 in fp32 round y after their kernel."""
    x, w, b = _inputs(1, 8, 16, 7, 6, torch.float32, device, channels_last=False, seed=3)
    x[0, 0, 0, 0] = float("nan")
    plain = vggkern.conv3x3(x, w, b, relu=True, pool=True, algo=algo)
    y = vggkern.conv3x3(x, w, b, relu=True, pool=True, algo=algo, y_tf32=True)
    torch.testing.assert_close(y, _round_tf32(plain), rtol=0, atol=0, equal_nan=True)
    assert y.isnan().any()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("tile,split", TILE_SPLITS)
def test_x_tf32_uses_x_as_it_is(tile, split, device, monkeypatch):
    """x_tf32: on TF32 values the result is the same bit for bit. The wgmma tiles then skip
    their rounding pass: on values with bits below TF32's they give the conv of x truncated,
    as the tensor cores read it, not of x rounded (so the flag reached the main loop);
    mma.sync rounds each fragment element anyway (a no-op on TF32 values)."""
    _tile(monkeypatch, tile, split, device)
    g = torch.Generator().manual_seed(11)
    # x between TF32 values (a quarter, half or three quarters of an ulp), the weight small
    # integers: every product and sum of TF32 operands is exact in fp32.
    sign = torch.randint(0, 2, (2, 16, 8, 9), generator=g) * 2 - 1
    x = (sign * (1 + torch.randint(0, 1024, sign.shape, generator=g) / 1024
                 + torch.randint(1, 4, sign.shape, generator=g) / 4096)).float()
    x = x.contiguous(memory_format=torch.channels_last).to(device)
    w = torch.randint(-2, 3, (72, 16, 3, 3), generator=g).float().to(device)
    rounded = vggkern.conv3x3(x, w, algo=ALGO, allow_tf32=True)
    as_is = vggkern.conv3x3(x, w, algo=ALGO, allow_tf32=True, x_tf32=True)
    conv = lambda t: torch.nn.functional.conv2d(t.double(), w.double(), padding=1)  # noqa: E731
    assert torch.equal(rounded.double(), conv(_round_tf32(x)))
    if _runs_wgmma(tile, device):
        assert torch.equal(as_is.double(), conv(_truncate_tf32(x)))
        assert not torch.equal(rounded, as_is)
    else:
        assert torch.equal(as_is, rounded)
    xr = _round_tf32(x)  # TF32 values: the same bits with or without x_tf32
    assert torch.equal(vggkern.conv3x3(xr, w, algo=ALGO, allow_tf32=True, x_tf32=True), rounded)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("tile,split", TILE_SPLITS)
def test_chained_pair_equals_unchained(tile, split, device, monkeypatch):
    """conv -> (ReLU, pool) -> conv: rounding the first output in its epilogue and telling
    the second gives the second's plain output bit for bit (random data)."""
    _tile(monkeypatch, tile, split, device)
    x, w1, b1 = _inputs(2, 16, 40, 10, 13, torch.float32, device, channels_last=True, seed=21)
    _, w2, b2 = _inputs(1, 40, 136, 1, 1, torch.float32, device, channels_last=True, seed=22)
    kw = dict(algo=ALGO, allow_tf32=True)
    y1 = vggkern.conv3x3(x, w1, b1, relu=True, pool=True, **kw)
    y1r = vggkern.conv3x3(x, w1, b1, relu=True, pool=True, y_tf32=True, **kw)
    plain = vggkern.conv3x3(y1, w2, b2, relu=True, **kw)
    chained = vggkern.conv3x3(y1r, w2, b2, relu=True, x_tf32=True, **kw)
    assert torch.equal(chained, plain)


@pytest.mark.parametrize("device", DEVICES)
def test_flags_are_checked(device):
    x, w, b = _inputs(1, 8, 16, 5, 5, torch.float16, device, channels_last=True, seed=1)
    for flag in ("x_tf32", "y_tf32"):
        with pytest.raises(ValueError, match=rf"vggkern\.conv3x3: {flag}=True: expected x of dtype float32 \(TF32 "
                                             r"values are float32\), got (torch\.)?float16"):
            vggkern.conv3x3(x, w, b, algo=ALGO, **{flag: True})
        with pytest.raises(ValueError, match=rf"{flag}=True: expected x of dtype float32"):
            torch.ops.vggkern.conv3x3(x, w, b, algo=ALGO, **{flag: True})
        with pytest.raises(TypeError, match=rf"vggkern\.conv3x3: expected {flag} to be a bool, got 1"):
            vggkern.conv3x3(x, w, b, algo=ALGO, **{flag: 1})


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_with_flags(device):
    x, w, b = _inputs(2, 8, 16, 6, 5, torch.float32, device, channels_last=True, seed=13)
    torch.library.opcheck(torch.ops.vggkern.conv3x3.default, (x, w, b, True, True, ALGO, True, True, True))
    torch.library.opcheck(torch.ops.vggkern.conv3x3.default, (x.contiguous(), w, None, False, False, "direct", None,
                                                             False, True))


def _stack(algo):
    torch.manual_seed(5)
    return vggkern.nn.FusedSequential(
        vggkern.Conv3x3(3, 16, algo=algo), nn.ReLU(inplace=True), vggkern.Conv3x3(16, 24, algo=algo),
        nn.ReLU(inplace=True), vggkern.MaxPool2x2(), vggkern.Conv3x3(24, 32, algo=algo), nn.ReLU(inplace=True),
        nn.MaxPool2d(2, 2), vggkern.Conv3x3(32, 40, algo=algo), nn.ReLU(inplace=True))


def _record_calls(monkeypatch):
    calls = []
    op = vggkern.nn._conv3x3_op

    def recording(*args):
        calls.append(tuple(args[7:9]))  # (x_tf32, y_tf32)
        return op(*args)

    monkeypatch.setattr(vggkern.nn, "_conv3x3_op", recording)
    return calls


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels_last", [True, False])
def test_fused_sequential_chains_tf32_convs(channels_last, device, emulator, monkeypatch):
    """FusedSequential rounds each TF32 conv's output where a conv follows (through ReLU and
    pools) and tells that conv: the same output bit for bit as without the chain; the
    first conv (C = 3, direct here) and the last are not rounded."""
    model = _stack(ALGO).to(device)
    model[0].algo = "direct"
    x = torch.randn(2, 3, 12, 14, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    calls = _record_calls(monkeypatch)
    with torch.no_grad(), torch.backends.cudnn.flags(allow_tf32=True):
        chained = model(x)
        assert calls == [(False, False), (False, True), (True, True), (True, False)]
        model.tf32_chain = False
        calls.clear()
        plain = model(x)
        assert calls == [(False, False)] * 4
        calls.clear()  # a slice keeps the setting (nn.Sequential's slice is a new instance)
        assert not model[:].tf32_chain and torch.equal(model[:](x), plain)
        assert calls == [(False, False)] * 4
    assert torch.equal(chained, plain)
    with torch.no_grad(), torch.backends.cudnn.flags(allow_tf32=False):  # no TF32 math: no chain
        model.tf32_chain = True
        for m in model:
            if isinstance(m, vggkern.Conv3x3):
                m.algo = "direct"
        calls.clear()
        model(x)
        assert calls == [(False, False)] * 4


@pytest.mark.parametrize("device", DEVICES)
def test_a_hook_breaks_the_chain(device, emulator, monkeypatch):
    """A hooked layer between two convs sees (and may change) what passes it: the conv before
    it does not round, the conv after it rounds its input itself."""
    model = _stack(ALGO).to(device)
    model[4].register_forward_hook(lambda m, i, o: o * 1.0)  # the MaxPool2x2 between conv 2 and conv 3
    x = torch.randn(1, 3, 12, 12, device=device).contiguous(memory_format=torch.channels_last)
    calls = _record_calls(monkeypatch)
    with torch.no_grad(), torch.backends.cudnn.flags(allow_tf32=True):
        chained = model(x)
        assert calls == [(False, True), (True, False), (False, True), (True, False)]
        model.tf32_chain = False
        plain = model(x)
    assert torch.equal(chained, plain)


@pytest.mark.parametrize("device", DEVICES)
def test_chain_under_autograd(device, emulator):
    """With gradients the chain runs the op's Function (rounding passed through as the
    identity): the same forward, and gradients close to the unchained ones (the second
    conv's weight gradient sees its x rounded)."""
    model = _stack(ALGO).to(device)
    x = torch.randn(1, 3, 12, 12, device=device).contiguous(memory_format=torch.channels_last)
    out, grads = {}, {}
    with torch.backends.cudnn.flags(allow_tf32=True):
        for chain in (True, False):
            model.tf32_chain = chain
            model.zero_grad()
            xc = x.clone().requires_grad_()
            out[chain] = model(xc)
            out[chain].square().sum().backward()
            grads[chain] = [xc.grad] + [m.weight.grad for m in model if isinstance(m, vggkern.Conv3x3)]
    assert torch.equal(out[True], out[False])
    for a, b in zip(grads[True], grads[False]):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
