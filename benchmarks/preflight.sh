#!/usr/bin/env bash
# Pre-flight for a GPU session, run on a machine WITHOUT the GPU, before the session.
# The device image runs our code under its own Python and torch (the device tool's
# KINDS.md: Python 3.12, torch 2.11.0+cu130, torchvision 0.26.0), not the 3.11 / 2.14.1
# that CI tests; a build or API break there would cost the short device session. This
# installs those versions from PyPI into a venv, builds a clean clone of this checkout's
# HEAD against them (nvcc, sm_90a), runs the whole test suite (emulator), and runs
# benchmarks/device_run.sh --quick, which finds no GPU and so checks only its plumbing.
# The extension it builds is staged in device_build/ (git-ignored) for the device run to
# carry, so the device spends no time building it.
#
#   bash benchmarks/preflight.sh               # ~25 min on 2 cores; ~4 GB of wheels the first time
#   bash benchmarks/preflight.sh --build-only  # ~10 min: the build, staged, and the plumbing check;
#                                              # no test suite (for a session about to use the GPU)
#
# Environment: PY312 (a Python 3.12 interpreter; default python3.12 on PATH or pyenv's),
# TORCH_VERSION / TORCHVISION_VERSION (default the device image's), VENV (reused if there).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD_ONLY=0
[ "${1:-}" = "--build-only" ] && BUILD_ONLY=1
TORCH_VERSION=${TORCH_VERSION:-2.11.0}
TORCHVISION_VERSION=${TORCHVISION_VERSION:-0.26.0}
VENV=${VENV:-/tmp/vggkern-preflight-venv-$TORCH_VERSION}
# The first Python 3.12 that runs (pyenv's python3.12 shim exists but fails where 3.12
# is not the selected version).
if [ -z "${PY312:-}" ]; then
  for c in "$(command -v python3.12 || true)" "$HOME"/.pyenv/versions/3.12*/bin/python; do
    [ -n "$c" ] && "$c" -c "import sys; assert sys.version_info[:2] == (3, 12)" 2>/dev/null && { PY312=$c; break; }
  done
fi
[ -n "${PY312:-}" ] || { echo "preflight: no Python 3.12 found (set PY312)"; exit 2; }
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda} TORCH_CUDA_ARCH_LIST=9.0a MAX_JOBS=${MAX_JOBS:-2}
export PATH="$CUDA_HOME/bin:$PATH"

if [ ! -x "$VENV/bin/python" ]; then
  "$PY312" -m venv "$VENV"
  "$VENV/bin/pip" install -q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" \
    pytest pytest-benchmark pytest-xdist ninja pybind11 numpy
fi
PY="$VENV/bin/python"
"$PY" -c "import sys, torch, torchvision; print('preflight: python', sys.version.split()[0], 'torch', torch.__version__, 'torchvision', torchvision.__version__)"

WORK=$(mktemp -d /tmp/vggkern-preflight.XXXXXX)
git clone -q "$REPO" "$WORK/repo"
cd "$WORK/repo"
echo "preflight: commit $(git rev-parse --short HEAD) in $WORK/repo"

echo "preflight: build (setup.py build_ext --inplace)"
"$PY" setup.py build_ext --inplace >"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log"; echo "preflight: BUILD FAILED"; exit 1; }
"$PY" -c "import vggkern; print('preflight: built', vggkern.build_info())"
# The build, staged for the device: device_run.sh takes it instead of building (~2 min of
# device time) where its stamp (benchmarks/build_stamp.sh) matches there. Carry it:
# run(..., carry=["device_build"]).
rm -rf "$REPO/device_build" && mkdir -p "$REPO/device_build"
cp vggkern/_C*.so "$REPO/device_build/"
bash benchmarks/build_stamp.sh "$PY" >"$REPO/device_build/stamp"
echo "preflight: staged $(ls "$REPO"/device_build/_C*.so) ($(cat "$REPO/device_build/stamp"))"

if [ $BUILD_ONLY = 0 ]; then
  echo "preflight: pytest tests benchmarks"
  XDIST=(); "$PY" -c "import xdist" 2>/dev/null && XDIST=(-n "$MAX_JOBS")
  PYTHONPATH="$PWD" "$PY" -m pytest tests benchmarks -q -p no:cacheprovider ${XDIST[@]+"${XDIST[@]}"} >"$WORK/tests.log" 2>&1 \
    || { tail -30 "$WORK/tests.log"; echo "preflight: TESTS FAILED"; exit 1; }
  tail -1 "$WORK/tests.log"
fi

echo "preflight: benchmarks/device_run.sh --quick (no GPU: the plumbing only, on the staged build)"
cp -r "$REPO/device_build" .
OUT="$WORK/device_out" PYTHON="$PY" VGGKERN_GIT_COMMIT=$(git rev-parse HEAD) \
  bash benchmarks/device_run.sh --quick >"$WORK/device_run.log" 2>&1 || true
sed -n '/^== \[[0-9]*s\] done/,$p' "$WORK/device_run.log" | head -12
grep -q "build: preflight's, carried" "$WORK/device_run.log" || { echo "preflight: device_run.sh did not take the staged build"; exit 1; }
grep -q "gpu tests: passed" "$WORK/device_run.log" || { echo "preflight: device_run.sh's GPU-test step did not pass (collection or plumbing)"; exit 1; }
echo "preflight: ok (logs in $WORK)"
