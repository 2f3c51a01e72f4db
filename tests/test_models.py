"""vggkern's modules, models, convert() and CPU-backend switch against torch/torchvision.

On CPU the model-level comparisons run our kernels through the SIMT emulator
(``vggkern.cpu_backend("emulator")``): exact but slow, so they use small inputs (VGG's
AdaptiveAvgPool2d lets any size >= 32 through), except one VGG16 at 224x224 (marked
``slow``: deselect with ``-m "not slow"``). GPU cases are marked ``gpu``.

Accuracy rule (as tests/test_conv3x3.py, DESIGN.md Numerics), for a whole network:
against torchvision in float64 on the same input and weights, our max relative error
(max |y - ref| / max |ref|) must satisfy  err <= k * err_torch + eps/4, where err_torch
is torchvision's own relative error in the same dtype on the same device (TF32 off)
and k is the conv test's K_FACTOR for the algorithm and dtype. Measured on CPU (emulator,
VGG16 at 32x32 and VGG11 at 64x64, two seeds): ratio 1.09-1.25 in fp32, 1.00 in fp16,
1.10-1.22 in bf16; GPU ratios are not measured yet (cuDNN rounds differently).
Top-5 indices must be identical to float64 torchvision's (and so to fp32 torchvision's)
in fp32; in fp16/bf16, up to ranks whose float64 logits lie within the error bound of
each other (a tie at that precision).
"""
import copy
import os
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import vggkern
from test_conv3x3 import K_FACTOR
from vggkern.nn import Conv3x3, FusedSequential, MaxPool2x2

GPU = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")]
F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16


@pytest.fixture(autouse=True)
def _tf32_off():
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        old = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        yield
        torch.backends.cuda.matmul.allow_tf32 = old


def _rel(y, ref):
    return ((y.double() - ref).abs().max() / ref.abs().max()).item()


def _run(model, x, backend):
    with torch.no_grad(), vggkern.cpu_backend(backend):
        return model(x)


def _check_against(ours, tv, x, dtype, device, *, algo="direct", strict_top5=None):
    """Our model vs torchvision's (same weights, eval): error bound and top-5."""
    tv = copy.deepcopy(tv).eval()
    with torch.no_grad():
        ref = tv.to(device, torch.float64)(x.to(device, torch.float64))
        own = tv.to(device, dtype)(x.to(device, dtype))
    del tv
    y = _run(ours.eval().to(device, dtype), x.to(device, dtype), "emulator")
    assert y.dtype == dtype and y.shape == ref.shape and y.isfinite().all()
    err, err_torch = _rel(y, ref), _rel(own, ref)
    k = K_FACTOR[algo][dtype]
    bound = k * err_torch + torch.finfo(dtype).eps / 4
    assert err <= bound, f"rel err {err:.3g} > {k} * torch's {err_torch:.3g} + eps/4"
    top, top_ref = y.topk(5, dim=1).indices.cpu(), ref.topk(5, dim=1).indices.cpu()
    if strict_top5 if strict_top5 is not None else dtype == F32:
        assert torch.equal(top, top_ref)
        assert torch.equal(top, own.topk(5, dim=1).indices.cpu())
    else:  # rank r may hold another class only if float64 says it ties within the bound
        ref_c = ref.cpu()
        tol = 2 * bound * ref_c.abs().max().item()
        sorted_ref = ref_c.sort(dim=1, descending=True).values[:, :5]
        assert (ref_c.gather(1, top) - sorted_ref).abs().max().item() <= tol
    return err, err_torch


def _randomize_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return model


def _cached_weight(conv):
    """The weight a Conv3x3 holds prepared for its kernel, or None (its cache slot is
    (key, weak references, weight, bias))."""
    cached = conv._weight_cache
    return None if cached is None else cached[2]


def _tv_and_ours(arch, seed=0):
    """torchvision's model (random weights, seeded) and ours with its state_dict."""
    torch.manual_seed(seed)
    tv = getattr(torchvision.models, arch)().eval()
    with torch.device("meta"):  # skip initialising weights that are replaced at once
        ours = getattr(vggkern, arch)().eval()
    ours.load_state_dict({k: v.clone() for k, v in tv.state_dict().items()}, strict=True, assign=True)
    return tv, ours


def _image(n, size, seed):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ---- models vs torchvision ------------------------------------------------------------

@pytest.mark.slow
def test_vgg16_224_matches_torchvision_emulator():
    tv, ours = _tv_and_ours("vgg16", seed=1)
    _check_against(ours, tv, _image(1, 224, seed=2), F32, "cpu")


MODEL_CASES = [  # CPU: through the emulator at 32x32 (VGG16 fp32 is the 224 test above)
    ("vgg11", F32, "cpu"),
    ("vgg13", F32, "cpu"),
    ("vgg19", F32, "cpu"),
    ("vgg11", F16, "cpu"),  # GPU dtypes, checked on CPU too where it is cheap
    ("vgg11", BF16, "cpu"),
] + [pytest.param(a, d, "cuda", marks=GPU) for a in ("vgg11", "vgg13", "vgg16", "vgg19") for d in (F32, F16, BF16)]


@pytest.mark.parametrize("arch,dtype,device", MODEL_CASES, ids=lambda v: str(v).replace("torch.", ""))
def test_vgg_matches_torchvision(arch, dtype, device):
    tv, ours = _tv_and_ours(arch, seed=3)
    n, size = (4, 224) if device == "cuda" else (1, 32)
    _check_against(ours, tv, _image(n, size, seed=4), dtype, device)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=GPU)])
def test_vgg16_bn_from_torchvision(device):
    torch.manual_seed(5)
    tv = _randomize_bn(torchvision.models.vgg16_bn()).eval()
    ours = vggkern.from_torchvision(tv)
    assert ours.state_dict().keys() == tv.state_dict().keys()  # the BatchNorms are kept, folded when run
    assert [type(m) for m in ours.features[:7]] == [Conv3x3, nn.BatchNorm2d, nn.ReLU, Conv3x3, nn.BatchNorm2d,
                                                     nn.ReLU, MaxPool2x2]
    x = _image(2 if device == "cuda" else 1, 64 if device == "cuda" else 32, seed=6)
    # Folding rounds the folded weights once more than torch's conv -> BN, hence the bound's own k.
    _check_against(ours, tv, x, F32, device)
    if device == "cpu":  # the torch path runs torchvision's layers with torch's ops
        with torch.no_grad():
            assert torch.equal(_run(ours, x, "torch"), tv(x))


def test_from_torchvision_plain_and_errors():
    torch.manual_seed(7)
    tv = torchvision.models.vgg11().eval()
    ours = vggkern.from_torchvision(tv, algo="direct")
    assert isinstance(ours, vggkern.VGG) and not ours.training
    assert all(m.algo == "direct" for m in ours.modules() if isinstance(m, Conv3x3))
    assert ours.state_dict().keys() == tv.state_dict().keys()
    for k, v in tv.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v)
        assert ours.state_dict()[k].data_ptr() != v.data_ptr()  # a copy: tv is left alone
    x = _image(1, 32, seed=8)
    with torch.no_grad():
        assert torch.equal(_run(ours, x, "torch"), tv(x))
    with pytest.raises(ValueError, match=r"expected a torchvision.models.VGG, got torchvision\.models\.resnet\.ResNet"):
        vggkern.from_torchvision(torchvision.models.resnet18())
    with pytest.raises(ValueError, match=r"got vggkern\.models\.VGG$"):  # ours is a VGG too: say whose
        vggkern.from_torchvision(ours)


def test_from_torchvision_keeps_the_models_hooks():
    """Hooks registered on the torchvision model itself (and on its parts) come along:
    the same functions, called with the converted model."""
    torch.manual_seed(69)
    tv = _tiny_vgg_bn(num_classes=5).eval()
    seen = []
    tv.register_forward_pre_hook(lambda m, args: (args[0] * 2,))
    tv.register_forward_hook(lambda m, args, out: seen.append(m) or out + 1)
    tv.classifier.register_forward_hook(lambda m, args, out: out * 3)
    tv.register_state_dict_post_hook(lambda m, sd, prefix, local: sd.__setitem__("marker", torch.ones(1)))
    ours = vggkern.from_torchvision(tv, algo="direct")
    x = _image(2, 32, seed=70)
    with torch.no_grad():
        want = tv(x)
        assert seen == [tv]
        assert torch.equal(_run(ours, x, "torch"), want) and seen == [tv, ours]
    assert "marker" in ours.state_dict()


def test_from_torchvision_keeps_each_modules_mode_and_any_head():
    """Each module keeps its own training flag (a train()-mode model with frozen eval()
    BatchNorms, as in fine-tuning), and a torchvision VGG with another head (one Linear,
    the last layer an Identity) converts: the classifier is copied, not read."""
    torch.manual_seed(67)
    tv = _tiny_vgg_bn(num_classes=5).train()
    for m in tv.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    tv.classifier[2].eval()  # one Dropout too
    ours = vggkern.from_torchvision(tv, algo="direct")
    modes = {n: m.training for n, m in tv.named_modules()}
    assert {n: m.training for n, m in ours.named_modules()} == modes and ours.training
    assert not ours.features[1].training and ours.features[0].training  # frozen BN; a Conv3x3 as its conv
    x = _image(2, 32, seed=68)
    with torch.no_grad():
        want = tv.features(x)
        assert torch.equal(_run(ours.features, x, "torch"), want)  # running statistics, not the batch's
        torch.testing.assert_close(_run(ours.features, x, "emulator"), want, rtol=1e-4, atol=1e-5)
    assert {n: m.training for n, m in tv.named_modules()} == modes  # tv untouched
    for head in ("linear", "identity"):
        tv = _tiny_vgg_bn(num_classes=5).eval()
        if head == "linear":
            tv.classifier = nn.Linear(512 * 7 * 7, 10)
        else:
            tv.classifier[6] = nn.Identity()
        ours = vggkern.from_torchvision(tv)
        assert ours.state_dict().keys() == tv.state_dict().keys()
        assert type(ours.classifier) is type(tv.classifier) and ours.classifier is not tv.classifier
        with torch.no_grad():
            assert torch.equal(_run(ours, x, "torch"), tv(x)), head
    # What cannot be converted says so: a forward of its own, a part that is not a module.

    class MyVGG(torchvision.models.VGG):
        def forward(self, x):
            return self.features(x)

    from torchvision.models.vgg import make_layers
    with pytest.raises(ValueError, match="MyVGG has a forward of its own"):
        vggkern.from_torchvision(MyVGG(make_layers(TINY_BN_CONFIG)))
    tv.classifier = None
    with pytest.raises(ValueError, match="expected model.classifier to be an nn.Module"):
        vggkern.from_torchvision(tv)


# ---- model structure, state_dict, weights ----------------------------------------------

TV_CONV_INDICES = {
    "vgg16": [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28],
}


@pytest.mark.parametrize("arch", ["vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg19_bn"])
def test_state_dict_keys_and_layers_match_torchvision(arch):
    with torch.device("meta"):  # structure only: no memory, no init cost
        tv, ours = getattr(torchvision.models, arch)(), getattr(vggkern, arch)()
    assert list(ours.state_dict().keys()) == list(tv.state_dict().keys())
    for k, v in tv.state_dict().items():
        assert ours.state_dict()[k].shape == v.shape
    assert len(ours.features) == len(tv.features)
    ours_of = {nn.Conv2d: Conv3x3, nn.ReLU: nn.ReLU, nn.MaxPool2d: MaxPool2x2, nn.BatchNorm2d: nn.BatchNorm2d}
    assert [type(m) for m in ours.features] == [ours_of[type(m)] for m in tv.features]
    assert all(not m.relu and not m.pool for m in ours.features if isinstance(m, Conv3x3))  # fused at run time
    assert all(m.inplace for m in ours.features if isinstance(m, nn.ReLU))
    assert repr(ours.avgpool) == repr(tv.avgpool) and repr(ours.classifier) == repr(tv.classifier)
    if arch in TV_CONV_INDICES:
        assert [i for i, m in enumerate(ours.features) if isinstance(m, Conv3x3)] == TV_CONV_INDICES[arch]


def test_state_dict_round_trip():
    torch.manual_seed(9)
    tv = torchvision.models.vgg16().eval()
    ours = vggkern.vgg16(weights=None).eval()
    ours.load_state_dict(tv.state_dict())  # torchvision -> ours, strict
    with torch.device("meta"):
        tv2 = torchvision.models.vgg16().eval()
    tv2.load_state_dict(ours.state_dict(), assign=True)  # ours -> torchvision, strict
    for k, v in tv.state_dict().items():
        assert torch.equal(tv2.state_dict()[k], v), k
    x = _image(1, 32, seed=10)
    with torch.no_grad():
        assert torch.equal(_run(ours, x, "torch"), tv(x))


