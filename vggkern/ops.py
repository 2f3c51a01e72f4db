"""Typed wrappers, fake (meta) kernels and autograd for torch.ops.vggkern.*.

The C++ side holds the schemas (csrc/vggkern.cpp), the CPU/CUDA kernels (csrc/ops/) and
conv3x3's and maxpool2x2's autograd (csrc/ops/autograd.cpp); this module makes the ops
traceable by torch.compile (register_fake), gives conv3x3 its autocast kernels, its vmap
rule and its path under torch.func transforms and forward-mode AD, and winograd_weight
and tensor_core_weight their backward and forward derivatives.
"""
import torch
from torch._prims_common import suggest_memory_format

from . import _C  # noqa: F401  (registers the schemas before we attach to them)

_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _is_dense(t: torch.Tensor) -> bool:
    # What our kernels take: a strided tensor, not quantized, not nested.
    return t.layout is torch.strided and not t.is_nested and not t.is_quantized


def _check_tensor(name: str, t, op: str) -> None:
    # What the op's schema says when called directly (torch.ops.vggkern.*), worded ours;
    # and a dense tensor (a sparse, mkldnn, quantized or nested one has no kernel of ours:
    # the dispatcher's NotImplementedError would name its backend, not the argument).
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: expected {name} to be a torch.Tensor, got {type(t).__name__}")
    if not _is_dense(t):
        layout = str(t.layout).removeprefix("torch.").lstrip("_")
        kind = "quantized" if t.is_quantized else "nested" if t.is_nested else layout
        raise ValueError(f"{op}: expected {name} to be a dense (strided) tensor, got a {kind} tensor")


def _check_flags(op: str, **flags) -> None:
    # bool only (not truthy values): a module's bias flag sits where nn.Conv2d's kernel_size does.
    for name, v in flags.items():
        if not isinstance(v, bool):
            raise TypeError(f"{op}: expected {name} to be a bool, got {v!r}"
                            + (" (the kernel is always 3x3, stride 1, padding 1)" if name == "bias" else ""))


def _check_activation(x: torch.Tensor, op: str) -> None:
    # Mirrors check_activation in csrc/common/op_support.h, so that traced and eager
    # calls fail alike.
    _check_entry(x, op)
    if x.dim() != 4:
        raise ValueError(f"{op}: expected x to be a 4-D tensor (N, C, H, W), got a {x.dim()}-D tensor "
                         f"of shape {list(x.shape)}")
    if x.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"{op}: expected x of dtype float32, float16 or bfloat16, got {x.dtype}")
    if x.shape[1] < 1:
        raise ValueError(f"{op}: expected x with at least one channel, got shape {list(x.shape)}")


def _check_entry(x, op: str) -> None:
    # What a wrapper checks before the op, which checks the rest itself in the same words
    # (csrc/common/op_support.h): that x is a tensor, and on a device the op has kernels
    # for (elsewhere the dispatcher's NotImplementedError would name no argument).
    _check_tensor("x", x, op)
    if not (x.is_cpu or x.is_cuda or x.is_meta):
        raise ValueError(f"{op}: expected x on a CPU or CUDA device, got {x.device}")


def _check_pool_input(x: torch.Tensor, op: str) -> None:
    # Mirrors check_maxpool2x2_input in csrc/common/op_support.h.
    _check_activation(x, op)
    if x.shape[2] < 2 or x.shape[3] < 2:
        raise ValueError(f"{op}: expected x with H >= 2 and W >= 2 for a 2x2 window, "
                         f"got H={x.shape[2]}, W={x.shape[3]}")


def maxpool2x2(x: torch.Tensor) -> torch.Tensor:
    """2x2 max-pool, stride 2, floor mode: exactly ``F.max_pool2d(x, 2, 2)``.

    x: (N, C, H, W), float32/float16/bfloat16, NCHW or channels_last (the output keeps
    the input's memory format; other strides are made contiguous). NaN propagates.
    """
    _check_entry(x, "vggkern.maxpool2x2")  # the rest the op checks, in the same words
    return torch.ops.vggkern.maxpool2x2(x)


