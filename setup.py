"""Builds vggkern._C: the CUDA extension when nvcc is found, a CPU-only one otherwise.

    CUDA_HOME=/usr/local/cuda TORCH_CUDA_ARCH_LIST=9.0a MAX_JOBS=2 \
        pip install --no-build-isolation -e .

Environment:
  CUDA_HOME             CUDA toolkit root (else CUDA_PATH, /usr/local/cuda, nvcc on PATH).
  TORCH_CUDA_ARCH_LIST  GPU architectures to compile for; default: the visible GPUs' (9.0 as
                        9.0a), else "8.0;9.0a" (A100, H100/H200). 9.0a, not 9.0, builds
                        implicit_gemm's wgmma tiles (not where the list also names 9.0: an
                        H100 may then load the sm_90 kernels, in which wgmma traps).
  VGGKERN_CPU_ONLY=1    build without CUDA kernels even where nvcc exists.
  MAX_JOBS              parallel compile jobs (ninja).
Both builds contain the SIMT emulator, so CPU tensors run the kernels' own source.
"""
import glob
import os
import shutil
import subprocess

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CUDA_ARCHS = "8.0;9.0a"


def find_cuda_home():
    for candidate in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if candidate and os.path.exists(os.path.join(candidate, "bin", "nvcc")):
            return candidate
    nvcc = shutil.which("nvcc")
    if nvcc:
        home = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
        if os.path.exists(os.path.join(home, "include", "cuda_runtime.h")):
            return home
    return None


def banner(msg):
    line = "=" * 78
    print(f"\n{line}\nvggkern: {msg}\n{line}\n", flush=True)


cuda_home = None if os.environ.get("VGGKERN_CPU_ONLY") == "1" else find_cuda_home()
if cuda_home:
    # torch guesses CUDA_HOME when it is imported (and guesses wrong when nvcc sits in
    # /usr/local/bin): set it first.
    os.environ["CUDA_HOME"] = cuda_home
    if not os.environ.get("TORCH_CUDA_ARCH_LIST"):
        # torch would ask the visible GPUs too, but names an H100 "9.0" (no wgmma), and
        # with none visible its build fails: the same question, answered here.
        import torch
        caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
        os.environ["TORCH_CUDA_ARCH_LIST"] = ";".join(
            f"{major}.{minor}{'a' if (major, minor) == (9, 0) else ''}" for major, minor in caps) or DEFAULT_CUDA_ARCHS

from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402


def rel(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


cpp_sources = rel("csrc/*.cpp") + rel("csrc/ops/*.cpp") + rel("csrc/emu/*.cpp")
# -ffp-contract=off: the emulator computes a * b + c as written, on every host (GCC fuses
# it into an FMA where the target has one and the mode allows: aarch64, -march=native).
# The kernels write fmaf where they mean one, and nvcc contracts nothing else in them
# (each .cu's FFMA, FMUL and FADD counts are the same with --fmad=false: sm_90a, nvcc 13.0).
cxx_flags = ["-O3", "-Wall", "-Wno-unknown-pragmas", "-ffp-contract=off"]
include_dirs = [os.path.join(ROOT, "csrc")]

if cuda_home:
    archs = os.environ["TORCH_CUDA_ARCH_LIST"]
    # implicit_gemm's wgmma tiles need the sm_90a target (H100/H200's architecture-specific
    # instructions): built where torch will compile an sm_90a binary and no sm_90 one (its
    # reading of the list: a named architecture such as "Hopper" is 9.0+PTX).
    from torch.utils.cpp_extension import _get_cuda_arch_flags

    targets = {t for flag in _get_cuda_arch_flags() for t in flag.split("code=")[-1].strip("[]").split(",")}
    wgmma = "sm_90a" in targets and not targets & {"sm_90", "compute_90"}
    nvcc_version = subprocess.run([os.path.join(cuda_home, "bin", "nvcc"), "--version"],
                                  capture_output=True, text=True).stdout.strip().splitlines()[-1:]
    banner(f"building WITH CUDA kernels: nvcc at {cuda_home} ({' '.join(nvcc_version)}), "
           f"TORCH_CUDA_ARCH_LIST={archs!r}, wgmma tiles {'built' if wgmma else 'not built (needs 9.0a, without 9.0)'}")
    ext = CUDAExtension(
        "vggkern._C",
        sources=cpp_sources + rel("csrc/cuda/*.cu"),
        include_dirs=include_dirs,
        define_macros=[("VK_WITH_CUDA", "1"), ("VK_CUDA_ARCHS", f'"{archs}"'), ("VK_WGMMA", "1" if wgmma else "0")],
        extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-lineinfo", "-std=c++17"]},
    )
else:
    banner("building WITHOUT CUDA kernels (no nvcc found, or VGGKERN_CPU_ONLY=1): "
           "CPU tensors run through the SIMT emulator; CUDA tensors are refused")
    ext = CppExtension(
        "vggkern._C",
        sources=cpp_sources,
        include_dirs=include_dirs,
        define_macros=[("VK_WITH_CUDA", "0")],
        extra_compile_args={"cxx": cxx_flags},
    )

setup(
    name="vggkern",
    version="0.1.0",
    description="Hand-written CUDA convolution kernels for VGG-style networks, as a PyTorch extension",
    packages=find_packages(include=["vggkern", "vggkern.*"]),
    ext_modules=[ext],
    cmdclass={"build_ext": BuildExtension},
    python_requires=">=3.10",
    install_requires=["torch"],
    extras_require={"test": ["pytest", "pytest-benchmark", "torchvision"]},
    entry_points={"console_scripts": ["vggkern=vggkern.__main__:main"]},
)
