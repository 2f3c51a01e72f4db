"""Typed wrappers, fake (meta) kernels and autograd for torch.ops.vggkern.*.

The C++ side (csrc/vggkern.cpp) holds the schemas and the CPU/CUDA kernels; this
module makes the ops traceable by torch.compile (register_fake) and differentiable
(register_autograd).
"""
import torch
from torch._prims_common import suggest_memory_format

from . import _C  # noqa: F401  (registers the schemas before we attach to them)

_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _check_pool_input(x: torch.Tensor, op: str) -> None:
    # Mirrors csrc/ops/maxpool2x2.cpp so that traced and eager calls fail alike.
    if x.device.type not in ("cpu", "cuda", "meta"):
        raise ValueError(f"{op}: expected x on a CPU or CUDA device, got {x.device}")
    if x.dim() != 4:
        raise ValueError(f"{op}: expected x to be a 4-D tensor (N, C, H, W), got a {x.dim()}-D tensor "
                         f"of shape {list(x.shape)}")
    if x.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"{op}: expected x of dtype float32, float16 or bfloat16, got {x.dtype}")
    if x.shape[1] < 1:
        raise ValueError(f"{op}: expected x with at least one channel, got shape {list(x.shape)}")
    if x.shape[2] < 2 or x.shape[3] < 2:
        raise ValueError(f"{op}: expected x with H >= 2 and W >= 2 for a 2x2 window, "
                         f"got H={x.shape[2]}, W={x.shape[3]}")


def maxpool2x2(x: torch.Tensor) -> torch.Tensor:
    """2x2 max-pool, stride 2, floor mode: exactly ``F.max_pool2d(x, 2, 2)``.

    x: (N, C, H, W), float32/float16/bfloat16, NCHW or channels_last (the output keeps
    the input's memory format; other strides are made contiguous). NaN propagates.
    """
    _check_pool_input(x, "vggkern.maxpool2x2")
    return torch.ops.vggkern.maxpool2x2(x)


@torch.library.register_fake("vggkern::maxpool2x2")
def _maxpool2x2_fake(x):
    _check_pool_input(x, "vggkern.maxpool2x2")
    n, c, h, w = x.shape
    return x.new_empty((n, c, h // 2, w // 2)).contiguous(memory_format=suggest_memory_format(x))


def _maxpool2x2_setup_context(ctx, inputs, output):
    (x,) = inputs
    ctx.save_for_backward(x)


def _maxpool2x2_backward(ctx, grad):
    # The gradient of a max goes to the element torch's max_pool2d picks (the first
    # maximum of the window); torch computes it.
    (x,) = ctx.saved_tensors
    _, indices = torch.ops.aten.max_pool2d_with_indices(x, [2, 2], [2, 2])
    return torch.ops.aten.max_pool2d_with_indices_backward(grad, x, [2, 2], [2, 2], [0, 0], [1, 1], False, indices)


torch.library.register_autograd("vggkern::maxpool2x2", _maxpool2x2_backward,
                                setup_context=_maxpool2x2_setup_context)
