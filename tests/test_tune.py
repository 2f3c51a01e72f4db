"""benchmarks/tune.py on a SYNTHETIC results file (times made up here, never a
measurement): which entries it emits, and that the header it writes compiles and that
conv3x3_tuning.h's lookup (the one the op and the plan use) answers from it."""
import os
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import tune  # noqa: E402
from test_bench_report import row, write  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sweep(tile, us, **p):
    r = row("vggkern", us * 1e-6, algo="implicit_gemm", tile=tile, **p)
    r["id"] += f"-{tile}"  # as a real case id names its tile
    return r


def ours(algo, us, **p):
    return row("vggkern", us * 1e-6, algo=algo, **p)


def synthetic():
    conv3 = dict(layer="conv3_2", C=256, K=256, H=56, N=64)
    conv5 = dict(layer="conv5_3", C=512, K=512, H=14, N=1, variant="relu_pool")
    conv1 = dict(layer="conv1_2", C=64, K=64, H=224)
    return [
        # Tiles: 256x128 clearly fastest on conv3 at N=64; conv5 within the margin of the rule's.
        sweep("128x64", 100, **conv3), sweep("128x128", 90, **conv3), sweep("256x128", 80, **conv3),
        sweep("128x128", 50, **conv5), sweep("256x128", 49.5, **conv5),
        # Nearest batch: conv1 (K = 64, rule 256x64) measured at N=1 and N=128.
        sweep("128x64", 30, N=1, **conv1), sweep("128x128", 20, N=1, **conv1), sweep("256x64", 40, N=1, **conv1),
        sweep("128x64", 900, N=128, **conv1), sweep("256x128", 700, N=128, **conv1),
        sweep("256x64", 1000, N=128, **conv1),
        # auto: implicit_gemm wins fp16 channels_last by far, not NCHW (within the margin).
        ours("direct", 500, **conv3), ours("implicit_gemm", 100, **conv3),
        ours("direct", 500, layout="nchw", **conv3), ours("implicit_gemm", 495, layout="nchw", **conv3),
        # fp32 (TF32) on the first layer, C = 3 (the kernel sees 8), with the pool; the bare
        # conv row is ignored where the ReLU row exists.
        ours("direct", 200, dtype="fp32", layer="conv1_1", C=3, K=64, H=224, variant="relu_pool"),
        ours("implicit_gemm", 100, dtype="fp32", layer="conv1_1", C=3, K=64, H=224, variant="relu_pool"),
        ours("implicit_gemm", 1, dtype="fp16", variant="conv", **conv3),
        # Never auto's pick, however fast.
        ours("winograd_f4x4", 1, dtype="fp16", layer="conv4_2", C=512, K=512, H=28),
        ours("direct", 300, dtype="fp16", layer="conv4_2", C=512, K=512, H=28),
        # The torch baseline is not ours.
        row("torch", 1e-6, **conv3),
    ]


def test_tables_from_synthetic_rows():
    tiles = tune.tile_table(synthetic())
    assert [(e["C"], e["H"], e["N"], e["tile"]) for e in tiles] == [
        (64, 224, 1, "128x128"), (64, 224, 128, "256x128"), (256, 56, 64, "256x128")]
    autos = tune.auto_table(synthetic())
    # Both verdicts where both were measured (NCHW's implicit_gemm within the margin: direct).
    assert [(e["dtype"], e["channels_last"], e["C"], e["pool"], e["algo"]) for e in autos] == [
        ("float16", True, 256, False, "implicit_gemm"), ("float16", False, 256, False, "direct"),
        ("float32", True, 8, True, "implicit_gemm")]
    assert autos[0]["us"] == pytest.approx(100)  # the ReLU row, not the faster bare conv row


def test_excluded_tile_is_never_picked():
    """--exclude-tile (a tile the run's GPU tests failed): conv3's 256x128 is dropped and the
    next fastest is the rule's own 128x128, so conv3 gets no entry; a wgmma tile that wins
    is written unless excluded."""
    conv4 = dict(layer="conv4_2", C=512, K=512, H=28, N=64)
    rows = synthetic() + [sweep("128x128", 100, **conv4), sweep("wg128x128", 70, **conv4)]
    assert [(e["C"], e["tile"]) for e in tune.tile_table(rows) if e["N"] == 64] == [(256, "256x128"),
                                                                                  (512, "wg128x128")]
    assert [(e["C"], e["tile"]) for e in tune.tile_table(rows, {"256x128", "wg128x128"}) if e["N"] == 64] == []


def test_rows_with_a_wrong_result_are_never_picked():
    """A fast row whose recorded error against fp32 torch is garbage (a kernel wrong on the
    GPU) enters neither table; one within MAX_REL_ERR does."""
    conv4 = dict(layer="conv4_2", C=512, K=512, H=28, N=64)
    fast_wrong = sweep("wg128x128", 70, **conv4)
    fast_wrong["rel_err_vs_fp32"] = 1.3
    ok = sweep("wg128x128", 70, **conv4)
    ok["rel_err_vs_fp32"] = 1e-3
    base = [sweep("128x128", 100, **conv4)]
    assert [e["tile"] for e in tune.tile_table(base + [fast_wrong])] == []
    assert [e["tile"] for e in tune.tile_table(base + [ok])] == ["wg128x128"]
    wrong_ig = ours("implicit_gemm", 10, dtype="fp16", **conv4)
    wrong_ig["rel_err_vs_fp32"] = 0.9
    assert tune.auto_table([ours("direct", 500, dtype="fp16", **conv4), wrong_ig]) == []


def test_smoke_and_bf16_sweep_rows_are_never_picked():
    """The CPU smoke rows (layer "smoke", emulator times) never make an auto entry, and a
    bf16 tile-sweep row never makes a tile entry (the sweep's dtypes are fp16, and fp32
    as TF32); the same rows as fp16 GPU rows would."""
    smoke = dict(layer="smoke", C=8, K=8, H=8, N=1, dtype="fp32", layout="nchw", device="cpu")
    smoke_rows = [ours("direct", 5000, **smoke), ours("implicit_gemm", 100, **smoke)]
    assert tune.auto_table(smoke_rows) == []
    assert len(tune.auto_table([dict(r, layer="conv5_1") for r in smoke_rows])) == 1
    conv4 = dict(layer="conv4_2", C=512, K=512, H=28, N=64)
    bf16 = [sweep("128x128", 100, dtype="bf16", **conv4), sweep("256x128", 50, dtype="bf16", **conv4)]
    assert tune.tile_table(bf16) == []
    assert len(tune.tile_table([dict(r, dtype="fp16") for r in bf16])) == 1


