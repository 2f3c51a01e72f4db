"""torch.nn modules on vggkern's kernels: drop-ins for nn.Conv2d(C, K, 3, padding=1)
(with ReLU and 2x2 max-pool fused in) and nn.MaxPool2d(2, 2), and FusedSequential, an
nn.Sequential that runs each conv with the BatchNorm, ReLU and max-pool after it as one
kernel while its layers stay torchvision's.

CUDA tensors run vggkern's kernels. CPU tensors run PyTorch's own ops by default, or
vggkern's kernels through the SIMT emulator after ``vggkern.set_cpu_backend("emulator")``
(see vggkern.backend). The reprs say which.
"""
import math
import weakref

import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import nn
from torch.fx._symbolic_trace import is_fx_symbolic_tracing
from torch.nn.modules import module as _module_globals
from torch.optim.optimizer import register_optimizer_step_post_hook

from . import ops, tuning
from .backend import describe_path, get_cpu_backend

__all__ = ["Conv3x3", "MaxPool2x2", "FusedSequential", "clear_weight_caches"]


_conv3x3_op = ops._conv3x3_op
_transforms_active = ops._transforms_active


def _tracing() -> bool:
    # torch.compile or torch.jit.trace is recording: the modules' eager-mode state (the
    # prepared-weight cache, "auto" resolved from x's strides) stays out of the record.
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def _has_tangent(tensors) -> bool:
    """Whether any of ``tensors`` (None allowed) carries a tangent of the current forward-mode
    AD level (torch.autograd.forward_ad; outside a dual level, none does): preparing it
    (a detached copy) would drop that tangent."""
    if getattr(fwAD, "_current_level", 0) < 0:  # no dual level entered (1.6 us a call saved)
        return False
    return any(t is not None and fwAD.unpack_dual(t).tangent is not None for t in tensors)


def _use_kernels(x: torch.Tensor) -> bool:
    # CPU tensors follow the CPU backend; every other device (CUDA, meta) goes to the
    # ops, which run our kernels (or refuse the device with a clear message).
    if not isinstance(x, torch.Tensor):
        hint = (": torch.fx's symbolic tracing must treat vggkern's modules as leaves, e.g. "
                "create_feature_extractor(model, nodes, tracer_kwargs={'leaf_modules': [vggkern.Conv3x3, "
                "vggkern.MaxPool2x2]})") if isinstance(x, torch.fx.Proxy) else ""
        raise TypeError(f"vggkern: expected x to be a torch.Tensor, got {type(x).__name__}{hint}")
    if not ops._is_dense(x):
        return False  # torch's ops, as nn.Conv2d's (they take mkldnn tensors; refuse others in their words)
    if x.dtype == torch.float64:
        return False  # torch's ops: the kernels run float32, float16 and bfloat16 (float64: a reference, gradcheck)
    return not x.is_cpu or get_cpu_backend() == "emulator"


# torch.optim's fused optimizers (fused=True: one kernel over all the parameters) update
# them in place without bumping their version counters. Every torch.optim.Optimizer step
# (subclasses' too: Optimizer.__init__ wraps their step) is counted instead, and a
# prepared weight's key holds the count: any step drops what was prepared before it.
_optimizer_steps = 0


def _count_optimizer_step(optimizer, args, kwargs) -> None:
    global _optimizer_steps
    _optimizer_steps += 1


register_optimizer_step_post_hook(_count_optimizer_step)


def clear_weight_caches(module: nn.Module) -> None:
    """``Conv3x3.clear_weight_cache()`` on every Conv3x3 in ``module`` (a model, or one
    Conv3x3): after changing weights through ``.data``."""
    for m in module.modules():
        if isinstance(m, Conv3x3):
            m.clear_weight_cache()


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _fixed(value):
    # One of nn.Conv2d's or nn.MaxPool2d's geometry attributes, as the torch module a drop-in
    # replaces holds it (code written for those reads them: FLOP counters, summaries);
    # read-only, since the kernels compute this geometry and no other.
    return property(lambda self: value, doc=f"Always {value!r} (read-only).")


