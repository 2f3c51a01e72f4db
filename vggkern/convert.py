"""Swap vggkern's modules into any torch model.

``convert(model)`` replaces every nn.Conv2d that is 3x3, stride 1, padding 1,
dilation 1, groups 1, zero padding by a ``Conv3x3`` (sharing its parameters), fusing
an nn.ReLU and then an nn.MaxPool2d(2, 2) that directly follow it inside an
nn.Sequential (they become ``Fused`` placeholders, nn.Identity subclasses, so indices
and state_dict keys stay where they were); a 2x2/2 nn.MaxPool2d that is not fused
becomes a ``MaxPool2x2``. Everything else is left alone: convolutions of other shapes,
and anything between a conv and its ReLU (a BatchNorm, say) stops the fusion.
"""
import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from .backend import describe_path, get_cpu_backend
from .nn import Conv3x3, Fused, _check_algo, MaxPool2x2, conv2d_incompatibility, maxpool2d_incompatibility

__all__ = ["convert", "ConvertReport"]


@dataclass
class ConvertReport:
    """What ``convert`` did. Names are qualified module names in the model.

    replaced: {name: new module type} for every module swapped ("Conv3x3", "MaxPool2x2").
    fused:    {conv name: [names of the ReLU / BatchNorm / MaxPool2d fused into it]}
              (those modules are now ``Fused`` placeholders).
    skipped:  {name: reason} for each nn.Conv2d / nn.MaxPool2d left as it was.
    """
    replaced: dict = field(default_factory=dict)
    fused: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)
    algo: str = "auto"

    def __str__(self) -> str:
        lines = [f"vggkern.convert: {len(self.replaced)} modules replaced (algo={self.algo!r}), "
                 f"{sum(len(v) for v in self.fused.values())} fused away, {len(self.skipped)} left as they were; "
                 f"runs on {describe_path()} (vggkern.set_cpu_backend, now {get_cpu_backend()!r})"]
        for name, kind in self.replaced.items():
            extra = f" + {', '.join(self.fused[name])} fused" if self.fused.get(name) else ""
            lines.append(f"  replaced {name} -> {kind}{extra}")
        for name, why in self.skipped.items():
            lines.append(f"  kept     {name}: {why}")
        return "\n".join(lines)

    __repr__ = __str__


def _is_plain_sequential(m: nn.Module) -> bool:
    # Fusion follows a container's order of children only where that is the order of
    # execution: nn.Sequential, or a subclass that keeps its forward.
    return isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward


def _join(prefix, name):
    return f"{prefix}.{name}" if prefix else name


def _fold_bn(conv_weight, conv_bias, bn: nn.BatchNorm2d):
    """(weight, bias) of conv followed by bn in eval mode, computed in float64."""
    w = conv_weight.detach().double()
    b = conv_bias.detach().double() if conv_bias is not None else torch.zeros(w.shape[0], dtype=torch.float64,
                                                                               device=w.device)
    scale = (bn.weight.detach().double() if bn.weight is not None else torch.ones_like(b)) / torch.sqrt(
        bn.running_var.detach().double() + bn.eps)
    shift = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(b)
    w = w * scale.reshape(-1, 1, 1, 1)
    b = (b - bn.running_mean.detach().double()) * scale + shift
    return w.to(conv_weight.dtype), b.to(conv_weight.dtype)


def _bn_incompatibility(bn: nn.Module, channels: int) -> str:
    if type(bn) is not nn.BatchNorm2d:
        return "not an nn.BatchNorm2d"
    if bn.training:
        return "in training mode (BatchNorm can be folded into the conv only in eval mode: call model.eval())"
    if bn.running_mean is None:
        return "has no running statistics (track_running_stats=False)"
    if bn.num_features != channels:
        return f"has {bn.num_features} features for {channels} channels"
    return ""


