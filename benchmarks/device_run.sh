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
# and writes under $OUT (default ./device_out) at most 7 files, as the device tool returns
# at most 8:
#   results.json  summary.md  speedup.png  roofline.md  ncu.md (hardware counters of
#   implicit_gemm and cuDNN on two layers; not in --quick)
#   bench_rows.jsonl (the benchmarks' rows as they finished: results.json is made from it
#   where the benchmark run was killed before writing its own, or left it cut short: then
#   kept as results.broken.json in the logs)
#   logs.tgz: status.txt (the steps' outcome so far), build.log, tests.log, sanitize.log,
#   bench.log, ncu.log, ncu.csv, ncu.ncu-rep, ceilings.json; packed again as each step starts, so a
#   run killed at the device tool's limit still returns the logs of every finished step
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
# Set VGGKERN_GIT_COMMIT=<sha>: the commit the JSON records (over a .git's HEAD, which may be stale).
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
LOGS=$(mktemp -d "${TMPDIR:-/tmp}/vggkern_device_logs.XXXXXX")
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
STATUS=()
# The logs and the steps' outcome so far, into one file of $OUT (written aside, then renamed).
pack() {
  printf '%s\n' ${STATUS[@]+"${STATUS[@]}"} >"$LOGS/status.txt"
  tar -czf "$OUT/logs.tgz.part" -C "$LOGS" . 2>/dev/null && mv -f "$OUT/logs.tgz.part" "$OUT/logs.tgz"
}
step() { pack; echo "== [$(elapsed)s] $*"; }
# timeout, with a KILL 5 s after its TERM (a process hung in the driver may not take TERM:
# rc 137 then), either way rc 124.
limited() { timeout -k 5 "$@"; local rc=$?; [ $rc = 137 ] && rc=124; return $rc; }

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
( [ $NETWORK = 0 ] && [ -n "${CUDA_HOME:-}" ] && limited 120 "$CUDA_HOME/bin/nvcc" -std=c++17 -O2 -gencode arch=compute_90a,code=sm_90a \
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
      >"$LOGS/build.log" 2>&1 && PREBUILT=1 && STATUS+=("build: preflight's, carried (stamp: $have)")
    [ $PREBUILT = 1 ] || { cat "$LOGS/build.log"; rm -f vggkern/_C*.so; echo "it does not import: building"; }
  else
    step "build: device_build/ is for another build (stamp '$want', here '$have'): building"
  fi
fi
if [ $PREBUILT = 0 ]; then
  step "build (python3 setup.py build_ext --inplace, MAX_JOBS=16)"
  BT=$(( $(left) - 120 )); [ $BT -lt 30 ] && BT=30
  if limited $BT $PY setup.py build_ext --inplace >"$LOGS/build.log" 2>&1; then
    STATUS+=("build: ok ($(elapsed)s)")
  else
    STATUS+=("build: FAILED rc=$? (see build.log)"); tail -20 "$LOGS/build.log"
  fi
fi
# Without this build imported nothing after it measures anything of ours (and an older
# build left on a warm machine must not stand in for it): stop, keeping the time left for
# a rerun once it is fixed.
if [[ "${STATUS[*]}" == *"build: FAILED"* ]] \
    || ! $PY -c "import torch, vggkern; print('vggkern', vggkern.__file__, vggkern.build_info())"; then
  [[ "${STATUS[*]}" == *"build: FAILED"* ]] || STATUS+=("import vggkern: FAILED")
  STATUS+=("stopped after $(elapsed)s: nothing else runs without this build")
  pack; printf '  %s\n' "${STATUS[@]}"
  exit 3
fi

# The checks (probes, GPU tests, sanitizer, counters): not in --network, which follows a
# full run that made them on the same kernels.
if [ $NETWORK = 1 ]; then
  STATUS+=("probes, GPU tests, sanitizer, counters: not run (--network)")
else
# ---- tensor-core probe ----------------------------------------------------------------
# The instruction wrappers alone (ldmatrix, mma.sync, wgmma), each against the exact
# product or the PTX ISA's fragment layout: a wrong layout shows here by instruction name.
step "tensor-core probe (tests/tensor_core_probe.cu)"
: >"$LOGS/tests.log"
PT=$(cap 60 10)
if [ "$PT" = 0 ]; then
  STATUS+=("tensor-core probe: skipped ($(left)s left)")
elif wait $PROBE_BUILD && [ -x "$PROBE" ]; then
  limited "$PT" "$PROBE" >>"$LOGS/tests.log" 2>&1
  rc=$?
  grep -E "DIFFERS|probe:" "$LOGS/tests.log" | head -40
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
  limited "$WT" $PY benchmarks/wgmma_probe.py 2>&1 | tee -a "$LOGS/tests.log"
  rc=${PIPESTATUS[0]}
fi
# The GPU tests left out (a pytest -k expression, every term ANDed), and the ws tiles'
# removal from every later step (their tests, the sanitizer case and the benchmarks).
TESTS_OUT=""
leave_out_tests() { TESTS_OUT="${TESTS_OUT:+$TESTS_OUT and }$1"; }
WS_OUT=0
leave_out_ws() {
  [ $WS_OUT = 1 ] && return
  WS_OUT=1
  export VGGKERN_BENCH_EXCLUDE_TILES="${VGGKERN_BENCH_EXCLUDE_TILES:+$VGGKERN_BENCH_EXCLUDE_TILES,}ws128x256,ws128x128"
  leave_out_tests "not ws128x256 and not ws128x128 and not wgmma-ws"
}
LEFT_OUT="wgmma tiles left out of the GPU tests, sanitizer and sweep"
case $rc in
  0) STATUS+=("wgmma probe: every wgmma tile matches the emulator bit for bit");;
  2) STATUS+=("wgmma probe: not runnable here");;
  *) case $rc in  # unproven tiles stay out: a faulting kernel would poison the later steps' CUDA context
       skipped) STATUS+=("wgmma probe: skipped ($(left)s left): $LEFT_OUT");;
       124) STATUS+=("wgmma probe: TIMEOUT after ${WT}s: $LEFT_OUT");;
       *) STATUS+=("wgmma probe: FAILED rc=$rc: $LEFT_OUT");;
     esac
     export VGGKERN_BENCH_EXCLUDE_TILES=wg128x128,wg256x64,wg128x256
     leave_out_tests "not wg128x128 and not wg256x64 and not wg128x256 and not wgmma"
     leave_out_ws;;
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
    limited "$TMAT" $PY benchmarks/wgmma_probe.py --tensor-loads 2>&1 | tee -a "$LOGS/tests.log"
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
    leave_out_tests "not tensor_loads"
  else
    case $trc in skipped) why="skipped ($(left)s left)";; 124) why="TIMEOUT after ${TMAT}s";; *) why="FAILED rc=$trc";; esac
    STATUS+=("tensor-load probe: $why: tensor loads off (VGGKERN_IMPLICIT_GEMM_TMA=off), their tests left out")
    export VGGKERN_IMPLICIT_GEMM_TMA=off
    leave_out_tests "not tensor_loads"
  fi
  # The ws tiles at scale (a persistent block on every SM, stream-K's parts adding into
  # each other's tiles under real concurrency: what the emulator cannot run), in a process
  # of its own with the copies chosen above, so that a hang or a fault there costs this
  # step's limit once instead of every later step's. Exit 3 (or a hang after its whole
  # tiles passed): stream-K alone is wrong, and every later step runs whole tiles.
  step "ws tiles at scale (benchmarks/wgmma_probe.py --scale)"
  SCT=$(cap 45 20)
  if [ "$SCT" = 0 ]; then
    src=skipped
  else
    limited "$SCT" $PY benchmarks/wgmma_probe.py --scale 2>&1 | tee "$LOGS/scale.log" >>"$LOGS/tests.log"
    src=${PIPESTATUS[0]}
    grep -E "^wgmma probe:|^  [0-9]+ of [0-9]+ elements" "$LOGS/scale.log" | grep -v "matches" | head -12
    [ "$src" = 124 ] && grep -q "^wgmma probe: at scale, whole tiles: every case matches" "$LOGS/scale.log" && src=3
  fi
  case $src in
    0) STATUS+=("scale probe: the ws tiles on every SM, whole tiles and stream-K, match the exact sums");;
    2) STATUS+=("scale probe: not runnable here");;
    3) STATUS+=("scale probe: stream-K FAILED or hung: VGGKERN_IMPLICIT_GEMM_STREAM_K=off, its tests left out")
       export VGGKERN_IMPLICIT_GEMM_STREAM_K=off
       leave_out_tests "not stream_k";;
    *) case $src in skipped) why="skipped ($(left)s left)";; 124) why="TIMEOUT after ${SCT}s";; *) why="FAILED rc=$src";; esac
       STATUS+=("scale probe: $why: the ws tiles left out of the GPU tests, sanitizer and benchmarks")
       leave_out_ws;;
  esac
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
  K_EXPR=$TESTS_OUT
  if [ $FOCUS = 1 ] && [ -n "${VGGKERN_TEST_K:-}" ]; then  # its selection, less the tests left out
    K_EXPR="($VGGKERN_TEST_K)${TESTS_OUT:+ and ($TESTS_OUT)}"
  fi
  K_ARGS=(); [ -n "$K_EXPR" ] && K_ARGS=(-k "$K_EXPR")
  limited $TT $PY -m pytest tests -m gpu -q -p no:cacheprovider ${XDIST[@]+"${XDIST[@]}"} \
    ${K_ARGS[@]+"${K_ARGS[@]}"} >>"$LOGS/tests.log" 2>&1
  rc=$?
