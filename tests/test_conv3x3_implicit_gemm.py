"""conv3x3 algo="implicit_gemm": the tensor-core kernel (mma.sync, ldmatrix, cp.async),
run through the emulator on CPU and on the GPU when there is one. The shared accuracy
cases run in test_conv3x3.py (every algorithm of K_FACTOR: fp16, bf16 and fp32 as TF32
for this one); here: its own tiles, stores, padding, the TF32 policy, refusals and the
GPU/emulator agreement."""
import itertools
import math
import os
import re

import pytest
import torch

import vggkern
from test_conv3x3 import DEVICES, _check, _inputs, _round_tf32, _truncate_tf32

from benchmarks.tiles import is_wgmma

TF32_REFUSAL = (r'vggkern\.conv3x3: algo "implicit_gemm": float32 on tensor cores needs TF32: allow it with '
                r'torch\.backends\.cudnn\.allow_tf32 = True or allow_tf32=True, or use algo="direct"')

ALGO = "implicit_gemm"
HALF_DTYPES = [torch.float16, torch.bfloat16]


@pytest.fixture
def rule_tiles():
    """No measured tile entries while the test runs (the build's tables come from a GPU
    run and name VGG's layers): the plan is the rule's."""
    vggkern.set_tuned_tables({"source": "none: the rule", "tiles": [], "auto": []})
    yield
    vggkern.set_tuned_tables(None)


# Both default tiles (256 x 64 for K <= 64, 128 x 128 above), K that is and is not a multiple of
# 8 (16-byte or scalar stores), C a multiple of 8 or padded, 128-row M tiles that span
# image rows and images (and pool windows of odd-sized maps), the last one partial.
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n,c,k,h,w", [(1, 16, 64, 8, 16), (2, 8, 136, 9, 17), (1, 24, 61, 16, 33),
                                       (1, 5, 200, 10, 6), (3, 8, 24, 7, 11)])
@pytest.mark.parametrize("relu,pool", [(False, False), (True, True), (False, True)])
def test_tiles_and_stores(n, c, k, h, w, relu, pool, device):
    x, wt, b = _inputs(n, c, k, h, w, torch.float16, device, channels_last=True, seed=n + c + k)
    _check(vggkern.conv3x3(x, wt, b, relu=relu, pool=pool, algo=ALGO), x, wt, b, relu, pool, algo=ALGO)


# NaN and Inf as torch has them, through every epilogue: the fused one of mma.sync's tiles,
# of wgmma's (wg128x128) and of wgmma_t's transposed accumulators (wg256x64), and split-K's
# reduction kernel (forced S). x[0, 3, 6, 7]'s NaN covers rows 5-7 of the conv output, so
# the pool windows of rows 4-5 hold a NaN beside three finite values: the max must keep it
# (torch's rule; fmaxf drops it). b[4]'s NaN fills channel 4: ReLU(NaN) is NaN, not 0.
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("tile,split", [("", ""), ("", "3"), ("wg128x128", ""), ("wg256x64", "")])
@pytest.mark.parametrize("relu,pool", [(False, False), (True, False), (True, True)])
def test_nan_inf_propagate_like_torch(relu, pool, tile, split, device, monkeypatch):
    _skip_without_wgmma(tile, device)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", tile)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_SPLIT_K", split)
    x, w, b = _inputs(2, 8, 16, 11, 13, torch.float16, device, channels_last=True, seed=3)
    x[0, 1, 0, 0] = float("nan")
    x[0, 3, 6, 7] = float("nan")
    x[1, 0, 4, 12] = float("inf")
    x[1, 2, 9, 2] = float("-inf")
    b[4] = float("nan")
    y = vggkern.conv3x3(x, w, b, relu=relu, pool=pool, algo=ALGO)
    assert y.isnan().any()
    _check(y, x, w, b, relu, pool, algo=ALGO)


# The op lays the weight out for the kernels itself (tensor_core_weight: one launch, any
# strides, C zero-padded, fp32 rounded to TF32): every layout of the same values gives the
# same output bit for bit, and Inf/NaN in the weight propagate as torch's do.
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32], ids=str)
def test_weight_of_any_layout(dtype, device):
    x, w, b = _inputs(2, 5, 24, 7, 9, dtype, device, channels_last=True, seed=4)  # C = 5: padded to 8
    want = vggkern.conv3x3(x, w, b, relu=True, algo=ALGO, allow_tf32=True)
    _check(want, x, w, b, True, False, algo=ALGO)
    wide = torch.zeros(24, 10, 3, 3, dtype=dtype, device=device)
    wide[:, ::2] = w
    layouts = {"C outermost": w.transpose(0, 1).contiguous().transpose(0, 1),
               "channels_last": w.contiguous(memory_format=torch.channels_last),
               "C stride 2": wide[:, ::2], "H and W swapped": w.transpose(2, 3).contiguous().transpose(2, 3)}
    for name, wl in layouts.items():  # (channels_last fp16 with C = 8: used as it is, no copy)
        assert torch.equal(wl, w) and wl.stride() != w.stride(), name
        assert torch.equal(vggkern.conv3x3(x, wl, b, relu=True, algo=ALGO, allow_tf32=True), want), name
    if dtype == torch.float16:
        x8, w8, b8 = _inputs(2, 8, 24, 7, 9, dtype, device, channels_last=True, seed=5)
        w8cl = w8.contiguous(memory_format=torch.channels_last)
        y8 = vggkern.conv3x3(x8, w8cl, b8, algo=ALGO)
        assert torch.equal(y8, vggkern.conv3x3(x8, w8, b8, algo=ALGO))
        _check(y8, x8, w8, b8, False, False, algo=ALGO)
    w = w.clone()
    w[3, 1, 1, 1] = float("inf")
    w[5, 0, 0, 2] = float("nan")
    y = vggkern.conv3x3(x, w, b, algo=ALGO, allow_tf32=True)
    assert y[:, 3].isinf().any() and y[:, 5].isnan().all()
    _check(y, x, w, b, False, False, algo=ALGO)


# Every block tile (VGGKERN_IMPLICIT_GEMM_TILE forces one; by default 256 x 64 where
# K <= 64, else 128 x 128) on K that fills its tiles or not, with and without the pool,
# M tiles that span images. wg128x128, wg256x64, wg128x256 (two warpgroups), ws128x256 and
# ws128x128 (warp-specialised: two computing warpgroups and a producer) are the wgmma main
# loops (on CUDA only where the build has sm_90a and the GPU is compute capability 9.0).
TILES = {"128x64": (128, 64), "128x128": (128, 128), "256x128": (256, 128), "256x64": (256, 64),
         "wg128x128": (128, 128), "wg256x64": (256, 64), "wg128x256": (128, 256), "ws128x256": (128, 256),
         "ws128x128": (128, 128)}
WS_TILES = ("ws128x256", "ws128x128")
# The mma.sync tile each wgmma tile is compared with: the one of its shape (wg128x256 and
# ws128x256 have none: 128 x 128, their fallback where wgmma does not run).
WGMMA_TWIN = {"wg128x128": "128x128", "wg256x64": "256x64", "wg128x256": "128x128", "ws128x256": "128x128",
              "ws128x128": "128x128"}


def _skip_without_wgmma(tile, device):
    if is_wgmma(tile) and device == "cuda" and not (
            vggkern.build_info().get("cuda_wgmma") and torch.cuda.get_device_capability() == (9, 0)):
        pytest.skip("wgmma tile: needs an sm_90a build (TORCH_CUDA_ARCH_LIST=9.0a) on a compute capability 9.0 GPU")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("tile", list(TILES))
@pytest.mark.parametrize("k,relu,pool", [(40, True, True), (136, False, False), (264, True, False)])
def test_forced_tiles(tile, k, relu, pool, device, monkeypatch):
    _skip_without_wgmma(tile, device)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", tile)
    if k == 264:  # the emulator lands cp.async at issue (see test_wgmma_matches_mma_sync_bit_for_bit)
        monkeypatch.setenv("VGGKERN_EMU_CP_ASYNC", "eager")
    x, w, b = _inputs(3, 16, k, 13, 15, torch.bfloat16, device, channels_last=True, seed=k)
    _check(vggkern.conv3x3(x, w, b, relu=relu, pool=pool, algo=ALGO), x, w, b, relu, pool, algo=ALGO)


# The implicit_gemm overrides (forced tile, NCHW y's path, K order) refuse a value they do not
# know with an error naming the variable, whatever the shape (C = 8: K runs taps outer
# there anyway) and on an NCHW call (its x laid out first); a removed one (x's path through
# L1) refuses any value.
@pytest.mark.parametrize("var,value,message", [
    ("VGGKERN_IMPLICIT_GEMM_TILE", "64x64", "VGGKERN_IMPLICIT_GEMM_TILE must be 128x64, 128x128, 256x128, 256x64, "
                                            "wg128x128, wg256x64, wg128x256, ws128x256 or ws128x128 \\(or wgmma, "
                                            "wgmma-wide, "
                                            "wgmma-ws\\), "
                                            "got '64x64'"),
    ("VGGKERN_IMPLICIT_GEMM_NCHW_Y", "nhwc", "VGGKERN_IMPLICIT_GEMM_NCHW_Y must be \"direct\" or \"convert\", "
                                             "got 'nhwc'"),
    ("VGGKERN_IMPLICIT_GEMM_K_ORDER", "channels", "VGGKERN_IMPLICIT_GEMM_K_ORDER must be \"taps_inner\" or "
                                                  "\"taps_outer\", got 'channels'"),
    ("VGGKERN_IMPLICIT_GEMM_X_CACHE", "l1", "VGGKERN_IMPLICIT_GEMM_X_CACHE was removed .*unset it, got 'l1'")])
def test_overrides_must_be_valid(var, value, message, monkeypatch):
    monkeypatch.setenv(var, value)
    x, w, b = _inputs(1, 8, 8, 4, 4, torch.float16, "cpu", seed=0)
    with pytest.raises(ValueError, match=message):
        vggkern.conv3x3(x, w, b, algo=ALGO)