def test_a_focus_run_updates_a_full_runs_sweep(tmp_path):
    """Runs of one GPU merged, oldest first: a later run's row of a case replaces the
    earlier one's, cases it did not time keep the earlier times, and the header names both
    runs; runs of different GPUs are refused (their times do not compare)."""
    conv3 = dict(layer="conv3_2", C=256, K=256, H=56, N=64)
    full = write(tmp_path / "full.json", [sweep("128x128", 90, **conv3), sweep("256x128", 80, **conv3),
                                          sweep("wg128x256", 70, **conv3)])
    focus = write(tmp_path / "focus.json", [sweep("wg128x256", 75, **conv3), sweep("ws128x256", 60, **conv3)])
    _, a, _ = tune.report.load(full)
    _, b, _ = tune.report.load(focus)
    merged = tune.merged_rows([a, b])
    assert sorted((r["tile"], round(r["median_s"] * 1e6)) for r in merged) == [
        ("128x128", 90), ("256x128", 80), ("wg128x256", 75), ("ws128x256", 60)]
    assert [(e["tile"], round(e["us"])) for e in tune.tile_table(merged)] == [("ws128x256", 60)]
    header = tmp_path / "conv3x3_tuned.h"
    assert tune.main([full, focus, "--write", "--header", str(header)]) == 0
    text = header.read_text()
    assert "ImplicitGemmTile::ws128x256" in text and "full.json, NVIDIA" in text and " + focus.json, NVIDIA" in text
    # A run under benchmarks/results/ is named by its path there (focus/NAME.json)
    results = os.path.join(ROOT, "benchmarks", "results")
    assert tune.describe({}, {"gpu_name": "G"}, os.path.join(results, "focus", "f.json")).startswith("focus/f.json, G")
    assert tune.describe({}, {"gpu_name": "G"}, os.path.join(results, "a.json")).startswith("a.json, G")
    other = write(tmp_path / "other.json", [sweep("ws128x256", 50, **conv3)], gpu="NVIDIA H200 (SYNTHETIC)")
    assert tune.main([full, other, "--write", "--header", str(tmp_path / "x.h")]) == 2
    assert not (tmp_path / "x.h").exists()


def test_without_gpu_rows_nothing_is_written(tmp_path):
    path = write(tmp_path / "cpu.json", [dict(r, device="cpu") for r in synthetic()])
    header = tmp_path / "conv3x3_tuned.h"
    assert tune.main([path, "--write", "--header", str(header)]) == 1
    assert not header.exists()


LOOKUP = r"""
#include <cstdio>
#include "common/conv3x3_implicit_gemm_plan.h"
using namespace vk;
static int tile(int64_t n, int64_t c, int64_t k, int64_t h, bool pool, bool tf32 = false) {
  const TunedTile* t = tuned_tile(kTunedTiles.data(), kTunedTiles.size(), tf32, n, c, k, h, h, pool);
  return t ? int(t->tile) : -1;
}
// The plan's tile for a call (the measured table, then the rule).
static int plan(DType d, bool wgmma, int64_t n, int64_t c, int64_t k, int64_t h) {
  Conv3x3Args a{};
  a.dtype = d, a.layout = Layout::nhwc, a.N = n, a.C = c, a.H = h, a.W = h, a.K = k, a.wgmma = wgmma;
  return int(implicit_gemm_tile(a));
}
static int algo(DType d, Layout l, int64_t n, int64_t c, int64_t k, int64_t h, bool pool, bool tf32) {
  return int(tuned_auto(kTunedAuto.data(), kTunedAuto.size(), d, l, n, c, k, h, h, pool, tf32));
}
int main() {
  std::printf("%d %d %d %d %d %d %d\n", tile(64, 256, 256, 56, false), tile(128, 256, 256, 56, false),
              tile(1, 512, 512, 14, true), tile(8, 64, 64, 224, false), tile(16, 64, 64, 224, false),
              tile(64, 256, 256, 56, true), tile(64, 256, 256, 28, false));
  std::printf("%d %d %d %d %d %d\n", algo(DType::float16, Layout::nhwc, 32, 256, 256, 56, false, false),
              algo(DType::bfloat16, Layout::nhwc, 32, 256, 256, 56, false, false),
              algo(DType::float16, Layout::nchw, 32, 256, 256, 56, false, false),
              algo(DType::float32, Layout::nhwc, 64, 3, 64, 224, true, true),
              algo(DType::float32, Layout::nhwc, 64, 3, 64, 224, true, false),
              algo(DType::float16, Layout::nhwc, 64, 512, 512, 28, false, false));
  std::printf("%d %d %d %d\n", tile(64, 256, 256, 56, false, true), tile(64, 512, 512, 28, false, true),
              tile(64, 512, 512, 28, false), tile(1, 512, 512, 14, true, true));
  std::printf("%d %d %d %d %d %d\n", plan(DType::float32, true, 64, 256, 256, 56),
              plan(DType::float32, false, 64, 256, 256, 56), plan(DType::float32, true, 64, 512, 512, 28),
              plan(DType::float16, true, 64, 512, 512, 28), plan(DType::float16, false, 64, 512, 512, 28),
              plan(DType::float16, true, 64, 256, 256, 56));
  std::printf("%s\n", kTunedSource);
}
"""


def tf32_sweep():
    """fp32 (TF32) sweep rows: wg128x128 beats the rule's 128x128 on conv3 (a tf32 entry);
    conv4 has an fp16 entry (wg128x256) and fp32 rows within the margin (no tf32 entry)."""
    conv3 = dict(layer="conv3_2", C=256, K=256, H=56, N=64, dtype="fp32", math="tf32")
    conv4 = dict(layer="conv4_2", C=512, K=512, H=28, N=64)
    return [sweep("128x128", 200, **conv3), sweep("wg128x128", 150, **conv3),
            sweep("128x128", 100, **conv4), sweep("wg128x256", 70, **conv4),
            sweep("128x128", 100, dtype="fp32", math="tf32", **conv4),
            sweep("wg128x256", 99, dtype="fp32", math="tf32", **conv4)]


def test_tf32_entries_come_from_fp32_rows_only():
    entries = tune.tile_table(synthetic() + tf32_sweep())
    assert [(e["C"], e["H"], e["N"], e["tile"], e["tf32"]) for e in entries] == [
        (64, 224, 1, "128x128", False), (64, 224, 128, "256x128", False), (256, 56, 64, "256x128", False),
        (512, 28, 64, "wg128x256", False), (256, 56, 64, "wg128x128", True)]


