"""benchmarks/sanitize_case.py without a GPU: its cases run on CPU tensors (through the
emulator) with torch.cuda stood in for, so the driver's logic (every kernel in the first
round, refusals, the deadline, the verdict and its exit codes) is checked where CI runs.
On the device it runs under compute-sanitizer (benchmarks/device_run.sh)."""
import os

import pytest
import torch

import vggkern
from benchmarks import sanitize_case as sc

ENV = ("VGGKERN_IMPLICIT_GEMM_TILE", "VGGKERN_IMPLICIT_GEMM_SPLIT_K", "VGGKERN_IMPLICIT_GEMM_STREAM_K")


@pytest.fixture
def cpu_stands_in(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    monkeypatch.setattr(sc, "_on_gpu", lambda t, channels_last=False:
                        t.contiguous(memory_format=torch.channels_last) if channels_last else t)


def test_first_round_runs_every_conv_path_and_agrees(cpu_stands_in, capsys):
    runs = sc._conv_runs()
    for run in (("implicit_gemm", "", "3", ""), ("winograd_f4x4", "", "", ""), ("auto", "", "", "")):
        assert run in runs
    assert ("implicit_gemm", "ws128x256", "", "on") in runs
    assert sc.main(["--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "maxpool2x2: 18 cases run" in out
    assert f"conv3x3: {len(runs)} of {len(runs)} cases run, 0 refused\n" in out
    assert "sanitize_case: OK" in out  # the emulator's launch shared tiles out where stream-K was forced


def test_forced_stream_k_that_did_not_run_fails(cpu_stands_in, monkeypatch, capsys):
    # A launch that kept whole tiles (stream-K forced on) would pass memcheck for stream-K's.
    monkeypatch.setattr(sc, "_launch_record", lambda: {"tile": "ws128x256", "stream_k": ""})
    assert sc.main(["--rounds", "1"]) == sc.MISMATCH
    out = capsys.readouterr().out
    assert ("conv3x3 implicit_gemm tile=ws128x256 split=- stream_k=on torch.float16 cl=True relu=True pool=True: "
            "stream-K did not run (the launch recorded {'tile': 'ws128x256', 'stream_k': ''})") in out
    assert "sanitize_case: 1 MISMATCHES" in out


def test_mismatch_refusal_fault_and_deadline(cpu_stands_in, monkeypatch, capsys):
    env_before = {k: os.environ.get(k) for k in ENV}
    real = vggkern.conv3x3

    def planted(x, w, b, *, algo, **kw):
        if algo == "direct":
            return real(x, w, b, algo=algo, **kw) + 1  # a wrong result
        if algo == "winograd_f2x2":
            raise ValueError("refused here")
        return real(x, w, b, algo=algo, **kw)

    monkeypatch.setattr(vggkern, "conv3x3", planted)
    assert sc.main(["--rounds", "1"]) == sc.MISMATCH
    out = capsys.readouterr().out
    assert "conv3x3 direct tile=- split=- torch.float16 cl=True relu=True pool=True: MISMATCH" in out
    assert "winograd_f2x2 tile=- split=- torch.float16 cl=True relu=True pool=True: not supported (refused here)" in out
    assert "1 refused" in out and "sanitize_case: 1 MISMATCHES" in out

    # A CUDA fault surfaces as a RuntimeError: it fails the script, never "not supported".
    monkeypatch.setattr(vggkern, "conv3x3", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("misaligned address")))
    with pytest.raises(RuntimeError, match="misaligned address"):
        sc.main(["--rounds", "1"])

    # Past the deadline (an epoch) no conv case starts, and the count says so.
    capsys.readouterr()
    assert sc.main(["--deadline", "0"]) == 0
    total = 18 * len(sc._conv_runs())
    assert f"conv3x3: 0 of {total} cases run, 0 refused, {total} not started (past the deadline)" in capsys.readouterr().out
    # The forced tile and split-K do not outlive the script, even when it fails.
    assert {k: os.environ.get(k) for k in ENV} == env_before


def test_first_three_rounds_run_every_path_in_every_dtype(cpu_stands_in, monkeypatch, capsys):
    """Every kernel instantiation (algorithm or tile, split-K or not, dtype) runs in the
    first three rounds, so a deadline that stops the driver there has sanitized each."""
    import torch.nn.functional as F

    seen = []

    def recorded(x, w, b, *, relu, pool, algo):
        seen.append((algo, os.environ["VGGKERN_IMPLICIT_GEMM_TILE"], os.environ["VGGKERN_IMPLICIT_GEMM_SPLIT_K"],
                     os.environ.get("VGGKERN_IMPLICIT_GEMM_STREAM_K", ""), x.dtype))
        y = F.conv2d(x.double(), w.double(), b.double(), padding=1)
        y = F.relu(y) if relu else y
        return (F.max_pool2d(y, 2, 2) if pool else y).to(x.dtype)

    monkeypatch.setattr(vggkern, "conv3x3", recorded)
    monkeypatch.setattr(sc, "_shared_tiles", lambda: True)  # no launch: nothing recorded
    assert sc.main(["--rounds", "3"]) == 0
    runs = sc._conv_runs()
    assert len(seen) == 3 * len(runs)
    assert set(seen) == {(*run, dt) for run in runs for dt in sc.DTYPES}


def test_stream_k_turned_off_stays_off(cpu_stands_in, monkeypatch, capsys):
    """Where device_run.sh turned stream-K off (its scale probe found it wrong or hung), no
    sanitizer run forces it on, and every run sees it off (the unforced runs leave the
    variable as exported)."""
    import torch.nn.functional as F

    seen = set()

    def recorded(x, w, b, *, relu, pool, algo):
        seen.add(os.environ.get("VGGKERN_IMPLICIT_GEMM_STREAM_K"))
        y = F.conv2d(x.double(), w.double(), b.double(), padding=1)
        y = F.relu(y) if relu else y
        return (F.max_pool2d(y, 2, 2) if pool else y).to(x.dtype)

    monkeypatch.setattr(vggkern, "conv3x3", recorded)
    monkeypatch.setattr(sc, "_shared_tiles", lambda: True)  # no launch: nothing recorded
    monkeypatch.setenv("VGGKERN_IMPLICIT_GEMM_STREAM_K", "off")
    assert all(run[3] != "on" for run in sc._conv_runs())
    assert sc.main(["--rounds", "1"]) == 0
    assert seen == {"off"}
    monkeypatch.delenv("VGGKERN_IMPLICIT_GEMM_STREAM_K")
    seen.clear()
    assert sc.main(["--rounds", "1"]) == 0
    assert seen == {None, "on"}  # unset: the plan's default; and the one run that forces it
