"""Every benchmark case, as data: shared by the pytest suites and `python -m benchmarks.run`.

A case knows its parameters, its tier ('smoke': CPU, tiny, for CI; 'quick': the GPU
subset for --quick; 'full': the rest of the GPU matrix), a priority (lower runs first,
so a run that hits its time budget drops the least important cases: 0 torch's headline
rows, fp16 channels_last at batch 64 with cuDNN, per layer and for VGG16, so the
baselines are taken before any kernel of ours runs (a fault of ours poisons the CUDA
context for every later case); 0.1 ours on the tensor cores against them (implicit_gemm
per layer, and VGG16 on it with each tile policy); 0.5 implicit_gemm's tile sweep at
batch 64, the measurement benchmarks/tune.py turns into the per-layer tile table (and the
wgmma tiles with K taps inner beside it); 0.55
and 0.6 the headline layers on direct and "auto" (CUDA cores until a table says
otherwise: slow, so after the tensor-core rows), VGG16 on "auto", and the quick pools;
0.75 VGG16 on the run's own tables; 0.9 the
batch-64 pair that measures implicit_gemm's NCHW y (NCHW_Y_PRIORITY), and the batch-64
fp16 layout rows (implicit_gemm's x laid out, against ATen's conversion); 1 the rest of the
matrix; 2 the bias-only variant and the sweeps at batch 1 and 128; 3 torch.compile), and
how to run itself: ``run_case(case) -> row`` returns one result row (a flat dict), or
raises ``SkipCase(reason)``.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import itertools
import os
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from . import peaks, tiles, timing

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
BATCHES = (1, 32, 64, 128)
QUICK_BATCH = 64
LAYOUTS = ("nchw", "cl")          # cl = torch.channels_last (NHWC in memory)
# implicit_gemm's block tiles (VGGKERN_IMPLICIT_GEMM_TILE): the tile sweep times each on
# every layer, fp16 channels_last, so the per-layer tile table is chosen by measurement.
# VGGKERN_BENCH_EXCLUDE_TILES (comma-separated) leaves tiles out: device_run.sh sets it
# for the wgmma tiles when benchmarks/wgmma_probe.py fails.
ALL_IMPLICIT_GEMM_TILES = ("128x64", "128x128", "256x128", "256x64", "wg128x128", "wg256x64", "wg128x256",
                           "ws128x256", "ws128x128")
IMPLICIT_GEMM_TILES = tuple(t for t in ALL_IMPLICIT_GEMM_TILES
                            if t not in os.environ.get("VGGKERN_BENCH_EXCLUDE_TILES", "").split(","))
# The wgmma policies (VGGKERN_IMPLICIT_GEMM_TILE=wgmma | wgmma-wide | wgmma-ws: a wgmma tile per layer
# by K) and the tiles they use: whole networks are timed with them too, so the run that
# first measures the wgmma tiles also measures VGG on them (the per-layer table that
# would make them the default is written from that run, after it).
# implicit_gemm's K order rows (VGGKERN_IMPLICIT_GEMM_K_ORDER=taps_inner) beside the
# default (tap by tap): within 10% of it, either way, on the H200; with the sweep. The
# copies rows (a ws tile by tensor loads against cp.async) go with them.
K_ORDER_PRIORITY = 0.5


def stream_k_by_default(tile: str, n: int, c: int, k: int, h: int, pool: bool) -> bool:
    """Does the plan share this layer's tiles out by stream-K (csrc/common/stream_k.h) on an
    H100/H200's 132 SMs? Then its copies rows also time whole tiles (tma-whole)."""
    import vggkern  # the extension's plan (CPU-only builds have it too)

    return vggkern._C.implicit_gemm_plan(n, c, h, h, k, 2, pool, 132, tile)["sk_tiles"] > 0


def copies_rows_wanted(tile: str, pool: bool = False) -> bool:
    """A ws tile's copies rows (tensor loads against cp.async): where the run times that tile
    and has not turned the tensor loads off (device_run.sh does when their probe fails), or
    (pool) the pooled layers' (=unpooled: when only theirs failed)."""
    knob = os.environ.get("VGGKERN_IMPLICIT_GEMM_TMA")
    return tile in IMPLICIT_GEMM_TILES and knob != "off" and not (pool and knob == "unpooled")
WGMMA_POLICIES = tuple(p for p in tiles.WGMMA_POLICIES  # those whose tiles on VGG's K the run kept
                       if all(tiles.wgmma_policy_tile(k, p) in IMPLICIT_GEMM_TILES
                              for k in (64, 128, 256, 512)))


def wgmma_tf32_tiles(k: int) -> tuple:
    """The wgmma tiles the policies pick for K output channels, those the run kept: what
    fp32 (TF32) is timed on, per layer."""
    return tuple(t for t in tiles.wgmma_policy_tiles(k) if t in IMPLICIT_GEMM_TILES)


# VGG16 (config D) conv layers: name, C, K, H=W, followed by the 2x2 max-pool.
VGG16_CONVS = [
    ("conv1_1", 3, 64, 224, False), ("conv1_2", 64, 64, 224, True),
    ("conv2_1", 64, 128, 112, False), ("conv2_2", 128, 128, 112, True),
    ("conv3_1", 128, 256, 56, False), ("conv3_2", 256, 256, 56, False), ("conv3_3", 256, 256, 56, True),
    ("conv4_1", 256, 512, 28, False), ("conv4_2", 512, 512, 28, False), ("conv4_3", 512, 512, 28, True),
    ("conv5_1", 512, 512, 14, False), ("conv5_2", 512, 512, 14, False), ("conv5_3", 512, 512, 14, True),
]
# VGG19 (config E) adds conv3_4, conv4_4, conv5_4: shapes VGG16 already has (C=K), so
# each is timed once, under its shared shape, and named in that shape's label.
VGG19_EXTRA = [("conv3_4", 256, 256, 56, True), ("conv4_4", 512, 512, 28, True), ("conv5_4", 512, 512, 14, True)]


@dataclass(frozen=True)
class LayerShape:
    C: int
    K: int
    H: int
    names: tuple          # every VGG16/VGG19 layer with this shape
    pool: bool            # some layer of this shape is followed by a max-pool

    @property
    def label(self):
        return "+".join(self.names)

    @property
    def key(self):
        return f"C{self.C}K{self.K}H{self.H}"

    @property
    def fused(self):
        """The epilogue the layer runs in VGG: relu_pool where it pools, else relu."""
        return "relu_pool" if self.pool else "relu"


def layer_shapes():
    shapes = {}
    for name, c, k, h, pool in VGG16_CONVS + VGG19_EXTRA:
        if (c, k, h) in shapes:
            s = shapes[(c, k, h)]
            shapes[(c, k, h)] = LayerShape(c, k, h, s.names + (name,), s.pool or pool)
        else:
            shapes[(c, k, h)] = LayerShape(c, k, h, (name,), pool)
    return list(shapes.values())


