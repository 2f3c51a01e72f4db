#!/usr/bin/env bash
# The one script a GPU session runs, from the repo root, in one call:
#   bash benchmarks/device_run.sh [--quick | --network | --focus]
# Builds vggkern in place against the machine's own torch (no network, no pip), runs the
# tensor-core instruction cases (tests/tensor_core_probe.cu), probes the wgmma tiles in a
# process of their own (benchmarks/wgmma_probe.py; if they fault or differ from the
# emulator they are left out of what follows), runs the GPU tests,
# compute-sanitizer memcheck + racecheck on a small case, Nsight Compute's counters on
# two layers (not in --quick), the benchmarks
# (pytest-benchmark if present, else python -m benchmarks.run: same cases, same JSON),
# and writes under $OUT (default ./device_out):
#   results.json  summary.md  speedup.png  roofline.md  build.log  tests.log  sanitize.log  bench.log
#   ncu.md  ncu.csv  ncu.ncu-rep  ncu.log (hardware counters of implicit_gemm and cuDNN on two
#   layers; not in --quick)
#   bench_rows.jsonl (the benchmarks' rows as they finished: results.json is made from it
#   where the benchmark run was killed before writing its own, or left it cut short: then
#   kept as results.broken.json)
# Finishes inside 9 minutes (--quick: 4): each step has a time limit and the benchmarks
# stop starting new cases at a deadline. The last lines printed are the summary table.
# --network: the build and the whole-network rows only (benchmarks/test_bench_network.py,
# those VGGKERN_BENCH_K selects, a pytest -k expression; default every fp16 row but
# torch.compile's), inside 4 minutes: for what is left of a session's device time after a
# full run (the full run's deadline leaves the batches other than 64 and VGG19 unmeasured).
# --focus: what one change needs, where a session has less device time than a full run:
# the build, the probes, the GPU tests VGGKERN_TEST_K selects (a pytest -k expression;
# default all), memcheck and racecheck, no counters (unless VGGKERN_RUN_NCU=1: then the
# ncu step below, inside the same limit), and the benchmarks VGGKERN_BENCH_K
# selects (a pytest -k expression over benchmarks/; default every case), inside
# VGGKERN_RUN_LIMIT seconds (default 200).
# Set VGGKERN_GIT_COMMIT=<sha> when the tree has no .git (the device copy has none).
set -u
START=$(date +%s)
QUICK=0 NETWORK=0 FOCUS=0
[ "${1:-}" = "--quick" ] && QUICK=1
[ "${1:-}" = "--network" ] && NETWORK=1 QUICK=1  # QUICK: the short steps' limits
[ "${1:-}" = "--focus" ] && FOCUS=1 QUICK=1
if [ $NETWORK = 1 ]; then LIMIT=${VGGKERN_RUN_LIMIT:-225}; SET=full
elif [ $FOCUS = 1 ]; then LIMIT=${VGGKERN_RUN_LIMIT:-200}; SET=full
elif [ $QUICK = 1 ]; then LIMIT=${VGGKERN_RUN_LIMIT:-235}; SET=quick; else LIMIT=${VGGKERN_RUN_LIMIT:-530}; SET=full; fi
OUT=${OUT:-$PWD/device_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
elapsed() { echo $(( $(date +%s) - START )); }
left() { echo $(( LIMIT - $(elapsed) )); }
# A step's time limit: cap WANT MIN gives WANT, but never more than the run has left less
# RESERVE, and 0 where that is under MIN (too little for the step to say anything: it is
# skipped). RESERVE keeps for the benchmarks at least 50 s of new cases (--quick: 30) plus
# the 15 s the case in flight may take past their deadline and the 35 s of the report.
RESERVE=$(( QUICK ? 80 : 100 ))
cap() { local c=$(( $(left) - RESERVE )); c=$(( $1 < c ? $1 : c )); echo $(( c < $2 ? 0 : c )); }
step() { echo "== [$(elapsed)s] $*"; }
STATUS=()

# ---- environment ----------------------------------------------------------------------
# CUDA_HOME: as given, else /usr/local/cuda(-*), else the toolkit that holds `nvcc` on PATH
# (only where its include/ has cuda_runtime.h: a wrapper in /usr/local/bin is no toolkit).
NVCC=$(command -v nvcc || true)
if [ -z "${CUDA_HOME:-}" ] || [ ! -x "$CUDA_HOME/bin/nvcc" ]; then
  unset CUDA_HOME
  for d in /usr/local/cuda /usr/local/cuda-*; do
    [ -z "${CUDA_HOME:-}" ] && [ -x "$d/bin/nvcc" ] && [ -f "$d/include/cuda_runtime.h" ] && export CUDA_HOME=$d
  done
  if [ -z "${CUDA_HOME:-}" ] && [ -n "$NVCC" ]; then
    d=$(dirname "$(dirname "$(readlink -f "$NVCC")")")
    [ -f "$d/include/cuda_runtime.h" ] && export CUDA_HOME=$d
  fi
fi
[ -n "${CUDA_HOME:-}" ] && export PATH="$CUDA_HOME/bin:$PATH"
export TORCH_CUDA_ARCH_LIST=9.0a MAX_JOBS=16
step "GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo none); nvcc: ${NVCC:-none}; CUDA_HOME=${CUDA_HOME:-unset}"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), 'gpu', torch.cuda.is_available())"

