"""benchmarks/report.py on a SYNTHETIC results file (made up here, never a measurement)."""
import json
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
report = pytest.importorskip("benchmarks.report")
from benchmarks.tiles import is_wgmma  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def row(impl, median, iqr=1e-6, **p):
    base = {"group": "conv", "layer": "conv3_2+conv3_3", "N": 64, "C": 256, "K": 256, "H": 56, "dtype": "fp16",
            "layout": "cl", "variant": "relu", "math": "-", "algo": "cudnn", "tier": "quick", "device": "cuda",
            "flops": 2 * 64 * 256 * 256 * 9 * 56 * 56, "flops_kind": "direct", "peak": 989.4, "math_peak": "fp16"}
    base.update(p)
    base.update(impl=impl, median_s=median, iqr_s=iqr, min_s=median, max_s=median, repeats=5, iters=3)
    if base["flops"]:
        base["tflops"] = base["flops"] / median / 1e12
        base["pct_peak"] = 100 * base["tflops"] / base["peak"]
        if "winograd" in base["algo"]:
            base["flops_kind"] = "effective (direct-conv FLOPs)"
    else:
        base["gbps"] = 1.0
    base["id"] = "-".join([base["group"], impl] + [str(base[k]) for k in ("layer", "N", "C", "H", "dtype",
                                                                          "layout", "variant", "math", "algo")])
    return base


def write(path, rows, gpu="NVIDIA H100 80GB HBM3 (SYNTHETIC)"):
    data = {"machine_info": {"vggkern_env": {"gpu_name": gpu, "git_commit": "synthetic", "date_utc": "synthetic"}},
            "benchmarks": [{"name": r["id"], "extra_info": r} for r in rows],
            "vggkern_bench_set": "quick", "vggkern_skipped": [{"id": "x", "reason": "time budget exhausted"}]}
    path.write_text(json.dumps(data))
    return str(path)


def synthetic_rows(ours_time=1.0e-3):
    return [
        row("torch", 2.0e-3, layout="nchw"),
        row("torch", 1.5e-3, layout="cl"),
        row("vggkern", ours_time, algo="winograd_f2x2"),
        row("torch", 1.0e-4, group="maxpool", C=256, H=56, layout="cl", flops=None),
        row("vggkern", 0.5e-4, group="maxpool", C=256, H=56, layout="cl", flops=None),
    ]


def test_annotate_speedup_against_best_torch(tmp_path):
    _, rows, _ = report.load(write(tmp_path / "r.json", synthetic_rows()))
    report.annotate(rows)
    ours = [r for r in rows if r["impl"] == "vggkern" and r["group"] == "conv"][0]
    assert ours["speedup_vs_best_torch"] == pytest.approx(1.5)       # best torch is channels_last
    assert ours["best_torch"].startswith("torch cl")
    pool = [r for r in rows if r["impl"] == "vggkern" and r["group"] == "maxpool"][0]
    assert pool["speedup_vs_best_torch"] == pytest.approx(2.0)


def test_render_markdown(tmp_path):
    text, _, _ = report.render(write(tmp_path / "r.json", synthetic_rows()))
    assert "conv3_2+conv3_3" in text and "1.50×" in text
    assert "eff TFLOP/s" in text                                     # Winograd labelled effective
    assert "time budget exhausted" in text
    assert "H100 SXM" in text                                        # peaks table found the GPU


def test_compare_flags_regression(tmp_path):
    old = write(tmp_path / "old.json", synthetic_rows(1.0e-3))
    new = write(tmp_path / "new.json", synthetic_rows(1.3e-3))
    text, regressions = report.compare(old, new, threshold=0.05)
    assert len(regressions) == 1 and "REGRESSION" in text
    same, none = report.compare(old, old)
    assert none == [] and "0 regressions" in same
    assert report.main(["--compare", old, new, "--fail-on-regression"]) == 1


def test_compare_lists_cases_in_one_file_only(tmp_path):
    rows = synthetic_rows(1.0e-3)
    old = write(tmp_path / "old.json", rows)
    new = write(tmp_path / "new.json", rows[:2] + rows[3:])  # ours on conv gone (failed, say)
    text, regressions = report.compare(old, new)
    assert regressions == []
    gone = text.split("## Only in old", 1)[1].splitlines()
    assert gone[0].endswith(": 1") and gone[2] == f"- {rows[2]['id']}", text
    assert "## Only in new" not in text
    back, _ = report.compare(new, old)
    assert "## Only in old" not in back and f"- {rows[2]['id']}" in back.split("## Only in new: 1", 1)[1]


def test_compare_matches_k_order_rows_from_before_the_x_path_was_removed(tmp_path):
    """A K order row timed with x past L1 (x_cache "l2", id ending "-l2") is today's K order
    row (no x_cache, no suffix): compared, not listed apart; one through L1 (a path gone)
    stays in the old file only."""
    k = dict(algo="implicit_gemm", tile="wg128x128", k_order="taps_inner")

    def k_row(median, **p):
        r = row("vggkern", median, **k, **p)
        r["id"] += "-wg128x128-taps_inner" + (f"-{p['x_cache']}" if "x_cache" in p else "")
        return r
    old = write(tmp_path / "old.json", [k_row(1.0e-3, x_cache="l2"), k_row(0.9e-3, x_cache="l1")])
    new = write(tmp_path / "new.json", [k_row(1.3e-3)])
    text, regressions = report.compare(old, new, threshold=0.05)
    assert len(regressions) == 1 and regressions[0][0]["id"].endswith("-taps_inner"), text
    assert "1 rows matched" in text and "## Only in new" not in text
    assert text.split("## Only in old", 1)[1].splitlines()[2].endswith("-taps_inner-l1"), text


def test_fail_on_regression_needs_one_gpu(tmp_path, capsys):
    old = write(tmp_path / "old.json", synthetic_rows(1.0e-3))
    new = write(tmp_path / "new.json", synthetic_rows(1.0e-3), gpu="NVIDIA H200 (SYNTHETIC)")
    assert report.main(["--compare", old, new]) == 0  # a report across GPUs is allowed, with a warning
    assert "different GPUs" in capsys.readouterr().out
    assert report.main(["--compare", old, new, "--fail-on-regression"]) == 2
    assert "same GPU" in capsys.readouterr().err


def test_compare_ignores_noise(tmp_path):
    old = write(tmp_path / "old.json", [row("vggkern", 1.0e-3, iqr=0.5e-3)])
    new = write(tmp_path / "new.json", [row("vggkern", 1.2e-3, iqr=0.5e-3)])
    assert report.compare(old, new)[1] == []                          # within the IQR: not flagged


def test_compare_ignores_noise_in_improvements_too(tmp_path):
    old = write(tmp_path / "old.json", [row("vggkern", 1.2e-3, iqr=0.5e-3)])
    new = write(tmp_path / "new.json", [row("vggkern", 1.0e-3, iqr=0.5e-3)])
    assert "0 improvements" in report.compare(old, new)[0]             # within the IQR: unchanged
    tight = write(tmp_path / "tight.json", [row("vggkern", 1.0e-3, iqr=1e-6)])
    assert "1 improvements" in report.compare(write(tmp_path / "o.json", [row("vggkern", 1.2e-3, iqr=1e-6)]),
                                              tight)[0]


def test_headline_batch_and_fusion(tmp_path):
    """The headline table shows one batch, 64 where the run has it, else the largest, and
    the per-layer rows with ReLU (and pool) only, not the bare conv or bias-only rows."""
    def runs(*ns, variants=("relu",)):
        return [row(impl, t * n, N=n, variant=v) for n in ns for v in variants
                for impl, t in (("torch", 2e-5), ("vggkern", 1e-5))]

    for ns, shown in (((1, 64, 128), 64), ((1, 128, 8), 128)):
        text, _, _ = report.render(write(tmp_path / "r.json", runs(*ns)), headline_only=True)
        assert f"Per layer, batch {shown} " in text, ns
    text, _, _ = report.render(write(tmp_path / "r.json", runs(64, variants=("conv", "bias", "relu"))),
                               headline_only=True)
    layer_rows = [ln for ln in text.splitlines() if ln.startswith("| conv3_2+conv3_3 (")]
    assert len(layer_rows) == 1 and "| relu |" in layer_rows[0], layer_rows


