"""Swap vggkern's modules into any torch model.

``convert(model)`` replaces every nn.Conv2d that is 3x3, stride 1, padding 1,
dilation 1, groups 1, zero padding by a ``Conv3x3`` (sharing its parameters) and every
2x2/2 nn.MaxPool2d by a ``MaxPool2x2``. An nn.Sequential holding such a conv becomes a
``FusedSequential``, which at run time fuses into the conv what directly follows it:
an eval-mode nn.BatchNorm2d, an nn.ReLU, then the max-pool (none of them moves, so
indices, state_dict keys and hooks stay where they were). Everything else is left
alone: convolutions of other shapes, a conv or pool with a hook on it (it stays itself,
its hooks with it), a conv whose weight a hook recomputes (torch.nn.utils.prune,
spectral_norm, weight_norm), and fusion across anything in between.
"""
import copy
from dataclasses import dataclass, field

from torch import nn

from .backend import describe_path, get_cpu_backend
from .ops import _check_flags
from .nn import (Conv3x3, FusedSequential, MaxPool2x2, _check_algo, _fuses, _fusion, conv2d_incompatibility,
                 maxpool2d_incompatibility)

__all__ = ["convert", "ConvertReport"]


@dataclass
class ConvertReport:
    """What ``convert`` did. Names are qualified module names in the model.

    replaced: {name: new module type} for every module swapped ("Conv3x3", "MaxPool2x2").
    fused:    {conv name: [names of the BatchNorm2d / ReLU / max-pool its FusedSequential
              fuses into it when they run on vggkern's kernels]}. Layers with hooks on them
              now are not listed (they run as themselves); a BatchNorm2d is listed whatever
              its mode now: it is fused whenever it runs in eval mode.
    skipped:  {name: reason} for each nn.Conv2d / nn.MaxPool2d left as it was (another
              shape, a subclass, hooks on it, a weight a hook recomputes).
    """
    replaced: dict = field(default_factory=dict)
    fused: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)
    algo: str = "auto"

    def __str__(self) -> str:
        lines = [f"vggkern.convert: {len(self.replaced)} modules replaced (algo={self.algo!r}), "
                 f"{sum(len(v) for v in self.fused.values())} to fuse, {len(self.skipped)} left as they were; "
                 f"runs on {describe_path()} (vggkern.set_cpu_backend, now {get_cpu_backend()!r})"]
        for name, kind in self.replaced.items():
            extra = f" + {', '.join(self.fused[name])} fused" if self.fused.get(name) else ""
            lines.append(f"  replaced {name} -> {kind}{extra}")
        for name, why in self.skipped.items():
            lines.append(f"  kept     {name}: {why}")
        return "\n".join(lines)

    __repr__ = __str__


def _join(prefix, name):
    return f"{prefix}.{name}" if prefix else name


_HOOKS = [("forward hooks", "_forward_hooks"), ("forward pre-hooks", "_forward_pre_hooks"),
          ("backward hooks", "_backward_hooks"), ("backward pre-hooks", "_backward_pre_hooks"),
          ("state_dict hooks", "_state_dict_hooks"), ("state_dict pre-hooks", "_state_dict_pre_hooks"),
          ("load_state_dict pre-hooks", "_load_state_dict_pre_hooks"),
          ("load_state_dict post-hooks", "_load_state_dict_post_hooks")]


def _hooked(m: nn.Module) -> str:
    """Why ``m`` stays as it is for its hooks ("" when it has none): a replacement would
    drop them, and moving them would hand them a module of another type (one without
    nn.Conv2d's attributes, which FLOP counters and the like read)."""
    found = [kind for kind, attr in _HOOKS if getattr(m, attr, None)]
    if "forward" in m.__dict__:
        found.append("a forward replaced on the instance")
    if not found:
        return ""
    return f"it has {', '.join(found)}: kept, and run as itself, so that they stay on the layer they were put on"


