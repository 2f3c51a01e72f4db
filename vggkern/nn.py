"""torch.nn modules on vggkern's kernels: drop-ins for nn.Conv2d(C, K, 3, padding=1)
(with ReLU and 2x2 max-pool fused in) and nn.MaxPool2d(2, 2).

CUDA tensors run vggkern's kernels. CPU tensors run PyTorch's own ops by default, or
vggkern's kernels through the SIMT emulator after ``vggkern.set_cpu_backend("emulator")``
(see vggkern.backend). The reprs say which.
"""
import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from . import ops
from .backend import describe_path, get_cpu_backend

__all__ = ["Conv3x3", "MaxPool2x2", "Fused", "FusedSequential", "clear_weight_caches"]


def _use_kernels(x: torch.Tensor) -> bool:
    # CPU tensors follow the CPU backend; every other device (CUDA, meta) goes to the
    # ops, which run our kernels (or refuse the device with a clear message).
    return x.device.type != "cpu" or get_cpu_backend() == "emulator"


def clear_weight_caches(module: nn.Module) -> None:
    """``Conv3x3.clear_weight_cache()`` on every Conv3x3 in ``module`` (a model, or one
    Conv3x3): after changing weights through ``.data``."""
    for m in module.modules():
        if isinstance(m, Conv3x3):
            m.clear_weight_cache()


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


