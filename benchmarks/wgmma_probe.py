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
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script
from benchmarks.cases import ALL_IMPLICIT_GEMM_TILES  # noqa: E402
from benchmarks.tiles import is_wgmma  # noqa: E402

TILES = tuple(t for t in ALL_IMPLICIT_GEMM_TILES if is_wgmma(t))  # every one, whatever is excluded


def _same(x, w, b, label, **kw) -> bool:
    """Our conv on the CPU (the emulator) and on the GPU, bit for bit; prints the verdict."""
    import vggkern

    cpu = vggkern.conv3x3(x, w, b, algo="implicit_gemm", allow_tf32=True, **kw)
    gpu = vggkern.conv3x3(x.cuda(), w.cuda(), b.cuda(), algo="implicit_gemm", allow_tf32=True, **kw)
    torch.cuda.synchronize()
    same = torch.equal(cpu, gpu.cpu())
    print(f"wgmma probe: {label}: {'matches the emulator' if same else 'DIFFERS from the emulator'}")
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


def main(argv=()) -> int:
    import vggkern

    if not torch.cuda.is_available() or torch.cuda.get_device_capability() != (9, 0) \
            or not vggkern.build_info().get("cuda_wgmma"):
        print("wgmma probe: not runnable here (needs an sm_90a build on a compute capability 9.0 GPU)")
        return 2
    if "--tensor-loads" in argv:
        return tensor_loads()
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
