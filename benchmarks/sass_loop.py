"""What implicit_gemm's main loop costs in instructions, read from the compiled SASS: no
GPU needed, so it is a measurement every session can take (METHOD.md: count first).

    python -m benchmarks.sass_loop [--arch sm_90a] [--cubin FILE] [--json]

Compiles csrc/cuda/conv3x3_implicit_gemm.cu for the arch (or reads a cubin), disassembles it
with cuobjdump (from $CUDA_HOME/bin, else the copy triton ships), and for each kernel
instantiation finds its main loop: the largest backward branch whose body holds mma
(HMMA, or HGMMA for the wgmma tile). Per loop iteration (one 64-byte K slice) it reports
the instructions a warp issues, the HMMA/HGMMA among them, and the rest by opcode; and,
where it compiled the cubin itself, each kernel's registers per thread (ptxas -v).

Why it matters: on sm_90 a sub-partition issues one instruction per clock and, at
mma.sync's ~65% of the dense fp16 peak, retires one m16n8k16 HMMA every ~6 clocks. A 64 x
64 warp tile issues 64 HMMA per slice, so the tensor pipe needs ~384 clocks per slice; the
other instructions of the same warps (and of the other warp sharing the sub-partition)
must fit in the issue slots left over. "issue per HMMA" is that pressure: 1.0 would be
pure mma. Under wgmma (sm_90a) one HGMMA.64x128x16 keeps each sub-partition's tensor core
busy for 64 clocks at the dense peak (a warpgroup's 64 x 128 x 16 over 4 sub-partitions),
and each of the 4 warps issues it (HGMMA.64x256x16: 128 clocks): "issue share" is the loop's
instructions over those clocks, the fraction of one sub-partition's issue slots a block's
warp needs at the peak.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "csrc" / "cuda" / "conv3x3_implicit_gemm.cu"

_INSN = re.compile(r"^\s+/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
_TARGET = re.compile(r"0x([0-9a-f]+)")
_GUARD = re.compile(r"^@!?U?P\w+\s+")


def find_tool(name: str) -> str | None:
    """$CUDA_HOME/bin/<name>, else PATH, else the copy in triton's wheel (torch's dependency)."""
    cuda_home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    candidates = [Path(cuda_home) / "bin" / name]
    found = shutil.which(name)
    if found:
        candidates.append(Path(found))
    try:
        import triton  # noqa: PLC0415 (optional)
        candidates.append(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name)
    except Exception:  # noqa: BLE001 (no triton: fine)
        pass
    return next((str(c) for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)


def compile_cubin(arch: str, out: Path, source: Path = SOURCE) -> str:
    """Compiles a kernel file (default: implicit_gemm's) into `out`; returns ptxas's
    verbose report (ptxas_report)."""
    nvcc = find_tool("nvcc")
    if nvcc is None:
        raise RuntimeError("nvcc not found (set CUDA_HOME)")
    done = subprocess.run([nvcc, f"-arch={arch}", "-O3", "-std=c++17", "--expt-relaxed-constexpr", "-cubin", "-c",
                           str(source), "-I", str(ROOT / "csrc"), "-o", str(out), "-Xptxas", "-v"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"nvcc failed:\n{done.stdout}{done.stderr}")
    return done.stdout + done.stderr


_PTXAS_FUNCTION = re.compile(r"Function properties for (\S+)")
_PTXAS_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_PTXAS_REGISTERS = re.compile(r"Used (\d+) registers")
_PTXAS_DIAGNOSTIC = re.compile(r"\(C\d{4}\)")


def ptxas_report(log: str) -> dict:
    """ptxas -v text -> {"functions": {mangled: {"registers", "stack", "spill_stores",
    "spill_loads"}}, "diagnostics": [lines]}. The diagnostics are ptxas's coded notes, such
    as C7510 (wgmma serialized: the tensor cores wait for each HGMMA, no overlap) or C7519
    (a warpgroup.arrive the compiler had to inject where a wgmma_fence was missing)."""
    functions: dict[str, dict] = {}
    current = None
    for line in log.splitlines():
        if m := _PTXAS_FUNCTION.search(line):
            current = functions.setdefault(m.group(1), {})
        elif current is not None and (m := _PTXAS_FRAME.search(line)):
            current.update(stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
        elif current is not None and (m := _PTXAS_REGISTERS.search(line)):
            current["registers"] = int(m.group(1))
    return {"functions": functions, "diagnostics": [ln.strip() for ln in log.splitlines() if _PTXAS_DIAGNOSTIC.search(ln)]}


def parse_functions(sass: str) -> dict[str, list[tuple[int, str]]]:
    """cuobjdump -sass text -> {mangled name: [(address, instruction), ...]}."""
    funcs: dict[str, list[tuple[int, str]]] = {}
    current = None
    for line in sass.splitlines():
        if "Function : " in line:
            current = line.split("Function : ", 1)[1].strip()
            funcs[current] = []
            continue
        m = _INSN.match(line)
        if m and current is not None:
            funcs[current].append((int(m.group(1), 16), m.group(2)))
    return funcs


def opcode(insn: str) -> str:
    return _GUARD.sub("", insn).split()[0].split(".")[0]


def loops(insns: list[tuple[int, str]]):
    """The body (instruction texts) of every backward branch, in listing order."""
    index = {addr: i for i, (addr, _) in enumerate(insns)}
    for i, (addr, text) in enumerate(insns):
        m = _TARGET.search(text) if opcode(text) == "BRA" else None
        if m and int(m.group(1), 16) < addr and int(m.group(1), 16) in index:
            yield [t for _, t in insns[index[int(m.group(1), 16)]:i + 1]]


def main_loop(insns: list[tuple[int, str]], opcodes=("HMMA", "HGMMA"), without=(), smallest=False) -> list[str] | None:
    """The body of the largest (or smallest) backward branch that contains one of `opcodes`
    and none of `without` (None: no such loop). By default the main loop: HMMA or HGMMA; a
    warp-specialised kernel's producer loop: the smallest with LDGSTS and no HGMMA (its
    loop over work items holds it)."""
    best = None
    for body in loops(insns):
        ops = {opcode(t) for t in body}
        if ops & set(opcodes) and not ops & set(without) and (
                best is None or (len(body) < len(best) if smallest else len(body) > len(best))):
            best = body
    return best


_TEMPLATE = re.compile(r"MmaTypeE\dELi(\d+)ELi(\d+)ELNS0_8MainLoopE(\d)E([il])")


def instantiation(mangled: str) -> str:
    """A readable name: dtype, tile (BM x BN, with its loop's prefix), index type."""
    dtype = "fp16" if "__half" in mangled else "bf16" if "bfloat16" in mangled else "fp32(tf32)"
    m = _TEMPLATE.search(mangled)
    if not m:
        return mangled
    bm, bn, loop, idx = m.groups()
    # MainLoop: 0 mma_sync, 1 wgmma, 2 wgmma_t, 3 wgmma_ws
    prefix = {"1": "wg", "2": "wg", "3": "ws"}.get(loop, "")
    return f"{dtype} {prefix}{bm}x{bn} {'int32' if idx == 'i' else 'int64'}"


def item_warpgroups(mangled: str) -> int:
    """The warpgroups that compute one work item of a wgmma_ws kernel: BN / 128 (ws128x256's
    two share each item; ws128x128's two take items in turn, one each)."""
    m = _TEMPLATE.search(mangled)
    if not m or m.group(3) != "3":
        raise ValueError(f"not a wgmma_ws kernel: {mangled}")
    return int(m.group(2)) // 128


def hgmma_clocks(body: list[str]) -> int:
    """Clocks a sub-partition's tensor core is busy with the loop's HGMMA at the dense peak:
    HGMMA.64xNx16 (f16/bf16) is 64 x N x 16 MACs over 4 sub-partitions at 512 MACs per clock
    each, HGMMA.64xNx8 (tf32) 64 x N x 8 at 256: N / 2 clocks either way."""
    total = 0
    for t in body:
        m = re.search(r"HGMMA\.64x(\d+)x(16|8)\b", t)
        if m:
            k = int(m.group(2))
            total += 64 * int(m.group(1)) * k // (4 * (512 if k == 16 else 256))
    return total


def analyse(sass: str) -> list[dict]:
    rows = []
    for name, insns in parse_functions(sass).items():
        if "conv3x3_implicit_gemm_kernel" not in name:
            continue
        # wgmma_ws's blocks loop over work items, a loop that holds the epilogue's stores (STG)
        # around the main loop: not that one.
        ws = "MainLoopE3" in name
        body = main_loop(insns, without=("STG",) if ws else ())
        if body is None:
            continue
        ops = Counter(opcode(t) for t in body)
        hmma, hgmma = ops["HMMA"], ops["HGMMA"]
        # wgmma_ws: the copies are the producer warpgroup's loop (per slice, per warp), by
        # cp.async (LDGSTS) or, its other loops, by tensor loads (UTMALDG, one thread's)
        producer = main_loop(insns, ("LDGSTS",), ("HGMMA",), smallest=True) if ws else None
        tma = tma_loops(insns) if ws else {}
        share = {}
        if ws and hgmma:
            # per sub-partition and slice: a warp of each warpgroup that computes the item (ws128x256:
            # 2, cooperative; ws128x128: 1, the other warpgroup computes another item, ping-pong)
            # and a producer warp, against the item's tensor work a slice
            groups = item_warpgroups(name)
            slots = groups * hgmma_clocks(body)
            for path, n in (("cp_async", len(producer) if producer else None), ("tma", tma.get("tma")),
                            ("tma_pool", tma.get("tma_pool"))):
                if n:
                    share[path] = round((groups * len(body) + n) / slots, 2)
        rows.append({"kernel": instantiation(name), "function": name, "loop_instructions": len(body),
                     "producer_instructions": len(producer) if producer else None,
                     "producer_ldgsts": sum(opcode(t) == "LDGSTS" for t in producer) if producer else None,
                     # per slice, unpooled and pooled
                     "tma_instructions": tma.get("tma"), "tma_pool_instructions": tma.get("tma_pool"),
                     "hmma": hmma, "hgmma": hgmma,
                     "ldsm": ops["LDSM"], "ldgsts": ops["LDGSTS"],
                     "issue_per_hmma": round(len(body) / hmma, 2) if hmma else None,
                     "issue_share": round(len(body) / (hgmma_clocks(body)), 2) if hgmma else None,
                     # ws: the issue slots a sub-partition needs at the tensor peak, its
                     # computing warps' loops and its producer warp's, per copy path (the
                     # tensor loads': sub-partition 0's, whose warp issues the weight's too)
                     "sub_partition_share": share or None,
                     "division": any(o in ops for o in ("I2F", "MUFU", "CALL")),
                     "opcodes": dict(ops.most_common())})
    return sorted(rows, key=lambda r: r["kernel"])


def tma_loads(body: list[str]) -> int:
    return sum(opcode(t) == "UTMALDG" for t in body)


def tma_loops(insns: list[tuple[int, str]]) -> dict[str, int]:
    """Instructions per slice of ws128x256's tensor-load loops, per warp: the largest backward
    branches with UTMALDG and neither HGMMA nor LDGSTS (each UTMALDG also sits in a small
    loop of its own, the ELECT loop that moves its operands to uniform registers), by the
    weight's one tile load (UTMALDG.2D) a slice. "tma": unpooled, one im2col box of x a slice;
    "tma_pool": 4 boxes a slice (the issuing lane of producer warp 0: 2 slabs x even and odd
    rows; nvcc may unroll either)."""
    found: dict[str, int] = {}
    for body in loops(insns):
        if {opcode(t) for t in body} & {"HGMMA", "LDGSTS"}:
            continue
        im2col = sum(opcode(t) == "UTMALDG" and "IM2COL" in t for t in body)
        tile = tma_loads(body) - im2col
        kind = "tma" if tile and im2col == tile else "tma_pool" if tile and im2col == 4 * tile else None
        if kind:
            found[kind] = max(found.get(kind, 0), round(len(body) / tile))
    return found


def producer_cell(r: dict) -> str:
    """The producer's cp.async loop (its LDGSTS) and, where it has one, its tensor-load loop
    (UTMALDG); then a sub-partition's issue share at the peak per path (sub_partition_share)."""
    if not r["producer_instructions"]:
        return "-"
    tma = f"; TMA {r['tma_instructions']}" if r.get("tma_instructions") else ""
    tma += f", pooled {r['tma_pool_instructions']}" if r.get("tma_pool_instructions") else ""
    share = r.get("sub_partition_share") or {}
    shares = " / ".join(f"{share[k]:.2f}" for k in ("cp_async", "tma", "tma_pool") if k in share)
    return f"{r['producer_instructions']} ({r['producer_ldgsts']}){tma}" + (f"; SP {shares}" if shares else "")


def sass_of(cubin: Path) -> str:
    cuobjdump = find_tool("cuobjdump")
    if cuobjdump is None:
        raise RuntimeError("cuobjdump not found (CUDA toolkit or triton)")
    return subprocess.run([cuobjdump, "-sass", str(cubin)], check=True, capture_output=True, text=True).stdout


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="sm_90a")
    ap.add_argument("--cubin", type=Path, help="a compiled conv3x3_implicit_gemm cubin (default: compile one)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cubin = args.cubin
        functions = {}
        if cubin is None:
            cubin = Path(tmp) / "ig.cubin"
            functions = ptxas_report(compile_cubin(args.arch, cubin))["functions"]
        rows = analyse(sass_of(cubin))
    for r in rows:  # ptxas's count, where this run compiled the cubin (not for --cubin)
        r["registers"] = functions.get(r["function"], {}).get("registers")
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
        return 0
    print(f"implicit_gemm main loop per 64-byte K slice, per warp ({args.arch}):")
    print("| kernel | registers | instructions | HMMA | HGMMA | LDSM | LDGSTS | issue per HMMA | issue share (wgmma) "
          "| producer loop (LDGSTS; TMA per slice; SP: a sub-partition's issue share by cp.async / TMA / "
          "pooled TMA) | division | top others |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for r in rows:
        others = ", ".join(f"{k} {v}" for k, v in r["opcodes"].items()
                           if k not in ("HMMA", "HGMMA", "LDSM", "LDGSTS"))[:60]
        print(f"| {r['kernel']} | {r['registers'] or '-'} | {r['loop_instructions']} | {r['hmma']} | {r['hgmma']} | "
              f"{r['ldsm']} | {r['ldgsts']} | {r['issue_per_hmma'] or '-'} | {r['issue_share'] or '-'} | "
              f"{producer_cell(r)} | {'yes' if r['division'] else 'no'} | {others} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
