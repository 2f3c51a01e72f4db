"""vggkern: hand-written CUDA kernels for VGG-style networks, as torch ops.

Ops live in ``torch.ops.vggkern``; the typed wrappers here are the Python API.
CPU tensors run the same kernels' source through vggkern's SIMT emulator (exact,
slow: for verification).
"""
__version__ = "0.1.0"

import torch  # noqa: F401  (loads libtorch, which _C links against)

from . import _C  # noqa: F401  (registers torch.ops.vggkern.*)
from .ops import algorithms, conv3x3, maxpool2x2, winograd_weight  # noqa: E402

__all__ = ["conv3x3", "algorithms", "maxpool2x2", "winograd_weight", "build_info", "__version__"]


def build_info():
    """What this build contains: CUDA kernels and their archs, emulator details."""
    return _C.build_info()
