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

import warnings as _warnings

import torch  # loads libtorch, which _C links against

_REBUILD = ("rebuild it against this torch: `pip install --no-build-isolation --no-cache-dir .` in vggkern's "
            "source tree (or the same with its sdist for '.'), with CUDA_HOME and TORCH_CUDA_ARCH_LIST set (README, "
            "'Two commands'); without nvcc it builds CPU-only")


def _load_failure(error):
    """The message for an extension that did not load: not built, or built against another torch
    (whose C++ symbols then fail to resolve)."""
    return (f"vggkern's compiled extension (vggkern._C) did not load: {error}. It is built by pip and "
            f"links against the torch it was built with; this process runs torch {torch.__version__}. "
            f"Build or {_REBUILD}")


def _torch_mismatch(built, running):
    """A warning's text where the torch the extension was built against (TORCH_VERSION,
    e.g. "2.14.1") and the one running (torch.__version__, e.g. "2.14.1+cu130") differ in
    major or minor version (C++ ABI changes between those); None where they agree."""
    if built.split(".")[:2] == running.split("+")[0].split(".")[:2]:
        return None
    return f"vggkern._C was built against torch {built}, but torch {running} is running: {_REBUILD}"


try:
    from . import _C  # registers torch.ops.vggkern.*
except ImportError as _error:
    raise ImportError(_load_failure(_error)) from _error
if not hasattr(_C, "TORCH_VERSION"):  # a build of older sources, loaded by these (an editable install not rebuilt)
    raise ImportError(_load_failure("it was built from older vggkern sources than this package's"))
if (_mismatch := _torch_mismatch(_C.TORCH_VERSION, torch.__version__)) is not None:
    _warnings.warn(_mismatch, RuntimeWarning, stacklevel=2)
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
