#!/usr/bin/env bash
# Build threadloom's native core with ThreadSanitizer and run tests under it.
#
#   tools/tsan.sh [pytest arguments...]
#
# Default arguments: tests/test_core.py tests/test_executor.py -q
#
# The same approach as tools/asan.sh: the sanitized build is made in a copy of
# the tree (TSAN_TREE, default a new temporary directory), so no instrumented
# .so lands in the working tree; CPython itself is not instrumented, so the
# TSan runtime is preloaded.  Only the core's own memory accesses are checked,
# but every lock and condition variable (the GIL's included) goes through the
# runtime's pthread interceptors, so TSan knows what they order.
#
# Reports go to files (log_path: pytest captures stderr, and would show a
# report only with a failed test) in $TSAN_TREE/tsan-reports/, also those of
# the subprocesses some tests start, which inherit the environment; the
# script prints them at the end and fails if there is any.  tools/tsan.supp
# lists what is suppressed and why; keep it narrow.
#
# Environment:
#   PYTHON      interpreter with setuptools, Cython, pytest and threadloom's
#               dependencies (default: python3)
#   CC          compiler whose libtsan is preloaded (default: gcc; the build
#               must use the same one, which setuptools does by default).
#               Debian: apt-get install libtsan2 (gcc 12).
#   TSAN_TREE   where to copy and build (kept afterwards, for inspection)
#   TSAN_OPTIONS  passed through; the defaults below are added unless set
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
cc="${CC:-gcc}"
tree="${TSAN_TREE:-$(mktemp -d "${TMPDIR:-/tmp}/threadloom-tsan.XXXXXX")}"

libtsan="$("$cc" -print-file-name=libtsan.so)"
if [[ "$libtsan" != /* || ! -e "$libtsan" ]]; then
    echo "tsan.sh: $cc has no libtsan.so (got '$libtsan'); install the compiler's TSan runtime" \
        "(Debian: apt-get install libtsan2)" >&2
    exit 2
fi

echo "tsan.sh: copying $repo to $tree" >&2
mkdir -p "$tree"
(
    cd "$repo"
    tar --exclude=.git --exclude=build --exclude='*.so' --exclude='*.pyd' \
        --exclude=__pycache__ --exclude=.ci-venv --exclude='.venv*' \
        --exclude=.mypy_cache --exclude=.ruff_cache --exclude=.hypothesis \
        --exclude=.pytest_cache --exclude=.benchmarks -cf - .
) | (cd "$tree" && tar -xf -)

cd "$tree"
echo "tsan.sh: building with THREADLOOM_SANITIZE=thread" >&2
THREADLOOM_SANITIZE=thread "$python" setup.py -q build_ext --inplace --force

if [[ $# -eq 0 ]]; then
    set -- tests/test_core.py tests/test_executor.py -q
fi

# TSan maps its shadow memory at fixed addresses; with the large mmap
# randomisation of recent kernels (vm.mmap_rnd_bits=32) gcc 12's runtime
# finds them taken and aborts ("unexpected memory mapping").  Running without
# address randomisation avoids it (setarch -R, inherited by subprocesses).
run=("$python")
if command -v setarch >/dev/null 2>&1; then
    run=(setarch "$(uname -m)" -R "$python")
fi

export LD_PRELOAD="$libtsan${LD_PRELOAD:+:$LD_PRELOAD}"
# PYTHONMALLOC=malloc: Python's objects come from the intercepted malloc, so
# TSan sees memory freed and reused instead of pymalloc's arenas.
export PYTHONMALLOC=malloc
# halt_on_error=0: report every race of a run, then fail it (exitcode).
# die_after_fork=0: the fork tests start threads in a child of a threaded
# process, which TSan supports only without that check.
reports="$tree/tsan-reports"
rm -rf "$reports"
mkdir -p "$reports"
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=0 exitcode=66 die_after_fork=0 second_deadlock_stack=1 suppressions=$tree/tools/tsan.supp log_path=$reports/report}"
export PYTHONPATH="$tree/src"
export THREADLOOM_REQUIRE_EXTENSIONS=1
unset THREADLOOM_NO_EXTENSIONS

# Refuse to report a clean run of some other build: the core imported must be
# the instrumented one just built here.
"${run[@]}" - "$tree" <<'EOF'
import sys

import threadloom.core._core as core

if not core.__file__.startswith(sys.argv[1]):
    sys.exit(f"tsan.sh: imported {core.__file__}, not the sanitized build in {sys.argv[1]}")
print(f"tsan.sh: sanitized core {core.__file__}", file=sys.stderr)
EOF

echo "tsan.sh: LD_PRELOAD=$LD_PRELOAD PYTHONMALLOC=$PYTHONMALLOC TSAN_OPTIONS=$TSAN_OPTIONS" \
    "PYTHONPATH=$PYTHONPATH ${run[*]} -m pytest $* -p no:cacheprovider" >&2
status=0
"${run[@]}" -m pytest "$@" -p no:cacheprovider || status=$?

shopt -s nullglob
found=("$reports"/report.*)
if [[ ${#found[@]} -gt 0 ]]; then
    cat "${found[@]}" >&2
    echo "tsan.sh: ThreadSanitizer reports in ${#found[@]} process(es), in $reports" >&2
    [[ $status -ne 0 ]] || status=66
else
    echo "tsan.sh: no ThreadSanitizer report" >&2
fi
exit "$status"