# ---- build ----------------------------------------------------------------------------
# The tensor-core probe (tests/tensor_core_probe.cu, ~10 s of nvcc) builds beside the extension.
PROBE=$PWD/build/tensor_core_probe
mkdir -p build
( [ $NETWORK = 0 ] && [ -n "${CUDA_HOME:-}" ] && timeout 120 "$CUDA_HOME/bin/nvcc" -std=c++17 -O2 -gencode arch=compute_90a,code=sm_90a \
    -o "$PROBE" tests/tensor_core_probe.cu >build/tensor_core_probe.log 2>&1 ) &
PROBE_BUILD=$!
# preflight.sh's build for this Python, torch and these sources, where carried
# (device_build/, its stamp matching) and importable; else a build here.
PREBUILT=0
if [ -f device_build/stamp ] && ls device_build/_C*.so >/dev/null 2>&1; then
  want=$(cat device_build/stamp); have=$(bash benchmarks/build_stamp.sh "$PY" 2>/dev/null || true)
  if [ "$want" = "$have" ]; then
    step "build: preflight's, carried in device_build/ ($have)"
    cp device_build/_C*.so vggkern/ && $PY -c "import vggkern; assert vggkern.build_info()['cuda_kernels']" \
      >"$OUT/build.log" 2>&1 && PREBUILT=1 && STATUS+=("build: preflight's, carried (stamp: $have)")
    [ $PREBUILT = 1 ] || { cat "$OUT/build.log"; rm -f vggkern/_C*.so; echo "it does not import: building"; }
  else
    step "build: device_build/ is for another build (stamp '$want', here '$have'): building"
  fi
fi
if [ $PREBUILT = 0 ]; then
  step "build (python3 setup.py build_ext --inplace, MAX_JOBS=16)"
  BT=$(( $(left) - 120 )); [ $BT -lt 30 ] && BT=30
  if timeout $BT $PY setup.py build_ext --inplace >"$OUT/build.log" 2>&1; then
    STATUS+=("build: ok ($(elapsed)s)")
  else
    STATUS+=("build: FAILED rc=$? (see build.log)"); tail -20 "$OUT/build.log"
  fi
fi
$PY -c "import torch, vggkern; print('vggkern', vggkern.__file__, vggkern.build_info())" || STATUS+=("import vggkern: FAILED")

# The checks (probes, GPU tests, sanitizer, counters): not in --network, which follows a
# full run that made them on the same kernels.
if [ $NETWORK = 1 ]; then
  STATUS+=("probes, GPU tests, sanitizer, counters: not run (--network)")
else
# ---- tensor-core probe ----------------------------------------------------------------
# The instruction wrappers alone (ldmatrix, mma.sync, wgmma), each against the exact
# product or the PTX ISA's fragment layout: a wrong layout shows here by instruction name.
step "tensor-core probe (tests/tensor_core_probe.cu)"
: >"$OUT/tests.log"
PT=$(cap 60 10)
if [ "$PT" = 0 ]; then
  STATUS+=("tensor-core probe: skipped ($(left)s left)")