fi
case $rc in
  skipped) STATUS+=("gpu tests: skipped ($(left)s left)");;
  0) STATUS+=("gpu tests: passed ($(tail -1 "$LOGS/tests.log"))");;
  5) STATUS+=("gpu tests: none collected (no tests marked gpu in tests/)");;
  124) STATUS+=("gpu tests: TIMEOUT after ${TT}s: the ws tiles and stream-K left out of the later steps")
       leave_out_ws  # a hang is likeliest in what never ran on a GPU before; the rest has
       export VGGKERN_IMPLICIT_GEMM_STREAM_K=off;;
  *) STATUS+=("gpu tests: FAILED rc=$rc ($(tail -1 "$LOGS/tests.log"))");;
esac
tail -3 "$LOGS/tests.log"

# ---- compute-sanitizer ----------------------------------------------------------------
SAN=$(command -v compute-sanitizer || true)
[ -z "$SAN" ] && [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/compute-sanitizer" ] && SAN=$CUDA_HOME/bin/compute-sanitizer
: >"$LOGS/sanitize.log"
# --quick: memcheck only (racecheck instruments every shared-memory access: the slow one).
TOOLS=(memcheck racecheck); [ $QUICK = 1 ] && [ $FOCUS = 0 ] && TOOLS=(memcheck)
for tool in "${TOOLS[@]}"; do
  step "compute-sanitizer --tool $tool (small conv/pool case)"
  if [ -z "$SAN" ]; then STATUS+=("$tool: compute-sanitizer not found"); continue; fi
  ST=$(cap $(( QUICK ? 50 : 75 )) 30)
  if [ "$ST" = 0 ]; then STATUS+=("$tool: skipped ($(left)s left)"); continue; fi
  echo "===== $tool =====" >>"$LOGS/sanitize.log"
  # sanitize_case.py starts no case past its deadline (an epoch time, 15 s before the
  # step's limit: the case in flight and the sanitizer's report), so it ends with a
  # verdict and a count of the cases it ran (its first three rounds: every algorithm and
  # tile in each dtype).
  PYTORCH_NO_CUDA_MEMORY_CACHING=1 limited $ST "$SAN" --tool $tool --error-exitcode 3 --print-limit 20 \
    $PY benchmarks/sanitize_case.py --deadline $(( $(date +%s) + ST - 15 )) >>"$LOGS/sanitize.log" 2>&1
  rc=$?
  RAN=$(sed -n '/^===== '$tool' =====/,$p' "$LOGS/sanitize.log" | grep -E "^conv3x3: [0-9]+ of" | tail -1)
  case $rc in
    0) STATUS+=("$tool: clean (${RAN:-no conv count})");;
    3) STATUS+=("$tool: ERRORS reported (see sanitize.log)");;
    4) STATUS+=("$tool: results differ from torch (see sanitize.log)");;
    124) STATUS+=("$tool: TIMEOUT after ${ST}s");;
    *) STATUS+=("$tool: rc=$rc: the driver failed (a Python error or a fault; see sanitize.log)");;
  esac
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize_case:|Device not supported" "$LOGS/sanitize.log" | tail -3
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
              --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats -f -o "$LOGS/ncu")
    METRICS=$($PY -c "from benchmarks.ncu_summary import RAW_METRICS; print(','.join(RAW_METRICS))")
    NT=$(( NT - 12 ))  # the last 12 s: the report's import below
    limited $NT "$NCU" "${NCU_ARGS[@]}" --metrics "$METRICS" $PY benchmarks/ncu_case.py >"$LOGS/ncu.log" 2>&1
    rc=$?
    LEFT_NCU=$(( NT - ($(elapsed) - T0) ))
    if [ $rc != 0 ] && [ $rc != 124 ] && [ $rc != 2 ] && [ $LEFT_NCU -gt 30 ]; then  # a raw metric unknown here?
      echo "== rc=$rc: again without --metrics (the sections only)" >>"$LOGS/ncu.log"
      limited $LEFT_NCU "$NCU" "${NCU_ARGS[@]}" $PY benchmarks/ncu_case.py >>"$LOGS/ncu.log" 2>&1
      rc=$?
    fi
    grep -E "^ncu_case:|==ERROR==" "$LOGS/ncu.log" | head -12
    if [ -s "$LOGS/ncu.ncu-rep" ]; then
      limited 10 "$NCU" --import "$LOGS/ncu.ncu-rep" --csv --page details --print-kernel-base function \
        >"$LOGS/ncu.csv" 2>>"$LOGS/ncu.log"
      $PY -m benchmarks.ncu_summary "$LOGS/ncu.csv" --md "$OUT/ncu.md" 2>>"$LOGS/ncu.log"
    fi
    case $rc in
      0) STATUS+=("ncu: $(grep -c '^ncu_case: profiled' "$LOGS/ncu.log") calls profiled (ncu.md, ncu.csv)");;
      2) STATUS+=("ncu: not runnable here (no GPU seen under ncu)");;
      124) STATUS+=("ncu: TIMEOUT after ${NT}s (ncu.md holds what it wrote, if anything)");;
      *) STATUS+=("ncu: rc=$rc (see ncu.log; counters may be unreadable on this machine: KINDS.md)");;
    esac
  fi
