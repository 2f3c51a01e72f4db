"""The benchmarks' gate on wrong results: a row of ours records whether its result is
right (accuracy_ok), a wrong one fails its case (still recorded), a fault fails it (is
not a skip), and neither the report's "best ours" nor tune.py takes a wrong row. Run on
the CPU smoke cases (our kernels through the emulator), with the kernel made wrong here."""
import json
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
cases = pytest.importorskip("benchmarks.cases")
vggkern = pytest.importorskip("vggkern")
if cases.conv_algorithms() is None:
    pytest.skip("vggkern.conv3x3 is not importable", allow_module_level=True)

CFG = dict(cases.default_cfg(), cpu_repeats=1)


def _smoke(group, algo=None, **p):
    found = [c for c in cases.build_cases() if c.tier == "smoke" and c.impl == "vggkern" and c.group == group
             and (algo is None or c.p.get("algo") == algo) and all(c.p.get(k) == v for k, v in p.items())]
    assert len(found) == 1, [c.id for c in found]
    return found[0]


@pytest.mark.parametrize("algo", ["direct", "auto", "winograd_f4x4", "implicit_gemm"])
def test_a_conv_row_says_whether_its_result_is_right(algo, monkeypatch):
    case = _smoke("conv", algo, weight=None, nchw_y=None)
    row = cases.run_case(case, CFG)
    assert row["accuracy_ok"] is True and cases.wrong_result(row) is None
    ran = row["algo_ran"]
    assert ran == (algo if algo != "auto" else vggkern.resolve_algo(torch.empty(1, 8, 8, 8), 8, pool=True))
    # fp32 on the CUDA cores is held to 1e-3; TF32 (implicit_gemm) to the 16-bit bound
    off = 1.01 if ran != "implicit_gemm" else 1.2
    real = vggkern.conv3x3
    monkeypatch.setattr(vggkern, "conv3x3", lambda *a, **k: real(*a, **k) * off)
    row = cases.run_case(case, CFG)
    assert row["accuracy_ok"] is False and row["rel_err_vs_fp32"] == pytest.approx(off - 1, rel=0.1)
    assert cases.wrong_result(row).startswith("wrong result: rel err vs torch fp32")


