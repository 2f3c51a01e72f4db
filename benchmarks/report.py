"""Render benchmark results JSON as markdown (and a plot); compare two result files.

    python -m benchmarks.report RESULTS.json [--md out.md] [--plot out.png] [--headline]
    python -m benchmarks.report --latest                 # newest benchmarks/results/*.json
    python -m benchmarks.report --compare OLD.json NEW.json [--threshold 0.05] [--fail-on-regression]

Reads the JSON of `pytest benchmarks/ --benchmark-json=...` or `python -m benchmarks.run
--json ...` (our rows live in benchmarks[*].extra_info). Times are the CUDA-event
medians over repeats (IQR = spread); 'vs torch' is best-torch-time / this-time for the
same shape, batch, dtype and fusion (best over torch's layouts, TF32 on/off and modes):
above 1 means faster than the best torch baseline.
"""
from __future__ import annotations

import argparse
import datetime
import glob
import json
import math
import os
import re
import sys
from collections import Counter, defaultdict

from . import peaks
from .tiles import is_wgmma

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(HERE, "results")

SAME = {  # params that make two rows 'the same problem' (impl/layout/math/algo/mode excluded)
    "conv": ("layer", "N", "C", "K", "H", "dtype", "variant"),
    "maxpool": ("N", "C", "H", "dtype"),
    "layout": ("N", "C", "H", "dtype", "layout"),  # x's layout is the problem: what is converted
    "network": ("net", "N", "res", "dtype"),
}


def rows_of(data):
    """Our rows (each benchmark's extra_info) of a results JSON's data."""
    return [dict(b["extra_info"]) for b in data.get("benchmarks", []) if "group" in b.get("extra_info", {})]


class NotResults(ValueError):
    """A file that is not a results JSON: empty, cut short, or not a JSON object."""


def load(path):
    """(data, rows, env) of a results JSON. A file that is not one (empty or cut short, as
    a run killed while writing it leaves it; a JSON value other than an object; an object
    whose benchmarks or machine_info are not of their shape) raises NotResults naming the
    file and what is wrong."""
    with open(path) as f:
        text = f.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        what = "empty" if not text.strip() else f"not valid JSON ({e})"
        raise NotResults(f"{path}: {what}: not a benchmark results file (a run that did not finish writing it? "
                         "python -m benchmarks.journal makes one from the run's journal)") from None
    if not isinstance(data, dict):
        raise NotResults(f"{path}: holds a JSON {type(data).__name__}, not a benchmark results object")
    def expect(ok, part, what):
        if not ok:
            raise NotResults(f"{path}: expected {part} to be {what}")
    benchmarks = data.get("benchmarks", [])
    expect(isinstance(benchmarks, list) and all(isinstance(b, dict) for b in benchmarks), "['benchmarks']",
           "a list of objects")
    for i, b in enumerate(benchmarks):
        expect(isinstance(b.get("extra_info", {}), dict), f"['benchmarks'][{i}]['extra_info']", "an object")
    machine = data.get("machine_info", {})
    expect(isinstance(machine, dict), "['machine_info']", "an object")
    expect(isinstance(machine.get("vggkern_env", {}), dict), "['machine_info']['vggkern_env']", "an object")
    env = machine.get("vggkern_env", {})
    rows = rows_of(data)
    for r in rows:
        _repeak(r, env.get("gpu_name"))
    return data, rows, env


def _repeak(r, gpu_name):
    """A row's % of peak against the peak of the math that ran (peaks.math_of). The runs of
    2026-12-04 (a95939d, 9f429b0) put an fp32 "auto" conv that ran implicit_gemm (TF32), and
    our fp32 networks with TF32, against the fp32 CUDA-core peak: up to 266%."""
    if r.get("tflops") is None or "math_peak" not in r:
        return
    math = peaks.math_of(r)
    if math != r["math_peak"]:
        pk = peaks.peak(gpu_name, math)
        r.update(math_peak=math, peak=pk, pct_peak=100 * r["tflops"] / pk if pk else None)


def timed(r):
    """Whether r holds a valid time (a finite median > 0). One that does not (zero, NaN,
    missing: a broken timing) is nobody's baseline and has no speedup."""
    m = r.get("median_s")
    return isinstance(m, (int, float)) and not isinstance(m, bool) and math.isfinite(m) and m > 0


def problem_key(r):
    return (r["group"],) + tuple(r.get(k) for k in SAME[r["group"]])


def baseline_label(r):
    parts = [r.get("layout")]
    if r.get("math") not in (None, "-"):
        parts.append(r["math"])
    if r.get("mode"):
        parts.append(r["mode"])
    return " ".join(str(p) for p in parts if p)