def test_a_tf32_entry_beats_what_fp32_would_run():
    """Without a TF32 entry fp32 runs the fp16 entry's tile, not the rule's: where the TF32
    sweep measured that tile slower than the rule's, an entry naming the rule's tile is
    written; where it measured fp16's tile fastest, none."""
    conv3 = dict(layer="conv3_2", C=256, K=256, H=56, N=64)
    tf32 = dict(dtype="fp32", math="tf32")
    rows = [sweep("128x128", 100, **conv3), sweep("256x128", 80, **conv3),  # fp16: 256x128
            sweep("128x128", 100, **conv3, **tf32), sweep("256x128", 150, **conv3, **tf32)]
    entries = [(e["tile"], e["tf32"]) for e in tune.tile_table(rows)]
    assert entries == [("256x128", False), ("128x128", True)]
    rows[3] = sweep("256x128", 90, **conv3, **tf32)
    assert [(e["tile"], e["tf32"]) for e in tune.tile_table(rows)] == [("256x128", False)]


def test_on_a_wgmma_run_an_entry_must_beat_the_wgmma_rule(tmp_path):
    """Where the run ran wgmma (its build had the wgmma tiles, its GPU is compute capability
    9.0: ran_wgmma), a call without an entry runs wgmma-wide's tile, so that is what an
    entry must beat: conv3's fastest, wg128x256, is the rule there (no entry), and conv4's
    mma.sync 128x128 beats it (an entry). Without wgmma, the reverse."""
    import json

    conv3 = dict(layer="conv3_2", C=256, K=256, H=56, N=64)
    conv4 = dict(layer="conv4_2", C=512, K=512, H=28, N=64)
    rows = [sweep("128x128", 100, **conv3), sweep("256x128", 90, **conv3), sweep("wg128x256", 70, **conv3),
            sweep("128x128", 60, **conv4), sweep("wg128x256", 100, **conv4)]
    picks = [(e["C"], e["tile"], e["against"], e["against_rule"]) for e in tune.tile_table(rows, wgmma=True)]
    assert picks == [(512, "128x128", "wg128x256", True)]
    picks = [(e["C"], e["tile"], e["against"], e["against_rule"]) for e in tune.tile_table(rows)]
    assert picks == [(256, "wg128x256", "128x128", True)]

    hopper = {"vggkern_build": {"cuda_wgmma": True}, "gpu_capability": "9.0"}
    assert tune.ran_wgmma(hopper)
    assert not tune.ran_wgmma(dict(hopper, gpu_capability="8.0"))  # an A100: no wgmma
    assert not tune.ran_wgmma(dict(hopper, vggkern_build={"cuda_wgmma": False}))  # a build without
    assert not tune.ran_wgmma({})  # a run that did not say
    for env, want in ((hopper, [512]), ({}, [256])):
        path = tmp_path / "run.json"
        data = json.loads(open(write(path, rows)).read())
        data["machine_info"]["vggkern_env"].update(env)
        path.write_text(json.dumps(data))
        assert tune.load_runs([str(path)])[3] == bool(env)
        assert tune.main([str(path), "--json", str(tmp_path / "t.json")]) == 0
        assert [e["C"] for e in json.loads((tmp_path / "t.json").read_text())["tiles"]] == want


def test_a_layer_whose_running_tile_was_not_timed_gets_no_entry():
    """A tile is picked only against what runs without an entry: where the rule's tile was
    not timed (skipped, failed, a focus run of other tiles), whatever was timed is not
    written unchallenged."""
    conv3 = dict(layer="conv3_2", C=256, K=256, H=56, N=64)
    assert tune.tile_table([sweep("wg128x128", 80, **conv3), sweep("wg128x256", 70, **conv3)]) == []
    assert [e["tile"] for e in tune.tile_table([sweep("wg128x128", 80, **conv3), sweep("wg128x256", 70, **conv3),
                                                sweep("128x128", 100, **conv3)])] == ["wg128x256"]


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to compile the generated header")
def test_written_header_compiles_and_answers(tmp_path):
    path = write(tmp_path / "2026-01-01_synthetic.json", synthetic() + tf32_sweep())
    common = tmp_path / "common"  # the tree's headers, with the generated table in place of the committed one
    shutil.copytree(os.path.join(ROOT, "csrc", "common"), common)
    assert tune.main([path, "--write", "--header", str(common / "conv3x3_tuned.h")]) == 0
    (tmp_path / "lookup.cpp").write_text(LOOKUP)
    exe = tmp_path / "lookup"
    subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", "-I", str(tmp_path), str(tmp_path / "lookup.cpp"),
                    "-o", str(exe)], check=True)
    tiles, autos, tf32, plans, source = subprocess.run([str(exe)], check=True, capture_output=True,
                                                       text=True).stdout.splitlines()
    # ImplicitGemmTile: 0 = 128x64, 1 = 128x128, 2 = 256x128, 3 = 256x64, 4 = wg128x128; -1: no entry.
    # N=128 takes the N=64 entry (the only one); N=8 is nearer 1 than 128, N=16 nearer 128;
    # conv3 with the pool has no entry of its own and takes the unpooled one (2); conv5
    # (within the margin) has neither.
    assert tiles.split() == ["2", "2", "-1", "1", "2", "2", "-1"]
    # TunedAlgo: 0 = direct, 1 = implicit_gemm. bf16 takes fp16's verdict (no entry of its
    # own); NCHW measured direct; fp32 needs TF32; conv4 has no implicit_gemm row (so no
    # entry): it takes the verdict of the measured layer nearest it, conv3's fp16 one (1).
    assert autos.split() == ["1", "1", "0", "1", "0", "1"]
    # tf32 entries: conv3's wg128x128 (4); conv4's fp32 rows were within the margin (-1),
    # its fp16 entry is wg128x256 (6).
    assert tf32.split() == ["4", "-1", "6", "-1"]
    # The plan: fp32 takes its tf32 entry (wg128x128), or without wgmma its twin 128x128
    # (1); where it has none, the fp16 entry as it is (wg128x256: 6; x is rounded to TF32
    # before wgmma reads it); fp16 takes wg128x256 where wgmma runs, else 128x128; conv3's
    # fp16 entry is 256x128 (2).
    assert plans.split() == ["4", "1", "6", "6", "1", "2"]
    assert source.startswith("2026-01-01_synthetic.json, NVIDIA H100 80GB HBM3 (SYNTHETIC)")


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to compile the generated header")
def test_header_source_string_survives_any_characters(tmp_path):
    """The source (a results file's name and its GPU's) is written into a string literal
    and a comment: quotes, backslashes (one last: a line splice would swallow the next
    line), a newline and non-ASCII come back from the compiled header as they were."""
    common = tmp_path / "common"
    shutil.copytree(os.path.join(ROOT, "csrc", "common"), common)
    source = 'r\u00e9sults "H100"\nnext line\tC:\\runs\\'
    (common / "conv3x3_tuned.h").write_text(tune.render_header([], [], source))
    (tmp_path / "source.cpp").write_text('#include <cstdio>\n#include "common/conv3x3_tuned.h"\n'
                                         'int main() { std::fputs(vk::kTunedSource, stdout); }\n')
    exe = tmp_path / "source"
    subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", "-I", str(tmp_path), str(tmp_path / "source.cpp"),
                    "-o", str(exe)], check=True)
    assert subprocess.run([str(exe)], check=True, capture_output=True).stdout.decode("utf-8") == source