def test_the_conv_gate_by_arithmetic_and_at_the_worst_element():
    """Right results (the exact sums rounded to the dtype, or fp32 inputs rounded to TF32)
    pass their kind's bounds with room; a fault in one element that the norm averages away
    (under the norm's bound) fails at the worst element; NaN never passes; so does the
    wrong arithmetic's result (bf16's rounding held to fp16's bounds)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 64, 64, 64, generator=g)  # 2^20 outputs
    ref = x.double().float()

    def tf32(t):  # round to nearest, 10 mantissa bits
        return ((t.view(torch.int32) + 0x1000) & ~0x1FFF).view(torch.float32)

    for dtype, y, algo in (("fp16", x.half(), "implicit_gemm"), ("bf16", x.bfloat16(), "direct"),
                           ("fp32", tf32(x), "implicit_gemm"), ("fp32", x + 1e-7 * x, "winograd_f4x4")):
        right = cases.conv_errors(y, ref, dtype, algo)
        kind = cases.conv_err_kind(dtype, algo)
        assert right["accuracy_ok"], (dtype, algo, right)
        assert right["rel_err_vs_fp32"] < cases.REL_ERR_BOUND[kind] / 4, (kind, right)
        assert right["max_err_vs_fp32"] < cases.MAX_ERR_BOUND[kind] / 4, (kind, right)
        local = y.float().clone()
        local[1, 5, 7, 9] += 3 * cases.MAX_ERR_BOUND[kind] * float(ref.abs().max())
        wrong = cases.conv_errors(local, ref, dtype, algo)
        assert wrong["rel_err_vs_fp32"] < cases.REL_ERR_BOUND[kind] and not wrong["accuracy_ok"], (kind, wrong)
        nan = y.float().clone()
        nan[0, 0, 0, 0] = float("nan")
        assert not cases.conv_errors(nan, ref, dtype, algo)["accuracy_ok"]
    assert not cases.conv_errors(x.bfloat16(), ref, "fp16", "direct")["accuracy_ok"]
    assert cases.conv_err_kind("fp32", "direct") == "fp32" and cases.conv_err_kind("fp16", "implicit_gemm") == "fp16"


@pytest.mark.parametrize("tile", ["ws128x256", "ws128x128"])
def test_a_ws_row_records_how_its_copies_ran(tile, monkeypatch):
    """A ws tile's row says whether its launch copied by tensor loads or by cp.async, and
    why (with VGGKERN_IMPLICIT_GEMM_TMA unset a call that cannot have them runs cp.async
    without an error), and how it stored y: the smoke shape (fp32 NCHW, pooled, C = 8)
    cannot have either, fp16 channels_last with C = 32 has both, and the forced copies rows
    ran what they forced (tma-pairs: tensor loads, y in pairs; tma-whole: whole tiles, not
    stream-K)."""
    monkeypatch.delenv("VGGKERN_IMPLICIT_GEMM_TMA", raising=False)
    monkeypatch.delenv("VGGKERN_IMPLICIT_GEMM_TMA_STORE", raising=False)
    base = _smoke("conv", "implicit_gemm", weight=None, nchw_y=None)
    row = cases.run_case(cases.Case("conv", "vggkern", base.params + (("tile", tile),), "smoke", 0), CFG)
    assert row["copies_ran"] == ("cp_async (the fused pool with y NCHW (its epilogue reads the windows in window "
                                 "order))"), row
    assert row["stores_ran"].startswith("nchw_tile (y NCHW"), row
    fp16 = tuple((k, {"C": 32, "dtype": "fp16", "layout": "cl", "variant": "relu"}.get(k, v)) for k, v in base.params)
    assert row["stream_k_ran"] == "whole tiles", row  # NCHW y: one block per item
    for copies, ran, stored in ((None, "tma", "tma"), ("tma", "tma", "tma"),
                                ("tma-pairs", "tma", "pairs (VGGKERN_IMPLICIT_GEMM_TMA_STORE=off)"),
                                ("cp_async", "cp_async (VGGKERN_IMPLICIT_GEMM_TMA=off)", "tma"),
                                ("tma-whole", "tma", "tma")):
        params = fp16 + (("tile", tile),) + ((("copies", copies),) if copies else ())
        row = cases.run_case(cases.Case("conv", "vggkern", params, "smoke", 0), CFG)
        assert row["copies_ran"] == ran and row["stores_ran"] == stored and row["accuracy_ok"], row
        # the smoke shape's few tiles on 132 SMs: ws128x256 by stream-K, except where the row
        # turns it off; ws128x128 whole tiles
        assert (row["stream_k_ran"] == "whole tiles") == (copies == "tma-whole" or tile == "ws128x128"), row
    row = cases.run_case(cases.Case("conv", "vggkern", fp16 + (("tile", "wg128x256"),), "smoke", 0), CFG)
    assert "copies_ran" not in row and "stores_ran" not in row  # other tiles have no such choice


def test_a_fault_fails_the_case_and_a_refusal_skips_it(monkeypatch):
    case = _smoke("conv", "direct", weight=None)

    def fault(*a, **k):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")
    monkeypatch.setattr(vggkern, "conv3x3", fault)
    with pytest.raises(RuntimeError, match="illegal memory access"):
        cases.run_case(case, CFG)

    def refusal(*a, **k):
        raise ValueError("vggkern.conv3x3: algo \"direct\" does not run this")
    monkeypatch.setattr(vggkern, "conv3x3", refusal)
    with pytest.raises(cases.SkipCase, match="does not run this case: ValueError"):
        cases.run_case(case, CFG)


@pytest.mark.parametrize("group", ["maxpool", "layout"])
def test_a_memory_bound_row_must_equal_torchs_result(group, monkeypatch):
    case = _smoke(group)
    assert cases.run_case(case, CFG)["accuracy_ok"] is True
    if group == "maxpool":
        real = vggkern.maxpool2x2
        monkeypatch.setattr(vggkern, "maxpool2x2", lambda x: real(x).clone().index_fill_(1, torch.tensor([3]), 0.5))
    else:
        real = cases._tensor_core_input()
        monkeypatch.setattr(cases, "_tensor_core_input", lambda: lambda x: real(x).contiguous())  # NCHW, not NHWC
    row = cases.run_case(case, CFG)
    assert row["accuracy_ok"] is False and cases.wrong_result(row) == "wrong result: differs from torch's"


def test_a_network_is_held_to_torchs_own_error():
    """Our VGG16 against torchvision's with the same weights (torch's ops on the CPU here:
    the network case runs ours through the emulator, which is covered by the smoke pass)."""
    model = vggkern.vgg16().eval()
    shape = (1, 3, 32, 32)
    with torch.inference_mode():
        ok = cases._network_accuracy(model, "vgg16", shape, "nchw", "-")
        assert ok["accuracy_ok"] is True and ok["rel_err_vs_fp32"] < 1e-5
        half = cases._network_accuracy(model.to(torch.bfloat16), "vgg16", shape, "cl", "-")
        assert half["accuracy_ok"] is True and 1e-4 < half["torch_rel_err_vs_fp32"] < 0.2, half
        model = vggkern.vgg16().eval()  # other weights: not the first call's references
        right = cases._network_accuracy(model, "vgg16", shape, "nchw", "-")["rel_err_vs_fp32"]
        real = model.forward
        model.forward = lambda a: real(a) * 1.05
        bad = cases._network_accuracy(model, "vgg16", shape, "nchw", "-")
    assert right < 1e-5
    assert bad["accuracy_ok"] is False and bad["rel_err_vs_fp32"] == pytest.approx(0.05, rel=1e-3)
    assert "torch's at this dtype" in cases.wrong_result(bad)


def test_a_graph_rows_accuracy_is_its_replays():
    """A graph row is judged on what its replays compute (cases._replay: the references' x
    copied into the captured input, one replay, the captured output), not on an eager call:
    here a stand-in graph whose replay is wrong while the model is right."""
    model = vggkern.vgg16().eval()
    shape = (1, 3, 32, 32)

    class Graph:  # torch.cuda.CUDAGraph's replay, on the CPU: the captured call on the static input
        def __init__(self, fn):
            self.fn = fn

        def replay(self):
            held["output"].copy_(self.fn(held["inputs"]))

    with torch.inference_mode():
        held = {"inputs": torch.zeros(shape), "output": torch.zeros(1, 1000)}
        held["graph"] = Graph(model)
        ok = cases._network_accuracy(model, "vgg16", shape, "nchw", "-", run=lambda x: cases._replay(held, x))
        held["graph"] = Graph(lambda a: model(a) * 1.05)
        bad = cases._network_accuracy(model, "vgg16", shape, "nchw", "-", run=lambda x: cases._replay(held, x))
        assert cases._network_accuracy(model, "vgg16", shape, "nchw", "-")["accuracy_ok"] is True  # eager: right
    assert ok["accuracy_ok"] is True and ok["rel_err_vs_fp32"] < 1e-5
    assert bad["accuracy_ok"] is False and bad["rel_err_vs_fp32"] == pytest.approx(0.05, rel=1e-3)


def test_the_runner_records_a_wrong_row_and_fails(monkeypatch, tmp_path):
    from benchmarks import run

    real = vggkern.maxpool2x2
    monkeypatch.setattr(vggkern, "maxpool2x2", lambda x: real(x) + 1)
    out = tmp_path / "r.json"
    assert run.main(["--set", "smoke", "--filter", "maxpool-vggkern", "--json", str(out)]) == 1
    data = json.loads(out.read_text())
    (row,) = data["benchmarks"]
    assert row["extra_info"]["accuracy_ok"] is False
    assert [f["error"] for f in data["vggkern_failed"]] == ["wrong result: differs from torch's"]


def test_a_wrong_row_is_never_best_ours_nor_tuned(tmp_path):
    from benchmarks import report, tune
    from tests.test_bench_report import row, write

    fast_wrong = row("vggkern", 0.5e-3, algo="implicit_gemm", accuracy_ok=False, rel_err_vs_fp32=0.9)
    right = row("vggkern", 1.0e-3, algo="direct", accuracy_ok=True, rel_err_vs_fp32=1e-3)
    text, rows, _ = report.render(write(tmp_path / "r.json", [row("torch", 1.5e-3, layout="cl"), fast_wrong, right]))
    best = [o for _, o in report.best_torch_and_ours(rows)]
    assert [o["algo"] for o in best] == ["direct"]
    assert "**WRONG**" in text and "1.50×" in text
    assert not tune._trusted(dict(fast_wrong, rel_err_vs_fp32=1e-3)) and tune._trusted(right)


def test_network_rows_compute_on_torchvisions_weights():
    """Ours (whatever algo) and torchvision's network rows run the same weights, so that
    ours shares torchvision's references (one per dtype, layout and shape) in the run."""
    tv = cases._cpu_model("vgg11", "torch").state_dict()
    for algo in ("auto", "direct"):
        ours = cases._cpu_model("vgg11", "vggkern", algo).state_dict()
        assert ours.keys() == tv.keys() and all(torch.equal(ours[k], tv[k]) for k in tv), algo


