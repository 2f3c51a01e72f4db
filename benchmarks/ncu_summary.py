"""The counters that say what limits a kernel, from Nsight Compute's CSV (details page):
one markdown row per profiled kernel, in launch order.

    ncu --import OUT/ncu.ncu-rep --csv --page details > OUT/ncu.csv
    python -m benchmarks.ncu_summary OUT/ncu.csv [--md OUT/ncu.md]

Reads ncu's long format (a row per kernel, section and metric: ID, Kernel Name, Block
Size, Grid Size, Section Name, Metric Name, Metric Unit, Metric Value), whatever lines
come before its header. A metric is taken by the first of its names found (section
metrics are named differently across ncu versions); the raw metrics device_run.sh asks
for by their own names: the tensor pipe's busy share, shared-memory wavefronts and bank
conflicts (to set beside the emulator's counted wavefronts, tests/test_conv3x3_implicit_gemm.py)
and DRAM bytes (beside roofline.py's counted bytes). Values as ncu printed them, with
their units.
"""
from __future__ import annotations

import argparse
import csv
import io
import sys

# column title -> the metric names that hold it, first found wins
COLUMNS = (
    ("duration", ("Duration",)),
    ("SM %", ("Compute (SM) Throughput", "Compute (SM) [%]", "SM [%]")),
    ("memory %", ("Memory Throughput", "Memory [%]")),
    ("DRAM %", ("DRAM Throughput",)),
    ("L2 %", ("L2 Cache Throughput",)),
    ("L1 hit %", ("L1/TEX Hit Rate",)),
    ("L2 hit %", ("L2 Hit Rate",)),
    ("L1/shared %", ("L1/TEX Cache Throughput",)),
    ("issue busy %", ("Issue Slots Busy",)),
    ("tensor pipe % (mma.sync)", ("sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active",)),
    ("tensor pipe % (wgmma)", ("sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active",)),
    ("smem ld wavefronts", ("l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum",)),
    ("smem ld conflicts", ("l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum",)),
    ("smem st wavefronts", ("l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum",)),
    ("smem st conflicts", ("l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum",)),
    ("DRAM read", ("dram__bytes_read.sum",)),
    ("DRAM written", ("dram__bytes_write.sum",)),
    ("regs", ("Registers Per Thread",)),
    ("occupancy (achieved)", ("Achieved Occupancy",)),
    ("waves/SM", ("Waves Per SM",)),
)
# The raw metrics above, for ncu's --metrics.
RAW_METRICS = tuple(n for _, names in COLUMNS for n in names if "__" in n)


def kernels(text: str) -> list[dict]:
    """[{id, name, grid, block, metrics: {name: 'value unit'}}] in ncu's order."""
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if "Metric Name" in ln and "Kernel Name" in ln), None)
    if start is None:
        return []
    out: dict[str, dict] = {}
    for row in csv.DictReader(io.StringIO("\n".join(lines[start:]))):
        kid = row.get("ID")
        if not kid or not (row.get("Metric Name") or "").strip():  # a rule's row (newer ncu) has no metric
            continue
        k = out.setdefault(kid, {"id": kid, "name": row.get("Kernel Name", ""), "grid": row.get("Grid Size", ""),
                                 "block": row.get("Block Size", ""), "metrics": {}})
        unit = (row.get("Metric Unit") or "").strip()
        value = (row.get("Metric Value") or "").strip()
        k["metrics"].setdefault(row["Metric Name"].strip(), f"{value} {unit}".strip() if unit else value)
    return list(out.values())


def short(name: str, width: int = 60) -> str:
    """A kernel's name cut to what a table can hold."""
    name = name.replace("|", "/")
    return name if len(name) <= width else name[:width - 1] + "…"


def render(ks: list[dict]) -> str:
    if not ks:
        return "ncu: no kernels in the CSV (did ncu profile anything? see ncu.log)\n"
    cols = [(title, names) for title, names in COLUMNS
            if any(n in k["metrics"] for k in ks for n in names)]
    lines = ["| # | kernel | grid | block | " + " | ".join(t for t, _ in cols) + " |",
             "| ---: | --- | --- | --- |" + " ---: |" * len(cols)]
    for k in ks:
        cells = [next((k["metrics"][n] for n in names if n in k["metrics"]), "–") for _, names in cols]
        lines.append(f"| {k['id']} | {short(k['name'])} | {k['grid']} | {k['block']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv")
    ap.add_argument("--md", help="also write the table here")
    args = ap.parse_args(argv)
    with open(args.csv, errors="replace") as f:
        table = render(kernels(f.read()))
    print(table, end="")
    if args.md:
        with open(args.md, "w") as f:
            f.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