elif wait $PROBE_BUILD && [ -x "$PROBE" ]; then
  timeout "$PT" "$PROBE" >>"$OUT/tests.log" 2>&1
  rc=$?
  grep -E "DIFFERS|probe:" "$OUT/tests.log" | head -40
  case $rc in
    0) STATUS+=("tensor-core probe: every case passes");;
    2) STATUS+=("tensor-core probe: not runnable here");;
    124) STATUS+=("tensor-core probe: TIMEOUT after ${PT}s (see tests.log)");;
    *) STATUS+=("tensor-core probe: FAILED rc=$rc (see tests.log)");;
  esac
else
  STATUS+=("tensor-core probe: did not build"); tail -5 build/tensor_core_probe.log 2>/dev/null
fi

# ---- wgmma probe ----------------------------------------------------------------------
# The wgmma tiles against the emulator in a process of their own (benchmarks/wgmma_probe.py):
# if they fault or differ, they stay out of the later steps' processes.
step "wgmma probe (benchmarks/wgmma_probe.py)"
WT=$(cap 60 20)
if [ "$WT" = 0 ]; then
  rc=skipped
else
  timeout "$WT" $PY benchmarks/wgmma_probe.py 2>&1 | tee -a "$OUT/tests.log"
  rc=${PIPESTATUS[0]}
fi
WG_FILTER=()
LEFT_OUT="wgmma tiles left out of the GPU tests, sanitizer and sweep"
case $rc in
  0) STATUS+=("wgmma probe: every wgmma tile matches the emulator bit for bit");;
  2) STATUS+=("wgmma probe: not runnable here");;
  *) case $rc in  # unproven tiles stay out: a faulting kernel would poison the later steps' CUDA context
       skipped) STATUS+=("wgmma probe: skipped ($(left)s left): $LEFT_OUT");;
       124) STATUS+=("wgmma probe: TIMEOUT after ${WT}s: $LEFT_OUT");;
       *) STATUS+=("wgmma probe: FAILED rc=$rc: $LEFT_OUT");;
     esac
     export VGGKERN_BENCH_EXCLUDE_TILES=wg128x128,wg256x64,wg128x256,ws128x256,ws128x128
     WG_FILTER=(-k "not wg128x128 and not wg256x64 and not wg128x256 and not ws128x256 and not ws128x128");;
esac
# The ws tiles' tensor stores and loads (TMA), once the tiles passed, in a process of their
# own too: if the loads fault or differ, every later step runs with
# VGGKERN_IMPLICIT_GEMM_TMA=off (cp.async; the benchmarks then time no tensor-load rows) and
# the tests that demand them stay out; if only the pooled layers' do (exit 3), with
# =unpooled (no pooled tensor-load rows). If the staged y stores do (exit + 4), with
# VGGKERN_IMPLICIT_GEMM_TMA_STORE=off too (y in pairs from the accumulators).
if [ "$rc" = 0 ]; then
  TMAT=$(cap 45 15)
  if [ "$TMAT" = 0 ]; then
    trc=skipped
  else
    timeout "$TMAT" $PY benchmarks/wgmma_probe.py --tensor-loads 2>&1 | tee -a "$OUT/tests.log"
    trc=${PIPESTATUS[0]}
  fi
  case $trc in
    4|5|7) STATUS+=("tensor-store probe: the ws tiles' staged y stores FAILED: VGGKERN_IMPLICIT_GEMM_TMA_STORE=off")
           export VGGKERN_IMPLICIT_GEMM_TMA_STORE=off
           trc=$((trc - 4));;
    0|1|3) STATUS+=("tensor-store probe: the ws tiles' staged y stores match the emulator bit for bit");;
    *) STATUS+=("tensor-store probe: not proven ($trc): VGGKERN_IMPLICIT_GEMM_TMA_STORE=off")
       export VGGKERN_IMPLICIT_GEMM_TMA_STORE=off;;
  esac
  if [ "$trc" = 0 ]; then
    STATUS+=("tensor-load probe: the ws tiles' tensor loads match the emulator bit for bit")
  elif [ "$trc" = 3 ]; then  # only the pooled layers' (slab order) differ or fault
    STATUS+=("tensor-load probe: the pooled layers' tensor loads FAILED: VGGKERN_IMPLICIT_GEMM_TMA=unpooled, their tests left out")
    export VGGKERN_IMPLICIT_GEMM_TMA=unpooled
    WG_FILTER=(-k "not tensor_loads")
  else
    case $trc in skipped) why="skipped ($(left)s left)";; 124) why="TIMEOUT after ${TMAT}s";; *) why="FAILED rc=$trc";; esac
    STATUS+=("tensor-load probe: $why: tensor loads off (VGGKERN_IMPLICIT_GEMM_TMA=off), their tests left out")
    export VGGKERN_IMPLICIT_GEMM_TMA=off
    WG_FILTER=(-k "not tensor_loads")
  fi
