"""VGG11/13/16/19 on vggkern's fused convolutions, torchvision-compatible.

The layers are torchvision's (configs A, B, D, E of Simonyan & Zisserman, and their
BatchNorm variants) at torchvision's indices: ``Conv3x3`` for each 3x3 conv, nn.ReLU,
``MaxPool2x2`` for each max-pool (nn.BatchNorm2d for the ``_bn`` models), so a
torchvision VGG state_dict loads unchanged and ours loads into torchvision's. The fusion
happens at run time: ``features`` is a ``FusedSequential``, whose forward runs each conv
with the BatchNorm (eval mode), ReLU and max-pool after it as one kernel, while slices,
iteration and hooks see torchvision's layers (``features[:4]`` ends at relu1_2).
"""
import copy
import os

import torch
from torch import nn
from torch._prims_common import suggest_memory_format
from torch.fx._symbolic_trace import is_fx_symbolic_tracing

from . import ops, tuning
from .convert import convert
from .nn import Conv3x3, FusedSequential, MaxPool2x2, _check_algo, _use_kernels

__all__ = ["VGG", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
           "from_torchvision", "CONFIGS"]

# torchvision.models.vgg.cfgs: output widths, "M" = 2x2/2 max-pool.
CONFIGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512,
              "M"],
}


def make_features(cfg, algo: str = "auto", batch_norm: bool = False) -> FusedSequential:
    """torchvision's ``make_layers(cfg, batch_norm)`` on vggkern's modules, same layers
    at the same indices, in a FusedSequential (which fuses them at run time)."""
    layers, in_channels = [], 3
    for v in cfg:
        if v == "M":
            layers.append(MaxPool2x2())
            continue
        layers.append(Conv3x3(in_channels, v, algo=algo))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        in_channels = v
    return FusedSequential(*layers)


class VGG(nn.Module):
    """torchvision's VGG with vggkern's fused features.

    forward: ``features`` -> (include_top) ``avgpool`` (AdaptiveAvgPool2d((7, 7)), so
    any input of at least 32x32 works) -> flatten -> ``classifier``
    (Linear-ReLU-Dropout-Linear-ReLU-Dropout-Linear). With ``include_top=False`` the
    model is the feature extractor alone: it returns ``features(x)``, (N, 512, H/32,
    W/32), and has no ``avgpool`` / ``classifier``.
    """

    def __init__(self, features: nn.Module, num_classes: int = 1000, *, include_top: bool = True,
                 dropout: float = 0.5, init_weights: bool = True, classifier: nn.Module | None = None,
                 avgpool: nn.Module | None = None):
        super().__init__()
        self.include_top = include_top
        self.features = features
        if include_top:
            self.avgpool = avgpool if avgpool is not None else nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = classifier if classifier is not None else nn.Sequential(
                nn.Linear(512 * 7 * 7, 4096),
                nn.ReLU(True),
                nn.Dropout(p=dropout),
                nn.Linear(4096, 4096),
                nn.ReLU(True),
                nn.Dropout(p=dropout),
                nn.Linear(4096, num_classes),
            )
        if init_weights:  # torchvision's initialisation
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, Conv3x3)):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.constant_(m.bias, 0)
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0, 0.01)
                    nn.init.constant_(m.bias, 0)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Tensor-core convolutions compute in channels_last (NHWC): an NCHW input is
        # converted once here, not at every layer, and features come back in x's format.
        # So does "auto" where the tables in use run the tensor cores (_auto_on_tensor_cores).
        # (Not while torch.fx traces symbolically, where x's layout is unknown.) Only the
        # direct children of features are looked at: walking .modules() cost ~40 us a
        # VGG16 forward, this ~11 (benchmarks/README.md, host overhead); a tensor-core
        # conv nested deeper converts its own input, as any conv does.
        entry_format = None
        if not is_fx_symbolic_tracing() and x.dim() == 4 and not x.is_contiguous(
                memory_format=torch.channels_last) and _use_kernels(x) and any(
                isinstance(m, Conv3x3) and (m.algo in ops._TENSOR_CORE_ALGORITHMS
                                            or (m.algo == "auto" and _auto_on_tensor_cores(x.dtype)))
                for m in self.features._modules.values()):
            entry_format = suggest_memory_format(x)  # a strided channels_last view's stays channels_last
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.features(x)
        if not self.include_top:
            return x if entry_format is None else x.contiguous(memory_format=entry_format)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


_auto_memo = (None, False)  # (tables generation, do they pick implicit_gemm anywhere)


