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