def test_committed_header_is_what_tune_writes_from_the_run_it_names(committed_runs):
    """The header in the tree is tune's output, byte for byte, from the committed results
    files its source names (one run, or runs merged: "A.json, ... + focus/B.json, ..."): no
    hand edit, no table without its measurement."""
    import re

    text = open(os.path.join(ROOT, "csrc", "common", "conv3x3_tuned.h")).read()
    assert text.startswith("// GENERATED by `python -m benchmarks.tune")
    source = re.search(r'kTunedSource = "(.*)";', text).group(1)
    runs, _, excluded = source.partition("; excluded tiles: ")  # tune --exclude-tile's, replayed
    names = [part.split(",")[0] for part in runs.split(" + ")]
    rows, described, _, wgmma = tune.load_runs([os.path.join(ROOT, "benchmarks", "results", *n.split("/"))
                                                for n in names])
    tables = tune.run_time_tables(rows, described, set(excluded.split(", ")) if excluded else (), wgmma)
    assert tune.render_header(tables["tiles"], tables["auto"], tables["source"]) == text


def test_excluded_tiles_are_recorded_in_the_source(tmp_path):
    path = write(tmp_path / "2026-01-01_synthetic.json", synthetic() + tf32_sweep())
    header = tmp_path / "tuned.h"
    assert tune.main([path, "--exclude-tile", "wg128x256", "--exclude-tile", "256x128", "--write",
                      "--header", str(header)]) == 0
    text = header.read_text()
    assert "; excluded tiles: 256x128, wg128x256\";" in text
    assert "ImplicitGemmTile::m256n128" not in text and "ImplicitGemmTile::wg128x256" not in text
    assert tune.main([path, "--write", "--header", str(header)]) == 0  # without: both picked
    assert "ImplicitGemmTile::m256n128" in header.read_text() and "ImplicitGemmTile::wg128x256" in header.read_text()


def test_device_run_can_leave_the_wgmma_tiles_out(tmp_path):
    """device_run.sh's escape hatch when benchmarks/wgmma_probe.py fails: the sweep's tiles
    drop what VGGKERN_BENCH_EXCLUDE_TILES names; without a GPU the probe says it cannot run
    (exit 2), which device_run.sh reads as 'not runnable', not as a failure."""
    env = dict(os.environ, VGGKERN_BENCH_EXCLUDE_TILES="wg128x128,wg256x64,wg128x256,ws128x256,ws128x128")
    code = "from benchmarks import cases; print(','.join(cases.IMPLICIT_GEMM_TILES), cases.WGMMA_POLICIES)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True,
                         text=True).stdout.strip()
    assert out == "128x64,128x128,256x128,256x64 ()"
    # Without wg128x256, the wgmma policy is still timed and wgmma-wide is not (wgmma-ws is).
    env["VGGKERN_BENCH_EXCLUDE_TILES"] = "wg128x256"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True,
                         text=True).stdout.strip()
    assert out.endswith(" ('wgmma', 'wgmma-ws')"), out
    if not __import__("torch").cuda.is_available():
        probe = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "wgmma_probe.py")], cwd=ROOT,
                               capture_output=True, text=True)
        assert probe.returncode == 2 and "not runnable here" in probe.stdout, probe


def test_wgmma_probe_runs_several_items_per_ws_block(monkeypatch):
    """The probe's one-block runs of the ws tiles (VGGKERN_IMPLICIT_GEMM_GRID=1) take at least 4
    items, so the mbarriers' phases run on across items and each of ws128x128's two ping-pong
    warpgroups takes at least 2 (with the pool: no split-K, as the tensor-load probe sets)."""
    from benchmarks import wgmma_probe
    from vggkern import _C

    assert wgmma_probe.WS_TILES == ("ws128x256", "ws128x128")
    assert [wgmma_probe.grids(t) for t in ("wg128x128", "ws128x128")] == [("",), ("", "1")]
    for (n, c, h, w), k in (wgmma_probe.CASE, wgmma_probe.TENSOR_LOAD_CASE):
        for tile in wgmma_probe.WS_TILES:
            for pool in (False, True):
                monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_SPLIT_K", "1" if pool else "")
                items = _C.implicit_gemm_plan(n, c, h, w, k, 2, pool, 132, tile)["blocks"]
                assert items >= 4, (tile, pool, items)


def test_wgmma_probe_at_scale(monkeypatch, capsys):
    """--scale's cases are what it says on an H100/H200's 132 SMs: several items per block (a
    persistent grid), whole tiles, and stream-K with tiles in parts where it is on; and its
    verdicts, run here on tiny cases through the emulator: 0 where both match the exact sums,
    3 where only stream-K's are wrong, 1 where the whole tiles are (a wrong bit anywhere)."""
    import vggkern
    from benchmarks import wgmma_probe
    from vggkern import _C

    for on in ("off", "on"):
        monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_STREAM_K", on)
        for tile, (n, c, h, w), k, pool in (wgmma_probe.SCALE_WHOLE if on == "off" else wgmma_probe.SCALE_STREAM_K):
            plan = _C.implicit_gemm_plan(n, c, h, w, k, 2, pool, 132, tile)
            assert plan["tile"] == tile and plan["persistent"] and plan["grid"] <= 132, plan
            if on == "off":
                assert plan["sk_tiles"] == 0 and plan["blocks"] > plan["grid"], plan  # blocks take turns
            else:
                assert plan["sk_tiles"] > 0 and plan["max_parts"] >= 2, plan
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_GRID", "3")
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", "")  # at_scale sets both: restored after the test
    case = (("ws128x256", (2, 64, 9, 11), 136, False),)
    assert wgmma_probe.at_scale(case, case, device="cpu") == 0
    real = vggkern.conv3x3

    def wrong_when(stream_k):
        def conv(*a, **kw):
            y = real(*a, **kw)
            if os.environ["VGGKERN_IMPLICIT_GEMM_STREAM_K"] in stream_k:
                y[1, 7, 2, 3] += 1
            return y
        return conv

    monkeypatch.setattr(vggkern, "conv3x3", wrong_when(("on",)))
    capsys.readouterr()
    assert wgmma_probe.at_scale(case, case, device="cpu") == 3
    # The log says where (the planted element: pixel (1, 2, 3) of 9 x 11 is row 124 of M tile 0).
    assert ("2 of 2 tiles on 3 blocks)\n  1 of 26928 elements (0.00371%); M tiles 0 of 0-1; rows 124 of 0-127 in a "
            "tile; channels 7 of 0-255 in a tile, of K blocks 0 of 0-0; 0 of them 0; first (n=1, k=7, h=2, w=3)") \
        in capsys.readouterr().out
    monkeypatch.setattr(vggkern, "conv3x3", wrong_when(("on", "off")))
    assert wgmma_probe.at_scale(case, case, device="cpu") == 1
    monkeypatch.setattr(vggkern, "conv3x3", real)
    # Right values from a launch that did not run what the case asks: not a match.
    last = _C.implicit_gemm_last_copies
    monkeypatch.setattr(_C, "implicit_gemm_last_copies", lambda: dict(last(), stream_k=""))
    assert wgmma_probe.at_scale(case, case, device="cpu") == 3
    monkeypatch.setattr(_C, "implicit_gemm_last_copies", lambda: dict(last(), tile="wg128x256"))
    assert wgmma_probe.at_scale(case, case, device="cpu") == 1