LAYER_SHAPES = layer_shapes()
POOL_INPUTS = [(s.K, s.H) for s in LAYER_SHAPES if s.pool]     # (C, H) of the five pools
CONV_INPUTS = sorted({(s.C, s.H) for s in LAYER_SHAPES}, key=lambda ch: (-ch[1], ch[0]))  # (C, H) of the 9 x's


class SkipCase(Exception):
    """This case cannot run here; the message says why."""


# A row of ours also says whether its result is right (``accuracy_ok``): a fast kernel that
# computes garbage is a failure, not a result. A gate against wrong results, not the test
# of our accuracy (tests/ holds that, against float64): its error against torch in fp32
# without TF32 (conv, network), or equality with torch's result (maxpool, layout).
# A conv row is held to two bounds, by the arithmetic that ran (conv_err_kind): its error
# in norm, ||y - ref|| / ||ref||, and at its worst element, max|y - ref| / max|ref|. Right
# results are the sums rounded to the dtype: fp16 2.1e-4 (2.7e-4 at the worst element),
# bf16 1.7e-3 (2.2e-3), TF32 3.0e-4 (3.1e-4), fp32 on the CUDA cores at most 3.3e-6 (Winograd
# F(4x4)): a95939d's H200 rows of every algorithm, and the same model of them on the CPU
# (rounded exact sums at conv3_2, conv4_2 and conv5_1's shapes). A wrong kernel is ~1 off,
# but one whose fault is local can be off by little in norm: one 128 x 256 tile of conv3_2
# at batch 64 missing a third of its K slices is 1.3e-2 off in norm and 0.44 at its worst
# element, so the bounds sit 4-30x above the right results' errors, not at 5e-2 (fp16's
# under bf16's rounding: a bf16 result passed off as fp16 fails).
REL_ERR_BOUND = {"fp32": 1e-4, "tf32": 3e-3, "fp16": 1e-3, "bf16": 1e-2}
MAX_ERR_BOUND = {"fp32": 1e-3, "tf32": 5e-3, "fp16": 2e-3, "bf16": 2e-2}
# A network of ours: within NET_ERR_K x torch's own error at the dtype (or NET_ERR_FLOOR).
# Calibrated on the H200's 101 network rows of ours (benchmarks/results, 2026-12-04): the
# right ones 0.63-1.09x torch's error (batch 1 the widest), the one wrong kernel (TF32 on
# wgmma with x truncated, 9f429b0) 5.2x; 4 before, which a 3x bias would have passed.
NET_ERR_K = 2
NET_ERR_FLOOR = 1e-3


def conv_err_kind(dtype: str, algo_ran: str) -> str:
    """The arithmetic a conv row ran, for its bounds: fp32 on the CUDA cores, fp32 on the
    tensor cores (TF32: implicit_gemm), fp16 or bf16."""
    return "tf32" if dtype == "fp32" and algo_ran == "implicit_gemm" else dtype


def round_tf32(t):
    """float32 t rounded to TF32 as cvt.rna.tf32.f32 does (10 mantissa bits, to nearest,
    ties away from zero); Inf and NaN unchanged."""
    bits = t.contiguous().view(torch.int32)
    rounded = ((bits + 0x1000) & ~0x1FFF).view(torch.float32)
    return torch.where(t.isfinite(), rounded, t)


def tf32_input_error(y, x, w, b, relu: bool, pool: bool) -> float:
    """A TF32 row's first image against the float64 conv of its inputs rounded to TF32:
    what is left is the sums' own error, ~1e-7 for fp32 sums, where x truncated to TF32
    instead of rounded (wgmma dropping its low bits: 9f429b0) leaves ~5e-4 (a CPU model of
    conv4-like shapes), which the bounds above, against the unrounded inputs, cannot tell
    from right. Recorded (not yet a gate: no GPU has measured it)."""
    x1 = round_tf32(x[:1].float()).double()
    ref = F.conv2d(x1, round_tf32(w.float()).double(), None if b is None else b.double(), padding=1)
    ref = F.max_pool2d(F.relu(ref), 2, 2) if pool else (F.relu(ref) if relu else ref)
    d = y[:1].double() - ref
    return float(d.norm() / ref.norm().clamp_min(1e-300))


def conv_errors(y, ref, dtype: str, algo_ran: str) -> dict:
    """A conv row's errors against ref (torch in fp32 without TF32) and its verdict. NaN
    anywhere never passes (a NaN error fails both comparisons)."""
    d = (y.float() - ref).abs()
    norm = float(d.norm() / ref.norm().clamp_min(1e-30))
    worst = float(d.max() / ref.abs().max().clamp_min(1e-30)) if d.numel() else 0.0
    kind = conv_err_kind(dtype, algo_ran)
    return {"rel_err_vs_fp32": norm, "max_err_vs_fp32": worst,
            "accuracy_ok": norm <= REL_ERR_BOUND[kind] and worst <= MAX_ERR_BOUND[kind]}


@dataclass(frozen=True)
class Case:
    group: str                    # conv | maxpool | network
    impl: str                     # torch | vggkern
    params: tuple                 # (key, value) pairs, ordered
    tier: str                     # smoke | quick | full
    priority: float = 1
    skip_reason: str | None = field(default=None, compare=False)

    @property
    def cost_s(self):
        """Rough seconds a case needs; a case is not started when less is left."""
        if self.p.get("mode") == "compile":
            return 90.0
        return 8.0 if self.group == "network" else 2.0

    @property
    def p(self):
        return dict(self.params)

    @property
    def id(self):
        return "-".join([self.group, self.impl] + [str(v) for _, v in self.params])


def _vggkern():
    try:
        import vggkern
        return vggkern
    except Exception:  # noqa: BLE001
        return None


@functools.lru_cache(None)
def conv_algorithms():
    """Our conv algorithms (names), or None while vggkern.conv3x3 does not exist."""
    vk = _vggkern()
    if vk is None or not hasattr(vk, "conv3x3"):
        return None
    names = []
    if hasattr(vk, "algorithms"):
        try:
            algos = vk.algorithms()
        except TypeError:
            algos = vk.algorithms("conv3x3")
        if isinstance(algos, dict):
            algos = list(algos)
        for a in algos:
            names.append(a if isinstance(a, str) else getattr(a, "name", str(a)))
    if "auto" not in names:
        names.insert(0, "auto")
    return tuple(names)


def is_winograd(algo: str | None) -> bool:
    return bool(algo) and "winograd" in algo.lower()


# The weight as the modules hold it, prepared once, by algo: conv3x3 takes it in place of
# the raw (K, C, 3, 3) weight and skips its per-call transform (or layout).
PREPARED_WEIGHT = {
    "winograd_f2x2": lambda vk, w: vk.winograd_weight(w, 2),
    "winograd_f4x4": lambda vk, w: vk.winograd_weight(w, 4),
    "implicit_gemm": lambda vk, w: vk.tensor_core_weight(w),
}


