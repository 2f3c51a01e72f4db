"""benchmarks/ceilings.py: the GPU's measured ceilings (cuBLAS matmul, device-to-device copy)
and the clock samples' summary, and their lines in the report."""
import json
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import ceilings, report  # noqa: E402
from test_bench_report import row, write  # noqa: E402

# nvidia-smi --query-gpu=clocks.sm,clocks.max.sm,temperature.gpu,power.draw,
# clocks_event_reasons.active --format=csv,noheader,nounits, as it prints them; one sample
# unreadable ([N/A]) and one idle (0x1: no clock held down).
SAMPLES = """1980, 1980, 45, 420.50, 0x0000000000000000
1755, 1980, 63, 699.10, 0x0000000000000004
[N/A], 1980, 61, 690.10, 0x0000000000000004
1830, 1980, 58, 650.00, 0x0000000000000001
1905, 1980, 60, 640.00, 0x0000000000000020
"""


def test_clock_samples_summary():
    c = ceilings.clocks(SAMPLES)
    assert c == {"samples": 4, "sm_mhz_median": (1830 + 1905) / 2, "sm_mhz_min": 1755, "sm_mhz_max_clock": 1980,
                 "temperature_c_max": 63, "power_w_max": 699.1,
                 "held_down_by": ["SW power cap", "SW thermal slowdown"]}
    assert ceilings.clocks_line(c) == ("Clocks during the benchmarks (4 samples): SM 1868 MHz median, 1755 least, "
                                       "of 1980; up to 63 C and 699 W; held down by SW power cap, SW thermal slowdown")
    assert ceilings.clocks("") is None and ceilings.clocks("[N/A], 1980, 40, 80, 0x0\n") is None
    idle = ceilings.clocks("1980, 1980, 40, 300, 0x1\n")
    assert idle["held_down_by"] == [] and ceilings.clocks_line(idle).endswith("held down by nothing")


def test_clocks_cli(tmp_path, capsys):
    csv = tmp_path / "clocks.csv"
    csv.write_text(SAMPLES)
    assert ceilings.main(["--clocks", str(csv), "--json", str(tmp_path / "c.json")]) == 0
    assert capsys.readouterr().out.startswith("Clocks during the benchmarks (4 samples)")
    assert json.loads((tmp_path / "c.json").read_text())["sm_mhz_min"] == 1755
    csv.write_text("")
    assert ceilings.main(["--clocks", str(csv)]) == 1


MEASURED = {"gpu_name": "NVIDIA H200", "gemm_n": 8192, "gemm_fp16_tflops": 712.3, "peak_fp16_tflops": 989.4,
            "gemm_bf16_tflops": 701.0, "peak_bf16_tflops": 989.4, "copy_tb_s": 3.91, "peak_bw_tb_s": 4.8}


def test_ceilings_line_and_report(tmp_path):
    line = ceilings.summary_line(MEASURED)
    assert line == ("Measured ceilings (cuBLAS 8192^3; copy, read + write): matmul 712 TFLOP/s fp16 (72% of the "
                    "datasheet's 989.4); matmul 701 TFLOP/s bf16 (71% of the datasheet's 989.4); device-to-device "
                    "copy 3.91 TB/s (81% of the datasheet's 4.8)")
    path = tmp_path / "run.json"
    write(path, [row("torch", 2e-3), row("vggkern", 1e-3, algo="implicit_gemm")])
    text, _, _ = report.render(str(path), headline_only=True)
    assert "Measured ceilings" not in text and "Clocks during" not in text  # an older run has neither
    data = json.loads(path.read_text())
    data.update(vggkern_ceilings=MEASURED, vggkern_clocks=ceilings.clocks(SAMPLES))
    path.write_text(json.dumps(data))
    text, _, _ = report.render(str(path), headline_only=True)
    assert line + "." in text.splitlines()
    assert ceilings.clocks_line(ceilings.clocks(SAMPLES)) + "." in text.splitlines()


def test_no_gpu_no_ceilings(capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: test_gpu_ceilings measures")
    assert ceilings.main([]) == 2 and "no GPU here" in capsys.readouterr().out


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible")
def test_gpu_ceilings():
    """Small sizes (this is a test, not the measurement): positive rates under twice the
    datasheet's (a timing that is off by the event order or a unit would miss that)."""
    c = ceilings.measure(n=2048, copy_bytes=1 << 26, repeats=3)
    for key, pk in (("gemm_fp16_tflops", "peak_fp16_tflops"), ("gemm_bf16_tflops", "peak_bf16_tflops"),
                    ("copy_tb_s", "peak_bw_tb_s")):
        assert 0 < c[key] < 2 * (c[pk] or float("inf")), c


def test_peaks_by_the_name_the_device_reports():
    """Each part the datasheets list maps to its column; a part they do not list (H200 NVL,
    GH200, whose names hold "H200") gets no peak rather than the H200 SXM's."""
    from benchmarks import peaks

    assert [peaks.gpu_key(n) for n in ("NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H100 NVL",
                                       "NVIDIA H200", "NVIDIA H200 NVL", "NVIDIA GH200 480GB", "NVIDIA A100", None)] \
        == ["H100 SXM", "H100 PCIe", "H100 NVL", "H200 SXM", None, None, None, None]
    assert peaks.peak("NVIDIA H200", "fp16") == 989.4 and peaks.peak("NVIDIA GH200 480GB", "fp16") is None