# NCHW calls: the kernel's epilogue writes y NCHW itself (no NHWC y, no conversion pass
# after it), bit for bit the channels_last call's values and the conversion path's
# (VGGKERN_IMPLICIT_GEMM_NCHW_Y=convert): every epilogue tile layout (mma.sync's, wgmma's
# and wgmma_t's transposed one), with and without the pool, split-K's reduce kernel, planes
# stored in the widest vectors they keep aligned: 16 bytes (Ho * Wo a multiple of 8 halves
# or 4 floats: 8 x 12, and 14 x 14 in fp32), 8 bytes (14 x 14 in 16 bits), 2 elements (6 x
# 5, its pool's 3 x 2), single ones (7 x 7, 9 x 7); M tiles that span images, C padded, K
# that does not fill its tile.
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("tile,split", [("", ""), ("", "3"), *((t, "") for t in TILES), ("wg128x128", "2")])
@pytest.mark.parametrize("dtype", HALF_DTYPES + [torch.float32], ids=str)
def test_nchw_output_written_by_the_kernel(tile, split, dtype, device, monkeypatch):
    _skip_without_wgmma(tile, device)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", tile)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_SPLIT_K", split)
    for n, c, k, h, w in [(3, 8, 72, 8, 12), (2, 16, 40, 14, 14), (1, 5, 136, 9, 7), (5, 8, 24, 6, 5)]:
        x, wt, b = _inputs(n, c, k, h, w, dtype, device, seed=n * k)
        for relu, pool in [(False, False), (True, True)]:
            def conv(x):
                return vggkern.conv3x3(x, wt, b, relu=relu, pool=pool, algo=ALGO, allow_tf32=True)

            y = conv(x)
            assert y.is_contiguous()
            assert torch.equal(y, conv(x.contiguous(memory_format=torch.channels_last)))
            monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_NCHW_Y", "convert")
            assert torch.equal(y, conv(x))
            monkeypatch.delenv("VGGKERN_IMPLICIT_GEMM_NCHW_Y")
            _check(y, x, wt, b, relu, pool, algo=ALGO)


# K order (the kernel's header): tap by tap (the default), or, where C is a multiple of the
# 64-byte slice (32 halves, 16 floats), channel slice by channel slice with the 9 taps of
# each in turn (VGGKERN_IMPLICIT_GEMM_K_ORDER=taps_inner). With small integers every fp32
# sum is exact in any order, so both must give exactly the float64 result rounded once to
# the dtype: a wrong tap, channel or pixel offset in either walk (the taps' row step, the
# next slice's first tap, a split-K block that starts mid-slice: 18 slices over 4 or 7
# splits) changes it. Every tile, pooled and not, images spanning M tiles, maps narrower
# than a tile.
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("tile,split", [("", ""), ("", "4"), ("", "7"), *((t, "") for t in TILES),
                                        ("wg128x256", "4"), ("wg256x64", "7")])
@pytest.mark.parametrize("dtype,c", [(torch.float16, 64), (torch.bfloat16, 32), (torch.float32, 32)], ids=str)
def test_k_orders_sum_the_same_products(tile, split, dtype, c, device, monkeypatch):
    _skip_without_wgmma(tile, device)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", tile)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_SPLIT_K", split)
    g = torch.Generator().manual_seed(c + len(tile))
    x = torch.randint(-3, 4, (3, c, 9, 13), generator=g).to(dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randint(-2, 3, (72, c, 3, 3), generator=g).to(dtype)
    b = torch.randint(-5, 6, (72,), generator=g).to(dtype)
    x, w, b = x.to(device), w.to(device), b.to(device)
    for relu, pool in [(False, False), (True, True)]:
        want = torch.nn.functional.conv2d(x.double(), w.double(), b.double(), padding=1)
        want = torch.nn.functional.max_pool2d(want.relu(), 2) if pool else want
        want = want.to(dtype)
        for order in ["taps_outer", "taps_inner", ""]:
            monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_K_ORDER", order)
            y = vggkern.conv3x3(x, w, b, relu=relu, pool=pool, algo=ALGO, allow_tf32=True)
            assert torch.equal(y, want), (order, relu, pool)


# The wgmma policies (VGGKERN_IMPLICIT_GEMM_TILE=wgmma | wgmma-wide | wgmma-ws: the
# benchmarks time whole networks on wgmma with them) pick a tile per layer by K, over the
# measured table.
@pytest.mark.parametrize("policy", ["wgmma", "wgmma-wide", "wgmma-ws"])
def test_wgmma_policies_pick_the_tile_per_layer(policy, monkeypatch, rule_tiles):
    from vggkern import _C

    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", policy)
    wide = {"wgmma": "wg128x128", "wgmma-wide": "wg128x256", "wgmma-ws": "ws128x256"}[policy]
    narrow = "ws128x128" if policy == "wgmma-ws" else "wg128x128"
    for k, want in [(40, "wg256x64"), (64, "wg256x64"), (65, narrow), (255, narrow), (256, wide), (512, wide)]:
        assert _C.implicit_gemm_plan(64, 256, 28, 28, k, 2, False, 132)["tile"] == want, k
    x, w, b = _inputs(1, 16, 264, 6, 7, torch.float16, "cpu", channels_last=True, seed=2)
    _check(vggkern.conv3x3(x, w, b, relu=True, pool=True, algo=ALGO), x, w, b, True, True, algo=ALGO)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", "")  # the rule: wgmma-wide's where wgmma runs
    assert _C.implicit_gemm_plan(64, 256, 28, 28, 512, 2, False, 132)["tile"] == "wg128x256"
    assert _C.implicit_gemm_plan(64, 256, 28, 28, 512, 2, False, 132, "", 0, False)["tile"] == "128x128"


# Without a table entry the plan takes, where wgmma runs, the tile the measured table holds
# for each K it measured (wgmma-wide's), and mma.sync's rule elsewhere or where that tile's
# shared memory does not fit.
def test_the_rule_is_wgmma_wide_where_wgmma_runs(rule_tiles, monkeypatch):
    from vggkern import _C

    kib = 1024
    for k, wgmma_tile, mma_sync_tile in [(8, "wg256x64", "256x64"), (64, "wg256x64", "256x64"),
                                         (65, "wg128x128", "128x128"), (255, "wg128x128", "128x128"),
                                         (256, "wg128x256", "128x128"), (4096, "wg128x256", "128x128")]:
        for elt in (2, 4):  # fp16/bf16, and fp32 as TF32 (which takes the same tile)
            assert _C.implicit_gemm_plan(2, 40, 9, 11, k, elt, False, 132)["tile"] == wgmma_tile, (k, elt)
            assert _C.implicit_gemm_plan(2, 40, 9, 11, k, elt, False, 132, "", 0, False)["tile"] == mma_sync_tile
            # 95 KiB: under every wgmma tile's (96-144 KiB), over 256x64's and 128x128's (80, 68)
            assert _C.implicit_gemm_plan(2, 40, 9, 11, k, elt, False, 132, "", 95 * kib)["tile"] == mma_sync_tile
    # The op runs it (through the emulator, which answers as a compute capability 9.0 GPU):
    # at K = 256 wg128x256 copies x once (one K block), 128x128 twice; the weight once per
    # M tile (2: 256 pixels), each 64-byte row whole (16 x 16 pixels: 196 x 9 taps inside).
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_SPLIT_K", "1")
    x, w, b = _inputs(1, 64, 256, 16, 16, torch.float16, "cpu", channels_last=True, seed=4)
    w = w.contiguous(memory_format=torch.channels_last)  # (K, 3, 3, C): used as it is
    _C.emu_reset_global_stats()
    _check(vggkern.conv3x3(x, w, b, relu=True, algo=ALGO), x, w, b, True, False, algo=ALGO)
    x_bytes, w_bytes = sum((16 - abs(dr)) * (16 - abs(ds)) for dr in (-1, 0, 1) for ds in (-1, 0, 1)) * 64 * 2, \
        256 * 9 * 64 * 2
    assert _C.emu_global_stats()["conv3x3_implicit_gemm_kernel"]["cp_async"]["bytes"] == x_bytes + 2 * w_bytes


def test_a_plan_for_no_work_is_refused():
    # N, C, H, W or K = 0, or a pool of H = 1: no launch has such a plan (the op returns an
    # empty y first); asked for one, the planner says why (it divided by zero: SIGFPE).
    from vggkern import _C

    for shape, pool in [((0, 64, 14, 14, 64), False), ((1, 0, 4, 4, 8), False), ((1, 64, 4, 4, 0), False),
                        ((1, 64, 1, 1, 64), True)]:
        with pytest.raises(ValueError, match=r"plan needs N, C, H, W, K >= 1"):
            _C.implicit_gemm_plan(*shape, 2, pool, 132)


# The wgmma main loops read the same swizzled stages through matrix descriptors instead
# of ldmatrix, and sum each output over K in the same order (C first, then k16 steps in
# K order, each step's 16 products rounded once): on the emulator their results equal
# mma.sync's tile (of the same shape, or 128 x 128 for wg128x256) bit for bit, for data
# that rounds (a wrong row, column, swizzle or K offset in the descriptor decoding, in
# wg256x64's transposed accumulators or in wg128x256's second warpgroup, would not). Shapes: K tiles cut, C padded (3 -> 8) and not a multiple of the 32-half
# slice, pooled and odd maps, images spanning M tiles, split-K. Both ends of cp.async's
# landing window (VGGKERN_EMU_CP_ASYNC): at the wait, and at the issue, which is what
# shows a stage refilled while a wgmma that reads it is still pending (refilling one
# slice too early fails here). The emulator also fails any wgmma read of bytes whose
# writer has not executed fence.proxy.async since (dropping the main loop's fence fails
# every wgmma case here).
# float32 (TF32: k8 steps of 8 floats, the same 32 bytes): both round x and the weight with
# cvt.rna's rule (mma.sync x in registers; wgmma x in shared memory, the weight in the op),
# so arbitrary data gives the same bits.
@pytest.mark.parametrize("cp_async", ["wait", "eager"])
@pytest.mark.parametrize("tile", list(WGMMA_TWIN))
@pytest.mark.parametrize("dtype", HALF_DTYPES + [torch.float32], ids=str)
@pytest.mark.parametrize("n,c,k,h,w,relu,pool,split", [
    (2, 40, 136, 9, 11, True, True, ""), (1, 3, 64, 14, 10, False, False, ""), (3, 64, 200, 7, 13, True, False, ""),
    (1, 96, 128, 12, 12, False, True, "3")])
def test_wgmma_matches_mma_sync_bit_for_bit(tile, cp_async, dtype, n, c, k, h, w, relu, pool, split, monkeypatch):
    monkeypatch.setenv("VGGKERN_EMU_CP_ASYNC", cp_async)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_STREAM_K", "off")  # whole tiles: stream-K adds in another order (its own test)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_SPLIT_K", split)
    x, wt, b = _inputs(n, c, k, h, w, dtype, "cpu", channels_last=True, seed=n + c + k)
    out = {}
    for t in (WGMMA_TWIN[tile], tile):
        monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", t)
        out[t] = vggkern.conv3x3(x, wt, b, relu=relu, pool=pool, algo=ALGO, allow_tf32=True)
    assert torch.equal(out[WGMMA_TWIN[tile]], out[tile])
    _check(out[tile], x, wt, b, relu, pool, algo=ALGO)


