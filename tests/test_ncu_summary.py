"""benchmarks/ncu_summary.py on a SYNTHETIC Nsight Compute CSV (made up here, never a
measurement), and benchmarks/ncu_case.py without a GPU."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from benchmarks import ncu_summary  # noqa: E402

HEADER = ('"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size",'
          '"Grid Size","Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"')


def line(kid, kernel, section, metric, unit, value, grid="(392, 1, 1)", block="(128, 1, 1)"):
    return (f'"{kid}","1","python3","h","{kernel}","1","7","{block}","{grid}","0","9.0","{section}",'
            f'"{metric}","{unit}","{value}"')


def synthetic_csv():
    ours, cudnn = "conv3x3_implicit_gemm_kernel", "sm90_xmma_fprop_implicit_gemm_f16f16_f16f32_f32_nhwckrsc_nhwc"
    return "\n".join([
        "==PROF== Connected to process 1 (python3)",  # what ncu may print before its table
        HEADER,
        line(0, ours, "GPU Speed Of Light Throughput", "Duration", "us", "612.35"),
        line(0, ours, "GPU Speed Of Light Throughput", "Compute (SM) Throughput", "%", "71.2"),
        line(0, ours, "GPU Speed Of Light Throughput", "Memory Throughput", "%", "40.1"),
        line(0, ours, "Command line profiler metrics",
             "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active", "%", "58.3"),
        line(0, ours, "Command line profiler metrics", "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum",
             "", "0"),
        line(0, ours, "Launch Statistics", "Registers Per Thread", "register/thread", "166"),
        line(1, cudnn, "GPU Speed Of Light Throughput", "Duration", "us", "540.10", grid="(98, 4, 1)",
             block="(384, 1, 1)"),
        line(1, cudnn, "GPU Speed Of Light Throughput", "SM [%]", "%", "80.5", grid="(98, 4, 1)",
             block="(384, 1, 1)"),  # an older ncu's name for the same column
        line(2, "vectorized_elementwise_kernel", "GPU Speed Of Light Throughput", "Duration", "us", "45.0"),
    ])


def test_one_row_per_kernel_in_launch_order():
    ks = ncu_summary.kernels(synthetic_csv())
    assert [k["id"] for k in ks] == ["0", "1", "2"]
    assert ks[1]["grid"] == "(98, 4, 1)" and ks[0]["metrics"]["Duration"] == "612.35 us"
    table = ncu_summary.render(ks).splitlines()
    head = [c.strip() for c in table[0].strip("|").split("|")]
    # only the columns some kernel has, in COLUMNS' order
    assert head == ["#", "kernel", "grid", "block", "duration", "SM %", "memory %", "tensor pipe % (mma.sync)",
                    "smem ld conflicts", "regs"]
    rows = [[c.strip() for c in r.strip("|").split("|")] for r in table[2:]]
    assert rows[0][4:] == ["612.35 us", "71.2 %", "40.1 %", "58.3 %", "0", "166 register/thread"]
    assert rows[1][4:6] == ["540.10 us", "80.5 %"] and rows[1][6:] == ["–"] * 4  # SM [%] read as SM %
    assert rows[2][1] == "vectorized_elementwise_kernel"


def test_what_is_not_a_table_says_so(tmp_path, capsys):
    assert ncu_summary.kernels("==ERROR== Failed to profile\n") == []
    p = tmp_path / "ncu.csv"
    p.write_text("==PROF== nothing profiled\n")
    assert ncu_summary.main([str(p), "--md", str(tmp_path / "ncu.md")]) == 0
    assert "no kernels" in capsys.readouterr().out and "no kernels" in (tmp_path / "ncu.md").read_text()


def test_long_names_are_cut_and_pipes_escaped():
    assert len(ncu_summary.short("k" * 200)) == 60 and "|" not in ncu_summary.short("a|b")


def test_raw_metrics_are_the_columns_own():
    assert set(ncu_summary.RAW_METRICS) == {n for _, names in ncu_summary.COLUMNS for n in names if "__" in n}
    assert all("," not in m and " " not in m for m in ncu_summary.RAW_METRICS)  # one --metrics list


def test_ncu_case_without_a_gpu_exits_2():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: ncu_case would profile")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "ncu_case.py")], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2 and "no CUDA GPU" in r.stdout, r.stdout + r.stderr


def test_ncu_case_calls_run_through_the_emulator(monkeypatch, capsys):
    """ncu_case's calls, on a small layer on the CPU (the emulator), without the profiler:
    ours on the default tile and on wg128x128, wg128x256, ws128x256 and ws128x128 (and ws128x256 by
    cp.async, and pooled), and torch's, in that order; the forced tile, K order and copies
    leave the environment as they found it (and wgmma tiles left out by the run are left out
    here)."""
    pytest.importorskip("torch")
    from benchmarks import ncu_case

    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_TILE", "128x64")
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_K_ORDER", "taps_outer")
    monkeypatch.delenv("VGGKERN_IMPLICIT_GEMM_TMA", raising=False)
    assert ncu_case.main(["--cpu"]) == 0
    out = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("ncu_case: profiled")]
    assert [ln.split(": ")[-1] for ln in out] == ["ours implicit_gemm (default tile)",
                                                 "ours implicit_gemm [wg128x128]",
                                                 "ours implicit_gemm [wg128x256]",
                                                 "ours implicit_gemm [ws128x256]",
                                                 "ours implicit_gemm [ws128x128]",
                                                 "ours implicit_gemm [ws128x256, cp.async]",
                                                 "ours implicit_gemm [ws128x256] + pool",
                                                 "torch conv2d + relu_ (cuDNN)"]
    assert os.environ["VGGKERN_IMPLICIT_GEMM_TILE"] == "128x64"
    assert os.environ["VGGKERN_IMPLICIT_GEMM_K_ORDER"] == "taps_outer"
    assert "VGGKERN_IMPLICIT_GEMM_TMA" not in os.environ
    monkeypatch.delenv("VGGKERN_IMPLICIT_GEMM_TILE")
    monkeypatch.setattr(ncu_case, "IMPLICIT_GEMM_TILES", ("128x128",))
    assert ncu_case.main(["--cpu"]) == 0
    out = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("ncu_case: profiled")]
    assert len(out) == 2 and "VGGKERN_IMPLICIT_GEMM_TILE" not in os.environ


def test_newer_csv_with_rule_columns():
    """Newer ncu versions add rule columns (and rows that are a rule's, with no metric);
    the metrics are read the same."""
    head = HEADER + ',"Rule Name","Rule Type","Rule Description","Estimated Speedup Type","Estimated Speedup"'
    rows = [line(0, "conv3x3_implicit_gemm_kernel", "GPU Speed Of Light Throughput", "Duration", "us", "1,204.5")
            + ',"","","","",""',
            line(0, "conv3x3_implicit_gemm_kernel", "GPU Speed Of Light Throughput", "", "", "")
            + ',"SOLBottleneck","OPT","Compute is more heavily utilized than memory","global","12.5"']
    ks = ncu_summary.kernels("\n".join([head] + rows))
    assert len(ks) == 1 and ks[0]["metrics"] == {"Duration": "1,204.5 us"}
    assert "| 1,204.5 us |" in ncu_summary.render(ks)
