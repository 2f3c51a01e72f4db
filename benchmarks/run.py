"""Plain-Python benchmark runner: the same cases and timing as the pytest suites, for a
machine without pytest-benchmark. Writes JSON in the layout pytest-benchmark's
--benchmark-json uses (benchmarks[*].extra_info holds our rows), so benchmarks/report.py
reads either.

    python -m benchmarks.run [--set auto|smoke|quick|full] [--quick] [--json out.json]
                             [--deadline EPOCH | --budget SECONDS] [--filter SUBSTR[|SUBSTR...]]
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
import traceback

import torch

from . import journal, timing
from .cases import SkipCase, build_cases, default_cfg

TIERS = {"smoke": ("smoke",), "quick": ("quick",), "full": ("quick", "full")}
GROUP_ORDER = {"maxpool": 0, "layout": 0, "conv": 1, "network": 2}


def select(cases, bench_set, substr=None):
    """The cases of the set whose id contains substr, or any of its '|'-separated parts."""
    parts = [s for s in (substr or "").split("|") if s]
    chosen = [c for c in cases if c.tier in TIERS[bench_set] and (not parts or any(s in c.id for s in parts))]
    return sorted(chosen, key=lambda c: (c.priority, GROUP_ORDER.get(c.group, 9)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", default="auto", choices=("auto", "smoke", "quick", "full"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None, help="write results here")
    ap.add_argument("--deadline", type=float, default=None)
    ap.add_argument("--budget", type=float, default=None)
    ap.add_argument("--filter", default=None, help="only cases whose id contains this (or one of its '|'-separated parts)")
    args = ap.parse_args(argv)
    bench_set = "quick" if args.quick else args.set
    if bench_set == "auto":
        bench_set = "full" if torch.cuda.is_available() else "smoke"
    deadline = args.deadline
    if args.budget is not None:
        deadline = min(deadline or float("inf"), time.time() + args.budget)
    device = "cuda" if bench_set != "smoke" else "cpu"
    env = timing.environment(device)
    cases = select(build_cases(), bench_set, args.filter)
    cfg = default_cfg(quick=bench_set == "quick")
    results, skipped, failed = [], [], []
    t_start = time.time()
    from .cases import run_case, wrong_result
    for i, case in enumerate(cases):
        if deadline is not None and time.time() + case.cost_s > deadline:
            skipped.append({"id": case.id, "reason": "time budget exhausted"})
            continue
        try:
            row = run_case(case, cfg)
        except SkipCase as e:
            skipped.append({"id": case.id, "reason": str(e)})
            continue
        except Exception as e:  # noqa: BLE001  (one broken case must not end the run)
            failed.append({"id": case.id, "error": f"{type(e).__name__}: {e}"})
            traceback.print_exc()
            continue
        med = row["median_s"]
        results.append(journal.entry(case, row))
        journal.record(case, row, env, bench_set)
        print(f"[{i + 1}/{len(cases)}] {case.id}: {med * 1e6:.1f} us (IQR {row['iqr_s'] * 1e6:.1f})", flush=True)
        wrong = wrong_result(row)
        if wrong:  # timed and recorded, but a failure
            failed.append({"id": case.id, "error": wrong})
            print(f"  FAILED: {wrong}", flush=True)
    out = {"machine_info": {"vggkern_env": env}, "commit_info": {"id": env.get("git_commit")},
           "benchmarks": results, "datetime": datetime.datetime.now(datetime.timezone.utc).isoformat(),
           "version": "vggkern-benchmarks-run", "vggkern_bench_set": bench_set,
           "vggkern_skipped": skipped, "vggkern_failed": failed, "wall_s": round(time.time() - t_start, 1)}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=str)
    print(f"{len(results)} timed, {len(skipped)} skipped, {len(failed)} failed in {out['wall_s']} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
