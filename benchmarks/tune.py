"""Turn a GPU benchmark run into conv3x3's measured tables (csrc/common/conv3x3_tuned.h):
implicit_gemm's block tile per layer and batch, and what algo="auto" runs.

    python -m benchmarks.tune RESULTS.json            # print the tables and the header
    python -m benchmarks.tune RESULTS.json --write    # write csrc/common/conv3x3_tuned.h
    python -m benchmarks.tune --latest --write        # the newest benchmarks/results/*.json
    python -m benchmarks.tune FULL.json FOCUS.json --write   # runs of one GPU model merged:
                                       # a later run's rows replace the earlier's of the same case
    python -m benchmarks.tune RESULTS.json --json T.json   # the same tables for
                                       # vggkern.set_tuned_tables("T.json"), no rebuild

Then rebuild (pip install --no-build-isolation -e .) and commit the header with the
results file it names. Rules (conv3x3_tuning.h looks the tables up):
- Tile: from the tile sweep (fp16 channels_last, every VGG layer x tile, batches 1, 64,
  128), the fastest tile per (layer, batch), kept only where it beats the tile the rule
  picks on the run's GPU by more than MARGIN; elsewhere the rule stays. The rule
  (tiles.rule_tile): where the run ran wgmma (its build had the wgmma tiles and its GPU is
  compute capability 9.0), wgmma-wide's tile (wg256x64 where K <= 64, wg128x128 below 256,
  wg128x256 from it); elsewhere 256x64 where K <= 64, else 128x128.
  The same from the sweep's fp32 rows (TF32, batches 1, 64, 128: the rule's tile and
  the wgmma tiles), as entries marked tf32 that only fp32 calls use; without one, fp32
  takes the fp16 entry's tile (conv3x3_implicit_gemm_plan.h), so that is what a TF32
  entry must beat; where the TF32 sweep did not time that tile, the sweep's best (the
  rule's tile included) is written. Where the sweep timed neither, the plain call's row
  (no forced tile) stands in; a layer with none of these gets no entry.
- auto: per (dtype, memory format, layer, pool, batch) where both were measured,
  implicit_gemm where our implicit_gemm row beats our direct row by more than MARGIN
  (fp32 rows ran with TF32, torch's default, so the entry applies to fp32 only where TF32
  is allowed), else direct: both verdicts are entries, so that a call takes the nearest
  measurement of its layer (conv3x3_tuning.h's tuned_auto). Rows with ReLU (and the
  pool where the layer has one) decide; the bare conv rows only where those are missing.
  Winograd is never auto's pick (its error bound is looser).
Only the median times are compared; MARGIN keeps run-to-run noise from flipping entries.
A row whose recorded error against torch in fp32 (rel_err_vs_fp32) exceeds MAX_REL_ERR is
never picked, however fast: a kernel that computes garbage on the GPU (say, a wgmma tile
whose layout the emulator got wrong) cannot enter the tables.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict

from . import report
from .tiles import rule_tile

HEADER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc", "common",
                      "conv3x3_tuned.h")
MARGIN = 0.03
MAX_REL_ERR = 5e-2  # fp16/bf16/TF32 convs of VGG's shapes are ~1e-3; a wrong kernel is ~1
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
TILES = {"128x64": "m128n64", "128x128": "m128n128", "256x128": "m256n128", "256x64": "m256n64",
         "wg128x128": "wg128x128", "wg256x64": "wg256x64", "wg128x256": "wg128x256", "ws128x256": "ws128x256",
         "ws128x128": "ws128x128"}


def _padded(c: int) -> int:
    return (c + 7) // 8 * 8  # C as the kernel sees it


def _trusted(r: dict) -> bool:
    if r.get("accuracy_ok") is False:  # the run's own gate (benchmarks.cases.wrong_result)
        return False
    err = r.get("rel_err_vs_fp32")
    return err is None or err <= MAX_REL_ERR  # None: a row without the check (older runs)


def _beats(fast: dict, slow: dict) -> bool:
    return fast["median_s"] < (1 - MARGIN) * slow["median_s"]


def _tile_key(r):
    """A timed, trusted implicit_gemm row of ours that a tile entry may come from (fp16, or
    fp32 with TF32): its (tf32, C as the kernel sees it, K, H, pool, N); else None."""
    if (r.get("group") != "conv" or r.get("impl") != "vggkern" or not report.timed(r) or not _trusted(r)
            or r.get("dtype", "fp16") not in ("fp16", "fp32")):
        return None
    return (r.get("dtype", "fp16") == "fp32", _padded(r["C"]), r["K"], r["H"], r.get("variant") == "relu_pool",
            r["N"])


def ran_wgmma(env: dict) -> bool:
    """Did the run's calls without a tile entry get the wgmma rule (tiles.rule_tile): a
    build with the wgmma tiles on a compute capability 9.0 GPU (the run's environment)."""
    build = env.get("vggkern_build") or {}
    return bool(build.get("cuda_wgmma")) and str(env.get("gpu_capability")) == "9.0"


def tile_table(rows, exclude=(), wgmma=False) -> list[dict]:
    """Per sweep dtype (fp16; fp32 with TF32: entries marked tf32), layer and batch, the
    swept tile that beat the rule's (wgmma: the rule where wgmma runs) by MARGIN; tiles in
    `exclude` (e.g. one whose GPU correctness test failed in that run) are never picked."""
    by = defaultdict(dict)
    # The plain call's row per key (no forced tile: what the build ran then), for a layer
    # whose sweep did not time what runs.
    plain = {}
    for r in rows:
        key = _tile_key(r)
        if key is None:
            continue
        if r.get("tile") and not report.is_path_variant(r) and r["tile"] not in exclude:
            by[key][r["tile"]] = r
        elif (not r.get("tile") and r.get("algo") == "implicit_gemm" and r.get("layout") == "cl"
              and not report.set_apart(r)):
            plain[key] = r
    # What a call runs without an entry (`runs`): the rule's tile; for fp32, the fp16 entry's
    # tile where there is one (conv3x3_implicit_gemm_plan.h), so the fp16 keys go first
    # (sorted: tf32 False). An entry must beat that by MARGIN. Where fp32 would run an fp16
    # pick the TF32 sweep did not time, the sweep's best of the tiles timed with the rule's
    # is written (the rule's tile itself where nothing beats it): measured beats unmeasured.
    # Where the sweep timed neither, the plain call's time stands in for what runs; without
    # that either (a skipped or failed case; a run that swept other tiles only), no entry:
    # nothing was compared with what runs.
    out, fp16_pick = [], {}
    for key, tiles in sorted(by.items()):
        tf32, c, k, h, pool, n = key
        shape, rule = (c, k, h, pool, n), rule_tile(k, wgmma)
        runs = fp16_pick.get(shape, rule) if tf32 else rule
        fastest = min(tiles.values(), key=lambda r: r["median_s"])
        if runs in tiles:
            against = tiles[runs]
            pick = fastest if fastest["tile"] != runs and _beats(fastest, against) else None
        elif rule in tiles:  # tf32: fp16's pick, untimed in TF32
            against = tiles[rule]
            pick = fastest if _beats(fastest, against) else against
        elif key in plain:
            against = plain[key]
            pick = fastest if _beats(fastest, against) else None
        else:
            continue
        if pick is not None:
            out.append({"C": c, "K": k, "H": h, "W": h, "pool": pool, "N": n, "tile": pick["tile"], "tf32": tf32,
                        "us": pick["median_s"] * 1e6, "against": against.get("tile") or "default",
                        "against_us": against["median_s"] * 1e6, "against_rule": against.get("tile") == rule})
            if not tf32:
                fp16_pick[shape] = pick["tile"]
    return out


def auto_table(rows) -> list[dict]:
    by = defaultdict(dict)  # (dtype, layout, C, K, H, pool, N) -> {algo: row}, ReLU rows first
    for r in rows:
        if (r.get("group") != "conv" or r.get("impl") != "vggkern" or report.set_apart(r) or not report.timed(r)
                or r.get("algo") not in ("direct", "implicit_gemm") or r.get("dtype") not in DTYPES
                or r.get("layer") == "smoke" or not _trusted(r)):
            continue
        pool = r.get("variant") == "relu_pool"
        key = (r["dtype"], r["layout"], _padded(r["C"]), r["K"], r["H"], pool, r["N"])
        have = by[key].get(r["algo"])
        if have is None or (have.get("variant") == "conv" and r.get("variant") != "conv"):
            by[key][r["algo"]] = r
    out = []
    for (dt, layout, c, k, h, pool, n), algos in sorted(by.items()):
        ig, direct = algos.get("implicit_gemm"), algos.get("direct")
        if ig is not None and direct is not None:
            out.append({"dtype": DTYPES[dt], "channels_last": layout == "cl", "C": c, "K": k, "H": h, "W": h,
                        "pool": pool, "N": n, "algo": "implicit_gemm" if _beats(ig, direct) else "direct",
                        "us": ig["median_s"] * 1e6, "direct_us": direct["median_s"] * 1e6})
    return out


def c_string(text: str) -> str:
    """text as the body of a C++ string literal (and a one-line comment): printable ASCII as
    it is, but for an escaped quote and backslash; every other byte of its UTF-8 in octal."""
    def byte(b):
        c = chr(b)
        return "\\" + c if c in '"\\' else c if 32 <= b < 127 else f"\\{b:03o}"

    return "".join(byte(b) for b in text.encode("utf-8", "replace"))


def _against(e) -> str:
    # A tile entry's comment: what it was measured against (nothing where it names that tile).
    us = f"{e['against_us']:.1f} us"
    if e["against"] == "default":
        return f" (the default call {us})"
    if e["against"] == e["tile"]:
        return ""
    return f" (rule's tile {us})" if e["against_rule"] else f" (fp16's tile {e['against']} {us})"


def render_header(tiles, autos, source: str) -> str:
    source = c_string(source)
    def shape(e):
        return f"{{{e['C']}, {e['K']}, {e['H']}, {e['W']}, {'true' if e['pool'] else 'false'}, {e['N']}}}"

    tile_rows = [f"    TunedTile{{{shape(e)}, ImplicitGemmTile::{TILES[e['tile']]}, "
                 f"{'true' if e.get('tf32') else 'false'}}},  // {e['us']:.1f} us"
                 + _against(e) for e in tiles]
    dtype_enum = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}
    auto_rows = [f"    TunedAuto{{DType::{dtype_enum[e['dtype']]}, Layout::{'nhwc' if e['channels_last'] else 'nchw'}, "
                 f"{shape(e)}, TunedAlgo::{e['algo']}}},  // implicit_gemm {e['us']:.1f} us, direct "
                 f"{e['direct_us']:.1f} us"
                 for e in autos]

    def array(name, typ, entries):
        if not entries:
            return f"inline constexpr std::array<{typ}, 0> {name}{{}};\n"
        return (f"inline constexpr std::array<{typ}, {len(entries)}> {name}{{{{\n" + "\n".join(entries)
                + "\n}};\n")

    return (
        "// GENERATED by `python -m benchmarks.tune RESULTS.json --write`: do not edit by hand.\n"
        "// The measured tables conv3x3_tuning.h looks up (rules: benchmarks/tune.py).\n"
        f"// Source: \"{source}\"\n"
        "#pragma once\n\n#include <array>\n\n#include \"conv3x3_tuning.h\"\n\nnamespace vk {\n\n"
        f"inline constexpr const char* kTunedSource = \"{source}\";\n\n"
        "// implicit_gemm's tile per (C, K, H, W, pool, N), where it beats the rule's of the run's GPU\n"
        "// (conv3x3_implicit_gemm_plan.h; true: measured in fp32 with TF32, for fp32 calls; false: in fp16).\n"
        + array("kTunedTiles", "TunedTile", tile_rows) + "\n"
        "// What \"auto\" runs, measured per (dtype, layout, C, K, H, W, pool, N); a call takes the\n"
        "// measurement of its (C, K, H, W) nearest it, or of the layer nearest its own where the\n"
        "// table has none (conv3x3_tuning.h's tuned_auto).\n"
        + array("kTunedAuto", "TunedAuto", auto_rows) + "\n}  // namespace vk\n")