def _tensor_core_input():
    """torch.ops.vggkern._tensor_core_input (implicit_gemm's layout of x), or None."""
    vk = _vggkern()
    return getattr(torch.ops.vggkern, "_tensor_core_input", None) if vk is not None else None


# The batch-64 pair that measures implicit_gemm's NCHW y (written by the epilogue, or
# converted after: the nchw_y rows): after the headline rows, the tile sweep and VGG16 on
# the run's own tables, before the rest of the matrix.
NCHW_Y_PRIORITY = 0.9
# VGG16 and VGG19 in fp16 channels_last at the other batches, VGG16 in bf16 at batch 64
# (torch's rows and our "auto"'s): right after the pair above.
NETWORK_PRIORITY = 0.95
# torch.compile's VGG16 in fp16 channels_last at batch 64 (~90 s with its compilation):
# right after those, before the rest of the matrix.
COMPILE_HEADLINE_PRIORITY = 0.96
# Our headline rows' priorities (torch's are 0: its baselines first): the tensor cores
# right after them, the CUDA-core "direct" and "auto" (until a tuned table says otherwise,
# auto runs direct) after the tile sweep (0.5), before VGG16 on the run's tables (0.75),
# which tune.py makes from the direct rows too.
HEADLINE_OURS = {"implicit_gemm": 0.1, "direct": 0.55, "auto": 0.6}

NO_CONV_REASON = ("vggkern.conv3x3 does not exist in this build yet (the conv op is being written "
                  "in parallel): our conv rows are skipped; torch baselines still run")
NO_NET_REASON = "vggkern.{net} does not exist in this build yet: only torchvision baselines run"
NO_LAYOUT_REASON = "torch.ops.vggkern._tensor_core_input does not exist in this build: only torch's conversion runs"