def impl_label(r):
    if r["impl"] == "torch":
        return "torch " + baseline_label(r)
    s = "ours"
    if r.get("algo") and r.get("algo") != "n/a":
        s += f" {r['algo']}"
    if r.get("tile"):
        s += f" [{r['tile']}]"
    if r.get("tables"):
        s += " [this run's tables]"
    if r.get("tf32_chain") == "no-chain":
        s += " [TF32 chain off]"
    return s + " " + baseline_label(r) + (" **WRONG**" if wrong(r) else "")


def is_sweep(r):
    """A tile-sweep row (our kernel with a forced tile), or one on a policy, on this run's
    own tables or with the TF32 chain off: not what a user's call of this build runs."""
    return bool(r.get("tile") or r.get("tables") or r.get("tf32_chain"))


def is_prepared(r):
    """A row of ours given the weight prepared once (Winograd's U, implicit_gemm's laid-out
    weight), as the modules hold it: torch is timed with the raw weight, so these rows are
    not compared with it; they have a table of their own (prepared_weight)."""
    return r.get("weight") == "prepared"


def is_nchw_converted(r):
    """A row of implicit_gemm on an NCHW x with y written NHWC and converted after the kernel
    (VGGKERN_IMPLICIT_GEMM_NCHW_Y=convert, the earlier path): timed beside the default,
    whose epilogue writes y NCHW, in a table of its own (nchw_y)."""
    return r.get("nchw_y") == "convert"


def is_k_order_variant(r):
    """A row of implicit_gemm with a forced K order (k_order: VGGKERN_IMPLICIT_GEMM_K_ORDER),
    or, in runs before x's copies through L1 were removed, a forced x path (x_cache:
    VGGKERN_IMPLICIT_GEMM_X_CACHE): timed beside the default in a table of its own (k_order)."""
    return bool(r.get("k_order") or r.get("x_cache"))


def is_copies_variant(r):
    """A row of a ws tile with its copies forced (copies: tensor loads, "tma", or cp.async:
    VGGKERN_IMPLICIT_GEMM_TMA on or off), timed in pairs in a table of their own (copies)."""
    return bool(r.get("copies"))


def is_path_variant(r):
    """A forced K order, x path or copy path: never a tile's sweep time, "best ours" or a tuned entry."""
    return is_k_order_variant(r) or is_copies_variant(r)


def wrong(r):
    """A row of ours whose result was wrong (accuracy_ok False: benchmarks.cases.wrong_result):
    listed, never "best ours"."""
    return r.get("accuracy_ok") is False


def set_apart(r):
    """Left out of "best ours" and the plot: a sweep row, a prepared-weight one, NCHW's
    converted y, a forced K order or copy path."""
    return is_sweep(r) or is_prepared(r) or is_nchw_converted(r) or is_path_variant(r)


def annotate(rows):
    """Adds speedup_vs_best_torch and best_torch (label) to every row."""
    best = {}
    for r in rows:
        if r["impl"] == "torch" and timed(r):
            k = problem_key(r)
            if k not in best or r["median_s"] < best[k]["median_s"]:
                best[k] = r
    for r in rows:
        b = best.get(problem_key(r))
        r["best_torch"] = impl_label(b) if b else None
        r["best_torch_s"] = b["median_s"] if b else None
        r["speedup_vs_best_torch"] = b["median_s"] / r["median_s"] if b and timed(r) else None
    return rows


def _f(v, fmt="{:.3g}", none="–"):
    return none if v is None else fmt.format(v)


def _us(s):
    return _f(s * 1e6 if s is not None else None, "{:.1f}" if s is not None and s < 1e-3 else "{:.0f}")


def rate(r):
    if r["group"] in ("maxpool", "layout"):
        return f"{r['gbps']:.3g} GB/s" if r.get("gbps") is not None else "–"
    if r.get("tflops") is None:
        return "–"
    eff = "eff " if str(r.get("flops_kind", "")).startswith("effective") else ""
    return f"{r['tflops']:.3g} {eff}TFLOP/s"


_FAILED_STEP = re.compile(r"\b(FAILED|ERRORS|TIMEOUT|DIFFERS)\b|results differ|\brc=[1-9]")


def failed_steps(data):
    """The device steps of a run (device_run.sh's summary lines, vggkern_device_steps) that
    did not pass: a failed build, probe or GPU test run, sanitizer errors, a timeout."""
    return [s for s in data.get("vggkern_device_steps", []) if isinstance(s, str) and _FAILED_STEP.search(s)]


def env_lines(env, data):
    keys = ["gpu_name", "driver", "cuda_torch_built_with", "torch", "cudnn", "torchvision", "date_utc",
            "git_commit", "git_head", "git_dirty", "host"]
    out = ["| what | value |", "| --- | --- |"]
    out += [f"| {k} | {env.get(k)} |" for k in keys if k in env]
    out.append(f"| bench set | {data.get('vggkern_bench_set')} |")
    if data.get("vggkern_partial"):
        out.append(f"| **partial** | {data['vggkern_partial']} |")
    failed = failed_steps(data)
    out += [f"| device step | {'**' + s + '**' if s in failed else s} |" for s in data.get("vggkern_device_steps", [])
            if isinstance(s, str)]
    return out


