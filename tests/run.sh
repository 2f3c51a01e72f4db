#!/usr/bin/env bash
# The test command (README's second command; .ci/run calls it). On a fresh machine:
# installs the dependencies, builds the extension (CUDA kernels when nvcc exists: for the
# visible GPUs, or for sm_90a where none is; else CPU-only), builds and runs the emulator's
# C++ tests (and the CUDA probe, for the same architectures), then pytest.
# Without a GPU the CUDA tests are skipped and every kernel runs through the emulator.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDA_HOME=/usr/local/cuda; fi
export MAX_JOBS="${MAX_JOBS:-2}"
PY="${PYTHON:-python3}"

echo "== dependencies"
"$PY" -m pip install -q -r requirements-dev.txt
# TORCH_CUDA_ARCH_LIST unset: with a GPU visible setup.py builds for it; without one (CI),
# for H100/H200 alone (sm_90a), not setup.py's 8.0;9.0a, which would double the build.
if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ] && ! "$PY" -c "import sys, torch; sys.exit(torch.cuda.device_count() == 0)"; then
  export TORCH_CUDA_ARCH_LIST=9.0a
fi

echo "== build the extension"
"$PY" -m pip install -q --no-build-isolation -e . 2>&1 | { grep -v "Running pip as the 'root' user" || true; }
"$PY" -c "import vggkern; print('vggkern', vggkern.__version__, vggkern.build_info())"

echo "== emulator C++ tests (CMake)"
mkdir -p build
cmake_args=()
if [ -n "${CUDA_HOME:-}" ]; then
  # The extension's architectures, in CMake's spelling ("8.0;9.0a+PTX" -> "80;90a").
  archs=$("$PY" -c "import vggkern; print(vggkern.build_info()['cuda_archs'])")
  cmake_args+=("-DCMAKE_CUDA_COMPILER=$CUDA_HOME/bin/nvcc")
  if [ -n "$archs" ]; then cmake_args+=("-DCMAKE_CUDA_ARCHITECTURES=$(echo "$archs" | tr ' ' ';' | sed 's/+PTX//g; s/\.//g')"); fi
fi
cmake -S . -B build/cmake "${cmake_args[@]}" > build/cmake.log 2>&1 || { cat build/cmake.log; exit 1; }
cmake --build build/cmake -j"$MAX_JOBS" >> build/cmake.log 2>&1 || { tail -50 build/cmake.log; exit 1; }
grep "vggkern:" build/cmake.log || true
ctest --test-dir build/cmake --output-on-failure

echo "== CPU-only install from the sdist (what a machine without nvcc installs)"
# The source distribution, made as pip and `python -m build` make it, must build a
# CPU-only wheel (VGGKERN_CPU_ONLY=1) that installs, imports from where it was installed,
# says so, and runs the ops through the emulator (a subset of the tests, the sdist's own:
# the kernels are the same).
cpu_dir="$PWD/build/cpu-only"
rm -rf "$cpu_dir" && mkdir -p "$cpu_dir"
sdist=$(VGGKERN_CPU_ONLY=1 "$PY" -c "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))" \
  "$cpu_dir" 2> "$cpu_dir/sdist.log" | tail -1) || { tail -40 "$cpu_dir/sdist.log"; exit 1; }
# --no-cache-dir: pip caches a wheel built from a local archive by its path, so a second
# run would test the first run's wheel.
VGGKERN_CPU_ONLY=1 "$PY" -m pip wheel -q --no-cache-dir --no-build-isolation --no-deps -w "$cpu_dir/dist" "$cpu_dir/$sdist" \
  > "$cpu_dir/build.log" 2>&1 || { tail -40 "$cpu_dir/build.log"; exit 1; }
tar xzf "$cpu_dir/$sdist" -C "$cpu_dir"
src="$cpu_dir/${sdist%.tar.gz}"
PIP_ROOT_USER_ACTION=ignore "$PY" -m pip install -q --no-deps --target "$cpu_dir/site" "$cpu_dir"/dist/vggkern-*.whl
(cd "$src/tests" && PYTHONPATH="$cpu_dir/site" "$PY" -c "
import os, vggkern
info = vggkern.build_info()
assert not info['cuda_kernels'], info
assert vggkern.__file__.startswith('$cpu_dir/site/'), vggkern.__file__
print('CPU-only install:', os.path.dirname(vggkern.__file__), info)" \
  && PYTHONPATH="$cpu_dir/site" "$PY" -m pytest -q test_maxpool2x2.py test_conv3x3.py \
  -k "not indices_beyond and (bad or opcheck or algorithms or epilogue)" -m "not gpu" -p no:cacheprovider) || exit 1

echo "== pytest"
paths=(tests)
if [ -d benchmarks ] && ls benchmarks/*.py > /dev/null 2>&1; then paths+=(benchmarks); fi
"$PY" -m pytest "${paths[@]}" -ra "$@"
