#!/usr/bin/env bash
# The test command (README's second command; .ci/run calls it). On a fresh machine:
# installs the dependencies, builds the extension (CUDA kernels for sm_90a when nvcc
# exists, else CPU-only), builds and runs the emulator's C++ tests, then pytest.
# Without a GPU the CUDA tests are skipped and every kernel runs through the emulator.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDA_HOME=/usr/local/cuda; fi
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0a}"
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

echo "== CPU-only build (what a machine without nvcc installs)"
# A copy of the tree built with VGGKERN_CPU_ONLY=1 must build, import, say so, and run
# the ops through the emulator (a subset of the tests: the kernels are the same).
cpu_dir=build/cpu-only
rm -rf "$cpu_dir" && mkdir -p "$cpu_dir"
cp -r setup.py pyproject.toml csrc vggkern tests "$cpu_dir"/
rm -f "$cpu_dir"/vggkern/_C*.so
(cd "$cpu_dir" && VGGKERN_CPU_ONLY=1 "$PY" setup.py build_ext --inplace > build.log 2>&1) \
  || { tail -40 "$cpu_dir/build.log"; exit 1; }
(cd "$cpu_dir" && "$PY" -c "
import vggkern
info = vggkern.build_info()
assert not info['cuda_kernels'], info
print('CPU-only build:', info)" && "$PY" -m pytest -q tests/test_maxpool2x2.py tests/test_conv3x3.py \
  -k "not indices_beyond and (bad or opcheck or algorithms or epilogue)" -p no:cacheprovider) || exit 1

echo "== pytest"
paths=(tests)
if [ -d benchmarks ] && ls benchmarks/*.py > /dev/null 2>&1; then paths+=(benchmarks); fi
"$PY" -m pytest "${paths[@]}" -ra "$@"
