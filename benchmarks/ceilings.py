"""The GPU's two ceilings, measured on the device rather than read off a datasheet (the device
tool's METHOD.md: "measure the two ceilings once on the device machine"), and its clocks
while the benchmarks ran.

    python -m benchmarks.ceilings [--json PATH]          # on the GPU: prints one line
    python -m benchmarks.ceilings --clocks CSV [--json PATH]   # the clock samples' summary

The matrix ceiling: torch.matmul (cuBLAS) of two 8192 x 8192 matrices in fp16 and in bf16
(2 * 8192^3 FLOPs each), the memory one: a 1 GiB device-to-device copy (bytes read plus bytes
written). Random data (never zeros: a matrix product ran 13% faster on zeros on an H200 of
this workplace), timed as the benchmark rows are (timing.time_gpu), the median of 20. device_run.sh
records them in the run's JSON (vggkern_ceilings) and the report prints each beside the
datasheet's figure, so '% of peak' can be read against what the chip gives a library too.

The clocks: device_run.sh samples nvidia-smi once a second while the benchmarks run
(SM clock, its maximum, temperature, power, and the clock-event reasons: why the clock is
held down); --clocks summarises the samples for the run's JSON, so a throttled run shows.
The samples are read, the card's settings never changed (METHOD.md).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys

GEMM_N = 8192
COPY_BYTES = 1 << 30
REPEATS = 20

# nvidia-smi's clock-event reasons (the bits of clocks_event_reasons.active), but for idle
# (0x1) and the application clock setting (0x2), which hold no clock down under load.
REASONS = {0x4: "SW power cap", 0x8: "HW slowdown", 0x20: "SW thermal slowdown", 0x40: "HW thermal slowdown",
           0x80: "HW power brake", 0x100: "display clock setting"}


def _median_ms(fn, repeats=REPEATS) -> float:
    """fn()'s median time in ms, timed as every benchmark row is (timing.time_gpu: warm-up,
    CUDA events; nothing to rotate)."""
    from .timing import time_gpu

    return 1e3 * time_gpu(lambda _: fn(), lambda: None, repeats=repeats, rotate_bytes=0).median_s


def measure(n=GEMM_N, copy_bytes=COPY_BYTES, repeats=REPEATS) -> dict:
    """The matrix and memory ceilings of GPU 0, with the datasheet's beside them."""
    import torch

    from .peaks import gpu_key, peak

    name = torch.cuda.get_device_name(0)
    out = {"gpu_name": name, "peaks_key": gpu_key(name), "gemm_n": n, "copy_bytes": copy_bytes, "repeats": repeats}
    g = torch.Generator(device="cuda").manual_seed(0)
    for label, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        a = torch.randn(n, n, device="cuda", dtype=dtype, generator=g)
        b = torch.randn(n, n, device="cuda", dtype=dtype, generator=g)
        c = torch.empty(n, n, device="cuda", dtype=dtype)
        ms = _median_ms(lambda: torch.matmul(a, b, out=c), repeats)
        out[f"gemm_{label}_tflops"] = 2 * n**3 / (ms * 1e-3) / 1e12
        out[f"peak_{label}_tflops"] = peak(name, label)
        del a, b, c
    src = torch.randn(copy_bytes // 2, device="cuda", dtype=torch.float16, generator=g)
    dst = torch.empty_like(src)
    ms = _median_ms(lambda: dst.copy_(src), repeats)
    out["copy_tb_s"] = 2 * copy_bytes / (ms * 1e-3) / 1e12
    out["peak_bw_tb_s"] = peak(name, "bw")
    return out


def summary_line(c: dict) -> str:
    """One line: each measured ceiling and its share of the datasheet's."""
    def share(v, p):
        return f" ({100 * v / p:.0f}% of the datasheet's {p:g})" if p else ""
    parts = [f"matmul {c[f'gemm_{d}_tflops']:.0f} TFLOP/s {d}{share(c[f'gemm_{d}_tflops'], c.get(f'peak_{d}_tflops'))}"
             for d in ("fp16", "bf16") if c.get(f"gemm_{d}_tflops")]
    if c.get("copy_tb_s"):
        parts.append(f"device-to-device copy {c['copy_tb_s']:.2f} TB/s{share(c['copy_tb_s'], c.get('peak_bw_tb_s'))}")
    return f"Measured ceilings (cuBLAS {c.get('gemm_n')}^3; copy, read + write): " + "; ".join(parts)


def clocks(csv_text: str) -> dict | None:
    """The samples of `nvidia-smi --query-gpu=clocks.sm,clocks.max.sm,temperature.gpu,
    power.draw,clocks_event_reasons.active --format=csv,noheader,nounits`: SM clock (median,
    least), its maximum, temperature and power (most), and the reasons seen that hold a clock
    down. None where no line parses."""
    rows = []
    for line in csv_text.splitlines():
        f = [s.strip() for s in line.split(",")]
        try:
            rows.append((float(f[0]), float(f[1]), float(f[2]), float(f[3]), int(f[4], 16) if len(f) > 4 else 0))
        except (ValueError, IndexError):
            continue
    if not rows:
        return None
    sm = [r[0] for r in rows]
    seen = 0
    for r in rows:
        seen |= r[4]
    return {"samples": len(rows), "sm_mhz_median": statistics.median(sm), "sm_mhz_min": min(sm),
            "sm_mhz_max_clock": max(r[1] for r in rows), "temperature_c_max": max(r[2] for r in rows),
            "power_w_max": max(r[3] for r in rows),
            "held_down_by": [name for bit, name in sorted(REASONS.items()) if seen & bit]}


def clocks_line(c: dict) -> str:
    held = ", ".join(c["held_down_by"]) or "nothing"
    return (f"Clocks during the benchmarks ({c['samples']} samples): SM {c['sm_mhz_median']:.0f} MHz median, "
            f"{c['sm_mhz_min']:.0f} least, of {c['sm_mhz_max_clock']:.0f}; up to {c['temperature_c_max']:.0f} C and "
            f"{c['power_w_max']:.0f} W; held down by {held}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the measurement (or the clocks' summary) here")
    ap.add_argument("--clocks", help="summarise these nvidia-smi samples instead of measuring")
    args = ap.parse_args(argv)
    if args.clocks:
        with open(args.clocks) as f:
            result = clocks(f.read())
        if result is None:
            print("clocks: no samples")
            return 1
        print(clocks_line(result))
    else:
        import torch

        if not torch.cuda.is_available():
            print("ceilings: no GPU here")
            return 2
        result = measure()
        print(summary_line(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
