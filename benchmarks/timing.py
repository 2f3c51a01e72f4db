"""Timing helper shared by every benchmark (pytest suites and the plain runner).

How a GPU case is timed (``time_gpu``):
  * Inputs are ROTATED: the caller gives a factory that makes one input set (every
    tensor the call reads: activations, weights, bias); we make ``k`` sets, until their
    distinct storages (a weight the sets share counts once) hold >= ROTATE_BYTES (256
    MiB, > 4x the 50 MB L2 of an H100 and the 60 MB of an H200) or MAX_SETS are made,
    and call i uses set ``i % k``. A call therefore finds
    its inputs in device memory, not in L2, as it would inside a network. (We rotate
    rather than flush L2 between repeats because each repeat times many back-to-back
    calls; a flush would only clear the cache for the first of them.)
  * Warm-up: calls until WARMUP_S seconds and at least WARMUP_MIN calls have run (module
    load, cuDNN autotuning with cudnn.benchmark=True, allocator growth, lazy init).
  * Each repeat: a CUDA event, ``iters`` calls on the current stream, a CUDA event.
    ``iters`` is chosen so that one repeat lasts about TARGET_REPEAT_S (at least one
    call): the GPU stays busy and per-launch host overhead shows as it would in eager
    code. Per-call time = elapsed / iters. All events are read after one final sync.
  * Statistics over the repeats: median (reported), IQR = q75 - q25 (spread), min, max.

CPU cases (the smoke pass) use the same loop with time.perf_counter and few repeats;
they only prove the suite runs and are never compared against anything.
"""
from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import torch

ROTATE_BYTES = 256 * 2**20          # input buffers rotated per case: >= 256 MiB
MAX_SETS = 4096                     # cap on rotated sets (tiny inputs)
WARMUP_S = 0.05                     # GPU warm-up time per case (after the first call)
WARMUP_MIN = 3
TARGET_REPEAT_S = 0.002             # one repeat (events around `iters` calls) lasts ~2 ms
MAX_ITERS = 1000


@dataclass
class Timing:
    """Per-call times in seconds, from `repeats` repeats of `iters` calls each."""
    median_s: float
    iqr_s: float
    min_s: float
    max_s: float
    repeats: int
    iters: int
    rotated_sets: int
    rotated_bytes: int
    method: str                      # "cuda-events" or "perf_counter"
    samples_s: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _storages(obj: Any, seen: dict) -> dict:
    """seen, with every tensor storage in obj (nested lists/tuples/dicts) by its address."""
    if isinstance(obj, torch.Tensor):
        st = obj.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            _storages(o, seen)
    elif isinstance(obj, dict):
        for o in obj.values():
            _storages(o, seen)
    return seen


def tensor_bytes(obj: Any) -> int:
    """Bytes of the distinct storages of the tensors in obj (a tensor, or nested
    lists/tuples/dicts of them): a storage several sets share (a layer's weight) counts once."""
    return sum(_storages(obj, {}).values())


