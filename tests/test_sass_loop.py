"""benchmarks/sass_loop.py: the static count of implicit_gemm's main loop (no GPU needed).

The parser on a fixed SASS excerpt, and, where nvcc and cuobjdump exist (CI has both:
the CUDA toolkit, and triton's copy of cuobjdump), the real kernel compiled for sm_90a:
per 64-byte K slice each warp issues exactly its tiling's mma (or wgmma), ldmatrix and
cp.async instructions, no integer division (the K position advances incrementally), and
the other instructions stay under a bound (issue pressure: see sass_loop's docstring).
"""
import pytest

from benchmarks import sass_loop

EXCERPT = """
\t\tFunction : _ZN2vk3gpu28conv3x3_implicit_gemm_kernelI6__halfLNS0_7MmaTypeE0ELi128ELi128ELNS0_8MainLoopE0EiEEvPKT_S6_S6_PS4_NS0_18ImplicitGemmParamsIT4_EE
        /*0000*/                   MOV R1, c[0x0][0x28] ;
        /*0010*/                   ISETP.NE.AND P0, PT, R2, RZ, PT ;
        /*0020*/                   LDSM.16.M88.4 R4, [R8] ;
        /*0030*/                   HMMA.16816.F32 R12, R4, R6, R12 ;
        /*0040*/              @!P0 IMAD.HI R3, R3, 0x5, RZ ;
        /*0050*/                   HMMA.16816.F32 R16, R4, R7, R16 ;
        /*0060*/               @P0 BRA 0x20 ;
        /*0070*/                   BRA 0x10 ;
        /*0080*/                   EXIT ;
"""

# A warp-specialised instantiation (MainLoop 3): the consumers' loop (HGMMA) and the
# producer's (LDGSTS, no HGMMA) are told apart, whichever is longer.
WS_EXCERPT = """
\t\tFunction : _ZN2vk3gpu28conv3x3_implicit_gemm_kernelI6__halfLNS0_7MmaTypeE0ELi128ELi256ELNS0_8MainLoopE3EiEEvPKT_S6_S6_PS4_NS0_18ImplicitGemmParamsIT4_EE
        /*0000*/                   BAR.SYNC R2, R3 ;
        /*0010*/                   HGMMA.64x256x16.F32 R24, gdesc[UR4], R24 ;
        /*0020*/                   BAR.ARV R4, R3 ;
        /*0030*/               @P0 BRA 0x0 ;
        /*0040*/                   BAR.SYNC R5, R3 ;
        /*0050*/                   LDGSTS.E.BYPASS.128 [R6], desc[UR6][R8.64] ;
        /*0060*/                   LDGSTS.E.BYPASS.128 [R6+0x400], desc[UR6][R10.64] ;
        /*0070*/                   IADD3 R8, R8, 0x40, RZ ;
        /*0080*/                   BAR.ARV R7, R3 ;
        /*0090*/               @P1 BRA 0x40 ;
        /*00a0*/                   EXIT ;
"""


def test_parser_finds_a_warp_specialised_kernels_two_loops():
    (row,) = sass_loop.analyse(WS_EXCERPT)
    assert row["kernel"] == "fp16 ws128x256 int32"
    assert (row["loop_instructions"], row["hgmma"], row["ldgsts"]) == (4, 1, 0)
    assert (row["producer_instructions"], row["producer_ldgsts"]) == (6, 2)
    # A sub-partition's share at the peak: 2 computing warps' loops (4 each) and the
    # producer warp's 6, against both warpgroups' HGMMA.64x256 (128 clocks each).
    assert row["sub_partition_share"] == {"cp_async": round((2 * 4 + 6) / 256, 2)}
    assert sass_loop.producer_cell(row) == "6 (2); SP 0.05"
    # ws128x128 runs ping-pong: one warpgroup computes an item, so a sub-partition issues one
    # computing warp's loop (4) and the producer warp's (6) against that warpgroup's HGMMA.64x128
    # (64 clocks).
    pp = WS_EXCERPT.replace("Li128ELi256E", "Li128ELi128E").replace("HGMMA.64x256x16", "HGMMA.64x128x16")
    (row,) = sass_loop.analyse(pp)
    assert row["kernel"] == "fp16 ws128x128 int32" and sass_loop.item_warpgroups(row["function"]) == 1
    assert row["sub_partition_share"] == {"cp_async": round((4 + 6) / 64, 2)}