fi

fi  # the checks

# ---- backward (--network only) ---------------------------------------------------------
# benchmarks/backward.py: conv3x3's backward on VGG16's relu-only layers at batch 64, ReLU's
# mask from y against the recomputed conv (~10 s): its table in logs.tgz, the speed-ups in
# the status (results.json's vggkern_device_steps).
if [ $NETWORK = 1 ]; then
  step "backward (benchmarks/backward.py)"
  BWT=$(cap 40 15)
  if [ "$BWT" = 0 ]; then STATUS+=("backward: skipped ($(left)s left)")
  else
    limited $BWT $PY -m benchmarks.backward >"$LOGS/backward.txt" 2>&1
    STATUS+=("backward (benchmarks/backward.py): rc=$?, $(tail -1 "$LOGS/backward.txt")")
  fi
  cat "$LOGS/backward.txt" 2>/dev/null
fi

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
# The clocks while they run, once a second (read only: the card's settings are left alone).
CLOCKS_Q=clocks.sm,clocks.max.sm,temperature.gpu,power.draw,clocks_event_reasons.active
nvidia-smi --query-gpu=$CLOCKS_Q --format=csv,noheader,nounits >/dev/null 2>&1 \
  || CLOCKS_Q=${CLOCKS_Q/clocks_event_reasons/clocks_throttle_reasons}  # an older driver's name