class Conv3x3(nn.Module):
    """3x3 convolution, stride 1, padding 1, with bias, ReLU and 2x2 max-pool fused:
    ``F.conv2d(x, weight, bias, padding=1)``, then ReLU if ``relu``, then
    ``F.max_pool2d(., 2, 2)`` if ``pool``.

    A drop-in for ``nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)``:
    same parameters (``weight`` (K, C, 3, 3), ``bias`` (K) or None), same state_dict
    keys, same initialisation. ``algo``: "auto" or one of ``vggkern.algorithms()``.
    Input (N, C, H, W) in float32/float16/bfloat16, NCHW or channels_last (the output
    keeps the input's memory format on our kernels). A float64 module (``.double()``: a
    reference, gradcheck) runs torch's ops on every device.
    """

    # nn.Conv2d(C, K, 3, padding=1)'s geometry.
    kernel_size, stride, padding, dilation = _fixed((3, 3)), _fixed((1, 1)), _fixed((1, 1)), _fixed((1, 1))
    groups, padding_mode = _fixed(1), _fixed("zeros")

    # The weight as the kernel takes it (with a folded BatchNorm: and the bias), with the
    # state it was made from (see _prepared): one tuple, replaced whole, so that a thread
    # never reads one call's key with another's weight. A plain attribute, not in the
    # state_dict.
    _weight_cache = None
    # What "auto" resolved to for the last input's (shape, strides, dtype, pool, TF32
    # setting), which is all resolve_algo reads: (key, algo), replaced whole.
    _auto_memo = None

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True, *, relu: bool = False,
                 pool: bool = False, algo: str = "auto", device=None, dtype=None):
        super().__init__()
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError(f"Conv3x3: expected {name} to be an int, got {v!r}")
        # bool only: Conv3x3(C, K, 3), nn.Conv2d's order, must not pass 3 as bias=True.
        ops._check_flags("Conv3x3", bias=bias, relu=relu, pool=pool)
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"Conv3x3: expected in_channels >= 1 and out_channels >= 1, got {in_channels} "
                             f"and {out_channels}")
        _check_algo(algo)
        if dtype is not None and dtype not in (*ops._FLOAT_DTYPES, torch.float64):
            raise ValueError(f"Conv3x3: expected dtype float32, float16, bfloat16 (the kernels') or float64 (torch's "
                             f"ops), got {dtype}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.relu, self.pool, self.algo = relu, pool, algo
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3, **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels, **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Conv2d's initialisation (kaiming_uniform with a=sqrt(5); bias U(-1/sqrt(fan_in), ..)).
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_channels * 9
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    @classmethod
    def from_conv2d(cls, conv: nn.Conv2d, *, relu: bool = False, pool: bool = False,
                    algo: str = "auto") -> "Conv3x3":
        """A Conv3x3 computing what ``conv`` (then ReLU if relu, then 2x2 max-pool if
        pool) computes. Shares conv's Parameter objects (no copy: an optimizer holding
        them keeps working). conv must be 3x3, stride 1, padding 1 (or "same"),
        dilation 1, groups 1, padding_mode "zeros", with its weight and bias Parameters of
        its own (not recomputed by a hook: torch.nn.utils.prune, spectral_norm); otherwise
        ValueError."""
        reason = conv2d_incompatibility(conv)
        if reason:
            raise ValueError(f"Conv3x3.from_conv2d: cannot replace {conv}: {reason}")
        ops._check_flags("Conv3x3.from_conv2d", relu=relu, pool=pool)
        _check_algo(algo, "Conv3x3.from_conv2d")
        return cls._sharing(conv.weight, conv.bias, relu=relu, pool=pool, algo=algo)

    @classmethod
    def _sharing(cls, weight: nn.Parameter, bias: nn.Parameter | None, *, relu: bool, pool: bool,
                 algo: str) -> "Conv3x3":
        # A Conv3x3 holding these Parameter objects (no initialisation, no copy).
        m = cls.__new__(cls)
        nn.Module.__init__(m)
        m.out_channels, m.in_channels = weight.shape[:2]
        m.relu, m.pool, m.algo = relu, pool, algo
        m.weight = weight
        m.register_parameter("bias", bias)
        return m

    def clear_weight_cache(self) -> None:
        """Drop the prepared weight, so that the next forward prepares it from the weight
        as it is then. Needed only after a change its version counter does not see: one
        made through ``weight.data`` (``conv.weight.data.copy_(w)``), or by other code that
        writes the weight's memory without bumping its version counter. In-place ops on the
        Parameter itself (also under torch.no_grad()), any ``torch.optim.Optimizer`` step
        (fused ones too, which leave the version counter), ``load_state_dict``, assigning a
        new weight and ``.to()``/``.half()`` (any ``Module._apply``, which drops it) are all
        seen."""
        self._weight_cache = None

    def _apply(self, fn, *args, **kwargs):
        # .to(), .half(), .float(), .cuda() and the like set the parameters' data through
        # .data, which the version counter does not see, and a freed address can come back
        # (a .half().float() round trip): the prepared weight is dropped here.
        self._weight_cache = None
        return super()._apply(fn, *args, **kwargs)

    def __getstate__(self):
        # Pickling (torch.save of a whole model, multiprocessing) leaves out the caches:
        # they hold weak references, which do not pickle, and are remade on first use.
        state = self.__dict__.copy()
        state.pop("_weight_cache", None)
        state.pop("_auto_memo", None)
        return state

    def _weight_and_bias(self):
        # self.weight, self.bias, read the fast way: a Parameter is found through
        # nn.Module.__getattr__ only after a failed normal lookup, ~1.5 us each (host
        # overhead, benchmarks/README.md). Anything not in _parameters (a parametrization's
        # property, a pruned weight's plain attribute) is read the normal way.
        params = self._parameters
        w = params["weight"] if "weight" in params else self.weight
        return w, (params["bias"] if "bias" in params else self.bias)

    def _prepared(self, algo: str | None = None, x: torch.Tensor | None = None, bn: nn.BatchNorm2d | None = None,
                  dtype: torch.dtype | None = None, weight_and_bias: tuple | None = None):
        """(weight, bias) as ``algo``'s kernel takes them (default ``self.algo``; "auto" is
        resolved per input by _run), so that a forward pass does not transform or copy
        filters: the Winograd algorithms take U = winograd_weight(weight, m); the
        tensor-core ones tensor_core_weight(weight) (K, 3, 3, Cp), TF32-rounded in float32,
        or a 16-bit weight already channels_last with C a multiple of 8 (the same bytes);
        the others (K, C, 3, 3) contiguous. With ``bn`` (an eval-mode
        BatchNorm2d after this conv, which FusedSequential folds in): the weight and bias
        of conv then bn, folded in float64, then laid out so. ``dtype`` (torch.autocast's,
        default the weight's): the weight cast to it first.

        A weight already in its layout is used as it is; otherwise the prepared copy is
        kept until the weight changes (in place: its version counter, or any
        torch.optim.Optimizer step; replaced: its data pointer; or moved: device and dtype;
        with bn, the same of the bias and of bn's parameters, running statistics and
        num_batches_tracked). A change through
        ``.data`` is not seen: see clear_weight_cache. Where a parameter wants a gradient
        or carries a forward-mode tangent (torch.autograd.forward_ad), while torch.compile or torch.jit.trace traces and under torch.func's transforms (the cache is
        eager-mode state, of plain tensors), nothing is cached: the raw weight (with bn,
        folded differentiably) goes to the op. Where only x wants one, the prepared weight
        serves (the op's backward gives x its gradient through any of them).
        ``weight_and_bias``: what _weight_and_bias() gave, where the caller has read it (a
        parametrized weight is computed on each read)."""
        w, b = self._weight_and_bias() if weight_and_bias is None else weight_and_bias
        algo = self.algo if algo is None else algo
        dtype = w.dtype if dtype is None else dtype
        m = ops._WINOGRAD_TILE.get(algo, 0)
        tensor_core = algo in ops._TENSOR_CORE_ALGORITHMS
        layout = torch.channels_last if tensor_core else torch.contiguous_format
        # A 16-bit weight channels_last with C a multiple of 8 is tensor_core_weight's bytes.
        as_is = (not tensor_core or (dtype != torch.float32 and w.shape[1] % 8 == 0)) and w.is_contiguous(
            memory_format=layout)
        if bn is None and not m and dtype == w.dtype and as_is:
            return w, b  # used as it is
        grad_enabled = torch.is_grad_enabled()
        params = (w, b) if bn is None else (w, b, bn.weight, bn.bias)
        if _tracing() or _transforms_active() or (
                grad_enabled and any(t is not None and t.requires_grad for t in params)) or _has_tangent(params):
            return (w, b) if bn is None else _fold_bn(w, b, bn)  # (cast by the op under autocast)
        # Only x wants a gradient (a frozen model: saliency, style transfer): the prepared
        # weight serves, as the op's backward gives x and bias theirs through any of them.
        # It must not be an inference tensor then (autograd cannot save one).
        records = grad_enabled and x is not None and x.requires_grad

        def prepare():
            fw, fb = (w, None) if bn is None else _fold_bn(w, b, bn)
            fw = fw.detach().to(dtype)
            if m:
                fw = ops.winograd_weight(fw, m)
            elif tensor_core:
                fw = ops.tensor_core_weight(fw)
            else:
                fw = fw.contiguous(memory_format=layout)
            return fw, (None if fb is None else fb.to(dtype))

        # A training-mode forward updates bn's running statistics without bumping their
        # version counters, but it bumps num_batches_tracked's (an in-place add_).
        tracked = [t for t in ((w,) if bn is None else (w, b, bn.weight, bn.bias, bn.running_mean, bn.running_var,
                                                        bn.num_batches_tracked)) if t is not None]
        if any(t.is_inference() for t in tracked):  # no version counter: nothing to key a cache on
            fw, fb = prepare()
            return fw, (b if bn is None else fb)
        # The same tensor objects (weak references: a new tensor at a freed address, as
        # torch.func.functional_call passes, is not the old one), unchanged since.
        key = (algo, w.device, w.dtype, dtype, None if bn is None else bn.eps, _optimizer_steps) + tuple(
            (t._version, t.data_ptr()) for t in tracked)
        cached = self._weight_cache  # read once: another thread may replace it meanwhile
        if cached is None or cached[0] != key or any(r() is not t for r, t in zip(cached[1], tracked)) or (
                records and cached[2].is_inference()):
            cached = (key, [weakref.ref(t) for t in tracked], *prepare())
            self._weight_cache = cached
        return cached[2], (b if bn is None else cached[3])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, relu=self.relu, pool=self.pool)

    def _run(self, x: torch.Tensor, *, relu: bool, pool: bool, bn: nn.BatchNorm2d | None = None) -> torch.Tensor:
        """This conv, then ``bn`` (eval mode, folded in) if given, then ReLU if relu, then
        the 2x2 max-pool if pool: forward's computation with other fused layers
        (FusedSequential's)."""
        return self._run_chained(x, relu=relu, pool=pool, bn=bn)[0]

    def _run_chained(self, x: torch.Tensor, *, relu: bool, pool: bool, bn: nn.BatchNorm2d | None = None,
                     x_tf32: bool = False, chain: tuple | None = None) -> tuple[torch.Tensor, bool]:
        """_run's computation in a TF32 chain (FusedSequential's, see its tf32_chain): x_tf32,
        x is such a chain's output (TF32 values); chain, (layers, i): this conv's output goes
        on to layers[i:] (looked at only where it could be rounded: _conv_follows). Returns
        (y, whether y holds TF32 values): y is rounded to TF32 in the kernel's epilogue where
        this conv runs TF32 math (float32 on implicit_gemm) and a conv follows, so that the
        next one's kernel need not round it; elsewhere nothing changes."""
        if _use_kernels(x):
            if x.dim() == 3:  # (C, H, W), as nn.Conv2d takes it (forward: hooks run once)
                return self._run(x.unsqueeze(0), relu=relu, pool=pool, bn=bn).squeeze(0), False
            # Under torch.autocast x and the weight run in its dtype, as F.conv2d's would.
            weight_and_bias = self._weight_and_bias()  # read once: a parametrization computes it
            w_dtype = weight_and_bias[0].dtype
            dtype = ops._autocast_dtype(x) if w_dtype != torch.float64 else None  # float64: not cast
            if dtype is not None and x.dtype in (torch.float32, torch.float16, torch.bfloat16):
                x = x.to(dtype)
            if x.dim() == 4:  # said of x, not of the prepared weight
                if x.shape[1] != self.in_channels:
                    raise ValueError(f"Conv3x3: expected x with in_channels={self.in_channels} channels, "
                                     f"got shape {list(x.shape)}")
                if dtype is None and x.dtype != w_dtype:
                    raise ValueError(f"Conv3x3: expected x of the module's dtype ({w_dtype}), got {x.dtype}")
            # "auto" resolved here, so that the weight is laid out for the kernel it picks
            # (while torch.compile or torch.jit.trace traces, and under torch.func's
            # transforms, whose batched x has no strides to read, the op resolves it at run
            # time instead).
            algo, transformed = self.algo, _transforms_active()
            if algo == "auto" and x.dim() == 4 and not (transformed or _tracing()):
                algo = self._resolved_auto(x, pool)
            weight, bias = self._prepared(algo, x, bn, dtype, weight_and_bias)
            # TF32 chain: x_tf32 where x holds TF32 values (and is float32: not cast here);
            # y_tf32 where this conv's math is TF32 (implicit_gemm only runs float32 so).
            fp32 = x.dtype == torch.float32 and x.dim() == 4
            x_tf32 = x_tf32 and fp32
            y_tf32 = chain is not None and fp32 and algo in ops._TENSOR_CORE_ALGORITHMS and _conv_follows(*chain)
            # The registered op itself (the functional wrapper's Python would add ~2.5 us a
            # call on the host: benchmarks/README.md, host overhead), or under torch.func
            # the Function its transforms run (as the wrapper does).
            if transformed:
                return ops._Conv3x3Function.apply(x, weight, bias, relu, pool, algo, None, x_tf32, y_tf32), y_tf32
            return _conv3x3_op(x, weight, bias, relu, pool, algo, None, x_tf32, y_tf32), y_tf32
        weight, bias = (self.weight, self.bias) if bn is None else _fold_bn(self.weight, self.bias, bn)
        y = F.conv2d(x, weight, bias, padding=1)
        if relu:
            y = F.relu(y)
        if pool:
            y = F.max_pool2d(y, 2, 2)
        return y, False

    def _resolved_auto(self, x: torch.Tensor, pool: bool) -> str:
        # ops.resolve_algo(x, K, pool=pool), remembered for the last input's layout (and
        # the tables in use): it costs ~3 us a call, against ~1 us for the key.
        key = (x.shape, x.stride(), x.dtype, pool, ops._tf32_allowed(None), tuning.generation)
        memo = self._auto_memo
        if memo is None or memo[0] != key:
            memo = self._auto_memo = (key, ops.resolve_algo(x, self.out_channels, pool=pool))
        return memo[1]

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}"
        if self.bias is None:
            s += ", bias=False"
        if self.relu:
            s += ", relu=True"
        if self.pool:
            s += ", pool=True"
        return s + f", algo={self.algo!r} [{describe_path()}]"


