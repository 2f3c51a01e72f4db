"""Global-memory traffic of every kernel, counted by the emulator (csrc/emu/global_stats.h):
per warp-wide load or store, the 32-byte sectors its lanes' addresses touch against the
least those bytes need ("ideal"). The counts are compared with what each layout implies,
worked out here from the tiling in each kernel's header: whole sectors where the lanes
read or write consecutive elements, and the documented multiple where they do not. CPU
only (the GPU does not count); tests/emu/test_global_sectors.cpp checks the counting."""
import pytest
import torch

import vggkern
from test_conv3x3 import _check, _inputs
from vggkern import _C


def _counted(f):
    _C.emu_reset_global_stats()
    y = f()
    return _C.emu_global_stats(), y


def _whole_sectors(c):
    return c["instructions"] > 0 and c["sectors"] == c["ideal"]


# maxpool2x2 reads each element of x once and writes each of y once, all in whole sectors
# (16-byte runs of consecutive elements per lane, consecutive lanes on consecutive runs).
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_maxpool_moves_each_byte_once_in_whole_sectors(dtype, channels_last):
    x = torch.randn(2, 64, 8, 16) if channels_last else torch.randn(2, 8, 16, 64)
    x = x.to(dtype).contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    stats, y = _counted(lambda: vggkern.maxpool2x2(x))
    (name, s), = stats.items()
    assert name.startswith("maxpool2x2"), stats
    assert s["load"]["bytes"] == x.nbytes and s["store"]["bytes"] == y.nbytes, stats
    assert _whole_sectors(s["load"]) and _whole_sectors(s["store"]), stats
    assert torch.equal(y, torch.nn.functional.max_pool2d(x.float(), 2).to(dtype))


def _taps_inside(h, w):
    """(pixel, tap) pairs of an h x w image whose tap lies inside it (the rest is padding)."""
    return sum((h - abs(dr)) * (w - abs(ds)) for dr in (-1, 0, 1) for ds in (-1, 0, 1))


# implicit_gemm's cp.async reads, per block, its BM pixels' in-image taps (padding is zero
# fill: no read) and its BN channels' weights: x once per K block, the weight once per M
# tile, in either K order (taps inner copies the same bytes in another order); every copy
# is whole sectors (a 16-byte chunk per lane, 4 lanes per 64-byte row of a pixel's
# channels). The epilogue writes y once, in 16-byte vectors of 8 channels.
@pytest.mark.parametrize("tile,k", [("256x64", 64), ("128x128", 128), ("wg128x128", 128), ("wg256x64", 64)])
@pytest.mark.parametrize("pool", [False, True], ids=["", "pool"])
@pytest.mark.parametrize("order", ["", "taps_inner"])
def test_implicit_gemm_reads_its_tiles_in_whole_sectors(tile, k, pool, order, monkeypatch):
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", tile)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_SPLIT_K", "1")
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_K_ORDER", order)
    n, c, h, w = 1, 64, 16, 16
    x, wt, b = _inputs(n, c, k, h, w, torch.float16, "cpu", channels_last=True, seed=k)
    wt = wt.contiguous(memory_format=torch.channels_last)  # (K, 3, 3, C): used as it is, no relayout kernel
    stats, y = _counted(lambda: vggkern.conv3x3(x, wt, b, relu=True, pool=pool, algo="implicit_gemm"))
    assert set(stats) == {"conv3x3_implicit_gemm_kernel"}, stats
    s = stats["conv3x3_implicit_gemm_kernel"]
    plan = _C.implicit_gemm_plan(n, c, h, w, k, 2, pool, 132, tile)
    assert plan["splits"] == 1
    x_bytes = n * _taps_inside(h, w) * c * 2
    w_bytes = k * 9 * c * 2
    assert s["cp_async"]["bytes"] == plan["k_blocks"] * x_bytes + plan["m_tiles"] * w_bytes, (plan, stats)
    assert _whole_sectors(s["cp_async"]), stats
    assert s["store"]["bytes"] == y.nbytes and _whole_sectors(s["store"]), stats
    assert _whole_sectors(s["load"]), stats  # the bias


# NCHW calls: implicit_gemm's epilogue writes y NCHW, each channel's share of a tile a run
# of its plane; a lane pair's two 16-byte vectors are one 32-byte sector, so whole
# sectors where a plane is a multiple of 32 bytes (16 x 16, its pool's 8 x 8). Elsewhere
# the widest vectors the planes keep aligned (14 x 14 in fp16: 196 halves, 8 bytes; its
# pool's 7 x 7, single elements); y is written once either way. Split-K's reduce kernel
# writes NCHW y once too, through a shared-memory transpose: 32 consecutive pixels of a
# plane per store, whole sectors on 16 x 16 and its pool's 8 x 8 (it wrote a plane apart
# per lane: 16 sectors per 32 bytes); its reads of the partial sums are whole sectors.
@pytest.mark.parametrize("tile,k", [("256x64", 64), ("128x128", 128), ("wg128x128", 128), ("wg256x64", 64)])
@pytest.mark.parametrize("pool", [False, True], ids=["", "pool"])
@pytest.mark.parametrize("h,split", [(16, "1"), (14, "1"), (16, "2")])
def test_implicit_gemm_nchw_stores(tile, k, pool, h, split, monkeypatch):
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", tile)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_SPLIT_K", split)
    x, wt, b = _inputs(1, 64, k, h, h, torch.float16, "cpu", seed=k)  # NCHW
    stats, y = _counted(lambda: vggkern.conv3x3(x, wt, b, relu=True, pool=pool, algo="implicit_gemm"))
    assert y.is_contiguous()
    name = "conv3x3_implicit_gemm_kernel" if split == "1" else "conv3x3_implicit_gemm_reduce_kernel"
    s = stats[name]
    assert s["store"]["bytes"] == y.nbytes, stats
    if h == 16:
        assert _whole_sectors(s["store"]), stats
    if split == "1":
        # The epilogue's vector width, from its store instructions: n lanes' stores of
        # `width` bytes need at least n / 32 instructions, and fewer than twice that (a
        # tile's edge leaves some lanes idle), so a narrower or wider vector fails.
        width = 16 if h == 16 else (2 if pool else 8)
        lanes = y.nbytes // width
        assert lanes / 32 <= s["store"]["instructions"] < lanes / 16, (width, stats)
    else:
        assert _whole_sectors(s["load"]), stats


