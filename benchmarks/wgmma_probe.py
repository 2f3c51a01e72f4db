"""The first hardware check of implicit_gemm's wgmma tiles, in a process of its own.

    python benchmarks/wgmma_probe.py      # exit 0: every tile matches; 1: a mismatch; 2: not built/runnable here
    python benchmarks/wgmma_probe.py --tensor-loads   # the ws tiles' tensor stores and loads (TMA), the same
                                                      # way; exit 3: only the pooled layers' loads differ or
                                                      # fault; + 4: the tensor stores did (exit 4, 5 or 7)

A wgmma tile whose descriptors or layouts the emulator got wrong may fault on the GPU, and a
fault poisons the CUDA context of the process it happens in, so device_run.sh asks this
small process first: each wgmma tile on a small integer case in fp16, bf16 and fp32 as
TF32 (every sum exact, so the GPU and the emulator must agree bit for bit) against the
emulator's result on the CPU. When it fails, device_run.sh keeps the wgmma tiles out of
the GPU tests' process, the sanitizer case and the benchmark sweep
(VGGKERN_BENCH_EXCLUDE_TILES), so one faulting kernel cannot take the rest of the
session's measurements with it. The tiles are checked with their copies by cp.async
(VGGKERN_IMPLICIT_GEMM_TMA=off); --tensor-loads then checks ws128x256 and ws128x128
copying by tensor loads (the TMA unit: an im2col box of x, a tile of the weight,
mbarriers) in another process, on a case that allows them (C = 64; fp32 as a TF32
chain's x), and pooled (H, W even, no split-K: 8-pixel boxes of x's even and odd rows,
the slab order), so that a fault or a mismatch there leaves only the tensor loads out (device_run.sh then runs
everything with VGGKERN_IMPLICIT_GEMM_TMA=off), not the tiles. The pooled checks come
after all the unpooled ones; where only they fail (or fault), exit 3, and device_run.sh
keeps the unpooled tensor loads (VGGKERN_IMPLICIT_GEMM_TMA=unpooled).
The tiles are also checked with y stored in pairs (VGGKERN_IMPLICIT_GEMM_TMA_STORE=off): the
ws tiles' staged y stores (tensor stores from shared memory, 16-bit y) are checked first
under --tensor-loads, with cp.async copies, pooled and not; where they differ or fault the
exit code adds 4, device_run.sh runs everything with VGGKERN_IMPLICIT_GEMM_TMA_STORE=off,
and the tensor loads are checked with the pairs.
The ws tiles run each case twice: on the default grid (a block per item here), and on one
persistent block (VGGKERN_IMPLICIT_GEMM_GRID=1) that takes the 4 items in turn, so that the
mbarriers' phases run on across items and ws128x128's ping-pong (its two computing
warpgroups taking the items in turn, ordered by named barriers) are proven here too.

    python benchmarks/wgmma_probe.py --scale   # the ws tiles at scale; exit 3: only stream-K is wrong

--scale runs the ws tiles where the emulator cannot go, once the small cases passed (with
the copies device_run.sh chose after --tensor-loads): a persistent block on every SM taking
many items (ws128x256 on conv4's 28 x 28 and conv5's 14 x 14, ws128x128 on conv2's 112 x 112,
pooled and not), first as whole tiles, then conv5 with stream-K (a tile's parts adding into
each other under real concurrency: batch 64, and batch 1's 4 tiles in up to 18 parts), on
small integers, so every sum is exact and the result must equal float64's rounded to the
dtype, bit for bit. It prints "at scale, whole tiles: every case matches" before stream-K
starts, so device_run.sh can tell a hang in stream-K (it then turns stream-K off) from one in
the tiles (it leaves them out).
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script
from benchmarks.cases import ALL_IMPLICIT_GEMM_TILES  # noqa: E402
from benchmarks.tiles import is_wgmma  # noqa: E402

TILES = tuple(t for t in ALL_IMPLICIT_GEMM_TILES if is_wgmma(t))  # every one, whatever is excluded


def _ranges(values) -> str:
    """Sorted ints as "0-63, 128, 130-131"."""
    values, out = sorted(set(values)), []
    for v in values:
        if out and v == out[-1][1] + 1:
            out[-1][1] = v
        else:
            out.append([v, v])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in out)


def describe_mismatch(got, want, tile: str, pool: bool) -> str:
    """Where a result y (N, K, Ho, Wo) differs from the right one, in the kernel's terms: how
    many elements; which of the tile's M tiles (BM output pixels, or BM/4 pooled windows,
    of pixel order (n, h, w)), rows within a tile (pooled: windows), and output channels
    within its BN; how many came out 0; the first few. So that a first GPU run's log says
    what to look for (a warpgroup's rows, a tap, stream-K's tiles) after the session ended."""
    from benchmarks.roofline import TILES as TILE_SHAPES  # (BM, BN, blocks per SM) by tile name

    got, want = got.detach().cpu().double(), want.detach().cpu().double()
    bad = (got != want) & ~(got.isnan() & want.isnan())
    count = int(bad.sum())
    if count == 0:
        return "no element differs"
    n_img, k_out, ho, wo = got.shape
    n, k, h, w = bad.nonzero().unbind(1)
    pixel = (n * ho + h) * wo + w  # y's pixel (pooled: its window), in M's order
    parts = [f"{count} of {got.numel()} elements ({100 * count / got.numel():.3g}%)"]
    if tile in TILE_SHAPES:
        bm, bn, _ = TILE_SHAPES[tile]
        per_tile = bm // 4 if pool else bm
        tiles = -(-n_img * ho * wo // per_tile)
        parts += [f"M tiles {_ranges((pixel // per_tile).tolist())} of 0-{tiles - 1}",
                  f"{'windows' if pool else 'rows'} {_ranges((pixel % per_tile).tolist())} of 0-{per_tile - 1} "
                  f"in a tile", f"channels {_ranges((k % bn).tolist())} of 0-{bn - 1} in a tile, of K blocks "
                  f"{_ranges((k // bn).tolist())} of 0-{-(-k_out // bn) - 1}"]
    zeros = int((got[bad] == 0).sum())
    parts.append(f"{zeros} of them 0")
    first = [f"(n={int(a)}, k={int(b)}, h={int(c)}, w={int(d)}) {got[a, b, c, d].item():g} for "
             f"{want[a, b, c, d].item():g}" for a, b, c, d in zip(n[:3], k[:3], h[:3], w[:3])]
    return "; ".join(parts) + "; first " + ", ".join(first)


def _same(x, w, b, label, **kw) -> bool:
    """Our conv on the CPU (the emulator) and on the GPU, bit for bit; prints the verdict."""
    import vggkern

    cpu = vggkern.conv3x3(x, w, b, algo="implicit_gemm", allow_tf32=True, **kw)
    gpu = vggkern.conv3x3(x.cuda(), w.cuda(), b.cuda(), algo="implicit_gemm", allow_tf32=True, **kw)
    torch.cuda.synchronize()
    same = torch.equal(cpu, gpu.cpu())
    print(f"wgmma probe: {label}: {'matches the emulator' if same else 'DIFFERS from the emulator'}")
    if not same:
        print(f"  {describe_mismatch(gpu, cpu, os.environ.get('VGGKERN_IMPLICIT_GEMM_TILE', ''), kw.get('pool'))}")
    return same


WS_TILES = tuple(t for t in TILES if t.startswith("ws"))
# The cases' x (N, C, H, W) and K: the tiles', and the tensor loads' (C a multiple of the slice).
CASE, TENSOR_LOAD_CASE = ((2, 24, 12, 20), 72), ((2, 64, 12, 20), 72)


def grids(tile: str) -> tuple[str, ...]:
    """VGGKERN_IMPLICIT_GEMM_GRID per run of a tile: the default, and for the persistent ws tiles
    also one block taking every item."""
    return ("", "1") if tile in WS_TILES else ("",)


def _same_on_grids(x, w, b, tile, label, **kw) -> bool:
    ok = True
    for grid in grids(tile):
        os.environ["VGGKERN_IMPLICIT_GEMM_GRID"] = grid
        ok &= _same(x, w, b, label + (f" grid={grid}" if grid else ""), **kw)
    os.environ["VGGKERN_IMPLICIT_GEMM_GRID"] = ""
    return ok


def tensor_stores(cases) -> bool:
    """The ws tiles' staged y stores (16-bit y) with cp.async copies, unpooled then pooled;
    True where all match. A fault counts as a mismatch (and the context it leaves makes the
    tensor-load checks after it fail too)."""
    os.environ["VGGKERN_IMPLICIT_GEMM_TMA"] = "off"
    os.environ["VGGKERN_IMPLICIT_GEMM_TMA_STORE"] = "on"
    ok = True
    try:
        for pool in (False, True):
            for tile in WS_TILES:
                os.environ["VGGKERN_IMPLICIT_GEMM_TILE"] = tile
                ok &= all(_same_on_grids(x, w, b, tile, f"{tile} tensor stores {dtype}" + (" pool=True" if pool else ""),
                                         relu=True, pool=pool)
                          for dtype, x, w, b in cases if dtype != torch.float32)
    except Exception as e:  # noqa: BLE001
        print(f"wgmma probe: tensor stores FAULTED: {type(e).__name__}: {str(e)[:200]}")
        ok = False
    if not ok:
        os.environ["VGGKERN_IMPLICIT_GEMM_TMA_STORE"] = "off"
    return ok


def tensor_loads() -> int:
    """The ws tiles' staged y stores (tensor_stores), then the tiles with their copies
    required to be tensor loads, in the three dtypes, with and without the pool."""
    g = torch.Generator().manual_seed(1)
    cases = []
    (n, c, h, wd), k = TENSOR_LOAD_CASE
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        x = torch.randint(-3, 4, (n, c, h, wd), generator=g).to(dtype).contiguous(memory_format=torch.channels_last)
        w = torch.randint(-2, 3, (k, c, 3, 3), generator=g).to(dtype)
        b = torch.randint(-5, 6, (k,), generator=g).to(dtype)
        cases.append((dtype, x, w, b))
    os.environ["VGGKERN_IMPLICIT_GEMM_SPLIT_K"] = "1"  # the staged stores and pooled tensor loads: no split-K
    stores = 0 if tensor_stores(cases) else 4
    os.environ["VGGKERN_IMPLICIT_GEMM_TMA"] = "on"

    def check(pool: bool) -> int:
        bad = 0
        for tile in WS_TILES:
            os.environ["VGGKERN_IMPLICIT_GEMM_TILE"] = tile
            bad += sum(not _same_on_grids(x, w, b, tile, f"{tile} tensor loads {dtype}" + (" pool=True" if pool else ""),
                                          relu=True, pool=pool, x_tf32=dtype == torch.float32)
                       for dtype, x, w, b in cases)
        return bad

    try:
        if check(pool=False):
            return 1 + stores
    except Exception as e:  # noqa: BLE001  (a fault: this process's context is gone, the verdict is not)
        print(f"wgmma probe: tensor loads FAULTED: {type(e).__name__}: {str(e)[:200]}")
        return 1 + stores
    try:
        bad = check(pool=True)
    except Exception as e:  # noqa: BLE001
        print(f"wgmma probe: pooled tensor loads FAULTED: {type(e).__name__}: {str(e)[:200]}")
        bad = 1
    return (3 if bad else 0) + stores


# --scale's cases: (tile, x's (N, C, H, W), K, pool); each on the default grid (a block per SM).
SCALE_WHOLE = (("ws128x256", (16, 512, 28, 28), 512, True), ("ws128x256", (64, 512, 14, 14), 512, False),
               ("ws128x128", (8, 128, 112, 112), 128, True), ("ws128x128", (4, 64, 112, 112), 128, False))
SCALE_STREAM_K = (("ws128x256", (64, 512, 14, 14), 512, False), ("ws128x256", (1, 512, 14, 14), 512, False))


def _exact(x, w, b, pool):
    """conv + bias + ReLU (+ pool) of small integers in float64, rounded to the integers the
    sums are (whatever cuDNN's order), then to x's dtype."""
    import torch.nn.functional as F

    y = F.conv2d(x.double(), w.double(), b.double(), padding=1).round().relu()
    return (F.max_pool2d(y, 2, 2) if pool else y).to(x.dtype)


def at_scale(whole=SCALE_WHOLE, stream_k=SCALE_STREAM_K, device="cuda") -> int:
    """The ws tiles on every SM (see the module's docstring): 0, every case matches; 3,
    only stream-K's differ or fault; 1, the whole tiles do. A case counts as a mismatch
    where its launch ran another tile, or stream-K where it should not have (or not where
    it should)."""
    import vggkern

    def run(cases, label, sk) -> bool:
        os.environ["VGGKERN_IMPLICIT_GEMM_STREAM_K"] = sk
        ok = True
        for tile, (n, c, h, wd), k, pool in cases:
            os.environ["VGGKERN_IMPLICIT_GEMM_TILE"] = tile
            g = torch.Generator().manual_seed(n * c + h)
            for dtype in (torch.float16, torch.bfloat16):
                x = torch.randint(-3, 4, (n, c, h, wd), generator=g).to(dtype).to(device).contiguous(
                    memory_format=torch.channels_last)
                w = torch.randint(-2, 3, (k, c, 3, 3), generator=g).to(dtype).to(device)
                b = torch.randint(-5, 6, (k,), generator=g).to(dtype).to(device)
                y, want = vggkern.conv3x3(x, w, b, relu=True, pool=pool, algo="implicit_gemm"), _exact(x, w, b, pool)
                ran = vggkern._C.implicit_gemm_last_copies() or {}
                how = f"{ran.get('tile')} tile, {ran.get('path')} copies, {ran.get('stream_k') or 'whole tiles'}"
                same = (ran.get("tile") == tile and bool(ran.get("stream_k")) == (sk == "on")
                        and torch.equal(y, want))
                ok &= same
                print(f"wgmma probe: {label}: {tile} x {tuple(x.shape)} K={k} pool={pool} {dtype}: "
                      f"{'matches' if same else 'DIFFERS from'} the exact sums ({how})")
                if not same:
                    print(f"  {describe_mismatch(y, want, tile, pool)}")
        return ok

    try:
        if not run(whole, "at scale", "off"):
            return 1
    except Exception as e:  # noqa: BLE001
        print(f"wgmma probe: at scale, whole tiles FAULTED: {type(e).__name__}: {str(e)[:200]}")
        return 1
    print("wgmma probe: at scale, whole tiles: every case matches")
    try:
        return 0 if run(stream_k, "stream-K", "on") else 3
    except Exception as e:  # noqa: BLE001
        print(f"wgmma probe: stream-K FAULTED: {type(e).__name__}: {str(e)[:200]}")
        return 3


def main(argv=()) -> int:
    import vggkern

    if not torch.cuda.is_available() or torch.cuda.get_device_capability() != (9, 0) \
            or not vggkern.build_info().get("cuda_wgmma"):
        print("wgmma probe: not runnable here (needs an sm_90a build on a compute capability 9.0 GPU)")
        return 2
    if "--tensor-loads" in argv:
        return tensor_loads()
    if "--scale" in argv:
        return at_scale()
    os.environ["VGGKERN_IMPLICIT_GEMM_TMA"] = "off"
    os.environ["VGGKERN_IMPLICIT_GEMM_TMA_STORE"] = "off"
    g = torch.Generator().manual_seed(0)
    bad = 0
    (n, c, h, wd), k = CASE
    for dtype in (torch.float16, torch.bfloat16, torch.float32):  # float32: TF32 (m64nNk8), allowed per call
        x = torch.randint(-3, 4, (n, c, h, wd), generator=g).to(dtype).contiguous(memory_format=torch.channels_last)
        w = torch.randint(-2, 3, (k, c, 3, 3), generator=g).to(dtype)
        b = torch.randint(-5, 6, (k,), generator=g).to(dtype)
        for tile in TILES:
            os.environ["VGGKERN_IMPLICIT_GEMM_TILE"] = tile
            for relu, pool in ((False, False), (True, True)):
                bad += not _same_on_grids(x, w, b, tile, f"{tile} {dtype} relu={relu} pool={pool}", relu=relu, pool=pool)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