fi

# ---- GPU tests ------------------------------------------------------------------------
# 8 worker processes where pytest-xdist is installed (the device image has it): the
# bit-exact tests run the emulator on the CPU side, and the machine has 16 cores (fewer
# where there are fewer cores: 8 on preflight's 2 cores took 45 s just to start).
NW=$(nproc 2>/dev/null || echo 8); NW=$(( NW < 8 ? NW : 8 ))
XDIST=(); $PY -c "import xdist" 2>/dev/null && XDIST=(-n "$NW")
step "GPU tests (pytest tests -m gpu ${XDIST[*]:-})"
# (--quick: 75 s, not less: 8 workers each import torch and collect ~2,200 items first.)
TT=$(cap $(( QUICK ? 75 : 90 )) 30)
if [ "$TT" = 0 ]; then
  rc=skipped
else
  if [ $FOCUS = 1 ] && [ -n "${VGGKERN_TEST_K:-}" ]; then  # its selection, less the tiles left out
    WG_FILTER=(-k "($VGGKERN_TEST_K)${WG_FILTER[1]:+ and (${WG_FILTER[1]})}")
  fi
  timeout $TT $PY -m pytest tests -m gpu -q -p no:cacheprovider ${XDIST[@]+"${XDIST[@]}"} \
    ${WG_FILTER[@]+"${WG_FILTER[@]}"} >>"$OUT/tests.log" 2>&1
  rc=$?
fi
case $rc in
  skipped) STATUS+=("gpu tests: skipped ($(left)s left)");;
  0) STATUS+=("gpu tests: passed ($(tail -1 "$OUT/tests.log"))");;
  5) STATUS+=("gpu tests: none collected (no tests marked gpu in tests/)");;
  124) STATUS+=("gpu tests: TIMEOUT after ${TT}s");;
  *) STATUS+=("gpu tests: FAILED rc=$rc ($(tail -1 "$OUT/tests.log"))");;
esac
tail -3 "$OUT/tests.log"

# ---- compute-sanitizer ----------------------------------------------------------------
SAN=$(command -v compute-sanitizer || true)
[ -z "$SAN" ] && [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/compute-sanitizer" ] && SAN=$CUDA_HOME/bin/compute-sanitizer
: >"$OUT/sanitize.log"
# --quick: memcheck only (racecheck instruments every shared-memory access: the slow one).
TOOLS=(memcheck racecheck); [ $QUICK = 1 ] && [ $FOCUS = 0 ] && TOOLS=(memcheck)
for tool in "${TOOLS[@]}"; do
  step "compute-sanitizer --tool $tool (small conv/pool case)"
  if [ -z "$SAN" ]; then STATUS+=("$tool: compute-sanitizer not found"); continue; fi
  ST=$(cap $(( QUICK ? 50 : 75 )) 30)
  if [ "$ST" = 0 ]; then STATUS+=("$tool: skipped ($(left)s left)"); continue; fi
  echo "===== $tool =====" >>"$OUT/sanitize.log"
  # sanitize_case.py starts no case past its deadline (an epoch time, 15 s before the
  # step's limit: the case in flight and the sanitizer's report), so it ends with a
  # verdict and a count of the cases it ran (its first three rounds: every algorithm and
  # tile in each dtype).
  PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout $ST "$SAN" --tool $tool --error-exitcode 3 --print-limit 20 \
    $PY benchmarks/sanitize_case.py --deadline $(( $(date +%s) + ST - 15 )) >>"$OUT/sanitize.log" 2>&1
  rc=$?
  RAN=$(sed -n '/^===== '$tool' =====/,$p' "$OUT/sanitize.log" | grep -E "^conv3x3: [0-9]+ of" | tail -1)
  case $rc in
    0) STATUS+=("$tool: clean (${RAN:-no conv count})");;
    3) STATUS+=("$tool: ERRORS reported (see sanitize.log)");;
    4) STATUS+=("$tool: results differ from torch (see sanitize.log)");;
    124) STATUS+=("$tool: TIMEOUT after ${ST}s");;
    *) STATUS+=("$tool: rc=$rc: the driver failed (a Python error or a fault; see sanitize.log)");;
  esac
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize_case:|Device not supported" "$OUT/sanitize.log" | tail -3
done