# ws128x256's tensor-load loops (no HGMMA, no LDGSTS), each UTMALDG in a small ELECT loop
# of its own: unpooled, an im2col box and the weight's tile a slice; pooled, 4 boxes and the
# tile (here unrolled 2 deep: 8 and 2). Counted per slice by the tile loads.
TMA_EXCERPT = """
\t\tFunction : _ZN2vk3gpu28conv3x3_implicit_gemm_kernelI6__halfLNS0_7MmaTypeE0ELi128ELi256ELNS0_8MainLoopE3EiEEvPKT_S6_S6_PS4_NS0_18ImplicitGemmParamsIT4_EE
        /*0000*/                   BAR.SYNC R5, R3 ;
        /*0010*/                   ELECT P2, URZ, PT ;
        /*0020*/                   UTMALDG.4D.IM2COL [UR8], [UR14], UR5 ;
        /*0030*/               @P0 BRA.U.ANY 0x10 ;
        /*0040*/                   UTMALDG.2D [UR8], [UR12] ;
        /*0050*/               @P1 BRA 0x0 ;
        /*0060*/                   BAR.SYNC R5, R3 ;
        /*0070*/                   UTMALDG.4D.IM2COL [UR8], [UR14], UR5 ;
        /*0080*/                   UTMALDG.4D.IM2COL [UR8], [UR14], UR5 ;
        /*0090*/                   UTMALDG.4D.IM2COL [UR8], [UR14], UR5 ;
        /*00a0*/                   UTMALDG.4D.IM2COL [UR8], [UR14], UR5 ;
        /*00b0*/                   UTMALDG.2D [UR8], [UR12] ;
        /*00c0*/                   UTMALDG.4D.IM2COL [UR8], [UR14], UR5 ;
        /*00d0*/                   UTMALDG.4D.IM2COL [UR8], [UR14], UR5 ;
        /*00e0*/                   UTMALDG.4D.IM2COL [UR8], [UR14], UR5 ;
        /*00f0*/                   UTMALDG.4D.IM2COL [UR8], [UR14], UR5 ;
        /*0100*/                   UTMALDG.2D [UR8], [UR12] ;
        /*0110*/               @P1 BRA 0x60 ;
        /*0120*/                   EXIT ;
"""


def test_parser_tells_the_tensor_load_loops_apart():
    (name, insns), = sass_loop.parse_functions(TMA_EXCERPT).items()
    assert sass_loop.tma_loops(insns) == {"tma": 6, "tma_pool": 6}  # 6 of 0x00..0x50; 12 of 0x60..0x110 per 2


PTXAS_EXCERPT = """
ptxas info    : Compiling entry function '_Zk1' for 'sm_90a'
ptxas info    : Function properties for _Zk1
    0 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads
ptxas info    : Used 255 registers, used 1 barriers
ptxas info    : (C7519) warpgroup.arrive is injected in around line 7 by compiler to allow use of registers in GMMA in function '_Zk1'
ptxas info    : Function properties for _Zk2
    16 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 40 registers, used 0 barriers
"""


def test_ptxas_report_parser():
    r = sass_loop.ptxas_report(PTXAS_EXCERPT)
    assert r["functions"] == {"_Zk1": {"stack": 0, "spill_stores": 8, "spill_loads": 4, "registers": 255},
                              "_Zk2": {"stack": 16, "spill_stores": 0, "spill_loads": 0, "registers": 40}}
    assert len(r["diagnostics"]) == 1 and "C7519" in r["diagnostics"][0]


def test_parser_finds_the_largest_loop_with_mma():
    funcs = sass_loop.parse_functions(EXCERPT)
    (name, insns), = funcs.items()
    assert sass_loop.instantiation(name) == "fp16 128x128 int32"
    body = sass_loop.main_loop(insns)
    # 0x10..0x70 (the outer loop) beats 0x20..0x60; guards are not opcodes.
    assert len(body) == 7 and body[0].startswith("ISETP") and body[-1] == "BRA 0x10"
    rows = sass_loop.analyse(EXCERPT)
    assert rows[0]["hmma"] == 2 and rows[0]["ldsm"] == 1 and rows[0]["opcodes"]["IMAD"] == 1
    assert not rows[0]["division"]


# (BM, BN, threads that copy) per tile: cp.async copies per copying thread per slice = (BM +
# BN) * 4 / threads (the ws tiles: their producer warpgroup's 128).
TILES = {"128x64": (128, 64, 64), "128x128": (128, 128, 128), "256x128": (256, 128, 256),
         "256x64": (256, 64, 128), "wg128x128": (128, 128, 128), "wg256x64": (256, 64, 128),
         "wg128x256": (128, 256, 256), "ws128x256": (128, 256, 128), "ws128x128": (128, 128, 128)}