def _auto_on_tensor_cores(dtype: torch.dtype) -> bool:
    """Can "auto" run implicit_gemm in this dtype on the tables in use: do they pick it
    for some layer (in any dtype: a layer measured in one takes that verdict in the others,
    conv3x3_tuning.h's tuned_auto), x is 16-bit, or fp32 with TF32 allowed? Then a model
    on "auto" computes in channels_last: on the H200
    (benchmarks/results/2026-12-04_H200_a95939d.json, fp16, batch 64) implicit_gemm on an
    NCHW x took 1.02-1.45x its channels_last time per layer (x laid out at every layer),
    against one conversion of the image here (torch's copy: 69 us at batch 64)."""
    global _auto_memo
    if _auto_memo[0] != tuning.generation:
        _auto_memo = (tuning.generation, any(e["algo"] == "implicit_gemm" for e in tuning.tuned_tables()["auto"]))
    if not _auto_memo[1]:
        return False
    return dtype in (torch.float16, torch.bfloat16) or (dtype == torch.float32 and ops._tf32_allowed(None))


def _weights_enum(arch: str):
    import torchvision.models as tvm

    return getattr(tvm, f"{arch.upper()}_Weights")


def resolve_weights(arch: str, weights):
    """``weights`` as a torchvision weights enum member, a file path, or None.

    Accepts a torchvision enum member (``VGG16_Weights.IMAGENET1K_V1``), its name as a
    string ("IMAGENET1K_V1", "VGG16_Weights.IMAGENET1K_V1", "DEFAULT"), or the path of
    a file holding a torchvision VGG state_dict (``torch.save(model.state_dict(), f)``).
    """
    if weights is None:
        return None
    if isinstance(weights, os.PathLike) or (isinstance(weights, str) and os.path.isfile(weights)):
        return os.fspath(weights)
    enum = _weights_enum(arch)
    try:
        return enum.verify(weights)
    except (ValueError, TypeError, KeyError) as e:
        names = ", ".join(w.name for w in enum)
        raise ValueError(f"vggkern.{arch}: weights must be None, a {enum.__name__} member or name ({names}), "
                         f"or an existing state_dict file; got {weights!r} ({e})") from None


