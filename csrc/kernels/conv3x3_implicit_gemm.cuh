// conv3x3_implicit_gemm: y = [maxpool2x2](ReLU?(conv2d(x, weight, bias, stride 1,
// padding 1))) on tensor cores with fp32 accumulation: fp16/bf16 storage with
// mma.sync.m16n8k16 (or, on sm_90a, wgmma.m64nNk16: the wg tiles, below), or fp32
// storage with TF32 math: the op rounds the weight to TF32 once (cvt.rna's rule:
// kernels/tensor_core_weight.cuh), and x is rounded by cvt.rna after its ldmatrix
// (mma.sync.m16n8k8.tf32), as cuDNN's TF32 rounds its inputs, or, on the wgmma tiles, by
// cvt.rna in shared memory before wgmma.m64nNk8.tf32 reads it (which would otherwise drop its
// low 13 mantissa bits: a bias toward zero). x (N, H, W, C) and y (N,
// H, W, K) or (N, H/2, W/2, K) are NHWC (channels_last); the weight is given as (K, 3, 3,
// C). C is a multiple of 8 (the op pads VGG's C=3 first layer with zeros).
// TF32 chains (the op's y_tf32 and x_tf32, which the models' FusedSequential sets): y_tf32
// rounds y (cvt.rna) after bias and ReLU, before the pool's max, which commutes with it (in
// the split-K reduction too); x_tf32 says x is TF32 already, and the wgmma tiles skip their
// rounding pass (a read and a write of every x element in shared memory; mma.sync keeps its
// cvt of each fragment element, a no-op on TF32 values). A chained layer's output is the unchained one bit for bit
// (tests/test_tf32_chain.py). What it saves, from the H200 (results/focus/
// 2026-12-04_H200_f697b76_k-order-tf32.json): VGG16 fp32 on wgmma-wide took 10.85 ms rounding
// x in shared memory, 9.27 ms (9f429b0) when wgmma truncated x unrounded; with the chain,
// predicted near the latter, not yet measured. The loop without the pass is fp16's (python -m
// benchmarks.sass_loop, the pass compiled out): wg128x128 158 instructions per slice against
// 216 listed with it, wg256x64 154 against 273 (issue share 1.07: issue-bound), wg128x256
// 145 against 180.
//
// GEMM view: M = output pixels, N_gemm = K output channels, K_gemm = 9*C, ordered
// (tap r*3+s, channel c) so a 16-byte chunk of channels (8 halves or 4 floats) is one
// contiguous load of x (or a zero-filled one at the image edge: the im2col matrix is
// never materialised).
// M order: without pool, the pixels (n, h, w) in NHWC order, so a block's 128 rows are
// 128 consecutive pixels and its stores are contiguous; with pool, pool window by pool
// window, row 4*q + 2*dy + dx = pixel (2*ho + dy, 2*wo + dx) of pooled pixel q = (n, ho,
// wo), so each window is 4 rows of one tile and the pixels floor-mode pooling drops are
// never computed. Either way M is dense: no rows are wasted at image edges (an 8 x 16
// spatial tile wasted 23% of the rows on VGG's 28x28 and 14x14 maps, 12% on 56x56).
// ws128x256 with the pool and tensor loads (maps.on) permutes each tile's rows into slabs
// (the same 32 windows per tile, so y and the grid are unchanged): rows 16b + 8dy + j, b <
// 8, j < 8, hold pixel (2 ho + dy, w) for (n, ho, w) the tile's 8b + j-th pixel of
// the row view (n, H/2, W): an even row's pixels (dy = 0) and, 8 rows further, the odd
// row's under them, so the pixels of one slab's dy are 8 consecutive pixels of an im2col
// box over the even or the odd rows, and each thread of a wgmma warp holds a window's two
// rows (g and g + 8) of one column (the epilogue: "slab order").
// Tiling: every warp computes a 64 x 64 tile of the output (4 m16 x 8 n8 mma tiles,
// 128 fp32 accumulators per thread); a block is kWarpsM x kWarpsN warps: 128 x 128 (4
// warps) where K > 64 and 256 x 64 (4 warps) where K <= 64, or 128 x 64 (2 warps) and
// 256 x 128 (8 warps) when forced or measured faster (conv3x3_implicit_gemm_plan.h). The grid runs the K
// tiles of one M tile next to each other (block b / splits: M tile / k_blocks, K tile %
// k_blocks), so the blocks on the GPU at one time share their x rows through L2. Where
// the grid would not fill the GPU, the plan splits K_gemm over `splits` blocks (split-K):
// each writes fp32 partial sums, and conv3x3_implicit_gemm_reduce_kernel finishes.
// Why 64 x 64 warps, by counting (sm_90: 128 bytes of shared memory per clock per SM,
// one m16n8k16 per clock per SM at the dense fp16 peak): a 64-byte K slice of a 128 x
// 128 block is 256 mma, and costs 384 shared-memory wavefronts: 64 ldmatrix.x4 (each
// warp, per k-step, 4 for A and 4 for B; 4 wavefronts each) plus 128 for the cp.async
// writes (16 KiB). That caps the kernel at 256 / 384 = 67% of the tensor peak, about
// mma.sync's own ceiling on Hopper (~65%). The first version's 64 x 32 warp tiles (8
// warps per 128 x 128) cost 512 wavefronts per 256 mma: a 50% cap; 256 x 128 blocks
// cost 704 per 512 mma (73%), 128 x 64 ones 224 per 128 (57%), 256 x 64 ones 416 per
// 256 (62%: the candidate for VGG's K = 64 layers, 13% of VGG16's conv FLOPs).
// K order and x's path. Tap by tap (the default, K position kt * kBK), or, where C is a
// multiple of kBK (every VGG layer but the first), channel slice by channel slice with the 9
// taps inner (slice kt: tap kt % 9, channels (kt / 9) * kBK on; the weight's (K, 3, 3, C)
// rows are read at tap * C + c either way): VGGKERN_IMPLICIT_GEMM_K_ORDER=taps_inner, kept so
// that a GPU run measures the two (benchmarks/cases.py, k_order rows). Measured (H200,
// results/focus/2026-12-04_H200_f697b76_k-order-tf32.json; fp16 channels_last, batch 64,
// wg128x128 and wg128x256 on conv3_1, conv3_2, conv4_2, conv5_1): taps inner at 0.94-1.11x
// the default's time. x's copies, like the weight's, go past L1 (cp.async.cg). Through L1
// (cp.async.ca), with taps inner the next taps' copies of the same pixels would hit there
// (by count, ~2 L2 reads per pixel chunk instead of 9), but that was measured slower than
// past L1 in the same K order in every row of the focus run above (up to 1.24x), and where
// it was the default (results/2026-12-04_H200_9f429b0.json and its _ncu.md) L2 was not the
// limit: the L1/shared-memory unit, which also feeds wgmma, went from 55% to 75% busy on
// conv3_2. So it was removed. Cost of the K order (python -m benchmarks.sass_loop;
// nvcc 13.0, sm_90a, 32-bit offsets): the loop lists both orders' advance, a slice runs one:
// 128 x 128 206 -> 226 instructions per slice, wg128x128 138 -> 158 (issue share 54% ->
// 62%), wg128x256 129 -> 145, wg256x64 137 -> 154; TF32 128 x 128 271 -> 291, wg128x128
// 216, wg128x256 180, wg256x64 273 (with x's .ca copy also listed, before its removal:
// 232, 164, 157, 165; TF32 297, 224, 191, 281). No spills. The counts in the paragraphs
// below are from before the K order.
// K_gemm advances one 64-byte slice at a time (kBK = 32 fp16/bf16 or 16 fp32 elements)
// through a 4-stage cp.async pipeline that is byte-for-byte the same for both element
// sizes:
//   A stage [BM] and B stage [BN] rows of 64 bytes = 4 chunks of 16 bytes (8 halves
//   or 4 floats), chunk c of row r stored at chunk c ^ ((r / 2) % 4) (offset() below).
//   Bank check (4-byte banks, 128 bytes per wavefront): an ldmatrix phase reads one
//   chunk of 8 consecutive rows (8-aligned): rows r and r+1 sit in opposite 64-byte
//   halves of a 128-byte line and (r / 2) % 4 takes all four values, so the 8 chunks
//   land in 8 distinct 16-byte bank groups. A cp.async phase (8 lanes) writes the 4
//   chunks of an even row and the next one: again 8 distinct groups. The emulator
//   counts both (tests/test_conv3x3_implicit_gemm.py: wavefronts == ideal).
// Each slice is 2 mma k-steps: m16n8k16 (16 halves) or m16n8k8 (8 floats). ldmatrix
// (b16) serves both: for 32-bit elements an 8-row x 16-byte matrix gives lane (g, t)
// the float [g][t], so the x4 load that yields the f16 A fragment (rows lane % 16,
// chunk lane / 16) yields exactly the tf32 A fragment A[g][t], A[g+8][t], A[g][t+4],
// A[g+8][t+4], and the B loads from [n][k] rows give b0 = B[t][g], b1 = B[t+4][g].
// Shared memory: 4 stages x (BM + BN) x 64 bytes (64 KiB at 128 x 128), reused by the
// epilogue as an fp32 [BM][BN + 8] tile (68 KiB), + bias, ReLU (NaN kept). Its columns
// are split so that the 8 channels one thread stores are two float4 that line up with
// its neighbours': channel 8i + j sits at column 4i + j (j < 4) or BN/2 + 4 + 4i + j - 4
// (j >= 4; column_of() below). Then the float4 reads of 8 lanes are 128 contiguous
// bytes, and the accumulators' float2 stores (a half-warp: 4 rows x 4 lanes; row stride
// 8 banks mod 32, the upper half 4 banks further) hit 32 distinct banks (both go through
// ld_shared / st_shared, so the emulator counts them as well: one wavefront per phase). Then either
// NHWC stores of 8 channels (one 16-byte vector for fp16/bf16, two for fp32) or the max
// over a window's 4 rows (torch's NaN rule, window order) and the pooled stores.
// NCHW y (the op's NCHW calls; x is still converted to NHWC first): the same tile, read a
// column per lane, so that each channel's run of consecutive pixels is stored straight into
// its plane as 16-byte vectors (narrower where a plane breaks their alignment), a lane
// pair per 32-byte sector, conflict-free (store_nchw_tile). This replaced an NHWC y and a conversion pass after the kernel, which
// read and wrote y again (conv2_1 at batch 64: 206 MB, ~0.12 ms at 3.3 TB/s, against ~0.24
// ms for the conv at half the fp16 peak). The earlier path stays selectable
// (VGGKERN_IMPLICIT_GEMM_NCHW_Y=convert) so a GPU run measures the two (benchmarks/cases.py,
// nchw_y rows). Measured (H200, a95939d, fp16, batch 64): converted 1.00-3.11x the direct
// path's time (conv2_1: 1,132 against 546 us, the pass 0.59 ms, not the ~0.12 predicted
// above; conv5: equal). Its code is a call, not
// inlined: inlined, it cost the mma.sync main loop 9 instructions per slice (206 -> 215)
// by changing the compiler's choices there (python -m benchmarks.sass_loop).
// Global memory, counted by the emulator (tests/test_global_sectors.py): cp.async reads
// whole sectors (16 bytes a lane, 4 lanes per 64-byte row of a pixel's channels; padding
// taps are zero fill, no read), x once per K block and the weight once per M tile; y,
// split-K's partial sums and the reduce kernel's reads and writes are whole sectors.
// Issue slots (measured without a GPU: python -m benchmarks.sass_loop counts the compiled
// main loop; nvcc 13.0, sm_90a): per 64-byte slice a 64 x 64 warp issues 64 HMMA, 16
// LDSM and its cp.async copies among 206 instructions (fp16/bf16, 128 x 128, 32-bit
// offsets; 258 at 128 x 64, 271 for TF32, whose cvt.rna of x's fragments costs 2
// instructions per element: 335 while the weight's were converted here too, before the
// op rounded it once). Two warps share a sub-partition (2 blocks per SM), one instruction per clock,
// against ~6 clocks per HMMA at mma.sync's ~65%: 2 x 206 of 768 slots. The first
// version divided the K position by C every stage and recomputed swizzled addresses:
// 305 instructions (4.8 per HMMA, 79% of the slots); now the K position advances one
// slice at a time, tap validity is a per-row bit mask, and shared offsets are fixed.
// Registers (python -m benchmarks.sass_loop: ptxas; nvcc 13.0, sm_90a; no spills; with the K
// order), fp16/bf16 | tf32, 32-bit | 64-bit offsets: 128 x 128: 222 | 203, 236 | 222; 128 x
// 64: 232 | 210, 247 | 232; 256 x 64: 228 | 211, 241 | 230; 256 x 128: 221 | 199, 234 |
// 214. Allocated
// in 8s per thread, they and the shared memory (68, 48, 80, 136 KiB with the epilogue's
// tile) let 2, 4, 2 and 1 blocks share an SM: 8 warps, 2 per sub-partition, in each case.
// The wgmma tiles' counts are with their own paragraphs below.
// wgmma (tile wg128x128, sm_90a; fp16/bf16, or tf32 in k8 steps: the same 32 bytes, the
// same counts below): one warpgroup (128 threads) owns the 128 x 128 tile as two
// wgmma.m64n128k16 per k-step, both operands read by the tensor cores
// straight from the stages through matrix descriptors. The stages need no change: the
// swizzle above is wgmma's 64-byte-swizzle K-major layout (16-byte chunk bits 4-5 of the
// address XOR bits 7-8, i.e. chunk ^ ((row / 2) % 4) for 64-byte rows; stages are
// 1024-byte multiples), so a k-step's operand is the stage base plus 0 or 32 bytes.
// 6 stages, 4 slices in flight: a stage is freed one slice after its wgmma (wait_group 1).
// By counting (python -m benchmarks.sass_loop): no ldmatrix, 138 instructions per slice
// per warp against 4 HGMMA of 64 clocks each at the dense peak, 54% of a sub-partition's
// issue slots with 2 blocks per SM (mma.sync's 128 x 128: 206 instructions per 64 HMMA,
// 80%); 173 registers now (195 with 64-bit offsets), no spills; shared memory per k16 step: 2 x (64 + 128) rows x 32
// bytes read by wgmma plus 256 x 32 bytes of cp.async writes, 160 bytes per tensor clock:
// an 80% cap, against mma.sync's 67%.
// wgmma_t (tile wg256x64, for VGG's K = 64 layers, 13% of VGG16's conv FLOPs): with 64 output
// channels a wgmma's N can only be 64, and every m64n64k16 re-reads B: 2 x 64 rows per 32
// clocks, a 57-63% shared-memory cap. Transposed, the weight rows are wgmma's A (M = 64
// channels) and 256 pixels its B (N = 256): one m64n256k16 per k-step reads (64 + 256) x 32
// bytes per 128 clocks, with (256 + 64) x 32 bytes of cp.async: an 80% cap (mma.sync 256 x
// 64: 62%). Each thread then holds D^T (channels 16w + g (+8), pixels 8j + 2t (+1)); the
// epilogue stores single floats into the same [pixel][channel] tile, rows kBN + 4 floats
// apart so a warp's 32 stores (rows 2t, 8 channels) hit 32 banks. 5 stages (100 KiB), 178
// registers now (200 with 64-bit offsets), 137 instructions per slice per warp around 2
// HGMMA.64x256x16 (54% issue share).
// wgmma with two warpgroups (tile wg128x256, for VGG's K >= 256 layers, 69% of its conv
// FLOPs): each warpgroup one m64n256k16 per k-step on its 64 of the 128 rows, the B rows
// shared. Per k16 step wgmma reads 2 x (64 + 256) x 32 bytes and cp.async writes (128 +
// 256) x 32: 256 bytes per 2 tensor clocks, exactly the 128 bytes per clock shared memory
// has, so by this count it no longer caps the tile (wg128x128: 80%). The price: 256 threads
// x 172 registers now (245 with 64-bit offsets; TF32 254) hold an SM alone, so no other block hides its
// first loads and its epilogue (128 x 256 fp32 through shared memory): ~10% of a conv3
// tile's time by the roofline model (benchmarks/roofline.py, "unhidden"). 6 stages (144
// KiB), 129 instructions per slice per warp around 2 HGMMA.64x256x16 (50% issue share).
// Warp-specialised (tile ws128x256, MainLoop::wgmma_ws): wg128x256's two computing
// warpgroups and a third, the producer (threads 256-383), which makes every copy and hands
// the stages over: full[s], an mbarrier (tma.cuh) whose phase completes once stage s holds
// its slice, and the consumers wait at; empty[s], a named barrier (PTX bar.arrive /
// bar.sync, simt.cuh) that the consumers arrive at once the wgmma that read stage s
// completed (wgmma_wait<1> a slice later), and the producer syncs at before it refills s.
// The main loop has no barrier of the whole block: on wg128x256 every slice waits at a
// __syncthreads() for the slowest warp's copies, and all 8 warps issue the copies between
// their wgmma. The producer's copies are, where the call allows it (maps.on: 16-bit x, or
// fp32 x a TF32 chain rounded already; taps outer; C a multiple of kBK; with the pool, H
// and W even, y NHWC, no split-K), two tensor loads per slice issued by one thread (the
// TMA unit: x as an im2col box, the 128 pixels of the M tile at the slice's tap, zeros at
// the image edges; the weight as a tile of 256 rows), their bytes announced on full[s]
// (mbarrier.arrive.expect_tx), landing already swizzled as wgmma reads them; with the pool,
// x as 16 boxes of 8 pixels, from im2col maps of x's even and odd rows (each an (N, H/2, W,
// C) tensor: zeros at its rows -1 and H/2 are the image's edges), into the slab order (M
// order above), issued by lane 0 of each producer warp (4 boxes each, warp 0 the weight's
// tile too, each arriving with its own bytes); else 12 cp.async per producer thread per slice,
// each thread arriving at full[s] once its copies landed (its wait), were rounded (TF32)
// and fenced. VGGKERN_IMPLICIT_GEMM_TMA=off keeps cp.async, =on demands the tensor loads,
// =unpooled keeps cp.async on the pooled calls only.
// Persistent where y is NHWC: at most one block per SM (the dispatch), each taking the
// work items (M tile, K tile, split) in turn, slices numbered on across them (the
// mbarriers' phases with them), so the producer copies the next item's first slices while
// the consumers store this one's outputs from the accumulators (no fp32 epilogue tile; the
// pool's window max gathered by shuffles in torch's order: 3 per value in window order, 1
// per row of a lane in slab order). 16-bit y (K a multiple of 8, no split-K) is staged:
// each lane writes its channel pairs into its computing group's staging after the stages
// ([BM or BM / 4][BN] elements as 64-channel boxes of 128-byte rows, 128-byte swizzle:
// chunk (c % 64) / 8 ^ (row % 8), so a warp's 32 pairs, 8 rows of 4 lanes, hit 32 banks),
// fences them for the async proxy, and after the group's barrier one thread issues the
// boxes' tensor stores (TMA, shared to global: rows past M and channels past K are clipped
// by the unit), whose reads of the staging the group's next item waits for (that thread's
// cp.async.bulk.wait_group.read, then the barrier) and the kernel's end for all. Else (fp32
// y: float2, whole sectors per 4 lanes, and its 128 KiB staging would not fit; K odd or not a
// multiple of 8; split-K's fp32 sums) the pairs go straight to global memory. Why stage, by
// count: a warp's 4-byte pair store writes 16 bytes into each of 8 rows, 8 half-sectors in 8
// 128-byte lines; a ws128x256 item's y (64 KiB) is 1024 of them, 8192 sectors, through the
// L1 (the unit that also reads shared memory for wgmma): 2048 clocks at 4 sectors a clock,
// up to 8192 at a line a clock, against a conv3_1 item's 18,432 tensor clocks at the peak
// (11-44%); staged, 1024 conflict-free 4-byte STS (1024 wavefronts) and the TMA unit's
// reads of 512 rows of 128 bytes, with y leaving as whole lines. Per item the consumers'
// instructions stay about the same (python -m benchmarks.sass_loop compiled both ways: the
// pair's address and bias/ReLU/max work dominate; STS replaces STG). Not measured (no GPU
// since): the focus run's copies rows time it against the pairs (copies=tma-pairs,
// VGGKERN_IMPLICIT_GEMM_TMA_STORE=off). Checked on the emulator (tensor stores: tma_emu.h),
// bit for bit with the pairs and mma.sync's 128 x 128, race-free (a missing fence, the
// staging rewritten before the wait, or no wait at the end fail there: tests/emu/test_tma.cpp).
// Where y is NCHW, one block per item
// and the shared-memory epilogue, in the stages (the producer has returned). Producer and
// consumers are compiled apart (Role), so neither holds the other's registers. Why: on the
// H200 (9f429b0's _ncu.md, conv3_2) cuDNN's kernel that keeps the tensor pipe 96% busy has
// this shape (persistent blocks of three warpgroups, one loading with TMA), ours kept it
// 60% busy (wg128x128). Counted (python -m benchmarks.sass_loop; nvcc 13.0, sm_90a, 32-bit
// offsets): the consumers' loop 57 instructions per slice (53 since stream-K's work items)
// around 2 HGMMA.64x256x16, 0.22 of a sub-partition's issue slots (wg128x256: 145 per
// slice, 0.57; with named full barriers nvcc had unrolled it 4 slices deep, 143 per 4,
// 0.14: the mbarrier's try_wait loop stops that); the producer's cp.async loop 161 per
// slice and warp (TF32, with its rounding pass: 222; 64-bit offsets 220 and 281); its
// tensor-load loop 66 per slice, 2 of them UTMALDG, issued by one warp (one thread active);
// pooled, 154 per slice in warp 0 (5 UTMALDG, each ~20 instructions, most of them its ELECT
// loop's moves of the operands to uniform registers: the 17 a slice from one thread were
// 336). 168 registers with stream-K's fixup (below), 165 before (162 with 64-bit offsets;
// 384 threads may have 168; 159 and 162 before the slab order's epilogue, 163 and 164
// before the staged stores), no spills; 6 stages, 144 KiB (+ 64 KiB of y's staging with
// 16-bit y: 208). Predicted for the tensor loads, not measured (no GPU since): the 1536
// cp.async of a slice (16 bytes each, 128 threads x 12) and their address arithmetic (161
// instructions in each producer warp) leave the SM's issue slots and its load/store
// pipeline to two tensor loads (63 instructions of one warp); the bytes written into shared
// memory (24 KiB a slice) stay the same, so by the shared-memory count above the tile stays
// at that unit's limit. Checked on the emulator (named barriers and mbarriers with per-warp
// clocks, the tensor loads as writes by their issuer: csrc/emu/runtime.cpp, tma_emu.cpp):
// bit for bit with mma.sync's 128 x 128 and with wg128x256, both copy paths (pooled too,
// NaN and infinities in x), over persistent grids of 1 to 3 blocks, race-free (a consumer
// that releases a stage one slice early fails there; so do a wait of the wrong parity,
// swapped im2col offsets, a wrong byte count, the even and odd rows' maps swapped, slabs
// that do not carry into the next image, a window max that drops a row),
// bank-conflict-free. Time on the GPU: pending a GPU session (benchmarks/README.md has the
// focus run that times it against wg128x256, with and without the tensor loads).
// ws128x128 (wgmma_ws at BN = 128), for VGG's K = 128 layers (conv2_1, conv2_2: 18% of
// VGG16's conv FLOPs, where wg128x128 measured 34-40% of the peak) and, persistent, the 14
// x 14 layers' tail: conv5 at batch 64 is 196 items of 128 x 256 on 132 SMs (1.48 waves,
// the second on 64 SMs) or 392 of 128 x 128 (2.97 waves). Ping-pong: the same three
// warpgroups, but each computing warpgroup takes whole items (two m64n128k16 per k-step,
// wg128x128's loop), a block's items in turn, so that one stores its item's outputs while
// the other computes; the producer loads the items in order. Turns (named barriers turn[0],
// turn[1]) order the main loops: a warpgroup starts waiting for its item's slices once the
// other has issued all of its own, which also keeps each parity wait on a phase whose
// predecessor completed (without the turns the emulator reports the race: the second
// warpgroup read a stage still being copied, its wait passed on the phase two before).
// Where y is NCHW (one block per item, the shared-memory epilogue) the second computing
// warpgroup has no item: that call runs at one warpgroup's pace, like wg128x128. Why
// ping-pong here: with BN = 128 a slice is 256 tensor clocks for the whole SM, and the
// epilogue of a conv2 item (18 slices) is an estimated 5-10% of its main loop (its 32 KiB
// of y at 128 bytes a clock: 4%, by benchmarks/roofline.py; its stores, each with bias,
// ReLU and conversion, issue more), which the cooperative schedule (both warpgroups on
// every item, as ws128x256 does: its items are 2-4x longer) leaves the tensor cores idle
// for. By count, per k16 step wgmma reads 2 x (64 + 128) x 32 bytes and the copies write
// (128 + 128) x 32: 160 bytes per tensor clock, wg128x128's 80% shared-memory cap (128 x
// 256: none). 8 stages (128 KiB; kStages above; + 2 x 32 KiB of y's staging with 16-bit y:
// 192). python -m benchmarks.sass_loop: 165 registers with 16-bit y, 158 fp32 (165 and 161 with
// 64-bit offsets; 128 accumulators a thread; 158 with 16-bit y before the staged stores;
// with stream-K's work items, 168 with 64-bit offsets, no spills), the consumers' loop 75
// (74 since) instructions per slice around 4 HGMMA.64x128x16 (0.30 of a warp's issue slots), the
// producer's cp.async loop 129 (131 since; 8 copies per thread), its tensor loads 60 (pooled 128;
// 63 and 148 since: the pooled loads' address arithmetic left the uniform datapath, R2UR 62 ->
// 88 a slice, cause not found; sub-partition share 0.79 -> 0.87). Per
// sub-partition and slice (256 tensor clocks at the peak: one computing warp and a producer
// warp; sass_loop's "SP"), 76 + 129 = 0.80 of the issue slots by cp.async (64-bit offsets
// 0.99), 0.53 by tensor loads (sub-partition 0; pooled, its 17 loads a slice: 0.80),
// against wg128x128's 0.54 (2 blocks of 4 warps) and ws128x256's 0.54 / 0.35 / 0.52 (512
// clocks a slice); when its two warpgroups shared each item (one m64n128 each), 0.94 / 0.66
// / 1.01: two computing warps' loops a slice. Predicted, not measured (no GPU since it was
// built): what ws128x256 may gain (no barrier of the whole block, the next item's loads
// under the epilogue) and the epilogue under the other warpgroup's main loop; the focus run
// in benchmarks/README.md times it against wg128x128 on conv2_1, conv2_2 and conv5, and
// against ws128x256 on conv3 and conv4.
// Stream-K (ws128x256, persistent; ../common/stream_k.h): where whole tiles would leave
// the grid's last turn short (conv5 at batch 64 on ws128x256: 196 tiles on 132 SMs, 1.48
// turns, 74% of the blocks' turns busy; the H200 timed wg128x256 there at 137 us, 44% of the
// fp16 peak, with its tiles at 59% while they ran: results/2026-12-04_H200_a95939d.json),
// each block takes an equal range of the tiles' K slices (213 or 214 of conv5's 196 x 144).
// A tile cut by a range's end is computed in parts by consecutive blocks, each adding its
// slices' products, and the part that finds the others done adds their sums, in K order,
// and runs the epilogue (stream_k_fixup: two fixup slots per block in the workspace, an
// arrival counter per tile; no block waits for another, so no grid-wide residency is
// assumed). Where the tiles are fewer than the blocks it replaces split-K (no reduce kernel:
// conv5 at batch 1, 4 tiles, on 72 blocks of 8 slices). Predicted, at wg128x256's per-tile
// rate: conv5 137 -> ~101 us (59% of the peak), less the fixups: ~132 tiles in 2 parts,
// typically one part's 128 KiB written and read each (~17 MB each way, ~10 us of DRAM
// traffic under the other blocks' tensor work). Not measured (no GPU since it was built):
// the focus run's copies rows time it against whole tiles (tma-whole,
// VGGKERN_IMPLICIT_GEMM_STREAM_K=off). Checked on the emulator: the schedule covers every
// slice once and shares it within a slice (tests/emu/test_stream_k.cpp); bit for bit with
// mma.sync on exact sums, tiles in 2 and 3 parts, pooled, staged stores and pairs; its
// buffers exactly sized (ctest emu_ucontext.all: AddressSanitizer). Cost (python -m benchmarks.sass_loop; nvcc 13.0):
// ws128x256's consumers at 168 registers (165 before; 162 with 64-bit offsets), no spills,
// their loop 53 instructions a slice (57 before). ws128x128 keeps whole tiles (kStreamK:
// its fixup spilled up to 20 bytes there; its conv5 items are 2.97 turns).
// The wgmma tiles run where forced or measured fastest until a GPU has confirmed them bit
// for bit against the emulator on exact-sum data (tests/test_conv3x3_implicit_gemm.py; the
// hardware's accumulation rounding is unspecified, so only such data can be compared
// exactly); on the emulator they equal mma.sync's tiles bit for bit (wg128x256: 128 x 128's).
// wg128x128, wg256x64 and wg128x256 were so confirmed on the H200, and timed (README.md,
// Results); the tuned table picks them per layer. The first predictions, from counting
// alone: dense M gives VGG16's 28x28 and 14x14 layers (39% of its FLOPs) 1.3x fewer mma
// issued, and 64 x 64 warps lift the shared-memory cap from 50% to 67% of the peak.
// Code layout: a work item (conv3x3_implicit_gemm_item) is its thread's stage copies
// (StageCopies), a main loop (mma.sync, wgmma, or wgmma_ws's consumers, whose producer is
// ws_producer_item) and one of three epilogues (store_partial_sums for split-K,
// store_from_registers for persistent wgmma_ws, store_through_shared for the rest). Split
// out of one 720-line function (e622e77's); the compiled code moved (python -m
// benchmarks.sass_loop, nvcc 13.0, sm_90a, 32-bit offsets, instructions per slice):
// mma.sync 128 x 128 226 -> 217, 128 x 64 278 -> 269, 256 x 64 246 -> 244, 256 x 128 the
// same (64-bit: 282 -> 284); wg128x128 158 -> 153, wg128x256 145 -> 142, wg256x64 154 ->
// 151; wgmma_ws's consumers and tensor-load loops unchanged, its producer's cp.async loop
// 161 -> 168 (ws128x256) and 131 -> 134 (ws128x128). Registers down in 27 kernels, up in 5
// (by at most 9: 197 -> 206, tf32 wg128x128, 64-bit), no spills. Not timed (no GPU); the counts
// elsewhere in this comment are from before.
#pragma once

