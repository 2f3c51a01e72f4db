"""maxpool2x2: vggkern.maxpool2x2 vs torch F.max_pool2d(x, 2, 2) on the five VGG pool inputs.

Cases and how they are timed: benchmarks/cases.py, benchmarks/timing.py.
"""
import pytest

from .cases import build_cases

CASES = [c for c in build_cases() if c.group == "maxpool"]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_maxpool(case, run_bench):
    run_bench(case)