def _convert_children(parent: nn.Module, prefix: str, algo: str, report: ConvertReport, seen: set) -> None:
    if id(parent) in seen:
        return
    seen.add(id(parent))
    for name, child in list(parent._modules.items()):
        qual = _join(prefix, name)
        if child is None:
            continue
        if type(child) in (nn.Conv2d, nn.MaxPool2d):
            conv = type(child) is nn.Conv2d
            why = (conv2d_incompatibility(child) if conv else maxpool2d_incompatibility(child)) or _hooked(child)
            if why:
                report.skipped[qual] = why
            else:
                new = Conv3x3.from_conv2d(child, algo=algo) if conv else MaxPool2x2()
                new.training = child.training
                parent._modules[name] = new
                report.replaced[qual] = type(new).__name__
            continue
        if isinstance(child, nn.Conv2d) and not isinstance(child, Conv3x3):
            report.skipped[qual] = f"a subclass of nn.Conv2d ({type(child).__name__}) whose forward may differ"
        elif isinstance(child, nn.MaxPool2d):
            report.skipped[qual] = f"a subclass of nn.MaxPool2d ({type(child).__name__}) whose forward may differ"
        _convert_children(child, qual, algo, report, seen)
    # Fusion follows the order of children only where that is the order of execution: an
    # nn.Sequential (not a subclass, whose forward may differ), now fusing.
    layers = list(parent._modules.values())
    if type(parent) in (nn.Sequential, FusedSequential) and any(type(m) is Conv3x3 for m in layers):
        parent.__class__ = FusedSequential
        names = list(parent._modules)
        for i, m in enumerate(layers):
            if _fuses(m):
                _, _, _, j = _fusion(layers, i, at_run_time=False)
                if j > i + 1:
                    report.fused[_join(prefix, names[i])] = [_join(prefix, n) for n in names[i + 1:j]]


def convert(model: nn.Module, algo: str = "auto", inplace: bool = False) -> tuple[nn.Module, ConvertReport]:
    """Swap vggkern's modules into ``model``; returns ``(model, report)``.

    - nn.Conv2d 3x3 / stride 1 / padding 1 (or "same") / dilation 1 / groups 1 /
      padding_mode "zeros" -> ``Conv3x3(algo=algo)``, sharing the conv's parameters;
    - any 2x2/2 nn.MaxPool2d (padding 0, dilation 1, no ceil_mode, no return_indices)
      -> ``MaxPool2x2``;
    - an nn.Sequential (exactly: a subclass's forward may differ) holding such a conv
      becomes a ``FusedSequential`` (in place: the same object, its children at the same
      keys), whose forward fuses into each conv an eval-mode nn.BatchNorm2d, an nn.ReLU
      (inplace or not) and then the max-pool that directly follow it, each unless a hook
      is on it (it is then called as itself); since the layers stay as they are, slices,
      iteration and hooks see each layer's own output;
    - everything else stays as it is: other convs (stride 2, 1x1, ...), subclasses of
      nn.Conv2d / nn.ReLU / nn.MaxPool2d / nn.BatchNorm2d, and fusion across anything in
      between or outside an nn.Sequential (a ResNet block's conv, BatchNorm and ReLU);
    - so does a conv or max-pool with a hook (forward, pre-forward, backward, state_dict;
      or a forward replaced on the instance): its hooks stay on it and see what they saw
      (moving them onto a replacement would hand them a module of another type), and it
      runs as itself; and a conv whose weight or bias is not a Parameter of its own but
      recomputed by a hook (torch.nn.utils.prune, spectral_norm, weight_norm), which a
      Conv3x3 would freeze. The report says why for each.

    ``inplace=False`` (default) converts a deep copy and leaves ``model`` untouched.
    ``report`` (a ConvertReport) names every replaced, fused and skipped module.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"vggkern.convert: expected model to be a torch.nn.Module, got {type(model).__name__}")
    _check_algo(algo, "vggkern.convert")
    _check_flags("vggkern.convert", inplace=inplace)
    if not inplace:
        try:
            model = copy.deepcopy(model)
        except RuntimeError as e:  # torch's own: e.g. a pruned or weight_norm'd layer's non-leaf weight
            raise RuntimeError(f"vggkern.convert: inplace=False deep-copies the model, and torch cannot copy this "
                               f"one ({e}); convert it in place (inplace=True), or copy it another way first") from e
    report = ConvertReport(algo=algo)
    if type(model) in (nn.Conv2d, nn.MaxPool2d):  # the model itself is one layer
        root = nn.Sequential(model)
        _convert_children(root, "", algo, report, set())
        report.replaced = {"(model)": v for v in report.replaced.values()}
        report.skipped = {"(model)": v for v in report.skipped.values()}
        return root[0], report
    _convert_children(model, "", algo, report, set())
    return model, report

