# shellcheck shell=bash
# What tools/asan.sh and tools/tsan.sh share; sourced by them, never run.
#
# sanitizer_build NAME RUNTIME MODE TREE [HINT]
#   Finds the compiler's sanitizer runtime (RUNTIME, e.g. libasan.so), copies
#   the repository to TREE (a new temporary directory when empty) and builds
#   the core there with THREADLOOM_SANITIZE=MODE.  NAME prefixes messages;
#   HINT is added to the error when the runtime is missing.  Sets `repo`,
#   `python`, `tree` and `runtime`, and leaves the shell in $tree.
#
# sanitizer_check_core NAME COMMAND...
#   Fails unless COMMAND (the interpreter, perhaps wrapped) imports the core
#   built in $tree: a clean run of some other build must not be reported.
#
# Environment: PYTHON (default python3), CC (default gcc; the build must use
# the compiler whose runtime is preloaded, which setuptools does by default).

sanitizer_build() {
    local name="$1" library="$2" mode="$3" wanted_tree="$4" hint="${5:-}"
    repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    python="${PYTHON:-python3}"
    local cc="${CC:-gcc}"
    tree="${wanted_tree:-$(mktemp -d "${TMPDIR:-/tmp}/threadloom-${name%.sh}.XXXXXX")}"

    runtime="$("$cc" -print-file-name="$library")"
    if [[ "$runtime" != /* || ! -e "$runtime" ]]; then
        echo "$name: $cc has no $library (got '$runtime'); install the compiler's sanitizer runtime" \
            "$hint" >&2
        exit 2
    fi

    echo "$name: copying $repo to $tree" >&2
    mkdir -p "$tree"
    (
        cd "$repo"
        tar --exclude=.git --exclude=build --exclude='*.so' --exclude='*.pyd' \
            --exclude=__pycache__ --exclude=.ci-venv --exclude='.venv*' \
            --exclude=.mypy_cache --exclude=.ruff_cache --exclude=.hypothesis \
            --exclude=.pytest_cache --exclude=.benchmarks -cf - .
    ) | (cd "$tree" && tar -xf -)

    cd "$tree"
    echo "$name: building with THREADLOOM_SANITIZE=$mode" >&2
    THREADLOOM_SANITIZE="$mode" "$python" setup.py -q build_ext --inplace --force
}

sanitizer_check_core() {
    local name="$1"
    shift
    "$@" - "$tree" "$name" <<'PYTHON'
import sys

import threadloom.core._core as core

tree, name = sys.argv[1:3]
if not core.__file__.startswith(tree):
    sys.exit(f"{name}: imported {core.__file__}, not the sanitized build in {tree}")
print(f"{name}: sanitized core {core.__file__}", file=sys.stderr)
PYTHON
}