class Conv3x3(nn.Module):
    """3x3 convolution, stride 1, padding 1, with bias, ReLU and 2x2 max-pool fused:
    ``F.conv2d(x, weight, bias, padding=1)``, then ReLU if ``relu``, then
    ``F.max_pool2d(., 2, 2)`` if ``pool``.

    A drop-in for ``nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)``:
    same parameters (``weight`` (K, C, 3, 3), ``bias`` (K) or None), same state_dict
    keys, same initialisation. ``algo``: "auto" or one of ``vggkern.algorithms()``.
    Input (N, C, H, W) in float32/float16/bfloat16, NCHW or channels_last (the output
    keeps the input's memory format on our kernels).
    """

    # The weight as self.algo's kernel takes it, and the weight state it was made from
    # (see _prepared_weight); plain attributes, not part of the state_dict.
    _weight_cache = None
    _weight_cache_key = None

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
        dilation 1, groups 1, padding_mode "zeros"; otherwise ValueError."""
        reason = conv2d_incompatibility(conv)
        if reason:
            raise ValueError(f"Conv3x3.from_conv2d: cannot replace {conv}: {reason}")
        ops._check_flags("Conv3x3.from_conv2d", relu=relu, pool=pool)
        _check_algo(algo)
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

    def _with_fused(self, *, relu: bool, pool: bool) -> "Conv3x3":
        """This conv with other fused layers: self if they are the same, else a new
        module sharing this one's Parameters (FusedSequential's slices)."""
        if (relu, pool) == (self.relu, self.pool):
            return self
        return type(self)._sharing(self.weight, self.bias, relu=relu, pool=pool, algo=self.algo)

    def clear_weight_cache(self) -> None:
        """Drop the prepared weight, so that the next forward prepares it from the weight
        as it is then. Needed only after a change its version counter does not see: one
        made through ``weight.data`` (``conv.weight.data.copy_(w)``). In-place ops on the
        Parameter itself (also under torch.no_grad(), as optimizers make them),
        ``load_state_dict``, assigning a new weight and ``.to()`` are all seen."""
        self._weight_cache = self._weight_cache_key = None

    def _prepared_weight(self, algo: str | None = None, x: torch.Tensor | None = None) -> torch.Tensor:
        """The weight as ``algo``'s kernel takes it (default ``self.algo``; "auto" is
        resolved per input by forward), so that a forward pass does not transform or copy
        filters: the Winograd algorithms take U = winograd_weight(weight, m); the
        tensor-core ones a 16-bit weight laid out (K, 3, 3, C), i.e. channels_last, where C
        is a multiple of 8 (else, and in float32, which the op rounds to TF32, the op lays
        the weight out itself in one launch whatever its strides: a copy here would only
        hold memory); the others (K, C, 3, 3) contiguous. A weight already in that layout
        is used as it is; otherwise the prepared copy is kept until the weight changes (in
        place: its version counter; replaced: its data pointer; or moved: device and dtype;
        a change through ``weight.data`` is not seen: see clear_weight_cache). The raw
        weight is used where a gradient is wanted, for x (given) or a parameter (the op's
        backward needs the raw weight), and while torch.compile traces (the cache is
        eager-mode state)."""
        w = self.weight
        algo = self.algo if algo is None else algo
        m = ops._WINOGRAD_TILE.get(algo, 0)
        if m:
            prepare = lambda: ops.winograd_weight(w.detach(), m)  # noqa: E731
        else:
            tensor_core = algo in ops._TENSOR_CORE_ALGORITHMS
            if tensor_core and (w.dtype == torch.float32 or w.shape[1] % 8):
                return w
            layout = torch.channels_last if tensor_core else torch.contiguous_format
            if w.is_contiguous(memory_format=layout):
                return w
            prepare = lambda: w.detach().contiguous(memory_format=layout)  # noqa: E731
        if torch.compiler.is_compiling() or (
                torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, w, self.bias))):
            return w
        key = (w._version, w.data_ptr(), w.device, w.dtype, algo)
        if self._weight_cache_key != key:
            self._weight_cache = prepare()
            self._weight_cache_key = key
        return self._weight_cache

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _use_kernels(x):
            if x.dim() == 3:  # (C, H, W), as nn.Conv2d takes it (forward: hooks run once)
                return self.forward(x.unsqueeze(0)).squeeze(0)
            if x.dim() == 4:  # said of x, not of the prepared weight
                if x.shape[1] != self.in_channels:
                    raise ValueError(f"Conv3x3: expected x with in_channels={self.in_channels} channels, "
                                     f"got shape {list(x.shape)}")
                if x.dtype != self.weight.dtype:
                    raise ValueError(f"Conv3x3: expected x of the module's dtype ({self.weight.dtype}), got {x.dtype}")
            # "auto" resolved here, so that the weight is laid out for the kernel it picks
            # (while torch.compile traces, the op resolves it at run time instead).
            algo = self.algo
            if algo == "auto" and x.dim() == 4 and not torch.compiler.is_compiling():
                algo = ops.resolve_algo(x, self.out_channels, pool=self.pool)
            return ops.conv3x3(x, self._prepared_weight(algo, x), self.bias, relu=self.relu, pool=self.pool,
                               algo=algo)
        y = F.conv2d(x, self.weight, self.bias, padding=1)
        if self.relu:
            y = F.relu(y)
        if self.pool:
            y = F.max_pool2d(y, 2, 2)
        return y

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _use_kernels(x):
            if x.dim() == 3:  # (C, H, W), as nn.MaxPool2d takes it
                return self.forward(x.unsqueeze(0)).squeeze(0)
            return ops.maxpool2x2(x)
        return F.max_pool2d(x, 2, 2)

    def extra_repr(self) -> str:
        return f"[{describe_path()}]"


class Fused(nn.Identity):
    """Placeholder for a layer fused into a Conv3x3 (its ReLU, BatchNorm or 2x2
    max-pool): passes its input through, has no parameters, and keeps the indices of
    an nn.Sequential (and so its state_dict keys) where they were."""

    def __init__(self, what: str = "", into: str = ""):
        super().__init__()
        self.what, self.into = what, into

    def extra_repr(self) -> str:
        return f"{self.what} fused into {self.into}" if self.what else ""


class FusedSequential(nn.Sequential):
    """An nn.Sequential holding Conv3x3s with their ReLU / max-pool fused in and
    ``Fused`` placeholders at the fused layers' indices (VGG's ``features``). Its forward
    is nn.Sequential's (the fused kernels); a slice means what it means in the unfused
    torchvision Sequential: ``features[:4]`` ends at relu1_2 (before the pool fused into
    features.2), so the Conv3x3 whose fused layers the slice cuts off comes back as a
    twin without them (the same Parameters), and a placeholder whose conv the slice cuts
    off becomes the layer itself (nn.ReLU, MaxPool2x2). A folded BatchNorm cannot be
    separated from its conv: a slice between them holds the modules as they are, for
    inspection, and refuses to run (ValueError). Integer indexing and iteration give the
    modules as they are (features[2] pools when features.2 has the pool fused)."""

    _cannot_run = ""  # why this slice cannot run ("" when it can)

    def __getitem__(self, idx):
        if not isinstance(idx, slice):
            return super().__getitem__(idx)
        items = list(self._modules.items())
        kept = dict(items[idx])
        owner = {key: m.into.rsplit(".", 1)[-1] for key, m in items if isinstance(m, Fused) and m.what}
        out, cannot_run = [], []
        for key, m in kept.items():
            if isinstance(m, Conv3x3):
                cut = [self._modules[k].what for k, o in owner.items() if o == key and k not in kept]
                if "BatchNorm2d" in cut:
                    cannot_run.append(f"module {key} without the BatchNorm folded into its weights")
                elif cut:
                    m = m._with_fused(relu=m.relu and "ReLU" not in cut, pool=m.pool and "MaxPool2d" not in cut)
            elif key in owner and owner[key] not in kept:  # its conv is outside the slice
                if m.what == "BatchNorm2d":
                    cannot_run.append(f"module {key}, a BatchNorm folded into module {owner[key]}, without it")
                else:
                    m = nn.ReLU() if m.what == "ReLU" else MaxPool2x2()
            out.append((key, m))
        part = self.__class__(OrderedDict(out))
        part._cannot_run = "; ".join(cannot_run)
        return part

    def forward(self, x):
        if self._cannot_run:
            raise ValueError(f"FusedSequential: this slice cannot run: it holds {self._cannot_run}")
        return super().forward(x)


def _check_algo(algo: str) -> None:
    valid = ("auto",) + tuple(ops.algorithms())
    if algo not in valid:
        raise ValueError(f'Conv3x3: unknown algo "{algo}"; expected one of ' + ", ".join(f'"{a}"' for a in valid))


def conv2d_incompatibility(conv: nn.Module) -> str:
    """Why ``conv`` cannot become a Conv3x3 ("" when it can)."""
    if not isinstance(conv, nn.Conv2d):
        return f"expected an nn.Conv2d, got {type(conv).__name__}"
    if isinstance(conv.weight, nn.parameter.UninitializedParameter):
        return "its parameters are not initialised yet (lazy module)"
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
