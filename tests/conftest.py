import glob
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


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def committed_runs():
    """The GPU runs' raw results, benchmarks/results/**/*.json. The source distribution
    leaves them out (MANIFEST.in): there a test that reads them skips; in a git checkout,
    none is a failure."""
    paths = sorted(glob.glob(os.path.join(ROOT, "benchmarks", "results", "**", "*.json"), recursive=True))
    if not paths and not os.path.exists(os.path.join(ROOT, ".git")):
        pytest.skip("a source distribution: benchmarks/results' JSON is left out (MANIFEST.in)")
    assert paths, "no benchmarks/results/**/*.json in this checkout"
    return paths