#include "../common/stream_k.h"
#include "numeric.cuh"
#include "tensor_core.cuh"
#include "tma.cuh"

namespace vk {
namespace VK_KERNEL_NS {

// The main loop's instruction: mma.sync (every tile); wgmma (sm_90a, f16/bf16): a 128-row
// tile, one warpgroup computing 128 x 128 as two m64n128k16 per k-step (kWarpsM = 4) or
// two computing 128 x 256, one m64n256k16 each on 64 of the rows (kWarpsM = 8); wgmma_t: one
// warpgroup computes a 256-pixel x 64-channel tile transposed, as one m64n256k16 per k-step
// with the weight rows as wgmma's A (M = 64 channels) and the pixels as its B (N = 256);
// wgmma_ws: warp-specialised, a third warpgroup makes all the copies and hands the stages
// over (mbarriers when full, named barriers when empty) to two computing warpgroups: 128 x
// 256 by both (one m64n256k16 each, on 64 of the rows), or 128 x 128 by one (two
// m64n128k16), the two taking the items in turn (ping-pong).
enum class MainLoop { mma_sync, wgmma, wgmma_t, wgmma_ws };

// T: the storage type (__half, __nv_bfloat16 or float); the shared-memory layout in
// bytes is the same for all three. The block tile is kBM output pixels x kBN output
// channels; the warps that compute it follow from the tile and the loop.
template <class T, int kBM_, int kBN_, MainLoop kLoop_ = MainLoop::mma_sync>
struct ImplicitGemmTiling {
  static constexpr MainLoop kLoop = kLoop_;
  static constexpr bool kWgmma = kLoop != MainLoop::mma_sync, kTransposed = kLoop == MainLoop::wgmma_t;
  static constexpr bool kWs = kLoop == MainLoop::wgmma_ws;
  static constexpr int kBM = kBM_, kBN = kBN_;
  // wgmma_ws at BN = 128 runs ping-pong: each of its two computing warpgroups takes whole
  // items in turn (a block's items 0, 2, 4, ... and 1, 3, 5, ...), so one stores its item's
  // outputs while the other computes; at BN = 256 the two share every item (cooperative).
  static constexpr bool kPingPong = kWs && kBN == 128;
  static constexpr int kConsumerGroups = kPingPong ? 2 : 1;  // computing groups, each on its own items
  // Stream-K (../common/stream_k.h): ws128x256 only. ws128x128's items are half as long
  // (conv5 at batch 64: 392 on 132 SMs, 2.97 turns), and its fixup cost the ping-pong
  // consumers, at the 168 registers 384 threads may have, up to 20 bytes of spills with
  // 64-bit offsets (nvcc 13.0, ptxas -v).
  static constexpr bool kStreamK = kWs && !kPingPong;
  // Warps along M and N that compute one item: mma.sync, 64 x 64 each; wgmma and wgmma_ws,
  // one warpgroup where BN = 128 (two m64n128 per k-step) and two where BN = 256 (one
  // m64n256 each, on 64 of the 128 rows); wgmma_t, one (1 x 4 warps).
  static constexpr int kWarpsM = kLoop == MainLoop::mma_sync ? kBM / 64 : kTransposed ? 1 : kBN / 32;
  static constexpr int kWarpsN = kLoop == MainLoop::mma_sync ? kBN / 64 : kTransposed ? 4 : 1;
  // The threads that compute an item (kWarpsM x kWarpsN warps) and all that compute
  // (ping-pong: two such groups); wgmma_ws adds a producer warpgroup after them, which makes
  // every copy (kCopyThreads: the threads that copy).
  static constexpr int kItemThreads = 32 * kWarpsM * kWarpsN, kThreads = kConsumerGroups * kItemThreads;
  static constexpr int kProducerThreads = kWs ? 128 : 0, kBlockThreads = kThreads + kProducerThreads;
  static constexpr int kCopyThreads = kWs ? kProducerThreads : kThreads;
  static constexpr int kPoolIssuers = kWs ? kProducerThreads / 32 : 1;  // wgmma_ws's pooled tensor loads: a lane per warp
  // Each warp's share of the output: mma.sync warps own 64 x 64 tiles. wgmma: the 128 rows
  // are split over the warpgroups, 64 x BN per wgmma, and warp w of a warpgroup holds rows
  // 16w..16w+15 of each of its wgmma's 64 (warp_row()): 32 x 128 with one warpgroup, 16 x
  // BN with two. wgmma_t: warp w holds channels 16w..16w+15 of all 256 pixels (the
  // accumulators are D^T: see the transposed epilogue).
  static constexpr int kWarpM = kTransposed ? 256 : kWgmma ? 128 / kWarpsM : 64;
  static constexpr int kWarpN = kTransposed ? 16 : kWgmma ? kBN : 64;
  static_assert(kWarpM * kWarpsM == kBM && kWarpN * kWarpsN == kBN, "the warps tile the block");
  static constexpr int kWarpgroups = kWgmma ? kWarpsM * kWarpsN / 4 : 0;
  static constexpr int kChunk = 16 / int(sizeof(T));  // elements per 16-byte cp.async chunk
  static constexpr int kBK = 4 * kChunk;               // a 64-byte K slice
  // Stages in shared memory, and how many slices are loaded ahead of the one computed:
  // mma.sync reads a stage into registers before the next barrier, so all but one stage
  // are in flight; wgmma reads it asynchronously until its wait, one slice later, so two
  // stages are held by the tensor cores and the rest are in flight.
  // 2 blocks per SM (<= 113 KiB each), except wg128x256's and wgmma_ws's: their 256 or 384
  // threads x ~170 registers fill an SM's register file alone; 6 stages of 128 x 256 take
  // 144 KiB. ws128x128 has 8 (128 KiB): its slice is half the tensor work of 128 x 256's
  // (256 clocks at the peak), so its kStages - 2 slices in flight cover 256 (kStages - 2)
  // clocks of load latency: 1536 with 8, against 1024 with 6 (~1000 for a load from L2 or
  // DRAM under load).
  static constexpr int kStages = kWs && kBN == 128 ? 8 : kTransposed ? 5 : kWgmma ? 6 : 4;
  static constexpr int kPrefetch = kWgmma ? kStages - 2 : kStages - 1;
  static constexpr int kMinBlocksPerSM = kLoop == MainLoop::mma_sync || kWs || kWarpgroups > 1 ? 1 : 2;
  static constexpr int kStep = kBK / 2;  // K per mma: 16 (m16n8k16) or 8 (m16n8k8 tf32)
  static constexpr int kMTiles = kWarpM / 16, kNTiles = kWarpN / 8;
  static constexpr int kRow = kBK;  // elements per shared row: 64 bytes, swizzled, no padding
  static constexpr int kAStage = kBM * kRow, kBStage = kBN * kRow;
  static constexpr int kRowsPerPass = kCopyThreads / 4;  // rows one pass of 16-byte copies fills
  // Floats per epilogue row: mma.sync/wgmma store float2 pairs of channels (half-warp
  // phases of 4 rows: 8 banks apart), wgmma_t stores single floats (warp phases of rows
  // 2t: 2 * stride must be 8 banks apart, and 64 + 4 columns are used).
  static constexpr int kCStride = kTransposed ? kBN + 4 : kBN + 8;
  static constexpr size_t kPipeBytes = size_t(kStages) * (kAStage + kBStage) * sizeof(T);
  static constexpr size_t kEpilogueBytes = size_t(kBM) * kCStride * 4;
  // wgmma_ws with 16-bit y: the persistent epilogue's staging for its tensor stores, one
  // [BM][BN] tile of y's elements per computing group, after the stages (1024-aligned: the
  // 128-byte swizzle's pattern), as BN / kStoreCols boxes of kStoreCols channels (128-byte
  // rows; with the pool, BM / 4 of them): element (row r, channel c) at box c / 64, row r,
  // chunk ((c % 64) / 8) ^ (r % 8) (staged()). fp32 y keeps its float2 stores (8 bytes a
  // lane, whole 32-byte sectors per 4 lanes; a 128 x 256 fp32 staging would not fit).
  static constexpr bool kStoreStaging = kWs && sizeof(T) == 2;
  static constexpr int kStoreCols = 64;
  static constexpr size_t kStagingOffset = ((kPipeBytes > kEpilogueBytes ? kPipeBytes : kEpilogueBytes) + 1023) / 1024 * 1024;
  static constexpr size_t kStagingBytes = kStoreStaging ? size_t(kBM) * kBN * sizeof(T) : 0;  // per group
  static constexpr size_t kSmemBytes = kStagingOffset + kConsumerGroups * kStagingBytes;
  static_assert(sizeof(T) == 2 || sizeof(T) == 4, "16- or 32-bit elements");
  static_assert(kRow * sizeof(T) == 64, "64-byte rows");
  static_assert(kNTiles % 2 == 0, "B fragments are loaded two n8 tiles per ldmatrix.x4");
  static_assert(!kTransposed || (kBM == 256 && kBN == 64), "wgmma_t: 256 x 64");
  static_assert(kBM % kRowsPerPass == 0 && kBN % kRowsPerPass == 0, "stage copies divide among the threads");
  static_assert(kRowsPerPass % 8 == 0, "a cp.async phase (8 lanes) writes an even row and the next; copy "
                                       "passes keep the swizzle (rows 8 apart share it)");
  static_assert(kTransposed ? 2 * kCStride % 32 == 8 : kCStride % 32 == 8, "conflict-free accumulator stores");
  static_assert(!kWgmma || kItemThreads == 128 || (kItemThreads == 256 && !kTransposed),
                "wgmma: one warpgroup (or two, not transposed) an item");
  static_assert(kLoop != MainLoop::wgmma || (kBM == 128 && (kBN == 128 || kBN == 256)),
                "wgmma: 128 x 128 or 128 x 256");
  static_assert(!kWs || (kBM == 128 && (kBN == 128 || kBN == 256)), "wgmma_ws: 128 x 128 or 128 x 256");
  // wgmma_ws's named barriers: empty[s] (the consumers of the item arrive once their wgmma
  // read stage s, the producer syncs before refilling it: kEmptyArrivals threads), and one
  // of an item's consumers alone for the shared-memory epilogue. (Its full barriers, which
  // the consumers wait at for a stage's slice, are mbarriers: the tensor loads complete
  // their bytes there.)
  static constexpr int kEmptyBarrier = 1, kConsumerBarrier = 1 + kStages;
  static constexpr int kEmptyArrivals = kItemThreads + kProducerThreads;
  // Ping-pong's turns: turn[j] (named barrier kTurnBarrier + j), which warpgroup j syncs at
  // before it waits for its next item's first slice, and the other arrives at once it has
  // waited for its own item's last slice and issued its wgmma: so a warpgroup waits for a
  // full mbarrier's phase only once the phase before it has completed (a parity wait cannot
  // tell a phase from the one two before), and the main loops run one after the other, each
  // warpgroup's epilogue under the other's main loop.
  static constexpr int kTurnBarrier = kConsumerBarrier + 1;
  // The staged epilogue's barrier of each computing group (kStoreBarrier + group): its
  // staging is free (the last tensor stores read it), and then written.
  static constexpr int kStoreBarrier = kTurnBarrier + kConsumerGroups;
  static_assert(!kWs || kStoreBarrier + kConsumerGroups - 1 <= 15, "16 named barriers, 0 is __syncthreads()'s");
  static_assert(size_t(kAStage) * sizeof(T) % 1024 == 0 && size_t(kBStage) * sizeof(T) % 1024 == 0,
                "stages keep the 512-byte swizzle pattern aligned (wgmma descriptors)");

