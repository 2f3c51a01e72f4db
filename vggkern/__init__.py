"""vggkern: hand-written CUDA kernels for VGG-style networks, as torch ops and modules.

Ops live in ``torch.ops.vggkern``; the typed wrappers here are the Python API. CPU
tensors given to the ops run the same kernels' source through vggkern's SIMT emulator
(exact, slow: for verification).

Modules (``vggkern.nn``: Conv3x3, MaxPool2x2, FusedSequential), models (vgg11/13/16/19
and their _bn variants, from_torchvision) and ``convert`` (swap the modules into any
model) run our kernels on CUDA tensors; on CPU tensors they run torch's own ops unless
``set_cpu_backend("emulator")`` (or ``with cpu_backend("emulator"):``) says otherwise.
"""
__version__ = "0.1.0"

import torch  # noqa: F401  (loads libtorch, which _C links against)

from . import _C  # noqa: F401  (registers torch.ops.vggkern.*)
from .ops import algorithms, conv3x3, maxpool2x2, resolve_algo, tensor_core_weight, winograd_weight  # noqa: E402
from .backend import cpu_backend, get_cpu_backend, set_cpu_backend  # noqa: E402
from .tuning import set_tuned_tables, tuned_tables  # noqa: E402
from . import nn  # noqa: E402
from .nn import Conv3x3, MaxPool2x2  # noqa: E402
from .convert import ConvertReport, convert  # noqa: E402
from .models import (VGG, from_torchvision, vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16, vgg16_bn,  # noqa: E402
                     vgg19, vgg19_bn)

__all__ = ["conv3x3", "algorithms", "resolve_algo", "maxpool2x2", "winograd_weight", "tensor_core_weight",
           "build_info", "__version__",
           "nn", "Conv3x3", "MaxPool2x2", "convert", "ConvertReport",
           "VGG", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
           "from_torchvision",
           "set_cpu_backend", "get_cpu_backend", "cpu_backend", "tuned_tables", "set_tuned_tables"]


def build_info():
    """What this build contains: CUDA kernels and their archs, emulator details."""
    return _C.build_info()