def pick_batch(rows, group):
    ns = sorted({r["N"] for r in rows if r["group"] == group})
    return 64 if 64 in ns else (ns[-1] if ns else None)


def best_torch_and_ours(rows):
    """Per problem (problem_key): the fastest torch row and the fastest of ours (None if absent;
    rows without a valid time left out). A problem with neither (only tile-sweep rows, or
    none with a valid time) is left out."""
    groups = defaultdict(list)
    for r in rows:
        if timed(r):
            groups[problem_key(r)].append(r)
    for g in groups.values():
        best = (min((r for r in g if r["impl"] == "torch"), key=lambda r: r["median_s"], default=None),
                min((r for r in g if r["impl"] != "torch" and not set_apart(r) and not wrong(r)),
                    key=lambda r: r["median_s"],
                    default=None))
        if best != (None, None):
            yield best


def tile_order(tile: str):
    """mma.sync tiles (BMxBN) by size, then the wgmma ones (wgBMxBN, wsBMxBN)."""
    wgmma = is_wgmma(tile)
    return (wgmma, [int(v) for v in tile[2 if wgmma else 0:].split("x")])


def tile_sweep(rows):
    """implicit_gemm's time per forced tile, per layer and batch, and the default's: one
    table per dtype (fp16: every tile; fp32 with TF32: the rule's tile and the wgmma ones)."""
    sweep = [r for r in rows if r["group"] == "conv" and is_sweep(r) and timed(r) and not wrong(r)
             and not is_path_variant(r)]
    # The default: the plain call (raw weight, the default paths), timed and right.
    default = {problem_key(r): r for r in rows if r["group"] == "conv" and r["impl"] != "torch"
               and r.get("algo") == "implicit_gemm" and r.get("layout") == "cl" and not set_apart(r) and timed(r)
               and not wrong(r)}
    lines = []
    for dtype in sorted({r.get("dtype") for r in sweep}, key=lambda d: (d != "fp16", str(d))):
        dt_rows = [r for r in sweep if r.get("dtype") == dtype]
        tiles = sorted({r["tile"] for r in dt_rows}, key=tile_order)
        by = defaultdict(dict)
        for r in dt_rows:
            by[problem_key(r)][r["tile"]] = r
        math = " (TF32)" if dtype == "fp32" else ""
        lines += [f"implicit_gemm tile sweep ({dtype}{math} channels_last; µs, CUDA-event median; "
                  "VGGKERN_IMPLICIT_GEMM_TILE)", "",
                  "| layer | N | fusion | " + " | ".join(tiles) + " | default | fastest |",
                  "| --- | ---: | --- | " + "---: | " * len(tiles) + "---: | --- |"]
        for k in sorted(by, key=lambda k: (k[2], k[1] if k[1] is not None else 0)):
            rs = by[k]
            ref = next(iter(rs.values()))
            d = default.get(k)
            fastest = min(rs.values(), key=lambda r: r["median_s"])
            lines.append("| " + " | ".join([ref["layer"], str(ref["N"]), ref["variant"]]
                                           + [_us(rs[t]["median_s"]) if t in rs else "–" for t in tiles]
                                           + [_us(d["median_s"]) if d else "–", fastest["tile"]]) + " |")
        lines.append("")
    return lines