@torch.library.register_fake("vggkern::maxpool2x2")
def _maxpool2x2_fake(x):
    _check_pool_input(x, "vggkern.maxpool2x2")
    n, c, h, w = x.shape
    return x.new_empty((n, c, h // 2, w // 2)).contiguous(memory_format=suggest_memory_format(x))


# ---- conv3x3 ----------------------------------------------------------------------

# The algorithms this build has, in the order "auto" prefers them; csrc/ops/conv3x3.cpp
# holds the same list (kConv3x3Algorithms).
_CONV3X3_ALGORITHMS = ("direct", "winograd_f2x2", "winograd_f4x4", "implicit_gemm")
# Tensor-core algorithms: float16/bfloat16, and float32 with TF32 math where TF32 is
# allowed (allow_tf32, else torch.backends.cudnn.allow_tf32).
_TENSOR_CORE_ALGORITHMS = ("implicit_gemm",)
# m of F(m x m, 3x3) for the Winograd algorithms: they also accept the pre-transformed
# weight winograd_weight(weight, m) of shape ((m + 2)**2, C, K), float32.
_WINOGRAD_TILE = {"winograd_f2x2": 2, "winograd_f4x4": 4}


def _tensor_core_channels(c: int) -> int:
    # C padded to a multiple of 8: the last dimension of tensor_core_weight's result.
    return (c + 7) // 8 * 8


def _is_tensor_core_layout(weight: torch.Tensor) -> bool:
    # tensor_core_weight's form (K, 3, 3, Cp), told from a raw (K, C, 3, 3) by its shape
    # (a raw weight's last dimension is 3, Cp a multiple of 8). Mirrors
    # csrc/ops/tensor_core_layout.h.
    return weight.dim() == 4 and weight.shape[1] == 3 and weight.shape[2] == 3 and weight.shape[3] != 3


def algorithms() -> list[str]:
    """Names of the conv3x3 algorithms this build has (valid ``algo=`` values besides "auto")."""
    return list(_CONV3X3_ALGORITHMS)


def resolve_algo(x: torch.Tensor, out_channels: int, *, pool: bool = False, algo: str = "auto",
                 allow_tf32: bool | None = None) -> str:
    """The algorithm ``conv3x3(x, weight, ..., pool=pool, algo=algo, allow_tf32=allow_tf32)``
    runs, for a weight of ``out_channels`` filters: ``algo`` itself unless it is "auto".
    "auto" runs the pick of the table measured on a GPU (``vggkern.tuned_tables()``: the
    build's, or those ``vggkern.set_tuned_tables`` gave; fp32 runs implicit_gemm only
    where TF32 is allowed); on a layer the table does not hold, the pick measured on the
    layer nearest it in work (C, K and N*H*W); "direct" where the table is empty. It never
    picks Winograd (looser error bound: README). Where that
    conv3x3 call would fail on x, out_channels, pool, algo or allow_tf32 (an unknown
    algo, pool=True with H or W < 2, "implicit_gemm" on float32 without TF32, ...), this
    raises the same error."""
    op = "vggkern.conv3x3"
    _check_flags(op, pool=pool)
    if allow_tf32 is not None:
        _check_flags(op, allow_tf32=allow_tf32)
    if not isinstance(algo, str):
        raise TypeError(f"{op}: expected algo to be a str, got {algo!r}")
    if not isinstance(out_channels, int) or isinstance(out_channels, bool):
        raise TypeError(f"vggkern.resolve_algo: expected out_channels to be an int, got {out_channels!r}")
    # In _check_conv3x3_inputs's order, less the checks of a weight and bias.
    _check_conv3x3_x(x, pool, op)
    _check_algo_name(algo, op)
    if not 1 <= out_channels < 2**63:  # (K is an int64 where the table is looked up)
        raise ValueError(f"vggkern.resolve_algo: expected out_channels >= 1 and < 2**63 (the weight's K), "
                         f"got {out_channels}")
    _check_tf32(x, algo, allow_tf32, op)
    if algo != "auto":
        return algo
    n, c, h, w = x.shape
    channels_last = suggest_memory_format(x) == torch.channels_last  # the op's reading of x's layout
    return _C.conv3x3_auto(str(x.dtype).removeprefix("torch."), n, c, h, w, out_channels, channels_last, pool,
                           _tf32_allowed(allow_tf32))


def _tf32_allowed(allow_tf32):
    """conv3x3's TF32 policy, as the op decides it (csrc/ops/conv3x3.cpp, tf32_allowed):
    allow_tf32 when given, else torch's setting for cuDNN convolutions."""
    return bool(allow_tf32) if allow_tf32 is not None else _C.tf32_allowed()


def _check_conv3x3_x(x, pool, op="vggkern.conv3x3"):
    # conv3x3's checks of x alone (with pool): _check_conv3x3_inputs's first, and resolve_algo's.
    _check_activation(x, op)
    n, c, h, w = x.shape
    if h < 1 or w < 1:
        raise ValueError(f"{op}: expected x with H >= 1 and W >= 1, got shape {list(x.shape)}")
    if pool and (h < 2 or w < 2):  # as F.max_pool2d: no empty output from a window that does not fit
        raise ValueError(f"{op}: pool=True: expected x with H >= 2 and W >= 2 for a 2x2 window, got H={h}, W={w}")


def _check_conv3x3_inputs(x, weight, bias, algo, allow_tf32=None, pool=False, op="vggkern.conv3x3", x_tf32=False,
                          y_tf32=False):
    # Mirrors csrc/ops/conv3x3.cpp so that traced and eager calls fail alike.
    _check_conv3x3_x(x, pool, op)
    for name, flag in (("x_tf32", x_tf32), ("y_tf32", y_tf32)):
        if flag and x.dtype != torch.float32:
            raise ValueError(f"{op}: {name}=True: expected x of dtype float32 (TF32 values are float32), got {x.dtype}")
    n, c, h, w = x.shape
    _check_tensor("weight", weight, op)
    if bias is not None:
        _check_tensor("bias", bias, op)
    _check_algo_name(algo, op)
    if algo == "auto" and _is_tensor_core_layout(weight):  # the one algorithm that takes it
        algo = _TENSOR_CORE_ALGORITHMS[0]
    m = _WINOGRAD_TILE.get(algo, 0)
    laid_out = algo in _TENSOR_CORE_ALGORITHMS and _is_tensor_core_layout(weight)
    operands = []
    if m and weight.dim() == 3:  # pre-transformed: winograd_weight(weight, m)
        p = (m + 2) ** 2
        if weight.shape[0] != p or weight.shape[1] != c:
            raise ValueError(f"{op}: expected weight of shape [K, C, 3, 3], or winograd_weight(weight, {m}) of shape "
                             f"[{p}, C, K], with C={c} matching x, got {list(weight.shape)}")
        k = weight.shape[2]
        if weight.dtype != torch.float32:
            raise ValueError(f"{op}: expected a pre-transformed weight (winograd_weight) of dtype float32, "
                             f"got {weight.dtype}")
        if weight.device != x.device:
            raise ValueError(f"{op}: expected weight on the same device as x ({x.device}), got {weight.device}")
    else:
        raw = weight.dim() == 4 and weight.shape[1] == c and weight.shape[2] == 3 and weight.shape[3] == 3
        if not (raw or (laid_out and weight.shape[3] == _tensor_core_channels(c))):
            alt = (f", or winograd_weight(weight, {m}) of shape [{(m + 2) ** 2}, C, K]" if m else
                   f", or tensor_core_weight(weight) of shape [K, 3, 3, {_tensor_core_channels(c)}]"
                   if algo in _TENSOR_CORE_ALGORITHMS else "")
            raise ValueError(f"{op}: expected weight of shape [K, C, 3, 3] with C={c} matching x{alt}, "
                             f"got {list(weight.shape)}")
        k = weight.shape[0]
        operands.append(("weight", weight))
    if k < 1:
        raise ValueError(f"{op}: expected weight with at least one output channel (K >= 1), got {list(weight.shape)}")
    if bias is not None:
        if bias.dim() != 1 or bias.shape[0] != k:
            raise ValueError(f"{op}: expected bias of shape [K] with K={k} matching weight, got {list(bias.shape)}")
        operands.append(("bias", bias))
    for name, t in operands:
        if t.dtype != x.dtype:
            raise ValueError(f"{op}: expected {name} of the same dtype as x ({x.dtype}), got {t.dtype}")
        if t.device != x.device:
            raise ValueError(f"{op}: expected {name} on the same device as x ({x.device}), got {t.device}")
    _check_tf32(x, algo, allow_tf32, op)


def _check_algo_name(algo, op):
    if algo != "auto" and algo not in _CONV3X3_ALGORITHMS:
        valid = ", ".join(f'"{a}"' for a in ("auto",) + _CONV3X3_ALGORITHMS)
        raise ValueError(f'{op}: unknown algo "{algo}"; expected one of {valid}')


def _check_tf32(x, algo, allow_tf32, op):
    # A tensor-core algo on float32 runs TF32 math: only where TF32 is allowed.
    if algo in _TENSOR_CORE_ALGORITHMS and x.dtype == torch.float32:
        # With allow_tf32=None the global setting decides; while Dynamo traces the wrapper
        # that is left to the fake kernel (which runs this check outside the trace) and to
        # the op itself at run time, which reads the setting again.
        if allow_tf32 is not None or not torch.compiler.is_compiling():
            if not _tf32_allowed(allow_tf32):
                raise ValueError(f'{op}: algo "{algo}": float32 on tensor cores needs TF32: allow it with '
                                 'torch.backends.cudnn.allow_tf32 = True or allow_tf32=True, or use algo="direct"')


def conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *, relu: bool = False,
            pool: bool = False, algo: str = "auto", allow_tf32: bool | None = None, x_tf32: bool = False,
            y_tf32: bool = False) -> torch.Tensor:
    """3x3 convolution, stride 1, padding 1, with bias, ReLU and 2x2 max-pool fused.

    Computes ``F.conv2d(x, weight, bias, padding=1)``, then ``relu`` if relu, then
    ``F.max_pool2d(., 2, 2)`` (floor mode; H, W >= 2) if pool, in one kernel that writes
    only the result. x: (N, C, H, W); weight: (K, C, 3, 3); bias: (K,) or None; one dtype,
    float32/float16/bfloat16, sums in fp32. The output keeps x's memory format (NCHW or
    channels_last). algo: "auto" (see ``resolve_algo``: the algorithm measured fastest for
    the layer on a GPU, else "direct") or one of ``algorithms()``.
    Differentiable (the backward is torch's own), also under torch.func's transforms
    (grad, vjp, jvp, hessian, vmap) and forward-mode AD. Under torch.autocast, float32 x,
    weight and bias are cast to the autocast dtype first, as for F.conv2d.

    Winograd algorithms ("winograd_f2x2", "winograd_f4x4": F(2x2,3x3) and F(4x4,3x3))
    also take ``weight = winograd_weight(w, 2 or 4)``, the filter transform done once
    (float32, shape (16 or 36, C, K)); given the raw weight they transform it per call.
    With U, x, bias and U itself have their derivatives: those of the Winograd
    computation done with U (for any U: one trained or pruned in the Winograd domain too).
    Their rounding differs from direct's (see README, Numerics), and a NaN/Inf input may
    spread within its output tile (2x2 or 4x4), not only to its 3x3 neighbourhood.

    Tensor cores ("implicit_gemm") run float16/bfloat16, and float32 with TF32 math (x and
    weight rounded to TF32, 10 mantissa bits, round-to-nearest ties away; products exact,
    sums and output fp32), as cuDNN does with TF32, and only where TF32 is allowed:
    ``allow_tf32`` True/False decides for this call; None (the default) follows
    ``torch.backends.cudnn.allow_tf32`` (torch's setting for cuDNN convolutions) at call
    time. float32 with TF32 not allowed is a ValueError saying so. The other algorithms
    compute float32 in fp32 and ignore ``allow_tf32``. "implicit_gemm" (and "auto", which
    such a weight resolves to it) also takes ``weight = tensor_core_weight(w)``, laid out
    once, shape (K, 3, 3, C padded to a multiple of 8); given the raw weight it lays it
    out per call. The output is the same bit for bit.

    TF32 chains (float32 only; the VGG models' layers use them where TF32 math runs):
    ``y_tf32=True`` rounds y to TF32 (as TF32 rounds x: 10 mantissa bits, to nearest, ties
    away) after bias and ReLU; ``x_tf32=True`` promises that x's values are TF32 already
    (such an output, or one pooled), so that the wgmma tiles skip rounding them again (a
    read and a write of every x element in shared memory). Rounding commutes with ReLU and
    max-pool, so a conv on a y_tf32 output with x_tf32 gives what it gives on the
    unrounded output, bit for bit. Given an x that is not TF32, x_tf32=True lets the wgmma
    tiles truncate its low bits instead of rounding them. Both are passed through as the
    identity by the derivatives.
    """
    _check_flags("vggkern.conv3x3", relu=relu, pool=pool, x_tf32=x_tf32, y_tf32=y_tf32)
    if allow_tf32 is not None:
        _check_flags("vggkern.conv3x3", allow_tf32=allow_tf32)
    # The op checks the rest itself, in the same words (its fake kernel runs
    # _check_conv3x3_inputs), so it is not checked twice here: ~8 us a call on the host.
    _check_entry(x, "vggkern.conv3x3")
    _check_tensor("weight", weight, "vggkern.conv3x3")
    if bias is not None:
        _check_tensor("bias", bias, "vggkern.conv3x3")
    if not isinstance(algo, str):
        raise TypeError(f"vggkern.conv3x3: expected algo to be a str, got {algo!r}")
    if (dtype := _autocast_dtype(x)) is not None:
        # The op's autocast kernel would cast them so.
        x, weight, bias = _autocast_operands(dtype, x, weight, bias)
    if _transforms_active():  # torch.func: the Function its transforms run
        return _Conv3x3Function.apply(x, weight, bias, relu, pool, algo, allow_tf32, x_tf32, y_tf32)
    return _conv3x3_op(x, weight, bias, relu, pool, algo, allow_tf32, x_tf32, y_tf32)


_conv3x3_op = torch.ops.vggkern.conv3x3.default
_transforms_active = torch._C._are_functorch_transforms_active  # a torch.func transform is on


@torch.library.register_fake("vggkern::conv3x3")
def _conv3x3_fake(x, weight, bias=None, relu=False, pool=False, algo="auto", allow_tf32=None, x_tf32=False,
                  y_tf32=False):
    _check_conv3x3_inputs(x, weight, bias, algo, allow_tf32, pool, x_tf32=x_tf32, y_tf32=y_tf32)
    n, _, h, w = x.shape
    k = weight.shape[2] if weight.dim() == 3 else weight.shape[0]
    shape = (n, k, h // 2, w // 2) if pool else (n, k, h, w)
    return x.new_empty(shape).contiguous(memory_format=suggest_memory_format(x))


# ---- autocast ------------------------------------------------------------------------
# Under torch.autocast conv3x3 is what F.conv2d is, an op that runs in the autocast dtype
# (float16 or bfloat16): x, a raw weight and the bias, where float32 (float tensors on
# the autocast's device type, except float64), are cast to it first, and the output is
# in it. A pre-transformed Winograd weight U stays float32, as the op takes it.

def _autocast_dtype(x: torch.Tensor) -> torch.dtype | None:
    """The dtype torch.autocast casts conv3x3's operands to for ``x`` now (None: no autocast
    on x's device type)."""
    device_type = "cuda" if x.is_cuda else "cpu" if x.is_cpu else None  # (x.device.type costs ~1 us)
    if device_type is None or not torch.is_autocast_enabled(device_type):
        return None
    return torch.get_autocast_dtype(device_type)


def _autocast_operands(dtype, x, weight, bias):
    if not isinstance(x, torch.Tensor):  # the op itself says what x should be
        return x, weight, bias
    device_type = x.device.type

    def cast(t):
        eligible = (isinstance(t, torch.Tensor) and t.is_floating_point() and t.device.type == device_type
                    and t.dtype is not torch.float64)
        return t.to(dtype) if eligible else t

    pre_transformed = isinstance(weight, torch.Tensor) and weight.dim() == 3
    return cast(x), weight if pre_transformed else cast(weight), cast(bias)


def _register_conv3x3_autocast(device_type: str) -> None:
    # What torch.library.register_autocast registers (a Python-dispatcher kernel, for
    # tracing, and a C++ dispatcher one), with the autocast dtype read at call time
    # rather than fixed at registration.
    key_name = "Autocast" + torch._C._dispatch_key_for_device(device_type)
    key = getattr(torch._C.DispatchKey, key_name)
    op = torch.ops.vggkern.conv3x3.default

    def kernel(x, weight, bias=None, relu=False, pool=False, algo="auto", allow_tf32=None, x_tf32=False,
               y_tf32=False):
        x, weight, bias = _autocast_operands(torch.get_autocast_dtype(device_type), x, weight, bias)
        with torch._C._ExcludeDispatchKeyGuard(torch._C.DispatchKeySet(key)):
            return op(x, weight, bias, relu, pool, algo, allow_tf32, x_tf32, y_tf32)

    op.py_impl(key)(kernel)
    _LIB.impl("conv3x3", lambda _keyset, *args: kernel(*args), key_name, with_keyset=True)


_LIB = torch.library.Library("vggkern", "IMPL")
for _device_type in ("cpu", "cuda"):
    _register_conv3x3_autocast(_device_type)


# ---- torch.func: transforms, vmap and forward-mode AD ----------------------------------
# The op's autograd is a C++ autograd::Function, which torch.func's transforms refuse and
# which has no forward derivative. This Python Function stands in for it there: the same
# forward (the op, below autograd), the same backward, and a forward derivative, both
# composite ops built from aten ops (csrc/ops/autograd.cpp), so differentiable again and
# vmapped by torch's own rules. A transform must meet it before its own dispatch, so
# conv3x3 and Conv3x3 apply it where one is on; forward-mode AD outside torch.func
# reaches it from the op's autograd kernel, as vggkern::_conv3x3_forward_ad's kernel.

class _Conv3x3Function(torch.autograd.Function):
    generate_vmap_rule = True  # the forward vmaps by the op's vmap rule, the rest by torch's

    @staticmethod
    def forward(x, weight, bias, relu, pool, algo, allow_tf32, x_tf32=False, y_tf32=False):
        return torch.ops.vggkern.conv3x3(x, weight, bias, relu, pool, algo, allow_tf32, x_tf32, y_tf32)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias, ctx.relu, ctx.pool = inputs[:5]
        # An input without a tangent gets None, not zeros: no work for it.
        ctx.set_materialize_grads(False)
        # The output too where ReLU's mask comes from it (relu: see mask_from_output in
        # csrc/ops/autograd.cpp).
        y = output if ctx.relu else None
        ctx.save_for_backward(x, weight, bias, y)
        ctx.save_for_forward(x, weight, bias, y)

    @staticmethod
    def backward(ctx, grad):
        if grad is None:  # grads are not materialised (setup_context): none came
            return (None,) * 9
        x, weight, bias, y = ctx.saved_tensors
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], bias is not None and ctx.needs_input_grad[2]]
        gx, gw, gb = torch.ops.vggkern._conv3x3_backward(grad, x, weight, bias, ctx.relu, ctx.pool, mask, y)
        return gx, gw, gb, None, None, None, None, None, None  # x_tf32, y_tf32: passed through as the identity

    @staticmethod
    def jvp(ctx, x_tangent, weight_tangent, bias_tangent, *_):
        x, weight, bias, y = ctx.saved_tensors
        return torch.ops.vggkern._conv3x3_jvp(x, weight, bias, x_tangent, weight_tangent, bias_tangent, ctx.relu,
                                              ctx.pool, y)


