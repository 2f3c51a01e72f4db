"""x as implicit_gemm reads it: torch.ops.vggkern._tensor_core_input (kernels/
tensor_core_input.cuh), the one-pass layout conv3x3 makes where x is not channels_last
with C a multiple of 8 already: (N, Cp, H, W) channels_last, zeros past C, values as they
are, from any strides; its global traffic (each byte once, whole sectors), and where
conv3x3 runs it. CPU through the emulator, and on the GPU when there is one."""
import pytest
import torch

import vggkern
from test_conv3x3 import DEVICES, _check, _inputs
from vggkern import _C

OP = torch.ops.vggkern._tensor_core_input
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def _want(x):
    """The reference: x's values at [:, :C] of a zero (N, Cp, H, W) tensor, channels_last."""
    n, c, h, w = x.shape
    out = torch.zeros(n, (c + 7) // 8 * 8, h, w, dtype=x.dtype, device=x.device)
    out[:, :c] = x
    return out.contiguous(memory_format=torch.channels_last)


def _counted(f):
    _C.emu_reset_global_stats()
    y = f()
    return _C.emu_global_stats(), y


def _views(x):
    """x in the layouts a caller may hand conv3x3: NCHW, channels_last, a strided view
    (every other column of a wider tensor), a misaligned one (storage offset of one
    element), and C outermost (strides no memory format names)."""
    n, c, h, w = x.shape
    buffer = torch.empty(x.numel() + 1, dtype=x.dtype, device=x.device)
    return {
        "nchw": x.contiguous(),
        "channels_last": x.contiguous(memory_format=torch.channels_last),
        "strided": torch.cat([x, x], dim=3)[..., ::2].copy_(x),
        "misaligned": buffer[1:].view(n, c, h, w).copy_(x),
        "C outermost": x.transpose(0, 1).contiguous().transpose(0, 1),
    }


# Every element where the reference puts it, for every dtype, C padded or not (3: VGG's
# first layer, 24: an odd number of 16-byte chunks in 16 bits, 64), every layout, planes
# of 16-byte runs or not (5 x 7), NaN and Inf kept, -0.0 kept (a copy, no arithmetic),
# padding +0.0.
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n,c,h,w", [(2, 3, 5, 7), (1, 24, 6, 6), (2, 64, 4, 9), (3, 8, 1, 1)])
def test_layout(n, c, h, w, dtype, device):
    g = torch.Generator().manual_seed(c * h + w)
    x = (torch.randn(n, c, h, w, generator=g) * 4).to(dtype)
    x[0, 0, 0, 0] = float("nan")
    x[-1, c - 1, h - 1, w - 1] = float("-inf")
    x[0, c // 2, h // 2, w // 2] = -0.0
    x = x.to(device)
    for name, v in _views(x).items():
        out = OP(v)
        want = _want(x)
        assert out.shape == want.shape and out.dtype == dtype and out.device == x.device, name
        assert out.is_contiguous(memory_format=torch.channels_last), name
        assert out.data_ptr() % 16 == 0, name
        assert torch.equal(out.nan_to_num(7.0), want.nan_to_num(7.0)), name
        assert out.isnan().sum() == 1, name
        bits = out.view(torch.int16 if dtype != torch.float32 else torch.int32)
        assert bits[:, c:].eq(0).all(), name  # padding is +0.0, all bits zero
        assert bits[0, c // 2, h // 2, w // 2] != 0, name  # -0.0 stays negative


# The kernel's other variants, at small sizes: int64 offsets (VGGKERN_FORCE_INT64_INDEX),
# the grid-stride loop's later trips (VGGKERN_MAX_GRID_BLOCKS=1: one block for all items),
# and a last tile of pixels only partly inside (N*H*W = 3*5*7 = 105, tiles of 16 and 32).
@pytest.mark.parametrize("env", [{"VGGKERN_FORCE_INT64_INDEX": "1"}, {"VGGKERN_MAX_GRID_BLOCKS": "1"}],
                         ids=["int64", "grid_stride"])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("c", [3, 16])
def test_variants(env, c, device, monkeypatch):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    x = torch.randn(3, c, 5, 7, generator=torch.Generator().manual_seed(c)).half().to(device)
    assert torch.equal(OP(x), _want(x))


def test_empty_and_bad_input():
    out = OP(torch.empty(0, 3, 4, 4))
    assert out.shape == (0, 8, 4, 4) and out.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match=r"vggkern\._tensor_core_input: expected x to be a 4-D tensor"):
        OP(torch.randn(3, 4, 4))
    with pytest.raises(ValueError, match=r"vggkern\._tensor_core_input: expected x of dtype"):
        OP(torch.zeros(1, 3, 4, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"expected x with at least one channel"):
        OP(torch.empty(1, 0, 4, 4))
    # torch.compile traces it through its fake, which says the same
    fake = OP(torch.empty(2, 3, 5, 7, device="meta", dtype=torch.float16))
    assert fake.shape == (2, 8, 5, 7) and fake.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match=r"expected x to be a 4-D tensor"):
        OP(torch.empty(3, 4, 4, device="meta"))


# Global traffic (the kernel's header): each byte of x read once and of out written once.
# NCHW with 16x16 planes: whole sectors both ways (a warp's load reads 16 or 32
# consecutive pixels of a plane, aligned; its stores are whole pixel rows or sectors).
# C = 3 channels_last (VGG's input, padded to 8): the stores whole (32 pixels x 16 bytes
# in a run); the loads read 3 elements of every 3 per pixel, the warp's 32 lanes 6 bytes
# apart: a load instruction touches 3x the sectors of its bytes (each sector read by
# three instructions in a row, from L1 after the first).
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("c,channels_last", [(64, False), (3, False), (24, False), (3, True)],
                         ids=["nchw64", "nchw3", "nchw24", "nhwc3"])
def test_traffic(c, channels_last, dtype):
    x = torch.randn(2, c, 16, 16).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    stats, out = _counted(lambda: OP(x))
    (name, s), = stats.items()
    assert name == "tensor_core_input_kernel", stats
    assert s["load"]["bytes"] == x.nbytes and s["store"]["bytes"] == out.nbytes, stats
    if channels_last:
        assert s["load"]["sectors"] == 3 * s["load"]["ideal"], stats
    else:
        assert s["load"]["sectors"] == s["load"]["ideal"], stats
    # 16-bit C = 24: a pixel's 48 bytes are three 16-byte chunks, one lane each, a warp's
    # 32 lanes 48 bytes apart on one chunk: a sector per lane, 2x the ideal per store
    # (each sector's other half written by the store of the next chunk)
    odd = c == 24 and dtype != torch.float32
    assert s["store"]["sectors"] == (2 if odd else 1) * s["store"]["ideal"], stats


# conv3x3 "implicit_gemm" lays x out with this kernel where x is not ready as it is (NCHW;
# C not a multiple of 8; a strided or misaligned view), and not otherwise (channels_last,
# C % 8 == 0, aligned: read in place); the outputs are the same bit for bit in every case.
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize("c", [3, 16])
def test_conv3x3_lays_out_x_only_where_needed(c, dtype, device):
    x, wt, b = _inputs(2, c, 16, 6, 10, dtype, device, seed=c)
    ref = None
    for name, v in _views(x).items():
        stats, y = _counted(lambda: vggkern.conv3x3(v, wt, b, relu=True, algo="implicit_gemm", allow_tf32=True))
        if ref is None:
            ref = y
            _check(y, x, wt, b, True, False, algo="implicit_gemm")
        assert torch.equal(y.contiguous(), ref.contiguous()), name
        if device == "cpu":
            ready = name == "channels_last" and c % 8 == 0
            assert ("tensor_core_input_kernel" in stats) == (not ready), (name, list(stats))
            assert "conv3x3_implicit_gemm_kernel" in stats, name