def test_wgmma_probe_describes_a_mismatch():
    """What a first GPU run's log keeps of a wrong result: counts, then where in the kernel's
    tiles (M tiles of BM pixels, or BM/4 pooled windows, in (n, h, w) order; rows or windows
    within one; channels within BN, and K blocks), how many are 0, the first elements."""
    import torch

    from benchmarks.wgmma_probe import describe_mismatch

    want = torch.ones(2, 300, 14, 14)
    got = want.clone()
    got[1, 256:260, 3, 4] = 0  # pixel 1*196 + 3*14 + 4 = 242: tile 1, row 114; window tile 7, window 18
    got[0, 7, 0, 1] += 1  # pixel 1: tile 0, row 1
    assert describe_mismatch(want, want, "ws128x256", False) == "no element differs"
    assert describe_mismatch(got, want, "ws128x256", False) == (
        "5 of 117600 elements (0.00425%); M tiles 0-1 of 0-3; rows 1, 114 of 0-127 in a tile; channels 0-3, 7 of "
        "0-255 in a tile, of K blocks 0-1 of 0-1; 4 of them 0; first (n=0, k=7, h=0, w=1) 2 for 1, "
        "(n=1, k=256, h=3, w=4) 0 for 1, (n=1, k=257, h=3, w=4) 0 for 1")
    assert "; M tiles 0, 7 of 0-12; windows 1, 18 of 0-31 in a tile; " in describe_mismatch(got, want, "ws128x128",
                                                                                           True)
    assert describe_mismatch(got, want, "", False).startswith("5 of 117600 elements (0.00425%); 4 of them 0; first")


@pytest.mark.parametrize("policy", ["", "wgmma", "wgmma-wide", "wgmma-ws"])
def test_python_tile_choices_are_the_plans(policy, monkeypatch):
    """benchmarks/tiles.py (what the sweeps time and the tile an entry must beat) gives the
    tile the C++ plan picks, for every K from 1 to 1024, with no table entry."""
    from benchmarks import tiles
    from vggkern import _C

    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", policy)
    for k in range(1, 1025):
        for wgmma in (True, False):  # the rule where wgmma runs, and elsewhere (a policy needs wgmma)
            if policy and not wgmma:
                continue
            want = tiles.wgmma_policy_tile(k, policy) if policy else tiles.rule_tile(k, wgmma)
            # N = 3, H = W = 5: a shape the tuned table never holds (its layers are VGG's).
            got = _C.implicit_gemm_plan(3, 16, 5, 5, k, 2, False, 132, "", 0, wgmma)["tile"]
            assert got == want, (policy, k, wgmma)
    assert tiles.wgmma_policy_tiles(512) == ("wg128x128", "wg128x256", "ws128x256")
    assert tiles.wgmma_policy_tiles(128) == ("wg128x128", "ws128x128")
    assert tiles.wgmma_policy_tiles(64) == ("wg256x64",)


# ---- the same tables at run time: vggkern.set_tuned_tables (no rebuild) ------------------

@pytest.fixture
def run_time_tables(tmp_path):
    """tune.py --json's tables of the synthetic run, set; the build's again afterwards."""
    import vggkern

    path = write(tmp_path / "2026-01-01_synthetic.json", synthetic() + tf32_sweep())
    tables = tmp_path / "tables.json"
    assert tune.main([path, "--json", str(tables)]) == 0
    vggkern.set_tuned_tables(str(tables))
    yield tables
    vggkern.set_tuned_tables(None)


def test_run_time_tables_answer_as_the_written_header(run_time_tables):
    # The answers test_written_header_compiles_and_answers gets from a rebuilt header.
    import torch
    import vggkern
    from vggkern import _C

    def tile(n, c, k, h):
        return _C.implicit_gemm_plan(n, c, h, h, k, 2, False, 132)["tile"]

    def algo(dtype, fmt, n, c, k, h, pool, tf32):
        x = torch.empty(n, c, h, h, dtype=dtype).contiguous(memory_format=fmt)
        return vggkern.resolve_algo(x, k, pool=pool, allow_tf32=tf32)

    cl, nchw = torch.channels_last, torch.contiguous_format
    # The build's own answers (its committed header's tables), to come back after the reset.
    vggkern.set_tuned_tables(None)
    build = vggkern.tuned_tables()
    build_answers = (algo(torch.float16, cl, 32, 256, 256, 56, False, False), tile(64, 256, 256, 56))
    vggkern.set_tuned_tables(str(run_time_tables))

    got = vggkern.tuned_tables()
    assert got["run_time"] and got["source"].startswith("2026-01-01_synthetic.json, NVIDIA H100 80GB HBM3")
    assert len(got["tiles"]) == 5 and len(got["auto"]) == 3

    assert [tile(64, 256, 256, 56), tile(128, 256, 256, 56), tile(8, 64, 64, 224), tile(16, 64, 64, 224),
            tile(64, 256, 256, 28)] == ["256x128", "256x128", "128x128", "256x128", "wg128x256"]
    assert [algo(torch.float16, cl, 32, 256, 256, 56, False, False),
            algo(torch.bfloat16, cl, 32, 256, 256, 56, False, False),
            algo(torch.float16, nchw, 32, 256, 256, 56, False, False),
            algo(torch.float32, cl, 64, 3, 64, 224, True, True),
            algo(torch.float32, cl, 64, 3, 64, 224, True, False)] == [
        "implicit_gemm", "implicit_gemm", "direct", "implicit_gemm", "direct"]
    vggkern.set_tuned_tables(None)
    assert vggkern.tuned_tables() == build and not build["run_time"]
    assert (algo(torch.float16, cl, 32, 256, 256, 56, False, False), tile(64, 256, 256, 56)) == build_answers


