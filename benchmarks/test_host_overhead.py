"""Smoke test of benchmarks/host_overhead.py (CI has no GPU; this keeps it from rotting)."""
from benchmarks.host_overhead import measure


def test_host_overhead_measures_every_path():
    out = measure(n=3, reps=1)
    assert len(out) == 9 and all(us > 0 for us in out.values())
