"""conv3x3 algo="implicit_gemm": the tensor-core kernel (mma.sync, ldmatrix, cp.async),
run through the emulator on CPU and on the GPU when there is one. The shared accuracy
cases run in test_conv3x3.py (every algorithm of K_FACTOR, fp16 and bf16 for this one);
here: its own tiles, stores, padding, refusals and the GPU/emulator agreement."""
import pytest
import torch

import vggkern
from test_conv3x3 import DEVICES, _check, _inputs

ALGO = "implicit_gemm"
HALF_DTYPES = [torch.float16, torch.bfloat16]


# Both tile widths (BN = 64 for K <= 64, 128 above), K that is and is not a multiple of
# 8 (16-byte or scalar stores), C a multiple of 8 or padded, tiles cut by the image edge.
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n,c,k,h,w", [(1, 16, 64, 8, 16), (2, 8, 136, 9, 17), (1, 24, 61, 16, 33),
                                       (1, 5, 200, 10, 6)])
@pytest.mark.parametrize("relu,pool", [(False, False), (True, True), (False, True)])
def test_tiles_and_stores(n, c, k, h, w, relu, pool, device):
    x, wt, b = _inputs(n, c, k, h, w, torch.float16, device, channels_last=True, seed=n + c + k)
    _check(vggkern.conv3x3(x, wt, b, relu=relu, pool=pool, algo=ALGO), x, wt, b, relu, pool, algo=ALGO)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("relu,pool", [(False, False), (True, True)])
def test_nan_inf_propagate_like_torch(relu, pool, device):
    x, w, b = _inputs(2, 8, 16, 11, 13, torch.float16, device, channels_last=True, seed=3)
    x[0, 1, 0, 0] = float("nan")
    x[1, 0, 4, 12] = float("inf")
    x[1, 2, 9, 2] = float("-inf")
    b[4] = float("nan")
    y = vggkern.conv3x3(x, w, b, relu=relu, pool=pool, algo=ALGO)
    assert y.isnan().any()
    _check(y, x, w, b, relu, pool, algo=ALGO)


@pytest.mark.parametrize("device", DEVICES)
def test_int64_index_variant(device, monkeypatch):
    # The kernel's int64-offset variant (used from 2^31 elements on), forced at small sizes.
    x, w, b = _inputs(2, 8, 72, 9, 17, torch.bfloat16, device, channels_last=True, seed=17)
    y32 = vggkern.conv3x3(x, w, b, relu=True, pool=True, algo=ALGO)
    monkeypatch.setenv("VGGKERN_FORCE_INT64_INDEX", "1")
    y64 = vggkern.conv3x3(x, w, b, relu=True, pool=True, algo=ALGO)
    _check(y64, x, w, b, True, True, algo=ALGO)
    assert torch.equal(y32, y64)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    x, w, b = _inputs(2, 8, 16, 6, 5, torch.float16, device, channels_last=True, seed=13)
    for args in [(x, w, b, True, True, ALGO), (x.contiguous(), w, None, False, False, ALGO)]:
        torch.library.opcheck(torch.ops.vggkern.conv3x3.default, args)


@pytest.mark.parametrize("entry", ["wrapper", "torch.ops"])
def test_float32_is_refused_with_a_reason(entry):
    x, w, b = _inputs(1, 8, 8, 4, 4, torch.float32, "cpu", seed=1)
    with pytest.raises(ValueError, match=r'vggkern\.conv3x3: algo "implicit_gemm" runs float16 and bfloat16 on '
                                         r"tensor cores, got float32"):
        if entry == "wrapper":
            vggkern.conv3x3(x, w, b, algo=ALGO)
        else:
            torch.ops.vggkern.conv3x3(x, w, b, False, False, ALGO)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible")
@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
def test_gpu_matches_emulator_bit_for_bit(dtype):
    """The proof that the emulated fragment layouts are the hardware's: with small
    integer data every sum is exact, so the GPU and the emulator must agree exactly."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-3, 4, (2, 24, 12, 20), generator=g).to(dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randint(-2, 3, (72, 24, 3, 3), generator=g).to(dtype)
    b = torch.randint(-5, 6, (72,), generator=g).to(dtype)
    for relu, pool in [(False, False), (True, True)]:
        cpu = vggkern.conv3x3(x, w, b, relu=relu, pool=pool, algo=ALGO)
        gpu = vggkern.conv3x3(x.cuda(), w.cuda(), b.cuda(), relu=relu, pool=pool, algo=ALGO).cpu()
        assert torch.equal(cpu, gpu)