def test_a_module_follows_new_tables(run_time_tables, tmp_path):
    # What Conv3x3 remembers of "auto" is keyed on the tables in use.
    import json

    import torch
    import vggkern

    conv = vggkern.Conv3x3(256, 256, relu=True).half()
    x = torch.empty(32, 256, 56, 56, dtype=torch.float16).contiguous(memory_format=torch.channels_last)
    assert conv._resolved_auto(x, False) == "implicit_gemm"
    no_auto = tmp_path / "no_auto.json"  # the same tables without their "auto" entries
    no_auto.write_text(json.dumps(dict(json.loads(run_time_tables.read_text()), auto=[], source="no auto")))
    vggkern.set_tuned_tables(str(no_auto))
    assert conv._resolved_auto(x, False) == "direct"
    vggkern.set_tuned_tables(str(run_time_tables))
    assert conv._resolved_auto(x, False) == "implicit_gemm"
    # ... and on the input's layout: the same shape in NCHW has no entry (direct).
    assert conv._resolved_auto(x.contiguous(), False) == "direct"
    assert conv._resolved_auto(x, False) == "implicit_gemm"


def test_auto_reads_an_ambiguous_layout_as_the_op_does():
    """A tensor contiguous both ways (H = W = 1) is NCHW to the op (torch's
    suggest_memory_format, which the op reads): resolve_algo looks up the NCHW entry."""
    import torch
    import vggkern
    from torch._prims_common import suggest_memory_format

    x = torch.empty(2, 8, 1, 1, dtype=torch.float16)
    assert x.is_contiguous(memory_format=torch.channels_last) and suggest_memory_format(x) == torch.contiguous_format
    entry = {"dtype": "float16", "C": 8, "K": 8, "H": 1, "W": 1, "pool": False, "N": 2}
    try:
        for nchw, cl in (("implicit_gemm", "direct"), ("direct", "implicit_gemm")):
            vggkern.set_tuned_tables({"auto": [dict(entry, channels_last=False, algo=nchw),
                                               dict(entry, channels_last=True, algo=cl)]})
            assert vggkern.resolve_algo(x, 8) == nchw
            assert vggkern.resolve_algo(x.contiguous(memory_format=torch.channels_last), 8) == nchw
    finally:
        vggkern.set_tuned_tables(None)


@pytest.mark.parametrize("cl_algo", ["implicit_gemm", "direct"])
def test_auto_reads_a_strided_channels_last_view_as_the_op_does(cl_algo):
    """A channels_last tensor's channel slice (strides (256, 1, 64, 16): channels_last-like,
    not channels_last-contiguous) is channels_last to the op: resolve_algo, the module's
    "auto" and the op's own "auto" all take the channels_last entry, and the op runs it."""
    import torch
    import vggkern
    from vggkern import _C

    x = torch.randn(1, 16, 4, 4, dtype=torch.float16).contiguous(memory_format=torch.channels_last)[:, :8]
    assert not x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    w = torch.randn(8, 8, 3, 3, dtype=torch.float16)
    nchw_algo = {"implicit_gemm": "direct", "direct": "implicit_gemm"}[cl_algo]
    entry = {"dtype": "float16", "C": 8, "K": 8, "H": 4, "W": 4, "pool": False, "N": 1}
    try:
        vggkern.set_tuned_tables({"auto": [dict(entry, channels_last=True, algo=cl_algo),
                                           dict(entry, channels_last=False, algo=nchw_algo)]})
        assert vggkern.resolve_algo(x, 8) == cl_algo
        conv = vggkern.Conv3x3(8, 8, bias=False).half()
        assert conv._resolved_auto(x, False) == cl_algo
        _C.emu_reset_global_stats()
        y = torch.ops.vggkern.conv3x3(x, w, None, False, False, "auto")
        ran = [name for name in _C.emu_global_stats() if name.startswith("conv3x3_")]
        assert ran and all(name.startswith(f"conv3x3_{cl_algo}") for name in ran), ran
        ref = torch.nn.functional.conv2d(x.double(), w.double(), padding=1)
        assert (y.double() - ref).abs().max().item() < 2e-2 * ref.abs().max().item()
    finally:
        vggkern.set_tuned_tables(None)


BAD_TABLES = [
    ({"tiles": [], "autos": []}, r"unknown keys \['autos'\]"),
    ({"tiles": [{"C": 60, "K": 64, "H": 8, "W": 8, "pool": False, "N": 1, "tile": "128x64", "tf32": False}]},
     r"expected tiles\[0\]\['C'\] to be a multiple of 8 .*got 60"),
    ({"tiles": [{"C": 64, "K": 64, "H": 8, "W": 8, "pool": 0, "N": 1, "tile": "128x64", "tf32": False}]},
     r"expected tiles\[0\]\['pool'\] to be a bool, got 0"),
    ({"tiles": [{"C": 64, "K": 64, "H": 8, "W": 8, "pool": False, "N": 1, "tile": "64x64", "tf32": False}]},
     r"expected tiles\[0\]\['tile'\] to be one of 128x64, .*got '64x64'"),
    ({"auto": [{"dtype": "float64", "channels_last": True, "C": 64, "K": 64, "H": 8, "W": 8, "pool": False, "N": 1,
                "algo": "direct"}]}, r"expected auto\[0\]\['dtype'\] to be one of float32, float16, bfloat16"),
    ({"auto": [{"dtype": "float16", "channels_last": True, "C": 64, "K": 64, "H": 8, "W": 8, "pool": False, "N": 0,
                "algo": "direct"}]}, r"expected auto\[0\]\['N'\] to be an int >= 1, got 0"),
    ({"auto": [{"dtype": "float16", "channels_last": True, "C": 64, "K": 64, "H": 8, "W": 8, "pool": False, "N": 1,
                "algo": "winograd_f4x4"}]}, r"expected auto\[0\]\['algo'\] to be one of direct, implicit_gemm"),
    # Values the C++ tables cannot hold: named, not a bare OverflowError / "embedded null character".
    ({"tiles": [{"C": 64, "K": 64, "H": 8, "W": 8, "pool": False, "N": 2**64, "tile": "128x64", "tf32": False}]},
     r"expected tiles\[0\]\['N'\] to be an int >= 1 that fits in 64 bits, got 18446744073709551616"),
    ({"auto": [{"dtype": "float16", "channels_last": True, "C": 2**70, "K": 64, "H": 8, "W": 8, "pool": False, "N": 1,
                "algo": "direct"}]}, r"expected auto\[0\]\['C'\] to be an int >= 1 that fits in 64 bits"),
    ({"source": "run\0x"}, r"expected tables\['source'\] to be a str without NUL characters"),
    # JSON true where an int belongs is not 1.
    ({"tiles": [{"C": 64, "K": True, "H": 8, "W": 8, "pool": False, "N": 1, "tile": "128x64", "tf32": False}]},
     r"expected tiles\[0\]\['K'\] to be an int >= 1, got True"),
    # Two answers for one lookup: the lookup would take whichever comes first.
    ({"tiles": [{"C": 64, "K": 64, "H": 8, "W": 8, "pool": False, "N": 1, "tile": "128x64", "tf32": False},
                {"C": 64, "K": 64, "H": 8, "W": 8, "pool": False, "N": 1, "tile": "256x128", "tf32": False}]},
     r"tiles\[1\] gives '256x128' where tiles\[0\] gives '128x64' for the same"),
    ({"auto": [{"dtype": "float16", "channels_last": True, "C": 64, "K": 64, "H": 8, "W": 8, "pool": False, "N": 1,
                "algo": "direct"}, {"dtype": "float32", "channels_last": True, "C": 64, "K": 64, "H": 8, "W": 8,
                                    "pool": False, "N": 1, "algo": "implicit_gemm"},
               {"dtype": "float16", "channels_last": True, "C": 64, "K": 64, "H": 8, "W": 8, "pool": False, "N": 1,
                "algo": "implicit_gemm"}]},
     r"auto\[2\] gives 'implicit_gemm' where auto\[0\] gives 'direct' for the same"),
]