_LIB.impl("_conv3x3_forward_ad", _Conv3x3Function.apply, "CompositeImplicitAutograd")


@torch.library.register_vmap("vggkern::maxpool2x2", lib=_LIB)
def _maxpool2x2_vmap(info, in_dims, x):
    x = x.movedim(in_dims[0], 0)
    if x.dim() != 5:  # not a batch of (N, C, H, W): the op names what each element is
        return torch.stack([torch.ops.vggkern.maxpool2x2(e) for e in x]), 0
    return torch.ops.vggkern.maxpool2x2(x.flatten(0, 1)).unflatten(0, x.shape[:2]), 0  # the batch joins N


def _element(t, dim, i=0):
    # Element i of a vmapped argument t batched along dim (None: not batched, t itself).
    return t if dim is None else t.select(dim, i)


def _auto_for_element(x, dim, out_channels, pool, allow_tf32):
    # What "auto" picks for one element of a vmapped conv3x3: x's element 0 along dim,
    # and along the batch dimension of every outer vmap level, whose BatchedTensor cannot
    # say its memory format. "auto" as it is for an empty batch.
    functorch = torch._C._functorch
    while True:
        if dim is not None and x.shape[dim] == 0:
            return "auto"
        x = _element(x, dim)
        if not functorch.is_batchedtensor(x):
            return resolve_algo(x, out_channels, pool=pool, allow_tf32=allow_tf32)
        x, dim = functorch._unwrap_batched(x, functorch.maybe_get_level(x))