# The ws tiles are persistent where y is NHWC: at most one block per SM (here forced down with
# VGGKERN_IMPLICIT_GEMM_GRID, so each block takes several work items in turn; ws128x128's
# two computing warpgroups take them in turn too, ping-pong, ordered by their turn
# barriers), its producer copying the next item's slices while the consumers store the
# current one's outputs straight from the accumulators (pairs of channels; with the pool,
# a window's max gathered by shuffles in torch's order). Bit for bit mma.sync's 128 x 128 (its
# epilogue through shared memory) over grids that divide the items or not, K odd (single
# stores) and cut, the pool with odd maps, split-K items, both cp.async landings; an NCHW y
# runs one block per item with the shared-memory epilogue (test_nchw_output_written_by_the_kernel).
@pytest.mark.parametrize("tile", WS_TILES)
@pytest.mark.parametrize("cp_async", ["wait", "eager"])
@pytest.mark.parametrize("dtype", HALF_DTYPES + [torch.float32], ids=str)
@pytest.mark.parametrize("grid,n,c,k,h,w,relu,pool,split", [
    ("1", 2, 40, 136, 9, 11, True, True, ""), ("2", 3, 24, 300, 12, 10, False, False, ""),
    ("3", 2, 16, 257, 13, 7, True, False, ""), ("2", 1, 96, 64, 12, 12, False, True, "3")])
def test_persistent_ws_tile_matches_mma_sync(tile, grid, cp_async, dtype, n, c, k, h, w, relu, pool, split,
                                             monkeypatch):
    from vggkern import _C

    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_STREAM_K", "off")  # whole tiles: stream-K adds in another order (its own test)
    monkeypatch.setenv("VGGKERN_EMU_CP_ASYNC", cp_async)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_SPLIT_K", split)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_GRID", grid)
    x, wt, b = _inputs(n, c, k, h, w, dtype, "cpu", channels_last=True, seed=n + c + k)
    plan = _C.implicit_gemm_plan(n, c, h, w, k, x.element_size(), pool, 132, tile)
    assert plan["grid"] == int(grid) and plan["blocks"] > int(grid)  # the knob's grid, several items per block
    out = {}
    for t in ("128x128", tile):
        monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", t)
        out[t] = vggkern.conv3x3(x, wt, b, relu=relu, pool=pool, algo=ALGO, allow_tf32=True)
    assert torch.equal(out["128x128"], out[tile])
    _check(out[tile], x, wt, b, relu, pool, algo=ALGO)


# Stream-K (csrc/common/stream_k.h; forced here with VGGKERN_IMPLICIT_GEMM_STREAM_K=on): a
# persistent ws tile's blocks take equal ranges of the tiles' K slices, so a tile may be
# computed in parts by consecutive blocks; the part that arrives last adds the others'
# sums (the workspace's fixup slots, announced by an arrival counter) in K order and runs
# the epilogue. On exact sums (small integers) that is mma.sync's output bit for bit:
# tiles in 2 and 3 parts (ranges shorter than a tile), several segments per block, the
# pool (window and slab order), K cut and odd (single stores), staged tensor stores and
# pairs, tensor loads and cp.async (each y NHWC case both ways). On random data, within
# the float64 bounds, and the same bits on every run (the K order of the parts, whichever
# finishes). An NCHW y has no persistent grid (one block per item): stream-K does not
# apply. ws128x256's alone: ws128x128 keeps whole tiles (its items are half as long; the
# plan's test below).
@pytest.mark.parametrize("tile", ["ws128x256"])
@pytest.mark.parametrize("dtype", HALF_DTYPES + [torch.float32], ids=str)
@pytest.mark.parametrize("grid,n,c,k,h,w,relu,pool,layout", [
    ("3", 2, 64, 136, 9, 11, True, False, "nhwc"), ("5", 3, 96, 300, 6, 10, False, True, "nhwc"),
    ("7", 1, 64, 257, 12, 12, True, False, "nhwc"), ("2", 2, 64, 72, 10, 14, True, True, "nhwc"),
    ("3", 2, 64, 136, 9, 11, True, True, "nchw")])
def test_stream_k_matches_whole_tiles(tile, dtype, grid, n, c, k, h, w, relu, pool, layout, monkeypatch):
    from vggkern import _C

    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_STREAM_K", "on")
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_GRID", grid)
    plan = _C.implicit_gemm_plan(n, c, h, w, k, torch.tensor([], dtype=dtype).element_size(), pool, 132, tile)
    assert plan["persistent"] and plan["sk_tiles"] > 0 and plan["max_parts"] >= 2 and plan["splits"] == 1
    g = torch.Generator().manual_seed(n + c + k)
    cl = layout == "nhwc"
    x = torch.randint(-3, 4, (n, c, h, w), generator=g).to(dtype)
    x = x.contiguous(memory_format=torch.channels_last) if cl else x
    wt = torch.randint(-2, 3, (k, c, 3, 3), generator=g).to(dtype)
    b = torch.randint(-5, 6, (k,), generator=g).to(dtype)
    x_tf32 = dtype == torch.float32  # small integers are TF32 values: a chain's x, which the tensor loads take
    out = {}
    tiles = plan["m_tiles"] * plan["k_blocks"]  # what the launch records: its schedule, or whole tiles (NCHW y)
    for t, tma in [("128x128", None), (tile, None)] + ([(tile, "off")] if cl else []):  # copies: as unset, cp.async
        monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", t)
        if tma:
            monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TMA", tma)
        out[t, tma] = vggkern.conv3x3(x, wt, b, relu=relu, pool=pool, algo=ALGO, allow_tf32=True, x_tf32=x_tf32)
        assert torch.equal(out["128x128", None], out[t, tma]), (t, tma)
        if t == tile:
            ran = _C.implicit_gemm_last_copies()
            assert ran["stream_k"] == (f"{plan['sk_tiles']} of {tiles} tiles on {plan['grid']} blocks" if cl else "")
            assert tma != "off" or ran["path"] == "cp_async"
    monkeypatch.delenv("VGGKERN_IMPLICIT_GEMM_TMA", raising=False)
    x, wt, b = _inputs(n, c, k, h, w, dtype, "cpu", channels_last=cl, seed=n + c + k)
    runs = [vggkern.conv3x3(x, wt, b, relu=relu, pool=pool, algo=ALGO, allow_tf32=True) for _ in range(2)]
    assert torch.equal(runs[0], runs[1])
    _check(runs[0], x, wt, b, relu, pool, algo=ALGO)


# Stream-K (ws128x256) by default only where whole tiles leave the grid's last turn short
# (under 90% of its blocks busy) and K is not split by force; VGGKERN_IMPLICIT_GEMM_STREAM_K=off
# keeps whole tiles, other values are refused.
def test_stream_k_where_the_last_turn_is_short(monkeypatch):
    from vggkern import _C

    def plan(n, h, tile="ws128x256", pool=False):
        return _C.implicit_gemm_plan(n, 512, h, h, 512, 2, pool, 132, tile)

    conv5, conv4 = plan(64, 14), plan(64, 28, pool=True)  # 196 tiles (1.48 turns), 784 (5.94)
    assert (conv5["sk_tiles"], conv5["dp_items"], conv5["grid"], conv5["max_parts"]) == (196, 0, 132, 2)
    assert conv5["workspace_floats"] == 2 * 132 * 128 * 256
    assert (conv4["sk_tiles"], conv4["grid"], conv4["workspace_floats"]) == (0, 132, 0)
    batch1 = plan(1, 14)  # 4 tiles: stream-K in place of split-K, 72 blocks of 8 slices
    assert (batch1["splits"], batch1["grid"], batch1["max_parts"]) == (1, 72, 18)
    assert plan(64, 14, "wg128x256")["sk_tiles"] == 0 and not plan(64, 14, "wg128x256")["persistent"]
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_STREAM_K", "on")  # ws128x128: whole tiles, even forced
    assert plan(1, 14, "ws128x128")["sk_tiles"] == 0 and plan(1, 14, "ws128x128")["persistent"]
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_STREAM_K", "")
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_SPLIT_K", "1")
    assert plan(64, 14)["sk_tiles"] == 0
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_SPLIT_K", "")
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_STREAM_K", "off")
    assert plan(64, 14)["sk_tiles"] == 0 and plan(1, 14)["splits"] == 16
    for bad in ("1", "yes", "ON"):
        monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_STREAM_K", bad)
        with pytest.raises(ValueError, match=f"VGGKERN_IMPLICIT_GEMM_STREAM_K must be \"on\" or \"off\" \\(or unset\\), "
                                             f"got '{bad}'"):
            plan(64, 14)


# The ws tiles' copies by the tensor memory accelerator (kernels/tma.cuh; the emulator's model:
# csrc/emu/tma_emu.h): where the call allows them (taps outer, C a multiple of the 64-byte
# slice, x used as it is: 16-bit, or fp32 already TF32; with the pool: H and W even, y
# NHWC, no split-K), one producer thread loads each stage's x rows as an im2col box (128
# pixels of one tap; with the pool, 16 boxes of 8 pixels from views of x's even and odd
# rows, the tile's rows in slab order) and its weight rows as a tile, announced on the
# stage's full mbarrier. The stages then hold what cp.async put there (zeros past the
# images, past K and past the batch), so the output is the cp.async path's
# (VGGKERN_IMPLICIT_GEMM_TMA=off) and mma.sync's bit for bit: M tiles that span rows and
# images, the last one past the batch (pooled: slabs that start past it), K cut, W below a
# box's 8 pixels, persistent grids of 1-3 blocks over several items (the mbarriers' phases
# running on across items), split-K, NCHW y (one block per item, the shared-memory
# epilogue after the tensor loads); pooled, the slab order's window max (torch's NaN
# rule: NaNs and infinities placed in x, so windows hold them in each position). With the
# tensor loads, y's stores by tensor stores from the epilogue's staging where the call
# allows them (16-bit y, NHWC, no split-K, K a multiple of 8: K = 136, 72, 264 here; 300 and
# 257 are not), against the cp.async run's pairs (VGGKERN_IMPLICIT_GEMM_TMA_STORE=off).
@pytest.mark.parametrize("tile", WS_TILES)
@pytest.mark.parametrize("dtype", HALF_DTYPES + [torch.float32], ids=str)
@pytest.mark.parametrize("grid,n,c,k,h,w,relu,pool,split,layout", [
    ("1", 2, 32, 136, 9, 11, True, False, "", "nhwc"), ("2", 3, 64, 300, 5, 13, False, False, "", "nhwc"),
    ("3", 1, 96, 257, 12, 12, True, False, "3", "nhwc"), ("2", 2, 32, 72, 7, 10, True, False, "", "nchw"),
    ("2", 2, 32, 136, 10, 14, True, True, "1", "nhwc"), ("1", 3, 64, 264, 6, 6, False, True, "1", "nhwc"),
    ("1", 5, 32, 257, 4, 2, False, True, "1", "nhwc"), ("2", 2, 96, 72, 12, 20, True, True, "1", "nhwc"),
    ("1", 2, 64, 200, 9, 13, True, False, "1", "nhwc")])
