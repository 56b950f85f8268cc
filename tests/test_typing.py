"""Static typing of the public API: mypy on tests/typing/ (expected types, expected errors).

Also checks that every name in ``threadloom.__all__`` is importable as a
static tool sees the package (a lazy name missing from the TYPE_CHECKING
imports would be an error here).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import threadloom

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None, reason="mypy is not installed"
)

HERE = Path(__file__).parent / "typing"
SRC = Path(__file__).parent.parent / "src"
MARKER = re.compile(r"#\s*E:\s*([\w-]+)\s*$")
ERROR = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[\w-]+)\]$")


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[tuple[int, str]]]:
    """Run mypy once on every file of tests/typing/ and a generated file of exports."""
    tmp = tmp_path_factory.mktemp("typing")
    exports = tmp / "check_exports.py"
    exports.write_text(
        "from threadloom import (\n"
        + "".join(f"    {name} as {name},\n" for name in threadloom.__all__)
        + ")\n"
    )
    files = [*sorted(HERE.glob("check_*.py")), exports]
    command = [
        sys.executable,
        "-m",
        "mypy",
        "--strict",
        "--python-version=3.10",
        "--no-error-summary",
        "--show-error-codes",
        "--no-pretty",
        f"--cache-dir={tmp / 'cache'}",
        "--config-file=",
        *map(str, files),
    ]
    env = None
    if (SRC / "threadloom").is_dir():
        # A source checkout: check the tree, not whatever is installed.
        env = {**os.environ, "MYPYPATH": str(SRC)}
    out = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode in (0, 1), out.stdout + out.stderr
    errors: dict[str, set[tuple[int, str]]] = {}
    for line in out.stdout.splitlines():
        match = ERROR.match(line)
        if match is not None:
            name = Path(match["file"]).name
            errors.setdefault(name, set()).add((int(match["line"]), match["code"]))
        elif ": error:" in line:
            raise AssertionError(f"unparsed mypy error: {line}")
    return errors


def test_generic_types_are_inferred(mypy_errors: dict[str, set[tuple[int, str]]]) -> None:
    assert mypy_errors.get("check_generics.py", set()) == set()


def test_wrong_arguments_are_flagged(mypy_errors: dict[str, set[tuple[int, str]]]) -> None:
    lines = (HERE / "check_errors.py").read_text().splitlines()
    expected = {
        (number, match[1])
        for number, text in enumerate(lines, start=1)
        if (match := MARKER.search(text)) is not None
    }
    assert expected, "no expected errors marked"
    assert mypy_errors.get("check_errors.py", set()) == expected


def test_static_tools_see_every_public_name(mypy_errors: dict[str, set[tuple[int, str]]]) -> None:
    assert mypy_errors.get("check_exports.py", set()) == set()