@torch.library.register_vmap("vggkern::conv3x3", lib=_LIB)
def _conv3x3_vmap(info, in_dims, x, weight, bias=None, relu=False, pool=False, algo="auto", allow_tf32=None,
                  x_tf32=False, y_tf32=False):
    # One call where the batch folds into the op's own dimensions, else one per element
    # (also where an element is not what the op takes: the op then names what it is).
    # "auto" is resolved for an element, as a loop of unbatched calls would resolve it, so
    # that the folded call runs the same algorithm and gives their values bit for bit.
    op = torch.ops.vggkern.conv3x3
    # in_dims covers the arguments passed: without bias, the trailing ones at their
    # defaults are left out (bias=None is then not batched).
    x_dim, w_dim, b_dim = (tuple(in_dims) + (None,))[:3]
    if w_dim is None and b_dim is None and x.dim() == 5:  # inputs batched, one conv: they join N
        x = x.movedim(x_dim, 0)
        if algo == "auto" and weight.dim() == 4 and not _is_tensor_core_layout(weight):
            algo = _auto_for_element(x, 0, weight.shape[0], pool, allow_tf32)
        y = op(x.flatten(0, 1), weight, bias, relu, pool, algo, allow_tf32, x_tf32, y_tf32)
        return y.unflatten(0, x.shape[:2]), 0
    if x_dim is None and x.dim() == 4 and w_dim is not None and weight.dim() == 5:  # convs batched: filters join K
        b = info.batch_size
        weight = weight.movedim(w_dim, 0)
        if algo == "auto" and not _is_tensor_core_layout(weight[0]):
            algo = _auto_for_element(x, None, weight.shape[1], pool, allow_tf32)
        weight = weight.flatten(0, 1)
        if bias is not None:
            bias = bias.movedim(b_dim, 0).flatten() if b_dim is not None else bias.repeat(b)
        y = op(x, weight, bias, relu, pool, algo, allow_tf32, x_tf32, y_tf32)
        return y.unflatten(1, (b, -1)), 1
    ys = [op(_element(x, x_dim, i), _element(weight, w_dim, i), _element(bias, b_dim, i), relu, pool, algo,
             allow_tf32, x_tf32, y_tf32) for i in range(info.batch_size)]
    return torch.stack(ys), 0