# Split-K: each split writes its raw sums (float2 per lane, consecutive channels) once, and
# the reduce kernel reads them once (a warp reads 32 consecutive channels of a pixel's
# partial row, 4 pixels per warp) and the bias once per warp.
def test_implicit_gemm_split_k_traffic(monkeypatch):
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_SPLIT_K", "2")
    n, c, k, h, w = 1, 64, 64, 16, 16
    x, wt, b = _inputs(n, c, k, h, w, torch.float16, "cpu", channels_last=True, seed=2)
    wt = wt.contiguous(memory_format=torch.channels_last)
    stats, y = _counted(lambda: vggkern.conv3x3(x, wt, b, algo="implicit_gemm"))
    partial = 2 * n * h * w * k * 4
    main, reduce = stats["conv3x3_implicit_gemm_kernel"], stats["conv3x3_implicit_gemm_reduce_kernel"]
    assert main["store"]["bytes"] == partial and _whole_sectors(main["store"]), stats
    warps = reduce["store"]["instructions"] // 4  # each warp: 4 x 32 outputs, 32 biases of 2 bytes, 2 partial sums each
    assert warps == n * h * w * k // 128, stats
    assert reduce["load"]["bytes"] == partial + warps * 64 and reduce["load"]["instructions"] == 9 * warps, stats
    assert _whole_sectors(reduce["load"]), stats
    assert reduce["store"]["bytes"] == y.nbytes and _whole_sectors(reduce["store"]), stats


# direct and Winograd write each element of y once, in the widest stores y's layout allows
# (each kernel's header): direct NHWC (K % 8 == 0) a pixel's 8 channels in 16-byte vectors,
# 32 pixels per store: 2 sectors per 32 bytes; direct NCHW a row's 2 pixels as one vector,
# 8 lanes per row of the warp: whole sectors (its pool: single elements, lanes on
# consecutive columns); Winograd NCHW (W % M == 0) a tile's row as one vector, lanes on
# consecutive tiles: whole sectors; Winograd NHWC runs of a sector of channels per tile.
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("pool", [False, True], ids=["", "pool"])
@pytest.mark.parametrize("algo", ["direct", "winograd_f2x2", "winograd_f4x4"])
def test_direct_and_winograd_stores(algo, pool, channels_last, dtype):
    n, c, k, h, w = 1, 8, 32, 32, 32
    x, wt, b = _inputs(n, c, k, h, w, dtype, "cpu", channels_last=channels_last, seed=1)
    stats, y = _counted(lambda: vggkern.conv3x3(x, wt, b, relu=True, pool=pool, algo=algo))
    _check(y, x, wt, b, True, pool, algo=algo)
    name = "conv3x3_direct_kernel" if algo == "direct" else f"conv3x3_{algo}_kernel"
    s = stats[name]["store"]
    assert s["bytes"] == y.nbytes, stats
    if algo != "direct":
        want = 1
    elif channels_last:
        want = 2
    else:
        # the pool's 8 lanes per row write 8 consecutive elements: a sector in fp32, half of one in fp16
        want = 2 if pool and x.element_size() == 2 else 1
    assert s["sectors"] == want * s["ideal"], (want, stats)


# Where no vector fits (direct NHWC with K not a multiple of 8), single elements: every
# lane of a store writes another pixel, 32 sectors for 32 elements.
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_direct_scalar_stores(dtype):
    x, wt, b = _inputs(1, 8, 36, 16, 16, dtype, "cpu", channels_last=True, seed=2)
    stats, y = _counted(lambda: vggkern.conv3x3(x, wt, b, algo="direct"))
    _check(y, x, wt, b, False, False, algo="direct")
    s = stats["conv3x3_direct_kernel"]["store"]
    assert s["bytes"] == y.nbytes and s["sectors"] == 32 * s["instructions"], stats
    assert s["sectors"] == (32 // x.element_size()) * s["ideal"], stats


# Loads in whole sectors where the layout allows: channels-fastest staging (NHWC, fp32: a
# chunk of 8 channels is one sector) in direct and Winograd; Winograd's U slab (K fastest).
@pytest.mark.parametrize("algo", ["direct", "winograd_f2x2", "winograd_f4x4"])
def test_nhwc_staging_reads_whole_sectors(algo):
    x, wt, b = _inputs(1, 8, 32, 32, 32, torch.float32, "cpu", channels_last=True, seed=3)
    stats, _ = _counted(lambda: vggkern.conv3x3(x, wt, b, algo=algo))
    name = "conv3x3_direct_kernel" if algo == "direct" else f"conv3x3_{algo}_kernel"
    assert _whole_sectors(stats[name]["load"]), stats