def _convert_children(parent: nn.Module, prefix: str, algo: str, fold_bn: bool, report: ConvertReport,
                      seen: set) -> None:
    if id(parent) in seen:
        return
    seen.add(id(parent))
    names = list(parent._modules.keys())
    sequential = _is_plain_sequential(parent)
    i = 0
    while i < len(names):
        name = names[i]
        child = parent._modules[name]
        qual = _join(prefix, name)
        if child is None:
            i += 1
            continue
        if type(child) is nn.Conv2d:
            why = conv2d_incompatibility(child)
            if why:
                report.skipped[qual] = why
                i += 1
                continue
            fused, relu, pool = [], False, False
            weight, bias = child.weight, child.bias
            j = i + 1
            if sequential and fold_bn and j < len(names) and type(parent._modules[names[j]]) is nn.BatchNorm2d:
                bn = parent._modules[names[j]]
                why = _bn_incompatibility(bn, child.out_channels)
                if why:
                    raise ValueError(f"vggkern: cannot fold the BatchNorm {_join(prefix, names[j])} into "
                                     f"{qual}: it is {why}")
                w, b = _fold_bn(weight, bias, bn)
                weight = nn.Parameter(w, requires_grad=child.weight.requires_grad)
                bias = nn.Parameter(b, requires_grad=child.weight.requires_grad)
                fused.append((names[j], "BatchNorm2d"))
                j += 1
            if sequential and j < len(names) and type(parent._modules[names[j]]) is nn.ReLU:
                relu = True
                fused.append((names[j], "ReLU"))
                j += 1
            if sequential and j < len(names) and type(parent._modules[names[j]]) is nn.MaxPool2d \
                    and not maxpool2d_incompatibility(parent._modules[names[j]]):
                pool = True
                fused.append((names[j], "MaxPool2d"))
                j += 1
            new = Conv3x3.from_conv2d(child, relu=relu, pool=pool, algo=algo)
            if weight is not child.weight:
                new.weight = weight
                if bias is not None:
                    new.bias = bias
            parent._modules[name] = new
            report.replaced[qual] = "Conv3x3"
            if fused:
                report.fused[qual] = [_join(prefix, n) for n, _ in fused]
            for n, what in fused:
                parent._modules[n] = Fused(what, qual)
            i = j
            continue
        if type(child) is nn.MaxPool2d:
            why = maxpool2d_incompatibility(child)
            if why:
                report.skipped[qual] = why
            else:
                parent._modules[name] = MaxPool2x2()
                report.replaced[qual] = "MaxPool2x2"
            i += 1
            continue
        if isinstance(child, nn.Conv2d) and not isinstance(child, Conv3x3):
            report.skipped[qual] = f"a subclass of nn.Conv2d ({type(child).__name__}) whose forward may differ"
        _convert_children(child, qual, algo, fold_bn, report, seen)
        i += 1


def convert(model: nn.Module, algo: str = "auto", inplace: bool = False) -> tuple[nn.Module, ConvertReport]:
    """Swap vggkern's modules into ``model``; returns ``(model, report)``.

    - nn.Conv2d 3x3 / stride 1 / padding 1 (or "same") / dilation 1 / groups 1 /
      padding_mode "zeros" -> ``Conv3x3(algo=algo)``, sharing the conv's parameters;
    - an nn.ReLU (inplace or not) directly after such a conv inside an nn.Sequential is
      fused into it, then an nn.MaxPool2d(2, 2) (padding 0, dilation 1, no ceil_mode,
      no return_indices) directly after that (or directly after the conv); the fused
      modules become ``Fused`` placeholders (nn.Identity), so indices and state_dict
      keys do not move;
    - any other 2x2/2 nn.MaxPool2d -> ``MaxPool2x2``;
    - everything else stays as it is: other convs (stride 2, 1x1, ...), subclasses of
      nn.Conv2d / nn.ReLU / nn.MaxPool2d, and fusion across anything in between (a
      conv followed by a BatchNorm is swapped, not fused). Only nn.Sequential children
      are fused, since only there is the order of children the order of execution.

    ``inplace=False`` (default) converts a deep copy and leaves ``model`` untouched.
    ``report`` (a ConvertReport) names every replaced, fused and skipped module.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"vggkern.convert: expected model to be a torch.nn.Module, got {type(model).__name__}")
    _check_algo(algo)
    if not inplace:
        model = copy.deepcopy(model)
    report = ConvertReport(algo=algo)
    if type(model) in (nn.Conv2d, nn.MaxPool2d):  # the model itself is one layer
        root = nn.Sequential(model)
        _convert_children(root, "", algo, False, report, set())
        report.replaced = {"(model)": v for v in report.replaced.values()}
        report.skipped = {"(model)": v for v in report.skipped.values()}
        return root[0], report
    _convert_children(model, "", algo, False, report, set())
    return model, report


def _convert_for_vgg(model: nn.Module, algo: str, fold_bn: bool) -> ConvertReport:
    """convert() in place, folding BatchNorm2d (eval mode) into the conv before it."""
    report = ConvertReport(algo=algo)
    _convert_children(model, "", algo, fold_bn, report, set())
    return report