# ---- Winograd filter transform ---------------------------------------------------------


def _check_winograd_weight_inputs(weight, tile, op="vggkern.winograd_weight"):
    # Mirrors csrc/ops/winograd.cpp.
    _check_tensor("weight", weight, op)
    if isinstance(tile, bool) or not isinstance(tile, int) or tile not in (2, 4):
        raise ValueError(f"{op}: expected tile 2 (F(2x2,3x3)) or 4 (F(4x4,3x3)), got {tile!r}")
    _check_raw_weight(weight, op)


def _check_raw_weight(weight, op):
    # A weight transform's input (winograd_weight, tensor_core_weight): a raw (K, C, 3, 3)
    # weight of a float dtype on a CPU or CUDA device.
    if weight.device.type not in ("cpu", "cuda", "meta"):
        raise ValueError(f"{op}: expected weight on a CPU or CUDA device, got {weight.device}")
    if weight.dim() != 4 or weight.shape[2] != 3 or weight.shape[3] != 3:
        raise ValueError(f"{op}: expected weight of shape [K, C, 3, 3], got {list(weight.shape)}")
    if weight.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"{op}: expected weight of dtype float32, float16 or bfloat16, got {weight.dtype}")


def winograd_weight(weight: torch.Tensor, tile: int) -> torch.Tensor:
    """The Winograd filter transform U = G g G^T of every filter, for conv3x3's
    "winograd_f2x2" (tile=2) and "winograd_f4x4" (tile=4) algorithms.

    weight: (K, C, 3, 3), float32/float16/bfloat16. Returns U of shape ((tile + 2)**2, C,
    K) = (16 or 36, C, K), float32 whatever weight's dtype (the kernels compute in fp32;
    rounding U to fp16/bf16 would add an error as large as the output's own rounding),
    contiguous, on weight's device: U[i * (tile + 2) + j, c, k] = (G weight[k, c] G^T)[i, j].
    Pass it as conv3x3's weight to skip the per-call transform. Differentiable, in
    reverse and forward mode, under torch.func's transforms too.
    """
    _check_winograd_weight_inputs(weight, tile)
    if _transforms_active():  # torch.func: the Function its transforms run
        return _WinogradWeightFunction.apply(weight, tile)
    return torch.ops.vggkern.winograd_weight(weight, tile)


