"""maxpool2x2 against torch's max_pool2d(x, 2, 2): the result must be identical bit
for bit (a max picks an element, so there is no rounding to allow for)."""
import pytest
import torch
import torch.nn.functional as F

import vggkern

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
INT_VIEW = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}

# (N, C, H, W): odd sizes, one channel, the minimum 2x2, 57x31, large C, widths that
# take each vector path (W % 8, W % 4, odd) and channel counts likewise for NHWC.
SHAPES = [
    (1, 1, 2, 2),
    (2, 3, 7, 9),
    (3, 17, 57, 31),
    (1, 130, 13, 7),
    (2, 1, 5, 4),
    (2, 8, 16, 16),
    (1, 12, 6, 12),
    (1, 1024, 4, 4),
    (1, 64, 56, 56),
]


def reference(x):
    """torch's max-pool evaluated in float64, rounded back (exact for a max)."""
    return F.max_pool2d(x.double(), 2, 2).to(x.dtype)


def assert_identical(y, ref):
    assert y.shape == ref.shape
    assert torch.equal(torch.isnan(y), torch.isnan(ref))
    keep = ~torch.isnan(ref)
    # Compare bit patterns, so -0.0 vs +0.0 counts.
    assert torch.equal(y[keep].view(INT_VIEW[y.dtype]), ref[keep].view(INT_VIEW[y.dtype]))


