#!/usr/bin/env bash
# The test command (README's second command; .ci/run calls it). On a fresh machine:
# installs the dependencies, builds the extension (CUDA kernels for sm_90 when nvcc
# exists, else CPU-only), builds and runs the emulator's C++ tests, then pytest.
# Without a GPU the CUDA tests are skipped and every kernel runs through the emulator.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDA_HOME=/usr/local/cuda; fi
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export MAX_JOBS="${MAX_JOBS:-2}"
PY="${PYTHON:-python3}"

echo "== dependencies"
"$PY" -m pip install -q -r requirements-dev.txt

echo "== build the extension"
"$PY" -m pip install -q --no-build-isolation -e . 2>&1 | grep -v "Running pip as the 'root' user" || true
"$PY" -c "import vggkern; print('vggkern', vggkern.__version__, vggkern.build_info())"

echo "== emulator C++ tests (CMake)"
mkdir -p build
cmake_args=()
if [ -n "${CUDA_HOME:-}" ]; then cmake_args+=("-DCMAKE_CUDA_COMPILER=$CUDA_HOME/bin/nvcc"); fi
cmake -S . -B build/cmake "${cmake_args[@]}" > build/cmake.log 2>&1 || { cat build/cmake.log; exit 1; }
cmake --build build/cmake -j"$MAX_JOBS" >> build/cmake.log 2>&1 || { tail -50 build/cmake.log; exit 1; }
grep "vggkern:" build/cmake.log || true
ctest --test-dir build/cmake --output-on-failure

echo "== pytest"
paths=(tests)
if [ -d benchmarks ] && ls benchmarks/*.py > /dev/null 2>&1; then paths+=(benchmarks); fi
"$PY" -m pytest "${paths[@]}" -ra "$@"