  // wgmma_ws: the slice count a block carries to its next item (`done` + this item's
  // `more`), kept under 4 kStages once past 2 kStages: what the stages and barriers read of
  // it (i % kStages, i >= kStages, and the mbarrier phase's parity (i / kStages) % 2) is
  // unchanged, and a persistent block's count never overflows.
  static __device__ __forceinline__ int next_pipelined(int done, int more) {
    const int n = done + more;
    return n >= 4 * kStages ? n % (2 * kStages) + 2 * kStages : n;
  }
  // Slice i's stage, and the parity of its full mbarrier's phase (i >= 0: unsigned
  // arithmetic, a mask and a shift).
  static __device__ __forceinline__ int stage_of(int slice) { return static_cast<unsigned>(slice) % kStages; }
  static __device__ __forceinline__ int phase_of(int slice) { return static_cast<unsigned>(slice) / kStages % 2; }

  // Element offset of row `row`, channel `col` in a group's staging of `rows` rows.
  static __device__ __forceinline__ int staged(int rows, int row, int col) {
    return (col / kStoreCols * rows + row) * kStoreCols + ((col % kStoreCols / 8) ^ (row % 8)) * 8 + col % 8;
  }
  // Element offset of 16-byte chunk `chunk` (0..3) of row `row` in a stage.
  static __device__ __forceinline__ int offset(int row, int chunk) {
    return row * kRow + (chunk ^ ((row >> 1) & 3)) * kChunk;
  }
  // First block-tile row of m16 tile mt of the warps in row warp_m (then + g + 8 * half).
  // wgmma: warpgroup warp_m / 4's wgmma mt covers rows 64 (warpgroup * kMTiles + mt) on.
  static __device__ __forceinline__ int warp_row(int warp_m, int mt) {
    return kWgmma ? 64 * (warp_m / 4 * kMTiles + mt) + 16 * (warp_m % 4) : warp_m * kWarpM + mt * 16;
  }
  // Epilogue tile column of channel `col` (0..BN-1) of the block; even col maps with col + 1.
  static __device__ __forceinline__ int column_of(int col) {
    return (col % 8 < 4 ? 0 : kBN / 2 + 4) + (col / 8) * 4 + col % 4;
  }
  // Its inverse, for the NCHW stores: the channel column `column` holds (columns BN/2 ..
  // BN/2 + 3 hold none).
  static __device__ __forceinline__ int channel_of(int column) {
    const bool upper = column >= kBN / 2;
    const int c = upper ? column - (kBN / 2 + 4) : column;
    return (c / 4) * 8 + (upper ? 4 : 0) + c % 4;
  }
  // NCHW stores: a lane reads n epilogue rows of one column, its partner lane (16 further)
  // the next n rows of the same column, starting `rotation` rows into them, so that at
  // every step the two half-warps' rows (n + r or r rows apart) are 16 banks apart mod 32
  // (kCStride is 8 banks mod 32, or 4 transposed).
  __host__ __device__ static constexpr int nchw_rotation(int n) {
    for (int r = 0; r < n; ++r)
      if ((n + r) * kCStride % 32 == 16 && (r == 0 || r * kCStride % 32 == 16)) return r;
    return -1;
  }
};

template <class Index> struct UnsignedOf;
template <> struct UnsignedOf<int32_t> { using type = uint32_t; };
template <> struct UnsignedOf<int64_t> { using type = uint64_t; };

template <class Index>
struct ImplicitGemmParams {
  Index N, C, H, W, K;  // C: a multiple of 8
  Index M;              // GEMM rows: N*H*W, or 4 * N*(H/2)*(W/2) with pool
  Index k_blocks;       // ceil(K / BN)
  int relu, pool;
  // y NCHW (N, K, Ho, Wo), written by the epilogue, instead of NHWC; hw_out = Ho * Wo.
  int y_nchw;
  Index hw_out;
  // Split-K (conv3x3_implicit_gemm_plan.h): splits > 1 gives block b the 64-byte K slices
  // [s * slices_per_split, (s + 1) * slices_per_split), s = b % splits, and has it write
  // raw fp32 sums to partial[s][m][k]; conv3x3_implicit_gemm_reduce_kernel finishes.
  int splits;
  int slices_per_split;
  float* partial;
  // K_gemm's 64-byte slices (ceil(9C / kBK)): a parameter, not computed from C, so that the
  // persistent kernels read it per item rather than hold it (it cost ws128x256 a spill).
  int k_slices;
  // K_gemm's order of 64-byte slices (see "K order" above): 1, channel slice by channel
  // slice, the 9 taps of each in turn (needs C a multiple of kBK); 0, tap by tap.
  int taps_inner;
  // TF32 (float storage) only, see "TF32 chains" above: x_tf32, x's values are TF32 already
  // (low 13 mantissa bits zero: the previous layer's y_tf32 output), so the wgmma tiles use
  // them as they are instead of rounding them; y_tf32, y is rounded to TF32 (cvt.rna) after
  // bias and ReLU (the pool's max commutes with it).
  int x_tf32, y_tf32;
  // wgmma_ws: the blocks' work items (M tile, K tile, split), M tiles x k_blocks x splits,
  // taken by the grid's blocks in turn (block b: items b, b + gridDim.x, ...: sk.dp_items
  // of them), then, with stream-K, its range of the stream-K region's slices (sk, from the
  // plan: ../common/stream_k.h), whose partial sums go through `partial` (the fixup slots)
  // and fixup_counters; and persistent: the grid may be smaller than the items (the plan's
  // choice: at most one block per SM, with y NHWC), so the epilogue stores from the
  // accumulators, leaving the stages to the producer's next item.
  StreamKSchedule sk;
  int32_t* fixup_counters;
  int persistent;
};

// One work item of a block: its tile (M tile x k_blocks + K tile), split-K's split, its K
// slices [kt0, kt0 + n_tiles); its index j among the block's items (stream-K's fixup
// finds its segment from it after the main loop, rather than holding the segment's part,
// parts and slot in registers through it); first and last: the block's first and last.
template <class Index>
struct ImplicitGemmWork {
  Index tile;
  int split, kt0, n_tiles, j;
  bool first, last;
};

// wgmma_ws's copies by the tensor memory accelerator (tma.cuh) instead of cp.async, where
// `on` (the dispatch's choice: taps outer; C a multiple of kBK; x not in need of TF32
// rounding; with the pool, y NHWC, no split-K and H, W even): x through the im2col map x[0]
// (a stage's 128 pixels at one tap), or with the pool through x[0] and x[1], im2col maps of
// x's even and odd rows as (N, H/2, W, C) tensors (16 boxes of 8 pixels a stage: slab
// order, above), the weight through the tile map w (rows of 9C), all announced on the
// stage's full mbarrier. A kernel parameter of its own, after the others (a
// __grid_constant__ one: the TMA unit reads the maps from parameter space), so that the
// other tiles' parameters and code stay as they were.
// store: the persistent epilogue's y stores are tensor stores through the tile map y (the
// dispatch's choice: 16-bit y, no split-K, K a multiple of 8): rows of y (N*Ho*Wo of them)
// by K, boxes of kStoreCols channels x BM rows (BM / 4 with the pool), 128-byte swizzle.
struct ImplicitGemmTensorMaps {
  TensorMap x[2], w, y;  // x[0]: x, or (pool) its even rows; x[1]: (pool) its odd rows
  int on, store;
};

// Split-K's second pass: y = [pool](ReLU?(sum over s of partial[s] + bias)), the partials
// added in split order. A block of 256 threads (8 warps) finishes a tile of 32 output pixels
// x 32 channels (block b: pixel tile b / k_tiles, channel tile b % k_tiles). Read phase:
// warp w takes the tile's pixels w, w + 8, w + 16, w + 24, lane l channel k0 + l, so each
// warp-wide read of a partial row is 32 consecutive floats (128 bytes: whole sectors) and
// the bias is read once per lane. NHWC y is stored from there, 32 consecutive channels of a
// pixel per store. NCHW y goes through a [32][33] fp32 tile in shared memory (rows of 33:
// the row-wise writes and column-wise reads are both 32 distinct banks), then warp w stores
// channels w + 8i, lane l pixel l: 32 consecutive pixels of one plane per store, whole
// sectors where the plane is 32-byte aligned. The first version ran one thread per output
// element, channels fastest: NHWC the same traffic, but NCHW stores landed a plane apart
// per lane, 16 sectors per 32 bytes of fp16 (8 for fp32); now whole sectors, 1.35x on
// 14 x 14 planes (tests/test_global_sectors.py). ptxas (nvcc 13, sm_90a): 32 registers,
// no stack, for every element and index type.
template <class Index>
struct ImplicitGemmReduceParams {
  Index M, K;       // GEMM rows and output channels
  Index k_tiles;    // ceil(K / 32)
  int splits, relu, pool;
  int y_nchw;       // as ImplicitGemmParams's
  Index hw_out;
  int y_tf32;       // as ImplicitGemmParams's: y rounded to TF32 after bias and ReLU
};

struct ImplicitGemmReduceTiling {
  static constexpr int kThreads = 256, kPixels = 32, kChannels = 32;
  static constexpr int kPasses = kPixels / (kThreads / 32);  // pixels per warp
};

template <class T, class Index>
__global__ void __launch_bounds__(256)
    conv3x3_implicit_gemm_reduce_kernel(const float* __restrict__ partial, const T* __restrict__ bias,
                                        T* __restrict__ y, const ImplicitGemmReduceParams<Index> p) {
  using R = ImplicitGemmReduceTiling;
  VK_SHARED(float, tile, [R::kPixels][R::kChannels + 1]);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const Index b = blockIdx.x;
  const Index o0 = b / p.k_tiles * R::kPixels, k0 = b % p.k_tiles * R::kChannels;
  const Index rows_out = p.pool ? p.M / 4 : p.M;
  const int window = p.pool ? 4 : 1;
  const Index k = k0 + lane;
  const float bk = bias != nullptr ? to_float(ld_global(bias + (k < p.K ? k : 0), k < p.K)) : 0.f;
#pragma unroll
  for (int i = 0; i < R::kPasses; ++i) {
    const int px = warp + 8 * i;
    const Index o = o0 + px;
    const bool inside = o < rows_out && k < p.K;
    float out = 0.f;
    for (int r = 0; r < window; ++r) {  // a pool window's 4 GEMM rows, in torch's order
      const Index m = o * window + r;
      float sum = ld_global(partial + (inside ? m * p.K + k : 0), inside);
      for (int s = 1; s < p.splits; ++s)
        sum += ld_global(partial + (inside ? (static_cast<Index>(s) * p.M + m) * p.K + k : 0), inside);
      float v = sum + bk;
      if (p.relu && v < 0.f) v = 0.f;  // ReLU(NaN) = NaN
      if (p.y_tf32) v = round_tf32(v);
      out = r == 0 ? v : max_step(out, v);
    }
    if (p.y_nchw) st_shared(&tile[px][lane], out);
    else st_global(y + (inside ? o * p.K + k : 0), from_float<T>(out), inside);
  }
  if (!p.y_nchw) return;
  __syncthreads();
  const Index o = o0 + lane, n = o / p.hw_out;
#pragma unroll
  for (int i = 0; i < R::kPasses; ++i) {
    const int ch = warp + 8 * i;
    const Index kc = k0 + ch;
    const bool inside = o < rows_out && kc < p.K;
    const float v = ld_shared(&tile[lane][ch]);
    st_global(y + (inside ? (n * p.K + kc) * p.hw_out + (o - n * p.hw_out) : 0), from_float<T>(v), inside);
  }
}

// Stores one lane's kV consecutive output pixels o .. o + kV - 1 (o a multiple of kV) of
// channel k into y NCHW as vectors of W elements, the widest W <= kV that divides hw_out:
// then W divides o, each vector's pixels lie in one image (and all inside y or all past
// it), and its address is W-element aligned.
template <int W, class T, class Index, int kV>
__device__ __forceinline__ void store_nchw_run(T* y, const T (&out)[kV], Index o, Index k, Index pixels, Index K,
                                               Index hw_out) {
  if constexpr (W > 1) {
    if (hw_out % W != 0) {  // uniform over the warp: the lanes meet at the same stores
      store_nchw_run<W / 2>(y, out, o, k, pixels, K, hw_out);
      return;
    }
  }
#pragma unroll
  for (int j = 0; j < kV; j += W) {
    const bool inside = o + j < pixels && k < K;
    const Index n = (o + j) / hw_out;
    Vec<T, W> vec;
#pragma unroll
    for (int e = 0; e < W; ++e) vec.v[e] = out[j + e];
    st_global(reinterpret_cast<Vec<T, W>*>(y + (inside ? (n * K + k) * hw_out + (o + j - n * hw_out) : 0)), vec,
              inside);
  }
}

// Epilogue 2 for an NCHW y (the op's NCHW calls: no NHWC y, no conversion pass after the
// kernel), from the epilogue tile of fp32 [row][column_of(channel)] (bias and ReLU in):
// output pixel o = (n, ho, wo) of channel k is y[(n * K + k) * hw_out + ho * Wo + wo], and a
// tile's output pixels are consecutive o, so each channel's share of the tile is a run
// of its plane (split where it crosses an image). Per warp step, 16 channels (16
// consecutive tile columns) x 2 kChunk pixels: lane (ci = lane % 16, half = lane / 16)
// writes pixels half * kChunk .. + kChunk - 1 of its channel as one 16-byte vector, so
// the two halves fill one 32-byte sector. It reads them as kWindow rows each (the pool
// window's 4, max in torch's order), the upper half rotated (nchw_rotation) so that each
// 32-lane read is 32 distinct banks. 16-byte vectors need hw_out % kChunk == 0 (VGG: all
// but its 14 x 14 and 7 x 7 maps); otherwise the widest that the planes keep aligned
// (store_nchw_run: 14 x 14 in 16 bits, 8 bytes; 7 x 7, single elements).
template <class L, int kWindow, class T, class Index>
__device__ __noinline__ void store_nchw_tile(const float* c_smem, T* y, Index pixels, Index K, Index hw_out, Index m0,
                                             Index k0, int warp, int lane) {
  constexpr int kV = L::kChunk, kRows = kV * kWindow;  // pixels and epilogue rows per lane
  constexpr int kRot = L::nchw_rotation(kRows);
  constexpr int kColBlocks = L::kBN / 16, kRowBlocks = L::kBM / (2 * kRows), kWarps = L::kItemThreads / 32;
  static_assert(kRot >= 0, "a rotation that keeps the two half-warps' reads 16 banks apart");
  static_assert(kColBlocks * kRowBlocks % kWarps == 0, "uniform epilogue passes");
  const int ci = lane % 16, half = lane / 16;
  for (int item = warp; item < kColBlocks * kRowBlocks; item += kWarps) {
    const int cb = item / kRowBlocks, rb = item % kRowBlocks;  // consecutive warps: one plane's next run
    const int column = 16 * cb + ci + (16 * cb < L::kBN / 2 ? 0 : 4);
    const int row0 = (2 * rb + half) * kRows;
    float r[kRows], v[kRows];
#pragma unroll
    for (int i = 0; i < kRows; ++i)
      r[i] = ld_shared(c_smem + (row0 + (half ? (i + kRot) % kRows : i)) * L::kCStride + column);
#pragma unroll
    for (int i = 0; i < kRows; ++i) v[i] = half ? r[(i + kRows - kRot) % kRows] : r[i];  // row i's value
    T out[kV];
#pragma unroll
    for (int j = 0; j < kV; ++j) {
      float m = v[kWindow * j];
#pragma unroll
      for (int d = 1; d < kWindow; ++d) m = max_step(m, v[kWindow * j + d]);
      out[j] = from_float<T>(m);
    }
    // This lane's first output pixel (a multiple of kV), and its channel.
    store_nchw_run<kV>(y, out, m0 / kWindow + row0 / kWindow, k0 + L::channel_of(column), pixels, K, hw_out);
  }
}

// Data-parallel item d, whole: (M tile, K tile) d / splits, all of K_gemm's slices or split
// d % splits's share.
template <class L, class Index>
__device__ __forceinline__ ImplicitGemmWork<Index> implicit_gemm_item_work(const ImplicitGemmParams<Index>& p,
                                                                           int d) {
  ImplicitGemmWork<Index> w;
  w.tile = static_cast<Index>(d / p.splits);
  w.split = d % p.splits;
  w.kt0 = w.split * p.slices_per_split;
  w.n_tiles = min(p.slices_per_split, p.k_slices - w.kt0);
  w.j = 0;
  w.first = w.last = true;
  return w;
}

// Item j of this block's `count` (a grid of sk.grid blocks): its data-parallel items first
// (item b + j G), then its stream-K segments.
template <class L, class Index>
__device__ __forceinline__ ImplicitGemmWork<Index> implicit_gemm_work(const ImplicitGemmParams<Index>& p, int j,
                                                                      int count) {
  ImplicitGemmWork<Index> w;
  const int b = blockIdx.x, dp = p.sk.dp_count(b);
  if (j < dp) {
    w = implicit_gemm_item_work<L>(p, b + j * p.sk.grid);  // < 2^31: the plan's dp_items
  } else {
    const StreamKSegment s = p.sk.segment(b, j - dp);
    w.tile = static_cast<Index>(p.sk.dp_items + s.tile);
    w.split = 0;
    w.kt0 = s.kt0;
    w.n_tiles = s.n;
  }
  w.j = j;
  w.first = j == 0;
  w.last = j + 1 == count;
  return w;
}

// Stream-K's fixup of this block's item j where it is a tile's part (../common/stream_k.h),
// by the item's consumers (thread `tid` of kItemThreads), each holding kMTiles x kNTiles x 4
// accumulators of this block's part: true where the item is a whole tile or this block
// finishes it (acc then holds the tile's sums, for the epilogue), false where it leaves it
// to another. A part that finds every other part's sums written (the tile's counter at
// parts - 1) adds them; else it writes its own to its fixup slot (a float4 per thread and
// step, 512 contiguous bytes a warp), fences them, and counts itself in, and finishes the
// tile if its count made parts - 1. No block waits for another: whichever part arrives
// last finishes, and typically it is part 0 (the tile's first slices, its block's last
// segment, finishing after the others' first), which then writes nothing. The sums are
// added in part order (K order), in place: from its own where it is part 0, else from
// part 0's (its own written first, where it had not been), so the result is the same
// whichever finishes. (Adding each element's parts in turn, with its own held aside, cost
// the consumers 5 KiB of spills at 168 registers: nvcc 13.0, ptxas -v.)
template <class L, class Index>
__device__ __forceinline__ bool stream_k_fixup(const ImplicitGemmParams<Index>& p, int j, float* acc, int tid) {
  const int b = blockIdx.x, dp = p.sk.dp_count(b);
  if (j < dp) return true;  // a data-parallel item: whole
  const StreamKSegment work = p.sk.segment(b, j - dp);
  if (work.parts == 1) return true;
  constexpr int kVecs = L::kMTiles * L::kNTiles;  // float4 per thread
  const int group = static_cast<int>(threadIdx.x) / L::kItemThreads, barrier = L::kStoreBarrier + group;
  VK_SHARED(int, finishes, [L::kConsumerGroups]);  // thread 0's finding, for its group
  int32_t* const counter = p.fixup_counters + work.tile;
  // Slot s's float4 of this thread: s * kSlot + i * kItemThreads + tid (int: < 2^31, as
  // slots < 2 grid), from p.partial: offsets, not pointers, held between the steps.
  constexpr int kSlot = kVecs * L::kItemThreads;
  auto slot = [&](int s) { return reinterpret_cast<float4*>(p.partial) + (s * kSlot + tid); };
  auto write_own = [&] {
    float4* const mine = slot(work.slot);
#pragma unroll
    for (int i = 0; i < kVecs; ++i)
      st_global(mine + i * L::kItemThreads, make_float4(acc[4 * i], acc[4 * i + 1], acc[4 * i + 2], acc[4 * i + 3]));
  };
  bar_sync(barrier, L::kItemThreads);  // the group's reads of the last finding are done
  if (tid == 0) {
    st_shared(&finishes[group], atomicAdd(counter, 0) == work.parts - 1 ? 1 : 0);
    __threadfence();  // the others' sums, read below, after their count
  }
  bar_sync(barrier, L::kItemThreads);
  if (ld_shared(&finishes[group]) == 0) {
    write_own();
    __threadfence();  // this thread's sums, before the count below
    bar_sync(barrier, L::kItemThreads);
    if (tid == 0) {
      st_shared(&finishes[group], atomicAdd(counter, 1) == work.parts - 1 ? 1 : 0);
      __threadfence();
    }
    bar_sync(barrier, L::kItemThreads);
    if (ld_shared(&finishes[group]) == 0) return false;
  } else if (work.part != 0) {
    write_own();  // read back below, by this thread alone
  }
  // Part 0's slot, and part k's (k >= 1: the first segment of block first_block + k).
  if (work.part != 0) {
    const float4* const part0 = slot(p.sk.slot(work.tile, 0));
#pragma unroll
    for (int i = 0; i < kVecs; ++i) {
      const float4 v = ld_global_cg(part0 + i * L::kItemThreads);
      acc[4 * i] = v.x, acc[4 * i + 1] = v.y, acc[4 * i + 2] = v.z, acc[4 * i + 3] = v.w;
    }
  }
  for (int k = 1; k < work.parts; ++k) {
    const float4* const src = slot(2 * (p.sk.first_block(work.tile) + k));
#pragma unroll
    for (int i = 0; i < kVecs; ++i) {
      const float4 v = ld_global_cg(src + i * L::kItemThreads);
      acc[4 * i] += v.x, acc[4 * i + 1] += v.y, acc[4 * i + 2] += v.z, acc[4 * i + 3] += v.w;
    }
  }
  return true;
}

// A thread's share of the cp.async stage copies of an item: 16-byte chunk (ctid % 4) of rows
// ctid / 4 + i * kRowsPerPass of A and B (ctid: its place among the threads that copy).
// Everything per row is computed once, at construction; per stage only the K position moves,
// and it moves by one slice (load() runs for consecutive slices), so no division by C sits
// in the main loop.
//   A row i: pixel (n, h, w) at element a_base[i] = ((n*H + h)*W + w)*C of x; tap (r,
//   s) of channel c reads a_base[i] + ((r - 1)*W + (s - 1))*C + c, valid where bit
//   r*3 + s of a_taps[i] is set (the tap lies inside the image; 0 past M).
//   B row j: output channel k = k0 + row at element b_base[j] = k*9C of the weight,
//   valid where k < K (bit j of b_rows).
template <class L, class T, class Index>
struct StageCopies {
  static constexpr int kARows = L::kBM / L::kRowsPerPass, kBRows = L::kBN / L::kRowsPerPass;
  using UIndex = typename UnsignedOf<Index>::type;  // offsets >= 0: zero-extended to 64 bits
  // Offsets within an A or B stage never change: row r and r + 8j share a swizzle
  // ((r / 2) % 4), so each row this thread copies or reads is a fixed offset plus a
  // multiple of 8 rows (copy passes are kRowsPerPass rows apart, mma tiles 16).
  int dst;  // this thread's first chunk in a stage: + i * kRowsPerPass rows
  Index a_base[kARows];
  uint32_t a_taps[kARows];
  Index b_base[kBRows];
  uint32_t b_rows;
  // The K position of this thread's chunk in the next slice to load: kpos = tap*C + c, and
  // slice kt's tap and channel (K order above): taps inner, tap kt % 9 of channels (kt /
  // 9)*kBK on; taps outer, K position kt*kBK.
  Index kpos, c;
  int tap;  // taps outer: 9 and up past K_gemm; taps inner: c >= C past it (zeros)
  Index tap_delta;  // ((r - 1)*W + (s - 1))*C for the current tap

