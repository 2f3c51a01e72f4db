"""The two numbers per layer (METHOD.md: count before measuring), and what implicit_gemm's
tiling predicts, so that a GPU run can be read against a prediction.

    python -m benchmarks.roofline [--batch 64] [--gpu "H100 SXM"] [--dtype fp16]

Per VGG16 conv layer (fused ReLU, and the pool where VGG has one):
- FLOPs 2·N·K·C·9·H·W, and the fewest bytes: x read once, the weight once, y written once
  (plus, where the plan splits K, the fp32 partials written and read once); their floors at
  the datasheet peaks (peaks.py): the larger one bounds any kernel.
- implicit_gemm's own ceiling, from counting alone: the rule's block tile (what the dispatch
  picks on a Hopper GPU where conv3x3_tuned.h has no entry: wgmma-wide's; --tile models
  another); the
  shared-memory cap (wavefronts per K slice: 16 ldmatrix.x4 x 4 per 64 x 64 warp, plus
  (BM + BN) x 64 bytes of cp.async writes, at 128 bytes per clock, against BM x BN x 32
  MACs at 1024 MACs per clock (one m16n8k16 per clock per SM at the dense peak)); mma.sync's
  own ceiling on Hopper (~65% of the peak, the issue's figure); for the wgmma tiles
  (wg128x128, wg256x64, wg128x256, ws128x256, ws128x128), the shared-memory bytes wgmma
  itself reads (each m64nNk16: 64 + N rows of 32 bytes) plus the cp.async writes, and an
  assumed 80% ceiling for wgmma (clock and power; not measured here); the tail of the last wave
  (blocks over SMs x blocks per SM); the padding of M and K to the tile and of 9·C
  (C padded to 8) to 64-byte slices; and, for tiles that fill an SM alone (256x128,
  wg128x256), the prologue and epilogue no other block overlaps (an assumed 1500-clock
  first load, and the fp32 tile through shared memory and back).
The predicted time is the compute floor divided by the product of those efficiencies;
it is a model to check measurements against, not a measurement.
- L2 traffic per SM (bytes per clock at the tensor peak), which the model does not turn
  into a cap (no measured L2 bandwidth yet): per 64-byte K slice a block copies BN weight
  rows and its BM x rows, each 64 bytes from L2 (cp.async.cg, past L1), in either K order.
"""
from __future__ import annotations

import argparse
import functools
import math

from .cases import VGG16_CONVS
from .peaks import PEAKS
from .tiles import WGMMA_POLICIES, is_wgmma, rule_tile, wgmma_policy_tile

SMS = {"H100 SXM": 132, "H100 PCIe": 114, "H100 NVL": 132, "H200 SXM": 132}
MMA_SYNC_CEILING = 0.65
WGMMA_CEILING = 0.80  # an assumption until a GPU run measures it
# Blocks per SM by registers (~240 per thread, 64K per SM) and shared memory (227 KiB):
# 128 x 64: 64 threads, 48 KiB; 128 x 128: 128 threads, 68 KiB; 256 x 128: 256 threads, 136 KiB;
# 256 x 64: 128 threads, 80 KiB; wg128x128: 128 threads (<= 187 registers), 96 KiB (6 stages);
# wg256x64: 128 threads (<= 205 registers), 100 KiB (5 stages); wg128x256: 256 threads
# (<= 180 registers: 46K of the SM's 64K), 144 KiB (6 stages); ws128x256: wg128x256's
# stages and computing warpgroups, and a producer warpgroup (384 threads, <= 156 registers:
# 60K). The model counts the two alike: it sees bytes and clocks, not the barriers the
# producer takes out of the computing warps' way (but its prologue and epilogue: unhidden()).
# ws128x128: wg128x128's 128 x 128 and its two m64n128 per k16 step, computed by two
# warpgroups that take the items in turn (ping-pong), a producer warpgroup, 128 KiB (8
# stages), one block per SM.
TILES = {"128x64": (128, 64, 4), "128x128": (128, 128, 2), "256x128": (256, 128, 1), "256x64": (256, 64, 2),
         "wg128x128": (128, 128, 2), "wg256x64": (256, 64, 2), "wg128x256": (128, 256, 1), "ws128x256": (128, 256, 1),
         "ws128x128": (128, 128, 1)}
# Per k16 step, each wgmma's (M, N): wg128x128 two m64n128 (pixels x channels), wg256x64
# one m64n256 (channels x pixels, transposed), wg128x256 one m64n256 per warpgroup.
WGMMA_SHAPES = {"wg128x128": [(64, 128), (64, 128)], "wg256x64": [(64, 256)], "wg128x256": [(64, 256), (64, 256)],
                "ws128x256": [(64, 256), (64, 256)], "ws128x128": [(64, 128), (64, 128)]}