def run_time_tables(rows, source: str, exclude=(), wgmma=False) -> dict:
    """The tables for vggkern.set_tuned_tables (and VGGKERN_TUNED_TABLES): what --write
    puts in the header, as data (each entry also keeps the times it was picked on). wgmma:
    the run ran wgmma (ran_wgmma), so its rule is wgmma-wide's."""
    if exclude:  # recorded, so that the tables can be made again from the runs they name
        source += f"; excluded tiles: {', '.join(sorted(exclude))}"
    return {"source": source, "tiles": tile_table(rows, exclude, wgmma), "auto": auto_table(rows)}


def merged_rows(runs) -> list:
    """The rows of several runs (lists of rows, oldest first), each case once (by its case
    id, as report.compare matches runs): a later run's row replaces an earlier one's. So a
    focus run (a few layers and tiles, timed again, or for the first time) updates a full
    run's sweep without a full run of its own; the tiles it did not time keep the full
    run's times."""
    by_case = {}
    for rows in runs:
        for r in rows:
            by_case[report.case_id(r)] = r
    return list(by_case.values())


def load_runs(paths) -> tuple[list, str, set, bool]:
    """The runs in `paths` (oldest first) merged (merged_rows), their source line ("A.json,
    ... + focus/B.json, ...": describe), the GPUs they ran on, and whether every one ran
    wgmma (ran_wgmma). Raises report.NotResults for a file that is not a results JSON."""
    runs, sources, gpus, wgmma = [], [], set(), True
    for path in paths:
        data, rows, env = report.load(path)
        runs.append(rows)
        sources.append(describe(data, env, path))
        gpus.add(env.get("gpu_name"))
        wgmma = wgmma and ran_wgmma(env)
        for step in report.failed_steps(data):  # its rows may come from kernels that misbehaved
            print(f"tune: warning: {os.path.basename(path)}: the run's step '{step}' did not pass: leave out "
                  "what it implicates (--exclude-tile)", file=sys.stderr)
    return merged_rows(runs), " + ".join(sources), gpus, wgmma and bool(paths)