# ---- hardware counters (full runs) ----------------------------------------------------
# What limits implicit_gemm, read rather than modelled: Nsight Compute on our kernel
# (default tile, and wg128x128, wg128x256, ws128x256 where they run) and cuDNN's on VGG16's conv3_2 and conv5_1,
# fp16 channels_last, batch 64 (benchmarks/ncu_case.py), with the clocks left alone
# (the device tool's METHOD.md). Writes ncu.ncu-rep, ncu.csv (details page), ncu.md (benchmarks/ncu_summary.py)
# and ncu.log. At most 75 s, taken from the benchmarks' time. VGGKERN_RUN_NCU=0 skips it;
# --focus runs it only where VGGKERN_RUN_NCU=1.
NCU=$(command -v ncu || true)
[ -z "$NCU" ] && [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/ncu" ] && NCU=$CUDA_HOME/bin/ncu
if { [ $QUICK = 0 ] && [ "${VGGKERN_RUN_NCU:-1}" != 0 ]; } || { [ $FOCUS = 1 ] && [ "${VGGKERN_RUN_NCU:-0}" = 1 ]; }; then
  step "ncu (benchmarks/ncu_case.py: conv3_2 and conv5_1, ours and cuDNN's)"
  NT=$(cap 75 40)
  if [ -z "$NCU" ]; then
    STATUS+=("ncu: not found")
  elif [ "$NT" = 0 ]; then
    STATUS+=("ncu: skipped ($(left)s left)")
  else
    T0=$(elapsed)
    NCU_ARGS=(--profile-from-start off --clock-control none --section SpeedOfLight --section ComputeWorkloadAnalysis
              --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats -f -o "$OUT/ncu")
    METRICS=$($PY -c "from benchmarks.ncu_summary import RAW_METRICS; print(','.join(RAW_METRICS))")
    timeout $NT "$NCU" "${NCU_ARGS[@]}" --metrics "$METRICS" $PY benchmarks/ncu_case.py >"$OUT/ncu.log" 2>&1
    rc=$?
    LEFT_NCU=$(( NT - ($(elapsed) - T0) ))
    if [ $rc != 0 ] && [ $rc != 124 ] && [ $rc != 2 ] && [ $LEFT_NCU -gt 30 ]; then  # a raw metric unknown here?
      echo "== rc=$rc: again without --metrics (the sections only)" >>"$OUT/ncu.log"
      timeout $LEFT_NCU "$NCU" "${NCU_ARGS[@]}" $PY benchmarks/ncu_case.py >>"$OUT/ncu.log" 2>&1
      rc=$?
    fi
    grep -E "^ncu_case:|==ERROR==" "$OUT/ncu.log" | head -12
    if [ -s "$OUT/ncu.ncu-rep" ]; then
      timeout 30 "$NCU" --import "$OUT/ncu.ncu-rep" --csv --page details --print-kernel-base function \
        >"$OUT/ncu.csv" 2>>"$OUT/ncu.log"
      $PY -m benchmarks.ncu_summary "$OUT/ncu.csv" --md "$OUT/ncu.md" 2>>"$OUT/ncu.log"
    fi
    case $rc in
      0) STATUS+=("ncu: $(grep -c '^ncu_case: profiled' "$OUT/ncu.log") calls profiled (ncu.md, ncu.csv)");;
      2) STATUS+=("ncu: not runnable here (no GPU seen under ncu)");;
      124) STATUS+=("ncu: TIMEOUT after ${NT}s (ncu.md holds what it wrote, if anything)");;
      *) STATUS+=("ncu: rc=$rc (see ncu.log; counters may be unreadable on this machine: KINDS.md)");;
    esac
  fi
fi

fi  # the checks

# ---- benchmarks -----------------------------------------------------------------------
# --network: benchmarks/test_bench_network.py's rows that VGGKERN_BENCH_K selects.
BENCH_PATHS=(benchmarks); RUN_FILTER=()
if [ $NETWORK = 1 ]; then
  BENCH_PATHS=(benchmarks/test_bench_network.py -k "${VGGKERN_BENCH_K:-fp16 and not compile}")
  RUN_FILTER=(--filter network-)