def test_tf32_rows_record_their_error_against_tf32_rounded_inputs():
    """rel_err_vs_tf32_inputs tells a kernel that rounds x to TF32 (cvt.rna, as the tests'
    reference does) from one that truncates it, which the accuracy bounds against the
    unrounded inputs pass alike (9f429b0's wgmma defect): sums of rounded inputs are ~1e-7
    from the float64 conv of the rounded inputs, sums of truncated x ~1e-3 of that."""
    from test_conv3x3 import _round_tf32

    g = torch.Generator().manual_seed(3)
    x, w, b = torch.randn(2, 16, 12, 12, generator=g), torch.randn(32, 16, 3, 3, generator=g) * 0.1, torch.randn(32)
    special = torch.tensor([1 + 2**-11, 1 + 2**-10 + 2**-11, -(1 + 2**-11), 3e38, float("inf"), float("nan")])
    torch.testing.assert_close(cases.round_tf32(torch.cat([x.flatten(), special])),
                               _round_tf32(torch.cat([x.flatten(), special])), rtol=0, atol=0, equal_nan=True)
    xr, wr = cases.round_tf32(x), cases.round_tf32(w)
    right = torch.nn.functional.conv2d(xr, wr, b, padding=1)
    truncated = torch.nn.functional.conv2d((x.view(torch.int32) & ~0x1FFF).view(torch.float32), wr, b, padding=1)
    for relu, pool in ((False, False), (True, True)):
        post = (lambda t: torch.nn.functional.max_pool2d(t.relu(), 2, 2)) if pool else (lambda t: t)
        ok = cases.tf32_input_error(post(right), x, w, b, relu, pool)
        bad = cases.tf32_input_error(post(truncated), x, w, b, relu, pool)
        assert ok < 1e-6 < 1e-4 < bad, (ok, bad)
        ref = post(torch.nn.functional.conv2d(x, w, b, padding=1))  # the gate's reference: both pass it
        assert all(cases.conv_errors(y, ref, "fp32", "implicit_gemm")["accuracy_ok"]
                   for y in (post(right), post(truncated)))


def test_conv_weights_rotate_with_the_inputs(monkeypatch):
    """Each rotated input set gets its own (weight, bias) until 256 MiB of weights (at
    least 16 pairs): a weight's next use comes after the rotation's traffic, past L2, not
    after 16 sets (at batch 1, 23-45 MB: under an H100's L2)."""
    case = _smoke("conv", "direct", weight=None, nchw_y=None)
    made = {}
    measure = cases._measure

    def counting(fn, make_inputs, device, cfg):
        sets = [make_inputs() for _ in range(40)]
        made["weights"] = len({s[1].data_ptr() for s in sets})
        return measure(fn, make_inputs, device, cfg)

    monkeypatch.setattr(cases, "_measure", counting)
    cases.run_case(case, CFG)
    assert made["weights"] == 40