def random_input(shape, dtype, device, channels_last=False, ties=False):
    if ties:  # few distinct values: many ties, signed zeros among them
        x = torch.randint(-2, 3, shape).to(dtype) * 0.5
        x[torch.rand(shape) < 0.2] = -0.0
    else:
        x = torch.randn(shape, dtype=torch.float32).to(dtype)
    x = x.to(device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_matches_torch(shape, dtype, channels_last, device):
    x = random_input(shape, dtype, device, channels_last)
    y = vggkern.maxpool2x2(x)
    assert_identical(y.cpu(), reference(x.cpu()))
    assert y.device == x.device and y.dtype == x.dtype
    torch_y = F.max_pool2d(x, 2, 2)
    assert y.stride() == torch_y.stride(), "output must keep the input's memory format, as torch's does"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_ties_and_signed_zeros(dtype, channels_last, device):
    x = random_input((2, 16, 10, 12), dtype, device, channels_last, ties=True)
    assert_identical(vggkern.maxpool2x2(x).cpu(), reference(x.cpu()))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_nan_and_inf_propagate(dtype, channels_last, device):
    x = random_input((2, 8, 12, 12), dtype, "cpu")
    flat = x.view(-1)
    idx = torch.randperm(flat.numel())[:60]
    flat[idx[:20]] = float("nan")
    flat[idx[20:40]] = float("inf")
    flat[idx[40:]] = float("-inf")
    x = x.to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = vggkern.maxpool2x2(x).cpu()
    assert torch.isnan(y).any() and torch.isinf(y).any()
    assert_identical(y, reference(x.cpu()))


def test_nan_anywhere_in_window(device):
    """Each of the four window positions, alone NaN, makes the output NaN."""
    for pos in range(4):
        x = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
        x[0, 0, pos // 2, pos % 2] = float("nan")
        y = vggkern.maxpool2x2(x.to(device)).cpu()
        assert torch.isnan(y[0, 0, 0, 0]) and not torch.isnan(y[0, 0, 1:, :]).any()


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_empty_batch(channels_last, device):
    x = torch.randn(0, 5, 6, 6, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = vggkern.maxpool2x2(x)
    assert y.shape == (0, 5, 3, 3)


@pytest.mark.parametrize("make_view", [
    lambda x: x[:, ::2],              # channel stride 2
    lambda x: x.transpose(2, 3),      # H and W swapped
    lambda x: x[..., 1:],             # storage offset of one element: misaligned rows
    lambda x: x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)[:, :, 1:, :],  # sliced channels_last
], ids=["channel_step", "transposed", "offset", "sliced_nhwc"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_non_contiguous_input(make_view, dtype, device):
    x = make_view(random_input((2, 16, 11, 14), dtype, device))
    assert not x.is_contiguous()
    assert_identical(vggkern.maxpool2x2(x).cpu(), reference(x.cpu()))


@pytest.mark.parametrize("offset", [1, 2], ids=["offset1", "offset2"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_contiguous_views_at_unaligned_storage_offsets(offset, dtype, channels_last, device):
    """A view that is contiguous (in its memory format) but starts 1 or 2 elements into its
    storage is read in place, not copied, so x is not 16-byte (or not 8-byte) aligned: the
    dispatch must then leave the 16- and 8-byte vector loads for narrower ones (a vector
    load from a misaligned address faults on a GPU; the emulator fails it the same way).
    The shape would otherwise take the widest path (W % 8 == 0, C % 8 == 0)."""
    n, c, h, w = 2, 16, 6, 16
    base = torch.randn(n * c * h * w + offset).to(dtype).to(device)
    if channels_last:
        x = base[offset:].view(n, h, w, c).permute(0, 3, 1, 2)
        assert x.is_contiguous(memory_format=torch.channels_last)
    else:
        x = base[offset:].view(n, c, h, w)
    assert x.data_ptr() % 16 != 0
    y = vggkern.maxpool2x2(x)
    assert y.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    assert_identical(y.cpu(), reference(x.cpu()))


def test_indices_beyond_32_bits():
    """A 4.3 GiB fp16 input: offsets pass 2**31, so the kernel's 64-bit path runs."""
    H, W = 65536, 32776
    assert H * W > 2**31
    x = torch.zeros(1, 1, H, W, dtype=torch.float16)
    head, tail = x[0, 0, :6], x[0, 0, -6:]
    head.copy_(torch.randn(head.shape).half())
    tail.copy_(torch.randn(tail.shape).half())
    y = vggkern.maxpool2x2(x)
    assert not torch.isnan(y).any(), "every output element must be written"
    assert_identical(y[:, :, :3], reference(x[:, :, :6]))
    assert_identical(y[:, :, -3:], reference(x[:, :, -6:]))


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_int64_index_variant(channels_last, device, monkeypatch):
    # Every vector width of the int64-offset kernels, forced at small sizes.
    monkeypatch.setenv("VGGKERN_FORCE_INT64_INDEX", "1")
    for shape in [(2, 8, 16, 16), (1, 12, 6, 12), (2, 3, 7, 9)]:
        x = random_input(shape, torch.float16, device, channels_last)
        assert_identical(vggkern.maxpool2x2(x).cpu(), reference(x.cpu()))


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_grid_stride_loop(channels_last, device, monkeypatch):
    # Past 2^20 blocks (2^28 work items) a thread takes several items, a grid apart: the
    # grid capped at 1 or 3 blocks (VGGKERN_MAX_GRID_BLOCKS) runs that loop here, for every
    # vector width, a cap that divides the items and one that does not.
    for blocks in ("1", "3"):
        monkeypatch.setenv("VGGKERN_MAX_GRID_BLOCKS", blocks)
        for shape in [(2, 8, 16, 16), (1, 12, 6, 12), (2, 3, 7, 9), (3, 17, 57, 31)]:
            x = random_input(shape, torch.float16, device, channels_last)
            assert_identical(vggkern.maxpool2x2(x).cpu(), reference(x.cpu()))
    monkeypatch.setenv("VGGKERN_MAX_GRID_BLOCKS", "0")
    with pytest.raises(ValueError, match="VGGKERN_MAX_GRID_BLOCKS must be an integer from 1 to 1048576, got '0'"):
        vggkern.maxpool2x2(random_input((1, 1, 2, 2), torch.float16, device))


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_opcheck(channels_last, device):
    x = torch.randn(2, 6, 9, 10, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    torch.library.opcheck(torch.ops.vggkern.maxpool2x2.default, (x,))
    torch.library.opcheck(torch.ops.vggkern.maxpool2x2.default, (x.clone().requires_grad_(),))


def test_torch_compile_fullgraph(device):
    def f(x):
        return vggkern.maxpool2x2(torch.relu(x)) * 2

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 4, 10, 10, device=device)
    torch.testing.assert_close(compiled(x), F.max_pool2d(torch.relu(x), 2, 2) * 2, rtol=0, atol=0)


def test_gradient_matches_torch(device):
    x = torch.randn(2, 3, 8, 7, device=device, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    g = torch.randn(2, 3, 4, 3, device=device)
    vggkern.maxpool2x2(x).backward(g)
    F.max_pool2d(x_ref, 2, 2).backward(g)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=0, atol=0)


@pytest.mark.parametrize("bad, match", [
    (lambda: torch.randn(3, 8, 8), r"expected x to be a 4-D tensor \(N, C, H, W\), got a 3-D"),
    (lambda: torch.randn(1, 2, 3, 8, 8), r"expected x to be a 4-D tensor .* got a 5-D"),
    (lambda: torch.ones(1, 2, 8, 8, dtype=torch.int64), r"expected x of dtype float32, float16 or bfloat16, got"),
    (lambda: torch.ones(1, 2, 8, 8, dtype=torch.float64), r"expected x of dtype float32, float16 or bfloat16"),
    (lambda: torch.randn(1, 2, 1, 8), r"H >= 2 and W >= 2 .* got H=1, W=8"),
    (lambda: torch.randn(1, 2, 8, 1), r"got H=8, W=1"),
    (lambda: torch.randn(1, 0, 8, 8), r"at least one channel"),
])
@pytest.mark.parametrize("entry", ["wrapper", "torch.ops"])
def test_bad_input_is_named(bad, match, entry):
    op = vggkern.maxpool2x2 if entry == "wrapper" else torch.ops.vggkern.maxpool2x2
    with pytest.raises(ValueError, match=r"vggkern\.maxpool2x2: .*" + match):
        op(bad())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible")
def test_gpu_matches_emulator_bit_for_bit():
    for shape, dtype in [((2, 64, 56, 56), torch.float16), ((3, 17, 57, 31), torch.float32)]:
        x = torch.randn(shape).to(dtype)
        for cl in (False, True):
            xi = x.contiguous(memory_format=torch.channels_last) if cl else x
            assert torch.equal(vggkern.maxpool2x2(xi.cuda()).cpu(), vggkern.maxpool2x2(xi))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible")
def test_gpu_runs_on_current_stream():
    """The ops launch on the caller's current stream. On a side stream held back by a
    sleep, they must see what that stream writes after the sleep; launched on another
    stream they would run first and read the NaN the input held before."""
    x = torch.randn(4, 32, 64, 64, device="cuda")
    w = torch.randn(16, 32, 3, 3, device="cuda")
    xs = torch.full_like(x, float("nan"))
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        torch.cuda._sleep(10**8)  # ~50 ms of GPU time on s: a launch elsewhere would run first
        xs.copy_(x)
        y = vggkern.maxpool2x2(xs)
        z = vggkern.conv3x3(xs, w, None, algo="direct")
    s.synchronize()
    assert torch.equal(y, F.max_pool2d(x, 2, 2))
    assert torch.equal(z, vggkern.conv3x3(x, w, None, algo="direct"))  # same kernel, its input ready


# The emulator's settings (docs/emulator.md): a value it cannot use is an error naming the
# variable, not a silent default. Read once per process, so each runs in its own.
@pytest.mark.parametrize("var,value,says", [
    ("VGGKERN_EMU_THREADS", "abc", "VGGKERN_EMU_THREADS must be an integer from 1 to"),
    ("VGGKERN_EMU_THREADS", "0", "got '0'"), ("VGGKERN_EMU_THREADS", "2x", "got '2x'"),
    ("VGGKERN_EMU_STACK_KB", "16", "VGGKERN_EMU_STACK_KB must be an integer from 32 to"),
    ("VGGKERN_EMU_CP_ASYNC", "bogus", "VGGKERN_EMU_CP_ASYNC must be \"wait\" (the default) or \"eager\""),
    ("VGGKERN_EMU_THREADS", "200", None), ("VGGKERN_EMU_CP_ASYNC", "wait", None)])
def test_emulator_settings_are_checked(var, value, says):
    import os
    import subprocess
    import sys

    code = ("import torch, vggkern\n"
            "x = torch.arange(16.).view(1, 1, 4, 4)\n"
            "assert torch.equal(vggkern.maxpool2x2(x), torch.nn.functional.max_pool2d(x, 2))\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, **{var: value}, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=root)
    if says is None:
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode != 0 and says in done.stderr, done.stderr