def build_cases():
    cases = []
    algos = conv_algorithms()
    vk = _vggkern()

    # ---------------- CPU smoke: one tiny case per op, CI keeps the suite alive ----------
    cases.append(Case("maxpool", "torch", (("N", 1), ("C", 8), ("H", 16), ("dtype", "fp32"), ("layout", "nchw")),
                      "smoke", 0))
    cases.append(Case("maxpool", "vggkern", (("N", 1), ("C", 8), ("H", 16), ("dtype", "fp32"), ("layout", "nchw")),
                      "smoke", 0))
    smoke_conv = (("layer", "smoke"), ("N", 1), ("C", 8), ("K", 8), ("H", 8), ("dtype", "fp32"), ("layout", "nchw"),
                  ("variant", "relu_pool"))
    cases.append(Case("conv", "torch", smoke_conv + (("math", "ieee"), ("algo", "cudnn")), "smoke", 0))
    if algos is None:
        cases.append(Case("conv", "vggkern", smoke_conv + (("math", "-"), ("algo", "n/a")), "smoke", 0, NO_CONV_REASON))
    else:
        for a in algos:
            cases.append(Case("conv", "vggkern", smoke_conv + (("math", "-"), ("algo", a)), "smoke", 0))
        for a in algos:  # ... and with the weight prepared once (the path the modules take)
            if a in PREPARED_WEIGHT:
                cases.append(Case("conv", "vggkern", smoke_conv + (("math", "-"), ("algo", a), ("weight", "prepared")),
                                  "smoke", 0))
        if "implicit_gemm" in algos:  # ... and NCHW's y converted after the kernel (below)
            cases.append(Case("conv", "vggkern", smoke_conv + (("math", "-"), ("algo", "implicit_gemm"),
                                                               ("nchw_y", "convert")), "smoke", 0))
    smoke_layout = (("N", 1), ("C", 3), ("H", 8), ("dtype", "fp32"), ("layout", "nchw"))
    cases.append(Case("layout", "torch", smoke_layout, "smoke", 0))
    cases.append(Case("layout", "vggkern", smoke_layout, "smoke", 0, None if _tensor_core_input() else NO_LAYOUT_REASON))
    smoke_net = (("net", "vgg16"), ("N", 1), ("res", 32), ("dtype", "fp32"), ("math", "ieee"), ("layout", "nchw"),
                 ("mode", "eager"))
    cases.append(Case("network", "torch", smoke_net, "smoke", 0))
    cases.append(Case("network", "vggkern", smoke_net + (("algo", "auto"),), "smoke", 0,
                      None if vk is not None and hasattr(vk, "vgg16") else NO_NET_REASON.format(net="vgg16")))

    # ---------------- GPU: per-layer convs -------------------------------------------------
    for s, n, dt, layout in itertools.product(LAYER_SHAPES, BATCHES, DTYPES, LAYOUTS):
        variants = ["relu"] + (["relu_pool"] if s.pool else []) + ["conv"]
        for variant in variants:
            quick = n == QUICK_BATCH and dt in ("fp32", "fp16") and variant != "conv"
            tier = "quick" if quick else "full"
            # Priority 0 (first in a time-limited run): the headline problem, fp16
            # channels_last, against cuDNN, with our default and tensor-core algorithms.
            headline = quick and dt == "fp16" and layout == "cl"
            prio = (0 if headline else 1) if quick else (2 if variant == "conv" else 1)
            base = (("layer", s.label), ("N", n), ("C", s.C), ("K", s.K), ("H", s.H), ("dtype", dt),
                    ("layout", layout), ("variant", variant))
            for math in (("tf32", "ieee") if dt == "fp32" else ("-",)):
                cases.append(Case("conv", "torch", base + (("math", math), ("algo", "cudnn")), tier, prio))
            if algos is not None:
                for a in algos:
                    # direct too: tune.py's auto table weighs implicit_gemm against it, for
                    # the network row on this run's own tables (below).
                    p_ours = HEADLINE_OURS.get(a, 1) if headline else max(prio, 1)
                    if (quick and a == "implicit_gemm" and dt == "fp16" and layout == "nchw"
                            and variant == s.fused):
                        p_ours = NCHW_Y_PRIORITY  # beside its converted-y twin (below)
                    cases.append(Case("conv", "vggkern", base + (("math", "-"), ("algo", a)), tier, p_ours))
    if algos is None:
        for tier in ("quick", "full"):
            cases.append(Case("conv", "vggkern", (("layer", "all"), ("algo", "n/a")), tier, 0, NO_CONV_REASON))
    elif "implicit_gemm" in algos:  # the tile sweep: batch 64 right after the headline rows
        for s, n in itertools.product(LAYER_SHAPES, BATCHES):
            if n not in (1, QUICK_BATCH, 128):
                continue
            base = (("layer", s.label), ("N", n), ("C", s.C), ("K", s.K), ("H", s.H), ("dtype", "fp16"),
                    ("layout", "cl"), ("variant", s.fused), ("math", "-"),
                    ("algo", "implicit_gemm"))
            for tile in IMPLICIT_GEMM_TILES:
                cases.append(Case("conv", "vggkern", base + (("tile", tile),),
                                  "quick" if n == QUICK_BATCH else "full", 0.5 if n == QUICK_BATCH else 2))
            # K order: the wgmma tiles at batch 64 again, beside the sweep's default rows (tap
            # by tap), with K channel slice by channel slice, the 9 taps of each in turn
            # (VGGKERN_IMPLICIT_GEMM_K_ORDER=taps_inner), where C allows it (a multiple of 32
            # halves). Kept out of "best ours" and of tune.py's table.
            if n == QUICK_BATCH and s.C % 32 == 0:
                for tile in IMPLICIT_GEMM_TILES:
                    if tiles.is_wgmma(tile):
                        cases.append(Case("conv", "vggkern", base + (("tile", tile), ("k_order", "taps_inner")),
                                          "full", K_ORDER_PRIORITY))
                # The copies of the ws tile the wgmma-ws policy gives the layer (ws128x256 where
                # K >= 256, ws128x128 where K = 128): tensor loads (VGGKERN_IMPLICIT_GEMM_TMA=on)
                # and cp.async (off), conv + ReLU (the layers conv3_2, conv4_2, conv5_1 and
                # conv5_2 are these shapes unpooled) and, where the shape pools, conv + ReLU +
                # pool (the tensor loads' slab order); and tensor loads with y stored in pairs
                # from the accumulators (tma-pairs: VGGKERN_IMPLICIT_GEMM_TMA_STORE=off) against
                # the default's tensor stores from the epilogue's staging; where the plan shares
                # the tiles out by stream-K (conv5 on ws128x256: 196 tiles on 132 SMs), tensor
                # loads on whole tiles (tma-whole: VGGKERN_IMPLICIT_GEMM_STREAM_K=off). Kept out
                # of "best ours" and of tune.py's table; their own table in the report.
                ws = tiles.wgmma_policy_tile(s.K, "wgmma-ws")
                if ws.startswith("ws"):
                    for variant in (v for v in dict.fromkeys(("relu", s.fused))
                                    if copies_rows_wanted(ws, pool=v == "relu_pool")):
                        row = tuple((k_, variant if k_ == "variant" else v) for k_, v in base)
                        whole = stream_k_by_default(ws, n, s.C, s.K, s.H, variant == "relu_pool")
                        for copies in ("tma", "tma-pairs", "cp_async") + (("tma-whole",) if whole else ()):
                            cases.append(Case("conv", "vggkern", row + (("tile", ws), ("copies", copies)),
                                              "full", K_ORDER_PRIORITY))
            # fp32 as TF32 (torch's TF32 on) on the rule's mma.sync tile and the wgmma tiles
            # the policies give the layer: tune.py's fp32 entries (without one, fp32 takes
            # the fp16 entry's tile).
            fp32 = dict(base, dtype="fp32", math="tf32")
            for tile in (tiles.rule_tile(s.K),) + wgmma_tf32_tiles(s.K):
                if tile in IMPLICIT_GEMM_TILES:
                    cases.append(Case("conv", "vggkern", tuple(fp32.items()) + (("tile", tile),), "full",
                                      1 if n == QUICK_BATCH else 2))

    # ---------------- GPU: the weight prepared once -----------------------------------------
    # What preparing saves per call (README's tensor_core_weight prediction: ~40 us of a
    # VGG16 fp32 batch-1 forward): each layer with the weight given as the modules hold it
    # (Winograd's U, implicit_gemm's laid-out weight), beside the raw-weight rows above, at
    # batch 1 (where the per-call transform weighs most) and 64, channels_last. Only where
    # the raw call transforms the weight: implicit_gemm in fp32 (TF32 rounding) or with C
    # not a multiple of 8 (conv1_1); a 16-bit channels_last weight with C % 8 == 0 is used
    # as it is. Kept out of "best ours" (cuDNN is timed with the raw weight) and reported
    # in a table of their own (benchmarks/report.py).
    if algos is not None:
        for s, n, dt in itertools.product(LAYER_SHAPES, (1, QUICK_BATCH), ("fp32", "fp16")):
            base = (("layer", s.label), ("N", n), ("C", s.C), ("K", s.K), ("H", s.H), ("dtype", dt),
                    ("layout", "cl"), ("variant", s.fused), ("math", "-"))
            for a in algos:
                if a in PREPARED_WEIGHT and (a != "implicit_gemm" or dt == "fp32" or s.C % 8):
                    cases.append(Case("conv", "vggkern", base + (("algo", a), ("weight", "prepared")), "full",
                                      1.5 if n == 1 else 2))

    # ---------------- GPU: NCHW y, written by the epilogue or converted -----------------------
    # implicit_gemm on an NCHW x writes y NCHW from its epilogue (the default rows above);
    # these rows time the earlier path beside them, y written NHWC and converted after
    # (VGGKERN_IMPLICIT_GEMM_NCHW_Y=convert), fp16 at batches 1 and 64: the measurement the
    # default rests on. Predicted by counting: the conversion's read and write of y saved,
    # and one launch (at batch 64, conv2_1's 206 MB y: ~0.12 ms at 3.3 TB/s, against ~0.24
    # ms for the conv at 50% of the fp16 tensor peak). At batch 64 they and their default
    # twins run before the rest of the matrix (NCHW_Y_PRIORITY), so that the first GPU run
    # measures the choice.
    # Kept out of "best ours"; reported in a table of their own (benchmarks/report.py).
    if algos is not None and "implicit_gemm" in algos:
        for s, n in itertools.product(LAYER_SHAPES, (1, QUICK_BATCH)):
            base = (("layer", s.label), ("N", n), ("C", s.C), ("K", s.K), ("H", s.H), ("dtype", "fp16"),
                    ("layout", "nchw"), ("variant", s.fused), ("math", "-"),
                    ("algo", "implicit_gemm"))
            cases.append(Case("conv", "vggkern", base + (("nchw_y", "convert"),), "full",
                              1.5 if n == 1 else NCHW_Y_PRIORITY))

    # ---------------- GPU: x laid out for implicit_gemm ---------------------------------------
    # implicit_gemm reads x channels_last with C padded to a multiple of 8; an NCHW x (or
    # VGG's C = 3 input, channels_last) is laid out per call by our kernel
    # (kernels/tensor_core_input.cuh: whole sectors both ways), where the op used ATen's
    # x.contiguous(channels_last) (from NCHW: each lane of a warp reads another plane) and,
    # for a padded C, a zero fill and a copy into a strided view (the torch rows time that
    # path). Memory-bound: GB/s against the HBM peak. Every VGG layer's x at batches 1 and
    # 64, fp16 and fp32; at batch 64 fp16 right after the headline rows (NCHW_Y_PRIORITY):
    # beside the NCHW conv rows, they tell how much of an NCHW call the layout is.
    for (c, h), n, dt in itertools.product(CONV_INPUTS, (1, QUICK_BATCH), ("fp16", "fp32")):
        for layout in ("nchw",) + (("cl",) if c % 8 else ()):
            prio = NCHW_Y_PRIORITY if n == QUICK_BATCH and dt == "fp16" else (1.5 if n == QUICK_BATCH else 2)
            for impl in ("torch", "vggkern"):
                cases.append(Case("layout", impl, (("N", n), ("C", c), ("H", h), ("dtype", dt), ("layout", layout)),
                                  "full", prio, None if impl == "torch" or _tensor_core_input() else NO_LAYOUT_REASON))

    # ---------------- GPU: maxpool2x2 ------------------------------------------------------
    for (c, h), n, dt, layout in itertools.product(POOL_INPUTS, BATCHES, DTYPES, LAYOUTS):
        quick = n == QUICK_BATCH and dt in ("fp32", "fp16")
        for impl in ("torch", "vggkern"):
            cases.append(Case("maxpool", impl, (("N", n), ("C", c), ("H", h), ("dtype", dt), ("layout", layout)),
                              "quick" if quick else "full", HEADLINE_OURS["auto"] if quick else 1))

    # ---------------- GPU: whole networks --------------------------------------------------
    for net, n, (dt, math) in itertools.product(("vgg16", "vgg19"), BATCHES,
                                                 (("fp16", "-"), ("bf16", "-"), ("fp32", "tf32"), ("fp32", "ieee"))):
        base = (("net", net), ("N", n), ("res", 224), ("dtype", dt), ("math", math))
        quick = net == "vgg16" and n == QUICK_BATCH and dt in ("fp16", "fp32")
        tier, prio = ("quick", 0) if quick else ("full", 1)
        prio_of = (lambda layout, dt=dt, prio=prio: prio if dt == "fp16" and layout == "cl" else max(prio, 1))
        # The headline networks at every batch (fp16 channels_last, torch's and our "auto"'s
        # eager and graph rows), and VGG16 in bf16 at batch 64 (auto there takes fp16's
        # measurements where bf16 has none): right after the batch-64 headline rows, before
        # the rest of the matrix, which a full run's deadline does not reach (40 such rows
        # took 43 s on the H200).
        wide = (NETWORK_PRIORITY if not quick and (dt == "fp16" or (dt == "bf16" and net == "vgg16" and n == QUICK_BATCH))
                else None)
        for layout, mode in (("nchw", "eager"), ("cl", "eager"), ("cl", "graph")):
            p = wide if wide is not None and layout == "cl" else prio_of(layout)
            cases.append(Case("network", "torch", base + (("layout", layout), ("mode", mode)), tier, p))
        # torch.compile: compiles per shape (tens of seconds each): last in line, but for the
        # headline's (VGG16 fp16 at batch 64), which comes right after the network rows above
        # (at 3 it was never reached: every full run so far ran out of time before it).
        if net == "vgg16" and math != "ieee":
            headline = quick and dt == "fp16"
            cases.append(Case("network", "torch", base + (("layout", "cl"), ("mode", "compile")),
                              "quick" if headline else "full", COMPILE_HEADLINE_PRIORITY if headline else 3))
        ours = vk is not None and hasattr(vk, net)
        # Our algorithms for the whole net: "auto", and the tensor cores where they apply.
        net_algos = ("auto",) + (("implicit_gemm",) if algos and "implicit_gemm" in algos and math != "ieee" else ())
        for algo, (layout, mode) in itertools.product(net_algos, (("nchw", "eager"), ("cl", "eager"), ("cl", "graph"))):
            p = wide if wide is not None and layout == "cl" and algo == "auto" else _ours_prio(prio_of(layout), algo)
            cases.append(Case("network", "vggkern", base + (("layout", layout), ("mode", mode), ("algo", algo)), tier,
                              p, None if ours else NO_NET_REASON.format(net=net)))
        # "auto" on the tables tune.py makes from this run's rows so far (set at run time:
        # vggkern.set_tuned_tables): what a build tuned from this run would run, measured in
        # the same session. Right after the rows it is made from (the headline layers,
        # ours and direct, and the batch-64 tile sweep), before the rest of the matrix.
        if quick and dt == "fp16" and algos and "implicit_gemm" in algos:
            for mode in ("eager", "graph"):
                cases.append(Case("network", "vggkern", base + (("layout", "cl"), ("mode", mode), ("algo", "auto"),
                                                                ("tables", "run")),
                                  tier, 0.75, None if ours else NO_NET_REASON.format(net=net)))
        # On wgmma (a policy, like a forced tile); fp32 as TF32 only for VGG16 at the quick
        # batch (a network row costs seconds; the per-layer fp32 sweep covers the layers).
        if "implicit_gemm" in net_algos and (dt != "fp32" or (net == "vgg16" and n == QUICK_BATCH)):
            for policy, mode in itertools.product(WGMMA_POLICIES, ("eager", "graph")):
                cases.append(Case("network", "vggkern", base + (("layout", "cl"), ("mode", mode),
                                                                ("algo", "implicit_gemm"), ("tile", policy)),
                                  tier, _ours_prio(prio_of("cl"), "implicit_gemm"), None if ours else NO_NET_REASON.format(net=net)))
        # TF32 chains off (FusedSequential.tf32_chain = False: every TF32 conv rounds its own x
        # in its main loop), beside "auto"'s default rows with them on: what the chain saves.
        if dt == "fp32" and math == "tf32" and net == "vgg16" and n == QUICK_BATCH:
            for mode in ("eager", "graph"):
                cases.append(Case("network", "vggkern", base + (("layout", "cl"), ("mode", mode), ("algo", "auto"),
                                                                ("tf32_chain", "no-chain")),
                                  tier, _ours_prio(prio_of("cl"), "auto"), None if ours else NO_NET_REASON.format(net=net)))
    return cases