def test_ws_tile_tensor_loads_match_cp_async(tile, grid, dtype, n, c, k, h, w, relu, pool, split, layout,
                                              monkeypatch):
    from vggkern import _C

    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_STREAM_K", "off")  # whole tiles: stream-K adds in another order (its own test)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_SPLIT_K", split)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_GRID", grid)
    x, wt, b = _inputs(n, c, k, h, w, dtype, "cpu", channels_last=layout == "nhwc", seed=n + c + k)
    if pool:  # special values: the windows' max follows torch's rule whatever their place
        g = torch.Generator().manual_seed(n + h)
        spots = torch.randint(0, x.numel(), (8,), generator=g)
        flat = x.permute(0, 2, 3, 1).view(-1)  # x's own memory (NHWC)
        flat[spots[:4]] = float("nan")
        flat[spots[4:]] = float("inf")
    x_tf32 = dtype == torch.float32
    if x_tf32:
        x = _round_tf32(x)  # a chain's x (the previous layer rounded it): used as it is
    plan = _C.implicit_gemm_plan(n, c, h, w, k, x.element_size(), pool, 132, tile)
    assert plan["blocks"] > (int(grid) if layout == "nhwc" else 1)  # several items per block (NCHW: one each)
    assert layout == "nchw" or plan["grid"] == int(grid)  # the knob's (the plan here is NHWC y's)
    out = {}
    stores = ("nchw_tile" if layout == "nchw" else
              "tma" if dtype != torch.float32 and plan["splits"] == 1 and k % 8 == 0 else "pairs")
    for t, tma in [("128x128", ""), (tile, "off"), (tile, "on")]:
        monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", t)
        monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TMA", tma)
        monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TMA_STORE", tma)
        out[t, tma] = vggkern.conv3x3(x, wt, b, relu=relu, pool=pool, algo=ALGO, allow_tf32=True, x_tf32=x_tf32)
        if t == tile:  # the paths the launch took, as a benchmark row records them
            last = _C.implicit_gemm_last_copies()
            assert (last["tile"], last["path"], last["reason"]) == (
                (tile, "tma", "") if tma == "on" else (tile, "cp_async", "VGGKERN_IMPLICIT_GEMM_TMA=off"))
            assert last["stores"] == (stores if tma == "on" or stores != "tma" else "pairs"), last
            assert (last["stores_reason"] == "") == (last["stores"] == "tma"), last
            if tma == "off" and stores == "tma":
                assert last["stores_reason"] == "VGGKERN_IMPLICIT_GEMM_TMA_STORE=off"
    bits = {key: y.view(torch.int32 if dtype == torch.float32 else torch.int16) for key, y in out.items()}
    assert torch.equal(bits["128x128", ""], bits[tile, "off"])  # NaNs too, bit for bit
    assert torch.equal(bits[tile, "off"], bits[tile, "on"])
    if pool:
        assert out[tile, "on"].isnan().any()
    _check(out[tile, "on"], x, wt, b, relu, pool, algo=ALGO)


# VGGKERN_IMPLICIT_GEMM_TMA=on demands the tensor loads: a call that cannot have them is
# refused with the reason (never silently timed on cp.async); unset, the same calls run on
# cp.async; other values are refused. Other tiles ignore it.
@pytest.mark.parametrize("why,c,h,w,pool,dtype,layout,env", [
    (r"the fused pool on an odd map \(6 x 7: the even and odd rows' views need H and W even\)", 32, 6, 7, True,
     torch.float16, "nhwc", {}),
    (r"the fused pool on an odd map \(5 x 6", 32, 5, 6, True, torch.float16, "nhwc", {}),
    ("the fused pool with y NCHW", 32, 6, 6, True, torch.float16, "nchw", {}),
    ("the fused pool with split-K", 32, 6, 6, True, torch.bfloat16, "nhwc", {"VGGKERN_IMPLICIT_GEMM_SPLIT_K": "2"}),
    ("K taps inner", 32, 6, 6, False, torch.float16, "nhwc", {"VGGKERN_IMPLICIT_GEMM_K_ORDER": "taps_inner"}),
    ("C = 24, not a multiple of the 32-channel slice", 24, 6, 6, False, torch.bfloat16, "nhwc", {}),
    ("fp32 x not yet TF32", 32, 6, 6, False, torch.float32, "nhwc", {})])
def test_tensor_loads_required_or_refused(why, c, h, w, pool, dtype, layout, env, monkeypatch):
    from vggkern import _C

    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", "ws128x256")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    x, wt, b = _inputs(1, c, 16, h, w, dtype, "cpu", channels_last=layout == "nhwc", seed=c)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TMA", "on")
    with pytest.raises(ValueError, match="VGGKERN_IMPLICIT_GEMM_TMA=on, but this call's ws128x256 cannot copy by "
                                         "tensor loads: " + why):
        vggkern.conv3x3(x, wt, b, pool=pool, algo=ALGO, allow_tf32=True)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TMA", "")
    _check(vggkern.conv3x3(x, wt, b, pool=pool, algo=ALGO, allow_tf32=True), x, wt, b, False, pool, algo=ALGO)
    last = _C.implicit_gemm_last_copies()  # unset: cp.async without an error, and the reason kept
    assert last["tile"] == "ws128x256" and last["path"] == "cp_async" and re.match(why, last["reason"]), last
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", "wg128x256")
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TMA", "on")
    _check(vggkern.conv3x3(x, wt, b, pool=pool, algo=ALGO, allow_tf32=True), x, wt, b, False, pool, algo=ALGO)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TMA", "yes")
    with pytest.raises(ValueError, match="VGGKERN_IMPLICIT_GEMM_TMA must be \"on\", \"off\" or \"unpooled\" "
                                         "\\(or unset\\), got 'yes'"):
        vggkern.conv3x3(x, wt, b, pool=pool, algo=ALGO, allow_tf32=True)


# VGGKERN_IMPLICIT_GEMM_TMA=unpooled (device_run.sh's setting when only the pooled layers'
# tensor loads failed their probe): the pooled calls copy by cp.async, the others as unset,
# as each launch records; either way the output is cp.async's bit for bit.
def test_tensor_loads_unpooled_only(monkeypatch):
    from vggkern import _C

    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", "ws128x256")
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_SPLIT_K", "1")
    x, wt, b = _inputs(2, 32, 40, 6, 10, torch.float16, "cpu", channels_last=True, seed=5)
    for pool in (False, True):
        out = {}
        for tma in ("off", "unpooled"):
            monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TMA", tma)
            out[tma] = vggkern.conv3x3(x, wt, b, relu=True, pool=pool, algo=ALGO)
            ran = _C.implicit_gemm_last_copies()
            want = (("cp_async", "VGGKERN_IMPLICIT_GEMM_TMA=off") if tma == "off" else
                    ("cp_async", "the fused pool (VGGKERN_IMPLICIT_GEMM_TMA=unpooled)") if pool else ("tma", ""))
            assert (ran["path"], ran["reason"]) == want, (tma, pool, ran)
        assert torch.equal(out["off"], out["unpooled"])
        _check(out["unpooled"], x, wt, b, True, pool, algo=ALGO)


@pytest.mark.parametrize("tile", ["ws128x256", "wg128x128", "128x128"])
def test_persistent_grid_must_be_a_positive_integer(tile, monkeypatch):
    # read and checked whatever the tile (as the other knobs), so that a mistyped value is
    # not silently ignored where no persistent tile runs
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", tile)
    x, w, b = _inputs(1, 8, 8, 4, 4, torch.float16, "cpu", channels_last=True, seed=0)
    for bad in ("0", "two", "-3"):
        monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_GRID", bad)
        with pytest.raises(ValueError, match=f"VGGKERN_IMPLICIT_GEMM_GRID must be a positive integer, got '{bad}'"):
            vggkern.conv3x3(x, w, b, algo=ALGO)


# The ws tiles' staged y stores (tensor stores from shared memory) run where the call allows
# them; elsewhere y goes out in pairs, and the launch records why (as a benchmark row does):
# K not a multiple of 8 (y's rows must be 16-byte multiples), split-K (fp32 partial sums),
# fp32 y, NCHW y (the fp32 tile), the knob off. Its other values are refused.
@pytest.mark.parametrize("tile", WS_TILES)
def test_staged_stores_where_allowed_else_why(tile, monkeypatch):
    from vggkern import _C

    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", tile)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_GRID", "1")
    monkeypatch.delenv("VGGKERN_IMPLICIT_GEMM_TMA_STORE", raising=False)
    for k, dtype, layout, split, env, want in [
            (40, torch.float16, "nhwc", "1", "", ("tma", "")),
            (40, torch.bfloat16, "nhwc", "1", "on", ("tma", "")),
            (12, torch.float16, "nhwc", "1", "", ("pairs", "K = 12, not a multiple of 8 (y's rows in 16-byte multiples)")),
            (40, torch.float16, "nhwc", "2", "", ("pairs", "split-K (fp32 partial sums)")),
            (40, torch.float32, "nhwc", "1", "", ("pairs", "fp32 y (float2 stores)")),
            (40, torch.float16, "nchw", "1", "", ("nchw_tile", "y NCHW (one block per item: the fp32 tile in shared "
                                                               "memory, 16-byte stores into y's planes)")),
            (40, torch.float16, "nhwc", "1", "off", ("pairs", "VGGKERN_IMPLICIT_GEMM_TMA_STORE=off"))]:
        monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_SPLIT_K", split)
        monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TMA_STORE", env)
        x, w, b = _inputs(2, 16, k, 5, 6, dtype, "cpu", channels_last=layout == "nhwc", seed=k)
        y = vggkern.conv3x3(x, w, b, relu=True, algo=ALGO, allow_tf32=True)
        last = _C.implicit_gemm_last_copies()
        assert (last["tile"], last["stores"], last["stores_reason"]) == (tile,) + want, (k, dtype, layout, split, env)
        _check(y, x, w, b, True, False, algo=ALGO)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TMA_STORE", "yes")
    with pytest.raises(ValueError, match="VGGKERN_IMPLICIT_GEMM_TMA_STORE must be \"off\" or \"on\", got 'yes'"):
        vggkern.conv3x3(x, w, b, algo=ALGO)


# Split-K (conv3x3_implicit_gemm_plan.h): K_gemm's 64-byte slices split over S blocks
# writing fp32 partials, then the reduction adds them with bias, ReLU and the pool.
# Forced S (VGGKERN_IMPLICIT_GEMM_SPLIT_K), every tile, K odd (scalar partial stores),
# S that does not divide the slices, and S beyond them (capped: no empty split).
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("split,tile", [("2", ""), ("5", "128x128"), ("3", "256x128"), ("64", "128x64"), ("4", "256x64"),
                                        ("3", "wg128x128"), ("4", "wg256x64"), ("2", "wg128x256"),
                                        ("3", "ws128x256"), ("2", "ws128x128")])
@pytest.mark.parametrize("k,relu,pool", [(40, True, True), (137, False, False), (72, True, False)])
def test_split_k(split, tile, k, relu, pool, device, monkeypatch):
    _skip_without_wgmma(tile, device)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_SPLIT_K", split)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", tile)
    x, w, b = _inputs(2, 40, k, 9, 11, torch.float16, device, channels_last=True, seed=k + int(split))
    _check(vggkern.conv3x3(x, w, b, relu=relu, pool=pool, algo=ALGO), x, w, b, relu, pool, algo=ALGO)


