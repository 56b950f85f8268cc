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

source "$(dirname "$0")/_sanitizer.sh"
sanitizer_build asan.sh libasan.so address "${ASAN_TREE:-}"

if [[ $# -eq 0 ]]; then
    set -- tests/test_core.py tests/test_executor.py -q
fi

export LD_PRELOAD="$runtime${LD_PRELOAD:+:$LD_PRELOAD}"
export PYTHONMALLOC=malloc
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}"
export PYTHONPATH="$tree/src"
export THREADLOOM_REQUIRE_EXTENSIONS=1
unset THREADLOOM_NO_EXTENSIONS

# Refuse to report a clean run of some other build.
sanitizer_check_core asan.sh "$python"

echo "asan.sh: LD_PRELOAD=$LD_PRELOAD PYTHONMALLOC=$PYTHONMALLOC ASAN_OPTIONS=$ASAN_OPTIONS" \
    "PYTHONPATH=$PYTHONPATH $python -m pytest $* -p no:cacheprovider" >&2
exec "$python" -m pytest "$@" -p no:cacheprovider