# The ws tiles' bounds: the consumers' issue share; the producer's cp.async loop per slice
# and warp (int32, int64); see the test.
WS_BOUNDS = {"ws128x256": (0.25, 170, 222), "ws128x128": (0.33, 135, 182)}


@pytest.mark.slow
@pytest.mark.skipif(sass_loop.find_tool("nvcc") is None or sass_loop.find_tool("cuobjdump") is None,
                    reason="needs nvcc and cuobjdump (CUDA toolkit, or triton's copy)")
def test_main_loop_of_every_instantiation(tmp_path):
    cubin = tmp_path / "ig.cubin"
    report = sass_loop.ptxas_report(sass_loop.compile_cubin("sm_90a", cubin))
    rows = sass_loop.analyse(sass_loop.sass_of(cubin))
    assert len(rows) == 3 * (4 + 5) * 2  # dtypes x (mma.sync + wgmma tiles) x index types
    # ptxas: no coded notes (wgmma serialized, a warpgroup.arrive injected for a missing
    # fence, ...), and every instantiation in registers: no stack frame, no spills.
    assert report["diagnostics"] == []
    # + the split-K reduction kernels (3 dtypes x 2 index types), and the NCHW epilogue
    # (store_nchw_tile: a call, not inlined) per instantiation and window (1, or the pool's 4)
    kernels = [name for name in report["functions"] if "store_nchw_tile" not in name]
    assert len(kernels) == len(rows) + 6, sorted(kernels)
    assert all(r["function"] in kernels for r in rows)  # the table's registers column: ptxas's count
    assert len(report["functions"]) == len(kernels) + 2 * len(rows), sorted(report["functions"])
    for name, f in report["functions"].items():
        # (ws128x256: 156-165 registers of the 168 its 384 threads may have (16-bit y, with
        # the staged stores' addresses: 165, 162); before its full barriers were mbarriers,
        # 168 and an 8-byte spill. ws128x128: 158-165, ping-pong's 128 accumulators a thread
        # (16-bit y: 165); 128 when its two warpgroups shared each item.)
        assert f["stack"] == 0 and f["spill_stores"] == 0 and f["spill_loads"] == 0, (name, f)
        # ptxas counts registers per kernel (a device function's within its caller's)
        assert name not in kernels or f["registers"] <= 255, (name, f)
    for r in rows:
        dtype, tile, index = r["kernel"].split()
        bm, bn, threads = TILES[tile]
        if tile.startswith("ws"):
            # Warp-specialised: the consumers' loop has no copies, only each slice's wait at its
            # full mbarrier (a try_wait loop: nvcc no longer unrolls the slice loop, which it did
            # 4 deep around named barriers: 143 instructions per 8 HGMMA), 2 HGMMA.64x256 per
            # warpgroup and the empty-barrier arrive: 53 instructions (int32 and int64; TF32 57),
            # 0.21 of the issue slots. The producer's cp.async loop makes each slice's 12 copies
            # per thread: 168 instructions per slice and producer warp (int32; 219 int64; TF32's
            # rounding pass: 229 and 280; 161, 222, 222, 283 before the work item was split into
            # functions, 772ac85, which moved nvcc's choices); its tensor-load loop issues 2 UTMALDG per slice
            # from one thread, 66 instructions a slice (its K position advanced without
            # division; unrolled 4 deep); with the pool, lane 0 of each producer warp issues 4
            # x boxes a slice (warp 0 also the weight's tile), 154 instructions a slice in warp
            # 0 (each UTMALDG ~20, most of them its ELECT loop's moves to uniform registers).
            # ws128x128 (ping-pong: a warpgroup computes a whole item): the same loop around 4
            # HGMMA.64x128 (74 instructions, int32; 75 int64: 0.29 of the slots; 52 around 2
            # while its two warpgroups shared each item, 0.41), 8 copies per producer thread
            # (134 instructions; 179 int64; TF32 195, 240; before 772ac85 131, 180, 192, 239),
            # tensor loads 63 (pooled 148). (The
            # slice's stage and phase by unsigned arithmetic: 6 fewer than by signed.)
            share, cp_int32, cp_int64 = WS_BOUNDS[tile]
            # Per sub-partition at the peak (a warp of each warpgroup computing the item, and a
            # producer warp), by cp.async / tensor loads / pooled tensor loads: ws128x256 0.52
            # / 0.34 / 0.51 (int64 0.64 / 0.34 / 0.51); ws128x128 0.80 / 0.54 / 0.87 (int64
            # 1.00 / 0.54 / 0.87; TF32 by cp.async 1.04): one computing warp's loop a slice, where
            # sharing the items it was two (0.94 / 0.66 / 1.01).
            sp = r["sub_partition_share"]
            assert sp["tma"] < sp["cp_async"] and sp["tma"] <= (0.4 if tile == "ws128x256" else 0.6), r
            # (ws128x128 pooled: 0.79 until the persistent loop walked stream-K's schedule
            # (work items by index, ImplicitGemmWork), 0.87 since: its pooled tensor-load loop
            # went from 128 to 148 instructions a slice, the loads' address arithmetic moved
            # from the uniform datapath to vector registers (R2UR 62 -> 88); cause not found.)
            assert sp["tma_pool"] <= (0.56 if tile == "ws128x256" else 0.9), r
            assert r["hgmma"] == (2 if tile == "ws128x256" else 4) and (r["hmma"], r["ldsm"], r["ldgsts"]) == (0, 0, 0), r
            assert r["issue_share"] <= share, r
            assert r["tma_instructions"] <= 70, r
            assert r["tma_pool_instructions"] <= (160 if tile == "ws128x256" else 150), r
            assert r["producer_ldgsts"] == (bm + bn) * 4 // threads, r
            assert r["producer_instructions"] <= (cp_int32 if index == "int32" else cp_int64) + (
                62 if dtype.startswith("fp32") else 0), r
            continue
        if tile.startswith("wg"):
            # 2 k-steps x (2 m64n128; 1 m64n256 transposed, or per warpgroup of two) per slice
            # (k16, or k8 for tf32), no ldmatrix; under 63% (int32) of a sub-partition's issue
            # slots at the tensor peak. (The listing holds both K orders' advance, of which a
            # slice runs one: int32 0.57-0.62, 0.50-0.54 before the K order, 0.61-0.64 while
            # x's .ca copy was listed too; int64 0.77-0.86.) TF32 also rounds x in shared
            # memory, ~4 instructions per float (cvt.rna.tf32.f32 is several on sm_90): int32
            # 0.69 (wg128x256), 0.85 (wg128x128), 1.05 (wg256x64: 32 floats per thread and
            # slice, so issue-bound below the tensor peak); int64 up to 1.27.
            hgmma = 4 if tile == "wg128x128" else 2
            assert (r["hgmma"], r["hmma"], r["ldsm"], r["ldgsts"]) == (hgmma, 0, 0, (bm + bn) * 4 // threads), r
            assert not r["division"], r
            if dtype.startswith("fp32"):
                assert r["issue_share"] <= (1.08 if index == "int32" else 1.3), r
            else:
                assert r["issue_share"] <= (0.63 if index == "int32" else 0.88), r
            continue
        # A 64 x 64 warp tile: 2 k-steps x 4 x 8 mma, 2 x (4 A + 4 B) ldmatrix.x4.
        assert (r["hmma"], r["ldsm"], r["ldgsts"]) == (64, 16, (bm + bn) * 4 // threads), r
        assert not r["division"], r
        # Before the incremental K position: 4.8-6.8 (halves), 6.7-8.8 (tf32) per HMMA; tf32
        # converts only x's fragments (the weight comes rounded): 4.2-5.1 (int32), was 5.2-6.1.
        # Both K orders' advance in the listing (a slice runs one): int32 3.53-4.34 (halves),
        # 4.55-5.36 (tf32); int64 4.38-5.66 and 5.42-6.75 (with x's .ca copy listed too,
        # before its removal: int32 3.62-4.55 and 4.64-5.56).
        bound = (4.4 if index == "int32" else 5.8) + (1.0 if dtype.startswith("fp32") else 0.0)
        assert r["issue_per_hmma"] <= bound, r


# The other kernel files, through ptxas alone: no coded notes, no stack frame, no spills
# (the kernels' headers quote their register counts; a tiling change that spills shows here).
@pytest.mark.slow
@pytest.mark.skipif(sass_loop.find_tool("nvcc") is None, reason="needs nvcc (CUDA toolkit)")
@pytest.mark.parametrize("source", ["conv3x3_direct", "conv3x3_winograd_f2x2", "conv3x3_winograd_f4x4",
                                    "maxpool2x2", "winograd_weight", "tensor_core_weight"])
def test_other_kernels_stay_in_registers(source, tmp_path):
    path = sass_loop.ROOT / "csrc" / "cuda" / f"{source}.cu"
    report = sass_loop.ptxas_report(sass_loop.compile_cubin("sm_90a", tmp_path / "k.cubin", path))
    assert report["diagnostics"] == []
    assert report["functions"], "ptxas reported no kernel"
    for name, f in report["functions"].items():
        assert (f["stack"], f["spill_stores"], f["spill_loads"]) == (0, 0, 0), (name, f)

