"""Per-layer 3x3 convs: VGG16/19 shapes x batch x dtype x layout x fusion, ours (every algo) vs torch/cuDNN.

Cases and how they are timed: benchmarks/cases.py, benchmarks/timing.py.
"""
import pytest

from .cases import build_cases

CASES = [c for c in build_cases() if c.group == "conv"]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_conv(case, run_bench):
    run_bench(case)