def headline(rows):
    """The short table: per layer (fusion 'relu'), maxpool and network at one batch."""
    lines = []
    n = pick_batch(rows, "conv")
    conv = [r for r in rows if r["group"] == "conv" and r["N"] == n and r.get("variant") in ("relu", "relu_pool")]
    if conv:
        lines += [f"Per layer, batch {n} (time = CUDA-event median; vs torch > 1: faster than best torch)", "",
                  "| layer | fusion | dtype | best torch | µs | TFLOP/s | % peak | best ours | µs | TFLOP/s | % peak | vs torch |",
                  "| --- | --- | --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |"]
        for t, o in best_torch_and_ours(conv):
            ref = t or o
            lines.append("| " + " | ".join([
                f"{ref['layer']} ({ref['C']}→{ref['K']}, {ref['H']}²)", ref["variant"], ref["dtype"],
                impl_label(t) if t else "–", _us(t["median_s"]) if t else "–", rate(t) if t else "–",
                _f(t.get("pct_peak") if t else None, "{:.0f}%"),
                impl_label(o) if o else "–", _us(o["median_s"]) if o else "–", rate(o) if o else "–",
                _f(o.get("pct_peak") if o else None, "{:.0f}%"),
                _f(o["speedup_vs_best_torch"] if o else None, "{:.2f}×")]) + " |")
        lines.append("")
    for group, title in (("maxpool", "maxpool2x2"),
                         ("layout", "implicit_gemm's x laid out (channels_last, C padded to 8) from x's layout"),
                         ("network", "Whole network")):
        n = pick_batch(rows, group)
        rs = [r for r in rows if r["group"] == group and r["N"] == n]
        if not rs:
            continue
        lines += [f"{title}, batch {n}", "",
                  "| problem | dtype | best torch | µs | rate | best ours | µs | rate | vs torch |",
                  "| --- | --- | --- | ---: | ---: | --- | ---: | ---: | ---: |"]
        for t, o in best_torch_and_ours(rs):
            ref = t or o
            prob = ref["net"] if group == "network" else f"{ref['C']}×{ref['H']}²"
            if group == "layout":
                prob += f" {ref['layout']}"

            def rt(r):
                if r is None:
                    return "–"
                return f"{r['images_per_s']:.0f} img/s" if group == "network" else rate(r)
            lines.append("| " + " | ".join([
                prob, ref["dtype"], impl_label(t) if t else "–", _us(t["median_s"]) if t else "–", rt(t),
                impl_label(o) if o else "–", _us(o["median_s"]) if o else "–", rt(o),
                _f(o["speedup_vs_best_torch"] if o else None, "{:.2f}×")]) + " |")
        lines.append("")
        policy = sorted((r for r in rs if is_sweep(r)),
                        key=lambda r: (r["net"], r["dtype"], r.get("tile") or "", r["mode"]))
        if policy:  # on a wgmma policy, or on this run's own tables: not yet what a call runs
            lines += [f"{title}, batch {n}, on a tile policy (VGGKERN_IMPLICIT_GEMM_TILE), on the tables "
                      "tune.py makes from this run (set at run time) or with the TF32 chain off", "",
                      "| problem | dtype | ours | µs | rate | vs best torch |", "| --- | --- | --- | ---: | ---: | ---: |"]
            lines += [f"| {r['net']} | {r['dtype']} | {impl_label(r)} | {_us(r['median_s'])} | "
                      f"{r['images_per_s']:.0f} img/s | {_f(r.get('speedup_vs_best_torch'), '{:.2f}×')} |"
                      for r in policy]
            lines.append("")
    return lines + tile_sweep(rows) + k_order(rows) + copies(rows) + prepared_weight(rows) + nchw_y(rows)


