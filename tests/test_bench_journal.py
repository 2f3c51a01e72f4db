"""benchmarks/journal.py: a benchmark run's rows survive the run being killed.

The runs here are the real CPU smoke cases (maxpool: the fastest), both through
python -m benchmarks.run and through the pytest suite, whose conftest writes the journal.
"""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
journal = pytest.importorskip("benchmarks.journal")
report = pytest.importorskip("benchmarks.report")
run = pytest.importorskip("benchmarks.run")


def _rows(data):
    return {b["name"]: b["extra_info"] for b in data["benchmarks"]}


def test_journal_holds_what_the_run_wrote(tmp_path, monkeypatch):
    path = tmp_path / "rows.jsonl"
    monkeypatch.setenv(journal.ENV_VAR, str(path))
    monkeypatch.setattr(journal, "_env_written", set())
    out = tmp_path / "run.json"
    assert run.main(["--set", "smoke", "--filter", "maxpool", "--json", str(out)]) == 0
    finished = json.loads(out.read_text())
    assert len(finished["benchmarks"]) == 2  # torch's and ours

    assembled = journal.assemble(str(path))
    assert _rows(json.loads(json.dumps(assembled, default=str))) == _rows(finished)
    assert assembled["machine_info"]["vggkern_env"]["git_commit"] == finished["machine_info"]["vggkern_env"][
        "git_commit"]
    assert assembled["vggkern_bench_set"] == "smoke"
    assert "did not finish" in assembled["vggkern_partial"]
    # The environment is written once per process, then a line per row.
    lines = path.read_text().splitlines()
    assert [next(iter(json.loads(line))) for line in lines] == ["env", "benchmark", "benchmark"]


def test_a_line_cut_short_by_the_kill_is_left_out(tmp_path, monkeypatch):
    path = tmp_path / "rows.jsonl"
    monkeypatch.setenv(journal.ENV_VAR, str(path))
    monkeypatch.setattr(journal, "_env_written", set())
    assert run.main(["--set", "smoke", "--filter", "maxpool"]) == 0
    whole = path.read_text()
    path.write_text(whole + whole.splitlines()[-1][:40])  # a kill in the middle of a write
    out = tmp_path / "results.json"
    assert journal.main([str(path), str(out)]) == 0
    data = json.loads(out.read_text())
    assert len(data["benchmarks"]) == 2
    assert "1 unreadable line(s) left out" in data["vggkern_partial"]
    # benchmarks/report.py reads it, and says it is partial.
    md, rows, _ = report.render(str(out))
    assert len(rows) == 2 and "**partial**" in md