def describe(data, env, path) -> str:
    """The source line of a run: its file (relative to benchmarks/results/ where it lies
    there, e.g. focus/NAME.json; else its name), GPU, torch, date and commit."""
    gpu = env.get("gpu_name") or "unknown GPU"
    rel = os.path.relpath(os.path.abspath(path), report.RESULTS_DIR)
    name = rel if not rel.startswith(os.pardir) else os.path.basename(path)
    parts = [name.replace(os.sep, "/"), gpu, f"torch {env.get('torch')}", str(env.get("date_utc", "")),
             f"commit {str(env.get('git_commit', ''))[:12]}"]
    return ", ".join(p for p in parts if p and p != "None")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="*", help="a results JSON (pytest-benchmark or benchmarks.run); several, of "
                                               "one GPU model, oldest first: merged (merged_rows)")
    ap.add_argument("--latest", action="store_true", help="the newest benchmarks/results/*.json")
    ap.add_argument("--write", action="store_true", help=f"write {os.path.relpath(HEADER)}")
    ap.add_argument("--exclude-tile", action="append", default=[], choices=sorted(TILES), metavar="TILE",
                    help="never pick this tile (repeatable): one the run's GPU tests failed, e.g. wg128x128")
    ap.add_argument("--json", metavar="TABLES.json",
                    help="write the tables as JSON, for vggkern.set_tuned_tables (no rebuild)")
    ap.add_argument("--header", default=HEADER, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    paths = [report.latest()] if args.latest else args.results
    if not paths or not all(paths):
        ap.error("give RESULTS.json or --latest")
    try:
        rows, source, gpus, wgmma = load_runs(paths)
    except report.NotResults as e:
        print(f"tune: {e}", file=sys.stderr)
        return 2
    if len(gpus) > 1:
        print(f"tune: the runs are of different GPUs ({', '.join(sorted(map(str, gpus)))}): their times do not "
              "compare", file=sys.stderr)
        return 2
    if not any(r.get("device") == "cuda" for r in rows):
        print(f"{', '.join(paths)}: no GPU rows (a CPU smoke run?): nothing to tune from", file=sys.stderr)
        return 1
    tables = run_time_tables(rows, source, set(args.exclude_tile), wgmma)
    tiles, autos = tables["tiles"], tables["auto"]
    text = render_header(tiles, autos, tables["source"])
    print(f"tile entries: {len(tiles)}, against the {'wgmma' if wgmma else 'mma.sync'} rule; auto entries: "
          f"{len(autos)} (margin {MARGIN:.0%})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(tables, f, indent=1)
        print(f"wrote {args.json}: vggkern.set_tuned_tables({args.json!r}) or VGGKERN_TUNED_TABLES={args.json}")
    if args.write:
        with open(args.header, "w") as f:
            f.write(text)
        print(f"wrote {args.header}: rebuild the extension to use it")
    elif not args.json:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