nvidia-smi --query-gpu=$CLOCKS_Q --format=csv,noheader,nounits -lms 1000 >"$LOGS/clocks.csv" 2>/dev/null &
CLOCKS_PID=$!
if $PY -c "import pytest_benchmark" 2>/dev/null; then
  RUNNER="pytest-benchmark"
  BT=$(( $(left) - 35 )); [ $BT -lt 10 ] && BT=10
  limited $BT $PY -m pytest "${BENCH_PATHS[@]}" -q -p no:cacheprovider --bench-set $SET \
    --bench-deadline $DEADLINE --benchmark-json "$OUT/results.json" \
    --benchmark-columns=median,iqr,rounds --benchmark-sort=name >"$LOGS/bench.log" 2>&1
else
  RUNNER="python -m benchmarks.run (pytest-benchmark missing)"
  BT=$(( $(left) - 35 )); [ $BT -lt 10 ] && BT=10
  limited $BT $PY -m benchmarks.run --set $SET --deadline $DEADLINE ${RUN_FILTER[@]+"${RUN_FILTER[@]}"} \
    --json "$OUT/results.json" >"$LOGS/bench.log" 2>&1
fi
rc=$?
kill $CLOCKS_PID 2>/dev/null
STATUS+=("benchmarks ($RUNNER): rc=$rc, $(grep -E '(passed|skipped|timed|failed)' "$LOGS/bench.log" | tail -1)")
$PY -m benchmarks.ceilings --clocks "$LOGS/clocks.csv" --json "$LOGS/clocks.json" >"$LOGS/clocks.txt" 2>&1 \
  && STATUS+=("$(cat "$LOGS/clocks.txt")")