# A forced S that does not divide the K slices: ceil(slices / S) slices per split, and only
# the splits those fill (C = 40 in fp16: 12 slices; S = 5 would leave a fifth split with
# none, a block of zeros and S x M x K more workspace), never more splits than slices.
@pytest.mark.parametrize("forced,splits,per_split", [("5", 4, 3), ("7", 6, 2), ("12", 12, 1), ("64", 12, 1)])
def test_split_k_leaves_no_split_empty(forced, splits, per_split, monkeypatch):
    from vggkern import _C

    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_SPLIT_K", forced)
    plan = _C.implicit_gemm_plan(2, 40, 9, 11, 40, 2, True, 132)
    assert plan["slices"] == 12
    assert (plan["splits"], plan["slices_per_split"]) == (splits, per_split)
    assert plan["blocks"] == plan["m_tiles"] * plan["k_blocks"] * splits


@pytest.mark.parametrize("device", DEVICES)
def test_split_k_by_default_where_the_grid_is_small(device, rule_tiles):
    """Without overrides, a layer whose grid has fewer blocks than the GPU has SMs is split
    (VGG's conv5 at batch 1: 8 blocks -> 16 splits of 9 slices), a large one is not, and
    the split result is the conv's, in fp32 via TF32 as well."""
    from vggkern import _C

    def plan(*shape, wgmma=False):  # mma.sync's rule (128 x 128 for K > 64), or wgmma's
        return _C.implicit_gemm_plan(*shape, 132, "", 0, wgmma)

    conv5 = plan(1, 512, 14, 14, 512, 2, False)
    assert (conv5["m_tiles"], conv5["k_blocks"], conv5["slices"]) == (2, 4, 144)
    assert conv5["splits"] == 16 and conv5["slices_per_split"] == 9 and conv5["blocks"] == 128
    conv5 = plan(1, 512, 14, 14, 512, 2, False, wgmma=True)  # wg128x256: 2 x 2 tiles
    assert (conv5["tile"], conv5["k_blocks"], conv5["splits"], conv5["blocks"]) == ("wg128x256", 2, 16, 64)
    assert plan(64, 512, 14, 14, 512, 2, True)["splits"] == 1  # 98 x 4 blocks: no split
    assert plan(1, 8, 14, 14, 512, 2, False)["splits"] == 1  # 3 slices: nothing to split
    small = plan(1, 64, 10, 9, 72, 4, True)  # fp32: 16 floats per slice, 36 slices
    assert small["slices"] == 36 and small["splits"] == 4 and small["slices_per_split"] == 9
    x, w, b = _inputs(1, 64, 72, 10, 9, torch.float32, device, channels_last=False, seed=9)
    _check(vggkern.conv3x3(x, w, b, relu=True, pool=True, algo=ALGO, allow_tf32=True), x, w, b, True, True,
           algo=ALGO)


def test_a_measured_tile_runs_only_where_its_shared_memory_fits():
    """A tile from the measured table that needs more shared memory than the device lets a
    block have (256x128: 136 KiB, where a compute capability 8.6/8.9 GPU allows 99 KiB;
    wg128x256: 144 KiB) gives way to the rule's tile there; where it fits (an H100's 227
    KiB, or no limit given: the emulator) it runs as measured."""
    from vggkern import _C

    shape = {"C": 64, "K": 256, "H": 16, "W": 16, "pool": False, "N": 1, "tf32": False}
    kib = 1024
    try:
        for tile, need in (("256x128", 136 * kib), ("wg128x256", 144 * kib)):
            vggkern.set_tuned_tables({"tiles": [dict(shape, tile=tile)]})

            def plan(optin):
                return _C.implicit_gemm_plan(1, 64, 16, 16, 256, 2, False, 132, "", optin)["tile"]

            assert plan(0) == plan(227 * kib) == plan(need) == tile
            assert plan(need - 1) == plan(99 * kib) == "128x128", tile  # the rule's tile for K > 64
    finally:
        vggkern.set_tuned_tables(None)


def test_k_slices_must_fit_the_kernels_int():
    """The kernel counts 64-byte K slices (9 C elements of 2 or 4 bytes) in int: the plan
    refuses a C past that, by name (with the default 16-way split a split's slice range
    wrapped negative, silently dropping part of the sum), and takes the largest C below."""
    from vggkern import _C

    for element_bytes, per_slice in ((2, 32), (4, 16)):
        c_max = (2**31 - 1) * per_slice // 9 // 8 * 8  # the largest multiple of 8 whose slices fit
        plan = _C.implicit_gemm_plan(1, c_max, 2, 2, 8, element_bytes, False, 132)
        assert plan["slices"] == -(-9 * c_max // per_slice) <= 2**31 - 1 and plan["splits"] == 16
        with pytest.raises(ValueError, match=f"C = {c_max + 8} is too many input channels for implicit_gemm"):
            _C.implicit_gemm_plan(1, c_max + 8, 2, 2, 8, element_bytes, False, 132)


@pytest.mark.parametrize("value", ["0", "65", "two"])
def test_split_k_override_must_be_valid(value, monkeypatch):
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_SPLIT_K", value)
    x, w, b = _inputs(1, 8, 8, 4, 4, torch.float16, "cpu", channels_last=True, seed=0)
    with pytest.raises(ValueError, match=f"VGGKERN_IMPLICIT_GEMM_SPLIT_K must be an integer in \\[1, 64\\], got '{value}'"):
        vggkern.conv3x3(x, w, b, algo=ALGO)


# The shared-memory layout is free of bank conflicts: every ldmatrix, cp.async and
# epilogue load and store phase costs one wavefront (the emulator counts them; see the
# kernel's header), for both element sizes and every block tile. (wgmma's own reads of the
# stages are not counted: the hardware reads the canonical swizzled layout as it wants.)
@pytest.mark.parametrize("dtype,k,tile", [
    *((dt, k, tile) for dt in (torch.float16, torch.bfloat16, torch.float32)
      for k, tile in [(64, "256x64"), (136, "128x128"), (136, "256x128"), (64, "128x64")]),
    (torch.float16, 136, "wg128x128"), (torch.bfloat16, 64, "wg128x128"), (torch.float32, 136, "wg128x128"),
    (torch.float16, 64, "wg256x64"), (torch.bfloat16, 136, "wg256x64"), (torch.float32, 64, "wg256x64"),
    (torch.float16, 136, "wg128x256"), (torch.float32, 136, "wg128x256"),
    (torch.bfloat16, 136, "ws128x256"), (torch.float32, 264, "ws128x256"), (torch.float16, 136, "ws128x128")])
def test_shared_memory_without_bank_conflicts(dtype, k, tile, monkeypatch):
    from vggkern import _C

    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", tile)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_STREAM_K", "off")  # whole tiles: the counts below (no fixup flags)
    x, w, b = _inputs(1, 24, k, 9, 17, dtype, "cpu", channels_last=True, seed=k)
    _C.emu_reset_bank_stats()
    vggkern.conv3x3(x, w, b, relu=True, pool=True, algo=ALGO, allow_tf32=True)
    stats = _C.emu_bank_stats()
    # One M tile (pooled 4 x 8 = 32 windows = 128 rows); K tiles of BN; 9 * C = 216 in
    # 64-byte slices of 32 halves or 16 floats. Per slice: each warp (64 x 64 outputs) 2
    # k-steps of 4 A + 4 B ldmatrix.x4, and (BM + BN) rows x 4 chunks of cp.async over 32 lanes.
    bm, bn = TILES[tile]
    blocks, slices, warps = -(-k // bn), -(-216 // (16 if dtype == torch.float32 else 32)), bm * bn // 4096
    # The epilogue, per warp: 4 x 8 mma tiles x 2 row halves of float2 stores (2 phases of
    # 16 lanes each), and 4 passes over the pooled tile of 4 rows x 2 float4 loads (4
    # phases of 8 lanes each).
    # (Per block that is bm * bn / 64 store and bm * bn / 128 load instructions, for
    # wg128x128 and wg128x256 too: their warpgroups hold the accumulators as 32 x 128 or 16 x
    # 256 per warp. wg256x64 holds them transposed and stores single floats: bm * bn / 32
    # one-phase stores. The ws tiles, persistent on an NHWC y, have no fp32 epilogue tile:
    # 16-bit y goes to their staging for the tensor stores, a 4-byte pair of channels per
    # lane, bm * bn / 64 one-phase stores with the pool in window order (C = 24: cp.async);
    # fp32 y is stored from the accumulators. Their producer warpgroup makes all the copies.)
    wgmma, transposed, ws = is_wgmma(tile), tile == "wg256x64", tile.startswith("ws")
    staged = ws and dtype != torch.float32
    epilogue = 0 if ws else 1
    want = {"ldmatrix": 0 if wgmma else blocks * slices * warps * 16,
            "cp_async": blocks * slices * (bm + bn) * 4 // 32,
            "store": (epilogue + staged) * blocks * bm * bn // (32 if transposed else 64),
            "load": epilogue * blocks * bm * bn // 128}
    # x4 matrices / 16-byte phases of 8 lanes / 8-byte stores in 2 half-warp phases (4-byte: 1)
    phases = {"ldmatrix": 4, "cp_async": 4, "store": 1 if transposed or staged else 2, "load": 4}
    ideal = {path: n * phases[path] for path, n in want.items()}
    # TF32 on wgmma: each thread rounds the x chunks it copied, in place, once per slice: a
    # 16-byte load and store per chunk, the cp.async writes' addresses (4 phases of 8 lanes).
    rounds = blocks * slices * bm * 4 // 32 if wgmma and dtype == torch.float32 else 0
    for path in ("load", "store"):
        want[path] += rounds
        ideal[path] += rounds * 4
    for path in want:
        s = stats[path]
        assert s["instructions"] == want[path], (path, stats)
        if want[path] == 0:
            continue
        assert s["wavefronts"] == s["ideal"] == ideal[path], (path, stats)


# NCHW's epilogue reads single floats, a tile column per lane and 2 x 8 (fp32: 2 x 4)
# rows per half-warp pair, the upper half-warp rotated so the two halves sit 16 banks
# apart (store_nchw_tile): one wavefront per read, BM * BN / 32 reads per block, for every
# epilogue tile layout. (The main loops read with ldmatrix or wgmma; with TF32 on wgmma
# each thread also rounds its x chunks in place, one 16-byte load per chunk and slice,
# 4 phases: counted apart.)
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize("tile,k", [("256x64", 64), ("128x128", 136), ("256x128", 136), ("128x64", 64), ("wg128x128", 136),
                                    ("wg256x64", 64), ("wg128x256", 136), ("ws128x256", 136), ("ws128x128", 136)])
@pytest.mark.parametrize("pool", [False, True], ids=["", "pool"])
def test_nchw_epilogue_without_bank_conflicts(tile, k, pool, dtype, monkeypatch):
    from vggkern import _C

    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", tile)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_SPLIT_K", "1")
    x, w, b = _inputs(1, 24, k, 16, 16, dtype, "cpu", seed=k)
    _C.emu_reset_bank_stats()
    vggkern.conv3x3(x, w, b, relu=True, pool=pool, algo=ALGO, allow_tf32=True)
    s = _C.emu_bank_stats()["load"]
    plan = _C.implicit_gemm_plan(1, 24, 16, 16, k, x.element_size(), pool, 132, tile)
    blocks = plan["m_tiles"] * plan["k_blocks"]
    rounds = blocks * plan["slices"] * plan["bm"] * 4 // 32 if is_wgmma(tile) and dtype == torch.float32 else 0
    assert s["instructions"] == blocks * plan["bm"] * plan["bn"] // 32 + rounds, (plan, s)
    assert s["wavefronts"] == s["ideal"] == s["instructions"] + 3 * rounds, s


@pytest.mark.parametrize("device", DEVICES)
def test_int64_index_variant(device, monkeypatch):
    # The kernel's int64-offset variant (used from 2^31 elements on), forced at small sizes.
    x, w, b = _inputs(2, 8, 72, 9, 17, torch.bfloat16, device, channels_last=True, seed=17)
    y32 = vggkern.conv3x3(x, w, b, relu=True, pool=True, algo=ALGO)
    monkeypatch.setenv("VGGKERN_FORCE_INT64_INDEX", "1")
    y64 = vggkern.conv3x3(x, w, b, relu=True, pool=True, algo=ALGO)
    _check(y64, x, w, b, True, True, algo=ALGO)
    assert torch.equal(y32, y64)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    x, w, b = _inputs(2, 8, 16, 6, 5, torch.float16, device, channels_last=True, seed=13)
    for args in [(x, w, b, True, True, ALGO), (x.contiguous(), w, None, False, False, ALGO)]:
        torch.library.opcheck(torch.ops.vggkern.conv3x3.default, args)


# float32 as TF32 (mma.sync.m16n8k8): the same tiles as above with 32-bit elements (16
# per 64-byte shared row), allowed per call or by torch's global flag.
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n,c,k,h,w,relu,pool,channels_last", [
    (1, 16, 64, 8, 16, False, False, True),  # BN = 64, one full tile
    (2, 8, 136, 9, 17, True, True, False),  # BN = 128, two K blocks, cut tiles, NCHW
    (1, 24, 61, 16, 33, False, True, True),  # K not a multiple of 8: scalar stores
    (1, 5, 200, 10, 6, True, False, False),  # C padded 5 -> 8
    (1, 3, 16, 7, 9, True, True, True),  # VGG's first layer: C padded 3 -> 8, odd sizes under the pool
])
@pytest.mark.parametrize("allowed_by", ["call", "global"])
def test_float32_tf32(n, c, k, h, w, relu, pool, channels_last, allowed_by, device):
    x, wt, b = _inputs(n, c, k, h, w, torch.float32, device, channels_last=channels_last, seed=n + c + k + h)
    if allowed_by == "call":
        with torch.backends.cudnn.flags(allow_tf32=False):  # the call's True wins over the global False
            y = vggkern.conv3x3(x, wt, b, relu=relu, pool=pool, algo=ALGO, allow_tf32=True)
    else:
        with torch.backends.cudnn.flags(allow_tf32=True):
            y = vggkern.conv3x3(x, wt, b, relu=relu, pool=pool, algo=ALGO)
    _check(y, x, wt, b, relu, pool, algo=ALGO)