@torch.library.register_fake("vggkern::winograd_weight")
def _winograd_weight_fake(weight, tile):
    _check_winograd_weight_inputs(weight, tile)
    k, c = weight.shape[:2]
    return weight.new_empty(((tile + 2) ** 2, c, k), dtype=torch.float32)


# G of F(2x2) and F(4x4): the kernels' own constants, read once here as Python floats
# (a traced backward builds its tensor from them: fake mode refuses constant tensors).
_WINOGRAD_G = {m: torch.ops.vggkern._winograd_matrices(m)[1].tolist() for m in (2, 4)}
_WINOGRAD_G_ON = {}  # (tile, device) -> G there, float32: made on the first plain eager call


def _winograd_g(tile: int, like: torch.Tensor) -> torch.Tensor:
    # G (alpha x 3) on like's device. A plain eager call (a plain tensor, no torch.compile,
    # torch.func transform or dispatch mode) takes it from a cache: torch.tensor(...,
    # device="cuda") copies pageable memory, which synchronizes with the stream (refused by
    # torch.cuda.set_sync_debug_mode("error") and by a CUDA graph's capture). As the C++
    # derivatives' B and A (csrc/ops/autograd.cpp, winograd_transforms).
    plain = (type(like) is torch.Tensor and not like.is_meta and not torch.compiler.is_compiling()
             and not _transforms_active() and torch._C._len_torch_dispatch_stack() == 0)
    if not plain:
        return torch.tensor(_WINOGRAD_G[tile], dtype=torch.float32, device=like.device)
    g = _WINOGRAD_G_ON.get((tile, like.device))
    if g is None:
        with torch.inference_mode(False):
            g = _WINOGRAD_G_ON.setdefault((tile, like.device),
                                          torch.tensor(_WINOGRAD_G[tile], dtype=torch.float32, device=like.device))
    return g


