"""Whole network: torchvision VGG16/19 (eager NCHW/channels_last, CUDA graph, torch.compile) and ours when vggkern.vgg16/vgg19 exist.

Cases and how they are timed: benchmarks/cases.py, benchmarks/timing.py.
"""
import pytest

from .cases import build_cases

CASES = [c for c in build_cases() if c.group == "network"]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_network(case, run_bench):
    run_bench(case)