def test_latest_is_the_newest_run_by_time_not_by_name(tmp_path):
    older, newer = tmp_path / "b_old.json", tmp_path / "a_new.json"
    for i, p in enumerate((older, newer)):
        p.write_text("{}")
        os.utime(p, (1_000_000 + i * 100, 1_000_000 + i * 100))
    assert report.latest(str(tmp_path)) == str(newer)
    assert report.latest(str(tmp_path / "none")) is None
    # A run's recorded time wins over the file's (a fresh clone's files share the checkout's):
    # the older run, touched last, is still the older.
    for p, date in ((older, "2026-12-04T10:00:00+00:00"), (newer, "2026-12-04T16:00:00+00:00")):
        p.write_text(json.dumps({"machine_info": {"vggkern_env": {"date_utc": date}}}))
    os.utime(older, (2_000_000, 2_000_000))
    assert report.latest(str(tmp_path)) == str(newer)


def test_main_writes_md_and_survives_missing_matplotlib(tmp_path, capsys):
    path = write(tmp_path / "r.json", synthetic_rows())
    md, png = tmp_path / "s.md", tmp_path / "s.png"
    assert report.main([path, "--md", str(md), "--plot", str(png)]) == 0
    assert "## All rows" in md.read_text()
    out = capsys.readouterr().out
    assert png.exists() or "matplotlib is not installed" in out


def test_tile_sweep_rows_stay_out_of_best_ours(tmp_path):
    """A forced-tile row (the tile sweep) is not what a call runs: it is left out of "best
    ours" and shown in the tile-sweep table beside the default's time."""
    rows = [row("torch", 1.5e-3), row("vggkern", 1.2e-3, algo="implicit_gemm"),
            row("vggkern", 0.9e-3, algo="implicit_gemm", tile="256x128"),
            row("vggkern", 1.4e-3, algo="implicit_gemm", tile="128x64"),
            row("vggkern", 1.0e-3, algo="implicit_gemm", tile="wg128x128")]
    for r in rows[2:]:
        r["id"] += "-" + r["tile"]
    text, _, _ = report.render(write(tmp_path / "r.json", rows), headline_only=True)
    best = [line for line in text.splitlines() if line.startswith("| conv3_2+conv3_3 (256")]
    assert len(best) == 1 and "ours implicit_gemm cl" in best[0] and "1.25×" in best[0], best
    sweep = [line for line in text.splitlines() if line.startswith("| conv3_2+conv3_3 | 64 |")]
    # 128x64, 256x128, wg128x128 (wgmma tiles after the mma.sync ones), default, fastest
    assert sweep == ["| conv3_2+conv3_3 | 64 | relu | 1400 | 900.0 | 1000 | 1200 | 256x128 |"], sweep


def test_tile_sweep_has_a_table_per_dtype(tmp_path):
    """fp32 (TF32) sweep rows get their own table, beside fp32's default time; the fp16
    table stays as it was."""
    from benchmarks import tune

    fp32 = dict(dtype="fp32", math="tf32", peak=494.7, math_peak="tf32")
    rows = [row("vggkern", 1.2e-3, algo="implicit_gemm"),
            row("vggkern", 1.0e-3, algo="implicit_gemm", tile="wg128x128"),
            row("vggkern", 2.4e-3, algo="implicit_gemm", **fp32),
            row("vggkern", 1.5e-3, algo="implicit_gemm", tile="wg128x128", **fp32),
            row("vggkern", 1.8e-3, algo="implicit_gemm", tile="wg128x256", **fp32)]
    for r in rows:
        r["id"] += "-" + r.get("tile", "")
    text, _, _ = report.render(write(tmp_path / "r.json", rows), headline_only=True)
    lines = text.splitlines()
    titles = [ln for ln in lines if ln.startswith("implicit_gemm tile sweep")]
    assert [t.split(" channels_last")[0] for t in titles] == ["implicit_gemm tile sweep (fp16",
                                                             "implicit_gemm tile sweep (fp32 (TF32)"]
    body = [ln for ln in lines if ln.startswith("| conv3_2+conv3_3 | 64 |")]
    assert body == ["| conv3_2+conv3_3 | 64 | relu | 1000 | 1200 | wg128x128 |",
                    "| conv3_2+conv3_3 | 64 | relu | 1500 | 1800 | 2400 | wg128x128 |"], body
    # fp32 without a tf32 entry runs fp16's entry's tile, wg128x128, TF32's fastest too: no
    # tf32 entry (test_tune.py's tf32 tests have one).
    assert [(e["tile"], e["tf32"]) for e in tune.tile_table(rows)] == [("wg128x128", False)]
    # The default column is the plain call's: not a prepared-weight row, nor a wrong one,
    # whichever comes last in the file.
    more = [dict(row("vggkern", 0.9e-3, algo="implicit_gemm", weight="prepared"), id="prepared"),
            dict(row("vggkern", 0.1e-3, algo="implicit_gemm", accuracy_ok=False), id="wrong")]
    text, _, _ = report.render(write(tmp_path / "r2.json", rows + more), headline_only=True)
    body = [ln for ln in text.splitlines() if ln.startswith("| conv3_2+conv3_3 | 64 |")]
    assert body[0] == "| conv3_2+conv3_3 | 64 | relu | 1000 | 1200 | wg128x128 |", body


def test_roofline_counts_vgg16():
    """benchmarks/roofline.py: the FLOPs are VGG16's (the benchmark's own count), every
    efficiency is a fraction, and no prediction beats its floors."""
    from benchmarks import cases, roofline

    for n, tile in ((64, None), (1, "256x128"), (64, "wgmma"), (64, "wgmma-wide"), (64, "wgmma-ws")):
        rows = roofline.layer_rows(n, "H100 SXM", "fp16", tile)
        assert len(rows) == 13
        fc = 2 * (512 * 7 * 7 * 4096 + 4096 * 4096 + 4096 * 1000)
        assert sum(r["gflop"] for r in rows) * 1e9 == pytest.approx(n * (cases.network_flops("vgg16") - fc))
        for r in rows:
            assert 0 < r["smem_cap"] <= 1 and 0 < r["tail"] <= 1 and 0 < r["pad"] <= 1 and 0 < r["alone"] <= 1
            # Only a tile that holds an SM alone leaves its prologue and epilogue unhidden.
            assert (r["alone"] < 1) == (roofline.TILES[r["tile"]][2] == 1)
            assert r["predicted_us"] >= max(r["flop_floor_us"], r["byte_floor_us"]) * 0.999
            want = {None: "wg256x64" if r["K"] <= 64 else "wg128x256" if r["K"] >= 256 else "wg128x128",  # Hopper's rule
                    "wgmma": "wg256x64" if r["K"] <= 64 else "wg128x128",
                    "wgmma-wide": "wg256x64" if r["K"] <= 64 else "wg128x256" if r["K"] >= 256 else "wg128x128",
                    "wgmma-ws": "wg256x64" if r["K"] <= 64 else "ws128x256" if r["K"] >= 256 else "ws128x128",
                    }.get(tile, tile)
            assert r["tile"] == want
    # The counted caps: 64 x 32 warps (the first version) would be 50%; 64 x 64 warps 57-73%.
    assert roofline.smem_cap(128, 128) == pytest.approx(256 / 384)
    assert roofline.smem_cap(256, 128) == pytest.approx(512 / 704)
    assert roofline.smem_cap(128, 64) == pytest.approx(128 / 224)
    # wgmma: per k16, wgmma's own reads ((64 + N) rows x 32 bytes each) plus the cp.async writes.
    assert roofline.smem_cap(128, 128, "wg128x128") == pytest.approx(256 / 320)
    assert roofline.smem_cap(256, 64, "wg256x64") == pytest.approx(256 / 320)
    assert roofline.smem_cap(128, 256, "wg128x256") == pytest.approx(1.0)  # 512 clocks, 512 wavefronts
    # A persistent ws block pays one first load over its items and stores y from registers:
    # more of its time is main loop than a one-item block's, less the fewer its items.
    assert roofline.unhidden(128, 256, 72, 0.8, 1) < roofline.unhidden(128, 256, 72, 0.8, 1, items=2) < \
        roofline.unhidden(128, 256, 72, 0.8, 1, items=12) < 1
    # Ping-pong (ws128x128) stores one item's y under the other warpgroup's main loop: only the
    # first load is left, over the block's items.
    pp = roofline.unhidden(128, 128, 18, 0.8, 1, items=4, ping_pong=True)
    assert roofline.unhidden(128, 128, 18, 0.8, 1, items=4) < pp < 1
    assert pp == pytest.approx(1 / (1 + roofline.FILL_CLOCKS / 4 / (128 * 128 * 32 * 18 / 2048 / 0.8)))
    assert roofline.main(["--batch", "2"]) == 0