def _tf32_ties(shape, g):
    # Values in +-[1, 2) with 12 fraction bits: 10 that TF32 keeps and 2 below them, set to
    # a quarter, half (a tie) or three quarters of a TF32 ulp (2**-10).
    sign = torch.randint(0, 2, shape, generator=g) * 2 - 1
    kept = torch.randint(0, 1024, shape, generator=g)
    below = torch.randint(1, 4, shape, generator=g)
    return (sign * (1 + kept / 1024 + below / 4096)).float()


def _tf32_case(rounded, g):
    # One operand between TF32 values (quarter, half, three quarters of an ulp), the other
    # small integers: every product and sum of the TF32 operands is exact in fp32.
    x = torch.randint(-2, 3, (2, 8, 6, 7), generator=g).float()
    w = torch.randint(-2, 3, (16, 8, 3, 3), generator=g).float()
    if rounded == "x":
        x = _tf32_ties(x.shape, g)
    else:
        w = _tf32_ties(w.shape, g)
    return x.contiguous(memory_format=torch.channels_last), w


@pytest.mark.parametrize("rounded", ["x", "weight"])
def test_float32_tf32_rounds_its_inputs(rounded):
    # The kernel rounds x and weight to TF32 with cvt.rna (nearest, ties away from zero;
    # truncation, or no rounding, would differ), so the result must equal the float64 conv
    # of the rounded operands.
    x, w = _tf32_case(rounded, torch.Generator().manual_seed(5))
    y = vggkern.conv3x3(x, w, algo=ALGO, allow_tf32=True)
    want = torch.nn.functional.conv2d(_round_tf32(x).double(), _round_tf32(w).double(), padding=1)
    assert torch.equal(y.double(), want)
    assert not torch.equal(want, torch.nn.functional.conv2d(x.double(), w.double(), padding=1))
    # A float32 weight already laid out as the kernels read it ((K, 3, 3, C) dense, C a
    # multiple of 8, aligned: what a 16-bit weight is used as) is still rounded.
    w_cl = w.contiguous(memory_format=torch.channels_last)
    assert w_cl.permute(0, 2, 3, 1).is_contiguous() and w_cl.data_ptr() % 16 == 0
    assert torch.equal(vggkern.conv3x3(x, w_cl, algo=ALGO, allow_tf32=True).double(), want)
    # The test's helper rounds as cvt.rna: 10 mantissa bits, ties away from zero.
    t = torch.tensor([1 + 2.0 ** -11, -(1 + 2.0 ** -11), 1 + 2.0 ** -12, 1 + 3 * 2.0 ** -12, 3.0, float("inf"),
                      float("nan")])
    r = _round_tf32(t)
    assert r[:6].tolist() == [1 + 2.0 ** -10, -(1 + 2.0 ** -10), 1.0, 1 + 2.0 ** -10, 3.0, float("inf")]
    assert r[6].isnan()


# float32 on the wgmma tiles (forced; m64nNk8.tf32): the tensor cores would drop the low 13
# mantissa bits of what they read (the emulator models it; the H200 agreed on data where
# that and rounding differ, before x was rounded here), so the kernel rounds x to TF32 in shared memory first and the op
# rounds the weight (cvt.rna's rule both) before the launch: the error model is the
# float64 conv of rounded x and weight, as on mma.sync. Truncated x had a bias toward zero
# that VGG16's 13 layers compounded to 5.2x torch's TF32 error (H200, batch 64).
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("tile", list(WGMMA_TWIN))
@pytest.mark.parametrize("k,relu,pool,split", [(40, True, True, ""), (136, False, False, ""), (72, True, False, "3")])
def test_wgmma_float32_tf32(tile, k, relu, pool, split, device, monkeypatch):
    _skip_without_wgmma(tile, device)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", tile)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_SPLIT_K", split)
    x, w, b = _inputs(2, 24, k, 9, 11, torch.float32, device, channels_last=k != 136, seed=k + 7)
    w_before = w.clone()
    y = vggkern.conv3x3(x, w, b, relu=relu, pool=pool, algo=ALGO, allow_tf32=True)
    assert torch.equal(w, w_before)  # the op rounds a copy, never the caller's weight
    _check(y, x, w, b, relu, pool, algo=ALGO)


@pytest.mark.parametrize("tile", list(WGMMA_TWIN))
@pytest.mark.parametrize("rounded", ["x", "weight"])
def test_wgmma_tf32_rounds_x_and_the_weight(tile, rounded, monkeypatch):
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", tile)
    x, w = _tf32_case(rounded, torch.Generator().manual_seed(6))
    y = vggkern.conv3x3(x, w, algo=ALGO, allow_tf32=True)
    want = torch.nn.functional.conv2d(_round_tf32(x).double(), _round_tf32(w).double(), padding=1)
    assert torch.equal(y.double(), want)
    # The rules differ on this data: the tested operand truncated (wgmma's reading of
    # unrounded data) would give another result.
    other = (_truncate_tf32(x), _round_tf32(w)) if rounded == "x" else (_round_tf32(x), _truncate_tf32(w))
    assert not torch.equal(want, torch.nn.functional.conv2d(other[0].double(), other[1].double(), padding=1))
    t = torch.tensor([1 + 3 * 2.0 ** -12, -(1 + 2.0 ** -11), -3.0, float("-inf"), float("nan")])
    r = _truncate_tf32(t)  # the helper: 10 mantissa bits kept, toward zero
    assert r[:4].tolist() == [1.0, -1.0, -3.0, float("-inf")] and r[4].isnan()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible")
@pytest.mark.parametrize("tile", list(WGMMA_TWIN))
@pytest.mark.parametrize("rounded", ["x", "weight"])
def test_gpu_wgmma_tf32_rounds_x_as_the_emulator_does(tile, rounded, monkeypatch):
    """The hardware check of the wgmma tiles' TF32 inputs (x rounded in shared memory, the
    weight by the op, both to nearest with ties away) on data where rounding and truncation
    differ: exact sums, so the GPU and the emulator agree bit for bit or one rounds
    otherwise."""
    _skip_without_wgmma(tile, "cuda")
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", tile)
    x, w = _tf32_case(rounded, torch.Generator().manual_seed(6))
    cpu = vggkern.conv3x3(x, w, algo=ALGO, allow_tf32=True)
    gpu = vggkern.conv3x3(x.cuda(), w.cuda(), algo=ALGO, allow_tf32=True).cpu()
    assert torch.equal(cpu, gpu)


@pytest.mark.parametrize("entry", ["wrapper", "torch.ops"])
@pytest.mark.parametrize("refused_by", ["call", "global"])
def test_float32_refused_without_tf32(entry, refused_by):
    x, w, b = _inputs(1, 8, 8, 4, 4, torch.float32, "cpu", seed=1)
    allow = False if refused_by == "call" else None
    with torch.backends.cudnn.flags(allow_tf32=refused_by == "call"):  # the call's False wins over a global True
        with pytest.raises(ValueError, match=TF32_REFUSAL):
            if entry == "wrapper":
                vggkern.conv3x3(x, w, b, algo=ALGO, allow_tf32=allow)
            else:
                torch.ops.vggkern.conv3x3(x, w, b, False, False, ALGO, allow)
        # The other algorithms compute float32 in fp32 and ignore allow_tf32.
        _check(vggkern.conv3x3(x, w, b, algo="direct", allow_tf32=allow), x, w, b, False, False)
        # Half precision does not involve TF32.
        xh, wh, bh = x.half(), w.half(), b.half()
        _check(vggkern.conv3x3(xh, wh, bh, algo=ALGO, allow_tf32=allow), xh, wh, bh, False, False, algo=ALGO)