  // The item of output pixels m0.., channels k0.., from K slice kt0 on.
  __device__ __forceinline__ StageCopies(const ImplicitGemmParams<Index>& p, Index m0, Index k0, int kt0, int ctid) {
    const Index kd = 9 * p.C;  // K_gemm
    const Index ho_n = p.H / 2, wo_n = p.W / 2;
    const int a_chunk = ctid % 4;
    dst = L::offset(ctid / 4, a_chunk);
#pragma unroll
    for (int i = 0; i < kARows; ++i) {
      const Index m = m0 + ctid / 4 + L::kRowsPerPass * i;
      Index n, h, ww;
      if (p.pool) {
        const Index q = m / 4, hw = q % (ho_n * wo_n);
        n = q / (ho_n * wo_n);
        h = 2 * (hw / wo_n) + (m / 2) % 2;
        ww = 2 * (hw % wo_n) + m % 2;
      } else {
        const Index hw = m % (p.H * p.W);
        n = m / (p.H * p.W);
        h = hw / p.W;
        ww = hw % p.W;
      }
      uint32_t taps = 0;
      if (m < p.M) {
#pragma unroll
        for (int r = 0; r < 3; ++r)
#pragma unroll
          for (int s = 0; s < 3; ++s) {
            const Index hh = h + r - 1, wc = ww + s - 1;
            if (hh >= 0 && hh < p.H && wc >= 0 && wc < p.W) taps |= 1u << (r * 3 + s);
          }
      }
      a_taps[i] = taps;
      a_base[i] = taps != 0 ? ((n * p.H + h) * p.W + ww) * p.C : 0;
    }
    b_rows = 0;
#pragma unroll
    for (int j = 0; j < kBRows; ++j) {
      const Index k = k0 + ctid / 4 + L::kRowsPerPass * j;
      if (k < p.K) b_rows |= 1u << j;
      b_base[j] = k < p.K ? k * kd : 0;
    }
    if (p.taps_inner) {
      tap = kt0 % 9;
      c = static_cast<Index>(kt0 / 9) * L::kBK + a_chunk * L::kChunk;
      kpos = static_cast<Index>(tap) * p.C + c;
    } else {
      kpos = static_cast<Index>(kt0) * L::kBK + a_chunk * L::kChunk;
      c = kpos % p.C;
      tap = static_cast<int>(kpos / p.C);
    }
    set_tap_delta(p);
  }

