import os

# Fill every op output with NaN before the kernel runs (CPU always does; this turns
# it on for CUDA too), so an element a kernel forgets to write fails the comparison.
os.environ.setdefault("VGGKERN_POISON_OUTPUTS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

HAS_GPU = torch.cuda.is_available()


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not HAS_GPU, reason="no CUDA GPU visible")])])
def device(request):
    """Each test runs on CPU (our kernels through the SIMT emulator) and on the GPU."""
    return request.param