def test_roofline_counts_x_rows_from_l2():
    """roofline.x_rows_from_l2 on hand-worked cases: one 4 x 4 image in one 16-row tile:
    every in-image (pixel, tap) pair, (2+3+3+2)^2 = 100 rows over 9 slices; pooled, the
    same pixels in window order. Two 4 x 4 images in 8-row tiles (two image rows each): a
    tile's rows see 2 and 3 in-image tap rows of 10 (pixel, tap column) pairs, 50 per tile.
    A 3 x 3 image in one 16-row tile (7 rows empty): (2+3+2)^2 = 49."""
    from benchmarks import roofline

    assert roofline.x_rows_from_l2(16, 4, False, images=1) == pytest.approx(100 / 9)
    assert roofline.x_rows_from_l2(16, 4, True, images=1) == pytest.approx(100 / 9)
    assert roofline.x_rows_from_l2(8, 4, False, images=2) == pytest.approx(200 / 4 / 9)
    assert roofline.x_rows_from_l2(16, 3, False, images=1) == pytest.approx(49 / 9)
    # L2 bytes per clock: (x rows + BN weight rows) x 64 bytes per BM x BN x 32 / 2048 clocks.
    assert roofline.l2_bytes_per_clock(16, 8, 4, False) == pytest.approx(64 * (100 / 9 + 8) / 2)


def test_a_time_limited_run_reaches_the_tile_sweep():
    """A GPU session gets one full run (benchmarks/README.md): in the order the runners take
    the cases, the headline rows (fp16 channels_last at batch 64: every layer against
    cuDNN, and VGG16) and then the batch-64 tile sweep (what tune.py needs), and the
    fp16 networks at every batch, come before the rest of the matrix, and together they
    are a small part of it."""
    from benchmarks import cases, run

    order = run.select(cases.build_cases(), "full")
    sweep = [i for i, c in enumerate(order) if c.group == "conv" and c.p.get("tile") and not c.p.get("k_order")
             and not c.p.get("copies") and c.p["N"] == cases.QUICK_BATCH and c.p["dtype"] == "fp16"]
    assert len(sweep) == 9 * len(cases.IMPLICIT_GEMM_TILES)  # every tile on VGG's 9 layer shapes
    # ... and beside it the wgmma tiles with K taps inner, on the 8 shapes whose C is a
    # multiple of 32 halves (all but conv1_1's C = 3)
    k_order = [i for i, c in enumerate(order) if c.p.get("k_order") and c.priority < 1]
    wg = [t for t in cases.IMPLICIT_GEMM_TILES if is_wgmma(t)]
    assert sorted((order[i].p["layer"], order[i].p["tile"]) for i in k_order) == sorted(
        (c.p["layer"], c.p["tile"]) for c in (order[i] for i in sweep) if c.p["tile"] in wg and c.p["C"] % 32 == 0)
    assert len(k_order) == 8 * len(wg)
    assert {order[i].p["k_order"] for i in k_order} == {"taps_inner"}
    # ... and the wgmma-ws policy's tiles' copies, tensor loads and cp.async: ws128x256 on the
    # 5 shapes with K >= 256, ws128x128 on the 2 with K = 128, conv + ReLU, and on the 4 of
    # them that pool, conv + ReLU + pool; and where stream-K is the default (conv5's 196
    # tiles on 132 SMs, either variant), whole tiles
    copies = [i for i, c in enumerate(order) if c.p.get("copies")]
    assert sorted((order[i].p["K"] >= 256, order[i].p["variant"], order[i].p["tile"]) for i in copies) == [
        (False, "relu", "ws128x128")] * 6 + [(False, "relu_pool", "ws128x128")] * 3 + [
        (True, "relu", "ws128x256")] * 16 + [(True, "relu_pool", "ws128x256")] * 10
    assert sorted(order[i].p["copies"] for i in copies) == ["cp_async"] * 11 + ["tma"] * 11 + ["tma-pairs"] * 11 + [
        "tma-whole"] * 2
    assert {order[i].p["H"] for i in copies if order[i].p["copies"] == "tma-whole"} == {14}
    k_order += copies
    # fp32 (TF32): the rule's tile and the wgmma policies' (1 per layer, 2 where K = 128: 2
    # shapes, 3 where K >= 256: 5 shapes), in the rest of the matrix (priority 1 at batch 64,
    # 2 at batches 1 and 128).
    tf32 = [c for c in order if c.group == "conv" and c.p.get("tile") and c.p["dtype"] == "fp32"]
    assert len(tf32) == 3 * (9 + 9 + 2 + 2 * 5) and all(c.p["math"] == "tf32" for c in tf32)
    assert sorted({(c.p["N"], c.priority) for c in tf32}) == [(1, 2), (cases.QUICK_BATCH, 1), (128, 2)]
    first_rest = next(i for i, c in enumerate(order) if c.priority >= 1)
    assert max(sweep + k_order) < first_rest <= 340 < len(order) / 10
    head = [c for c in order[:first_rest] if not c.p.get("tile") and c.priority != cases.NETWORK_PRIORITY]
    assert all(c.p.get("N") == cases.QUICK_BATCH and c.p.get("dtype") in ("fp16", "fp32") for c in head)
    net = [c for c in order[:first_rest]
           if c.group == "network" and c.p["net"] == "vgg16" and c.p["dtype"] == "fp16"]
    assert {c.impl for c in net} == {"torch", "vggkern"}
    # ... ours with the default tiles and with each wgmma policy, eager and graph-captured
    assert {(c.p.get("tile"), c.p["mode"]) for c in net if c.impl == "vggkern" and c.p["algo"] == "implicit_gemm"
            and c.p["layout"] == "cl"} == {(t, m) for t in (None, "wgmma", "wgmma-wide", "wgmma-ws")
                                           for m in ("eager", "graph")}
    assert min(i for i, c in enumerate(order) if c.group == "network") < min(sweep)  # VGG16 before the sweep
    # VGG16 and VGG19 in fp16 channels_last at every batch, torch's and our auto's rows,
    # eager and graph, and VGG16 in bf16 at batch 64, before the rest too.
    nets = {(c.impl, c.p["net"], c.p["N"], c.p["dtype"], c.p["mode"]) for c in order[:first_rest]
            if c.group == "network" and c.p["layout"] == "cl" and c.p.get("algo") in (None, "auto")
            and not c.p.get("tables") and c.p["mode"] != "compile"}
    # ... then torch.compile's VGG16 fp16 at batch 64 (the headline's shape), and no other
    assert [(c.p["net"], c.p["N"], c.p["dtype"]) for c in order[:first_rest] if c.p.get("mode") == "compile"] == [
        ("vgg16", cases.QUICK_BATCH, "fp16")]
    assert nets == {(impl, net, n, dt, mode) for impl in ("torch", "vggkern") for mode in ("eager", "graph")
                    for net, n, dt in [(net, n, "fp16") for net in ("vgg16", "vgg19") for n in cases.BATCHES]
                    + [("vgg16", cases.QUICK_BATCH, "bf16")]}
    # torch's headline baselines (VGG16's 14 layer rows and VGG16, eager and graph) run
    # before any kernel of ours (a fault of ours poisons the CUDA context for every later
    # case); ours on the tensor cores next (the 14 rows, VGG16 on each tile policy), then
    # the sweep, and only then our CUDA-core rows (direct, and auto, which runs it untuned).
    first_ours = min(i for i, c in enumerate(order) if c.impl == "vggkern")
    assert [c.impl for c in order[:first_ours]] == ["torch"] * 16
    assert all(c.p["dtype"] == "fp16" and c.p["layout"] == "cl" for c in order[:first_ours])
    tensor_cores = order[first_ours:first_ours + 22]
    assert all(c.p["algo"] == "implicit_gemm" and not c.p.get("tile", "").startswith(("1", "2")) for c in tensor_cores)
    assert [c.group for c in tensor_cores] == ["conv"] * 14 + ["network"] * 8 and first_ours + 22 == min(sweep)
    cuda_cores = [i for i, c in enumerate(order) if c.impl == "vggkern" and c.p.get("algo") in ("direct", "auto")]
    assert min(cuda_cores) > max(sweep)


