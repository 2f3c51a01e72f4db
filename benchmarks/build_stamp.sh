#!/usr/bin/env bash
# One line that names what the extension's build depends on: the sources (setup.py,
# pyproject.toml and csrc/, by content), the Python and torch it builds against, and the
# CUDA architectures. benchmarks/preflight.sh writes it beside the extension it builds for
# the device (device_build/stamp); benchmarks/device_run.sh uses that build only where
# this line, computed there, is the same.
#   bash benchmarks/build_stamp.sh [PYTHON]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}
sources=$(find setup.py pyproject.toml csrc -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)
echo "sources $sources $("$PY" -c "import sys, torch; print('python %d.%d' % sys.version_info[:2], 'torch', torch.__version__)") archs ${TORCH_CUDA_ARCH_LIST:-unset}"