PING_PONG = {"ws128x128"}  # its computing warpgroups take the items in turn
FILL_CLOCKS = 1500  # assumed: a block's first slices arriving from L2/DRAM before its first mma


def plan(n, c, h, k, pool, elt, sms, tile):
    """The kernel's own plan (vggkern._C.implicit_gemm_plan: tile and split-K), or, where
    the extension is not importable, the default tile without split-K."""
    bm, bn, _ = TILES[tile]
    try:
        from vggkern import _C
    except ImportError:
        _C = None
    if _C is not None and hasattr(_C, "implicit_gemm_plan"):
        return _C.implicit_gemm_plan(n, c, h, h, k, elt, pool, sms, tile)
    m = n * (4 * (h // 2) ** 2 if pool else h * h)
    return {"bm": bm, "bn": bn, "M": m, "m_tiles": math.ceil(m / bm), "k_blocks": math.ceil(k / bn),
            "splits": 1, "blocks": math.ceil(m / bm) * math.ceil(k / bn)}


def unhidden(bm: int, bn: int, slices: int, eff: float, per_sm: int, items: int = 0, elt: int = 2,
             ping_pong: bool = False) -> float:
    """Fraction of a block's time in its main loop when it has the SM alone (per_sm = 1):
    nothing overlaps its first load and its epilogue (the BM x BN fp32 tile written to
    shared memory and read back, 128 bytes per clock). 1 with 2+ blocks per SM. A
    persistent (ws) block taking `items` work items in turn: its producer loads the next
    item under the epilogue, so one first load per block, and the epilogue is the
    computing warps' writes of y from their registers (BM x BN elements of `elt` bytes, 128
    bytes per clock: 16-bit y into its staging in shared memory, conflict-free, whose
    tensor stores then run under the next item; fp32 y as float2 stores, whole sectors),
    during which the tensor cores idle; ping-pong (ws128x128), whose two
    computing warpgroups take the items in turn, stores one item's y under the other's main
    loop, so only the first load is left."""
    if per_sm > 1:
        return 1.0
    main = bm * bn * 32 * slices / 2048 / eff
    if items:
        return main / (main + FILL_CLOCKS / items + (0 if ping_pong else bm * bn * elt / 128))
    return main / (main + FILL_CLOCKS + 2 * bm * bn * 4 / 128)


def smem_cap(bm: int, bn: int, wgmma: str | None = None) -> float:
    """Fraction of the tensor peak the shared-memory traffic allows (one 64-byte K slice)."""
    if wgmma:  # per k16 step: each wgmma reads M + N rows of 32 bytes; cp.async writes BM + BN
        reads = sum(m + n for m, n in WGMMA_SHAPES[wgmma]) * 32
        wavefronts = 2 * (reads + (bm + bn) * 32) / 128
    else:
        warps = bm * bn // 4096
        wavefronts = warps * 16 * 4 + (bm + bn) * 64 / 128
    # At the dense fp16 peak an SM retires 2048 MACs per clock (one m16n8k16), and a slice
    # is 32 halves of K; TF32 runs half the MACs per clock on 16 floats per slice: the same.
    mma_clocks = bm * bn * 32 / 2048
    return min(1.0, mma_clocks / wavefronts)


@functools.lru_cache(maxsize=None)
def x_rows_from_l2(bm: int, h: int, pool: bool, images: int = 2) -> float:
    """Rows of x (64-byte chunks of one pixel's channels) a BM-row block copies from L2 per
    64-byte K slice, averaged over the M tiles of `images` h x h images in the kernel's M
    order (pool: window by window): every in-image tap's row, over the 9 taps. Cached:
    layers of one shape and tile share it."""
    rows = []
    for im in range(images):
        if pool:
            ho = h // 2
            for q in range(ho * ho):
                r0, c0 = 2 * (q // ho), 2 * (q % ho)
                rows += [(im, r0, c0), (im, r0, c0 + 1), (im, r0 + 1, c0), (im, r0 + 1, c0 + 1)]
        else:
            rows += [(im, m // h, m % h) for m in range(h * h)]
    taps = sum(1 for _, r, c in rows for dr in (-1, 0, 1) for dc in (-1, 0, 1) if 0 <= r + dr < h and 0 <= c + dc < h)
    return taps / math.ceil(len(rows) / bm) / 9


def l2_bytes_per_clock(bm: int, bn: int, h: int, pool: bool) -> float:
    """L2 bytes one SM's blocks read per clock at the dense tensor peak (2048 MACs per
    clock; a slice is BM x BN x 32 MACs): BN weight rows and the x rows, 64 bytes each."""
    return 64 * (x_rows_from_l2(bm, h, pool) + bn) / (bm * bn * 32 / 2048)


def layer_rows(n: int, gpu: str, dtype: str = "fp16", tile: str | None = None):
    pk = PEAKS[gpu]
    elt = 4 if dtype == "fp32" else 2
    rows = []
    for name, c, k, h, pool in VGG16_CONVS:
        flops = 2 * n * k * c * 9 * h * h
        out_hw = (h // 2) ** 2 if pool else h * h
        nbytes = elt * (n * c * h * h + k * c * 9 + n * k * out_hw)
        t_flop = flops / (pk["fp16" if dtype != "fp32" else "tf32"] * 1e12)
        t_byte = nbytes / (pk["bw"] * 1e12)
        tl = tile or rule_tile(k, wgmma=True)  # every GPU modelled is a Hopper
        if tl in WGMMA_POLICIES:
            tl = wgmma_policy_tile(k, tl)
        bm, bn, per_sm = TILES[tl]
        pl = plan(n, c, h, k, pool, elt, SMS[gpu], tl)
        m, blocks, splits = pl["M"], pl["blocks"], pl["splits"]
        if splits > 1:  # split-K: fp32 partials written and read back once
            nbytes += 2 * 4 * splits * m * k
            t_byte = nbytes / (pk["bw"] * 1e12)
        slots = SMS[gpu] * per_sm
        waves = math.ceil(blocks / slots)
        tail = blocks / (waves * slots)
        cp = -(-c // 8) * 8  # C padded to a multiple of 8
        pad = (m / (math.ceil(m / bm) * bm)) * (k / (math.ceil(k / bn) * bn)) * \
            (9 * c / (math.ceil(9 * cp * elt / 64) * 64 / elt))
        wg = tl if is_wgmma(tl) else None
        eff = min(smem_cap(bm, bn, wg), WGMMA_CEILING if wg else MMA_SYNC_CEILING)
        slices = pl.get("slices_per_split", math.ceil(9 * cp * elt / 64))
        alone = unhidden(bm, bn, slices, eff, per_sm, waves if tl.startswith("ws") else 0, elt, tl in PING_PONG)
        eff *= tail * pad * alone
        l2 = l2_bytes_per_clock(bm, bn, h, pool)
        rows.append(dict(layer=name, C=c, K=k, H=h, pool=pool, gflop=flops / 1e9, mbytes=nbytes / 1e6, l2=l2,
                         flop_floor_us=t_flop * 1e6, byte_floor_us=t_byte * 1e6, tile=tl, splits=splits,
                         smem_cap=smem_cap(bm, bn, wg), blocks=blocks, waves=waves, tail=tail, pad=pad, alone=alone,
                         predicted_us=max(t_flop / eff, t_byte) * 1e6, predicted_pct=100 * eff))
    return rows


def render(rows, n, gpu, dtype):
    out = [f"VGG16 convs, batch {n}, {dtype}, {gpu} (datasheet peaks; a model, not a measurement)", "",
           "| layer | C→K, H | GFLOP | MB | FLOP floor µs | byte floor µs | tile | split-K | smem cap "
           "| blocks (waves) | last-wave fill | padding | unhidden | predicted µs | % of peak "
           "| L2 B/clk/SM |",
           "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
           "| ---: |"]
    for r in rows:
        out.append(f"| {r['layer']}{' +pool' if r['pool'] else ''} | {r['C']}→{r['K']}, {r['H']}² | {r['gflop']:.1f} "
                   f"| {r['mbytes']:.0f} | {r['flop_floor_us']:.0f} | {r['byte_floor_us']:.0f} | {r['tile']} | {r['splits']} "
                   f"| {r['smem_cap']:.0%} | {r['blocks']} ({r['waves']}) | {r['tail']:.0%} | {r['pad']:.0%} | {r['alone']:.0%} "
                   f"| {r['predicted_us']:.0f} | {r['predicted_pct']:.0f}% | {r['l2']:.0f} |")
    tot_floor = sum(max(r["flop_floor_us"], r["byte_floor_us"]) for r in rows)
    tot_pred = sum(r["predicted_us"] for r in rows)
    out += ["", f"Sum over the 13 convs: floor {tot_floor:.0f} µs, predicted {tot_pred:.0f} µs (the floor is "
            f"{100 * tot_floor / tot_pred:.0f}% of the prediction; launch overheads, a few µs per kernel, not counted)."]
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--gpu", default="H100 SXM", choices=sorted(PEAKS))
    ap.add_argument("--dtype", default="fp16", choices=("fp16", "bf16", "fp32"))
    ap.add_argument("--tile", choices=sorted(TILES) + list(WGMMA_POLICIES),
                    help="force one tile (default: the rule's tile, the dispatch's choice without a tuned entry, "
                         "wgmma-wide's; "
                         "wgmma: wg256x64 where K <= 64, else "
                         "wg128x128; wgmma-wide: wg128x256 where K >= 256; wgmma-ws: ws128x256 there, ws128x128 below)")
    args = ap.parse_args(argv)
    print(render(layer_rows(args.batch, args.gpu, args.dtype, args.tile), args.batch, args.gpu, args.dtype))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