# ---- the weight transforms' autograd ---------------------------------------------------
# winograd_weight and tensor_core_weight are linear in the weight, so each has a backward
# and a forward derivative of its own (torch.library.register_autograd gives a backward
# only: a forward-mode tangent would pass through it dropped, and torch.func refuses the
# Function it makes). Each Function below is what its op's Autograd kernel applies, and
# what the Python function applies where a torch.func transform is on (as conv3x3 does).

def _autograd_kernel(function, name):
    # The op's Autograd kernel, as conv3x3's (csrc/ops/autograd.cpp): the op below autograd
    # where there is nothing to differentiate (no gradient recorded, no forward-mode
    # tangent), else its Function, which computes by the op below autograd. A transform's
    # own dispatch that reaches this kernel to differentiate it is refused by name: the
    # Function must be applied above that dispatch (the Python function does).
    op = getattr(torch.ops.vggkern, name).default

    def kernel(keyset, weight, *args):
        _check_tensor("weight", weight, f"vggkern.{name}")  # a tensor that is not dense has no dual to unpack
        recorded = torch.is_grad_enabled() and weight.requires_grad
        if not recorded and torch._VF._unpack_dual(weight, 0).tangent is None:
            with torch._C._AutoDispatchBelowAutograd():
                return op.redispatch(keyset & torch._C._after_autograd_keyset, weight, *args)
        if _transforms_active():
            raise NotImplementedError(
                f"vggkern.{name}: under torch.func transforms (grad, vjp, jvp, jacrev, hessian, vmap with a "
                f"gradient) call vggkern.{name}, which runs a transformable autograd.Function there, rather than "
                f"torch.ops.vggkern.{name} (under torch.compile, whose tracing reaches the op inside that Function, "
                f"compile such a function without fullgraph=True: dynamo then runs the transform eagerly)")
        return function.apply(weight, *args)
    return kernel


class _WinogradWeightFunction(torch.autograd.Function):
    # U[(i, j), c, k] = sum_ab G[i, a] g[k, c, a, b] G[j, b]: backward dg[k, c, a, b] =
    # sum_ij G[i, a] dU G[j, b] (in weight's dtype), forward derivative U of the tangent.
    generate_vmap_rule = True

    @staticmethod
    def forward(weight, tile):
        return torch.ops.vggkern.winograd_weight(weight, tile)  # nothing to record in a Function's forward

    @staticmethod
    def setup_context(ctx, inputs, output):
        weight, ctx.tile = inputs
        ctx.dtype = weight.dtype
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, grad):
        if grad is None:
            return None, None
        g = _winograd_g(ctx.tile, grad)
        a = ctx.tile + 2
        du = grad.reshape(a, a, *grad.shape[1:])
        return torch.einsum("ia,ijck,jb->kcab", g, du, g).to(ctx.dtype), None

    @staticmethod
    def jvp(ctx, weight_tangent, _tile_tangent):
        return winograd_weight(weight_tangent, ctx.tile)  # differentiable again, under torch.func too


def _weights_as_filters(op, weight, in_dim, *args, filter_dim):
    # A weight transform's vmap rule: a batch of B (K, C, 3, 3) weights is one weight of
    # B K filters, whose output's filter dimension (filter_dim) is split back into (B, K).
    w = weight.movedim(in_dim, 0)
    if w.dim() != 5:  # not a batch of (K, C, 3, 3): the op names what each element is
        return torch.stack([op(e, *args) for e in w]), 0
    return op(w.flatten(0, 1), *args).unflatten(filter_dim, w.shape[:2]), filter_dim


@torch.library.register_vmap("vggkern::winograd_weight", lib=_LIB)
def _winograd_weight_vmap(info, in_dims, weight, tile):  # U (P, C, B K)
    return _weights_as_filters(torch.ops.vggkern.winograd_weight, weight, in_dims[0], tile, filter_dim=2)


_LIB.impl("winograd_weight", _autograd_kernel(_WinogradWeightFunction, "winograd_weight"), "Autograd", with_keyset=True)


# ---- the tensor-core weight layout ------------------------------------------------------


def _check_tensor_core_weight_input(weight, op="vggkern.tensor_core_weight"):
    # Mirrors csrc/ops/tensor_core_weight.cpp.
    _check_tensor("weight", weight, op)
    _check_raw_weight(weight, op)