elif [ $FOCUS = 1 ] && [ -n "${VGGKERN_BENCH_K:-}" ]; then
  BENCH_PATHS=(benchmarks -k "$VGGKERN_BENCH_K")
fi
DEADLINE=$(( $(date +%s) + $(left) - 50 ))  # 15 s for the case in flight: the timeout below keeps 35 s
# Each timed case is also appended to a journal as it finishes (benchmarks/journal.py):
# pytest-benchmark writes its JSON only at the end, and a run killed by the time limit
# (a hung kernel) would otherwise leave no results at all.
export VGGKERN_BENCH_JOURNAL="$OUT/bench_rows.jsonl"
rm -f "$VGGKERN_BENCH_JOURNAL"
step "benchmarks (--bench-set $SET, new cases stop at $(( DEADLINE - START ))s)"
if $PY -c "import pytest_benchmark" 2>/dev/null; then
  RUNNER="pytest-benchmark"
  BT=$(( $(left) - 35 )); [ $BT -lt 10 ] && BT=10
  timeout $BT $PY -m pytest "${BENCH_PATHS[@]}" -q -p no:cacheprovider --bench-set $SET \
    --bench-deadline $DEADLINE --benchmark-json "$OUT/results.json" \
    --benchmark-columns=median,iqr,rounds --benchmark-sort=name >"$OUT/bench.log" 2>&1
else
  RUNNER="python -m benchmarks.run (pytest-benchmark missing)"
  BT=$(( $(left) - 35 )); [ $BT -lt 10 ] && BT=10
  timeout $BT $PY -m benchmarks.run --set $SET --deadline $DEADLINE ${RUN_FILTER[@]+"${RUN_FILTER[@]}"} \
    --json "$OUT/results.json" >"$OUT/bench.log" 2>&1
fi
rc=$?
STATUS+=("benchmarks ($RUNNER): rc=$rc, $(grep -E '(passed|skipped|timed|failed)' "$OUT/bench.log" | tail -1)")
# A results.json that report.load cannot read (a run killed while writing it: non-empty
# but cut short) is kept aside as results.broken.json, and the journal stands in for it.
if [ -s "$OUT/results.json" ] && ! $PY -c "import sys; from benchmarks import report; report.load(sys.argv[1])" \
    "$OUT/results.json" 2>/dev/null; then
  mv "$OUT/results.json" "$OUT/results.broken.json"
  STATUS+=("benchmarks: results.json unreadable (kept as results.broken.json)")
fi
if [ ! -s "$OUT/results.json" ] && [ -s "$VGGKERN_BENCH_JOURNAL" ]; then
  STATUS+=("benchmarks: no results.json (the run did not finish): $($PY -m benchmarks.journal \
    "$VGGKERN_BENCH_JOURNAL" "$OUT/results.json" 2>&1 | tail -1), marked partial")
fi

# Record the steps' outcome in the JSON too.
if [ -s "$OUT/results.json" ]; then
  printf '%s\n' "${STATUS[@]}" | $PY -c "
import json, sys
p = sys.argv[1]; d = json.load(open(p))
d['vggkern_device_steps'] = [l.rstrip() for l in sys.stdin if l.strip()]
json.dump(d, open(p, 'w'), indent=1, default=str)" "$OUT/results.json"
fi

# The counted floors and implicit_gemm's predicted ceiling for this GPU, to read the
# measurements against (a model: benchmarks/roofline.py).
# One process for the three tables (each start imports torch).
timeout 20 $PY -c "
import torch
from benchmarks import peaks, roofline
key = peaks.gpu_key(torch.cuda.get_device_name(0)) if torch.cuda.is_available() else None
if key:
    for i, tile in enumerate(([], ['--tile', 'wgmma'], ['--tile', 'wgmma-wide'], ['--tile', 'wgmma-ws'])):
        print() if i else None
        roofline.main(['--batch', '64', '--gpu', key, *tile])" >"$OUT/roofline.md" 2>&1

# ---- report (last: the summary table) ---------------------------------------------------
step "done in $(elapsed)s"
printf '  %s\n' "${STATUS[@]}"
if [ -s "$OUT/results.json" ]; then
  $PY -m benchmarks.report "$OUT/results.json" --md "$OUT/summary.md" --plot "$OUT/speedup.png" --headline
else
  echo "no results.json: see $OUT/bench.log"; tail -30 "$OUT/bench.log"
fi