@pytest.fixture(scope="module")
def vgg16_state_file(tmp_path_factory):
    """A torchvision VGG16 state_dict (random weights, seeded) saved to a file."""
    torch.manual_seed(11)
    state = torchvision.models.vgg16().state_dict()
    path = tmp_path_factory.mktemp("weights") / "vgg16_random.pth"
    torch.save(state, path)
    return path, state


@pytest.mark.parametrize("spec", ["IMAGENET1K_V1", "VGG16_Weights.IMAGENET1K_V1", "DEFAULT", "enum"])
def test_weights_load_through_torchvision(spec, vgg16_state_file, monkeypatch):
    _, state = vgg16_state_file
    calls = []

    def fake_get_state_dict(self, *args, **kwargs):  # instead of the download
        calls.append((self, kwargs))
        return state

    weights_enum = torchvision.models.VGG16_Weights
    monkeypatch.setattr(weights_enum, "get_state_dict", fake_get_state_dict)
    m = vggkern.vgg16(weights=weights_enum.IMAGENET1K_V1 if spec == "enum" else spec, progress=False)
    assert calls == [(weights_enum.IMAGENET1K_V1, {"progress": False, "check_hash": True})]
    for k, v in state.items():
        assert torch.equal(m.state_dict()[k], v), k
    feats = vggkern.vgg16(weights=spec if spec != "enum" else weights_enum.IMAGENET1K_V1, include_top=False)
    assert list(feats.state_dict().keys()) == [k for k in state if k.startswith("features.")]


def test_bn_weights_load_through_torchvision(monkeypatch):
    # vgg16_bn's state_dict (BatchNorm parameters, running statistics, num_batches_tracked)
    # loads unchanged, strict, into ours, which then gives torchvision's result.
    torch.manual_seed(55)
    tv = _randomize_bn(torchvision.models.vgg16_bn()).eval()
    state = tv.state_dict()
    enum = torchvision.models.VGG16_BN_Weights
    monkeypatch.setattr(enum, "get_state_dict", lambda self, **kwargs: state)
    ours = vggkern.vgg16_bn(weights="IMAGENET1K_V1").eval()
    assert ours.state_dict().keys() == state.keys()
    for k, v in state.items():
        assert torch.equal(ours.state_dict()[k], v) and ours.state_dict()[k].dtype == v.dtype, k
    x = _image(1, 32, seed=56)
    with torch.no_grad():
        assert torch.equal(_run(ours, x, "torch"), tv(x))
    assert vggkern.vgg11_bn.__name__ == "vgg11_bn" and "BatchNorm" in vggkern.vgg11_bn.__doc__


def test_weights_errors():
    with pytest.raises(ValueError, match="weights must be None, a VGG16_Weights member or name"):
        vggkern.vgg16(weights="IMAGENET1K_V9")
    with pytest.raises(ValueError, match="weights must be None, a VGG16_Weights member"):
        vggkern.vgg16(weights=torchvision.models.VGG19_Weights.IMAGENET1K_V1)
    with pytest.raises(ValueError, match="have 1000 classes, got num_classes=10"):
        vggkern.vgg16(num_classes=10, weights="IMAGENET1K_V1")


def test_weights_without_the_top_take_any_num_classes(vgg16_state_file, monkeypatch):
    """include_top=False drops the classifier, so the weights' class count does not have to
    match num_classes (a backbone for a new task)."""
    _, state = vgg16_state_file
    monkeypatch.setattr(torchvision.models.VGG16_Weights, "get_state_dict", lambda self, **kwargs: state)
    feats = vggkern.vgg16(num_classes=10, weights="IMAGENET1K_V1", include_top=False)
    assert not hasattr(feats, "classifier")
    for k, v in feats.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_weights_from_file_and_include_top(vgg16_state_file):
    path, state = vgg16_state_file
    m = vggkern.vgg16(weights=str(path))
    for k, v in state.items():
        assert torch.equal(m.state_dict()[k], v), k
    backbone = vggkern.vgg16(weights=path, include_top=False)  # a PathLike too
    assert not hasattr(backbone, "classifier") and not hasattr(backbone, "avgpool")
    x = _image(2, 64, seed=12)
    with torch.no_grad():
        f = _run(backbone, x, "torch")
        assert f.shape == (2, 512, 2, 2)
        assert torch.equal(f, _run(m.features, x, "torch"))
    small = vggkern.vgg11(num_classes=10)
    assert small.classifier[-1].out_features == 10


@pytest.mark.parametrize("backend", ["torch", "emulator"])
def test_feature_slices_mean_what_torchvisions_do(backend):
    # Perceptual losses take VGG16's relu1_2, relu2_2, relu3_3, relu4_3 as the slices
    # features[:4], [4:9], [9:16], [16:23]; each ends right before a pool, which a slice
    # of ours must not fuse in (it is not there) while the whole features does.
    tv, ours = _tv_and_ours("vgg16", seed=41)
    x = _image(1, 32, seed=42)
    a = b = x
    with torch.no_grad(), vggkern.cpu_backend(backend):
        for sl in (slice(0, 4), slice(4, 9), slice(9, 16), slice(16, 23), slice(23, 31)):
            a, b = ours.features[sl](a), tv.features[sl](b)
            assert a.shape == b.shape, sl
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        if backend == "torch":
            return  # the torch path runs the layers one by one: the fusion rules are the kernels' path's
        for sl in (slice(0, 3), slice(1, 7), slice(3, 5), slice(None, None, 1), slice(-3, None)):  # odd cuts
            xin = x if sl.start in (None, 0) else tv.features[:sl.start if sl.start > 0 else 31 + sl.start](x)
            torch.testing.assert_close(ours.features[sl](xin), tv.features[sl](xin), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ours.features[:9][:3](x), tv.features[:3](x), rtol=1e-4, atol=1e-5)
    part = ours.features[:4]
    assert isinstance(part, FusedSequential) and all(a is b for a, b in zip(part, ours.features))
    assert list(part.state_dict()) == list(tv.features[:4].state_dict())


def _per_layer(layers, x):
    """Each layer's output, running them one at a time (a perceptual loss's loop)."""
    outs = []
    for layer in layers:
        x = layer(x)
        outs.append(x.clone())  # the next in-place ReLU would change it
    return outs


# A small torchvision VGG with BatchNorm (the classifier needs 512 channels): every kind
# of group, conv + BN + ReLU with and without the pool, in 4 convs.
TINY_BN_CONFIG = [8, "M", 16, 16, "M", 512, "M"]


def _tiny_vgg_bn(num_classes=1000):
    from torchvision.models.vgg import make_layers
    return _randomize_bn(torchvision.models.VGG(make_layers(TINY_BN_CONFIG, batch_norm=True), num_classes))


@pytest.mark.parametrize("arch", ["vgg11", "tiny_bn"])
def test_features_layer_by_layer_and_hooks_see_torchvisions_outputs(arch):
    """Iterating ``features``, or hooking any of its layers, sees what torchvision's layer
    at that index gives: the layers are torchvision's, fused only when run as a whole."""
    torch.manual_seed(45)
    tv = (_tiny_vgg_bn() if arch == "tiny_bn" else torchvision.models.vgg11()).eval()
    ours = vggkern.from_torchvision(tv)
    x = _image(1, 32, seed=46)
    with torch.no_grad():
        want = _per_layer(tv.features, x)
        with vggkern.cpu_backend("emulator"):
            got = _per_layer(ours.features, x)
            got_named = _per_layer([m for _, m in ours.features.named_children()], x)
            seen = {}
            hooks = [m.register_forward_hook(lambda m, a, y, i=i: seen.__setitem__(i, y.clone()))
                     for i, m in enumerate(ours.features)]
            y = ours.features(x)
            for h in hooks:
                h.remove()
        for i, w in enumerate(want):
            for name, g in (("iterated", got[i]), ("named_children", got_named[i]), ("hooked", seen[i])):
                assert g.shape == w.shape, (name, i)
                torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5, msg=f"{name} layer {i}")
        torch.testing.assert_close(y, want[-1], rtol=1e-4, atol=1e-5)


def test_fx_feature_extractor_with_our_modules_as_leaves():
    """torchvision's create_feature_extractor (torch.fx) takes torchvision's node names
    from our VGG once Conv3x3 and MaxPool2x2 are leaves (it then runs them unfused);
    without that it says so instead of failing inside our modules."""
    from torchvision.models.feature_extraction import create_feature_extractor
    torch.manual_seed(51)
    tv = torchvision.models.vgg11().eval()
    ours = vggkern.from_torchvision(tv)
    nodes = {"features.4": "relu2_1", "features.10": "pool3", "classifier.0": "fc6"}
    leaves = {"leaf_modules": [vggkern.Conv3x3, vggkern.MaxPool2x2]}
    x = _image(1, 32, seed=52)
    with torch.no_grad():
        want = create_feature_extractor(tv, nodes)(x)
        got = create_feature_extractor(ours, nodes, tracer_kwargs=leaves)
        with vggkern.cpu_backend("emulator"):
            got = got(x)
    assert got.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-5, msg=k)
    with pytest.raises(TypeError, match=r"got Proxy: torch.fx's symbolic tracing must treat vggkern's modules as "
                                        r"leaves.*leaf_modules"):
        create_feature_extractor(ours, nodes)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_torch_jit_trace_of_the_modules(tmp_path):
    """torch.jit.trace records the op with the raw weight and "auto" unresolved (as under
    torch.compile), so the trace passes its own check (the prepared-weight cache and the
    Python-side resolution would differ between calls), runs other shapes as the module
    does, and saves and loads."""
    torch.manual_seed(53)
    x, x2 = _image(1, 8, seed=54), _image(2, 12, seed=55)
    with vggkern.cpu_backend("emulator"), torch.no_grad(), torch.backends.cudnn.flags(allow_tf32=True):
        for algo in ("auto", "winograd_f4x4", "implicit_gemm"):
            m = vggkern.Conv3x3(3, 4, relu=True, algo=algo)
            traced = torch.jit.trace(m, x)
            assert torch.equal(traced(x2), m(x2)), algo
        features = vggkern.vgg11(algo="auto").features[:6].eval()
        traced = torch.jit.trace(features, x)
        path = tmp_path / "features.pt"
        torch.jit.save(traced, str(path))
        assert torch.equal(torch.jit.load(str(path))(x2), features(x2))


class _OpCalls:
    """The (relu, pool) of every conv3x3 op call the modules make, and the number of
    standalone maxpool2x2 calls."""

    def __init__(self, monkeypatch):
        self.convs, self.pools = [], 0
        conv, pool = vggkern.nn._conv3x3_op, vggkern.ops.maxpool2x2

        def spy_conv(x, weight, bias, relu, pool, *args):
            self.convs.append((relu, pool))
            return conv(x, weight, bias, relu, pool, *args)

        def spy_pool(*args, **kwargs):
            self.pools += 1
            return pool(*args, **kwargs)

        monkeypatch.setattr(vggkern.nn, "_conv3x3_op", spy_conv)
        monkeypatch.setattr(vggkern.ops, "maxpool2x2", spy_pool)

    def take(self):
        out = (self.convs, self.pools)
        self.convs, self.pools = [], 0
        return out


def test_features_fuse_unless_a_layer_is_observed(monkeypatch):
    """Run as a whole, ``features`` makes one fused kernel call per conv (its BatchNorm
    folded in, eval mode); a hooked layer runs as itself, and only its group unfuses."""
    calls = _OpCalls(monkeypatch)
    torch.manual_seed(47)
    tv = _tiny_vgg_bn().eval()
    ours = vggkern.from_torchvision(tv, algo="direct")
    x = _image(1, 32, seed=48)
    fused = [(True, True), (True, False), (True, True), (True, True)]  # TINY_BN_CONFIG's 4 convs
    with torch.no_grad(), vggkern.cpu_backend("emulator"):
        want = ours(x)
        assert calls.take() == (fused, 0)
        h = ours.features[2].register_forward_hook(lambda *_: None)  # the first ReLU (features.0 conv, .1 BN)
        torch.testing.assert_close(ours(x), want, rtol=1e-4, atol=1e-5)
        assert calls.take() == ([(False, False)] + fused[1:], 1)  # conv + BN, then ReLU and pool alone
        h.remove()
        h = ours.features[0].register_forward_pre_hook(lambda *_: None)  # the conv itself
        torch.testing.assert_close(ours(x), want, rtol=1e-4, atol=1e-5)
        assert calls.take() == ([(False, False)] + fused[1:], 1)  # conv alone; BN, ReLU, pool alone
        h.remove()
        from torch.nn.modules.module import register_module_forward_hook
        h = register_module_forward_hook(lambda *_: None)  # a global hook sees every module
        torch.testing.assert_close(ours(x), want, rtol=1e-4, atol=1e-5)
        assert calls.take() == ([(False, False)] * 4, 3)
        h.remove()
        ours.features[:3](x)  # a slice ending after the ReLU: conv + BN + ReLU, no pool
        assert calls.take() == ([(True, False)], 0)
        with pytest.raises(ValueError, match="expected 4D input"):  # unbatched: BatchNorm2d refuses it, as in torch
            ours.features(x[0])
        assert calls.take() == ([(False, False)], 0)  # the first conv ran, as itself
    with vggkern.cpu_backend("torch"), torch.no_grad():  # torch's ops, layer by layer: torchvision's exactly
        assert torch.equal(ours(x), tv(x)) and calls.take() == ([], 0)