  __device__ __forceinline__ void set_tap_delta(const ImplicitGemmParams<Index>& p) {
    const int r = tap / 3, s = tap % 3;
    tap_delta = (static_cast<Index>(r - 1) * p.W + (s - 1)) * p.C;
  }

  // The next slice into the stage at as (A) and bs (B); then on by one slice.
  __device__ __forceinline__ void load(const ImplicitGemmParams<Index>& p, const T* __restrict__ x,
                                       const T* __restrict__ w, T* as, T* bs) {
    const bool in_k = tap < 9 && c < p.C;
    const Index a_off = tap_delta + c;
#pragma unroll
    for (int i = 0; i < kARows; ++i) {
      const bool ok = in_k && ((a_taps[i] >> tap) & 1u);
      const UIndex off = ok ? static_cast<UIndex>(a_base[i] + a_off) : 0;  // x itself where nothing is read
      cp_async_16(as + dst + i * L::kRowsPerPass * L::kRow, x + off, ok ? 16 : 0);
    }
#pragma unroll
    for (int j = 0; j < kBRows; ++j) {
      const bool ok = in_k && ((b_rows >> j) & 1u);
      const UIndex off = ok ? static_cast<UIndex>(b_base[j] + kpos) : 0;
      cp_async_16(bs + dst + j * L::kRowsPerPass * L::kRow, w + off, ok ? 16 : 0);
    }
    if (p.taps_inner) {  // the next tap of these channels: one pixel on (s), or a row (r)
      ++tap;
      kpos += p.C;
      tap_delta += p.C;
      if (tap == 3 || tap == 6) {
        tap_delta += static_cast<Index>(p.W - 3) * p.C;
      } else if (tap == 9) {  // the next channel slice's first tap
        tap = 0;
        c += L::kBK;
        kpos = c;
        set_tap_delta(p);
      }
    } else {
      kpos += L::kBK;
      c += L::kBK;
      if (c >= p.C) {  // into the next tap (several when C < kBK: VGG's padded C = 8)
        do {
          c -= p.C;
          ++tap;
        } while (c >= p.C);
        set_tap_delta(p);
      }
    }
  }
  // wgmma, tf32: this thread's copies of a slice, rounded to TF32 (cvt.rna) in place in the A
  // stage at `as` (complete after its wait): wgmma would drop the low 13 bits, a bias toward
  // zero that 13 layers compound (VGG16 at batch 64 on the H200: 5.2x torch's TF32 error).
  // Not where x is TF32 already (x_tf32: a chain's previous layer rounded it).
  __device__ __forceinline__ void round_x(const ImplicitGemmParams<Index>& p, T* as) const {
    if constexpr (sizeof(T) == 4) {
      if (p.x_tf32) return;
#pragma unroll
      for (int i = 0; i < kARows; ++i) {
        float4* const q = reinterpret_cast<float4*>(as + dst + i * L::kRowsPerPass * L::kRow);
        float4 v = ld_shared(q);
        v.x = round_tf32(v.x), v.y = round_tf32(v.y), v.z = round_tf32(v.z), v.w = round_tf32(v.w);
        st_shared(q, v);
      }
    }
  }
};

// The item's outputs, from the accumulators (acc: kMTiles x kNTiles x 4 per thread, thread
// `tid` of the item's kItemThreads) of output pixels m0.. and channels k0.. Split-K: raw
// sums straight to partial[split].
template <class L, class Index>
__device__ __forceinline__ void store_partial_sums(const ImplicitGemmParams<Index>& p,
                                                   const float (&acc)[L::kMTiles][L::kNTiles][4], int split, Index m0,
                                                   Index k0, int tid) {
  const int lane = tid % 32, warp = tid / 32, g = lane / 4, t = lane % 4;
  const int warp_m = warp % L::kWarpsM, warp_n = warp / L::kWarpsM;
  float* const part = p.partial + static_cast<Index>(split) * p.M * p.K;
  if constexpr (L::kTransposed) {
    // wgmma_t's accumulators, flat: dt[4j + i] = D^T[channel 16 warp + g + 8 (i / 2)][pixel 8j + 2t + i % 2].
    const float* const dt = &acc[0][0][0];
#pragma unroll
    for (int j = 0; j < 32; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const Index m = m0 + 8 * j + 2 * t + i % 2, k = k0 + 16 * warp + g + 8 * (i / 2);
        const bool active = m < p.M && k < p.K;
        st_global(part + (active ? m * p.K + k : 0), dt[4 * j + i], active);
      }
  } else {
#pragma unroll
    for (int nt = 0; nt < L::kNTiles; ++nt) {
      const Index k = k0 + warp_n * L::kWarpN + nt * 8 + 2 * t;
#pragma unroll
      for (int mt = 0; mt < L::kMTiles; ++mt)
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const Index m = m0 + L::warp_row(warp_m, mt) + g + 8 * half;
          if (m >= p.M || k >= p.K) continue;
          float* const dst = part + m * p.K + k;
          if (k + 1 < p.K && p.K % 2 == 0) {
            float2 v;
            v.x = acc[mt][nt][2 * half];
            v.y = acc[mt][nt][2 * half + 1];
            st_global(reinterpret_cast<float2*>(dst), v);
          } else {
            st_global(dst, acc[mt][nt][2 * half]);
            st_global(dst + 1, acc[mt][nt][2 * half + 1], k + 1 < p.K);
          }
        }
    }
  }
}

// Persistent wgmma_ws (y NHWC): the outputs go from the accumulators to y, leaving the
// stages to the producer's next item. Thread (g, t) of warp w holds rows warp_row(w, mt)
// + g (+ 8) and channels 8 nt + 2t, + 1 (pairs: one 2-element store, 4 lanes a row's 16
// contiguous bytes of fp16). With the pool, lane g = 4j (window order: a window's 4 rows
// are g = 4j .. 4j + 3, 4 lanes apart) or g = 2j (slab order: its rows are g, g + 8 of
// this lane and of the lane 4 further) takes the others' values by shuffles, their max
// in window order (torch's NaN rule), and stores it.
template <class L, class T, class Index>
__device__ __forceinline__ void store_from_registers(const ImplicitGemmParams<Index>& p,
                                                     const float (&acc)[L::kMTiles][L::kNTiles][4],
                                                     const T* __restrict__ bias, T* __restrict__ y, unsigned char* smem,
                                                     const ImplicitGemmTensorMaps& maps, Index m0, Index k0, int tid) {
  const int lane = tid % 32, warp = tid / 32, g = lane / 4, t = lane % 4;
  const int warp_m = warp % L::kWarpsM;
  constexpr int kBN = L::kBN;
  const bool pairs = p.K % 2 == 0;
  // Staged (maps.store): the pairs go to this group's staging, y's rows m0 (m0 / 4 with
  // the pool) on, and once all are there (each writer fenced for the async proxy, then the
  // group's barrier), thread 0 of the group stores its boxes (tensor stores) and commits,
  // their reads of the staging waited for before the next item writes it (the thread's
  // wait, then the barrier); the kernel waits for the last ones before it ends.
  const int group = static_cast<int>(threadIdx.x) / L::kItemThreads;
  T* const staging = reinterpret_cast<T*>(smem + L::kStagingOffset) + group * (L::kStagingBytes / sizeof(T));
  const int staged_rows = p.pool ? L::kBM / 4 : L::kBM;  // the item's rows of y, from y's row staged_row0
  const Index staged_row0 = p.pool ? m0 / 4 : m0;
  if constexpr (L::kStoreStaging) {
    if (maps.store) {
      if (tid == 0) tma_store_wait_read();
      bar_sync(L::kStoreBarrier + group, L::kItemThreads);
    }
  }
  auto store_pair = [&](Index o, Index k, const float* v, bool active) {  // y's pixel o, channels k, k + 1
    if (L::kStoreStaging && maps.store) {  // active: this lane holds the pair, and y has its row
      if (!active) return;
      Vec<T, 2> out;
      out.v[0] = from_float<T>(v[0]), out.v[1] = from_float<T>(v[1]);
      st_shared(reinterpret_cast<Vec<T, 2>*>(staging + L::staged(staged_rows, static_cast<int>(o - staged_row0),
                                                                 static_cast<int>(k - k0))),
                out);
    } else if (pairs) {
      Vec<T, 2> out;
      out.v[0] = from_float<T>(v[0]), out.v[1] = from_float<T>(v[1]);
      const bool inside = active && k < p.K;
      st_global(reinterpret_cast<Vec<T, 2>*>(y + (inside ? o * p.K + k : 0)), out, inside);
    } else {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const bool inside = active && k + j < p.K;
        st_global(y + (inside ? o * p.K + k + j : 0), from_float<T>(v[j]), inside);
      }
    }
  };
  auto output = [&](int mt, int nt, int half, const float* bk, float* v) {  // + bias, ReLU, TF32 rounding
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      v[j] = acc[mt][nt][2 * half + j] + bk[j];
      if (p.relu && v[j] < 0.f) v[j] = 0.f;  // ReLU(NaN) = NaN
      if (p.y_tf32) v[j] = round_tf32(v[j]);
    }
  };
  auto bias_pair = [&](Index k, float* bk) {
#pragma unroll
    for (int j = 0; j < 2; ++j) bk[j] = bias != nullptr ? to_float(ld_global(bias + (k + j), k + j < p.K)) : 0.f;
  };
  auto store_staged = [&]() {
    if constexpr (L::kStoreStaging) {
      if (!maps.store) return;
      fence_proxy_async();
      bar_sync(L::kStoreBarrier + group, L::kItemThreads);
      if (tid == 0) {  // (the dispatch keeps y's rows under 2^31)
#pragma unroll
        for (int box = 0; box < kBN / L::kStoreCols; ++box)
          tma_store_2d(&maps.y, static_cast<int32_t>(k0) + box * L::kStoreCols, static_cast<int32_t>(staged_row0),
                       staging + box * staged_rows * L::kStoreCols);
        tma_store_commit();
      }
    }
  };
  if (p.pool && maps.on) {  // slab order: window (dy, dx) is row g + 8 dy of this lane (dx = 0) and of the next pixel's (dx = 1)
#pragma unroll
    for (int nt = 0; nt < L::kNTiles; ++nt) {
      const Index k = k0 + nt * 8 + 2 * t;
      float bk[2];
      bias_pair(k, bk);
#pragma unroll
      for (int mt = 0; mt < L::kMTiles; ++mt) {
        const Index o = (m0 + L::warp_row(warp_m, mt)) / 4 + g / 2;  // 4 windows per slab of 16 rows
        float v[2][2], m[2];
        output(mt, nt, 0, bk, v[0]);
        output(mt, nt, 1, bk, v[1]);
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          const float right0 = __shfl_down_sync(0xffffffffu, v[0][j], 4);
          const float right1 = __shfl_down_sync(0xffffffffu, v[1][j], 4);
          m[j] = max_step(max_step(max_step(v[0][j], right0), v[1][j]), right1);
        }
        store_pair(o, k, m, g % 2 == 0 && o < p.M / 4);
      }
    }
    store_staged();
    return;
  }
