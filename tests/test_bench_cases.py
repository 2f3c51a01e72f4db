"""benchmarks/cases.py's fp32 math switch: what the benchmarks' fp32 rows run under."""
import warnings

import torch

from benchmarks.cases import fp32_math
from vggkern import _C


def test_fp32_math_switches_cudnn_cublas_and_our_op_and_restores():
    before = (torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision())
    for math, tf32 in (("tf32", True), ("ieee", False)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no other warning either, but torch 2.9-2.10's
            # once-per-process note that the legacy TF32 setters are deprecated
            warnings.filterwarnings("ignore", message=".*new API settings to control TF32.*")
            with fp32_math(math):
                # Both of torch's views agree, and none of the getters raises.
                assert torch.backends.cudnn.allow_tf32 is tf32
                assert torch.backends.cuda.matmul.allow_tf32 is tf32
                assert torch.get_float32_matmul_precision() == ("high" if tf32 else "highest")
                assert (torch.backends.cuda.matmul.fp32_precision == "tf32") is tf32
                assert _C.tf32_allowed() is tf32  # what vggkern.conv3x3 follows with allow_tf32=None
                with torch.backends.cudnn.flags(enabled=True):
                    pass
        assert (torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()) == before
    with fp32_math("-"):
        assert (torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()) == before