def test_fusion_keeps_the_order_of_a_convs_own_relu_and_pool():
    """A Conv3x3 that applies its own ReLU or pool (relu=True / pool=True) computes
    conv -> ReLU -> pool; what follows it in a FusedSequential comes after that: a BatchNorm
    is not folded into the weights (that would move it before the ReLU / pool), and a
    max-pool after a pooling conv pools a second time. Checked against the same layers
    run one by one with torch's ops, in float64."""
    torch.manual_seed(71)
    cases = [
        (Conv3x3(3, 6, relu=True, algo="direct"), nn.BatchNorm2d(6)),
        (Conv3x3(3, 6, pool=True, algo="direct"), nn.BatchNorm2d(6)),
        (Conv3x3(3, 6, pool=True, algo="direct"), MaxPool2x2()),
        (Conv3x3(3, 6, pool=True, algo="direct"), nn.MaxPool2d(2)),
    ]
    x = _image(1, 8, seed=72)
    for layers in cases:
        seq = _randomize_bn(FusedSequential(*layers)).eval()
        with torch.no_grad():
            if isinstance(layers[1], nn.BatchNorm2d):  # a negative scale does not commute with a max
                layers[1].weight[::2] *= -1
            conv = layers[0]
            y = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=1)
            y = F.max_pool2d(y, 2, 2) if conv.pool else F.relu(y)
            second = layers[1]
            if isinstance(second, nn.BatchNorm2d):
                want = F.batch_norm(y, second.running_mean.double(), second.running_var.double(),
                                    second.weight.double(), second.bias.double(), eps=second.eps)
            else:
                want = F.max_pool2d(y, 2, 2)
            got = _run(seq, x, "emulator")
        assert got.shape == want.shape, layers
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5, msg=str(layers))


def test_a_batchnorm_of_another_width_is_not_folded():
    """A BatchNorm2d whose num_features is not the conv's K is not folded: it runs as
    itself and fails as in torch (folding a 1-wide one would broadcast it silently)."""
    torch.manual_seed(81)
    seq = FusedSequential(Conv3x3(3, 4, algo="direct"), nn.BatchNorm2d(1)).eval()
    x = _image(1, 6, seed=82)
    for backend in ("torch", "emulator"):
        with pytest.raises(RuntimeError, match="running_mean should contain 4 elements not 1"):
            _run(seq, x, backend)


def test_only_tensor_core_models_convert_nchw_input(monkeypatch):
    """The model's one-time NCHW -> channels_last conversion is for tensor-core convs: a
    model of direct convs hands its convs the input's own layout; and a tensor that is not
    on the CPU (here meta; CUDA alike) always goes to our op, whatever the CPU backend."""
    from vggkern.models import VGG, make_features

    seen, conv3x3 = [], vggkern.nn._conv3x3_op

    def spy(x, *args):
        seen.append((x.device.type, x.is_contiguous(memory_format=torch.channels_last)))
        return conv3x3(x, *args)

    monkeypatch.setattr(vggkern.nn, "_conv3x3_op", spy)
    torch.manual_seed(83)
    model = VGG(make_features([8, "M", 8], algo="direct"), include_top=False).eval()
    x = _image(1, 8, seed=84)
    with vggkern.cpu_backend("emulator"), torch.no_grad():
        y = model(x)
    assert seen == [("cpu", False)] * 2 and y.is_contiguous()
    seen.clear()
    with vggkern.cpu_backend("torch"), torch.no_grad():
        model(x)
        assert seen == []
        y = model.to("meta")(x.to("meta"))
    assert seen == [("meta", False)] * 2 and y.shape == (1, 8, 4, 4)


def test_a_changed_batchnorm_eps_is_seen_by_the_folded_weights():
    """The folded weights depend on the BatchNorm's eps, a plain attribute no version
    counter sees: changing it between calls changes the result as it does in torch."""
    torch.manual_seed(73)
    seq = _randomize_bn(FusedSequential(Conv3x3(3, 4, algo="direct"), nn.BatchNorm2d(4))).eval()
    for m in seq.modules():  # small variances: eps matters
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.mul_(1e-3)
    x = _image(1, 6, seed=74)
    with torch.no_grad():
        for eps in (1e-5, 1e-1):
            seq[1].eps = eps
            want = seq[1](F.conv2d(x.double(), seq[0].weight.double(), seq[0].bias.double(), padding=1).float())
            torch.testing.assert_close(_run(seq, x, "emulator"), want, rtol=1e-4, atol=1e-4, msg=f"eps={eps}")


def test_a_changed_algo_is_seen_by_the_prepared_weight():
    """The prepared weight is kept per algorithm: a module whose algo is changed between
    calls (Winograd F(2x2) to F(4x4), each with its own transform) runs the new one on the
    weight prepared for it."""
    torch.manual_seed(75)
    conv = Conv3x3(4, 6, algo="winograd_f2x2")
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad(), vggkern.cpu_backend("emulator"):
        for algo in ("winograd_f2x2", "winograd_f4x4", "direct", "winograd_f2x2"):
            conv.algo = algo
            assert torch.equal(conv(x), vggkern.conv3x3(x, conv.weight, conv.bias, algo=algo)), algo
            torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1), rtol=1e-4,
                                       atol=1e-4)


def test_a_layer_with_a_backward_hook_runs_unfused():
    """A full backward hook on a layer FusedSequential would fuse (the ReLU after a conv)
    makes it run as itself, so the hook sees the gradient of its own output, as in torch."""
    torch.manual_seed(77)
    seq = FusedSequential(Conv3x3(3, 4, algo="direct"), nn.ReLU(), MaxPool2x2())
    seen = []
    seq[1].register_full_backward_hook(lambda m, gi, go: seen.append(go[0].shape))
    x = _image(1, 6, seed=78).requires_grad_()
    for backend in ("torch", "emulator"):
        with vggkern.cpu_backend(backend):
            seq(x).sum().backward()
    assert seen == [(1, 4, 6, 6)] * 2


def test_vgg_bn_trains_and_fine_tunes_like_torchvision():
    """BatchNorm is folded only in eval mode without autograd's need for it: in training
    mode the layers run one at a time (batch statistics, running-stat updates as
    torchvision's); in eval mode with gradients the fold is differentiable, so every
    parameter gets torchvision's gradient; and the folded weights follow the running
    statistics as they change."""
    torch.manual_seed(49)
    tv = _tiny_vgg_bn(num_classes=5)
    ours = vggkern.from_torchvision(tv, algo="direct")
    assert ours.training and [m.training for m in ours.modules()] == [m.training for m in tv.modules()]
    x = _image(2, 32, seed=50)
    with vggkern.cpu_backend("emulator"):
        with torch.no_grad():  # eval mode first: the folded weights are cached
            torch.testing.assert_close(ours.eval()(x), tv.eval()(x), rtol=1e-4, atol=1e-5)
        tv.train(), ours.train()
        torch.manual_seed(0)
        y = ours(x)
        torch.manual_seed(0)
        torch.testing.assert_close(y, tv(x), rtol=1e-4, atol=1e-5)  # Dropout: the same draws
        for a, b in zip(ours.features, tv.features):
            if isinstance(b, nn.BatchNorm2d):
                torch.testing.assert_close(a.running_mean, b.running_mean, rtol=1e-4, atol=1e-6)
                torch.testing.assert_close(a.running_var, b.running_var, rtol=1e-4, atol=1e-6)
        tv.eval(), ours.eval()
        with torch.no_grad():  # the running statistics changed: the cached fold must follow
            torch.testing.assert_close(ours(x), tv(x), rtol=1e-4, atol=1e-5)
        ours(x).square().sum().backward()
        tv(x).square().sum().backward()
    for (name, a), b in zip(ours.named_parameters(), tv.parameters()):
        assert a.grad is not None, name
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-5, msg=name)


