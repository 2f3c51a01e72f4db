"""Peak dense throughput and memory bandwidth per GPU, for the '% of peak' columns.

Source: NVIDIA H100 datasheet (H100 SXM / PCIe / NVL columns) and NVIDIA H200 datasheet
(H200 SXM: same compute as H100 SXM, more and faster memory). Tensor-core numbers are
the DENSE ones (the datasheets print 'with sparsity' figures, twice these). fp32 means
CUDA-core (non-tensor) fp32; tf32 is the tensor-core rate that fp32 convolutions get
when TF32 is allowed. These are boost-clock figures; a card under its power limit
runs below them, so 100% is not reachable in practice.
"""
from __future__ import annotations

SOURCE = "NVIDIA H100 datasheet (H200: NVIDIA H200 datasheet); dense tensor-core rates"

# name -> {math: TFLOP/s, "bw": TB/s}
PEAKS = {
    "H100 SXM": {"fp32": 67.0, "tf32": 494.7, "fp16": 989.4, "bf16": 989.4, "bw": 3.35},
    "H100 PCIe": {"fp32": 51.2, "tf32": 378.0, "fp16": 756.0, "bf16": 756.0, "bw": 2.0},
    "H100 NVL": {"fp32": 60.0, "tf32": 417.5, "fp16": 835.5, "bf16": 835.5, "bw": 3.9},
    "H200 SXM": {"fp32": 67.0, "tf32": 494.7, "fp16": 989.4, "bf16": 989.4, "bw": 4.8},
}


def gpu_key(gpu_name: str | None) -> str | None:
    """Map torch.cuda.get_device_name() to a PEAKS key ('NVIDIA H100 80GB HBM3' -> 'H100 SXM')."""
    if not gpu_name:
        return None
    n = gpu_name.upper()
    if "GH200" in n or ("H200" in n and "NVL" in n):
        return None  # parts this module's sources do not list: no '% of peak' rather than a wrong one
    if "H200" in n:
        return "H200 SXM"
    if "H100" in n:
        if "PCIE" in n:
            return "H100 PCIe"
        if "NVL" in n:
            return "H100 NVL"
        return "H100 SXM"   # 'NVIDIA H100 80GB HBM3' is the SXM part
    return None


def peak(gpu_name: str | None, math: str) -> float | None:
    """Peak for math in {'fp32','tf32','fp16','bf16'} (TFLOP/s) or 'bw' (TB/s); None if unknown."""
    key = gpu_key(gpu_name)
    return PEAKS[key].get(math) if key else None