def tensor_core_weight(weight: torch.Tensor) -> torch.Tensor:
    """The weight as conv3x3's tensor-core algorithm ("implicit_gemm") reads it, laid out
    once: pass it as conv3x3's weight to skip the per-call layout (a launch, and a read
    and a write of the whole weight, which matter at small batch; nn.Conv3x3 keeps it so
    by itself).

    weight: (K, C, 3, 3), float32/float16/bfloat16, any strides. Returns (K, 3, 3, Cp),
    Cp = C rounded up to a multiple of 8 (channels C..Cp-1 zero), contiguous, same dtype
    and device: out[k, r, s, c] = weight[k, c, r, s]; float32 rounded to TF32 (10
    mantissa bits, nearest, ties away from zero), the tensor cores' math, which conv3x3
    then does not redo (a float32 weight of this shape not made so has its low 13
    mantissa bits dropped by the tensor cores rather than rounded). conv3x3 takes it with
    algo "implicit_gemm" or "auto" (which it then resolves to "implicit_gemm"), for x of
    C channels. Differentiable (reverse and forward mode, torch.func): the gradient passes
    to weight's layout and a tangent to this one (through the TF32 rounding as the
    identity, as the conv's own backward treats it).

    Under torch.autocast, lay out the weight in the autocast dtype
    (tensor_core_weight(weight.to(dtype)), as nn.Conv3x3 does): a float32 laid-out weight
    is cast as it is, from its TF32 values, and a value rounded twice can land one ulp
    from the raw weight's single cast (bfloat16: about 1 in 32 values), so the output is
    then not the raw weight's bit for bit."""
    _check_tensor_core_weight_input(weight)
    if _transforms_active():  # torch.func: the Function its transforms run
        return _TensorCoreWeightFunction.apply(weight)
    return torch.ops.vggkern.tensor_core_weight(weight)


@torch.library.register_fake("vggkern::tensor_core_weight")
def _tensor_core_weight_fake(weight):
    _check_tensor_core_weight_input(weight)
    k, c = weight.shape[:2]
    return weight.new_empty((k, 3, 3, _tensor_core_channels(c)))


class _TensorCoreWeightFunction(torch.autograd.Function):
    # out[k, r, s, c] = weight[k, c, r, s] (c < C; zeros to Cp): the gradient takes channels
    # :C back to weight's layout, the tangent is laid out the same way; the TF32 rounding
    # passes both as the identity (as the conv's own backward treats it).
    generate_vmap_rule = True

    @staticmethod
    def forward(weight):
        return torch.ops.vggkern.tensor_core_weight(weight)  # nothing to record in a Function's forward

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.channels = inputs[0].shape[1]
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, grad):
        return None if grad is None else grad[..., :ctx.channels].permute(0, 3, 1, 2)

    @staticmethod
    def jvp(ctx, weight_tangent):
        laid = weight_tangent.permute(0, 2, 3, 1)
        return torch.nn.functional.pad(laid, (0, _tensor_core_channels(ctx.channels) - ctx.channels)).contiguous()


@torch.library.register_vmap("vggkern::tensor_core_weight", lib=_LIB)
def _tensor_core_weight_vmap(info, in_dims, weight):  # (B K, 3, 3, Cp)
    return _weights_as_filters(torch.ops.vggkern.tensor_core_weight, weight, in_dims[0], filter_dim=0)


_LIB.impl("tensor_core_weight", _autograd_kernel(_TensorCoreWeightFunction, "tensor_core_weight"), "Autograd",
          with_keyset=True)


# ---- the tensor-core layout of x (internal: conv3x3 makes it per call; tests, benchmarks) ----


@torch.library.register_fake("vggkern::_tensor_core_input")
def _tensor_core_input_fake(x):
    _check_activation(x, "vggkern._tensor_core_input")  # mirrors csrc/ops/tensor_core_input.cpp
    n, c, h, w = x.shape
    return torch.empty((n, _tensor_core_channels(c), h, w), dtype=x.dtype, device=x.device,
                       memory_format=torch.channels_last)


# ---- tensors that are not dense ----------------------------------------------------------
# A sparse, mkldnn, quantized or nested tensor given to an op called directly
# (torch.ops.vggkern.*) would reach the dispatcher's NotImplementedError, which names the
# backend only. A kernel at those keys names the argument, as the wrappers do.

_NOT_DENSE_KEYS = ("SparseCPU", "SparseCUDA", "SparseMeta", "SparseCsrCPU", "SparseCsrCUDA", "SparseCsrMeta",
                   "MkldnnCPU", "QuantizedCPU", "QuantizedCUDA", "NestedTensorCPU", "NestedTensorCUDA",
                   "NestedTensorMeta")


def _refuse_not_dense(name: str):
    arguments = [a.name for a in getattr(torch.ops.vggkern, name).default._schema.arguments]

    def kernel(*args, **kwargs):
        given = {**dict(zip(arguments, args)), **kwargs}
        for argument in arguments:
            if isinstance(given.get(argument), torch.Tensor):
                _check_tensor(argument, given[argument], f"vggkern.{name}")
        raise AssertionError(f"vggkern.{name}: its kernel for tensors that are not dense ran, but none is")
    return kernel


# (Not the derivative ops: composite, their kernels run above these keys and check the same
# in C++: csrc/ops/autograd.cpp, check_dense.)
for _name in ("maxpool2x2", "conv3x3", "winograd_weight", "tensor_core_weight", "_tensor_core_input"):
    for _key in _NOT_DENSE_KEYS:
        _LIB.impl(_name, _refuse_not_dense(_name), _key)