def test_transfer_learning_new_head():
    """README's recipe: a frozen backbone (on the kernels: the emulator here) and a new
    head trained on it. The backbone gets no gradient and stays as it was; the logits and
    the trained head are those of the same recipe on torchvision's layers."""
    torch.manual_seed(13)
    backbone = vggkern.vgg11(include_top=False)
    reference = torchvision.models.vgg11().features
    reference.load_state_dict({k.removeprefix("features."): v for k, v in backbone.state_dict().items()})
    models, optimizers = [], []
    for features in (backbone, reference):
        for p in features.parameters():
            p.requires_grad_(False)
        head = nn.Linear(512, 3)
        if models:
            head.load_state_dict(models[0][3].state_dict())
        models.append(nn.Sequential(features, nn.AdaptiveAvgPool2d(1), nn.Flatten(), head))
        optimizers.append(torch.optim.SGD(head.parameters(), lr=0.1))
    before = copy.deepcopy(backbone.state_dict())
    head_before = models[0][3].weight.detach().clone()
    x, target = _image(2, 32, seed=14), torch.tensor([0, 2])
    for _ in range(2):
        logits = []
        for model, opt, backend in zip(models, optimizers, ("emulator", "torch")):
            with vggkern.cpu_backend(backend):
                out = model(x)
            logits.append(out.detach())
            opt.zero_grad()
            F.cross_entropy(out, target).backward()
            opt.step()
        torch.testing.assert_close(logits[0], logits[1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(models[0][3].weight, models[1][3].weight, rtol=1e-4, atol=1e-6)
    assert (models[0][3].weight - head_before).abs().max() > 1e-3  # and the head did train
    assert all(p.grad is None for p in backbone.parameters())
    for k, v in backbone.state_dict().items():
        assert torch.equal(v, before[k])


# ---- convert() -------------------------------------------------------------------------

RESNET18_SWAPPED = ["layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1", "layer1.1.conv2", "layer2.0.conv2",
                    "layer2.1.conv1", "layer2.1.conv2", "layer3.0.conv2", "layer3.1.conv1", "layer3.1.conv2",
                    "layer4.0.conv2", "layer4.1.conv1", "layer4.1.conv2"]


def test_convert_resnet18(device):
    torch.manual_seed(15)
    model = _randomize_bn(torchvision.models.resnet18()).eval()
    original = copy.deepcopy(model.state_dict())
    converted, report = vggkern.convert(model)
    assert list(report.replaced) == RESNET18_SWAPPED and set(report.replaced.values()) == {"Conv3x3"}
    assert report.fused == {}  # BatchNorm sits between each conv and its ReLU
    assert set(report.skipped) == {"conv1", "maxpool", "layer2.0.conv1", "layer2.0.downsample.0",
                                   "layer3.0.conv1", "layer3.0.downsample.0", "layer4.0.conv1",
                                   "layer4.0.downsample.0"}
    for name in RESNET18_SWAPPED:
        m = converted.get_submodule(name)
        assert type(m) is Conv3x3 and not m.relu and not m.pool and m.bias is None
    for name in report.skipped:
        assert type(converted.get_submodule(name)) is type(model.get_submodule(name))
    assert type(model.layer1[0].conv1) is nn.Conv2d  # inplace=False: the original is left alone
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items())
    assert converted.state_dict().keys() == model.state_dict().keys()
    text = str(report)
    assert "13 modules replaced" in text and "layer4.1.conv2 -> Conv3x3" in text and "CPU: torch ops" in text
    x = _image(1, 32, seed=16).to(device)
    model, converted = model.to(device), converted.to(device)
    with torch.no_grad():
        before = model(x)
        if device == "cpu":
            assert torch.equal(_run(converted, x, "torch"), before)
        with vggkern.cpu_backend("emulator"):
            after = converted(x)
            ref = model.double()(x.double())
    err, err_torch = _rel(after, ref), _rel(before, ref)
    assert err <= K_FACTOR["direct"][F32] * err_torch + torch.finfo(F32).eps / 4, (err, err_torch)


def test_convert_vgg16(device):
    torch.manual_seed(17)
    tv = torchvision.models.vgg16().eval()
    converted, report = vggkern.convert(tv, algo="direct")
    convs = [f"features.{i}" for i in TV_CONV_INDICES["vgg16"]]
    pools = [f"features.{i}" for i, m in enumerate(tv.features) if isinstance(m, nn.MaxPool2d)]
    assert list(report.replaced) == sorted(convs + pools, key=lambda n: int(n.split(".")[1])) and report.skipped == {}
    assert {report.replaced[p] for p in pools} == {"MaxPool2x2"}
    pools_after = {"features.2": 4, "features.7": 9, "features.14": 16, "features.21": 23, "features.28": 30}
    for c in convs:
        i = int(c.split(".")[1])
        assert report.fused[c] == [f"features.{i + 1}"] + ([f"features.{pools_after[c]}"] if c in pools_after else [])
        m = converted.get_submodule(c)
        assert not m.relu and not m.pool and m.algo == "direct"  # the layers stay; fused at run time
    assert type(converted.features) is FusedSequential and type(tv.features) is nn.Sequential
    ours_of = {nn.Conv2d: Conv3x3, nn.ReLU: nn.ReLU, nn.MaxPool2d: MaxPool2x2}
    assert [type(m) for m in converted.features] == [ours_of[type(m)] for m in tv.features]
    assert type(converted.classifier[1]) is nn.ReLU  # Linear + ReLU: not ours
    assert "replaced features.2 -> Conv3x3 + features.3, features.4 fused" in str(report)
    tv.load_state_dict(converted.state_dict())  # keys unchanged
    x = _image(1, 32, seed=18)
    if device == "cpu":
        with torch.no_grad():
            assert torch.equal(_run(converted, x, "torch"), tv(x))
    _check_against(converted, tv, x, F32, device)


def test_convert_fusion_rules(monkeypatch):
    calls = _OpCalls(monkeypatch)
    torch.manual_seed(19)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),      # 0-2: fused all
        nn.Conv2d(8, 8, 3, padding="same", bias=False), nn.MaxPool2d(2, 2),          # 3-4: conv + pool
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),                  # 5-7: conv + BN + ReLU
        nn.MaxPool2d(2, stride=2),                                                    # 8: + pool
        nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect"), nn.ReLU(),             # 9-10: kept
        nn.Conv2d(8, 8, 3, padding=2, dilation=2),                                    # 11: kept
        nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.ReLU(),                           # 12-13: kept
        nn.MaxPool2d(2, ceil_mode=True),                                              # 14: kept
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, padding=1),         # 15-17: relu only
    ).eval()
    _randomize_bn(model)
    converted, report = vggkern.convert(model)
    assert report.replaced == {"0": "Conv3x3", "2": "MaxPool2x2", "3": "Conv3x3", "4": "MaxPool2x2", "5": "Conv3x3",
                               "8": "MaxPool2x2", "15": "Conv3x3"}
    assert report.fused == {"0": ["1", "2"], "3": ["4"], "5": ["6", "7", "8"], "15": ["16"]}
    assert set(report.skipped) == {"9", "11", "12", "14", "17"}
    assert "padding_mode='zeros', got 'reflect'" in report.skipped["9"]
    assert type(converted) is FusedSequential and type(model) is nn.Sequential  # a copy (inplace=False)
    assert [type(converted[i]).__name__ for i in range(9)] == ["Conv3x3", "ReLU", "MaxPool2x2", "Conv3x3", "MaxPool2x2",
                                                               "Conv3x3", "BatchNorm2d", "ReLU", "MaxPool2x2"]
    x = _image(2, 40, seed=20)
    with torch.no_grad():
        want = model(x)
        assert torch.equal(_run(converted, x, "torch"), want)
        torch.testing.assert_close(_run(converted, x, "emulator"), want, rtol=1e-5, atol=1e-5)
    assert calls.take() == ([(True, True), (False, True), (True, True), (True, False)], 0)  # as reported
    # A bare layer is converted too; inplace=True shares the parameters (an optimizer keeps them).
    conv = nn.Conv2d(3, 4, 3, padding=1)
    single, rep = vggkern.convert(conv, inplace=True)
    assert type(single) is Conv3x3 and single.weight is conv.weight and rep.replaced == {"(model)": "Conv3x3"}
    seq = nn.Sequential(conv, nn.ReLU())
    same, _ = vggkern.convert(seq, inplace=True)
    assert same is seq and type(seq[0]) is Conv3x3 and seq[0].weight is conv.weight and type(seq[1]) is nn.ReLU
    assert type(seq) is FusedSequential
    with pytest.raises(ValueError, match='unknown algo "fast"'):
        vggkern.convert(model, algo="fast")


def test_convert_reports_what_runs(monkeypatch):
    """The report's fused layers are those the kernels fuse when the model runs (in eval
    mode): a ReLU, BatchNorm or pool with a hook on it is not fused, nor what follows it;
    a conv with a hook runs alone; a BatchNorm in training mode now is listed (it is fused
    once in eval mode); an nn.MaxPool2d subclass is kept, and reported, as a Conv2d one is."""
    calls = _OpCalls(monkeypatch)
    torch.manual_seed(41)

    class MyPool(nn.MaxPool2d):
        pass

    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),                      # 0-2: ReLU hooked
        nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),   # 3-6: pool hooked
        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), MyPool(2),                            # 7-9: a pool subclass
        Conv3x3(4, 4), nn.ReLU(),                                                       # 10-11: conv hooked
    ).train()
    _randomize_bn(model)
    model[1].register_forward_hook(lambda m, i, o: None)
    model[6].register_forward_pre_hook(lambda m, a: None)
    model[10].register_forward_hook(lambda m, i, o: None)
    converted, report = vggkern.convert(model)
    assert report.fused == {"3": ["4", "5"], "7": ["8"]}
    assert set(report.skipped) == {"6", "9"}
    assert "forward pre-hooks" in report.skipped["6"]
    assert report.skipped["9"] == "a subclass of nn.MaxPool2d (MyPool) whose forward may differ"
    assert report.replaced == {"0": "Conv3x3", "2": "MaxPool2x2", "3": "Conv3x3", "7": "Conv3x3"}
    converted.eval()
    x = _image(1, 16, seed=42)
    with torch.no_grad():
        want = model.eval()(x)
        torch.testing.assert_close(_run(converted, x, "emulator"), want, rtol=1e-5, atol=1e-5)
    # One conv launch per conv: (relu, pool) fused as reported, conv 3's BatchNorm folded
    # (no BatchNorm runs: the result above matches with it); pool 2 runs as a launch of its own.
    assert calls.take() == ([(False, False), (True, False), (True, False), (False, False)], 1)


def test_convert_keeps_hooked_layers_as_they_are(monkeypatch):
    """A Conv2d or MaxPool2d with a hook (forward, pre-forward, backward; with_kwargs and
    always_call ones too), or a forward replaced on the instance, is left as it is and
    reported: its hooks stay on the layer they were put on and see what they saw; the
    other layers convert and fuse as usual. Replacements keep the layer's training mode."""
    calls = _OpCalls(monkeypatch)
    torch.manual_seed(63)

    def build():
        return nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),      # 0: forward hook; 2: pre-hook
            nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),                       # 3: full backward hook
            nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),      # 5-7: no hooks, fused
        ).eval()

    for inplace in (False, True):
        model, seen = build(), []
        handles = [
            model[0].register_forward_hook(lambda m, i, o: seen.append(("fwd0", type(m), o.shape))),
            model[2].register_forward_pre_hook(lambda m, a, k: seen.append(("pre2", type(m), a[0].shape)),
                                               with_kwargs=True),
            model[3].register_full_backward_hook(lambda m, gi, go: seen.append(("bwd3", type(m), go[0].shape))),
            model[3].register_forward_hook(lambda m, i, o: seen.append(("always3", type(m))), always_call=True),
        ]
        ref = copy.deepcopy(model)  # the hooks come along, as with convert's own copy
        converted, report = vggkern.convert(model, inplace=inplace)
        assert set(report.skipped) == {"0", "2", "3"} and report.replaced == {"5": "Conv3x3", "7": "MaxPool2x2"}
        assert report.fused == {"5": ["6", "7"]}
        assert "forward hooks" in report.skipped["0"] and "forward pre-hooks" in report.skipped["2"]
        assert "forward hooks, backward hooks" in report.skipped["3"]
        assert [type(m) for m in converted] == [nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.Conv2d, nn.ReLU, Conv3x3,
                                                nn.ReLU, MaxPool2x2]
        assert not any(m.training for m in converted.modules())  # eval() is kept on the replacements
        if inplace:
            assert all(converted[i] is ref_i for i, ref_i in ((0, model[0]), (3, model[3])))
        x = _image(1, 16, seed=64).requires_grad_()
        ref(x).sum().backward()
        want = list(seen)
        for backend in ("torch", "emulator"):
            seen.clear()
            with vggkern.cpu_backend(backend):
                y = converted(x)
                y.sum().backward()
            assert seen == want, backend
            torch.testing.assert_close(y, ref(x), rtol=1e-5, atol=1e-5)
        assert calls.take()[0] == [(True, True)]  # on the emulator: conv 5 + ReLU + pool, the rest as themselves
        if inplace:  # the user's handles still remove them
            for h in handles:
                h.remove()
            assert not vggkern.convert(model, inplace=True)[1].skipped
    # A forward replaced on the instance (as accelerate does) counts as a hook; so does a bare hooked layer.
    pool = nn.MaxPool2d(2)
    pool.forward = lambda x: F.max_pool2d(x, 2) + 1
    same, report = vggkern.convert(nn.Sequential(pool), inplace=True)
    assert same[0] is pool and "a forward replaced on the instance" in report.skipped["0"]
    conv = nn.Conv2d(3, 4, 3, padding=1)
    conv.register_forward_pre_hook(lambda m, a: None)
    single, report = vggkern.convert(conv)
    assert type(single) is nn.Conv2d and "forward pre-hooks" in report.skipped["(model)"]


def test_convert_leaves_subclasses_and_state_dict_hooked_layers_alone():
    """What convert leaves as it is, and reports: an nn.Sequential subclass keeps its class
    (and so its own forward: it is not made a FusedSequential, though its 3x3 conv is
    converted), a subclass of nn.Conv2d is reported as skipped, and a conv with a
    state_dict hook keeps it (a replacement would drop the hook)."""

    class Reversed(nn.Sequential):  # a forward of its own: runs its layers backwards
        def forward(self, x):
            for m in reversed(self):
                x = m(x)
            return x

    class MyConv(nn.Conv2d):
        pass

    torch.manual_seed(79)
    model = nn.Sequential(Reversed(nn.ReLU(), nn.Conv2d(3, 4, 3, padding=1)), MyConv(4, 4, 3, padding=1),
                          nn.Conv2d(4, 4, 3, padding=1)).eval()
    model[2]._register_state_dict_hook(lambda module, state, prefix, local: state)
    converted, report = vggkern.convert(model)
    assert type(converted[0]) is Reversed and type(converted[0][1]) is Conv3x3
    assert report.replaced == {"0.1": "Conv3x3"}
    assert set(report.skipped) == {"1", "2"}
    assert "subclass of nn.Conv2d (MyConv)" in report.skipped["1"] and "state_dict hooks" in report.skipped["2"]
    assert type(converted[1]) is MyConv and type(converted[2]) is nn.Conv2d and converted[2]._state_dict_hooks
    x = _image(1, 6, seed=80) - 0.5
    with torch.no_grad():
        want = model(x)
        for backend in ("torch", "emulator"):
            torch.testing.assert_close(_run(converted, x, backend), want, rtol=1e-5, atol=1e-5, msg=backend)