class MaxPool2x2(nn.Module):
    """2x2 max-pool, stride 2, floor mode: a drop-in for ``nn.MaxPool2d(2, 2)``
    (no parameters). NaN propagates like torch's."""

    # nn.MaxPool2d(kernel_size=2, stride=2)'s geometry (torchvision's VGG pools).
    kernel_size, stride, padding, dilation = _fixed(2), _fixed(2), _fixed(0), _fixed(1)
    ceil_mode, return_indices = _fixed(False), _fixed(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _use_kernels(x):
            if x.dim() == 3:  # (C, H, W), as nn.MaxPool2d takes it
                return self.forward(x.unsqueeze(0)).squeeze(0)
            return ops.maxpool2x2(x)
        return F.max_pool2d(x, 2, 2)

    def extra_repr(self) -> str:
        return f"[{describe_path()}]"


def _fold_bn(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d):
    """(weight, bias) of a conv followed by ``bn`` in eval mode (its running statistics),
    computed in float64 and rounded once to the weight's dtype; differentiable."""
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    b = bias.double() if bias is not None else torch.zeros_like(scale)
    b = (b - bn.running_mean.double()) * scale
    if bn.bias is not None:
        b = b + bn.bias.double()
    return (weight.double() * scale.reshape(-1, 1, 1, 1)).to(weight.dtype), b.to(weight.dtype)


def _observed(m: nn.Module) -> bool:
    # A module whose input or output someone sees (or changes): it must be called itself.
    # So must one whose forward was replaced on the instance (as accelerate's hooks do).
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
                or "forward" in m.__dict__)