def test_tf32_allowed_follows_torch():
    with torch.backends.cudnn.flags(allow_tf32=False):
        assert vggkern.ops._C.tf32_allowed() is False
    with torch.backends.cudnn.flags(allow_tf32=True):
        assert vggkern.ops._C.tf32_allowed() is True


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_float32_tf32(device):
    x, w, b = _inputs(2, 8, 16, 6, 5, torch.float32, device, channels_last=True, seed=13)
    torch.library.opcheck(torch.ops.vggkern.conv3x3.default, (x, w, b, True, True, ALGO, True))
    with torch.backends.cudnn.flags(allow_tf32=True):
        torch.library.opcheck(torch.ops.vggkern.conv3x3.default, (x.contiguous(), w, None, False, False, ALGO),
                              {"allow_tf32": None})


@pytest.mark.parametrize("device", DEVICES)
def test_torch_compile_float32_tf32(device):
    torch._dynamo.reset()

    def f(x, w, b):
        return vggkern.conv3x3(x, w, b, relu=True, algo=ALGO) * 2

    x, w, b = _inputs(1, 8, 16, 6, 5, torch.float32, device, seed=21)
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    with torch.backends.cudnn.flags(allow_tf32=True):
        torch.testing.assert_close(compiled(x, w, b), f(x, w, b), rtol=0, atol=0)
    torch._dynamo.reset()
    with torch.backends.cudnn.flags(allow_tf32=False), pytest.raises(Exception, match="needs TF32"):
        compiled(x, w, b)  # refused when traced (fake kernel) or when run (the op), as eager is


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible")
@pytest.mark.parametrize("dtype", HALF_DTYPES + [torch.float32], ids=str)
@pytest.mark.parametrize("tile,split", [("", ""), *((t, "") for t in TILES), ("128x128", "3"),
                                        *((t, "3") for t in WGMMA_TWIN)])
@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format], ids=["nhwc", "nchw"])
@pytest.mark.parametrize("c,order", [(24, ""), (32, "taps_inner"), (32, "")])
def test_gpu_matches_emulator_bit_for_bit(dtype, tile, split, layout, c, order, monkeypatch):
    """The proof that the emulated fragment layouts are the hardware's: with small
    integer data every sum is exact, so the GPU and the emulator must agree exactly
    (float32: the TF32 path, mma.sync.m16n8k8 fed by ldmatrix of 32-bit elements, or
    wgmma's m64nNk8.tf32), for the default tile choice, each tile forced (the wg tiles:
    wgmma's descriptors and accumulator layout), and split-K; y NHWC, and NCHW as the
    epilogue writes it for NCHW calls; K tap by tap (the default) and taps inner (C = 32).
    C = 32 tap by tap, 16-bit, unpooled, is where ws128x256 copies by tensor loads (the
    im2col box and its offsets, the tile box, the 64-byte swizzle, the mbarriers' phases
    as the emulator models them: the GPU's launch records that it ran them, where
    device_run.sh has not turned them off)."""
    _skip_without_wgmma(tile, "cuda")
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_K_ORDER", order)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", tile)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_SPLIT_K", split)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-3, 4, (2, c, 12, 20), generator=g).to(dtype).contiguous(memory_format=layout)
    w = torch.randint(-2, 3, (72, c, 3, 3), generator=g).to(dtype)
    b = torch.randint(-5, 6, (72,), generator=g).to(dtype)
    for relu, pool in [(False, False), (True, True)]:
        cpu, cpu_ran = _run_and_record(x, w, b, relu=relu, pool=pool, algo=ALGO, allow_tf32=True)
        gpu, gpu_ran = _run_and_record(x.cuda(), w.cuda(), b.cuda(), relu=relu, pool=pool, algo=ALGO, allow_tf32=True)
        assert torch.equal(cpu, gpu.cpu()), _where(gpu, cpu, tile, pool)
        if tile in WS_TILES:  # the same copies and stores on both (a GPU that fell back would differ)
            assert gpu_ran == cpu_ran
            if (tile, c, order, split, pool, layout) == ("ws128x256", 32, "", "", False, torch.channels_last) and \
                    dtype != torch.float32 and os.environ.get("VGGKERN_IMPLICIT_GEMM_TMA", "") != "off":
                assert gpu_ran["path"] == "tma", gpu_ran


def _where(got, want, tile, pool):
    """Where a GPU result differs, in the kernel's tiles (benchmarks/wgmma_probe.py)."""
    from benchmarks.wgmma_probe import describe_mismatch

    return describe_mismatch(got, want, tile, pool)


def _run_and_record(*args, **kw):
    """conv3x3's result and what its launch recorded (implicit_gemm_last_copies: a ws
    tile's copies and y stores, and why where not the tensor ones; not its schedule, whose
    grid follows the device's SM count)."""
    from vggkern import _C

    y = vggkern.conv3x3(*args, **kw)
    ran = _C.implicit_gemm_last_copies() or {}
    return y, {k: ran.get(k) for k in ("tile", "path", "reason", "stores", "stores_reason")}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible")
@pytest.mark.parametrize("tile", WS_TILES)
@pytest.mark.parametrize("dtype", HALF_DTYPES + [torch.float32], ids=str)
@pytest.mark.parametrize("grid,split", [("", ""), ("2", ""), ("", "3")])
def test_gpu_tensor_loads_match_emulator_bit_for_bit(tile, dtype, grid, split, monkeypatch):
    """A ws tile with its copies required to be tensor loads (VGGKERN_IMPLICIT_GEMM_TMA=on;
    fp32 as a chain's TF32 x): exact sums on maps whose 128-pixel boxes span rows, images
    and the batch's end, so the GPU and the emulator agree bit for bit or the hardware
    reads im2col boxes, offsets or swizzles otherwise than the emulator models them; a
    persistent grid of 2 blocks runs the mbarriers' phases on across items. Without split-K,
    also the pool on an even map: 8-pixel boxes of x's even and odd rows viewed as tensors
    of H / 2 rows (a row stride of 2W pixels, the odd view's base a row in, zeros at view
    rows -1 and H / 2), the tile's rows in slab order."""
    _skip_without_wgmma(tile, "cuda")
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", tile)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TMA", "on")
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_GRID", grid)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_SPLIT_K", split)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(-3, 4, (3, 64, 11, 13), generator=g).to(dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randint(-2, 3, (264, 64, 3, 3), generator=g).to(dtype)
    b = torch.randint(-5, 6, (264,), generator=g).to(dtype)
    x_tf32 = dtype == torch.float32  # small integers are TF32 values
    cpu, cpu_ran = _run_and_record(x, w, b, relu=True, algo=ALGO, allow_tf32=True, x_tf32=x_tf32)
    gpu, gpu_ran = _run_and_record(x.cuda(), w.cuda(), b.cuda(), relu=True, algo=ALGO, allow_tf32=True, x_tf32=x_tf32)
    assert torch.equal(cpu, gpu.cpu()), _where(gpu, cpu, tile, False)
    assert gpu_ran == cpu_ran and gpu_ran["path"] == "tma", gpu_ran
    if split == "":
        monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_SPLIT_K", "1")
        x = torch.randint(-3, 4, (3, 64, 10, 14), generator=g).to(dtype).contiguous(memory_format=torch.channels_last)
        cpu, cpu_ran = _run_and_record(x, w, b, relu=True, pool=True, algo=ALGO, allow_tf32=True, x_tf32=x_tf32)
        gpu, gpu_ran = _run_and_record(x.cuda(), w.cuda(), b.cuda(), relu=True, pool=True, algo=ALGO,
                                       allow_tf32=True, x_tf32=x_tf32)
        assert torch.equal(cpu, gpu.cpu()), _where(gpu, cpu, tile, True)
        assert gpu_ran == cpu_ran and gpu_ran["path"] == "tma", gpu_ran


# Stream-K (ws128x256) on the GPU at conv5's scale, where the emulator cannot go: batch 64
# (196 tiles of 128 x 256 on every SM, tiles in 2 parts), batch 1 (4 tiles in up to 18 parts
# of 8 slices: 72 blocks adding into the same 4 tiles at once) and an odd grid of 97 blocks
# at batch 16 (up to 3 parts). Here the fixup's fences and arrival counters run under real
# concurrency: the emulator's fences order every access, so a missing or misplaced one shows
# only on a GPU. Exact sums (small integers): bit for bit the same tile's result without
# stream-K (VGGKERN_IMPLICIT_GEMM_STREAM_K=off: whole tiles, or split-K at batch 1), with the
# call's default copies (tensor loads, unless device_run.sh turned them off after its probe)
# and with cp.async, pooled and not. Random data: the same bits on every run (the parts are
# added in K order whichever finishes), within the float64 bound.
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible")
@pytest.mark.parametrize("tile", ["ws128x256"])
@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
@pytest.mark.parametrize("n,grid,pool,copies", [(64, "", False, "default"), (64, "", True, "default"),
                                                (64, "", True, "cp_async"), (1, "", False, "default"),
                                                (16, "97", True, "default")])
def test_gpu_stream_k_at_conv5_scale(tile, dtype, n, grid, pool, copies, monkeypatch):
    from vggkern import _C

    _skip_without_wgmma(tile, "cuda")
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", tile)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_GRID", grid)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_STREAM_K", "on")
    if copies == "cp_async":  # else left as it is: device_run.sh turns tensor loads off where its probe failed
        monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TMA", "off")
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    plan = _C.implicit_gemm_plan(n, 512, 14, 14, 512, 2, pool, sms, tile)
    assert plan["persistent"] and plan["sk_tiles"] > 0 and plan["max_parts"] >= 2
    g = torch.Generator().manual_seed(n)
    x = torch.randint(-3, 4, (n, 512, 14, 14), generator=g).to(dtype).cuda().contiguous(
        memory_format=torch.channels_last)
    w = torch.randint(-2, 3, (512, 512, 3, 3), generator=g).to(dtype).cuda()
    b = torch.randint(-5, 6, (512,), generator=g).to(dtype).cuda()
    sk = vggkern.conv3x3(x, w, b, relu=True, pool=pool, algo=ALGO)
    ran = _C.implicit_gemm_last_copies()
    assert ran["stream_k"] == f"{plan['sk_tiles']} of {plan['m_tiles'] * plan['k_blocks']} tiles on {plan['grid']} blocks"
    assert copies != "cp_async" or ran["path"] == "cp_async"
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_STREAM_K", "off")
    whole = vggkern.conv3x3(x, w, b, relu=True, pool=pool, algo=ALGO)
    assert _C.implicit_gemm_last_copies()["stream_k"] == ""
    assert torch.equal(sk, whole), _where(sk, whole, tile, pool)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_STREAM_K", "on")
    x, w, b = _inputs(n, 512, 512, 14, 14, dtype, "cuda", channels_last=True, seed=n)
    runs = [vggkern.conv3x3(x, w, b, relu=True, pool=pool, algo=ALGO) for _ in range(3)]
    assert all(torch.equal(runs[0], r) for r in runs[1:])
    _check(runs[0], x, w, b, True, pool, algo=ALGO)