def test_convert_leaves_reparametrized_convs_alone():
    """Convs whose weight or bias a hook recomputes each forward (torch.nn.utils.prune,
    the hook-based spectral_norm and weight_norm) are left as they are, with a reason: the
    same state_dict and parameters, and training goes on through the mask / power
    iteration exactly as in the original. from_conv2d refuses them."""
    from torch.nn.utils import prune

    def build():  # (torch cannot deepcopy these: their computed weights are not graph leaves)
        torch.manual_seed(65)
        model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                              nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1),
                              nn.Conv2d(4, 2, 3, padding=1))
        prune.l1_unstructured(model[0], "weight", amount=0.5)
        nn.utils.spectral_norm(model[2])
        prune.random_unstructured(model[4], "bias", amount=0.5)
        with pytest.warns(FutureWarning):
            nn.utils.weight_norm(model[5])
        return model

    ref = build()
    converted, report = vggkern.convert(build(), inplace=True)
    assert report.replaced == {"6": "Conv3x3"} and set(report.skipped) == {"0", "2", "4", "5"}
    assert "its weight is not a Parameter of its own" in report.skipped["0"]
    assert "its bias is not a Parameter of its own" in report.skipped["4"]
    assert converted.state_dict().keys() == ref.state_dict().keys()
    assert [n for n, _ in converted.named_parameters()] == [n for n, _ in ref.named_parameters()]
    x = _image(2, 8, seed=66)
    for m in (ref, converted):  # training: the mask, power iteration and weight norm apply on both
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        for _ in range(2):
            opt.zero_grad()
            m(x).square().sum().backward()
            opt.step()
    for k, v in ref.state_dict().items():
        assert torch.equal(converted.state_dict()[k], v), k
    assert (converted[0].weight == 0).sum() == 4 * 27 // 2  # still pruned
    with pytest.raises(ValueError, match="its weight is not a Parameter of its own"):
        Conv3x3.from_conv2d(ref[0])
    # inplace=False deep-copies, which torch refuses for these: said by convert, naming the way out
    with pytest.raises(RuntimeError, match=r"vggkern.convert: inplace=False deep-copies.*inplace=True"):
        vggkern.convert(build())


# ---- nn modules -----------------------------------------------------------------------

def test_conv3x3_is_a_conv2d_drop_in():
    torch.manual_seed(21)
    ref = nn.Conv2d(5, 7, 3, padding=1)
    torch.manual_seed(21)
    ours = Conv3x3(5, 7)
    assert ours.state_dict().keys() == ref.state_dict().keys()
    assert torch.equal(ours.weight, ref.weight) and torch.equal(ours.bias, ref.bias)  # same init, same draws
    assert Conv3x3(5, 7, bias=False).bias is None and "bias" not in Conv3x3(5, 7, bias=False).state_dict()
    ours.load_state_dict(nn.Conv2d(5, 7, 3, padding=1).state_dict())
    half = Conv3x3(2, 3, dtype=torch.float16)
    assert half.weight.dtype == torch.float16
    bad = {
        "kernel_size=(3, 3), got (5, 5)": nn.Conv2d(3, 4, 5, padding=2),
        "stride=(1, 1), got (2, 2)": nn.Conv2d(3, 4, 3, stride=2, padding=1),
        "padding=(1, 1), got (0, 0)": nn.Conv2d(3, 4, 3),
        "dilation=(1, 1), got (2, 2)": nn.Conv2d(3, 4, 3, padding=2, dilation=2),
        "groups=1, got 3": nn.Conv2d(3, 3, 3, padding=1, groups=3),
        "padding_mode='zeros', got 'circular'": nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"),
        "expected an nn.Conv2d, got ConvTranspose2d": nn.ConvTranspose2d(3, 4, 3, padding=1),
    }
    for msg, conv in bad.items():
        with pytest.raises(ValueError, match=r"Conv3x3.from_conv2d: cannot replace .*: expected " + _re(msg)):
            Conv3x3.from_conv2d(conv)
    with pytest.raises(ValueError, match='Conv3x3: unknown algo "winograd"; expected one of "auto", "direct"'):
        Conv3x3(3, 4, algo="winograd")
    # algo: a str, said by the entry that was called
    for call, op in [(lambda a: Conv3x3(3, 4, algo=a), "Conv3x3"),
                     (lambda a: Conv3x3.from_conv2d(nn.Conv2d(3, 4, 3, padding=1), algo=a), "Conv3x3.from_conv2d"),
                     (lambda a: vggkern.vgg11(algo=a), "vggkern.vgg11"),
                     (lambda a: vggkern.convert(nn.Conv2d(3, 4, 3, padding=1), algo=a), "vggkern.convert"),
                     (lambda a: vggkern.from_torchvision(torchvision.models.vgg11(), algo=a),
                      "vggkern.from_torchvision")]:
        with pytest.raises(TypeError, match=f"^{_re(op)}: expected algo to be a str, got None$"):
            call(None)
        with pytest.raises(ValueError, match=f'^{_re(op)}: unknown algo "fast"'):
            call("fast")
    # The kernels run float32/float16/bfloat16: a float64 (or complex) conv is not theirs to
    # replace; a float64 Conv3x3 runs torch's ops (test_float64_modules_run_torchs_ops).
    with pytest.raises(ValueError, match=f"Conv3x3: expected dtype float32, float16, bfloat16 .* or float64 .*got "
                                         f"{torch.complex64}"):
        Conv3x3(3, 4, dtype=torch.complex64)
    for dtype in (torch.float64, torch.complex64):
        conv = nn.Conv2d(3, 4, 3, padding=1, dtype=dtype)
        with pytest.raises(ValueError, match=f"cannot replace .*: its weight is {dtype}: the kernels run float32, "
                                             "float16 and bfloat16"):
            Conv3x3.from_conv2d(conv)
        model, report = vggkern.convert(nn.Sequential(conv, nn.ReLU()))
        assert type(model[0]) is nn.Conv2d and report.replaced == {} and "its weight is" in report.skipped["0"]
    # nn.Conv2d's third argument is kernel_size; ours is bias, and only a bool is taken.
    for args, kwargs, msg in [((5, 7, 3), {}, r"expected bias to be a bool, got 3 \(the kernel is always 3x3"),
                              ((5, 7), {"relu": "no"}, "expected relu to be a bool, got 'no'"),
                              ((5, 7), {"pool": None}, "expected pool to be a bool, got None"),
                              (("5", 7), {}, "expected in_channels to be an int, got '5'"),
                              ((5, 7.0), {}, "expected out_channels to be an int, got 7.0")]:
        with pytest.raises(TypeError, match="Conv3x3: " + msg):
            Conv3x3(*args, **kwargs)
    with pytest.raises(TypeError, match="Conv3x3.from_conv2d: expected relu to be a bool, got 1"):
        Conv3x3.from_conv2d(ref, relu=1)
    with pytest.raises(ValueError, match="vggkern.vgg11: expected num_classes >= 1, got -3"):
        vggkern.vgg11(num_classes=-3)
    with pytest.raises(TypeError, match="vggkern.vgg11: expected num_classes to be an int, got '10'"):
        vggkern.vgg11(num_classes="10")
    with pytest.raises(TypeError, match="vggkern.convert: expected model to be a torch.nn.Module, got str"):
        vggkern.convert("model")
    # Flags are bools, not truthy values: inplace="no" would otherwise convert in place.
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1))
    with pytest.raises(TypeError, match="vggkern.convert: expected inplace to be a bool, got 'no'"):
        vggkern.convert(model, inplace="no")
    assert type(model) is nn.Sequential and type(model[0]) is nn.Conv2d  # untouched
    with pytest.raises(TypeError, match="vggkern.vgg11: expected include_top to be a bool, got 'no'"):
        vggkern.vgg11(include_top="no")
    with pytest.raises(TypeError, match="vggkern.vgg16_bn: expected progress to be a bool, got 1"):
        vggkern.vgg16_bn(progress=1)


def test_module_errors_name_the_input_not_the_prepared_weight():
    """A Winograd module hands the op U, a (36, C, K) tensor the caller never saw: a wrong x
    is said of x and the module (its channels, its dtype), on the kernels' path."""
    m = Conv3x3(4, 6, algo="winograd_f4x4")
    with vggkern.cpu_backend("emulator"), torch.no_grad():
        with pytest.raises(ValueError, match=r"Conv3x3: expected x with in_channels=4 channels, got shape \[1, 3, 5, 5\]"):
            m(torch.randn(1, 3, 5, 5))
        with pytest.raises(ValueError, match=r"Conv3x3: expected x of the module's dtype \(torch.float32\), got torch.float16"):
            m(torch.randn(1, 4, 5, 5, dtype=torch.float16))


@pytest.mark.parametrize("backend", ["torch", "emulator"])
def test_modules_take_unbatched_input(backend):
    """(C, H, W) in, (K, H', W') out, as nn.Conv2d and nn.MaxPool2d take it, on both paths."""
    torch.manual_seed(5)
    conv, pool = Conv3x3(3, 5, relu=True, pool=True), MaxPool2x2()
    x = torch.randn(3, 6, 7)
    with vggkern.cpu_backend(backend), torch.no_grad():
        y, p = conv(x), pool(x)
        assert y.shape == (5, 3, 3) and p.shape == (3, 3, 3)
        assert torch.equal(y, conv(x[None])[0]) and torch.equal(p, pool(x[None])[0])
        calls = []
        conv.register_forward_hook(lambda m, args, out: calls.append(args[0].dim()))
        conv(x)
        assert calls == [3], "hooks run once, on the caller's input"
    torch.testing.assert_close(y, F.max_pool2d(F.relu(F.conv2d(x, conv.weight, conv.bias, padding=1)), 2, 2),
                               rtol=1e-5, atol=1e-5)
    assert torch.equal(p, F.max_pool2d(x, 2, 2))


def _re(s):
    import re
    return re.escape(s.replace("expected ", "", 1))


@pytest.mark.parametrize("relu,pool", [(False, False), (True, False), (False, True), (True, True)])
def test_conv3x3_module_forward(relu, pool, device):
    torch.manual_seed(22)
    conv = nn.Conv2d(6, 9, 3, padding=1).to(device)
    m = Conv3x3.from_conv2d(conv, relu=relu, pool=pool)
    assert m.weight is conv.weight and m.bias is conv.bias

    def want(x):
        y = conv(x)
        y = F.relu(y) if relu else y
        return F.max_pool2d(y, 2, 2) if pool else y

    x = _image(2, 11, seed=23).repeat(1, 2, 1, 1).to(device)
    with torch.no_grad():
        if device == "cpu":
            assert torch.equal(_run(m, x, "torch"), want(x))
        torch.testing.assert_close(_run(m, x, "emulator"), want(x), rtol=1e-5, atol=1e-5)
        xc = x.contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(_run(m, xc, "emulator"), want(x), rtol=1e-5, atol=1e-5)
    # Gradients, on both paths: the plain layers' (x's too).
    xg = x.clone().requires_grad_()
    conv.zero_grad()
    want(xg).square().sum().backward()
    ref = [t.grad.clone() for t in (xg, conv.weight, conv.bias)]
    for backend in ("torch", "emulator"):
        conv.zero_grad()
        xg.grad = None
        with vggkern.cpu_backend(backend):
            m(xg).square().sum().backward()
        for name, t, r in zip(("x", "weight", "bias"), (xg, conv.weight, conv.bias), ref):
            torch.testing.assert_close(t.grad, r, rtol=1e-4, atol=1e-4, msg=f"{backend}: d{name}")


def test_paths_and_reprs(monkeypatch):
    calls = []
    real_conv, real_pool = vggkern.nn._conv3x3_op, vggkern.ops.maxpool2x2
    monkeypatch.setattr(vggkern.nn, "_conv3x3_op", lambda *a: calls.append("conv") or real_conv(*a))
    monkeypatch.setattr(vggkern.ops, "maxpool2x2", lambda *a: calls.append("pool") or real_pool(*a))
    m = nn.Sequential(Conv3x3(3, 4, relu=True, algo="direct"), MaxPool2x2())
    x = _image(1, 6, seed=24)
    with vggkern.cpu_backend("torch"):
        m(x)
        assert calls == []
        assert "algo='direct' [CUDA: vggkern kernels, CPU: torch ops]" in repr(m[0])
        assert "CPU: torch ops" in repr(m[1])
    with vggkern.cpu_backend("emulator"):
        m(x)
        assert calls == ["conv", "pool"]
        assert "CPU: vggkern kernels via the SIMT emulator" in repr(m)
    assert "relu=True" in repr(m[0]) and "pool" not in repr(m[0])
    assert repr(Conv3x3(3, 4, bias=False, pool=True)).startswith("Conv3x3(3, 4, bias=False, pool=True, algo='auto'")
    x = _image(2, 9, seed=25)
    for backend in ("torch", "emulator"):
        assert torch.equal(_run(MaxPool2x2(), x, backend), F.max_pool2d(x, 2, 2))


# ---- CPU backend switch ----------------------------------------------------------------