@pytest.mark.parametrize("tables,match", BAD_TABLES, ids=range(len(BAD_TABLES)))
def test_bad_tables_are_refused_whole(run_time_tables, tables, match):
    import vggkern

    before = vggkern.tuned_tables()
    with pytest.raises(ValueError, match="set_tuned_tables: " + match):
        vggkern.set_tuned_tables(tables)
    assert vggkern.tuned_tables() == before  # the tables in use stay as they were
    with pytest.raises(TypeError, match="expected a dict, a JSON file's path or None, got list"):
        vggkern.set_tuned_tables([])


def test_tables_from_the_environment_at_import(run_time_tables, tmp_path):
    code = "import vggkern; t = vggkern.tuned_tables(); print(t['run_time'], len(t['tiles']), len(t['auto']))"
    env = dict(os.environ, VGGKERN_TUNED_TABLES=str(run_time_tables))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.split() == ["True", "5", "3"], out.stderr[-2000:]
    env["VGGKERN_TUNED_TABLES"] = str(tmp_path / "missing.json")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode != 0 and "ImportError: vggkern: VGGKERN_TUNED_TABLES=" in out.stderr


def test_the_op_launches_the_run_time_tables_tile(monkeypatch):
    # End to end through the op (the emulator counts the kernel's shared-memory traffic):
    # a tile entry set at run time makes the launch the forced tile's, not the rule's.
    import torch
    import vggkern
    from vggkern import _C

    x = torch.randn(1, 16, 16, 16, dtype=torch.float16).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(32, 16, 3, 3, dtype=torch.float16), torch.randn(32, dtype=torch.float16)

    def launch():
        _C.emu_reset_bank_stats()
        y = vggkern.conv3x3(x, w, b, relu=True, algo="implicit_gemm")
        return _C.emu_bank_stats(), y

    rule, _ = launch()  # K = 32 <= 64: the rule's 256x64
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", "256x128")
    forced, y_forced = launch()
    monkeypatch.delenv("VGGKERN_IMPLICIT_GEMM_TILE")
    assert forced != rule
    vggkern.set_tuned_tables({"source": "test", "tiles": [
        {"C": 16, "K": 32, "H": 16, "W": 16, "pool": False, "N": 1, "tile": "256x128", "tf32": False}]})
    try:
        tabled, y_tabled = launch()
    finally:
        vggkern.set_tuned_tables(None)
    assert tabled == forced and torch.equal(y_tabled, y_forced)
    assert launch()[0] == rule  # the build's tables again


def test_rows_without_a_valid_time_are_never_compared():
    """A NaN median (a broken timing) must not decide anything: min() over a sweep that
    meets it first returned it, hiding the tile that did beat the rule's."""
    conv4 = dict(layer="conv4_2", C=512, K=512, H=28, N=64)
    nan = float("nan")
    rows = [dict(sweep("wg128x128", 1, **conv4), median_s=nan), sweep("256x128", 80, **conv4),
            sweep("128x128", 100, **conv4)]
    for order in (rows, rows[::-1]):
        assert [e["tile"] for e in tune.tile_table(order)] == ["256x128"]
    # auto: a NaN ReLU row of implicit_gemm leaves the decision to the valid bare-conv row.
    autos = [dict(ours("implicit_gemm", 1, **conv4), median_s=nan), ours("direct", 500, **conv4),
             ours("implicit_gemm", 100, variant="conv", **conv4)]
    for order in (autos, autos[::-1]):
        assert [(e["algo"], e["us"]) for e in tune.auto_table(order)] == [("implicit_gemm", pytest.approx(100))]


def test_repeated_table_entries_that_agree_are_taken():
    """The same entry twice (tables merged from two files, say) is no conflict; entries
    that differ in tf32 (tiles) or dtype/layout (auto) are different lookups."""
    import vggkern

    tile = {"C": 64, "K": 64, "H": 8, "W": 8, "pool": False, "N": 1, "tile": "128x64", "tf32": False}
    auto = {"dtype": "float16", "channels_last": True, "C": 64, "K": 64, "H": 8, "W": 8, "pool": False, "N": 1,
            "algo": "implicit_gemm"}
    try:
        vggkern.set_tuned_tables({"tiles": [tile, tile, dict(tile, tile="256x128", tf32=True)],
                                  "auto": [auto, auto, dict(auto, channels_last=False, algo="direct")]})
        got = vggkern.tuned_tables()
        assert len(got["tiles"]) == 3 and len(got["auto"]) == 3
    finally:
        vggkern.set_tuned_tables(None)


def test_a_tables_file_that_is_not_json_is_named(tmp_path):
    """A file cut short or not JSON: a ValueError naming the file (json's own message
    names only a line and column), the tables in use unchanged."""
    import vggkern

    before = vggkern.tuned_tables()
    for text in ("", '{"tiles": [{"C": 64,'):
        bad = tmp_path / "tables.json"
        bad.write_text(text)
        with pytest.raises(ValueError, match=f"set_tuned_tables: {bad}: not a JSON file"):
            vggkern.set_tuned_tables(str(bad))
        assert vggkern.tuned_tables() == before


def test_a_batch_equally_far_from_two_entries_takes_the_larger():
    """Nearest batch by ratio, ties to the larger (conv3x3_tuning.h): N = 4 is as far from
    an entry measured at N = 2 as from one at N = 8 (a factor 2 each way), so the N = 8
    entry decides, whichever order the table lists them in; N = 3 is nearer 2."""
    import torch
    import vggkern
    from vggkern import _C

    layer = {"C": 64, "K": 64, "H": 8, "W": 8, "pool": False}
    tiles = [dict(layer, N=2, tile="128x64", tf32=False), dict(layer, N=8, tile="256x128", tf32=False)]
    autos = [dict(layer, dtype="float16", channels_last=True, N=2, algo="direct"),
             dict(layer, dtype="float16", channels_last=True, N=8, algo="implicit_gemm")]

    def x(n):
        return torch.empty(n, 64, 8, 8, dtype=torch.float16).contiguous(memory_format=torch.channels_last)

    try:
        for order in (slice(None), slice(None, None, -1)):
            vggkern.set_tuned_tables({"source": "test", "tiles": tiles[order], "auto": autos[order]})
            assert _C.implicit_gemm_plan(4, 64, 8, 8, 64, 2, False, 132)["tile"] == "256x128"
            assert _C.implicit_gemm_plan(3, 64, 8, 8, 64, 2, False, 132)["tile"] == "128x64"
            assert vggkern.resolve_algo(x(4), 64) == "implicit_gemm"
            assert vggkern.resolve_algo(x(3), 64) == "direct"
    finally:
        vggkern.set_tuned_tables(None)