def _beside_default(rows, is_variant, title, names, variant_saves):
    """Per layer, batch and algo: the rows of a variant (is_variant) beside the same call's
    default row of ours: µs of each, and what the faster one (variant_saves: the variant,
    else the default) saved. names: the columns (slow, fast, saved, ratio)."""
    def key(r):
        return problem_key(r) + (r.get("algo"), r.get("layout"))
    default = {key(r): r for r in rows if r["group"] == "conv" and r["impl"] != "torch" and timed(r)
               and not set_apart(r)}
    variant = sorted((r for r in rows if r["group"] == "conv" and is_variant(r) and timed(r)),
                     key=lambda r: (r["N"], r.get("dtype"), r["C"], r["K"], -r["H"], r.get("algo")))
    if not variant:
        return []
    lines = [title, "", "| layer | N | dtype | layout | algo | " + " | ".join(names) + " |",
             "| --- | ---: | --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for r in variant:
        d = default.get(key(r))
        slow, fast = (d, r) if variant_saves else (r, d)
        lines.append("| " + " | ".join([
            r["layer"], str(r["N"]), r["dtype"], str(r.get("layout")), str(r.get("algo")),
            _us(slow["median_s"]) if slow else "–", _us(fast["median_s"]) if fast else "–",
            _us(slow["median_s"] - fast["median_s"]) if d else "–",
            _f(slow["median_s"] / fast["median_s"] if d else None, "{:.2f}×")]) + " |")
    return lines + [""]


def prepared_weight(rows):
    """Our time with the raw weight and with the weight prepared once (the per-call
    transform or layout the modules skip), and what preparing saved."""
    return _beside_default(rows, is_prepared, "Weight prepared once (winograd_weight / tensor_core_weight, as the "
                           "modules hold it) against the raw weight (µs, CUDA-event median; saved = raw − prepared)",
                           ("raw", "prepared", "saved", "raw ÷ prepared"), variant_saves=True)


def nchw_y(rows):
    """implicit_gemm on an NCHW x: y converted after the kernel against y written NCHW by
    its epilogue (the default), and what writing it directly saved."""
    return _beside_default(rows, is_nchw_converted, "implicit_gemm on NCHW x: y written NHWC and converted after "
                           "(VGGKERN_IMPLICIT_GEMM_NCHW_Y=convert) against y written NCHW by the epilogue (the "
                           "default) (µs, CUDA-event median; saved = converted − direct)",
                           ("converted", "direct", "saved", "converted ÷ direct"), variant_saves=False)


def k_order(rows):
    """implicit_gemm's forced tiles with K taps inner beside the same tile's sweep row (the
    default: taps outer), and the fastest. A run from before x's copies through L1 were
    removed (rows with x_cache) has the four (K order, x path) combinations: x past L1 (l2,
    what the kernel does now) or through it (l1). 9f429b0's run, whose default was taps
    inner through L1, timed taps outer (through L1) as its variant."""
    def key(r):
        return problem_key(r) + (r.get("tile"),)
    default = {key(r): r for r in rows if r["group"] == "conv" and is_sweep(r) and not is_path_variant(r)
               and timed(r) and not wrong(r)}
    variants = {}
    for r in rows:
        if r["group"] == "conv" and is_k_order_variant(r) and timed(r) and not wrong(r):
            variants.setdefault(key(r), {})[(r.get("k_order") or "taps_outer", r.get("x_cache") or "l2")] = r
    if not variants:
        return []
    x_path = any(r.get("x_cache") for d in variants.values() for r in d.values())
    known = [("taps_outer", "l2"), ("taps_inner", "l2")]
    if x_path:
        known += [("taps_inner", "l1"), ("taps_outer", "l1")]
    # 9f429b0's run: its default ran K taps inner with x through L1, and its variant rows
    # (k_order=taps_outer, no x_cache yet) taps outer through L1.
    then = not x_path and all(c == ("taps_outer", "l2") for d in variants.values() for c in d)
    if then:
        x_path = True
        known = [("taps_inner", "l1"), ("taps_outer", "l1")]
        variants = {k: {known[1]: r for r in d.values()} for k, d in variants.items()}
    cols = known + sorted({v for d in variants.values() for v in d} - set(known))

    def label(c):  # ("taps_inner", "l2") -> "inner", or in an old run "inner, L2"
        return (c[0].removeprefix("taps_") + (f", {c[1].upper()}" if x_path else "")
                + (" (default)" if c == known[0] else ""))
    lines = ["implicit_gemm K order (VGGKERN_IMPLICIT_GEMM_K_ORDER: taps outer or inner)"
             + (" and x's path (through L1 then, the default taps inner: 9f429b0)" if then else
                " and x's path (VGGKERN_IMPLICIT_GEMM_X_CACHE, since removed: past L1 to L2, or through L1)"
                if x_path else "") + " (µs, CUDA-event median)", "",
             "| layer | N | dtype | tile | " + " | ".join(label(c) for c in cols) + " | fastest | default ÷ fastest |",
             "| --- | ---: | --- | --- | " + "---: | " * len(cols) + "--- | ---: |"]
    for k in sorted(variants, key=lambda k: (k[:-1], tile_order(k[-1]))):
        d = dict(variants[k])
        if k in default:
            d[known[0]] = default[k]
        r0 = next(iter(variants[k].values()))
        best = min(d, key=lambda c: d[c]["median_s"])
        base = d.get(known[0])
        lines.append("| " + " | ".join([r0["layer"], str(r0["N"]), r0["dtype"], str(r0.get("tile"))]
                                        + [_us(d[c]["median_s"]) if c in d else "–" for c in cols]
                                        + [label(best),
                                           _f(base["median_s"] / d[best]["median_s"] if base else None, "{:.2f}×")])
                     + " |")
    return lines + [""]


def copies(rows):
    """The ws tiles' copies, tensor loads against cp.async, per layer, variant (conv + ReLU,
    or + pool) and tile, with what the tensor loads saved; and (runs since they came) y's
    stores: tensor stores from the epilogue's staging (the tma rows) against pairs from the
    accumulators (tma-pairs), with what the staging saved."""
    pairs = defaultdict(dict)
    for r in rows:
        if r["group"] == "conv" and is_copies_variant(r) and timed(r) and not wrong(r):
            pairs[problem_key(r) + (r.get("tile"),)][r["copies"]] = r
    if not pairs:
        return []
    stores = any("tma-pairs" in d for d in pairs.values())
    whole = any("tma-whole" in d for d in pairs.values())

    def saved(slow, fast):
        both = slow is not None and fast is not None
        return [_us(slow["median_s"] - fast["median_s"]) if both else "–",
                _f(slow["median_s"] / fast["median_s"] if both else None, "{:.2f}×")]

    lines = ["The ws tiles' copies: tensor loads (TMA, VGGKERN_IMPLICIT_GEMM_TMA=on) against cp.async (off) "
             "(µs, CUDA-event median; saved = cp.async − tensor loads)"
             + ("; y stored by tensor stores from shared memory (the default) against pairs from the accumulators "
                "(VGGKERN_IMPLICIT_GEMM_TMA_STORE=off), both with tensor loads" if stores else "")
             + ("; where the plan shares the tiles out by stream-K (the default there), whole tiles "
                "(VGGKERN_IMPLICIT_GEMM_STREAM_K=off) against it, both with tensor loads" if whole else ""), "",
             "| layer | N | dtype | variant | tile | cp.async | tensor loads | saved | cp.async ÷ tensor loads |"
             + (" pairs stores | staged saved | pairs ÷ staged |" if stores else "")
             + (" whole tiles | stream-K saved | whole ÷ stream-K |" if whole else ""),
             "| --- | ---: | --- | --- | --- | ---: | ---: | ---: | ---: |" + (" ---: | ---: | ---: |" if stores else "")
             + (" ---: | ---: | ---: |" if whole else "")]
    for k in sorted(pairs, key=lambda k: (k[2], -k[5], k[3], k[4], k[7], k[8])):  # N, H down, C, K, variant, tile
        d = pairs[k]
        r0 = next(iter(d.values()))
        slow, fast, unstaged = d.get("cp_async"), d.get("tma"), d.get("tma-pairs")
        cells = [r0["layer"], str(r0["N"]), r0["dtype"], r0["variant"], r0["tile"],
                 _us(slow["median_s"]) if slow else "–", _us(fast["median_s"]) if fast else "–"] + saved(slow, fast)
        if stores:
            cells += [_us(unstaged["median_s"]) if unstaged else "–"] + saved(unstaged, fast)
        if whole:
            cells += [_us(d["tma-whole"]["median_s"]) if "tma-whole" in d else "–"] + saved(d.get("tma-whole"), fast)
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def full_tables(rows):
    lines = []
    cols = {
        "conv": ("layer", "N", "dtype", "layout", "variant", "math", "algo", "tile", "weight", "nchw_y", "k_order",
                 "x_cache", "copies", "copies_ran", "stores_ran", "stream_k_ran"),
        "maxpool": ("C", "H", "N", "dtype", "layout"),
        "layout": ("C", "H", "N", "dtype", "layout"),
        "network": ("net", "N", "dtype", "math", "layout", "mode", "algo", "tile", "tf32_chain"),
    }
    for group, keys in cols.items():
        rs = [r for r in rows if r["group"] == group]
        if not rs:
            continue
        # x's path: only in runs from before its switch was removed; copies (forced) and
        # copies_ran (what a ws tile's launch did: benchmarks/cases.py): only in runs since they came
        keys = tuple(k for k in keys if k not in ("x_cache", "copies", "copies_ran", "stores_ran", "stream_k_ran")
                     or any(r.get(k) for r in rs))
        rs.sort(key=lambda r: tuple(str(r.get(k)) for k in keys) + (r["impl"],))
        extra = "images/s | " if group == "network" else ""
        lines += [f"### {group}", "",
                  "| impl | " + " | ".join(keys) + " | median µs | IQR µs | rate | % peak | " + extra
                  + "vs best torch | best torch |",
                  "| --- " * (len(keys) + 1) + "| ---: | ---: | ---: | ---: | " + ("---: | " if extra else "")
                  + "---: | --- |"]
        for r in rs:
            cells = [r["impl"] + (" **WRONG**" if wrong(r) else "")] + [str(r.get(k, "")) for k in keys] + [
                _us(r["median_s"]), _us(r["iqr_s"]), rate(r), _f(r.get("pct_peak"), "{:.1f}%")]
            if group == "network":
                cells.append(_f(r.get("images_per_s"), "{:.0f}"))
            cells += [_f(r.get("speedup_vs_best_torch"), "{:.2f}×"), r.get("best_torch") or "–"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def render(path, headline_only=False):
    data, rows, env = load(path)
    annotate(rows)
    from .peaks import PEAKS, SOURCE, gpu_key
    lines = [f"# vggkern benchmarks: {os.path.basename(path)}", ""] + env_lines(env, data) + [""]
    key = gpu_key(env.get("gpu_name"))
    if key:
        pk = PEAKS[key]
        lines += [f"Peaks used ({key}; {SOURCE}): fp32 {pk['fp32']}, TF32 {pk['tf32']}, fp16/bf16 {pk['fp16']} "
                  f"TFLOP/s dense; memory {pk['bw']} TB/s. 'eff' = Winograd, direct-conv FLOPs ÷ time.", ""]
    from .ceilings import clocks_line, summary_line
    if data.get("vggkern_ceilings"):
        lines += [summary_line(data["vggkern_ceilings"]) + ".", ""]
    if data.get("vggkern_clocks"):
        lines += [clocks_line(data["vggkern_clocks"]) + ".", ""]
    lines += headline(rows)
    if headline_only:
        return "\n".join(lines), rows, data
    skipped = Counter(s["reason"] for s in data.get("vggkern_skipped", []))
    if skipped:
        lines += ["Skipped cases:", ""] + [f"- {n} × {reason}" for reason, n in skipped.most_common()] + [""]
    for fl in data.get("vggkern_failed", []):
        lines.append(f"- FAILED {fl['id']}: {fl['error']}")
    lines += ["## All rows", ""] + full_tables(rows)
    return "\n".join(lines), rows, data


def plot(rows, out_png):
    """Per-layer speedup of our best over the best torch baseline (one bar per layer and dtype)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report: matplotlib is not installed: no plot")
        return False
    for group in ("conv", "maxpool"):
        n = pick_batch(rows, group)
        ours = [r for r in rows if r["group"] == group and r["impl"] != "torch" and r["N"] == n
                and not set_apart(r) and r.get("speedup_vs_best_torch") and r.get("variant", "relu") in ("relu", "relu_pool")]
        if ours:
            break
    else:
        print("report: no rows of ours with a torch baseline: no plot")
        return False
    best = {}
    for r in ours:
        k = problem_key(r)
        if k not in best or r["speedup_vs_best_torch"] > best[k]["speedup_vs_best_torch"]:
            best[k] = r

    def name(r):
        if group == "conv":
            return f"{r['layer'].split('+')[0]}\n{r['variant']}"
        return f"pool {r['C']}x{r['H']}"
    labels = sorted({name(r) for r in best.values()})
    dtypes = sorted({r["dtype"] for r in best.values()})
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(labels) * len(dtypes) / 2), 4.5))
    width = 0.8 / len(dtypes)
    for j, dt in enumerate(dtypes):
        vals = [next((r["speedup_vs_best_torch"] for r in best.values() if name(r) == lab and r["dtype"] == dt), 0)
                for lab in labels]
        ax.bar([i + j * width for i in range(len(labels))], vals, width, label=dt)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))])
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("speedup over best torch (×)")
    ax.set_title(f"vggkern {group}: best of ours vs best torch baseline, batch {n}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    print(f"report: plot written to {out_png}")
    return True


def case_id(r):
    """r's case id as the cases name it now (what matches rows of two runs: compare, and
    tune.py's merged_rows): a K order row timed with x past L1 (x_cache "l2",
    before VGGKERN_IMPLICIT_GEMM_X_CACHE was removed) is the same case as today's K order row,
    whose id has no "-l2" (rows through L1, a path gone, keep theirs: unmatched)."""
    if r.get("x_cache") == "l2" and r["id"].endswith("-l2"):
        return r["id"][:-len("-l2")]
    return r["id"]


def compare(old_path, new_path, threshold=0.05):
    """Rows present in both files, matched by case id. A regression: the new median is
    more than `threshold` slower AND the change exceeds the larger IQR (noise); or a case
    right and timed in the old run that is wrong (accuracy_ok False) or failed in the new
    one, whatever its time. Other cases in only one file are listed by id. Returns (the
    markdown, the regressions: (new row, old row, new/old) for the slower rows, (None, old
    row, None) for the broken cases)."""
    return _compare(old_path, load(old_path), new_path, load(new_path), threshold)


def _compare(old_path, old_loaded, new_path, new_loaded, threshold):
    _, old, env_o = old_loaded
    _, new, env_n = new_loaded
    old_by = {case_id(r): r for r in old}
    new_ids = {r["id"] for r in new}
    lines = [f"# compare {os.path.basename(old_path)} → {os.path.basename(new_path)}", "",
             f"old: {env_o.get('gpu_name')} {str(env_o.get('git_commit') or '')[:10]} {env_o.get('date_utc')}; "
             f"new: {env_n.get('gpu_name')} {str(env_n.get('git_commit') or '')[:10]} {env_n.get('date_utc')}", ""]
    if env_o.get("gpu_name") != env_n.get("gpu_name"):
        lines += ["**warning: different GPUs: timings are not comparable**", ""]
    regressions, improvements, same, invalid = [], [], 0, []
    # Broken since the old run: a row now wrong (accuracy_ok False) that was right, or a case
    # that failed (vggkern_failed: a fault, or a wrong result the suite refused to time) that
    # the old run timed. Regressions whatever the time says.
    broken = []  # (id, what, old row)
    for r in new:
        o = old_by.get(r["id"])
        if o is None:
            continue
        if wrong(r) and not wrong(o):
            broken.append((r["id"], "wrong result (accuracy_ok False), faster or not", o))
            continue
        if not (timed(r) and timed(o)):  # a broken timing on either side: no ratio, listed apart
            invalid.append((r, o))
            continue
        ratio = r["median_s"] / o["median_s"]
        noise = max(o.get("iqr_s", 0), r.get("iqr_s", 0))
        delta = r["median_s"] - o["median_s"]
        if ratio > 1 + threshold and delta > noise:
            regressions.append((r, o, ratio))
        elif ratio < 1 - threshold and -delta > noise:
            improvements.append((r, o, ratio))
        else:
            same += 1
    for failed in new_loaded[0].get("vggkern_failed", []):
        o = old_by.get(failed.get("id"))
        if o is not None and not wrong(o):
            broken.append((failed["id"], f"failed: {str(failed.get('error'))[:200]}", o))
    matched = len(regressions) + len(improvements) + same + len(invalid)
    lines.append(f"{matched} rows matched; {len(regressions)} regressions, {len(improvements)} improvements "
                 f"(threshold {threshold:.0%} and beyond the IQR); {same} unchanged"
                 + (f"; {len(invalid)} without a valid time (zero, NaN or missing median)" if invalid else "")
                 + (f"; {len(broken)} broken (now wrong or failing)" if broken else "") + ".")
    if broken:
        lines += ["", "## Broken (right and timed in old) **REGRESSION**", "", "| case | old µs | now |",
                  "| --- | ---: | --- |"]
        lines += [f"| {i} | {_us(o['median_s'])} | {what} |" for i, what, o in broken]
    for title, items in (("Regressions", regressions), ("Improvements", improvements)):
        if not items:
            continue
        lines += ["", f"## {title}", "", "| case | old µs | new µs | new/old |", "| --- | ---: | ---: | ---: |"]
        for r, o, ratio in sorted(items, key=lambda t: -abs(t[2] - 1)):
            flag = " **REGRESSION**" if title == "Regressions" else ""
            lines.append(f"| {r['id']} | {_us(o['median_s'])} | {_us(r['median_s'])} | {ratio:.3f}{flag} |")
    if invalid:
        lines += ["", "## Without a valid time", "", "| case | old median | new median |", "| --- | ---: | ---: |"]
        lines += [f"| {r['id']} | {o.get('median_s')} | {r.get('median_s')} |" for r, o in invalid]
    only_old = sorted(i for i in old_by if i not in new_ids)
    only_new = sorted(i for i in new_ids if i not in old_by)
    for title, ids in (("Only in old (not timed in new: skipped, failed or not run)", only_old),
                       ("Only in new", only_new)):
        if ids:
            lines += ["", f"## {title}: {len(ids)}", ""] + [f"- {i}" for i in ids]
    return "\n".join(lines), regressions + [(None, o, None) for _, _, o in broken]


def latest(directory=RESULTS_DIR):
    """The newest run in directory by the time it recorded (its env's date_utc, else the
    file's), then by name: a fresh clone's files all carry the checkout's time."""
    def when(path):
        try:
            with open(path) as f:
                date = json.load(f).get("machine_info", {}).get("vggkern_env", {}).get("date_utc")
        except (OSError, ValueError, AttributeError):
            date = None
        stamp = datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.timezone.utc).isoformat()
        return (str(date or stamp), path)
    files = sorted(glob.glob(os.path.join(directory, "*.json")), key=when)
    return files[-1] if files else None


def main(argv=None):
    ap = argparse.ArgumentParser(description="Render or compare vggkern benchmark results.")
    ap.add_argument("results", nargs="?", help="results JSON (default: --latest)")
    ap.add_argument("--latest", action="store_true", help=f"use the newest JSON in {RESULTS_DIR}")
    ap.add_argument("--md", help="write the full markdown report here")
    ap.add_argument("--plot", help="write the per-layer speedup plot (PNG) here")
    ap.add_argument("--headline", action="store_true", help="print only the short table")
    ap.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"))
    ap.add_argument("--threshold", type=float, default=0.05)
    ap.add_argument("--fail-on-regression", action="store_true")
    args = ap.parse_args(argv)
    try:
        return _main(args)
    except NotResults as e:
        print(f"report: {e}", file=sys.stderr)
        return 2


def _main(args):
    if args.compare:
        (old_path, new_path), (old, new) = args.compare, [load(p) for p in args.compare]
        text, regressions = _compare(old_path, old, new_path, new, args.threshold)
        print(text)
        if args.md:
            with open(args.md, "w") as f:
                f.write(text + "\n")
        if args.fail_on_regression and old[2].get("gpu_name") != new[2].get("gpu_name"):
            print("report: --fail-on-regression needs two files from the same GPU (timings on different "
                  "GPUs are not comparable)", file=sys.stderr)
            return 2
        return 1 if regressions and args.fail_on_regression else 0
    path = args.results or (latest() if args.latest or not args.results else None)
    if not path:
        print(f"report: no results file given and none in {RESULTS_DIR}")
        return 2
    text, rows, _ = render(path)
    if args.md:
        with open(args.md, "w") as f:
            f.write(text + "\n")
    if args.plot:
        plot(rows, args.plot)
    print(render(path, headline_only=True)[0] if (args.headline or args.md) else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