# A results.json that report.load cannot read (a run killed while writing it: non-empty
# but cut short) is kept aside as results.broken.json, and the journal stands in for it.
if [ -s "$OUT/results.json" ] && ! $PY -c "import sys; from benchmarks import report; report.load(sys.argv[1])" \
    "$OUT/results.json" 2>/dev/null; then
  mv "$OUT/results.json" "$LOGS/results.broken.json"
  STATUS+=("benchmarks: results.json unreadable (kept as results.broken.json)")
fi
if [ ! -s "$OUT/results.json" ] && [ -s "$VGGKERN_BENCH_JOURNAL" ]; then
  STATUS+=("benchmarks: no results.json (the run did not finish): $($PY -m benchmarks.journal \
    "$VGGKERN_BENCH_JOURNAL" "$OUT/results.json" 2>&1 | tail -1), marked partial")
fi

# The GPU's measured ceilings (benchmarks/ceilings.py: cuBLAS's fp16 and bf16 matmul, a
# device-to-device copy; ~2 s of GPU time), then the counted floors and implicit_gemm's
# predicted ceiling for this GPU, to read the measurements against (a model:
# benchmarks/roofline.py). One process (each start imports torch).
limited 25 $PY -c "
import sys, torch
from benchmarks import ceilings, peaks, roofline
key = peaks.gpu_key(torch.cuda.get_device_name(0)) if torch.cuda.is_available() else None
if torch.cuda.is_available():
    try:
        ceilings.main(['--json', sys.argv[1]])
    except Exception as e:  # the tables below still print
        print('ceilings: FAILED:', type(e).__name__, str(e)[:200])
if key:
    for i, tile in enumerate(([], ['--tile', 'wgmma'], ['--tile', 'wgmma-wide'], ['--tile', 'wgmma-ws'])):
        print()
        roofline.main(['--batch', '64', '--gpu', key, *tile])" "$LOGS/ceilings.json" >"$OUT/roofline.md" 2>&1
[ -s "$LOGS/ceilings.json" ] && STATUS+=("$(head -1 "$OUT/roofline.md")")

# Record the steps' outcome, the ceilings and the clocks in the JSON too.
if [ -s "$OUT/results.json" ]; then
  printf '%s\n' "${STATUS[@]}" | $PY -c "
import json, os, sys
p, logs = sys.argv[1:]; d = json.load(open(p))
d['vggkern_device_steps'] = [l.rstrip() for l in sys.stdin if l.strip()]
for key, name in (('vggkern_ceilings', 'ceilings.json'), ('vggkern_clocks', 'clocks.json')):
    if os.path.exists(os.path.join(logs, name)):
        d[key] = json.load(open(os.path.join(logs, name)))
json.dump(d, open(p, 'w'), indent=1, default=str)" "$OUT/results.json" "$LOGS"
fi

# ---- report (last: the summary table) ---------------------------------------------------
step "done in $(elapsed)s"
printf '  %s\n' "${STATUS[@]}"
if [ -s "$OUT/results.json" ]; then
  $PY -m benchmarks.report "$OUT/results.json" --md "$OUT/summary.md" --plot "$OUT/speedup.png" --headline
else
  echo "no results.json: see bench.log in logs.tgz"; tail -30 "$LOGS/bench.log"
fi
pack