def _global_hooks() -> bool:
    m = _module_globals  # the hooks nn.Module's call runs for every module
    return bool(m._global_forward_hooks or m._global_forward_pre_hooks or m._global_backward_hooks
                or m._global_backward_pre_hooks)


def _foldable_bn(m: nn.Module, conv: "Conv3x3", at_run_time: bool) -> bool:
    # Folding uses the running statistics: an eval-mode BatchNorm's computation.
    return (type(m) is nn.BatchNorm2d and not (at_run_time and m.training) and m.running_mean is not None
            and m.running_var is not None and m.num_features == conv.out_channels)


def _is_pool(m: nn.Module) -> bool:
    return type(m) is MaxPool2x2 or (type(m) is nn.MaxPool2d and not maxpool2d_incompatibility(m))


class FusedSequential(nn.Sequential):
    """An nn.Sequential whose forward fuses each Conv3x3 with what directly follows it:
    an eval-mode nn.BatchNorm2d (folded into the weights, in float64), an nn.ReLU, a 2x2
    max-pool (MaxPool2x2 or an equivalent nn.MaxPool2d), in that order, into one kernel
    launch. Its layers are the unfused ones (VGG's ``features`` holds torchvision's
    layers at torchvision's indices), so anything that takes them one at a time sees
    what it would see in torchvision: slices (``features[:4]`` ends at relu1_2),
    iteration, ``named_children()``, hooks. A layer with a hook (forward, pre-forward or
    backward, or a global one), or whose forward was replaced on the instance, is called
    as itself, unfused, so the hook sees its own input and output. Fusion happens only on vggkern's kernels (CUDA tensors, or the CPU
    emulator) and (N, C, H, W) input; on CPU with the "torch" backend, under torch.fx
    symbolic tracing, and for unbatched input, the layers run one by one as in
    nn.Sequential.

    ``tf32_chain`` (default True; set it on the instance to turn it off): where a fused conv
    runs TF32 math (float32 on "implicit_gemm", TF32 allowed) and its output goes to another
    fused conv (through unhooked ReLUs and max-pools only), its kernel rounds that output
    to TF32 (``conv3x3(..., y_tf32=True)``) and the next conv is told so (``x_tf32=True``)
    instead of rounding its input in its own main loop: rounding commutes with ReLU and
    max-pool, so where the next conv runs TF32 math too its output is the same bit for
    bit, and its kernel saves the rounding (on the wgmma tiles, a shared-memory read and
    write of every x element). Where the next conv computes in fp32 (direct) it gets x in
    TF32, as TF32 math would round it. The last conv's output (the features) is not
    rounded. A slice (``features[:23]``) keeps the instance's setting."""

    tf32_chain = True

    def __getitem__(self, idx):
        item = super().__getitem__(idx)
        if isinstance(idx, slice):  # a new FusedSequential of the same layers
            item.tf32_chain = self.tf32_chain
        return item

    def forward(self, x):
        # Unbatched (C, H, W) input runs layer by layer too: nn.BatchNorm2d refuses it.
        if not (isinstance(x, torch.Tensor) and x.dim() == 4 and _use_kernels(x)) or _global_hooks() or \
                is_fx_symbolic_tracing():
            return super().forward(x)
        layers = list(self._modules.values())
        i, x_tf32 = 0, False  # whether x holds a TF32 chain's values (see tf32_chain)
        while i < len(layers):
            conv = layers[i]
            if not _fuses(conv):
                x_tf32 = x_tf32 and _keeps_tf32(conv)
                x, i = conv(x), i + 1
                continue
            bn, relu, pool, i = _fusion(layers, i, at_run_time=True)
            x, x_tf32 = conv._run_chained(x, relu=relu, pool=pool, bn=bn, x_tf32=x_tf32,
                                          chain=(layers, i) if self.tf32_chain else None)
        return x