def test_network_rows_on_a_wgmma_policy_are_reported_apart(tmp_path):
    """VGG16 timed with VGGKERN_IMPLICIT_GEMM_TILE=wgmma is not what a call runs yet: it is
    left out of "best ours" and shown in its own table, with its ratio to the best torch."""
    net = dict(group="network", net="vgg16", N=64, res=224, layout="cl", mode="graph", flops=None)
    rows = [row("torch", 10e-3, **net), row("vggkern", 12e-3, algo="implicit_gemm", **net),
            row("vggkern", 8e-3, algo="implicit_gemm", tile="wgmma", **net)]
    for r in rows:
        r["images_per_s"] = 64 / r["median_s"]
    text, _, _ = report.render(write(tmp_path / "r.json", rows), headline_only=True)
    lines = text.splitlines()
    best = [ln for ln in lines if ln.startswith("| vgg16 | fp16 | torch")]
    assert len(best) == 1 and "ours implicit_gemm cl graph" in best[0] and "0.83×" in best[0], best
    policy = [ln for ln in lines if ln.startswith("| vgg16 | fp16 | ours implicit_gemm [wgmma]")]
    assert policy == ["| vgg16 | fp16 | ours implicit_gemm [wgmma] cl graph | 8000 | 8000 img/s | 1.25× |"], policy


def test_network_rows_without_the_tf32_chain_are_reported_apart(tmp_path):
    """VGG16 fp32 with FusedSequential's TF32 chain off is a comparison row, not what a call
    runs: left out of "best ours", shown apart with its label; the cases have it for VGG16
    at batch 64, eager and graph, beside "auto"'s default rows."""
    from benchmarks import cases

    net = dict(group="network", net="vgg16", N=64, res=224, layout="cl", mode="graph", flops=None, dtype="fp32",
               math="tf32")
    rows = [row("torch", 11e-3, **net), row("vggkern", 9e-3, algo="auto", **net),
            row("vggkern", 8e-3, algo="auto", tf32_chain="no-chain", **net)]
    for r in rows:
        r["images_per_s"] = 64 / r["median_s"]
    text, _, _ = report.render(write(tmp_path / "r.json", rows), headline_only=True)
    lines = text.splitlines()
    best = [ln for ln in lines if ln.startswith("| vgg16 | fp32 | torch")]
    assert len(best) == 1 and "ours auto cl tf32 graph" in best[0] and "1.22×" in best[0], best
    apart = [ln for ln in lines if "[TF32 chain off]" in ln]
    assert apart == ["| vgg16 | fp32 | ours auto [TF32 chain off] cl tf32 graph | 8000 | 8000 img/s | 1.38× |"], apart
    off = [c for c in cases.build_cases() if c.p.get("tf32_chain")]
    assert sorted((c.p["net"], c.p["N"], c.p["dtype"], c.p["math"], c.p["mode"], c.p["algo"]) for c in off) == [
        ("vgg16", 64, "fp32", "tf32", mode, "auto") for mode in ("eager", "graph")]
    assert all(c.id.endswith("-auto-no-chain") for c in off)


def test_torch_compile_headline_row_comes_before_the_matrix():
    """torch.compile's VGG16 fp16 at batch 64 (the headline's shape) runs right after the
    network rows at NETWORK_PRIORITY, before the rest of the matrix (priority 1), which a
    full run's deadline cuts; the other compile rows stay last."""
    from benchmarks import cases

    compiled = [c for c in cases.build_cases() if c.p.get("mode") == "compile"]
    head = [c for c in compiled if c.p["N"] == cases.QUICK_BATCH and c.p["dtype"] == "fp16"]
    assert len(head) == 1 and cases.NETWORK_PRIORITY < head[0].priority < 1
    assert head[0].tier == "quick" and head[0].impl == "torch" and head[0].p["layout"] == "cl"
    assert all(c.priority == 3 for c in compiled if c is not head[0]) and len(compiled) > 1


@pytest.mark.parametrize("text,what", [("", "empty"), ('{"benchmarks": [{"extra_info": {"gro', "not valid JSON"),
                                       ("[]", "a JSON list")])