# Stream-K inside a CUDA graph: the counters' zero fill and the partial sums are captured
# with the conv, so every replay starts from zeroed counters; two replays on other inputs
# copied into the captured x give the eager call's bits on each (the fixup's K order).
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible")
@pytest.mark.parametrize("pool", [False, True])
def test_gpu_stream_k_replays_in_a_cuda_graph(pool, monkeypatch):
    from vggkern import _C

    _skip_without_wgmma("ws128x256", "cuda")
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", "ws128x256")
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_STREAM_K", "on")
    xs = [_inputs(64, 512, 512, 14, 14, torch.float16, "cuda", channels_last=True, seed=s) for s in (1, 2, 3)]
    _, w, b = xs[0]
    static = xs[0][0].clone()
    eager = [vggkern.conv3x3(x, w, b, relu=True, pool=pool, algo=ALGO) for x, _, _ in xs]
    assert _C.implicit_gemm_last_copies()["stream_k"], "stream-K did not run"
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        vggkern.conv3x3(static, w, b, relu=True, pool=pool, algo=ALGO)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = vggkern.conv3x3(static, w, b, relu=True, pool=pool, algo=ALGO)
    for i in (1, 2, 0):
        static.copy_(xs[i][0])
        g.replay()
        torch.cuda.synchronize()
        assert torch.equal(out, eager[i]), i
    _check(eager[1], xs[1][0], w, b, True, pool, algo=ALGO)


# "auto": the measured table's pick (csrc/common/conv3x3_tuned.h, from benchmarks/tune.py),
# on a layer it does not hold the nearest entry's; the nn module lays the weight out for
# what auto resolves to.
@pytest.mark.parametrize("tables", ["build", "run_time"])
def test_auto_follows_the_measured_table(tables, tmp_path):
    # The build's table (empty until a GPU run is tuned into it), and tables tune.py made
    # from a synthetic run, set at run time: every entry resolves to its pick at its shape.
    if tables == "run_time":
        from benchmarks import tune
        from test_tune import synthetic, tf32_sweep, write

        path = write(tmp_path / "2026-01-01_synthetic.json", synthetic() + tf32_sweep())
        assert tune.main([path, "--json", str(tmp_path / "tables.json")]) == 0
        vggkern.set_tuned_tables(str(tmp_path / "tables.json"))
    try:
        _auto_follows(vggkern.tuned_tables(), tables)
    finally:
        vggkern.set_tuned_tables(None)


def _nearest_verdict(autos, x, k, pool):
    """The verdict of the entry of `autos` nearest a call on a layer they do not hold: least
    mismatch (fp32 against 16-bit 4, format 2, fp16 against bf16 1), then least work
    distance (the summed |ln| of the ratios of C padded to 8, K and N*H*W), then the same
    pool, then the larger work, C, K, then fp16."""
    n, c, h, w = x.shape
    cp, fp32 = (c + 7) // 8 * 8, x.dtype == torch.float32
    cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    dtype = str(x.dtype).split(".")[1]

    def key(e):
        mismatch = 4 * ((e["dtype"] == "float32") != fp32) + 2 * (e["channels_last"] != cl) + (e["dtype"] != dtype)
        dist = sum(abs(math.log(a / b)) for a, b in ((e["C"], cp), (e["K"], k),
                                                     (e["N"] * e["H"] * e["W"], n * h * w)))
        return (mismatch, dist, e["pool"] != pool, -e["N"] * e["H"] * e["W"], -e["C"], -e["K"],
                e["dtype"] != "float16")

    return min(autos, key=key)["algo"] if autos else "direct"


def _auto_follows(tables, which):
    assert tables["run_time"] == (which == "run_time")
    if which == "run_time":  # entries of both verdicts: the loop below checks something
        assert len(tables["auto"]) == 3 and {e["algo"] for e in tables["auto"]} == {"implicit_gemm", "direct"}
    for e in tables["auto"]:
        x = torch.empty(e["N"], e["C"], e["H"], e["W"], dtype=getattr(torch, e["dtype"]))
        if e["channels_last"]:
            x = x.contiguous(memory_format=torch.channels_last)
        assert vggkern.resolve_algo(x, e["K"], pool=e["pool"], allow_tf32=True) == e["algo"]
    # Shapes no GPU run measured (C = 24, 9 x 17; C = 3 at 256 x 256; C = 512, 7 x 7): the
    # verdict of the entry nearest each, found here as conv3x3_tuning.h documents it, in
    # every dtype and format; fp32 without TF32: direct.
    verdicts = set()
    for (n, c, h, w, k), dtype, fmt in itertools.product(
            [(2, 24, 9, 17, 40), (1, 3, 256, 256, 64), (64, 3, 256, 256, 64), (8, 512, 7, 7, 512)],
            (torch.float16, torch.bfloat16, torch.float32), (torch.contiguous_format, torch.channels_last)):
        x = torch.empty(n, c, h, w, dtype=dtype).contiguous(memory_format=fmt)
        want = _nearest_verdict(tables["auto"], x, k, pool=True)
        verdicts.add(want)
        assert vggkern.resolve_algo(x, k, pool=True, allow_tf32=True) == want, (x.shape, dtype, fmt)
        assert vggkern.resolve_algo(x, k, pool=True, allow_tf32=False) == (want if dtype != torch.float32 else
                                                                            "direct")
    assert verdicts == {"direct", "implicit_gemm"}  # the shapes tell the verdicts apart
    x = torch.empty(1, 8, 4, 4, dtype=torch.float16)
    assert vggkern.resolve_algo(x, 8, algo="implicit_gemm") == "implicit_gemm"  # a named algo stays
    with pytest.raises(ValueError, match="expected x of dtype float32, float16 or bfloat16, got torch.int32"):
        vggkern.resolve_algo(x.int(), 8)


def test_resolve_algo_answers_or_fails_as_conv3x3_does():
    """resolve_algo(x, K, pool=, algo=, allow_tf32=) validates as conv3x3 does: where the
    call with a (K, C, 3, 3) weight fails, it fails with the same error (K < 1 in its own
    words), and where the call runs, it names the algorithm that ran (auto: its output
    bit for bit)."""
    g = torch.Generator().manual_seed(11)
    x16 = torch.randn(1, 3, 4, 4, generator=g).half()
    cases = [  # (x, K, pool, algo, allow_tf32)
        (x16, 2, False, "auto", None), (x16.float(), 2, True, "auto", False), (x16, 2, True, "direct", None),
        (x16.float(), 2, False, "implicit_gemm", True),
        (x16.float(), 2, False, "implicit_gemm", False),  # float32 on tensor cores without TF32
        (x16, 2, False, "fast", None), (x16, 2, False, None, None), (x16, 2, False, "Direct", None),
        (x16[:, :, :1], 2, True, "auto", None), (x16[:, :, :, :1], 2, True, "direct", None),  # pool, H or W = 1
        (x16.int(), 2, False, "auto", None), (x16[0], 2, False, "auto", None), (x16, 2, 1, "auto", None),
        (x16, 2, False, "auto", 1), ("x", 2, False, "auto", None),
    ]
    for x, k, pool, algo, tf32 in cases:
        label = (getattr(x, "shape", x), getattr(x, "dtype", None), k, pool, algo, tf32)
        w = torch.randn(k, 3, 3, 3, generator=g).to(getattr(x, "dtype", torch.float16))
        try:
            y = vggkern.conv3x3(x, w, pool=pool, algo=algo, allow_tf32=tf32)
        except (TypeError, ValueError) as e:
            with pytest.raises(type(e)) as got:
                vggkern.resolve_algo(x, k, pool=pool, algo=algo, allow_tf32=tf32)
            assert str(got.value) == str(e), label
            continue
        ran = vggkern.resolve_algo(x, k, pool=pool, algo=algo, allow_tf32=tf32)
        assert ran == algo if algo != "auto" else ran in ("direct", "implicit_gemm"), label
        assert torch.equal(vggkern.conv3x3(x, w, pool=pool, algo=ran, allow_tf32=tf32), y), label
    # No weight to say K: out_channels < 1 (conv3x3: a weight without output channels) in its own words.
    for k, err in ((0, ValueError), (-3, ValueError), (2**63, ValueError), (2.0, TypeError), (True, TypeError)):
        with pytest.raises(err, match="out_channels"):
            vggkern.resolve_algo(x16, k)
    with pytest.raises(ValueError, match="at least one output channel"):
        vggkern.conv3x3(x16, torch.empty(0, 3, 3, 3, dtype=torch.float16))


def test_module_prepares_the_weight_for_what_auto_runs(monkeypatch):
    # The resolution is the op's; here it is pinned to implicit_gemm for this module's calls.
    from vggkern import ops

    m = vggkern.Conv3x3(16, 24, relu=True).half()
    x, _, _ = _inputs(1, 16, 24, 6, 7, torch.float16, "cpu", channels_last=True, seed=3)
    monkeypatch.setattr(ops, "resolve_algo", lambda *a, **k: "implicit_gemm")
    with vggkern.cpu_backend("emulator"), torch.no_grad():
        y = m(x)
    assert m._weight_cache is not None and torch.equal(m._weight_cache[2], vggkern.tensor_core_weight(m.weight))
    assert m._weight_cache[0][0] == "implicit_gemm"  # (key, weak references, weight, bias)
    _check(y, x, m.weight, m.bias, True, False, algo=ALGO)


def test_wgmma_policies_run_a_whole_network_bit_for_bit(monkeypatch):
    """What the benchmarks time on the GPU (VGG on a wgmma policy) runs through the
    emulator here: VGG11's 8 layers (K = 64 to 512: wg256x64, wg128x128 and, wide,
    wg128x256, or ws128x256) give the default tiles' output bit for bit."""
    torch.manual_seed(0)
    model = vggkern.vgg11(num_classes=10, algo=ALGO).half().eval().to(memory_format=torch.channels_last)
    x = torch.randn(1, 3, 32, 32).half().contiguous(memory_format=torch.channels_last)
    out = {}
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_STREAM_K", "off")  # whole tiles: stream-K adds in another order (its own test)
    with vggkern.cpu_backend("emulator"), torch.inference_mode():
        for policy in ("", "wgmma", "wgmma-wide", "wgmma-ws"):
            monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", policy)
            out[policy] = model(x)
    assert out[""].isfinite().all()
    assert all(torch.equal(out[""], out[p]) for p in ("wgmma", "wgmma-wide", "wgmma-ws"))