def _keeps_tf32(m: nn.Module) -> bool:
    """Whether ``m`` maps TF32 values to TF32 values as FusedSequential calls it: an unhooked
    ReLU or 2x2 max-pool (each output is one of its inputs, or zero)."""
    return (type(m) is nn.ReLU or _is_pool(m)) and not _observed(m)


def _conv_follows(layers: list, i: int) -> bool:
    """Whether the layers from ``i`` on are unhooked ReLUs and max-pools, then a Conv3x3 that
    FusedSequential fuses (a TF32 chain's next link)."""
    while i < len(layers) and _keeps_tf32(layers[i]):
        i += 1
    return i < len(layers) and _fuses(layers[i])


def _fuses(m: nn.Module) -> bool:
    """Whether FusedSequential runs ``m`` fused with what follows it: a Conv3x3 without a
    hook (one with a hook runs as itself, alone)."""
    return type(m) is Conv3x3 and not _observed(m)


def _fusion(layers: list, i: int, *, at_run_time: bool):
    """What FusedSequential fuses into the Conv3x3 ``layers[i]``: (bn, relu, pool, j), the
    BatchNorm2d to fold (or None), whether to apply ReLU and the pool, and the index of
    the first layer after them. A layer with a hook is not fused. At run time a BatchNorm
    in training mode is not either; otherwise (convert's report) a BatchNorm counts as
    fused whatever its mode (it is, whenever it runs in eval mode)."""
    conv = layers[i]
    bn, relu, pool, j = None, conv.relu, conv.pool, i + 1
    if j < len(layers) and not (relu or pool) and _foldable_bn(layers[j], conv, at_run_time) and \
            not _observed(layers[j]):
        bn, j = layers[j], j + 1
    if j < len(layers) and not pool and type(layers[j]) is nn.ReLU and not _observed(layers[j]):
        relu, j = True, j + 1
    if j < len(layers) and not pool and _is_pool(layers[j]) and not _observed(layers[j]):
        pool, j = True, j + 1
    return bn, relu, pool, j