def test_no_journal_without_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(journal.ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    assert run.main(["--set", "smoke", "--filter", "maxpool"]) == 0
    assert os.listdir(tmp_path) == []


def test_an_empty_journal_makes_no_results(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("")
    assert journal.main([str(path), str(tmp_path / "results.json")]) == 1


def test_the_pytest_suite_writes_the_journal(tmp_path):
    # The pytest-benchmark path (device_run.sh's), which writes its own JSON only at the end.
    path = tmp_path / "rows.jsonl"
    # A pytest of its own, not an xdist worker (pytest-benchmark switches itself off there).
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env[journal.ENV_VAR] = str(path)
    proc = subprocess.run([sys.executable, "-m", "pytest", "benchmarks/test_bench_maxpool.py", "--bench-set", "smoke",
                           "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                           "--benchmark-json", str(tmp_path / "bench.json")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assembled = journal.assemble(str(path))
    finished = json.loads((tmp_path / "bench.json").read_text())
    ours = {b["name"]: b["extra_info"] for b in assembled["benchmarks"]}
    assert len(ours) == 2 and assembled["vggkern_bench_set"] == "smoke"
    # pytest-benchmark names its entries by test id; the rows themselves are the same.
    assert sorted(map(json.dumps, ours.values())) == sorted(
        json.dumps(b["extra_info"]) for b in finished["benchmarks"])
    # pytest-benchmark's own statistics are the case's timing (its repeats), not a host
    # clock around some other call: what `pytest-benchmark compare` reads agrees.
    for b in finished["benchmarks"]:
        row, stats = b["extra_info"], b["stats"]
        assert stats["data"] == row["samples_s"] and stats["rounds"] == row["repeats"] > 0
        assert (stats["median"], stats["min"], stats["max"]) == (row["median_s"], row["min_s"], row["max_s"])
        assert stats["iterations"] == row["iters"] and b["options"]["timer"] == row["method"] == "perf_counter"
    # ... and the journal's entries (a run cut short) hold the same statistics.
    journaled = {b["extra_info"]["id"]: b["stats"] for b in assembled["benchmarks"]}
    assert journaled == {b["extra_info"]["id"]: b["stats"] for b in finished["benchmarks"]}


# ---- "auto" on this run's own tables: the network rows made from the journal --------------

def test_the_run_tables_rows_come_right_after_what_they_are_made_from():
    from benchmarks.cases import build_cases

    order = run.select(build_cases(), "quick")
    tables_at = [i for i, c in enumerate(order) if c.p.get("tables") == "run"]
    assert [(order[i].p["net"], order[i].p["N"], order[i].p["dtype"], order[i].p["mode"]) for i in tables_at] == [
        ("vgg16", 64, "fp16", "eager"), ("vgg16", 64, "fp16", "graph")]
    needed = [i for i, c in enumerate(order) if c.group == "conv" and c.impl == "vggkern" and c.p.get("N") == 64
              and c.p.get("dtype") == "fp16" and c.p.get("layout") == "cl" and c.p.get("variant") != "conv"
              and (c.p.get("tile") or c.p.get("algo") in ("direct", "implicit_gemm"))]
    assert needed and max(needed) < min(tables_at)
    # ... and before the rest of the quick set (fp32 and NCHW layers, the other networks).
    assert min(tables_at) < len(order) // 2


def test_run_tables_are_set_for_the_row_and_restored(tmp_path, monkeypatch):
    import vggkern
    from benchmarks import cases
    from test_tune import synthetic

    path = tmp_path / "rows.jsonl"
    monkeypatch.setenv(journal.ENV_VAR, str(path))
    with pytest.raises(cases.SkipCase, match="no GPU conv rows journaled before it"):
        cases._run_tables("run")

    def journal_rows(rows):
        with open(path, "w") as f:
            f.write(json.dumps({"env": {}}) + "\n")
            for r in rows:
                f.write(json.dumps({"benchmark": {"name": r["id"], "extra_info": dict(r, device="cuda")}}) + "\n")
    # Forced tiles alone (a --focus run's rows) give no verdict per algorithm: no tables.
    journal_rows([r for r in synthetic() if r.get("tile")])
    with pytest.raises(cases.SkipCase, match="no algorithm verdicts"):
        cases._run_tables("run")
    # A journal of (synthetic) GPU rows: tune.py's tables from them hold while the row runs.
    journal_rows(synthetic())
    assert not vggkern.tuned_tables()["run_time"]
    tables = cases._run_tables("run")
    extra = {"tables_tiles": len(tables["tiles"]), "tables_auto": len(tables["auto"])}  # as the row records them
    with cases._using_tables(tables):
        inside = vggkern.tuned_tables()
    assert inside["run_time"] and inside["source"].startswith("this benchmark run's first")
    assert (extra["tables_tiles"], extra["tables_auto"]) == (len(inside["tiles"]), len(inside["auto"])) == (3, 3)
    assert not vggkern.tuned_tables()["run_time"]  # the build's again
    monkeypatch.setenv("VGGKERN_BENCH_EXCLUDE_TILES", "256x128")  # a tile device_run.sh left out
    with cases._using_tables(cases._run_tables("run")):
        assert all(e["tile"] != "256x128" for e in vggkern.tuned_tables()["tiles"])


def test_report_keeps_run_tables_rows_apart(tmp_path):
    from test_bench_report import row, write

    rows = [row("torch", 2e-2, group="network", net="vgg16", flops=1, images_per_s=3200, mode="eager"),
            row("vggkern", 3e-2, group="network", net="vgg16", flops=1, images_per_s=2100, algo="auto", mode="eager"),
            row("vggkern", 1e-2, group="network", net="vgg16", flops=1, images_per_s=6400, algo="auto", mode="eager",
                tables="run")]
    md, _, _ = report.render(write(tmp_path / "r.json", rows))
    best = [line for line in md.splitlines() if line.startswith("| vgg16 |")]
    assert "ours auto [this run's tables] cl eager" in best[-1]  # the policy table's row
    assert "[this run's tables]" not in best[0]  # not the best of ours



def test_a_line_that_is_json_but_no_record_is_left_out(tmp_path):
    """A line that parses but is no record (null, a number, a list: a damaged journal) is
    counted with the unreadable ones, not a TypeError, and not silently dropped."""
    entry = {"name": "maxpool-x", "extra_info": {"group": "maxpool", "id": "maxpool-x"}}
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join([json.dumps({"env": {"git_commit": "abc"}, "bench_set": "smoke"}), "null", "5", "[1, 2]",
                               json.dumps({"benchmark": entry})]) + "\n")
    data = journal.assemble(str(path))
    assert data["benchmarks"] == [entry]
    assert "3 unreadable line(s) left out" in data["vggkern_partial"]