#pragma unroll
  for (int nt = 0; nt < L::kNTiles; ++nt) {
    const Index k = k0 + nt * 8 + 2 * t;
    float bk[2];
    bias_pair(k, bk);
#pragma unroll
    for (int mt = 0; mt < L::kMTiles; ++mt) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const Index row = m0 + L::warp_row(warp_m, mt) + g + 8 * half;  // a multiple of 4 where g % 4 == 0
        float v[2];
        output(mt, nt, half, bk, v);
        if (p.pool) {  // window order
          float u[3][2];
#pragma unroll
          for (int d = 1; d < 4; ++d)
#pragma unroll
            for (int j = 0; j < 2; ++j) u[d - 1][j] = __shfl_down_sync(0xffffffffu, v[j], 4 * d);
#pragma unroll
          for (int d = 1; d < 4; ++d)
#pragma unroll
            for (int j = 0; j < 2; ++j) v[j] = max_step(v[j], u[d - 1][j]);
          store_pair(row / 4, k, v, g % 4 == 0 && row < p.M);
        } else {
          store_pair(row, k, v, row < p.M);
        }
      }
    }
  }
  store_staged();
}

// Through shared memory (the others: bias and ReLU into an fp32 tile over the pipeline's
// stages, then 16-byte vectors to y, NHWC or NCHW).
template <class L, class T, class Index>
__device__ __forceinline__ void store_through_shared(const ImplicitGemmParams<Index>& p,
                                                     const float (&acc)[L::kMTiles][L::kNTiles][4],
                                                     const T* __restrict__ bias, T* __restrict__ y, unsigned char* smem,
                                                     Index m0, Index k0, int tid) {
  const int lane = tid % 32, warp = tid / 32, g = lane / 4, t = lane % 4;
  const int warp_m = warp % L::kWarpsM, warp_n = warp / L::kWarpsM;
  constexpr int kBN = L::kBN;
  // The computing threads' barrier (wgmma_ws: its producer has gone; its copies all landed
  // and were read before the consumers' last full barrier and wgmma wait).
  auto sync_consumers = [&]() {
    if constexpr (L::kWs) bar_sync(L::kConsumerBarrier, L::kItemThreads);
    else __syncthreads();
  };
  sync_consumers();  // the pipeline's shared memory becomes the epilogue tile

  // Epilogue 1: accumulators + bias, ReLU -> fp32 tile [row][channel], float2 stores
  // (wgmma_t: single floats, its pairs are two pixels of one channel).
  float* const c_smem = reinterpret_cast<float*>(smem);
  if constexpr (L::kTransposed) {
    const float* const dt = &acc[0][0][0];  // as in split-K above
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int col = 16 * warp + g + 8 * h;
      const float bk = bias != nullptr ? to_float(ld_global(bias + (k0 + col), k0 + col < p.K)) : 0.f;
#pragma unroll
      for (int j = 0; j < 32; ++j)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          float v = dt[4 * j + 2 * h + c] + bk;
          if (p.relu && v < 0.f) v = 0.f;  // ReLU(NaN) = NaN
          if (p.y_tf32) v = round_tf32(v);
          st_shared(c_smem + (8 * j + 2 * t + c) * L::kCStride + L::column_of(col), v);
        }
    }
  } else {
#pragma unroll
    for (int nt = 0; nt < L::kNTiles; ++nt) {
      const int col = warp_n * L::kWarpN + nt * 8 + 2 * t;
      float bk[2];
#pragma unroll
      for (int j = 0; j < 2; ++j)
        bk[j] = bias != nullptr ? to_float(ld_global(bias + (k0 + col + j), k0 + col + j < p.K)) : 0.f;
#pragma unroll
      for (int mt = 0; mt < L::kMTiles; ++mt)
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int row = L::warp_row(warp_m, mt) + g + 8 * half;
          float2 v;
          v.x = acc[mt][nt][2 * half] + bk[0];
          v.y = acc[mt][nt][2 * half + 1] + bk[1];
          if (p.relu) {  // ReLU(NaN) = NaN
            v.x = v.x < 0.f ? 0.f : v.x;
            v.y = v.y < 0.f ? 0.f : v.y;
          }
          if (p.y_tf32) v.x = round_tf32(v.x), v.y = round_tf32(v.y);
          st_shared(reinterpret_cast<float2*>(c_smem + row * L::kCStride + L::column_of(col)), v);
        }
    }
  }
  sync_consumers();

  // Epilogue 2: 8 channels per item (two float4 reads), stored as one vector (16 bytes, or
  // 32 for fp32) when K allows.
  constexpr int kGroups = kBN / 8;
  auto read8 = [&](int row, int grp, float* v) {
    const float* r = c_smem + row * L::kCStride + grp * 4;
    const float4 lo = ld_shared(reinterpret_cast<const float4*>(r));
    const float4 hi = ld_shared(reinterpret_cast<const float4*>(r + kBN / 2 + 4));
    v[0] = lo.x, v[1] = lo.y, v[2] = lo.z, v[3] = lo.w, v[4] = hi.x, v[5] = hi.y, v[6] = hi.z, v[7] = hi.w;
  };
  const bool vector_store = p.K % 8 == 0;
  auto store8 = [&](T* dst, Index k, const float* v, bool inside) {
    if (vector_store) {
      Vec<T, 8> out;
#pragma unroll
      for (int j = 0; j < 8; ++j) out.v[j] = from_float<T>(v[j]);
      st_global(reinterpret_cast<Vec<T, 8>*>(dst), out, inside);
    } else {
      for (int j = 0; j < 8; ++j) {
        const bool active = inside && k + j < p.K;
        st_global(dst + (active ? j : 0), from_float<T>(v[j]), active);
      }
    }
  };
  // Every thread makes the same number of passes (the tile divides by the block) and
  // reads its rows whether or not they exist in y; only the stores are guarded.
  static_assert(L::kBM / 4 * kGroups % L::kItemThreads == 0, "uniform epilogue passes");
  if (p.y_nchw) {  // y NCHW: per channel, the tile's output pixels are runs of one plane
    if (p.pool) store_nchw_tile<L, 4>(c_smem, y, p.M / 4, p.K, p.hw_out, m0, k0, warp, lane);
    else store_nchw_tile<L, 1>(c_smem, y, p.M, p.K, p.hw_out, m0, k0, warp, lane);
    return;
  }
  if (!p.pool) {  // row m is pixel m0 + m of the NHWC output
    for (int idx = tid; idx < L::kBM * kGroups; idx += L::kItemThreads) {
      const int m = idx / kGroups, grp = idx % kGroups;
      const Index k = k0 + grp * 8;
      float v[8];
      read8(m, grp, v);
      const bool inside = m0 + m < p.M && k < p.K;
      store8(y + (inside ? (m0 + m) * p.K + k : 0), k, v, inside);
    }
  } else {  // rows 4q .. 4q+3 are pooled pixel m0/4 + q's window, in torch's order
    for (int idx = tid; idx < L::kBM / 4 * kGroups; idx += L::kItemThreads) {
      const int q = idx / kGroups, grp = idx % kGroups;
      const Index k = k0 + grp * 8;
      float v[8], u[8];
      read8(4 * q, grp, v);
#pragma unroll
      for (int dy_dx = 1; dy_dx < 4; ++dy_dx) {
        read8(4 * q + dy_dx, grp, u);
#pragma unroll
        for (int j = 0; j < 8; ++j) v[j] = max_step(v[j], u[j]);
      }
      const bool inside = m0 + 4 * q < p.M && k < p.K;
      store8(y + (inside ? (m0 / 4 + q) * p.K + k : 0), k, v, inside);
    }
  }
}