def test_cpu_backend_switch():
    start = vggkern.get_cpu_backend()
    assert start in ("torch", "emulator")
    with vggkern.cpu_backend("emulator"):
        assert vggkern.get_cpu_backend() == "emulator"
        with vggkern.cpu_backend("torch"):
            assert vggkern.get_cpu_backend() == "torch"
        assert vggkern.get_cpu_backend() == "emulator"
    assert vggkern.get_cpu_backend() == start
    with pytest.raises(RuntimeError, match="boom"):
        with vggkern.cpu_backend("emulator"):
            raise RuntimeError("boom")
    assert vggkern.get_cpu_backend() == start
    with pytest.raises(RuntimeError, match="boom"):
        with vggkern.set_cpu_backend("emulator"):  # set_cpu_backend works as a context manager too
            assert vggkern.get_cpu_backend() == "emulator"
            raise RuntimeError("boom")
    assert vggkern.get_cpu_backend() == start

    @vggkern.cpu_backend("emulator")
    def f():
        return vggkern.get_cpu_backend()

    assert f() == "emulator" and vggkern.get_cpu_backend() == start
    try:
        vggkern.set_cpu_backend("emulator")
        assert vggkern.get_cpu_backend() == "emulator"
    finally:
        vggkern.set_cpu_backend(start)
    # Each restores the setting before it, not the default: nested the other way round too.
    for outer, inner in (("emulator", "torch"), ("torch", "emulator")):
        with vggkern.cpu_backend(outer):
            with vggkern.set_cpu_backend(inner):
                assert vggkern.get_cpu_backend() == inner
            assert vggkern.get_cpu_backend() == outer
            with vggkern.cpu_backend(inner):
                assert vggkern.get_cpu_backend() == inner
            assert vggkern.get_cpu_backend() == outer
        assert vggkern.get_cpu_backend() == start
    with pytest.raises(ValueError, match='unknown CPU backend "gpu"; expected one of "torch", "emulator"'):
        vggkern.set_cpu_backend("gpu")
    with pytest.raises(ValueError, match="unknown CPU backend"):
        vggkern.cpu_backend("cuda")
    assert vggkern.get_cpu_backend() == start
    # The environment's value is checked at import, naming the variable.
    proc = subprocess.run([sys.executable, "-c", "import vggkern"], capture_output=True, text=True, timeout=120,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          env=dict(os.environ, VGGKERN_CPU_BACKEND="gpu"))
    assert proc.returncode != 0
    assert ('ValueError: the environment variable VGGKERN_CPU_BACKEND: unknown CPU backend "gpu"; expected one of '
            '"torch", "emulator"') in proc.stderr, proc.stderr[-2000:]


def test_torch_compile_follows_the_backend():
    torch._dynamo.reset()
    graphs = []

    def record(gm, example_inputs):
        graphs.append({str(n.target) for n in gm.graph.nodes if n.op == "call_function"})
        return gm.forward

    torch.manual_seed(26)
    model = nn.Sequential(Conv3x3(3, 4, relu=True), Conv3x3(4, 5, relu=True, pool=True), MaxPool2x2()).eval()
    compiled = torch.compile(model, fullgraph=True, backend=record)
    x = _image(1, 12, seed=27)
    with torch.no_grad():
        with vggkern.cpu_backend("torch"):
            want = model(x)
            assert torch.equal(compiled(x), want)
        assert len(graphs) == 1 and not any("vggkern" in t for t in graphs[0])  # plain aten ops
        with vggkern.cpu_backend("emulator"):
            got = compiled(x)  # the guard on the setting recompiles
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        assert len(graphs) == 2 and any("vggkern.conv3x3" in t for t in graphs[1])
        with vggkern.cpu_backend("torch"):
            assert torch.equal(compiled(x), want)
        assert len(graphs) == 2  # back to the first graph
    torch._dynamo.reset()


def test_torch_compile_inductor_runs_our_ops():
    # torch.compile's default backend (Inductor) around our ops, with torch layers after
    # them that it generates code for; eager's result (ours bit for bit, Linear to rounding).
    torch._dynamo.reset()
    torch.manual_seed(35)
    model = nn.Sequential(Conv3x3(3, 8, relu=True), Conv3x3(8, 6, relu=True, pool=True), MaxPool2x2(),
                          nn.Flatten(), nn.Linear(6 * 3 * 3, 4)).eval()
    x = _image(2, 12, seed=36)
    with torch.no_grad(), vggkern.cpu_backend("emulator"):
        torch.testing.assert_close(torch.compile(model, fullgraph=True)(x), model(x), rtol=1e-6, atol=1e-6)
    torch._dynamo.reset()


@pytest.mark.parametrize("algo", ["direct", "winograd_f4x4"])
def test_torch_export_keeps_our_ops_and_round_trips(algo, device, tmp_path):
    # Deployment: torch.export with a dynamic batch, saved and loaded, runs our ops (not
    # a copy of a cached transform: the graph takes the weight as a parameter) and gives
    # the eager module's result at another batch size; exporting leaves the eager
    # module's weight caches working.
    torch.manual_seed(31)
    model = nn.Sequential(Conv3x3(3, 8, relu=True, algo=algo), Conv3x3(8, 6, relu=True, pool=True, algo=algo),
                          MaxPool2x2()).eval().to(device)
    x2, x3 = _image(2, 12, seed=32).to(device), _image(3, 12, seed=33).to(device)
    with torch.no_grad(), vggkern.cpu_backend("emulator"):
        want = model(x3)  # fills the modules' prepared-weight caches
        ep = torch.export.export(model, (x2,), dynamic_shapes=({0: torch.export.Dim("n", min=1, max=64)},))
        calls = [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]
        assert calls == ["vggkern.conv3x3.default"] * 2 + ["vggkern.maxpool2x2.default"]
        assert {s.target for s in ep.graph_signature.input_specs if s.kind.name == "PARAMETER"} == {
            "0.weight", "0.bias", "1.weight", "1.bias"}
        torch.export.save(ep, tmp_path / "model.pt2")
        loaded = torch.export.load(tmp_path / "model.pt2").module()
        assert torch.equal(loaded(x3), want)
        assert torch.equal(model(x3), want)
        with pytest.raises(AssertionError, match="64"):  # outside the declared batch range (guard)
            loaded(_image(65, 12, seed=34).to(device))


def test_aot_inductor_package_runs_our_ops(tmp_path):
    # Deployment without Python tracing: torch.export, then AOTInductor's package (a
    # compiled .so calling our ops through the dispatcher; vggkern must be imported
    # before loading it), gives the eager module's result bit for bit at another batch
    # size. CPU only: the package's C++ build takes ~40 s.
    torch.manual_seed(35)
    model = nn.Sequential(Conv3x3(3, 8, relu=True, algo="direct"), Conv3x3(8, 6, relu=True, pool=True)).eval()
    x2, x3 = _image(2, 10, seed=36), _image(3, 10, seed=37)
    with torch.no_grad(), vggkern.cpu_backend("emulator"):
        want = model(x3)
        ep = torch.export.export(model, (x2,), dynamic_shapes=({0: torch.export.Dim("n", min=1, max=64)},))
        path = torch._inductor.aoti_compile_and_package(ep, package_path=str(tmp_path / "model.pt2"))
        assert torch.equal(torch._inductor.aoti_load_package(path)(x3), want)


def test_models_under_autocast():
    """torch.autocast works on our modules as on torch's: VGG's features run in bfloat16,
    bit for bit the bfloat16 model's (weights cast once and cached for inference); a
    converted ResNet's convs take the bfloat16 activations torch's layers hand them,
    with float32 weights; a training step under autocast gives float32 gradients."""
    torch.manual_seed(57)
    tv = torchvision.models.vgg11().eval()
    ours = vggkern.from_torchvision(tv, algo="direct")
    x = _image(1, 32, seed=58)
    with torch.no_grad(), vggkern.cpu_backend("emulator"):
        want = copy.deepcopy(ours).bfloat16().features(x.bfloat16())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = ours.features(x)
            assert got.dtype == torch.bfloat16 and torch.equal(got, want)
            conv = ours.features[0]
            assert _cached_weight(conv).dtype == torch.bfloat16 and conv.weight.dtype == torch.float32
            cached = _cached_weight(conv)
            assert torch.equal(ours.features(x), want) and _cached_weight(conv) is cached
        resnet = _randomize_bn(torchvision.models.resnet18()).eval()
        converted, _ = vggkern.convert(resnet)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = converted(x)
            ref = resnet(x)
        assert y.dtype == ref.dtype == torch.bfloat16
        torch.testing.assert_close(y.float(), ref.float(), rtol=0.05, atol=0.05 * ref.float().abs().max().item())
    ours.train()
    with vggkern.cpu_backend("emulator"), torch.autocast("cpu", dtype=torch.bfloat16):
        ours.features[:5](x).float().square().sum().backward()
    grads = [p.grad for p in ours.features[:5].parameters()]
    assert len(grads) == 4 and all(g is not None and g.dtype == torch.float32 and g.abs().sum() > 0 for g in grads)


def test_fused_sequential_compiles_and_exports_fused(tmp_path):
    # torch.compile (fullgraph) and torch.export trace FusedSequential's forward: each
    # conv with its BatchNorm (folded in the graph, from the parameters and running
    # statistics), ReLU and pool is one vggkern.conv3x3 call, as in eager mode.
    torch._dynamo.reset()
    torch.manual_seed(53)
    model = FusedSequential(Conv3x3(3, 8), nn.BatchNorm2d(8), nn.ReLU(inplace=True), Conv3x3(8, 6), nn.ReLU(),
                            MaxPool2x2())
    model = _randomize_bn(model).eval()
    graphs = []

    def record(gm, example_inputs):
        graphs.append([str(n.target) for n in gm.graph.nodes if n.op == "call_function"])
        return gm.forward

    x = _image(2, 12, seed=54)
    with torch.no_grad(), vggkern.cpu_backend("emulator"):
        want = model(x)
        torch.testing.assert_close(want, nn.Sequential(*model)(x), rtol=1e-5, atol=1e-6)  # unfused, layer by layer
        assert torch.equal(torch.compile(model, fullgraph=True, backend=record)(x), want)
        ours = [t.removesuffix(".default") for t in graphs[0] if "vggkern" in t]
        assert ours == ["vggkern.conv3x3"] * 2 and not any("batch_norm" in t for t in graphs[0]), graphs
        ep = torch.export.export(model, (x,))
        calls = [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]
        assert [t for t in calls if "vggkern" in t] == ["vggkern.conv3x3.default"] * 2, calls
        torch.export.save(ep, tmp_path / "fused.pt2")
        torch.testing.assert_close(torch.export.load(tmp_path / "fused.pt2").module()(x), want, rtol=0, atol=0)
    torch._dynamo.reset()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
@pytest.mark.parametrize("algo,dtype", [("direct", F32), ("winograd_f4x4", F32), ("implicit_gemm", F16)])
def test_cuda_graph_replay_matches_eager(algo, dtype):
    # Our ops launch on the current (capturing) stream and allocate only through torch
    # (implicit_gemm's split-K workspace included: at batch 1 the late layers split), so
    # a captured VGG11 backbone replays to eager's result, bit for bit, for new input.
    torch.manual_seed(37)
    model = vggkern.vgg11(algo=algo, include_top=False).eval().to("cuda", dtype)
    static = _image(1, 64, seed=38).to("cuda", dtype)
    with torch.no_grad():
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside the capture (prepared weights cached)
            for _ in range(2):
                model(static)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = model(static)
        for seed in (39, 40):
            x = _image(1, 64, seed=seed).to("cuda", dtype)
            static.copy_(x)
            graph.replay()
            torch.cuda.synchronize()
            assert torch.equal(out, model(x))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_torch_compile_vgg_fullgraph_cuda():
    torch._dynamo.reset()
    tv, ours = _tv_and_ours("vgg11", seed=28)
    ours, tv = ours.cuda(), tv.cuda()
    x = _image(2, 64, seed=29).cuda()
    compiled = torch.compile(ours, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), ours(x), rtol=0, atol=0)
        torch.testing.assert_close(compiled(x), tv(x), rtol=1e-4, atol=1e-5)
    torch._dynamo.reset()


# ---- the command line ------------------------------------------------------------------

