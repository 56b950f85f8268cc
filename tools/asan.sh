#!/usr/bin/env bash
# Build threadloom's native core with AddressSanitizer and run tests under it.
#
#   tools/asan.sh [pytest arguments...]
#
# Default arguments: tests/test_core.py tests/test_executor.py -q
#
# The sanitized build is made in a copy of the tree (ASAN_TREE, default a new
# temporary directory), so no instrumented .so ever lands in the working tree
# where an ordinary run would load it.  CPython itself is not instrumented, so
# the ASan runtime is preloaded; PYTHONMALLOC=malloc routes Python's own
# allocations through it too, so a use-after-free of a PyObject is caught.
# Leak detection is off: the interpreter keeps memory until exit by design.
#
# Environment:
#   PYTHON      interpreter with setuptools, Cython, pytest and threadloom's
#               dependencies (default: python3)
#   CC          compiler whose libasan is preloaded (default: gcc; the build
#               must use the same one, which setuptools does by default)
#   ASAN_TREE   where to copy and build (kept afterwards, for inspection)
#   ASAN_OPTIONS  passed through; detect_leaks=0 is added unless it is set
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
cc="${CC:-gcc}"
tree="${ASAN_TREE:-$(mktemp -d "${TMPDIR:-/tmp}/threadloom-asan.XXXXXX")}"

libasan="$("$cc" -print-file-name=libasan.so)"
if [[ "$libasan" != /* || ! -e "$libasan" ]]; then
    echo "asan.sh: $cc has no libasan.so (got '$libasan'); install the compiler's ASan runtime" >&2
    exit 2
fi

echo "asan.sh: copying $repo to $tree" >&2
mkdir -p "$tree"
(
    cd "$repo"
    tar --exclude=.git --exclude=build --exclude='*.so' --exclude='*.pyd' \
        --exclude=__pycache__ --exclude=.ci-venv --exclude='.venv*' \
        --exclude=.mypy_cache --exclude=.ruff_cache --exclude=.hypothesis \
        --exclude=.pytest_cache --exclude=.benchmarks -cf - .
) | (cd "$tree" && tar -xf -)

cd "$tree"
echo "asan.sh: building with THREADLOOM_SANITIZE=address" >&2
THREADLOOM_SANITIZE=address "$python" setup.py -q build_ext --inplace --force

if [[ $# -eq 0 ]]; then
    set -- tests/test_core.py tests/test_executor.py -q
fi

export LD_PRELOAD="$libasan${LD_PRELOAD:+:$LD_PRELOAD}"
export PYTHONMALLOC=malloc
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}"
export PYTHONPATH="$tree/src"
export THREADLOOM_REQUIRE_EXTENSIONS=1
unset THREADLOOM_NO_EXTENSIONS

# Refuse to report a clean run of some other build: the core imported must be
# the instrumented one just built here.
"$python" - "$tree" <<'EOF'
import sys

import threadloom.core._core as core

if not core.__file__.startswith(sys.argv[1]):
    sys.exit(f"asan.sh: imported {core.__file__}, not the sanitized build in {sys.argv[1]}")
print(f"asan.sh: sanitized core {core.__file__}", file=sys.stderr)
EOF

echo "asan.sh: LD_PRELOAD=$LD_PRELOAD PYTHONMALLOC=$PYTHONMALLOC ASAN_OPTIONS=$ASAN_OPTIONS" \
    "PYTHONPATH=$PYTHONPATH $python -m pytest $* -p no:cacheprovider" >&2
exec "$python" -m pytest "$@" -p no:cacheprovider