def _ours_prio(torch_prio: float, algo: str) -> float:
    """A network row of ours: right after torch's headline rows when it is a headline row
    itself (HEADLINE_OURS orders our algorithms), else with torch's row of the same shape."""
    return HEADLINE_OURS[algo] if torch_prio == 0 else torch_prio


# ----------------------------------------------------------------------------------------
# Running a case
# ----------------------------------------------------------------------------------------

@contextlib.contextmanager
def fp32_math(math: str):
    """math='tf32' lets cuDNN/cuBLAS use TF32 for fp32; 'ieee' forbids it; '-' leaves it.
    Through the legacy setters (cudnn.allow_tf32, set_float32_matmul_precision), which
    keep the legacy and the fp32_precision views in step: setting fp32_precision alone
    (torch >= 2.9) leaves the legacy getters raising "a mix of the legacy and new APIs"
    where torch (or a library) reads them inside the block."""
    if math not in ("tf32", "ieee"):
        yield
        return
    old = (torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision())
    torch.backends.cudnn.allow_tf32 = math == "tf32"
    torch.set_float32_matmul_precision("high" if math == "tf32" else "highest")
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = old[0]
        torch.set_float32_matmul_precision(old[1])


@contextlib.contextmanager
def _setting(obj, name: str, value):
    """obj.name = value for the block, restored after."""
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