// wgmma_ws's producer warpgroup on one item (`ctid`: the thread's place in it): fills the
// stages of the item's slices, pipelined + 0 .. n_tiles - 1, each once the consumers have
// released it (the empty barriers), and announces each on its stage's full mbarrier; after
// the block's last item, it waits for the last kStages releases (see the kernel's wgmma_ws
// comment in conv3x3_implicit_gemm_item).
template <class L, class T, class Index>
__device__ __forceinline__ void ws_producer_item(const T* __restrict__ x, const T* __restrict__ w,
                                                 const ImplicitGemmParams<Index>& p,
                                                 const ImplicitGemmWork<Index>& work, int& pipelined, uint64_t* full,
                                                 const ImplicitGemmTensorMaps& maps, StageCopies<L, T, Index>& copies,
                                                 T* a_smem, Index m0, Index k0, int ctid) {
  T* const b_smem = a_smem + L::kStages * L::kAStage;
  const int kt0 = work.kt0, n_tiles = work.n_tiles;
  const bool last = work.last;
  constexpr int kAll = L::kEmptyArrivals;
  auto load_stage = [&](int stage) { copies.load(p, x, w, a_smem + stage * L::kAStage, b_smem + stage * L::kBStage); };
  auto round_x = [&](int stage) { copies.round_x(p, a_smem + stage * L::kAStage); };
  // maps.on (without the pool; with it, below): one thread of the producer issues both
  // tensor loads of a slice, announced on the stage's full mbarrier (the consumers wait
  // there for the phase of parity (i / kStages) % 2); the other producer threads only
  // take part in the empty barriers. The x box is the 128 pixels m0.. at the slice's tap
  // (r, s): from m0's pixel's base (h - 1, w - 1), offsets (s, r), channels c.. (K position
  // kpos = tap * C + c, a slice within one tap); the weight box, its rows k0.. at kpos.
  constexpr uint32_t kStageBytes = (L::kAStage + L::kBStage) * sizeof(T);
  auto load_weight = [&](int stage, int32_t kpos) {
    tma_load_2d(b_smem + stage * L::kBStage, &maps.w, kpos, static_cast<int32_t>(k0), &full[stage]);
  };
  // One loop per copy path (and per tensor-load layout): merged, the cp.async loop's
  // listing carries the tensor loads' address arithmetic (python -m
  // benchmarks.sass_loop: 293 instructions per slice against 161).
  auto tensor_load_loop = [&](auto issue, bool issuing) {
    const int32_t C = static_cast<int32_t>(p.C);
    int32_t kpos_t = kt0 * L::kBK;  // the slice's K position, tap and channel, advanced without division
    int tap_t = kpos_t / C;
    int32_t c_t = kpos_t - tap_t * C;
    for (int kt = 0; kt < n_tiles; ++kt) {
      const int slice = pipelined + kt, stage = L::stage_of(slice);
      if (slice >= L::kStages) bar_sync(L::kEmptyBarrier + stage, kAll);
      if (issuing) issue(stage, kpos_t, tap_t, c_t);
      kpos_t += L::kBK;
      c_t += L::kBK;
      if (c_t == C) c_t = 0, ++tap_t;  // C a multiple of kBK
    }
  };
  if (maps.on && p.pool) {
    // With the pool (slab order): slab b's 8 pixels of the row view (n, ho, w) start at
    // the tile's pixel m0 / 2 + 8b there, from base (ho - 1, w - 1). Tap (r, s) of the
    // pixels in row 2 ho + dy reads row 2 ho + dy + r - 1: the even rows' map where dy + r
    // is odd, else the odd rows', at view row ho - 1 + (dy + r + 1) / 2 (offset r' = (dy +
    // r + 1) / 2 from the base), column offset s. The 17 loads of a slice are shared by
    // lane 0 of each producer warp (kPoolIssuers of them, each arriving at the full
    // mbarrier with its own bytes): its 2 slabs' 4 x boxes, and warp 0 the weight's
    // tile, so that no one sub-partition issues them all (each load is ~20 instructions:
    // python -m benchmarks.sass_loop).
    constexpr int kSlabs = L::kBM / 16, kMine = kSlabs / L::kPoolIssuers;
    constexpr uint32_t kSlabBytes = 16 * L::kRow * sizeof(T), kWeightBytes = L::kBStage * sizeof(T);
    static_assert(kMine * L::kPoolIssuers == kSlabs && kSlabBytes * kSlabs + kWeightBytes == kStageBytes,
                  "the issuers' bytes make the stage's");
    const int issuer = ctid / 32;
    int32_t slab_w[kMine], slab_h[kMine], slab_n[kMine];
    if (ctid % 32 == 0) {
      const int32_t W = static_cast<int32_t>(p.W), Ho = static_cast<int32_t>(p.H / 2);
      const Index first = m0 / 2 + 8 * kMine * issuer, per_image = static_cast<Index>(Ho) * W;
      int32_t n = static_cast<int32_t>(first / per_image), hw = static_cast<int32_t>(first % per_image);
      int32_t ho = hw / W, w = hw % W;
#pragma unroll
      for (int b = 0; b < kMine; ++b) {
        slab_w[b] = w - 1, slab_h[b] = ho - 1, slab_n[b] = n;
        for (w += 8; w >= W; w -= W)  // the next slab: 8 pixels on (past the batch: n >= N, zeros)
          if (++ho == Ho) ho = 0, ++n;
      }
    }
    auto issue_pooled_tensor_loads = [&](int stage, int32_t kpos, int tap, int32_t c) {
      mbar_arrive_expect_tx(&full[stage], kMine * kSlabBytes + (issuer == 0 ? kWeightBytes : 0));
      const int r = tap / 3;
      const uint16_t s = static_cast<uint16_t>(tap % 3);
      T* const as = a_smem + stage * L::kAStage + 16 * kMine * issuer * L::kRow;
#pragma unroll
      for (int b = 0; b < kMine; ++b)
#pragma unroll
        for (int dy = 0; dy < 2; ++dy)
          tma_load_im2col(as + (16 * b + 8 * dy) * L::kRow, &maps.x[(dy + r + 1) % 2], c, slab_w[b], slab_h[b],
                          slab_n[b], s, static_cast<uint16_t>((dy + r + 1) / 2), &full[stage]);
      if (issuer == 0) load_weight(stage, kpos);
    };
    tensor_load_loop(issue_pooled_tensor_loads, ctid % 32 == 0);
  } else if (maps.on) {  // without the pool: one x box, from m0's pixel's base
    const Index hw0 = m0 % (p.H * p.W);
    const int32_t box_w = static_cast<int32_t>(hw0 % p.W) - 1, box_h = static_cast<int32_t>(hw0 / p.W) - 1;
    const int32_t box_n = static_cast<int32_t>(m0 / (p.H * p.W));
    auto issue_tensor_loads = [&](int stage, int32_t kpos, int tap, int32_t c) {
      mbar_arrive_expect_tx(&full[stage], kStageBytes);
      tma_load_im2col(a_smem + stage * L::kAStage, &maps.x[0], c, box_w, box_h, box_n,
                      static_cast<uint16_t>(tap % 3), static_cast<uint16_t>(tap / 3), &full[stage]);
      load_weight(stage, kpos);
    };
    tensor_load_loop(issue_tensor_loads, ctid == 0);
  } else {
    for (int kt = 0; kt < n_tiles; ++kt) {
      const int slice = pipelined + kt, stage = L::stage_of(slice);
      if (slice >= L::kStages) bar_sync(L::kEmptyBarrier + stage, kAll);
      load_stage(stage);
      cp_async_commit();
      if (kt >= L::kPrefetch) {
        const int landed = L::stage_of(slice - L::kPrefetch);
        cp_async_wait<L::kPrefetch>();
        round_x(landed);
        fence_proxy_async();
        mbar_arrive(&full[landed]);
      }
    }
    cp_async_wait<0>();  // the last kPrefetch slices' copies
    for (int kt = max(n_tiles - L::kPrefetch, 0); kt < n_tiles; ++kt) {
      const int stage = L::stage_of(pipelined + kt);
      round_x(stage);
      fence_proxy_async();
      mbar_arrive(&full[stage]);
    }
  }
  pipelined = L::next_pipelined(pipelined, n_tiles);
  if (last)
    for (int slice = max(pipelined - L::kStages, 0); slice < pipelined; ++slice)
      bar_sync(L::kEmptyBarrier + L::stage_of(slice), kAll);
}

// Whose part of a work item a thread runs: every part (one block per item), or wgmma_ws's
// producer or consumer part (compiled apart, so that neither carries the other's registers).
enum class Role { all, producer, consumer };

