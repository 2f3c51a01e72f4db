"""x laid out for implicit_gemm: torch.ops.vggkern._tensor_core_input vs ATen's conversion
(x.contiguous(channels_last); for a padded C, a zero fill and a copy) on every VGG layer's x.

Cases and how they are timed: benchmarks/cases.py, benchmarks/timing.py.
"""
import pytest

from .cases import build_cases

CASES = [c for c in build_cases() if c.group == "layout"]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_layout(case, run_bench):
    run_bench(case)
