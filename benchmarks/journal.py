"""The benchmark run's rows, one JSON line each, written as each case finishes.

pytest-benchmark writes its JSON only when the session ends, so a run killed part way
(a kernel that hangs until device_run.sh's time limit, the device lease running out)
would leave nothing of the cases it had timed. With VGGKERN_BENCH_JOURNAL=PATH set
(device_run.sh sets it), both runners (the pytest suites and python -m benchmarks.run)
append to PATH the environment once per process, then one line per timed case, flushed
and synced. This module turns such a file back into the results JSON that
benchmarks/report.py reads, marked partial:

    python -m benchmarks.journal ROWS.jsonl RESULTS.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

ENV_VAR = "VGGKERN_BENCH_JOURNAL"
_env_written = set()  # the journal paths this process has written its environment to


def timing_stats(row: dict):
    """pytest-benchmark's statistics (a ``pytest_benchmark.stats.Stats``) of a timed row's
    repeats (timing.py's: CUDA events on a GPU, perf_counter on the CPU): a round is a
    repeat, its time the per-call time of that repeat's ``iters`` calls."""
    from pytest_benchmark.stats import Stats

    stats = Stats()
    for s in row["samples_s"]:
        stats.update(s)
    return stats


def entry(case, row: dict) -> dict:
    """The results JSON's entry (benchmarks[*]) for ``case``'s timed ``row``: our row in
    extra_info, its statistics as stats, in pytest-benchmark's layout (the pytest path's)."""
    return {"name": case.id, "fullname": f"benchmarks.run::{case.id}", "group": case.group, "params": case.p,
            "extra_info": row, "options": {"timer": row["method"]},
            "stats": dict(timing_stats(row).as_dict(), data=row["samples_s"], iterations=row["iters"])}


def _append(path: str, record: dict) -> None:
    line = json.dumps(record, default=str) + "\n"
    with open(path, "a") as f:  # one write of one line: appends from other processes stay whole lines
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def record(case, row: dict, env, bench_set: str) -> None:
    """Append ``case``'s row where VGGKERN_BENCH_JOURNAL names a file (else nothing);
    the first time in this process, the environment and the bench set first (``env``:
    a dict, or a callable making it, called only then)."""
    path = os.environ.get(ENV_VAR)
    if not path:
        return
    if path not in _env_written:
        _append(path, {"env": env() if callable(env) else env, "bench_set": bench_set})
        _env_written.add(path)
    _append(path, {"benchmark": entry(case, row)})


def assemble(path: str) -> dict:
    """The results JSON of the journal at ``path``, marked ``vggkern_partial``. A line cut
    short by the kill is left out; the first environment recorded is the run's."""
    env, bench_set, rows, cut = None, None, [], 0
    with open(path) as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                cut += 1
                continue
            if not isinstance(rec, dict):  # valid JSON but no record of ours: a damaged line
                cut += 1
                continue
            if "env" in rec and env is None:
                env, bench_set = rec["env"], rec.get("bench_set")
            elif "benchmark" in rec:
                rows.append(rec["benchmark"])
    env = env or {}
    return {"machine_info": {"vggkern_env": env}, "commit_info": {"id": env.get("git_commit")},
            "benchmarks": rows, "datetime": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "version": "vggkern-benchmarks-journal", "vggkern_bench_set": bench_set, "vggkern_skipped": [],
            "vggkern_partial": (f"assembled from the journal {os.path.basename(path)}: the benchmark run did not "
                                f"finish, so the cases after its last row are missing"
                                + (f"; {cut} unreadable line(s) left out" if cut else ""))}


def rows_so_far() -> list[dict]:
    """The rows this run has journaled so far (VGGKERN_BENCH_JOURNAL's file), in the form
    benchmarks/report.load gives; [] without a journal."""
    path = os.environ.get(ENV_VAR)
    if not path or not os.path.exists(path):
        return []
    from .report import rows_of
    return rows_of(assemble(path))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="results JSON from a benchmark journal (a run that did not finish)")
    ap.add_argument("journal")
    ap.add_argument("json_out")
    args = ap.parse_args(argv)
    out = assemble(args.journal)
    with open(args.json_out, "w") as f:
        json.dump(out, f, indent=1, default=str)
    print(f"{len(out['benchmarks'])} rows from {args.journal} -> {args.json_out}")
    return 0 if out["benchmarks"] else 1


if __name__ == "__main__":
    sys.exit(main())