def _check_algo(algo: str, op: str = "Conv3x3") -> None:
    if not isinstance(algo, str):
        raise TypeError(f"{op}: expected algo to be a str, got {algo!r}")
    ops._check_algo_name(algo, op)


def conv2d_incompatibility(conv: nn.Module) -> str:
    """Why ``conv`` cannot become a Conv3x3 ("" when it can)."""
    if not isinstance(conv, nn.Conv2d):
        return f"expected an nn.Conv2d, got {type(conv).__name__}"
    if isinstance(conv.weight, nn.parameter.UninitializedParameter):
        return "its parameters are not initialised yet (lazy module)"
    computed = [n for n in ("weight", "bias") if n not in conv._parameters]
    if computed:  # conv.weight is then recomputed from other state each forward (or set by hand)
        what = " and ".join(computed)
        return (f"its {what} is not a Parameter of its own but computed (a hook-based reparametrization such as "
                f"torch.nn.utils.prune, spectral_norm or weight_norm recomputes it each forward); a Conv3x3 would "
                f"freeze the {what} as it is now")
    checks = [
        ("kernel_size", _pair(conv.kernel_size), (3, 3)),
        ("stride", _pair(conv.stride), (1, 1)),
        ("dilation", _pair(conv.dilation), (1, 1)),
        ("groups", conv.groups, 1),
        ("padding_mode", conv.padding_mode, "zeros"),
    ]
    for name, got, want in checks:
        if got != want:
            return f"expected {name}={want!r}, got {got!r}"
    padding = conv.padding if conv.padding == "same" else _pair(conv.padding)
    if padding not in ((1, 1), "same"):
        return f"expected padding=(1, 1), got {padding!r}"
    if conv.weight.dtype not in ops._FLOAT_DTYPES:
        return f"its weight is {conv.weight.dtype}: the kernels run float32, float16 and bfloat16"
    return ""


def maxpool2d_incompatibility(pool: nn.Module) -> str:
    """Why ``pool`` is not a 2x2/2 max-pool a MaxPool2x2 can replace ("" when it is)."""
    if not isinstance(pool, nn.MaxPool2d):
        return f"expected an nn.MaxPool2d, got {type(pool).__name__}"
    checks = [
        ("kernel_size", _pair(pool.kernel_size), (2, 2)),
        ("stride", _pair(pool.stride if pool.stride is not None else pool.kernel_size), (2, 2)),
        ("padding", _pair(pool.padding), (0, 0)),
        ("dilation", _pair(pool.dilation), (1, 1)),
        ("ceil_mode", pool.ceil_mode, False),
        ("return_indices", pool.return_indices, False),
    ]
    for name, got, want in checks:
        if got != want:
            return f"expected {name}={want!r}, got {got!r}"
    return ""