def test_a_file_that_is_not_results_is_refused_by_name(tmp_path, capsys, text, what):
    """An empty or cut-short file (a run killed while writing it) or one holding no JSON
    object: an error naming the file and what is wrong, not a JSONDecodeError traceback
    or an AttributeError; the command line says so and exits 2."""
    from benchmarks import tune

    bad = tmp_path / "results.json"
    bad.write_text(text)
    good = write(tmp_path / "good.json", synthetic_rows())
    with pytest.raises(ValueError, match=f"{bad}: .*{what}"):
        report.load(str(bad))
    capsys.readouterr()
    for argv in ([str(bad)], ["--compare", good, str(bad)], ["--compare", str(bad), good]):
        assert report.main(argv) == 2
        err = capsys.readouterr().err
        assert str(bad) in err and what in err, err
    assert tune.main([str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and what in err, err


def test_rows_without_a_valid_time_are_no_baseline_and_not_unchanged(tmp_path):
    """A zero or NaN median (a broken timing) is no torch baseline, gets no speedup and
    no "best ours", and compare lists it apart: it neither crashes the tool
    (ZeroDivisionError) nor hides the valid rows, nor counts as unchanged."""
    nan = float("nan")

    def timed(median, impl="vggkern", **p):  # a row whose recorded median is `median`
        return dict(row(impl, 1.0e-3, **p), median_s=median)

    rows = [timed(nan, "torch", layout="nchw"), row("torch", 1.5e-3, layout="cl"),
            row("vggkern", 1.0e-3, algo="direct"), timed(0.0, algo="implicit_gemm"),
            timed(nan, algo="winograd_f2x2")]
    path = write(tmp_path / "r.json", rows)
    _, got, _ = report.load(path)
    report.annotate(got)
    by = {r["algo"]: r for r in got if r["impl"] == "vggkern"}
    assert by["direct"]["speedup_vs_best_torch"] == pytest.approx(1.5)  # against the valid torch row
    assert by["direct"]["best_torch"] == "torch cl"
    assert by["implicit_gemm"]["speedup_vs_best_torch"] is None
    assert by["winograd_f2x2"]["speedup_vs_best_torch"] is None
    text, _, _ = report.render(path, headline_only=True)
    best = [ln for ln in text.splitlines() if ln.startswith("| conv3_2+conv3_3 (256")]
    assert len(best) == 1 and "torch cl" in best[0] and "ours direct cl" in best[0] and "1.50×" in best[0], best

    old = write(tmp_path / "old.json", [row("vggkern", 1.0e-3, algo=a) for a in ("direct", "implicit_gemm")]
                + [timed(0.0, algo="winograd_f2x2")])
    new = write(tmp_path / "new.json", [row("vggkern", 1.0e-3, algo="direct"), timed(nan, algo="implicit_gemm"),
                                        row("vggkern", 1.0e-3, algo="winograd_f2x2")])
    text, regressions = report.compare(old, new)
    assert regressions == []
    assert "3 rows matched" in text and "1 unchanged" in text and "2 without a valid time" in text, text
    invalid = text.split("## Without a valid time")[1]
    assert "implicit_gemm" in invalid and "winograd_f2x2" in invalid and "| nan |" in invalid, text


def test_a_problem_with_neither_a_torch_row_nor_ours_is_left_out(tmp_path):
    """A problem whose only rows are tile-sweep rows, or rows without a valid time (a
    time-limited or failing run), has no best torch and no best ours: the report leaves
    it out of the headline tables (it crashed there on None) and shows the rest."""
    conv5 = dict(layer="conv5_3", C=512, K=512, H=14)
    sweep = row("vggkern", 0.9e-3, algo="implicit_gemm", tile="256x128", **conv5)
    sweep["id"] += "-256x128"
    rows = [row("torch", 1.5e-3), row("vggkern", 1.0e-3, algo="direct"), sweep,
            dict(row("torch", 1.0e-4, group="maxpool", C=64, H=112, layout="cl", flops=None), median_s=float("nan")),
            row("torch", 1.0e-4, group="maxpool", C=256, H=56, layout="cl", flops=None)]
    text, _, _ = report.render(write(tmp_path / "r.json", rows))
    assert [ln for ln in text.splitlines() if ln.startswith("| conv3_2+conv3_3 (256")], text
    assert not [ln for ln in text.splitlines() if ln.startswith("| conv5_3 (512")], text
    assert "| conv5_3 | 64 | relu |" in text  # in the tile-sweep table


@pytest.mark.parametrize("data,what", [
    ({"benchmarks": None}, r"\['benchmarks'\] to be a list of objects"),
    ({"benchmarks": ["x"]}, r"\['benchmarks'\] to be a list of objects"),
    ({"benchmarks": [{"extra_info": None}]}, r"\['benchmarks'\]\[0\]\['extra_info'\] to be an object"),
    ({"machine_info": None, "benchmarks": []}, r"\['machine_info'\] to be an object"),
    ({"machine_info": {"vggkern_env": None}, "benchmarks": []}, r"\['machine_info'\]\['vggkern_env'\] to be an object"),
])
def test_a_results_object_of_the_wrong_shape_is_refused_by_name(tmp_path, data, what):
    """A JSON object whose parts are not what a results file holds: an error naming the
    part, not a TypeError or AttributeError from deep inside the report."""
    bad = tmp_path / "results.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(report.NotResults, match=f"{bad}: expected .*{what}"):
        report.load(str(bad))


def test_compare_takes_files_with_an_unknown_commit(tmp_path):
    """A null git_commit (JSON's "unknown"; render and tune take it) must not crash compare."""
    old = tmp_path / "old.json"
    data = json.loads(open(write(old, synthetic_rows(1.0e-3))).read())
    data["machine_info"]["vggkern_env"]["git_commit"] = None
    old.write_text(json.dumps(data))
    new = write(tmp_path / "new.json", synthetic_rows(1.3e-3))
    text, regressions = report.compare(str(old), new)
    assert len(regressions) == 1
    assert text.splitlines()[2].startswith("old: NVIDIA H100 80GB HBM3 (SYNTHETIC)  synthetic; new: "), text


def test_prepared_weight_rows_stay_out_of_best_ours_and_have_their_table(tmp_path):
    """A row of ours given the weight prepared once (weight="prepared") is not compared with
    torch, which is timed with the raw weight: "best ours" is the raw row, and the prepared
    row is shown beside it, with what preparing saved."""
    rows = [row("torch", 1.5e-3), row("vggkern", 1.2e-3, algo="winograd_f4x4"),
            row("vggkern", 0.9e-3, algo="winograd_f4x4", weight="prepared"),
            row("vggkern", 2.0e-3, algo="implicit_gemm", weight="prepared")]  # no raw twin
    rows[2]["id"] += "-prepared"
    rows[3]["id"] += "-ig-prepared"
    text, _, _ = report.render(write(tmp_path / "r.json", rows), headline_only=True)
    best = [line for line in text.splitlines() if line.startswith("| conv3_2+conv3_3 (256")]
    assert len(best) == 1 and "ours winograd_f4x4 cl" in best[0] and "1.25×" in best[0], best
    table = [line for line in text.splitlines() if line.startswith("| conv3_2+conv3_3 | 64 |")]
    assert table == ["| conv3_2+conv3_3 | 64 | fp16 | cl | implicit_gemm | – | 2000 | – | – |",
                     "| conv3_2+conv3_3 | 64 | fp16 | cl | winograd_f4x4 | 1200 | 900.0 | 300.0 | 1.33× |"], table
    assert "Weight prepared once" in text
    # Without prepared rows there is no such table.
    text, _, _ = report.render(write(tmp_path / "s.json", rows[:2]), headline_only=True)
    assert "Weight prepared once" not in text


def twin_id(case, key):
    """The id of `case` without its `key` parameter: the default row it is timed beside."""
    from benchmarks import cases

    return cases.Case(case.group, case.impl, tuple(kv for kv in case.params if kv[0] != key), case.tier).id


def test_nchw_y_converted_rows_stay_out_of_best_ours_and_have_their_table(tmp_path):
    """implicit_gemm's NCHW rows with y converted after the kernel (nchw_y="convert", the
    earlier path) are not what a call runs: "best ours" is the default row (y written NCHW
    by the epilogue), and the converted row is shown beside it, with what the direct
    store saved."""
    rows = [row("torch", 1.5e-3, layout="nchw"), row("vggkern", 1.2e-3, algo="implicit_gemm", layout="nchw"),
            row("vggkern", 1.0e-3, algo="implicit_gemm", layout="nchw", nchw_y="convert")]
    rows[2]["id"] += "-convert"
    text, _, _ = report.render(write(tmp_path / "r.json", rows), headline_only=True)
    best = [line for line in text.splitlines() if line.startswith("| conv3_2+conv3_3 (256")]
    assert len(best) == 1 and "ours implicit_gemm nchw" in best[0] and "1.25×" in best[0], best
    table = [line for line in text.splitlines() if line.startswith("| conv3_2+conv3_3 | 64 |")]
    assert table == ["| conv3_2+conv3_3 | 64 | fp16 | nchw | implicit_gemm | 1000 | 1200 | -200.0 | 0.83× |"], table
    assert "y written NCHW by the epilogue" in text
    text, _, _ = report.render(write(tmp_path / "s.json", rows[:2]), headline_only=True)
    assert "y written NCHW by the epilogue" not in text


def _k_order_report(tmp_path, variants, id_keys, tile="wg128x128", table_words="K order"):
    """Renders a run of torch, ours on the default tile, ours on `tile`'s sweep row and the
    `variants` (rows with their id extended by `id_keys`: K order, or ws128x256's copies),
    and checks what holds for any such variant: it is neither "best ours" nor the sweep's
    time for its tile, tune.py takes the sweep row, and a run without variants has no table
    of them (no `table_words`). Returns the headline report's lines and the full report's
    conv header."""
    from benchmarks import tune

    rows = [row("torch", 1.5e-3), row("vggkern", 1.2e-3, algo="implicit_gemm"),
            row("vggkern", 1.0e-3, algo="implicit_gemm", tile=tile)] + variants
    for r in rows[2:]:
        r["id"] += "".join("-" + r.get(k, "") for k in ("tile",) + id_keys)
    text, _, _ = report.render(write(tmp_path / "r.json", rows), headline_only=True)
    lines = text.splitlines()
    best = [ln for ln in lines if ln.startswith("| conv3_2+conv3_3 (256")]
    assert len(best) == 1 and "ours implicit_gemm cl" in best[0] and "1.25×" in best[0], best
    sweep = [ln for ln in lines if ln.startswith("| conv3_2+conv3_3 | 64 | relu |")]
    assert sweep == [f"| conv3_2+conv3_3 | 64 | relu | 1000 | 1200 | {tile} |"], sweep
    assert [e["tile"] for e in tune.tile_table(rows)] == [tile]
    assert [e["us"] for e in tune.tile_table(rows)] == [pytest.approx(1000)]
    short, _, _ = report.render(write(tmp_path / "s.json", rows[:3]), headline_only=True)
    assert table_words not in short
    full, _, _ = report.render(write(tmp_path / "r.json", rows))
    return lines, next(ln for ln in full.splitlines() if ln.startswith("| impl | layer |"))


def _k_order_table(lines):
    """The K-order table's rows (its layer, conv3_2+conv3_3 at batch 64) and its header."""
    return ([ln for ln in lines if ln.startswith("| conv3_2+conv3_3 | 64 | fp16 |")],
            next(ln for ln in lines if ln.startswith("| layer | N | dtype | tile |")))


def test_k_order_rows_stay_out_of_the_sweep_and_tune_and_have_their_table(tmp_path):
    """A forced tile with K taps inner (k_order) is neither "best ours" nor the tile sweep's
    time for its tile (the default, taps outer, is), and tune.py never picks it; the K-order
    table shows it beside the same tile's sweep row, with the fastest and the default's
    time over its."""
    lines, conv_head = _k_order_report(tmp_path, [
        row("vggkern", 0.8e-3, algo="implicit_gemm", tile="wg128x128", k_order="taps_inner"),
        row("vggkern", 1.4e-3, algo="implicit_gemm", tile="wg128x256", k_order="taps_inner")], ("k_order",))
    table, head = _k_order_table(lines)
    assert table == ["| conv3_2+conv3_3 | 64 | fp16 | wg128x128 | 1000 | 800.0 | inner | 1.25× |",
                     "| conv3_2+conv3_3 | 64 | fp16 | wg128x256 | – | 1400 | inner | – |"], table
    assert head == "| layer | N | dtype | tile | outer (default) | inner | fastest | default ÷ fastest |", head
    assert not any("X_CACHE" in ln or "L1" in ln for ln in lines), lines
    # The full tables have no x_cache column (a run from before its switch was removed has)
    assert "| nchw_y | k_order | median µs |" in conv_head, conv_head


def test_copies_rows_follow_the_tensor_load_probe(monkeypatch):
    """device_run.sh turns the tensor loads off where their probe failed (no copies rows),
    or keeps only the unpooled ones where just the pooled layers' failed (=unpooled: the
    copies rows of conv + ReLU, none with the pool)."""
    from benchmarks import cases

    def copies():
        return sorted((c.p["variant"], c.p["copies"]) for c in cases.build_cases() if c.p.get("copies"))
    monkeypatch.delenv("VGGKERN_IMPLICIT_GEMM_TMA", raising=False)
    kinds = ("tma", "tma-pairs", "cp_async")
    whole = [("relu", "tma-whole"), ("relu_pool", "tma-whole")]  # conv5's, stream-K by default
    assert copies() == sorted([("relu", k) for k in kinds] * 7 + [("relu_pool", k) for k in kinds] * 4 + whole)
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TMA", "unpooled")
    assert copies() == sorted([("relu", k) for k in kinds] * 7 + whole[:1])
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TMA", "off")
    assert copies() == []


def test_copies_rows_stay_out_of_the_sweep_and_tune_and_have_their_table(tmp_path):
    """A ws tile with its copies forced (copies: tensor loads "tma", "tma-pairs" (and y
    stored in pairs), or "cp_async") is neither "best ours" nor the sweep's time for the tile,
    tune.py never picks it, and the copies table pairs them per layer, variant and tile with
    what the tensor loads saved and what the staged stores saved."""
    rows = [row("vggkern", 0.7e-3, algo="implicit_gemm", tile="ws128x256", copies="tma"),
            row("vggkern", 0.9e-3, algo="implicit_gemm", tile="ws128x256", copies="cp_async"),
            row("vggkern", 0.8e-3, algo="implicit_gemm", tile="ws128x128", copies="tma"),
            row("vggkern", 0.3e-3, algo="implicit_gemm", tile="ws128x256", copies="tma", layer="conv5_1", H=14)]
    lines, conv_head = _k_order_report(tmp_path, rows, ("copies",), tile="ws128x256", table_words="tensor loads")
    head = lines.index("| layer | N | dtype | variant | tile | cp.async | tensor loads | saved | cp.async ÷ tensor loads |")
    assert lines[head + 2:head + 5] == [
        "| conv3_2+conv3_3 | 64 | fp16 | relu | ws128x128 | – | 800.0 | – | – |",
        "| conv3_2+conv3_3 | 64 | fp16 | relu | ws128x256 | 900.0 | 700.0 | 200.0 | 1.29× |",
        "| conv5_1 | 64 | fp16 | relu | ws128x256 | – | 300.0 | – | – |"], lines[head:head + 5]
    assert "| k_order | copies | median µs |" in conv_head, conv_head
    rows.append(row("vggkern", 0.77e-3, algo="implicit_gemm", tile="ws128x256", copies="tma-pairs"))
    lines, _ = _k_order_report(tmp_path, rows, ("copies",), tile="ws128x256", table_words="tensor loads")
    head = lines.index("| layer | N | dtype | variant | tile | cp.async | tensor loads | saved | cp.async ÷ tensor loads |"
                       " pairs stores | staged saved | pairs ÷ staged |")
    assert lines[head + 3:head + 5] == [
        "| conv3_2+conv3_3 | 64 | fp16 | relu | ws128x256 | 900.0 | 700.0 | 200.0 | 1.29× | 770.0 | 70.0 | 1.10× |",
        "| conv5_1 | 64 | fp16 | relu | ws128x256 | – | 300.0 | – | – | – | – | – |"], lines[head:head + 5]
    # ... and whole tiles against stream-K (tma-whole: VGGKERN_IMPLICIT_GEMM_STREAM_K=off)
    rows.append(row("vggkern", 0.36e-3, algo="implicit_gemm", tile="ws128x256", copies="tma-whole", layer="conv5_1",
                    H=14))
    lines, _ = _k_order_report(tmp_path, rows, ("copies",), tile="ws128x256", table_words="tensor loads")
    head = lines.index("| layer | N | dtype | variant | tile | cp.async | tensor loads | saved | cp.async ÷ tensor loads |"
                       " pairs stores | staged saved | pairs ÷ staged | whole tiles | stream-K saved | whole ÷ stream-K |")
    assert lines[head + 4] == ("| conv5_1 | 64 | fp16 | relu | ws128x256 | – | 300.0 | – | – | – | – | – | 360.0 "
                               "| 60.0 | 1.20× |"), lines[head:head + 5]


def test_k_order_table_of_a_run_with_x_paths(tmp_path):
    """A run from before x's copies through L1 were removed (f697b76's focus run) has rows
    with x's path (x_cache: l2 past L1, l1 through it) too: the same rules, and the K-order
    table shows the four (K order, x path) combinations."""
    lines, conv_head = _k_order_report(tmp_path, [
        row("vggkern", 0.8e-3, algo="implicit_gemm", tile="wg128x128", k_order="taps_inner", x_cache="l1"),
        row("vggkern", 1.1e-3, algo="implicit_gemm", tile="wg128x128", k_order="taps_inner", x_cache="l2"),
        row("vggkern", 1.4e-3, algo="implicit_gemm", tile="wg128x256", k_order="taps_outer", x_cache="l1")],
        ("k_order", "x_cache"))
    table, head = _k_order_table(lines)
    assert table == ["| conv3_2+conv3_3 | 64 | fp16 | wg128x128 | 1000 | 1100 | 800.0 | – | inner, L1 | 1.25× |",
                     "| conv3_2+conv3_3 | 64 | fp16 | wg128x256 | – | – | – | 1400 | outer, L1 | – |"], table
    assert head == ("| layer | N | dtype | tile | outer, L2 (default) | inner, L2 | inner, L1 | outer, L1 | fastest "
                    "| default ÷ fastest |"), head
    assert any("and x's path (VGGKERN_IMPLICIT_GEMM_X_CACHE, since removed" in ln for ln in lines), lines
    assert "| nchw_y | k_order | x_cache | median µs |" in conv_head, conv_head


def test_k_order_table_of_the_run_whose_default_was_taps_inner(tmp_path):
    """9f429b0's run: the default ran K taps inner with x through L1, and its variant rows
    (k_order=taps_outer, before x_cache existed) taps outer: the sweep row is the inner
    column, the variant the outer one, both through L1."""
    lines, _ = _k_order_report(tmp_path, [
        row("vggkern", 0.8e-3, algo="implicit_gemm", tile="wg128x128", k_order="taps_outer"),
        row("vggkern", 1.4e-3, algo="implicit_gemm", tile="wg128x256", k_order="taps_outer")], ("k_order",))
    table, head = _k_order_table(lines)
    assert table == ["| conv3_2+conv3_3 | 64 | fp16 | wg128x128 | 1000 | 800.0 | outer, L1 | 1.25× |",
                     "| conv3_2+conv3_3 | 64 | fp16 | wg128x256 | – | 1400 | outer, L1 | – |"], table
    assert head == "| layer | N | dtype | tile | inner, L1 (default) | outer, L1 | fastest | default ÷ fastest |", head
    assert any("through L1 then, the default taps inner: 9f429b0" in ln for ln in lines), lines


def test_k_order_cases_have_their_sweep_twin():
    """The K-order cases: the wgmma tiles at batch 64 with K taps inner, on every layer shape
    whose C is a multiple of 32 halves, each beside its tile-sweep twin (the default: taps
    outer), at the same priority."""
    from benchmarks import cases

    all_cases = cases.build_cases()
    if cases.conv_algorithms() is None or "implicit_gemm" not in cases.conv_algorithms():
        pytest.skip("vggkern.conv3x3 with implicit_gemm is not importable")
    by_id = {c.id: c for c in all_cases}
    inner = [c for c in all_cases if c.p.get("k_order")]
    wg = [t for t in cases.IMPLICIT_GEMM_TILES if is_wgmma(t)]
    assert len(inner) == len(wg) * sum(1 for s in cases.LAYER_SHAPES if s.C % 32 == 0) > 0
    for c in inner:
        assert c.p["k_order"] == "taps_inner" and c.p["tile"] in wg and c.p["N"] == cases.QUICK_BATCH, c.id
        twin = by_id[twin_id(c, "k_order")]
        assert twin.priority == 0.5 and c.priority == cases.K_ORDER_PRIORITY == 0.5, c.id


def test_nchw_y_converted_cases_have_their_default_twin():
    """The converted-y cases: implicit_gemm, fp16 NCHW, every VGG layer shape at batches 1
    and 64, after the headline rows, each beside its default (y written by the epilogue)
    twin in the matrix; the CPU smoke pass has one, computing the default's values."""
    import torch
    from benchmarks import cases

    all_cases = cases.build_cases()
    if cases.conv_algorithms() is None or "implicit_gemm" not in cases.conv_algorithms():
        pytest.skip("vggkern.conv3x3 with implicit_gemm is not importable")
    by_id = {c.id: c for c in all_cases}
    converted = [c for c in all_cases if c.p.get("nchw_y")]
    gpu = [c for c in converted if c.tier != "smoke"]
    assert len(gpu) == 2 * len(cases.LAYER_SHAPES)
    for c in converted:
        assert c.p["nchw_y"] == "convert" and c.p["algo"] == "implicit_gemm" and c.p["layout"] == "nchw"
        twin = by_id[twin_id(c, "nchw_y")]
        if c.tier != "smoke":  # at batch 64 both rows of a pair come right after the headline ones
            assert c.p["dtype"] == "fp16" and c.p["N"] in (1, cases.QUICK_BATCH)
            want = cases.NCHW_Y_PRIORITY if c.p["N"] == cases.QUICK_BATCH else 1.5
            assert c.priority == want and twin.priority == min(want, 1), (c.id, c.priority, twin.priority)
    (smoke,) = [c for c in converted if c.tier == "smoke"]
    default = by_id[twin_id(smoke, "nchw_y")]
    cfg = dict(cases.default_cfg(), cpu_repeats=1)
    errs = []
    for c in (default, smoke):
        torch.manual_seed(0)
        errs.append(cases.run_case(c, cfg)["rel_err_vs_fp32"])
    assert errs[0] == errs[1] and 0 < errs[0] < 1e-2, errs


def test_prepared_weight_cases_are_where_the_raw_call_transforms_the_weight():
    """The prepared-weight cases: each algo that takes a prepared weight, every VGG layer
    shape at batches 1 and 64, channels_last, fp32 and fp16; implicit_gemm only where its
    raw call lays the weight out (fp32: TF32 rounding; C not a multiple of 8), and each
    has its raw twin in the matrix, to be compared with."""
    from benchmarks import cases

    if cases.conv_algorithms() is None:
        pytest.skip("vggkern.conv3x3 is not importable")
    all_cases = cases.build_cases()
    ids = {c.id for c in all_cases}
    gpu = [c for c in all_cases if c.p.get("weight") == "prepared" and c.tier != "smoke"]
    assert {c.p["algo"] for c in gpu} == set(cases.PREPARED_WEIGHT)
    for c in gpu:
        assert c.p["layout"] == "cl" and c.p["N"] in (1, cases.QUICK_BATCH) and c.priority >= 1.5
        assert c.p["algo"] != "implicit_gemm" or c.p["dtype"] == "fp32" or c.p["C"] % 8
        assert twin_id(c, "weight") in ids, twin_id(c, "weight")
    per_shape = 2 * 2 * len(cases.LAYER_SHAPES)  # batches x dtypes x layer shapes
    # both Winograd tiles everywhere; implicit_gemm in fp32 everywhere, in fp16 conv1_1 only
    assert len(gpu) == 2 * per_shape + (per_shape // 2 + 2)


def test_prepared_weight_smoke_rows_compute_what_the_raw_ones_do():
    """The CPU smoke pass runs each prepared-weight case through the emulator: with the same
    inputs (same seed), its error against fp32 torch is the raw-weight row's, to the bit
    (the prepared weight is what the raw call prepares)."""
    import torch
    from benchmarks import cases

    smoke = {(c.p["algo"], c.p.get("weight")): c for c in cases.build_cases()
             if c.tier == "smoke" and c.group == "conv" and c.impl == "vggkern"}
    prepared = [a for a, w in smoke if w == "prepared"]
    if not prepared:
        pytest.skip("vggkern.conv3x3 is not importable")
    assert sorted(prepared) == sorted(cases.PREPARED_WEIGHT)
    cfg = dict(cases.default_cfg(), cpu_repeats=1)
    for algo in prepared:
        errs = []
        for weight in (None, "prepared"):
            torch.manual_seed(0)
            errs.append(cases.run_case(smoke[(algo, weight)], cfg)["rel_err_vs_fp32"])
        assert errs[0] == errs[1] and 0 < errs[0] < 1e-3, (algo, errs)


def test_layout_rows_compare_like_with_like(tmp_path):
    """The "layout" rows (implicit_gemm's x laid out, ours against ATen's conversion): each
    of ours is compared with torch's conversion of x in the same layout (the layout is
    the problem, not a baseline's choice), in GB/s, in a headline table of their own."""
    lay = dict(group="layout", C=64, H=224, flops=None, layout="nchw")
    rows = [row("torch", 4e-4, **lay), row("vggkern", 1e-4, **lay),
            row("torch", 1e-5, **dict(lay, C=3, layout="cl")), row("vggkern", 2e-5, **dict(lay, C=3, layout="cl"))]
    rows[2]["id"] += "-c3"
    rows[3]["id"] += "-c3"
    _, got, _ = report.load(write(tmp_path / "r.json", rows))
    report.annotate(got)
    assert [r["speedup_vs_best_torch"] for r in got if r["impl"] == "vggkern"] == [pytest.approx(4.0),
                                                                                   pytest.approx(0.5)]
    text, _, _ = report.render(write(tmp_path / "r.json", rows), headline_only=True)
    assert "implicit_gemm's x laid out" in text
    lines = [ln for ln in text.splitlines() if ln.startswith(("| 64×224² nchw |", "| 3×224² cl |"))]
    assert len(lines) == 2 and "4.00×" in lines[0] and "GB/s" in lines[0] and "0.50×" in lines[1], lines


def test_layout_cases_pair_ours_with_atens_conversion():
    """Every VGG layer's x (9 shapes), NCHW (and channels_last where C is padded: conv1_1),
    at batches 1 and 64, fp16 and fp32, ours beside torch's; batch-64 fp16 before the rest
    of the matrix; the CPU smoke pair runs (through the emulator for ours)."""
    from benchmarks import cases

    all_cases = cases.build_cases()
    lay = [c for c in all_cases if c.group == "layout" and c.tier != "smoke"]
    assert len(cases.CONV_INPUTS) == 9
    assert len(lay) == 2 * 2 * 2 * (9 + 1)  # impls x batches x dtypes x (9 NCHW + conv1_1 channels_last)
    ids = {c.id for c in lay}
    for c in lay:
        assert c.id.replace(f"-{c.impl}-", "-torch-" if c.impl == "vggkern" else "-vggkern-", 1) in ids, c.id
        assert c.p["layout"] == "nchw" or c.p["C"] % 8
        fast = c.p["N"] == cases.QUICK_BATCH and c.p["dtype"] == "fp16"
        assert c.priority == (cases.NCHW_Y_PRIORITY if fast else 1.5 if c.p["N"] == cases.QUICK_BATCH else 2)
    smoke = [c for c in all_cases if c.group == "layout" and c.tier == "smoke"]
    assert sorted(c.impl for c in smoke) == ["torch", "vggkern"]
    cfg = dict(cases.default_cfg(), cpu_repeats=1)
    for c in smoke:
        if c.skip_reason:
            continue
        r = cases.run_case(c, cfg)
        assert r["bytes"] == (3 + 8) * 8 * 8 * 4 and r["gbps"] > 0, r


def test_headline_takes_network_rows_as_the_runner_makes_them(tmp_path):
    """A network row carries the network's parameters only (no C, H or layer): the headline
    names it by its net, whichever other groups the run holds."""
    net = dict(group="network", net="vgg16", N=64, res=224, layout="cl", mode="eager", flops=None)
    rows = [row("torch", 10e-3, **net), row("vggkern", 8e-3, algo="auto", **net),
            row("torch", 1e-4, group="maxpool", C=256, H=56, flops=None),
            row("torch", 4e-4, group="layout", C=64, H=224, layout="nchw", flops=None)]
    for r in rows[:2]:
        for k in ("C", "K", "H", "layer", "variant"):
            del r[k]
        r["images_per_s"] = 64 / r["median_s"]
    text, _, _ = report.render(write(tmp_path / "r.json", rows), headline_only=True)
    assert [ln for ln in text.splitlines() if ln.startswith("| vgg16 | fp16 | torch cl eager")], text
    assert "| 256×56² | fp16 |" in text and "| 64×224² nchw | fp16 |" in text


def test_readme_focus_command_selects_what_it_says(monkeypatch):
    """benchmarks/README.md's focus command for the warp-specialised tiles: its benchmark
    expression (read by pytest's own -k parser, each name a case-insensitive substring of a
    case's id, as -k matches) selects the 56 cases its comment names, fp16 at batch 64 only:
    each ws tile beside its wgmma twin on its layers, ws128x128 (ping-pong) beside ws128x256
    on theirs, the ws tiles' copies rows (with y's staged stores against pairs), and VGG16."""
    from _pytest.mark.expression import Expression

    from benchmarks import cases

    monkeypatch.delenv("VGGKERN_IMPLICIT_GEMM_TMA", raising=False)
    monkeypatch.delenv("VGGKERN_BENCH_EXCLUDE_TILES", raising=False)
    text = open(os.path.join(ROOT, "benchmarks", "README.md")).read()
    m = re.search(r"VGGKERN_BENCH_K='(fp16 and not taps_inner.*?)' \\\n  bash benchmarks/device_run.sh --focus",
                  text, re.S)
    expr = Expression.compile(re.sub(r"'\\\n'", "", m.group(1)))
    chosen = [c for c in cases.build_cases() if expr.evaluate(lambda s, i=c.id.lower(): s.lower() in i)]
    assert len(chosen) == 58, [c.id for c in chosen]
    convs = [c for c in chosen if c.group == "conv"]
    assert all(c.p["dtype"] == "fp16" and c.p["N"] == 64 and not c.p.get("k_order") for c in chosen)
    tiles_by_layer = {}
    for c in convs:
        tiles_by_layer.setdefault(c.p["layer"].split("+")[0], set()).add((c.p["tile"], c.p.get("copies")))
    for layer in ("conv2_1", "conv2_2"):
        assert tiles_by_layer[layer] == {("wg128x128", None), ("ws128x128", None), ("ws128x128", "tma"),
                                         ("ws128x128", "tma-pairs"), ("ws128x128", "cp_async")}, layer
    for layer in ("conv3_1", "conv3_2", "conv4_1", "conv4_2"):
        assert tiles_by_layer[layer] == {("wg128x256", None), ("ws128x256", None), ("ws128x256", "tma"),
                                         ("ws128x256", "tma-pairs"), ("ws128x256", "cp_async"),
                                         ("ws128x128", None)}, layer
    assert tiles_by_layer["conv5_1"] == {("wg128x256", None), ("ws128x256", None), ("ws128x256", "tma"),
                                         ("ws128x256", "tma-pairs"), ("ws128x256", "cp_async"),
                                         ("ws128x256", "tma-whole"), ("wg128x128", None), ("ws128x128", None)}
    nets = [c for c in chosen if c.group == "network"]
    assert len(nets) == 3 and all(c.p["net"] == "vgg16" and c.p["mode"] == "graph" for c in nets)


def test_percent_of_peak_counts_against_the_math_that_ran(tmp_path):
    """An fp32 "auto" conv that ran implicit_gemm ran TF32 math: its % of peak is against
    the TF32 peak (the 2026-12-04 runs recorded it against the fp32 CUDA-core peak, up to
    266%); one that ran direct stays against fp32's."""
    from benchmarks import peaks

    fp32 = dict(dtype="fp32", peak=67.0, math_peak="fp32")
    tc = row("vggkern", 1e-3, algo="auto", algo_ran="implicit_gemm", **fp32)
    direct = row("vggkern", 1e-3, algo="auto", algo_ran="direct", **fp32)
    torch_tf32 = row("torch", 1e-3, math="tf32", **fp32)  # recorded against fp32: corrected too
    _, rows, _ = report.load(write(tmp_path / "r.json", [tc, direct, torch_tf32]))
    tflops = tc["tflops"]
    got = {(r["impl"], r.get("algo_ran")): r for r in rows}
    assert got[("vggkern", "implicit_gemm")]["math_peak"] == "tf32"
    assert got[("vggkern", "implicit_gemm")]["pct_peak"] == pytest.approx(100 * tflops / 494.7)
    assert got[("vggkern", "direct")]["pct_peak"] == pytest.approx(100 * tflops / 67.0)
    assert got[("torch", None)]["pct_peak"] == pytest.approx(100 * tflops / 494.7)
    assert peaks.math_of({"dtype": "fp32", "impl": "vggkern", "algo": "auto", "math": "tf32"}) == "tf32"  # a network
    assert peaks.math_of({"dtype": "fp32", "impl": "vggkern", "algo": "auto", "math": "ieee"}) == "fp32"
    assert peaks.math_of({"dtype": "bf16", "impl": "vggkern", "algo": "direct"}) == "bf16"


def test_committed_runs_stay_under_the_peak(committed_runs):
    """Every committed row that counts direct-conv FLOPs (not Winograd's effective ones) is
    at most 100% of the peak of the math it ran, as loaded by the report."""
    for path in committed_runs:
        _, rows, _ = report.load(path)
        over = [(r["id"], r["pct_peak"]) for r in rows if r.get("pct_peak") is not None and r["pct_peak"] > 100
                and r.get("flops_kind") == "direct"]
        assert not over, (os.path.basename(path), over[:5])


def test_compare_counts_a_case_now_wrong_or_failing_as_a_regression(tmp_path):
    """A row that became wrong is a regression even where it got faster, and so is a case
    the new run failed (vggkern_failed) that the old one timed right."""
    a = row("vggkern", 1.0e-3, algo="implicit_gemm", accuracy_ok=True)
    b = row("vggkern", 1.0e-3, algo="direct", accuracy_ok=True)
    old = write(tmp_path / "o.json", [a, b])
    faster_but_wrong = dict(a, median_s=0.5e-3, min_s=0.5e-3, max_s=0.5e-3, accuracy_ok=False)
    path = tmp_path / "n.json"
    write(path, [faster_but_wrong])
    data = json.loads(path.read_text())
    data["vggkern_failed"] = [{"id": b["id"], "error": "RuntimeError: an illegal memory access"}]
    path.write_text(json.dumps(data))
    text, regressions = report.compare(old, str(path))
    assert len(regressions) == 2 and "2 broken (now wrong or failing)" in text
    assert "0 improvements" in text and "illegal memory access" in text
    assert report.main(["--compare", old, str(path), "--fail-on-regression"]) == 1


def test_a_runs_failed_device_steps_are_shown(tmp_path, capsys):
    """A run whose GPU tests failed says so in the report's environment table, and tune warns
    before taking tables from it."""
    from benchmarks import tune

    path = tmp_path / "r.json"
    write(path, synthetic_rows())
    data = json.loads(path.read_text())
    data["vggkern_device_steps"] = ["wgmma probe: every wgmma tile matches the emulator bit for bit",
                                    "gpu tests: FAILED rc=1 (1 failed, 968 passed)", "memcheck: clean",
                                    "benchmarks (pytest-benchmark): rc=0, 5 passed"]
    path.write_text(json.dumps(data))
    assert report.failed_steps(data) == ["gpu tests: FAILED rc=1 (1 failed, 968 passed)"]
    text, _, _ = report.render(str(path), headline_only=True)
    assert "| device step | **gpu tests: FAILED rc=1 (1 failed, 968 passed)** |" in text
    assert "| device step | memcheck: clean |" in text
    tune.load_runs([str(path)])
    assert "the run's step 'gpu tests: FAILED rc=1" in capsys.readouterr().err
