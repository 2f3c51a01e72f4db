"""benchmarks/report.py on a SYNTHETIC results file (made up here, never a measurement)."""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
report = pytest.importorskip("benchmarks.report")


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


def test_compare_ignores_noise(tmp_path):
    old = write(tmp_path / "old.json", [row("vggkern", 1.0e-3, iqr=0.5e-3)])
    new = write(tmp_path / "new.json", [row("vggkern", 1.2e-3, iqr=0.5e-3)])
    assert report.compare(old, new)[1] == []                          # within the IQR: not flagged


def test_main_writes_md_and_survives_missing_matplotlib(tmp_path, capsys):
    path = write(tmp_path / "r.json", synthetic_rows())
    md, png = tmp_path / "s.md", tmp_path / "s.png"
    assert report.main([path, "--md", str(md), "--plot", str(png)]) == 0
    assert "## All rows" in md.read_text()
    out = capsys.readouterr().out
    assert png.exists() or "matplotlib is not installed" in out