@contextlib.contextmanager
def _reference_math():
    """How the accuracy references are computed: fp32 without TF32, and without cuDNN's
    autotuning (a second or so per shape, for a reference that is not timed)."""
    with fp32_math("ieee"), _setting(torch.backends.cudnn, "benchmark", False):
        yield


def _fmt(t: torch.Tensor, layout: str) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last) if layout == "cl" else t.contiguous()


def _rand(shape, dtype, device, layout, scale=1.0):
    return _fmt((torch.randn(shape, device=device, dtype=torch.float32) * scale).to(dtype), layout)


def _math_for(case: Case, algo_ran: str | None = None) -> str:
    """Which peak applies (peaks.math_of): for our conv rows, by the algorithm that ran
    ("auto" picks implicit_gemm, TF32 math, for fp32 where TF32 is allowed)."""
    return peaks.math_of({**case.p, "impl": case.impl, "algo_ran": algo_ran})


def conv_flops(n, c, k, h, w=None):
    """Direct-convolution FLOPs of a 3x3, pad-1 conv: 2*N*K*C*9*H*W."""
    return 2 * n * k * c * 9 * h * (w if w is not None else h)


def network_flops(net: str, res: int = 224) -> int:
    """FLOPs of one image through VGG16/19's convs and classifier (bias/ReLU/pool not counted)."""
    layers = VGG16_CONVS + (VGG19_EXTRA if net == "vgg19" else [])
    conv = sum(conv_flops(1, c, k, h * res // 224) for _, c, k, h, _ in layers)
    return conv + 2 * (512 * 7 * 7 * 4096 + 4096 * 4096 + 4096 * 1000)


def _measure(fn, make_inputs, device, cfg):
    if device == "cuda":
        return timing.time_gpu(fn, make_inputs, repeats=cfg["repeats"])
    return timing.time_cpu(fn, make_inputs, repeats=cfg.get("cpu_repeats", 3))


def _conv_case(case: Case, device: str, cfg: dict) -> dict:
    p = case.p
    n, c, k, h, dt, layout, variant = p["N"], p["C"], p["K"], p["H"], DTYPES[p["dtype"]], p["layout"], p["variant"]
    relu, pool = variant in ("relu", "relu_pool"), variant == "relu_pool"
    # Weights: a pool of distinct (weight, bias) pairs shared round-robin by the rotated
    # input sets (activations rotate over >= 256 MiB): a pair per set, up to 256 MiB of
    # weights (at least 16 pairs), so a weight's next use comes after >= 256 MiB of other
    # traffic, past L2 (with 16 pairs, batch 1's conv3 and conv4 reused a weight after
    # 23-45 MB of traffic, under the H100's 50 MB of L2).
    # weight="prepared": each pooled weight prepared once, outside the timing (as a module
    # does on its first call), and the call given that.
    wpool, raw = [], []
    counter = itertools.count()
    prepare = None
    if p.get("weight") == "prepared":
        vk = _vggkern()
        if vk is None or p.get("algo") not in PREPARED_WEIGHT:
            raise SkipCase(f"no prepared weight for algo {p.get('algo')!r}")
        prepare = functools.partial(PREPARED_WEIGHT[p["algo"]], vk)

    w_pairs = max(16, timing.ROTATE_BYTES // (k * c * 9 * torch.empty((), dtype=dt).element_size()))

    def make_inputs():
        i = next(counter)
        if len(wpool) < w_pairs:
            w = _rand((k, c, 3, 3), dt, device, layout, scale=(2.0 / (9 * c)) ** 0.5)
            raw.append(w)
            wpool.append((prepare(w) if prepare else w, _rand((k,), dt, device, "nchw", scale=0.1)))
        w, b = wpool[i % len(wpool)]
        return (_rand((n, c, h, h), dt, device, layout), w, b)

    if case.impl == "torch":
        def fn(a):
            y = F.conv2d(a[0], a[1], a[2], padding=1)
            if relu:
                y = F.relu(y, inplace=True)
            if pool:
                y = F.max_pool2d(y, 2, 2)
            return y
    else:
        vk = _vggkern()
        if vk is None or not hasattr(vk, "conv3x3"):
            raise SkipCase(NO_CONV_REASON)
        algo = p["algo"]

        def fn(a):
            return vk.conv3x3(a[0], a[1], a[2], relu=relu, pool=pool, algo=algo)

    extra = {}
    with fp32_math(p.get("math", "-")), env_var("VGGKERN_IMPLICIT_GEMM_TILE", p.get("tile")), \
            env_var("VGGKERN_IMPLICIT_GEMM_NCHW_Y", p.get("nchw_y")), \
            env_var("VGGKERN_IMPLICIT_GEMM_K_ORDER", p.get("k_order")), \
            env_var("VGGKERN_IMPLICIT_GEMM_TMA", {"tma": "on", "tma-pairs": "on", "tma-whole": "on",
                                                  "cp_async": "off"}.get(p.get("copies"))), \
            env_var("VGGKERN_IMPLICIT_GEMM_TMA_STORE", {"tma-pairs": "off"}.get(p.get("copies"))), \
            env_var("VGGKERN_IMPLICIT_GEMM_STREAM_K", {"tma-whole": "off"}.get(p.get("copies"))):
        probe = make_inputs()
        try:
            y = fn(probe)
        except (ValueError, NotImplementedError) as e:  # a refusal; anything else (a fault) fails the case
            if case.impl == "torch":
                raise
            raise SkipCase(f"algo {p['algo']!r} does not run this case: {type(e).__name__}: {str(e)[:200]}") from e
        if case.impl == "vggkern":
            # Accuracy vs torch in fp32 without TF32: recorded next to the time, and the gate
            # on a wrong result (accuracy_ok, below).
            with _reference_math():
                x32, w32, b32 = (t.float() for t in (probe[0], raw[0], probe[2]))  # the probe is the first
                ref = F.conv2d(x32, w32, b32, padding=1)
                ref = F.max_pool2d(F.relu(ref), 2, 2) if pool else (F.relu(ref) if relu else ref)
            extra["algo_ran"] = vk.resolve_algo(probe[0], k, pool=pool, algo=algo)  # what "auto" ran
            extra.update(conv_errors(y, ref, p["dtype"], extra["algo_ran"]))
            if conv_err_kind(p["dtype"], extra["algo_ran"]) == "tf32":
                extra["rel_err_vs_tf32_inputs"] = tf32_input_error(y, x32, w32, b32, relu, pool)
            if str(p.get("tile", "")).startswith("ws"):  # its copies and y stores: tensor ones, or why not
                last = vk._C.implicit_gemm_last_copies()
                if last is not None and last["tile"] == p["tile"]:
                    extra["copies_ran"] = last["path"] + (f" ({last['reason']})" if last["reason"] else "")
                    extra["stores_ran"] = last["stores"] + (f" ({last['stores_reason']})" if last["stores_reason"] else "")
                    extra["stream_k_ran"] = last["stream_k"] or "whole tiles"
        del y
        t = _measure(fn, make_inputs, device, cfg)
    flops = conv_flops(n, c, k, h)
    extra.update(flops=flops, flops_kind="effective (direct-conv FLOPs)" if is_winograd(p.get("algo")) else "direct",
                 math_peak=_math_for(case, extra.get("algo_ran")))
    return _finish(case, device, t, extra, tflop=flops / 1e12)


def _maxpool_case(case: Case, device: str, cfg: dict) -> dict:
    p = case.p
    n, c, h, dt, layout = p["N"], p["C"], p["H"], DTYPES[p["dtype"]], p["layout"]
    def torch_fn(a):
        return F.max_pool2d(a, 2, 2)

    fn = torch_fn
    if case.impl != "torch":
        vk = _vggkern()
        if vk is None or not hasattr(vk, "maxpool2x2"):
            raise SkipCase("vggkern.maxpool2x2 is not importable")
        fn = vk.maxpool2x2

    return _bandwidth_case(case, device, cfg, fn, torch_fn, (n, c, h, h), dt, layout,
                           elements_moved=n * c * h * h + n * c * (h // 2) * (h // 2))


def _bandwidth_case(case, device, cfg, fn, torch_fn, shape, dt, layout, elements_moved):
    """A memory-bound case (maxpool, layout): fn timed on x of `shape` rotated over memory,
    reported in GB/s of the elements it reads and writes, against the HBM peak. Ours must
    give torch_fn's result to the bit (accuracy_ok: both only move and compare values)."""
    def make_inputs():
        return _rand(shape, dt, device, layout)

    extra = {}
    if case.impl != "torch":
        probe = make_inputs()
        y, want = fn(probe), torch_fn(probe)
        extra["accuracy_ok"] = y.shape == want.shape and y.stride() == want.stride() and torch.equal(y, want)
        del y, want, probe
    t = _measure(fn, make_inputs, device, cfg)
    nbytes = elements_moved * torch.empty((), dtype=dt).element_size()
    extra.update({"bytes": nbytes, "math_peak": "bw"})
    return _finish(case, device, t, extra, gbytes=nbytes / 1e9)


def _layout_case(case: Case, device: str, cfg: dict) -> dict:
    """x (N, C, H, H) -> (N, Cp, H, H) channels_last, zeros past C: ours, or what the op did
    with ATen before it (a channels_last copy; for a padded C, a zero fill and a copy)."""
    p = case.p
    n, c, h, dt, layout = p["N"], p["C"], p["H"], DTYPES[p["dtype"]], p["layout"]
    cp = (c + 7) // 8 * 8
    def torch_fn(a):
        if cp == c:
            return a.contiguous(memory_format=torch.channels_last)
        out = torch.empty((n, cp, h, h), dtype=dt, device=a.device, memory_format=torch.channels_last)
        out[:, c:].zero_()
        out[:, :c].copy_(a)
        return out

    fn = torch_fn
    if case.impl != "torch":
        fn = _tensor_core_input()
        if fn is None:
            raise SkipCase(NO_LAYOUT_REASON)

    return _bandwidth_case(case, device, cfg, fn, torch_fn, (n, c, h, h), dt, layout,
                           elements_moved=n * (c + cp) * h * h)


@contextlib.contextmanager
def env_var(name: str, value: str | None):
    """Sets an environment variable for the block (value None: leaves it alone)."""
    if value is None:
        yield
        return
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


@functools.lru_cache(None)
def _cpu_model(net: str, impl: str, algo: str = "auto"):
    if impl == "torch":
        import torchvision
        return getattr(torchvision.models, net)(weights=None).eval()
    vk = _vggkern()
    model = getattr(vk, net)(algo=algo).eval()
    # torchvision's weights: every network row, ours (any algo) and torch's, computes on the
    # same weights, and ours shares torchvision's references (_network_accuracy) per dtype.
    model.load_state_dict(_cpu_model(net, "torch").state_dict())
    return model


def _run_tables(which: str | None) -> dict | None:
    """which="run": the tables benchmarks/tune.py makes from this run's rows so far (the
    journal, benchmarks/journal.py); None: none."""
    if which is None:
        return None
    from . import journal, tune
    rows = journal.rows_so_far()
    if not any(r.get("device") == "cuda" and r.get("group") == "conv" for r in rows):
        raise SkipCase("auto on this run's tables: no GPU conv rows journaled before it (the journal, "
                       "VGGKERN_BENCH_JOURNAL, is set by benchmarks/device_run.sh)")
    exclude = {t for t in os.environ.get("VGGKERN_BENCH_EXCLUDE_TILES", "").split(",") if t}
    tables = tune.run_time_tables(rows, f"this benchmark run's first {len(rows)} rows", exclude)
    if not tables["auto"]:  # only forced tiles timed (a --focus run): auto would run every layer direct
        raise SkipCase("auto on this run's tables: no algorithm verdicts among the rows journaled before it "
                       "(only forced tiles?): the tables would run every layer direct")
    return tables


@contextlib.contextmanager
def _using_tables(tables: dict | None):
    """conv3x3 follows ``tables`` (set at run time) for the block, and the tables in use
    before afterwards; None: nothing changes."""
    if tables is None:
        yield
        return
    vk = _vggkern()
    before = vk.tuned_tables()
    vk.set_tuned_tables(tables)
    try:
        yield
    finally:
        vk.set_tuned_tables(before if before["run_time"] else None)


def _network_case(case: Case, device: str, cfg: dict) -> dict:
    p = case.p
    net, n, res, dt, layout, mode = p["net"], p["N"], p["res"], DTYPES[p["dtype"]], p["layout"], p["mode"]
    if case.impl == "vggkern":
        vk = _vggkern()
        if vk is None or not hasattr(vk, net):
            raise SkipCase(NO_NET_REASON.format(net=net))
    extra = {}
    tile = env_var("VGGKERN_IMPLICIT_GEMM_TILE", p.get("tile"))  # a wgmma policy, for every launch below
    run_tables = _run_tables(p.get("tables"))  # or this run's own tables
    if run_tables is not None:
        extra.update(tables_tiles=len(run_tables["tiles"]), tables_auto=len(run_tables["auto"]))
    model = copy.deepcopy(_cpu_model(net, case.impl, p.get("algo", "auto"))).to(device=device, dtype=dt)
    if p.get("tf32_chain") == "no-chain":
        model.features.tf32_chain = False
    if layout == "cl":
        model = model.to(memory_format=torch.channels_last)

    def make_inputs():
        return _rand((n, 3, res, res), dt, device, layout)

    # On CPU our modules run torch's own ops unless told otherwise: time our kernels
    # (through the emulator), or the row would be torch's number under our name.
    backend = contextlib.nullcontext()
    if case.impl == "vggkern" and device != "cuda":
        backend = vk.cpu_backend("emulator")
        extra["cpu_backend"] = "emulator"
    with tile, _using_tables(run_tables), backend, torch.inference_mode(), fp32_math(p.get("math", "-")):
        if case.impl != "torch" and mode != "graph":  # a graph row's: its replays' result, below
            extra.update(_network_accuracy(model, net, (n, 3, res, res), layout, p.get("math", "-")))
        fn = model
        if mode == "compile":
            if device != "cuda":
                raise SkipCase("torch.compile is timed on the GPU only")
            t0 = time.perf_counter()
            try:
                fn = torch.compile(model)
                fn(make_inputs())
                torch.cuda.synchronize()
            except Exception as e:  # noqa: BLE001
                raise SkipCase(f"torch.compile failed here: {type(e).__name__}: {str(e)[:200]}") from e
            extra["compile_s"] = round(time.perf_counter() - t0, 2)
        if mode == "graph":
            if device != "cuda":
                raise SkipCase("CUDA graphs need a GPU")
            held = {}
            t = timing.time_graph(model, make_inputs(), repeats=cfg.get("net_repeats", 10), keep=held)
            if case.impl != "torch":  # what the timed replays computed, on the references' x
                extra.update(_network_accuracy(model, net, (n, 3, res, res), layout, p.get("math", "-"),
                                               run=lambda x: _replay(held, x)))
        elif device == "cuda":
            t = timing.time_gpu(fn, make_inputs, repeats=cfg.get("net_repeats", 10))
        else:
            t = timing.time_cpu(fn, make_inputs, repeats=cfg.get("cpu_repeats", 3))
    flops = n * network_flops(net, res)
    extra.update(flops=flops, flops_kind="direct", images_per_s=n / t.median_s, math_peak=_math_for(case))
    return _finish(case, device, t, extra, tflop=flops / 1e12)


_NET_REFS = {}  # (net, weights, shape, dtype, layout, math, device) -> (x, torchvision's logits: fp32, same dtype)


def _replay(held: dict, x):
    """A captured graph's result on x (timing.time_graph's keep: x copied into its static
    input, one replay, its static output)."""
    held["inputs"].copy_(x)
    held["graph"].replay()
    return held["output"]


def _network_accuracy(model, net: str, shape, layout: str, math: str, run=None) -> dict:
    """Our network's logits against torchvision's with the same weights, on a seeded x of
    `shape` in the model's dtype and device: its relative error against torchvision in
    fp32 without TF32, and torchvision's own at that dtype and layout under the row's math;
    accuracy_ok: ours within NET_ERR_K times torch's (or NET_ERR_FLOOR). Ours is model(x),
    or run(x) where given (a graph row's replay). torchvision's two results are kept per
    weights (a fingerprint: the sums of the first and last parameters), shape, dtype,
    layout and math: a network row costs seconds of GPU time, and VGG16's headline rows
    (modes, tile policies) share them. In the caller's inference mode."""
    params = list(model.parameters())
    p0 = params[0]
    weights = tuple(float(t.double().sum()) for t in (params[0], params[-1]))
    key = (net, weights, tuple(shape), p0.dtype, layout, math, p0.device)
    if key not in _NET_REFS:
        x = _fmt(torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(p0.device, p0.dtype), layout)
        ref_model = copy.deepcopy(_cpu_model(net, "torch")).to(p0.device)
        ref_model.load_state_dict(model.state_dict())  # ours holds torchvision's state_dict (cast: exact)
        with _reference_math():
            ref = ref_model(x.float())
        same_model = ref_model.to(dtype=p0.dtype)
        if layout == "cl":
            same_model = same_model.to(memory_format=torch.channels_last)
        with fp32_math(math):
            same = same_model(x).float()
        del ref_model, same_model
        _NET_REFS[key] = (x.cpu(), ref, same)  # x kept on the host: 77 MB at VGG's batch 128
    x, ref, same = _NET_REFS[key]
    y = (run or model)(x.to(p0.device)).float()

    def err(a):
        return float((a - ref).norm() / ref.norm().clamp_min(1e-30))

    ours, theirs = err(y), err(same)
    return {"rel_err_vs_fp32": ours, "torch_rel_err_vs_fp32": theirs,
            "accuracy_ok": ours <= max(NET_ERR_K * theirs, NET_ERR_FLOOR)}


def _finish(case, device, t, extra, tflop=None, gbytes=None):
    row = {"id": case.id, "group": case.group, "impl": case.impl, "tier": case.tier, "device": device}
    row.update(case.p)
    row.update(t.as_dict())
    row.update(extra)
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else None
    if tflop is not None:
        row["tflops"] = tflop / t.median_s
        pk = peaks.peak(gpu, row["math_peak"])
        row["peak"] = pk
        row["pct_peak"] = 100 * row["tflops"] / pk if pk else None
    if gbytes is not None:
        row["gbps"] = gbytes / t.median_s
        pk = peaks.peak(gpu, "bw")
        row["peak"] = pk
        row["pct_peak"] = 100 * row["gbps"] / (pk * 1e3) if pk else None
    return row


RUNNERS = {"conv": _conv_case, "maxpool": _maxpool_case, "layout": _layout_case, "network": _network_case}


def wrong_result(row: dict) -> str | None:
    """Why a timed row of ours is wrong (its accuracy_ok is False), or None. The row is
    still recorded (what ran, and how fast) but its case fails, and neither the report's
    "best ours" nor tune.py takes it."""
    if row.get("accuracy_ok") is not False:
        return None
    if "rel_err_vs_fp32" in row:
        theirs = row.get("torch_rel_err_vs_fp32")
        worst = row.get("max_err_vs_fp32")
        return (f"wrong result: rel err vs torch fp32 {row['rel_err_vs_fp32']:.3g}"
                + (f", {worst:.3g} at the worst element" if worst is not None else "")
                + (f" (torch's at this dtype: {theirs:.3g})" if theirs is not None else ""))
    return "wrong result: differs from torch's"


def default_cfg(quick: bool = False) -> dict:
    return {"repeats": 15 if quick else 25, "net_repeats": 7 if quick else 10, "cpu_repeats": 3}


def run_case(case: Case, cfg: dict | None = None) -> dict:
    """Run one case on the device its tier asks for; raises SkipCase with the reason."""
    if case.skip_reason:
        raise SkipCase(case.skip_reason)
    device = "cpu" if case.tier == "smoke" else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise SkipCase("GPU matrix: needs a CUDA GPU (none visible); the CPU smoke cases ran instead")
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
    row = RUNNERS[case.group](case, device, cfg or default_cfg())
    if device == "cuda":
        torch.cuda.synchronize()
    return row
