"""The public surface: what ``threadloom`` exports is what static tools see."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import threadloom


def test_every_public_name_resolves() -> None:
    for name in threadloom.__all__:
        assert getattr(threadloom, name) is not None, name


def test_lazy_names_are_declared_for_type_checkers() -> None:
    # Names loaded on first use must also be imported under TYPE_CHECKING,
    # or type checkers and IDEs would not see them.
    source = Path(threadloom.__file__).read_text()
    tree = ast.parse(source)
    declared: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom):
                    declared.update(alias.asname or alias.name for alias in stmt.names)
    assert set(threadloom._LAZY) == declared


def test_unknown_attribute_raises() -> None:
    try:
        threadloom.does_not_exist  # noqa: B018
    except AttributeError as exc:
        assert "does_not_exist" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")


def test_importing_the_executor_does_not_load_heavy_modules() -> None:
    code = (
        "import sys, threadloom; threadloom.ThreadPoolExecutor;"
        "print(sorted(m for m in ('psutil', 'sqlite3', 'cronsim', 'schedule') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