// One work item of the kernel below (`work`: implicit_gemm_work's); `pipelined`: the slices
// its pipeline carried in earlier items (wgmma_ws: stage and barrier of a slice count on
// from there); `full`: wgmma_ws's full mbarriers, and its tensor maps where its copies are
// tensor loads (maps.on).
template <class T, MmaType kMma, int kBM_, int kBN_, MainLoop kLoop, Role kRole, class Index>
__device__ __forceinline__ void conv3x3_implicit_gemm_item(const T* __restrict__ x, const T* __restrict__ w,
                                                           const T* __restrict__ bias, T* __restrict__ y,
                                                           const ImplicitGemmParams<Index>& p,
                                                           const ImplicitGemmWork<Index>& work, int& pipelined,
                                                           uint64_t* full, const ImplicitGemmTensorMaps& maps) {
  using L = ImplicitGemmTiling<T, kBM_, kBN_, kLoop>;
  static_assert(L::kWs == (kRole != Role::all), "wgmma_ws runs in two roles, the others in one");
  constexpr int kBN = L::kBN;
  static_assert((kMma == MmaType::tf32) == (sizeof(T) == 4), "tf32 math for fp32 storage, f16/bf16 for halves");
  VK_DYNAMIC_SHARED(unsigned char, smem);
  T* const a_smem = reinterpret_cast<T*>(smem);
  T* const b_smem = a_smem + L::kStages * L::kAStage;

  // tid: the thread's place among the item's threads (ping-pong: within its warpgroup); the
  // producer's, past them.
  const int tid = kRole == Role::consumer ? static_cast<int>(threadIdx.x) % L::kItemThreads : threadIdx.x;
  const int lane = tid % 32, warp = tid / 32;
  const int warp_m = warp % L::kWarpsM, warp_n = warp / L::kWarpsM;

  const Index m0 = work.tile / p.k_blocks * L::kBM;
  const Index k0 = work.tile % p.k_blocks * kBN;
  // This item's K slices: [kt0, kt0 + n_tiles) (all of them without split-K or stream-K).
  const int split = work.split, kt0 = work.kt0, n_tiles = work.n_tiles;
  const bool last = work.last;

  // ctid: the thread's place among those that copy (wgmma_ws: the producer warpgroup's; the
  // consumers compute row 0's values and never use them).
  const int ctid = !L::kWs ? tid : tid >= L::kThreads ? tid - L::kThreads : 0;
  StageCopies<L, T, Index> copies(p, m0, k0, kt0, ctid);
  auto load_stage = [&](int stage) { copies.load(p, x, w, a_smem + stage * L::kAStage, b_smem + stage * L::kBStage); };

  float acc[L::kMTiles][L::kNTiles][4];
#pragma unroll
  for (int mt = 0; mt < L::kMTiles; ++mt)
#pragma unroll
    for (int nt = 0; nt < L::kNTiles; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[mt][nt][i] = 0.f;

  // Pipeline: kPrefetch slices in flight before the loop; each iteration waits for its
  // slice, refills a stage the tensor cores are done with, and computes. One commit per
  // iteration (empty groups past the end) keeps the group count uniform. (wgmma_ws: its
  // producer's own loop, below.)
  if constexpr (!L::kWs) {
#pragma unroll
    for (int s = 0; s < L::kPrefetch; ++s) {
      if (s < n_tiles) load_stage(s);
      cp_async_commit();
    }
  }
  auto round_x = [&](int stage) { copies.round_x(p, a_smem + stage * L::kAStage); };
  if constexpr (L::kWgmma) {
    // The stages are the 64-byte-swizzled K-major layout wgmma reads (offset() above is
    // that swizzle), 8-row groups 512 bytes apart; a k-step's operand starts 0 or 32 bytes
    // into the rows (descriptor addresses count 16-byte units: 2 per k-step, 256 per 64
    // rows). Per 64-byte slice, 2 k-steps (k16 halves, or k8 floats for tf32) of:
    //   wgmma:   per warpgroup, its 64-row A blocks (rows 64 (warpgroup * kMTiles + mt) on)
    //            of the stage x all BN B rows: 2 m64n128 (one warpgroup) or 1 m64n256;
    //   wgmma_t: D^T (64 channels x 256 pixels) += W * X^T, the B stage (the weight rows)
    //            as wgmma's A and the A stage (256 pixel rows) as its B, 1 m64n256.
    // tf32: wgmma drops the low 13 mantissa bits of what it reads (the PTX ISA's rule: see
    // tensor_core.cuh), so x is rounded to TF32 in place first (below) and the weight arrives
    // rounded by the op (cvt.rna's rule both): then nothing is left to drop.
    // The slice loaded at iteration kt goes to the stage of slice kt + kPrefetch - kStages
    // = kt - 2, whose wgmma group every thread waited for (wgmma_wait<1> at kt - 1) before
    // this iteration's barrier.
    constexpr uint32_t kAStageUnits = L::kAStage * sizeof(T) / 16, kBStageUnits = L::kBStage * sizeof(T) / 16;
    const uint64_t a_desc = smem_desc_k_sw64(a_smem, 8 * 64), b_desc = smem_desc_k_sw64(b_smem, 8 * 64);
    const int a_block0 = L::kWarpgroups > 1 ? warp / 4 * L::kMTiles : 0;  // its warpgroup's first 64-row A block
    constexpr int kAccumulators = L::kMTiles * L::kNTiles * 4;
    float* const acc_regs = &acc[0][0][0];
    // Issues the wgmma of the slice in `stage` (2 k-steps) as one group, and waits for the
    // group before it: the stage that group read is free once this returns.
    auto compute_slice = [&](int stage) {
      const uint64_t a_stage = a_desc + stage * kAStageUnits, b_stage = b_desc + stage * kBStageUnits;
      wgmma_pin<kAccumulators>(acc_regs);
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < 2; ++kk) {
        if constexpr (L::kTransposed) {
          wgmma_m64nN<kMma, 256>(*reinterpret_cast<float(*)[128]>(&acc[0][0][0]), b_stage + 2 * kk,
                                 a_stage + 2 * kk);
        } else {
#pragma unroll
          for (int mt = 0; mt < L::kMTiles; ++mt)
            wgmma_m64nN<kMma, kBN>(*reinterpret_cast<float(*)[kBN / 2]>(&acc[mt][0][0]),
                                   a_stage + (a_block0 + mt) * 256 + 2 * kk, b_stage + 2 * kk);
        }
      }
      wgmma_commit();
      wgmma_wait<1>();
      wgmma_pin<kAccumulators>(acc_regs);
    };
    if constexpr (L::kWs) {
      // Warp-specialised: slices are numbered on over the block's items (`pipelined`), and
      // slice i lives in stage i % kStages. The producer warpgroup (threads kThreads on)
      // copies slice i once the consumers released the stage (empty: slice i - kStages).
      // With cp.async it keeps kPrefetch slices in flight, and, each landed (its wait),
      // every producer thread rounds (tf32) and fences its copies and arrives at the stage's
      // full mbarrier (at an item's end it waits for all its copies and arrives for the
      // rest); with tensor loads (maps.on) one thread announces the slice's bytes there and
      // issues the two loads, which complete the phase as they land. The item's consumers
      // (both warpgroups; ping-pong, the one whose turn it is) wait for the phase (parity (i
      // / kStages) % 2), issue the slice's wgmma, and once it is done (wgmma_wait<1> a slice
      // later, <0> at the item's end) arrive at the stage's empty barrier. Every release is
      // matched: the producer syncs before each refill, and after its last item for the last
      // kStages releases. No barrier of the whole block: a warpgroup waits only for the
      // stage it needs, and the producer runs into the next item while the consumers store
      // this one's outputs. Deadlock-free: refilling slice i needs the consumers past slice i
      // - kStages + 1, whose full phase the producer completed by then (its arrivals at i -
      // 1, or at the end of an item), and a ping-pong warpgroup waiting for its turn holds
      // no stage.
      constexpr int kAll = L::kEmptyArrivals;
      if constexpr (kRole == Role::producer) {
        ws_producer_item<L>(x, w, p, work, pipelined, full, maps, copies, a_smem, m0, k0, ctid);
        return;  // the consumers' epilogue needs no producer (its barriers count kItemThreads)
      } else {
        // Ping-pong: this warpgroup's turn (its block's first item needs none), and once the
        // item's wgmma are all issued (every slice waited for), the other's, where the block
        // has a next item (the other's); its main loop then starts under this one's last
        // wgmma, as this one's epilogue runs under it.
        const int group = static_cast<int>(threadIdx.x) / L::kItemThreads;
        if (L::kPingPong && !work.first) bar_sync(L::kTurnBarrier + group, 2 * L::kItemThreads);
        for (int kt = 0; kt < n_tiles; ++kt) {
          const int slice = pipelined + kt;
          const int stage = L::stage_of(slice);
          mbar_wait(&full[stage], L::phase_of(slice));
          compute_slice(stage);
          if (kt >= 1) bar_arrive(L::kEmptyBarrier + L::stage_of(slice - 1), kAll);
        }
        if (L::kPingPong && !last) bar_arrive(L::kTurnBarrier + 1 - group, 2 * L::kItemThreads);
        wgmma_wait<0>();
        wgmma_pin<kAccumulators>(acc_regs);
        bar_arrive(L::kEmptyBarrier + L::stage_of(pipelined + n_tiles - 1), kAll);
        pipelined = L::next_pipelined(pipelined, n_tiles);
      }
    } else {
      int read = 0, write = L::kPrefetch;  // stages: computed now, loaded now
      for (int kt = 0; kt < n_tiles; ++kt) {
        cp_async_wait<L::kPrefetch - 1>();
        round_x(read);
        fence_proxy_async();  // this thread's copies (and roundings), visible to the tensor cores' reads...
        __syncthreads();      // ...and everyone's
        if (kt + L::kPrefetch < n_tiles) load_stage(write);
        cp_async_commit();
        compute_slice(read);
        read = read + 1 == L::kStages ? 0 : read + 1;
        write = write + 1 == L::kStages ? 0 : write + 1;
      }
      wgmma_wait<0>();
      wgmma_pin<kAccumulators>(acc_regs);
    }
  } else {
    int a_frag[2], b_frag[2];  // ldmatrix row offsets per k-step kk; + 16 rows per mma tile
#pragma unroll
    for (int kk = 0; kk < 2; ++kk) {
      a_frag[kk] = L::offset(warp_m * L::kWarpM + lane % 16, 2 * kk + lane / 16);
      b_frag[kk] = L::offset(warp_n * L::kWarpN + lane % 8 + (lane / 16) * 8, 2 * kk + (lane / 8) % 2);
    }
    for (int kt = 0; kt < n_tiles; ++kt) {
      cp_async_wait<L::kPrefetch - 1>();
      __syncthreads();
      const int next = kt + L::kPrefetch;
      if (next < n_tiles) load_stage(next % L::kStages);
      cp_async_commit();

      const T* const as = a_smem + (kt % L::kStages) * L::kAStage;
      const T* const bs = b_smem + (kt % L::kStages) * L::kBStage;
#pragma unroll
      for (int kk = 0; kk < 2; ++kk) {  // 2 mma k-steps per 64-byte slice: chunks 2kk, 2kk + 1
        uint32_t a[L::kMTiles][4], bf[L::kNTiles][2];
#pragma unroll
        for (int mt = 0; mt < L::kMTiles; ++mt)
          ldmatrix<4>(a[mt], as + a_frag[kk] + mt * 16 * L::kRow);
#pragma unroll
        for (int np = 0; np < L::kNTiles / 2; ++np) {
          uint32_t r[4];
          ldmatrix<4>(r, bs + b_frag[kk] + np * 16 * L::kRow);
          bf[2 * np][0] = r[0];
          bf[2 * np][1] = r[1];
          bf[2 * np + 1][0] = r[2];
          bf[2 * np + 1][1] = r[3];
        }
        if constexpr (kMma == MmaType::tf32) {
          // x: fp32 -> tf32, round to nearest (ties away), once per fragment element, x_tf32
          // or not (on TF32 values a no-op; a branch around it cost the loop's listing 33
          // instructions, and "auto" runs fp32 on the wgmma tiles). The weight arrives
          // rounded (the op's tensor_core_weight), so B is used as loaded.
#pragma unroll
          for (int mt = 0; mt < L::kMTiles; ++mt)
#pragma unroll
            for (int i = 0; i < 4; ++i) a[mt][i] = to_tf32(__uint_as_float(a[mt][i]));
#pragma unroll
          for (int mt = 0; mt < L::kMTiles; ++mt)
#pragma unroll
            for (int nt = 0; nt < L::kNTiles; ++nt) mma_m16n8k8_tf32(acc[mt][nt], a[mt], bf[nt], acc[mt][nt]);
        } else {
#pragma unroll
          for (int mt = 0; mt < L::kMTiles; ++mt)
#pragma unroll
            for (int nt = 0; nt < L::kNTiles; ++nt) mma_m16n8k16<kMma>(acc[mt][nt], a[mt], bf[nt], acc[mt][nt]);
        }
      }
    }
  }
  cp_async_wait<0>();
  if constexpr (L::kStreamK)  // stream-K: a tile in parts, finished by one of them
    if (p.sk.sk_tiles > 0 && !stream_k_fixup<L>(p, work.j, &acc[0][0][0], tid)) return;
  if (p.splits > 1) {
    store_partial_sums<L>(p, acc, split, m0, k0, tid);
    return;
  }
  if constexpr (L::kWs) {
    if (p.persistent) {
      store_from_registers<L>(p, acc, bias, y, smem, maps, m0, k0, tid);
      return;
    }
  }
  store_through_shared<L>(p, acc, bias, y, smem, m0, k0, tid);
}

// One block per work item (M tile, K tile, split), except wgmma_ws, whose blocks take the
// items in turn (all of them, or the grid's share where it is persistent).
template <class T, MmaType kMma, int kBM, int kBN, MainLoop kLoop, class Index>
__global__ void __launch_bounds__(ImplicitGemmTiling<T, kBM, kBN, kLoop>::kBlockThreads,
                                  ImplicitGemmTiling<T, kBM, kBN, kLoop>::kMinBlocksPerSM)
    conv3x3_implicit_gemm_kernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                                 T* __restrict__ y, const ImplicitGemmParams<Index> p,
                                 const VK_GRID_CONSTANT ImplicitGemmTensorMaps maps) {
  using L = ImplicitGemmTiling<T, kBM, kBN, kLoop>;
  int pipelined = 0;
  if constexpr (L::kWs) {
    // The stages' full mbarriers: a phase per slice, completed by one arrival with the
    // tensor loads' bytes (maps.on; with the pool, one per producer warp, each with its
    // loads' bytes), or by every producer thread's arrival once its cp.async copies landed.
    VK_SHARED(uint64_t, full, [L::kStages]);
    if (threadIdx.x < L::kStages) {
      mbar_init(&full[threadIdx.x], !maps.on ? L::kProducerThreads : p.pool ? L::kPoolIssuers : 1);
      mbar_init_fence();
    }
    __syncthreads();
    const int items = p.sk.items(blockIdx.x);  // gridDim.x == p.sk.grid (the dispatch)
    if (threadIdx.x >= L::kThreads) {
      for (int j = 0; j < items; ++j)
        conv3x3_implicit_gemm_item<T, kMma, kBM, kBN, kLoop, Role::producer>(
            x, w, bias, y, p, implicit_gemm_work<L>(p, j, items), pipelined, full, maps);
    } else {
      // Ping-pong: warpgroup j computes the block's items j, j + 2, ..., counting on the
      // other's slices; cooperative: both compute every item.
      const unsigned group = threadIdx.x / L::kItemThreads;
      for (int j = 0; j < items; ++j) {
        const ImplicitGemmWork<Index> work = implicit_gemm_work<L>(p, j, items);
        if (static_cast<unsigned>(j) % L::kConsumerGroups == group)  // its turn (j, not a count: one register less)
          conv3x3_implicit_gemm_item<T, kMma, kBM, kBN, kLoop, Role::consumer>(x, w, bias, y, p, work, pipelined,
                                                                               full, maps);
        else
          pipelined = L::next_pipelined(pipelined, work.n_tiles);
      }
      // The staged epilogue's last tensor stores: done before the block (and its shared
      // memory) is gone.
      if (L::kStoreStaging && maps.store && threadIdx.x % L::kItemThreads == 0) tma_store_wait();
    }
  } else {
    conv3x3_implicit_gemm_item<T, kMma, kBM, kBN, kLoop, Role::all>(
        x, w, bias, y, p, implicit_gemm_item_work<L>(p, static_cast<int>(blockIdx.x)), pipelined, nullptr, maps);
  }
}

}  // namespace VK_KERNEL_NS
}  // namespace vk
