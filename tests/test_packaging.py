"""Packaging: where the version comes from, which core an import selects, and
what a built wheel or sdist ships.

The contents checks run on a built distribution named by THREADLOOM_WHEEL or
THREADLOOM_SDIST, which tools/wheelcheck.sh sets (CI runs it); without them
those tests skip.  The checker itself (tools/check_wheel.py) is tested here on
a real compiled library and on wheel listings, so it is known to fail when it
should.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

import threadloom
from threadloom import _version

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib  # type: ignore[import-not-found]

ROOT = Path(__file__).resolve().parents[1]
CHECKER = ROOT / "tools" / "check_wheel.py"
SUBPROCESS_TIMEOUT = 60.0
# pip needs time to fetch setuptools and Cython into its build environment and
# to cythonize the core before the compiler is ever called.
SDIST_BUILD_TIMEOUT = 540.0


def load_checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_wheel", CHECKER)
    assert spec is not None and spec.loader is not None, f"no checker at {CHECKER}"
    module = importlib.util.module_from_spec(spec)
    # dataclasses looks the module up by name while building the classes.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# --- the version ----------------------------------------------------------------


def test_version_has_one_source() -> None:
    assert threadloom.__version__ == _version.__version__
    assert importlib.metadata.version("threadloom") == _version.__version__


def test_pyproject_reads_the_version_from_version_module() -> None:
    pyproject = ROOT / "pyproject.toml"
    if not pyproject.exists():
        pytest.skip(f"no pyproject.toml beside the tests ({ROOT})")
    config = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    assert "version" not in config["project"], "a second, static version in pyproject.toml"
    assert "version" in config["project"]["dynamic"]
    attr = config["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "threadloom._version.__version__"


# --- which core an import selects -----------------------------------------------

# Makes the native core unimportable, the way a missing or broken build does.
BLOCK_CORE = textwrap.dedent(
    """
    import importlib.abc, sys

    class BlockCore(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "threadloom.core._core":
                raise ImportError("the native core is blocked by the test")
            return None

    sys.meta_path.insert(0, BlockCore())
    """
)

REPORT_CORE = textwrap.dedent(
    """
    import warnings
    warnings.simplefilter("always")
    import threadloom, threadloom.core
    print("NATIVE", threadloom.NATIVE, threadloom.core.core.__name__)
    """
)


def import_threadloom(*, block_core: bool, **env: str) -> subprocess.CompletedProcess[str]:
    """Import threadloom in a fresh interpreter; it loads the same copy as this
    process does, with the given core-selection variables and no others."""
    environment = {
        k: v
        for k, v in os.environ.items()
        if k not in ("THREADLOOM_NO_EXTENSIONS", "THREADLOOM_REQUIRE_EXTENSIONS")
    }
    package_parent = str(Path(threadloom.__file__).resolve().parents[1])
    environment["PYTHONPATH"] = os.pathsep.join(
        [package_parent, *filter(None, [environment.get("PYTHONPATH")])]
    )
    environment.update(env)
    code = (BLOCK_CORE if block_core else "") + REPORT_CORE
    return subprocess.run(
        [sys.executable, "-c", code],
        env=environment,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )


def test_require_extensions_makes_a_missing_core_an_error() -> None:
    result = import_threadloom(block_core=True, THREADLOOM_REQUIRE_EXTENSIONS="1")
    assert result.returncode != 0, result.stdout
    assert "ImportError" in result.stderr
    assert "THREADLOOM_REQUIRE_EXTENSIONS=1" in result.stderr
    assert "the native core is blocked by the test" in result.stderr
    assert "NATIVE" not in result.stdout


def test_missing_core_falls_back_to_the_twin_with_a_warning() -> None:
    result = import_threadloom(block_core=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["NATIVE", "False", "threadloom.core._core_py"]
    assert "RuntimeWarning" in result.stderr
    assert "pure-Python core" in result.stderr


def test_no_extensions_wins_over_require_extensions() -> None:
    # An explicit request for the twin is not a failed build: the pure-core
    # tests run it in a subprocess of a suite that requires the native core.
    result = import_threadloom(
        block_core=True, THREADLOOM_NO_EXTENSIONS="1", THREADLOOM_REQUIRE_EXTENSIONS="1"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["NATIVE", "False", "threadloom.core._core_py"]
    assert "Warning" not in result.stderr


def test_require_extensions_loads_the_native_core() -> None:
    if os.environ.get("THREADLOOM_NO_EXTENSIONS", "") not in ("", "0"):
        pytest.skip("THREADLOOM_NO_EXTENSIONS=1: the native core may not be built")
    result = import_threadloom(block_core=False, THREADLOOM_REQUIRE_EXTENSIONS="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["NATIVE", "True", "threadloom.core._core"]


# --- the checker, on inputs it must reject ----------------------------------------


def good_listing(dist_info: str = "threadloom-1.0.dist-info") -> list[str]:
    return [
        "threadloom/__init__.py",
        "threadloom/_version.py",
        "threadloom/core/_core.pyi",
        "threadloom/py.typed",
        "threadloom/core/_core.cpython-311-x86_64-linux-gnu.so",
        f"{dist_info}/licenses/LICENSE",
        f"{dist_info}/METADATA",
        f"{dist_info}/entry_points.txt",
        f"{dist_info}/RECORD",
    ]


def test_checker_accepts_a_complete_listing() -> None:
    checker = load_checker()
    assert checker.member_problems(good_listing(), "threadloom-1.0.dist-info") == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda n: [*n, "threadloom/core/_core.c"], "should not ship threadloom/core/_core.c"),
        (lambda n: [*n, "threadloom/core/_core.pyx"], "should not ship threadloom/core/_core.pyx"),
        (lambda n: [*n, "tests/test_core.py"], "unexpected top-level entry tests/test_core.py"),
        (lambda n: [*n, "threadloom/tests/x.py"], "should not ship threadloom/tests/x.py"),
        (
            lambda n: [x for x in n if "LICENSE" not in x],
            "missing threadloom-1.0.dist-info/licenses/LICENSE",
        ),
        (lambda n: [x for x in n if not x.endswith(".pyi")], "missing threadloom/core/_core.pyi"),
        (lambda n: [x for x in n if not x.endswith(".typed")], "missing threadloom/py.typed"),
        (lambda n: [x for x in n if not x.endswith(".so")], "expected one compiled"),
    ],
)
def test_checker_rejects_a_bad_listing(
    change: Callable[[list[str]], list[str]], problem: str
) -> None:
    checker = load_checker()
    names = change(good_listing())
    problems = checker.member_problems(names, "threadloom-1.0.dist-info")
    assert any(problem in p for p in problems), problems


def compile_library(tmp_path: Path, *flags: str) -> bytes:
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None or not sys.platform.startswith("linux"):
        pytest.skip("needs a C compiler producing ELF")
    source = tmp_path / "lib.c"
    source.write_text("int threadloom_probe(int x) { return x + 1; }\n")
    library = tmp_path / "lib.so"
    subprocess.run(
        [cc, "-shared", "-fPIC", "-O2", *flags, str(source), "-o", str(library)],
        check=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    return library.read_bytes()


def test_checker_rejects_a_debug_build(tmp_path: Path) -> None:
    pytest.importorskip("elftools")
    checker = load_checker()
    data = compile_library(tmp_path, "-g", "-Wl,-rpath,/opt/build/python/lib")
    problems = " | ".join(checker.binary_problems("lib.so", data))
    assert "debug sections" in problems and ".debug_info" in problems
    assert "not stripped" in problems
    assert "/opt/build/python/lib" in problems


def test_checker_accepts_a_release_build(tmp_path: Path) -> None:
    pytest.importorskip("elftools")
    checker = load_checker()
    data = compile_library(tmp_path, "-g", "-g0", "-s", "-Wl,-rpath,$ORIGIN/../lib")
    assert checker.binary_problems("lib.so", data) == []


def test_checker_finds_build_paths() -> None:
    checker = load_checker()
    data = b"\x00/tmp/build-via-sdist-abc/threadloom-1.0/src\x00/home/ci/work\x00"
    assert checker.build_path_problems("x.so", data, ["/home/ci/work"]) == [
        "x.so: contains build path build-via-sdist-, /home/ci/work"
    ]
    assert checker.build_path_problems("x.so", b"clean", ["/home/ci/work"]) == []


# --- a built wheel and sdist (given by tools/wheelcheck.sh) -----------------------


def given(variable: str) -> Path:
    value = os.environ.get(variable, "")
    if not value:
        pytest.skip(f"{variable} is not set (tools/wheelcheck.sh sets it to a built file)")
    path = Path(value)
    assert path.is_file(), f"{variable}={value} is not a file"
    return path


def forbidden_paths() -> list[str]:
    extra = os.environ.get("THREADLOOM_WHEEL_FORBID", "").split(os.pathsep)
    return [p for p in [*extra, str(ROOT)] if p]


def test_wheel_contents() -> None:
    wheel = given("THREADLOOM_WHEEL")
    pytest.importorskip("elftools")
    source = ROOT if (ROOT / "src" / "threadloom").is_dir() else None
    report = load_checker().check_wheel(wheel, forbidden_paths(), source)
    print(report.format())
    assert report.ok, report.format()


def test_tests_run_against_the_installed_wheel() -> None:
    wheel = given("THREADLOOM_WHEEL")
    package = Path(threadloom.__file__).resolve().parent
    assert ROOT not in package.parents, f"threadloom imported from the tree: {package}"
    core = importlib.util.find_spec("threadloom.core._core")
    assert core is not None and core.origin is not None
    installed = Path(core.origin)
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read(f"threadloom/core/{installed.name}")
    assert installed.read_bytes() == shipped, f"{installed} is not the extension in {wheel.name}"
    assert threadloom.NATIVE


def test_sdist_contents() -> None:
    sdist = given("THREADLOOM_SDIST")
    source = ROOT if (ROOT / "src" / "threadloom").is_dir() else None
    report = load_checker().check_sdist(sdist, source)
    print(report.format())
    assert report.ok, report.format()


@pytest.mark.timeout(SDIST_BUILD_TIMEOUT + 60)
def test_sdist_without_a_compiler_says_what_to_install(tmp_path: Path) -> None:
    sdist = given("THREADLOOM_SDIST")
    env = dict(os.environ)
    # A compiler that is not there: what a machine without one looks like to
    # setuptools (CC names the compiler it runs).
    env["CC"] = "threadloom-test-no-such-compiler"
    env.pop("THREADLOOM_DEBUG", None)
    env.pop("THREADLOOM_SANITIZE", None)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path), str(sdist)],
        env=env,
        capture_output=True,
        text=True,
        timeout=SDIST_BUILD_TIMEOUT,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert not list(tmp_path.glob("*.whl")), "a wheel was built without a compiler"
    assert "threadloom's native core could not be built" in output, output
    assert "threadloom-test-no-such-compiler" in output
    assert "apt-get install gcc python3-dev" in output
    assert "pip install --only-binary=threadloom threadloom" in output