def _vgg(arch: str, num_classes: int, weights, algo: str, include_top: bool, progress: bool) -> VGG:
    ops._check_flags(f"vggkern.{arch}", include_top=include_top, progress=progress)
    _check_algo(algo, f"vggkern.{arch}")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool):
        raise TypeError(f"vggkern.{arch}: expected num_classes to be an int, got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"vggkern.{arch}: expected num_classes >= 1, got {num_classes}")
    weights = resolve_weights(arch, weights)
    if weights is not None and not isinstance(weights, str):
        categories = weights.meta.get("categories")
        if include_top and categories is not None and num_classes != len(categories):
            raise ValueError(f"vggkern.{arch}: weights {weights} have {len(categories)} classes, "
                             f"got num_classes={num_classes}")
    cfg, batch_norm = CONFIGS[arch.removesuffix("_bn")], arch.endswith("_bn")
    if weights is None:
        return VGG(make_features(cfg, algo, batch_norm), num_classes, include_top=include_top)
    if isinstance(weights, str):
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except OSError:
            raise
        except Exception as e:  # noqa: BLE001 (torch.load's unpickler raises many kinds on a foreign file)
            raise ValueError(f"vggkern.{arch}: {weights!r} is not a saved state_dict torch.load can read "
                             f"({type(e).__name__}: {e})") from e
        if not isinstance(state, dict):
            raise ValueError(f"vggkern.{arch}: {weights!r} holds a {type(state).__name__}, not a state_dict")
        odd = next((k for k, v in state.items() if not isinstance(v, torch.Tensor)
                    or v.is_complex() or not (v.is_floating_point() or k.endswith("num_batches_tracked"))), None)
        if odd is not None:
            v = state[odd]
            hint = f": a checkpoint? pass its state_dict (torch.save(ckpt[{odd!r}], path))" if isinstance(v, dict) else ""
            what = f"a tensor of dtype {v.dtype}" if isinstance(v, torch.Tensor) else f"of type {type(v).__name__}"
            raise ValueError(f"vggkern.{arch}: expected weights {weights!r} to hold a state_dict of real "
                             f"floating-point tensors; its entry {odd!r} is {what}{hint}")
    else:  # torchvision downloads (or finds in its cache) and checks the file
        state = weights.get_state_dict(progress=progress, check_hash=True)
    # Built on the meta device and then given the loaded tensors (as float32 CPU
    # parameters): no time spent initialising weights that are overwritten at once.
    with torch.device("meta"):
        model = VGG(make_features(cfg, algo, batch_norm), num_classes, include_top=include_top, init_weights=False)
    if not include_top:
        state = {k: v for k, v in state.items() if k.startswith("features.")}
    state = {k: v.to("cpu", torch.float32, copy=True) if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model


def _doc(arch, config):
    bn = " with BatchNorm after each conv" if arch.endswith("_bn") else ""
    return f"""{arch.upper()} (config {config}{bn}) on vggkern's kernels; torchvision's layers and state_dict keys.

    num_classes: size of the last Linear (must match the weights' classes when loading).
    weights: None (random, torchvision's initialisation), a ``torchvision.models.{arch.upper()}_Weights``
        member or its name ("IMAGENET1K_V1", "DEFAULT"), or the path of a saved torchvision
        {arch} state_dict. Downloads go through torchvision (cached in $TORCH_HOME).
    algo: the conv3x3 algorithm, "auto" or one of ``vggkern.algorithms()``.
    include_top: False gives the feature extractor alone (``features``; output (N, 512, H/32, W/32)).
    progress: show torchvision's download progress bar.
    """


def _builder(arch: str, config: str):
    def build(num_classes: int = 1000, weights=None, *, algo: str = "auto", include_top: bool = True,
              progress: bool = True) -> VGG:
        return _vgg(arch, num_classes, weights, algo, include_top, progress)

    build.__name__ = build.__qualname__ = arch
    build.__doc__ = _doc(arch, config)
    return build


vgg11, vgg13, vgg16, vgg19 = (_builder(a, c) for a, c in (("vgg11", "A"), ("vgg13", "B"), ("vgg16", "D"),
                                                           ("vgg19", "E")))
vgg11_bn, vgg13_bn, vgg16_bn, vgg19_bn = (_builder(a + "_bn", c) for a, c in (("vgg11", "A"), ("vgg13", "B"),
                                                                               ("vgg16", "D"), ("vgg19", "E")))


def from_torchvision(model: nn.Module, algo: str = "auto") -> VGG:
    """A vggkern VGG computing what the torchvision VGG ``model`` computes.

    Works for vgg11/13/16/19 and their ``_bn`` variants, also with another classifier or
    avgpool (a new head: ``classifier[6] = nn.Linear(4096, 10)``, ``nn.Identity()``, a
    single Linear). The result has its own copy of the parameters and buffers (``model``
    is left untouched), the same layers at the same indices (Conv3x3 for each conv,
    MaxPool2x2 for each max-pool, as ``convert`` replaces them; the rest as they are), so
    the same state_dict, the training mode of each of ``model``'s modules (a
    train()-mode model with frozen eval() BatchNorms stays so) and the hooks registered
    on ``model`` and on its modules (a hooked layer stays unconverted, as in
    ``convert``). Its ``features`` fuses each conv with the BatchNorm (in eval mode,
    folded into the weights), ReLU and max-pool after it when run on vggkern's kernels. A
    subclass of torchvision's VGG with its own forward is refused (ours runs
    torchvision's: features, avgpool, flatten, classifier).
    """
    import torchvision.models as tvm

    if not isinstance(model, tvm.VGG):
        raise ValueError(f"vggkern.from_torchvision: expected a torchvision.models.VGG, got "
                         f"{type(model).__module__}.{type(model).__qualname__}")
    _check_algo(algo, "vggkern.from_torchvision")
    if type(model).forward is not tvm.VGG.forward or "forward" in model.__dict__:
        raise ValueError(f"vggkern.from_torchvision: {type(model).__name__} has a forward of its own; the result "
                         "would run torchvision VGG's (features, avgpool, flatten, classifier) instead")
    for name in ("features", "avgpool", "classifier"):
        part = model._modules.get(name)
        if not isinstance(part, nn.Module):
            raise ValueError(f"vggkern.from_torchvision: expected model.{name} to be an nn.Module, as torchvision's "
                             f"VGG.forward calls it, got {part!r}")
    features, _ = convert(model.features, algo)  # a copy; its nn.Sequential becomes a FusedSequential
    # The classifier is given, so num_classes (which only sizes a default one) is not read.
    ours = VGG(features, init_weights=False, classifier=copy.deepcopy(model.classifier),
               avgpool=copy.deepcopy(model.avgpool))
    # The hooks on model itself (forward, backward, state_dict, load_state_dict), as the
    # copies keep those of its parts: the same functions, called with ours.
    for k, v in vars(model).items():
        if "hook" in k:
            setattr(ours, k, copy.copy(v))
    # Each module's own mode (copies and convert's replacements keep theirs; this says so for all).
    own = dict(ours.named_modules(remove_duplicate=False))
    for name, m in model.named_modules(remove_duplicate=False):
        if name in own:
            own[name].training = m.training
    return ours
