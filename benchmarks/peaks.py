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


def math_of(row: dict) -> str:
    """Which peak a benchmark row's FLOPs count against: its dtype for fp16/bf16; for fp32,
    'tf32' where the math that ran was TF32 (torch with TF32 allowed; ours, the algorithm
    that ran, "auto"'s pick included (algo_ran), where it is implicit_gemm; a network of
    ours on "auto", its TF32 setting), else 'fp32'. Takes a results row (extra_info), or a
    case's parameters with its impl."""
    dtype = row["dtype"]
    if dtype != "fp32":
        return dtype
    math = row.get("math")
    if row.get("impl") == "torch":
        return "tf32" if math == "tf32" else "fp32"
    algo = str(row.get("algo_ran") or row.get("algo") or "auto").lower()
    if algo == "auto":  # a network's layers, each on "auto"'s pick
        return "tf32" if math == "tf32" else "fp32"
    return "tf32" if "tf32" in algo or algo == "implicit_gemm" else "fp32"
