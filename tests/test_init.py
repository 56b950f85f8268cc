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


def _static_names() -> dict[str, str | None]:
    """Map every name ``threadloom/__init__.py`` binds by import to its module.

    What a static tool (a type checker, an IDE) sees: the imports at top level
    and under ``if TYPE_CHECKING:``, never ``__getattr__``.
    """
    tree = ast.parse(Path(threadloom.__file__).read_text())
    names: dict[str, str | None] = {}
    for node in tree.body:
        stmts = node.body if isinstance(node, ast.If) else [node]
        for stmt in stmts:
            if isinstance(stmt, ast.ImportFrom) and stmt.level == 1:
                for alias in stmt.names:
                    names[alias.asname or alias.name] = stmt.module
    return names


def test_public_names_are_what_static_tools_see() -> None:
    static = _static_names()
    assert sorted(threadloom.__all__) == sorted(static)
    # A lazy name is declared from the module it is loaded from.
    for name, module in threadloom._LAZY.items():
        assert static[name] == module, name


def test_every_public_name_is_the_object_its_module_defines() -> None:
    # Run in a fresh interpreter so that every lazy name goes through
    # __getattr__ (this process may have loaded them already).
    code = (
        "import importlib, threadloom\n"
        "for name, module in threadloom._LAZY.items():\n"
        "    value = getattr(threadloom, name)\n"
        "    assert value is getattr(importlib.import_module('threadloom.' + module), name), name\n"
        "print(len(threadloom._LAZY))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == len(threadloom._LAZY)


def test_public_names_have_docstrings() -> None:
    for name in threadloom.__all__:
        value = getattr(threadloom, name)
        if isinstance(value, type):
            assert value.__doc__, name


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