def test_classify_command(vgg16_state_file, tmp_path, capsys):
    from PIL import Image

    from vggkern.__main__ import main

    path, _ = vgg16_state_file
    g = torch.Generator().manual_seed(30)
    pixels = torch.randint(0, 256, (48, 64, 3), generator=g, dtype=torch.uint8).numpy()
    image = tmp_path / "random.png"
    Image.fromarray(pixels).save(image)
    assert main(["classify", str(image), "--weights", str(path), "--device", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    categories = torchvision.models.VGG16_Weights.IMAGENET1K_V1.meta["categories"]
    assert "on cpu (torch ops)" in out[0]
    assert len(out) == 6
    assert main(["classify", str(image), "--weights", str(path), "--device", "cpu:0"]) == 0
    assert "on cpu:0 (torch ops)" in capsys.readouterr().out  # the device's type, not its string
    for rank, line in enumerate(out[1:], 1):
        assert line.strip().startswith(f"{rank}.")
        name = line.split("%", 1)[1].rsplit("(", 1)[0].strip()
        assert name in categories, line
    assert main(["classify", str(image), "--weights", "IMAGENET1K_V9"]) == 2
    assert "weights must be None, a VGG16_Weights member or name" in capsys.readouterr().err
    # torchvision's feature-only weights have no classifier values: refused, not ranked
    # under borrowed class names (and refused before any download).
    assert main(["classify", str(image), "--weights", "IMAGENET1K_FEATURES"]) == 2
    assert ("--weights IMAGENET1K_FEATURES: these weights have no classifier (torchvision's "
            "VGG16_Weights.IMAGENET1K_FEATURES: features only)") in capsys.readouterr().err


def test_classify_without_a_network_says_what_failed(tmp_path, capsys, monkeypatch):
    import urllib.error

    from PIL import Image
    from torchvision.models._api import WeightsEnum

    from vggkern.__main__ import main

    image = tmp_path / "img.png"
    Image.new("RGB", (8, 8)).save(image)

    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    assert main(["classify", str(image), "--weights", "IMAGENET1K_V1", "--device", "cpu"]) == 2
    assert ("python -m vggkern classify: --weights IMAGENET1K_V1: the download failed ([Errno -2] Name or service "
            "not known); without a network pass a state_dict file") in capsys.readouterr().err


def test_command_line_refuses_bad_values(tmp_path, capsys, monkeypatch):
    from vggkern.__main__ import main

    for args, says in [(["--batch", "0"], "expected a batch >= 1, got 0"), (["--batch", "-1"], "got -1"),
                       (["--size", "31"], "expected a size (VGG16's five 2x2 pools) >= 32, got 31"),
                       (["--size", "x"], "expected an integer, got 'x'")]:
        with pytest.raises(SystemExit) as e:
            main(args)
        assert e.value.code == 2 and says in capsys.readouterr().err, args
    image = tmp_path / "img.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(image)
    not_a_checkpoint = tmp_path / "notes.txt"
    not_a_checkpoint.write_text("hello")
    vgg11_file = tmp_path / "vgg11.pt"
    torch.save(torchvision.models.vgg11().state_dict(), vgg11_file)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for extra, says in [(["--device", "cuda"], "no CUDA GPU is available"), (["--device", "meta"], "expected cpu or cuda"),
                        (["--device", "gpu7"], "python -m vggkern classify:")]:
        assert main(["classify", str(image), "--weights", str(vgg11_file)] + extra) == 2, extra
        assert says in capsys.readouterr().err, extra
    checkpoint = tmp_path / "ckpt.pt"  # a training checkpoint: the state_dict and more, in a dict
    torch.save({"state_dict": torchvision.models.vgg16().state_dict(), "epoch": 3}, checkpoint)
    for weights, says in [(vgg11_file, "state_dict"), (not_a_checkpoint, "is not a saved state_dict torch.load can read"),
                          (checkpoint, "its entry 'state_dict' is of type OrderedDict: a checkpoint? pass its "
                                       "state_dict (torch.save(ckpt['state_dict'], path))")]:
        assert main(["classify", str(image), "--weights", str(weights), "--device", "cpu"]) == 2, weights
        assert says in capsys.readouterr().err, weights


@pytest.mark.parametrize("entry,says", [
    ("epoch", "its entry 'epoch' is of type int"),
    ("features.0.bias", "its entry 'features.0.bias' is a tensor of dtype torch.complex64"),
    ("classifier.6.weight", "its entry 'classifier.6.weight' is a tensor of dtype torch.int64")])
def test_a_weights_file_of_other_than_float_tensors_is_refused_by_name(entry, says, tmp_path):
    state = torchvision.models.vgg11().state_dict()
    state[entry] = {"epoch": 3, "features.0.bias": torch.zeros(64, dtype=torch.complex64),
                    "classifier.6.weight": torch.zeros(1000, 4096, dtype=torch.int64)}[entry]
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(ValueError, match=r"vggkern.vgg11: expected weights '.*w.pt' to hold a state_dict of real "
                                         r"floating-point tensors; " + re.escape(says)):
        vggkern.vgg11(weights=str(tmp_path / "w.pt"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_main_command_on_the_gpu(capsys):
    """README's first command where a GPU is: VGG16 on our kernels against torchvision's
    (cuDNN), the same random weights, fp32 with TF32 off; agreement and images/s."""
    from vggkern.__main__ import main

    assert main(["--batch", "4", "--size", "64"]) == 0
    out = capsys.readouterr().out
    print(out)  # the log keeps the figures
    assert "VGG16 on" in out and "top-5 agreement 4/4 images" in out and "result          AGREE" in out
    assert re.search(r"images/s\s+vggkern [0-9.]+, torchvision \(cuDNN\) [0-9.]+", out)


def test_main_command_without_gpu(capsys, monkeypatch):
    from vggkern.__main__ import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["--size", "32"]) == 0
    out = capsys.readouterr().out
    assert "no GPU found" in out and "SIMT emulator" in out and "batch 1, 32x32" in out
    assert "top-5 agreement 1/1 images" in out and "result          AGREE" in out


@pytest.mark.parametrize("algo", ["winograd_f2x2", "winograd_f4x4"])
def test_conv3x3_module_caches_winograd_transform(algo):
    """Issue 4: the module transforms its filters once, and again only when the weight
    changes; training (a gradient to the weight) uses the raw weight."""
    torch.manual_seed(0)
    conv = vggkern.Conv3x3(6, 10, relu=True, algo=algo)
    x = torch.randn(2, 6, 9, 11)
    with vggkern.cpu_backend("emulator"):
        with torch.no_grad():
            y1 = conv(x)
            u1 = _cached_weight(conv)
            assert u1 is not None and u1.shape == ({"winograd_f2x2": 16, "winograd_f4x4": 36}[algo], 6, 10)
            assert torch.equal(conv(x), y1) and _cached_weight(conv) is u1, "second call must reuse U"
            conv.weight.mul_(0.5)  # in place: the version counter moves
            y2 = conv(x)
            assert _cached_weight(conv) is not u1
            torch.testing.assert_close(y2, vggkern.conv3x3(x, conv.weight, conv.bias, relu=True, algo=algo),
                                       rtol=0, atol=0)
        y3 = conv(x)  # grad enabled, weight requires grad: the raw weight, so backward works
        y3.sum().backward()
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    assert "_weight_cache" not in dict(conv.state_dict())


@pytest.mark.parametrize("algo,dtype", [("winograd_f2x2", torch.float32), ("implicit_gemm", torch.float16),
                                        ("direct", torch.float32)])
def test_frozen_module_gives_the_input_its_gradient(algo, dtype):
    """A frozen module (no parameter wants a gradient) with an x that does (saliency, style
    transfer): the module hands the op its prepared weight, cached, whose backward gives x
    its gradient; one cached under inference_mode (which autograd cannot save) is made
    again, once."""
    torch.manual_seed(3)
    conv = Conv3x3(8, 16, relu=True, pool=True, algo=algo).to(dtype).requires_grad_(False)
    other = torch.channels_last if algo == "direct" else torch.contiguous_format  # not the kernel's: prepared
    conv.weight.data = conv.weight.data.contiguous(memory_format=other)
    x = torch.randn(2, 8, 6, 6, dtype=dtype)
    ref = x.detach().clone().requires_grad_()
    F.max_pool2d(F.relu(F.conv2d(ref, conv.weight, conv.bias, padding=1)), 2, 2).float().square().sum().backward()
    with vggkern.cpu_backend("emulator"):
        with torch.inference_mode():
            conv(x)
        assert _cached_weight(conv).is_inference()  # prepared (and an inference tensor)
        xg = x.detach().clone().requires_grad_()
        conv(xg).float().square().sum().backward()
        prepared = _cached_weight(conv)
        assert not prepared.is_inference() and prepared is not conv.weight
        xg2 = x.detach().clone().requires_grad_()
        conv(xg2).float().square().sum().backward()
        assert _cached_weight(conv) is prepared  # kept across calls that want x's gradient
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(xg.grad, ref.grad, rtol=tol, atol=tol)
    torch.testing.assert_close(xg2.grad, xg.grad, rtol=0, atol=0)


@pytest.mark.parametrize("algo", ["winograd_f4x4", "implicit_gemm"])
def test_weight_changed_through_data_is_seen_after_clear_weight_caches(algo):
    """The prepared weight follows the weight's version counter; a change through .data
    bypasses it, and clear_weight_caches(model) makes the next call see it."""
    torch.manual_seed(4)
    model = nn.Sequential(Conv3x3(8, 8, relu=True, algo=algo), Conv3x3(8, 8, algo=algo)).half()
    x = torch.randn(1, 8, 6, 6, dtype=torch.float16)

    def want():
        return vggkern.conv3x3(vggkern.conv3x3(x, model[0].weight, model[0].bias, relu=True, algo=algo),
                               model[1].weight, model[1].bias, algo=algo)

    with vggkern.cpu_backend("emulator"), torch.no_grad():
        model(x)
        for conv in model:
            conv.weight.mul_(-1)  # seen: the version moves
        assert torch.equal(model(x), want())
        for conv in model:
            conv.weight.data.mul_(-1)  # not seen until the caches are dropped
        vggkern.nn.clear_weight_caches(model)
        assert all(_cached_weight(conv) is None for conv in model)
        assert torch.equal(model(x), want())


def test_modules_have_the_torch_modules_geometry_attributes():
    """Code written for nn.Conv2d / nn.MaxPool2d reads their geometry (FLOP counters,
    summaries): the drop-ins hold the same values as torchvision's VGG layers, read-only."""
    tv = torchvision.models.vgg11().features
    ours, _ = vggkern.convert(tv)
    pairs = [(a, b) for a, b in zip(tv, ours) if isinstance(a, (nn.Conv2d, nn.MaxPool2d))]
    assert len(pairs) == 13 and all(isinstance(b, (Conv3x3, vggkern.MaxPool2x2)) for _, b in pairs)
    names = {nn.Conv2d: ("kernel_size", "stride", "padding", "dilation", "groups", "padding_mode"),
             nn.MaxPool2d: ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")}
    for theirs, mine in pairs:
        for name in names[type(theirs)]:
            assert getattr(mine, name) == getattr(theirs, name), (type(mine).__name__, name)
            with pytest.raises(AttributeError):
                setattr(mine, name, getattr(theirs, name))


def test_float64_modules_run_torchs_ops():
    """A float64 model (.double(): a reference, torch.autograd.gradcheck) runs torch's ops on
    every device, as its layers would in torch; the kernels' path is not asked to."""
    torch.manual_seed(7)
    conv = Conv3x3(3, 4, relu=True, pool=True, algo="winograd_f2x2").double()
    assert Conv3x3(3, 4, dtype=torch.float64).weight.dtype == torch.float64
    seq = FusedSequential(Conv3x3(3, 4, algo="direct"), nn.BatchNorm2d(4), nn.ReLU(), vggkern.MaxPool2x2())
    _randomize_bn(seq)
    seq = seq.eval().double()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    want = F.max_pool2d(F.relu(F.conv2d(x, conv.weight, conv.bias, padding=1)), 2, 2)
    want_seq = F.max_pool2d(seq[2](seq[1](F.conv2d(x, seq[0].weight, seq[0].bias, padding=1))), 2, 2)
    with vggkern.cpu_backend("emulator"):
        assert torch.equal(conv(x), want) and torch.equal(seq(x), want_seq)
        assert torch.autograd.gradcheck(lambda t: conv(t), (x,))
        assert torch.autograd.gradcheck(lambda t: seq(t), (x,))


@pytest.mark.parametrize("algo,dtype,optimizer", [("winograd_f2x2", torch.float32, "Adam"),
                                                  ("implicit_gemm", torch.float16, "SGD"),
                                                  ("direct", torch.float32, "AdamW")])
def test_fused_optimizer_step_is_seen(algo, dtype, optimizer):
    """torch.optim's fused optimizers update the parameters in place without bumping their
    version counters: a forward under no_grad after such a step (validation between
    training steps) must not use what was prepared before it. direct: an eval-mode
    BatchNorm folded in (FusedSequential), whose affine parameters the optimizer steps."""
    torch.manual_seed(6)
    conv = Conv3x3(8, 8, relu=algo != "direct", algo=algo).to(dtype)
    bn = nn.BatchNorm2d(8).to(dtype).eval() if algo == "direct" else None
    model = vggkern.nn.FusedSequential(conv, bn, nn.ReLU()) if bn is not None else conv
    step = getattr(torch.optim, optimizer)(model.parameters(), lr=0.5, fused=True)
    x = torch.randn(1, 8, 6, 6, dtype=dtype)

    def want():
        if bn is None:
            return vggkern.conv3x3(x, conv.weight, conv.bias, relu=True, algo=algo)
        z = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=1)
        return torch.relu(F.batch_norm(z, bn.running_mean.double(), bn.running_var.double(), bn.weight.double(),
                                       bn.bias.double(), eps=bn.eps))

    with vggkern.cpu_backend("emulator"):
        with torch.no_grad():
            model(x)
            assert _cached_weight(conv) is not None
        model(x).float().square().sum().backward()
        versions = [p._version for p in model.parameters()]
        step.step()
        assert [p._version for p in model.parameters()] == versions  # the case: no version moved
        with torch.no_grad():
            got = model(x)
    if bn is None:
        assert torch.equal(got, want())
    else:
        torch.testing.assert_close(got.double(), want().detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("algo", ["winograd_f2x2", "winograd_f4x4", "implicit_gemm"])
def test_module_conversions_drop_the_prepared_weight(algo):
    """.half(), .float(), .to() go through Module._apply, which sets parameters' data
    through .data (no version bump) and may get a freed address back (a .half().float()
    round trip): the model's conversions drop every prepared weight. The fn here changes
    the values in place through .data, keeping address and version: what such a reuse
    looks like to the cache."""
    torch.manual_seed(5)
    model = nn.Sequential(Conv3x3(8, 8, relu=True, algo=algo), Conv3x3(8, 8, algo=algo)).half()
    x = torch.randn(1, 8, 6, 6, dtype=torch.float16)
    with vggkern.cpu_backend("emulator"), torch.no_grad():
        model(x)
        assert all(_cached_weight(conv) is not None for conv in model)
        model._apply(lambda t: t.data.mul_(-1) if t.is_floating_point() else t)
        assert all(_cached_weight(conv) is None for conv in model)
        want = vggkern.conv3x3(vggkern.conv3x3(x, model[0].weight, model[0].bias, relu=True, algo=algo),
                               model[1].weight, model[1].bias, algo=algo)
        assert torch.equal(model(x), want)
        y16 = model(x)
        model.float().half()  # values unchanged by the round trip: the same output
        assert torch.equal(model(x), y16)


@pytest.mark.parametrize("algo,weight_layout", [("implicit_gemm", torch.contiguous_format),
                                                ("direct", torch.channels_last)])
def test_conv3x3_module_caches_weight_layout(algo, weight_layout):
    """The module hands each kernel its weight layout without a copy per call: implicit_gemm
    takes tensor_core_weight's (K, 3, 3, C) (in 16 bits with C a multiple of 8, the bytes
    of a channels_last weight), direct (K, C, 3, 3); a weight in the other layout is
    copied once and again only after it changes. A weight already in the kernel's layout
    is passed as it is."""
    torch.manual_seed(1)
    conv = vggkern.Conv3x3(8, 16, relu=True, algo=algo).to(torch.float16)
    conv.weight.data = conv.weight.data.contiguous(memory_format=weight_layout)
    x = torch.randn(2, 8, 6, 7, dtype=torch.float16).contiguous(memory_format=torch.channels_last)
    kernel_layout = torch.channels_last if algo == "implicit_gemm" else torch.contiguous_format

    def laid_out(w):
        return vggkern.tensor_core_weight(w) if algo == "implicit_gemm" else w

    with vggkern.cpu_backend("emulator"), torch.no_grad():
        y1 = conv(x)
        w1 = _cached_weight(conv)
        assert w1 is not None and w1.is_contiguous() and torch.equal(w1, laid_out(conv.weight))
        assert torch.equal(conv(x), y1) and _cached_weight(conv) is w1, "second call must reuse the copy"
        conv.weight.mul_(0.5)
        y2 = conv(x)
        assert _cached_weight(conv) is not w1 and torch.equal(_cached_weight(conv), laid_out(conv.weight))
        torch.testing.assert_close(y2, vggkern.conv3x3(x, conv.weight, conv.bias, relu=True, algo=algo), rtol=0,
                                   atol=0)
        conv.weight.data = conv.weight.data.contiguous(memory_format=kernel_layout)
        assert conv._prepared()[0] is conv.weight, "a weight in the kernel's layout is used as it is"


def test_prepared_weight_cache_edge_cases():
    """The prepared-weight cache never serves a stale weight and never stands in the way:
    a new tensor object over the same memory at the same version (torch.func's
    functional_call passes such) is a new weight; inference tensors (no version counter)
    are prepared per call; a forward replaced on a layer's instance keeps it unfused; a
    float64 module is not autocast (its mismatch is an error, as in torch)."""
    torch.manual_seed(59)
    conv = Conv3x3(4, 6, algo="winograd_f4x4")
    x = torch.randn(1, 4, 6, 6)
    store = torch.empty_like(conv.weight)
    with torch.no_grad(), vggkern.cpu_backend("emulator"):
        for _ in range(2):
            w = store.data  # a new tensor object, version 0, the same data pointer
            w.copy_(torch.randn_like(w))
            y = torch.func.functional_call(conv, {"weight": w}, (x,))
            assert torch.equal(y, vggkern.conv3x3(x, w, conv.bias, algo="winograd_f4x4"))
        seq = FusedSequential(Conv3x3(3, 4, algo="direct"), nn.BatchNorm2d(4), nn.ReLU()).eval()
        _randomize_bn(seq)
        xi = torch.randn(1, 3, 8, 8)
        want = seq(xi)
        with torch.inference_mode():
            seq.to(torch.float64).to(torch.float32)  # parameters and buffers become inference tensors
            assert seq[0].weight.is_inference() and torch.equal(seq(xi), want)
        relu_forward = seq[2].forward
        seq[2].forward = lambda t: relu_forward(t) * 0 + 7
        assert torch.equal(seq(xi), torch.full_like(want, 7.0))  # called as itself, not fused past
        del seq[2].forward
        assert torch.equal(seq(xi), want)
        double = Conv3x3(3, 4, algo="direct").double()
        with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(ValueError, match="module's dtype"):
            double(xi)


def test_prepared_weight_cache_is_safe_across_threads(monkeypatch):
    """Another thread replacing the cache between this thread's check of the key and its
    read of the weight (two threads sharing a model, one under bf16 autocast, which is
    per thread) does not hand this thread the other's weight: the slot is one tuple, read
    once. The replacement is made to happen exactly there: from inside the check (its
    weak-reference calls)."""
    import weakref

    import vggkern.nn as vnn

    conv = Conv3x3(8, 8, algo="direct")
    conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last)  # so it is prepared
    x = torch.randn(0, 8, 5, 5)  # the checks and the cache, no kernel
    interleaved = []

    class Ref:
        def __init__(self, t):
            self.ref = weakref.ref(t)

        def __call__(self):
            if not interleaved and not torch.is_autocast_enabled("cpu"):
                interleaved.append(True)
                with torch.autocast("cpu", dtype=torch.bfloat16):  # "the other thread"
                    assert conv(x).dtype == torch.bfloat16
                assert conv._weight_cache[2].dtype == torch.bfloat16  # the slot was replaced
            return self.ref()

    monkeypatch.setattr(vnn, "weakref", type("weakref", (), {"ref": Ref}))
    with torch.no_grad(), vggkern.cpu_backend("emulator"):
        assert conv(x).dtype == torch.float32  # fills the slot
        assert conv(x).dtype == torch.float32  # checks it, and is interleaved
    assert interleaved


def test_module_with_a_prepared_weight_pickles():
    """torch.save of a whole module after a forward: the cache (weak references) is left
    out and remade, and the reloaded module computes the same."""
    import io

    torch.manual_seed(67)
    conv = Conv3x3(4, 5, algo="winograd_f2x2").eval()
    x = torch.randn(1, 4, 6, 6)
    with torch.no_grad(), vggkern.cpu_backend("emulator"):
        y = conv(x)
        assert conv._weight_cache is not None
        buf = io.BytesIO()
        torch.save(conv, buf)
        buf.seek(0)
        loaded = torch.load(buf, weights_only=False)
        assert loaded._weight_cache is None and conv._weight_cache is not None
        assert torch.equal(loaded(x), y)


def test_parametrized_and_pruned_weights_are_read_as_the_module_reads_them():
    """The module reads its weight from _parameters only where it is there: a
    parametrization (a property) and pruning (a plain attribute) are read through the
    attribute, so the kernel gets the weight they compute, once a forward (as nn.Conv2d
    computes a parametrized weight)."""
    from torch.nn.utils import parametrize, prune

    torch.manual_seed(61)
    x = torch.randn(1, 4, 6, 6)
    computed = []

    class Doubled(nn.Module):
        def forward(self, w):
            computed.append(w)
            return 2 * w

    for change in ("parametrize", "prune"):
        conv = Conv3x3(4, 5, algo="direct")
        if change == "parametrize":
            parametrize.register_parametrization(conv, "weight", Doubled())
        else:
            prune.l1_unstructured(conv, "weight", amount=0.5)
        raw = conv.parametrizations.weight.original if change == "parametrize" else conv.weight_orig
        assert "weight" not in conv._parameters and not torch.equal(conv.weight, raw)
        computed.clear()
        with torch.no_grad(), vggkern.cpu_backend("emulator"):
            y = conv(x)
        assert len(computed) == (change == "parametrize")
        assert torch.equal(y, vggkern.conv3x3(x, conv.weight, conv.bias, algo="direct")), change


@pytest.mark.parametrize("dtype,tf32,tables,converts", [
    (torch.float16, True, "float16", True), (torch.bfloat16, True, "float16", True),
    (torch.float32, True, "float16", True), (torch.float32, False, "float32", False),
    (torch.float16, True, None, False)])
def test_auto_model_converts_nchw_input_where_the_tables_run_tensor_cores(dtype, tf32, tables, converts,
                                                                           monkeypatch):
    """On "auto" the model computes in channels_last where the tables in use run
    implicit_gemm on some layer (in any dtype: the others take its verdict) and x can run it
    (16-bit, or fp32 with TF32 allowed), and in x's format elsewhere; either way it gives
    what a channels_last input gives."""
    torch.manual_seed(3)
    model = vggkern.vgg11(algo="auto").eval().to(dtype)
    seen, conv3x3 = [], vggkern.nn._conv3x3_op

    def spy(x, *args):
        seen.append(x.is_contiguous(memory_format=torch.channels_last))
        return conv3x3(x, *args)

    monkeypatch.setattr(vggkern.nn, "_conv3x3_op", spy)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", tf32)
    entry = {"channels_last": True, "C": 512, "K": 512, "H": 14, "W": 14, "pool": True, "N": 64,
             "algo": "implicit_gemm"}
    x = torch.randn(1, 3, 32, 32, dtype=dtype)
    try:
        vggkern.set_tuned_tables({"source": "test", "auto": [dict(entry, dtype=tables)] if tables else []})
        with vggkern.cpu_backend("emulator"), torch.no_grad():
            y = model(x)
            assert len(seen) == 8 and seen == [converts] * 8, seen
            y_cl = model(x.contiguous(memory_format=torch.channels_last))
    finally:
        vggkern.set_tuned_tables(None)
    assert torch.equal(y, y_cl)


@pytest.mark.parametrize("include_top", [True, False])
def test_tensor_core_model_converts_nchw_input_once(include_top, monkeypatch):
    """With a tensor-core algorithm the model converts an NCHW input to channels_last once,
    so every conv runs without a layout copy, and gives what a channels_last input gives;
    the feature extractor returns features in the input's format."""
    torch.manual_seed(2)
    model = vggkern.vgg11(algo="implicit_gemm", include_top=include_top).eval().to(torch.float16)
    seen, conv3x3 = [], vggkern.nn._conv3x3_op

    def spy(x, *args):  # not a hook: a hooked layer would run unfused
        seen.append(x.is_contiguous(memory_format=torch.channels_last))
        return conv3x3(x, *args)

    monkeypatch.setattr(vggkern.nn, "_conv3x3_op", spy)
    x = torch.randn(1, 3, 64, 64, dtype=torch.float16)
    # a strided channels_last view (a channel slice): channels_last to torch, features so too
    x_view = torch.cat([x, x], dim=1).contiguous(memory_format=torch.channels_last)[:, :3]
    assert not x_view.is_contiguous(memory_format=torch.channels_last) and not x_view.is_contiguous()
    with vggkern.cpu_backend("emulator"), torch.no_grad():
        y = model(x)
        assert len(seen) == 8 and all(seen), seen
        y_cl = model(x.contiguous(memory_format=torch.channels_last))
        y_view = model(x_view)
    assert torch.equal(y, y_cl) and torch.equal(y_view, y)
    if not include_top:
        assert y.shape == (1, 512, 2, 2) and y.is_contiguous()
        assert y_view.is_contiguous(memory_format=torch.channels_last)