def test_auto_takes_the_nearest_measurement_of_its_layer():
    """A call whose own (dtype, format, batch, pool) was not measured takes the verdict
    measured nearest it on the same (C, K, H, W) (conv3x3_tuning.h's tuned_auto): fp32 or
    16-bit first, then the memory format, then fp16/bf16, then the batch, then the pool.
    Every table order answers the same."""
    import itertools

    import torch
    import vggkern

    layer = {"C": 256, "K": 256, "H": 56, "W": 56}
    autos = [dict(layer, dtype="float16", channels_last=True, pool=False, N=64, algo="implicit_gemm"),
             dict(layer, dtype="float16", channels_last=True, pool=False, N=1, algo="direct"),
             dict(layer, dtype="float16", channels_last=False, pool=False, N=64, algo="direct"),
             dict(layer, dtype="float32", channels_last=True, pool=True, N=64, algo="implicit_gemm")]

    def algo(dtype, fmt, n, pool=False, tf32=True, c=256, h=56):
        x = torch.empty(n, c, h, h, dtype=dtype).contiguous(memory_format=fmt)
        return vggkern.resolve_algo(x, c, pool=pool, allow_tf32=tf32)

    cl, nchw = torch.channels_last, torch.contiguous_format
    try:
        for order in itertools.permutations(autos):
            vggkern.set_tuned_tables({"source": "test", "tiles": [], "auto": list(order)})
            assert [algo(torch.bfloat16, cl, 64),         # fp16's verdict, same format and batch
                    algo(torch.bfloat16, cl, 2),          # fp16's at the nearer batch, 1
                    algo(torch.float16, cl, 64, pool=True),  # the unpooled entry
                    algo(torch.bfloat16, nchw, 64),       # NCHW fp16's before channels_last bf16's
                    algo(torch.float32, nchw, 64),        # fp32's own (channels_last, pooled)
                    algo(torch.float32, nchw, 64, tf32=False)] == [  # implicit_gemm needs TF32
                "implicit_gemm", "direct", "implicit_gemm", "direct", "implicit_gemm", "direct"]
    finally:
        vggkern.set_tuned_tables(None)


def test_a_layer_never_measured_takes_the_nearest_measured_layers_verdict():
    """A call on a layer the table does not hold (another image size, other channels) takes
    the verdict of the entry nearest it: fp32 or 16-bit and the format first (as for a
    measured layer), then the work (C, K and N*H*W: conv3x3_tuning.h's work_distance), then
    the pool; an empty table runs direct. Every table order answers the same."""
    import itertools

    import torch
    import vggkern

    small = {"C": 8, "K": 64, "H": 224, "W": 224, "pool": False}     # conv1_1: direct at batch 1
    large = {"C": 256, "K": 256, "H": 56, "W": 56, "pool": False}    # conv3_2
    autos = [dict(small, dtype="float16", channels_last=True, N=1, algo="direct"),
             dict(small, dtype="float16", channels_last=True, N=64, algo="implicit_gemm"),
             dict(large, dtype="float16", channels_last=True, N=64, algo="implicit_gemm"),
             dict(large, dtype="float32", channels_last=False, N=64, algo="direct")]

    def algo(dtype, n, c, k, h, fmt=torch.channels_last, tf32=True):
        x = torch.empty(n, c, h, h, dtype=dtype).contiguous(memory_format=fmt)
        return vggkern.resolve_algo(x, k, allow_tf32=tf32)

    try:
        for order in itertools.permutations(autos):
            vggkern.set_tuned_tables({"source": "test", "tiles": [], "auto": list(order)})
            assert [algo(torch.float16, 64, 512, 512, 28),  # conv4_2: nearest conv3_2 (x2 C, K; /4 pixels)
                    algo(torch.bfloat16, 64, 256, 256, 64),  # conv3_2 at 256 x 256 input: fp16's verdict
                    algo(torch.float16, 1, 3, 64, 256),      # conv1_1 at 256 x 256, batch 1: work as batch 1's
                    algo(torch.float16, 32, 3, 64, 256),     # ... at batch 32: nearer batch 64's
                    algo(torch.float16, 64, 16, 16, 4),      # 16 channels, 4 x 4: least work, conv1_1 batch 1's
                    algo(torch.float32, 64, 512, 512, 28, torch.contiguous_format),  # fp32 NCHW's own
                    algo(torch.float32, 64, 512, 512, 28)] == [  # fp32 channels_last: fp32 NCHW's, not fp16's
                "implicit_gemm", "implicit_gemm", "direct", "implicit_gemm", "direct", "direct", "direct"]
        vggkern.set_tuned_tables({"source": "empty", "tiles": [], "auto": []})
        assert algo(torch.float16, 64, 512, 512, 28) == "direct"
    finally:
        vggkern.set_tuned_tables(None)


def test_prepared_weight_rows_are_never_picked():
    """auto's table weighs the raw-weight calls (what a functional call costs); a row timed
    with the weight prepared once makes no entry, the same row with the raw weight does."""
    conv4 = dict(layer="conv4_2", C=512, K=512, H=28, N=64, dtype="fp16")
    direct, ig = ours("direct", 500, **conv4), ours("implicit_gemm", 100, **conv4)
    assert tune.auto_table([direct, dict(ig, weight="prepared")]) == []
    assert len(tune.auto_table([direct, ig])) == 1


def test_without_the_running_tile_timed_the_plain_call_stands_in():
    """A sweep that did not time what runs (the rule's tile) compares with the plain call's
    row (no forced tile) of the same layer; with neither, no entry."""
    conv3 = dict(layer="conv3_2", C=256, K=256, H=56, N=64)
    swept = [sweep("wg128x128", 80, **conv3), sweep("wg128x256", 70, **conv3)]
    assert [e["tile"] for e in tune.tile_table(swept + [ours("implicit_gemm", 100, **conv3)])] == ["wg128x256"]
    assert tune.tile_table(swept + [ours("implicit_gemm", 71, **conv3)]) == []  # within the margin
    assert tune.tile_table(swept) == []