def quantiles(samples: Sequence[float]) -> tuple[float, float, float]:
    """(q25, median, q75) with linear interpolation (numpy's default)."""
    s = sorted(samples)
    if len(s) == 1:
        return s[0], s[0], s[0]

    def q(p):
        pos = p * (len(s) - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        return s[lo] + (s[hi] - s[lo]) * (pos - lo)

    return q(0.25), statistics.median(s), q(0.75)


def summarize(samples: Sequence[float], iters: int, sets: int, nbytes: int, method: str) -> Timing:
    q25, med, q75 = quantiles(samples)
    return Timing(median_s=med, iqr_s=q75 - q25, min_s=min(samples), max_s=max(samples), repeats=len(samples),
                  iters=iters, rotated_sets=sets, rotated_bytes=nbytes, method=method, samples_s=list(samples))


def make_sets(make_inputs: Callable[[], Any], rotate_bytes: int = ROTATE_BYTES, max_sets: int = MAX_SETS):
    """Input sets to rotate over, made until their distinct storages together hold >=
    rotate_bytes (or max_sets are made), and those bytes. A storage the sets share (a
    weight made once) counts once, so sets of a small input and a large shared weight are
    not taken for a rotation past L2."""
    sets, seen, total = [], {}, 0
    while not sets or (total < rotate_bytes and len(sets) < max_sets):
        sets.append(make_inputs())
        for ptr, nbytes in _storages(sets[-1], {}).items():
            if ptr not in seen:
                seen[ptr] = nbytes
                total += nbytes
    return sets, total


def time_gpu(fn: Callable[[Any], Any], make_inputs: Callable[[], Any], *, repeats: int = 25,
             rotate_bytes: int = ROTATE_BYTES, warmup_s: float = WARMUP_S,
             target_repeat_s: float = TARGET_REPEAT_S) -> Timing:
    """Time fn(inputs) on the current CUDA stream; see the module docstring."""
    sets, nbytes = make_sets(make_inputs, rotate_bytes)
    k = len(sets)
    # Warm-up, and a first estimate of the per-call time.
    fn(sets[0])
    torch.cuda.synchronize()
    n, t0 = 0, time.perf_counter()
    while n < WARMUP_MIN or time.perf_counter() - t0 < warmup_s:
        fn(sets[n % k])
        n += 1
        if n % 8 == 0:
            torch.cuda.synchronize()
    torch.cuda.synchronize()
    est = (time.perf_counter() - t0) / n
    iters = max(1, min(MAX_ITERS, int(target_repeat_s / max(est, 1e-7))))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    i = 0
    for r in range(repeats):
        starts[r].record()
        for _ in range(iters):
            fn(sets[i % k])
            i += 1
        ends[r].record()
    torch.cuda.synchronize()
    samples = [s.elapsed_time(e) / 1e3 / iters for s, e in zip(starts, ends)]
    del sets
    return summarize(samples, iters, k, nbytes, "cuda-events")


def time_cpu(fn: Callable[[Any], Any], make_inputs: Callable[[], Any], *, repeats: int = 3) -> Timing:
    """Smoke timing on the CPU: one input set, one warm-up call, `repeats` timed calls."""
    inputs = make_inputs()
    fn(inputs)
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(inputs)
        samples.append(time.perf_counter() - t0)
    return summarize(samples, 1, 1, tensor_bytes(inputs), "perf_counter")


def time_graph(fn: Callable[[Any], Any], inputs: Any, *, repeats: int = 15,
               target_repeat_s: float = TARGET_REPEAT_S, keep: dict | None = None) -> Timing:
    """Time replays of a CUDA graph that captures one fn(inputs) call (static inputs).

    Used for whole networks, whose weights (hundreds of MB) dwarf L2 anyway.
    """
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn(inputs)
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = fn(inputs)
    if keep is not None:  # what a caller needs to replay it on other inputs and read its result
        keep.update(graph=g, inputs=inputs, output=out)
    return time_gpu(lambda _: g.replay(), lambda: None, repeats=repeats, rotate_bytes=0,
                    target_repeat_s=target_repeat_s)


def environment(device: str) -> dict:
    """What ran: GPU, driver, CUDA, torch, cuDNN, date, git commit, host."""
    import datetime
    import platform
    import subprocess

    env: dict[str, Any] = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "torch": torch.__version__,
        "cuda_torch_built_with": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "host": platform.node(),
        "cpu_threads": torch.get_num_threads(),
    }
    try:
        import torchvision
        env["torchvision"] = torchvision.__version__
    except Exception:  # noqa: BLE001
        env["torchvision"] = None
    try:
        import vggkern
        env["vggkern"] = getattr(vggkern, "__version__", None)
        env["vggkern_build"] = vggkern.build_info()
        env["vggkern_path"] = os.path.dirname(vggkern.__file__)
    except Exception as e:  # noqa: BLE001
        env["vggkern"] = f"import failed: {e}"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # The commit measured: VGGKERN_GIT_COMMIT where set (device_run.sh's caller names it: a
    # .git that travelled with the device's copy of the tree may be an older one's), else
    # git's HEAD; git's HEAD and state are recorded beside it where there is a .git.
    head = None
    try:
        out = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if out.returncode == 0:
            head = out.stdout.strip()
            dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            env.update(git_head=head, git_dirty=bool(dirty))
    except Exception:  # noqa: BLE001
        pass
    env["git_commit"] = os.environ.get("VGGKERN_GIT_COMMIT") or head or "unknown"
    if device == "cuda" and torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env.update(gpu_name=p.name, gpu_sm_count=p.multi_processor_count,
                   gpu_memory_gib=round(p.total_memory / 2**30, 1),
                   gpu_capability=f"{p.major}.{p.minor}",
                   gpu_l2_mb=round(getattr(p, "L2_cache_size", 0) / 1e6, 1) or None)
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm,power.limit",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
            drv, clk, pwr = [s.strip() for s in out.stdout.strip().splitlines()[0].split(",")]
            env.update(driver=drv, sm_clock_max=clk, power_limit=pwr)
        except Exception as e:  # noqa: BLE001
            env["driver"] = f"unknown ({e.__class__.__name__})"
    else:
        env["gpu_name"] = None
    return env
