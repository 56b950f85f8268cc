"""The tree shows the layers: a module imports only from its layer or below,
nothing imports in a cycle, and ``import threadloom`` loads only the layers a
drop-in executor needs."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import threadloom

PACKAGE = Path(threadloom.__file__).resolve().parent

# Bottom to top.  A module may import (at any time, or for type checking) only
# from its own layer or the layers below it.  The name on the left is a module
# or a package (a package covers everything in it).
LAYERS: list[set[str]] = [
    # The foundation: no threadloom imports at all.
    {"_version", "_errors", "_types", "_limits"},
    # The native core, its pure-Python twin, the selector and the Future.
    {"core"},
    # Argument checks and retry policies, shared by every layer above.
    {"_validate", "retry"},
    # The event stream everything above reports to.
    {"events"},
    # The drop-in executor and the managed path on it (options, TaskFuture), and
    # the typed map() they share.
    {"executor", "managed", "_map"},
    # Services plugged into the pool and the task manager.
    {"monitor", "resource_monitor", "profiling", "distributed", "history", "scheduling"},
    # ThreadPoolManager: the seed's id-based API.
    {"pool", "thread_pool_manager"},
    # TaskManager and its graphs.
    {"graph", "task_manager"},
    # Workflow files: tasks, dependencies and schedules declared in TOML.
    {"workflow"},
    # Applications on top: the dashboard, the demo workload, the command line.
    {"dashboard", "_demo"},
    {"cli", "__main__"},
]

# Inside a package split into one-job modules, the same rule, bottom to top: a
# module imports only the siblings listed before it (its package's __init__
# re-exports them all, and may import any).
PACKAGE_LAYERS: dict[str, list[str]] = {
    # The event types; the builders and the bus on them; the attempt observer on both.
    "threadloom.events": ["records", "build", "bus", "observe"],
    # The validated shapes; the checker; loading through it; registering.
    "threadloom.workflow": ["model", "check", "load", "register"],
    # The graph logic; the records on it; building a task's record; an
    # execution's state and history rows; the TaskManager on all of them.
    "threadloom.graph": ["dag", "records", "build", "execution", "manager"],
    # The records; the schema and its SQL; the owners of executions; the
    # connections; the writer; the queries; TaskHistory on all of them.
    "threadloom.history": [
        "records",
        "schema",
        "owner",
        "database",
        "writer",
        "query",
        "store",
    ],
    # The report records and the advice on them; the figures, the stacks and the
    # kernel's statistics; the profiler on all of them; profiles kept in history.
    "threadloom.profiling": [
        "report",
        "advice",
        "stats",
        "stacks",
        "schedstat",
        "profiler",
        "storage",
    ],
    # The designer's palette and the graph layout; the sources and the live
    # state on them; the metrics; reading requests, records as JSON, the SSE
    # stream, the access checks; the app on all of them; the designer's routes.
    "threadloom.dashboard": [
        "_palette",
        "_layout",
        "_sources",
        "_collector",
        "_metrics",
        "_params",
        "_shapes",
        "_stream",
        "_auth",
        "_app",
        "designer",
    ],
    # Cluster specs and connecting; what a worker runs; the client-side pieces
    # the executor and the graph runner share; the executor; the graph runner;
    # the backend the task manager uses, on the runner.
    "threadloom.distributed": ["cluster", "worker", "shared", "executor", "graph", "backend"],
}

# Imports of a private module (``_name``) of another package from outside that
# package.  Each entry is (importer, private module); the test fails on an
# import not listed and on an entry no import uses.  Add none: import the
# package's public names instead.
PRIVATE_IMPORTS_ALLOWED: set[tuple[str, str]] = set()

# What ``import threadloom`` must not load: the heavy and the optional layers.
NOT_ON_IMPORT = [
    "threadloom._demo",
    "threadloom.cli",
    "threadloom.dashboard",
    "threadloom.distributed",
    "threadloom.profiling",
    "threadloom.history",
    "threadloom.scheduling",
    "threadloom.monitor",
    "threadloom.graph",
    "threadloom.pool",
]


@dataclass(frozen=True)
class Import:
    importer: str  # dotted name of the importing module
    imported: str  # dotted name of a threadloom module
    line: int
    when: str  # "module" (at import time), "call" (inside a function) or "typing"


def module_name(path: Path) -> str:
    parts = ["threadloom", *path.relative_to(PACKAGE).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    """Every module of the package, by dotted name: Python sources and the native core."""
    return {module_name(p): p for p in sorted([*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.pyx")])}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, when: str) -> Iterator[tuple[ast.AST, str]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            child_when = "call" if when == "module" else when
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield stmt, "typing"
                yield from _walk(stmt, "typing")
            for stmt in child.orelse:
                yield stmt, when
                yield from _walk(stmt, when)
            continue
        else:
            child_when = when
        yield child, child_when
        yield from _walk(child, child_when)


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> Iterator[Import]:
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    for node, when in _walk(tree, "module"):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            # ``from .x import y`` imports the module x.y when y is one.
            targets = [f"{stem}.{a.name}" for a in node.names if f"{stem}.{a.name}" in modules]
            targets = targets or [stem]
        for target in targets:
            if target == "threadloom" or target.startswith("threadloom."):
                yield Import(name, target, node.lineno, when)


def all_imports() -> list[Import]:
    modules = all_modules()
    return [
        i
        for name, path in modules.items()
        if path.suffix == ".py"
        for i in imports_of(name, path, modules)
    ]


def is_ancestor(package: str, module: str) -> bool:
    """Whether *module* is inside *package*: the import system loads a module's
    packages before the module, so importing from one is not a choice of layer."""
    return module.startswith(package + ".")


def layer_of(module: str) -> int:
    """The layer of a dotted module name (the package ``threadloom`` itself is above all)."""
    parts = module.split(".")
    if len(parts) == 1:
        return len(LAYERS)
    for index, layer in enumerate(LAYERS):
        if parts[1] in layer:
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")


def test_every_module_has_a_layer() -> None:
    for name in all_modules():
        layer_of(name)


def test_modules_import_only_from_their_layer_or_below() -> None:
    upward = [
        f"{i.importer}:{i.line} imports {i.imported} ({i.when})"
        for i in all_imports()
        if layer_of(i.imported) > layer_of(i.importer) and not is_ancestor(i.imported, i.importer)
    ]
    assert upward == []


def test_split_packages_import_only_siblings_below() -> None:
    modules = all_modules()
    for package, order in PACKAGE_LAYERS.items():
        listed = {f"{package}.{name}" for name in order}
        present = {m for m in modules if m.rpartition(".")[0] == package}
        assert present == listed, f"{package}: list its modules in PACKAGE_LAYERS"
    upward = []
    for i in all_imports():
        package, _, importer = i.importer.rpartition(".")
        siblings = PACKAGE_LAYERS.get(package)
        if siblings is None or i.imported.rpartition(".")[0] != package:
            continue
        imported = i.imported.rpartition(".")[2]
        if siblings.index(imported) >= siblings.index(importer):
            upward.append(f"{i.importer}:{i.line} imports {i.imported} ({i.when})")
    assert upward == []


def private_module_of(module: str) -> str | None:
    """The package whose private module *module* is (or is inside), or None
    if no part of it is private: ``threadloom.core._core_py`` -> ``threadloom.core``."""
    parts = module.split(".")
    for index in range(1, len(parts)):
        if parts[index].startswith("_"):
            return ".".join(parts[:index])
    return None


def test_no_module_imports_another_packages_private_module() -> None:
    found = set()
    for i in all_imports():
        owner = private_module_of(i.imported)
        if owner is not None and i.importer != owner and not is_ancestor(owner, i.importer):
            found.add((i.importer, i.imported))
    assert found - PRIVATE_IMPORTS_ALLOWED == set(), "import the package's public names"
    assert PRIVATE_IMPORTS_ALLOWED - found == set(), "stale: remove from PRIVATE_IMPORTS_ALLOWED"


def test_private_module_of() -> None:
    assert private_module_of("threadloom.core._core_py") == "threadloom.core"
    assert private_module_of("threadloom._errors") == "threadloom"
    assert private_module_of("threadloom.events.bus") is None


def test_the_foundation_imports_nothing_from_threadloom() -> None:
    base = [i for i in all_imports() if layer_of(i.importer) == 0]
    assert base == []


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return cycles


def test_no_import_cycles_at_import_time() -> None:
    edges: dict[str, set[str]] = {}
    for i in all_imports():
        # "from . import _core" inside threadloom.core reads as an import of the
        # package itself where the compiled module is not in the tree: not a cycle.
        if (
            i.when == "module"
            and i.imported != i.importer
            and not is_ancestor(i.imported, i.importer)
        ):
            edges.setdefault(i.importer, set()).add(i.imported)
    assert _cycles(edges) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": {"c"}}) == []


def test_only_the_demo_command_imports_the_demo() -> None:
    importers = {i.importer for i in all_imports() if i.imported == "threadloom._demo"}
    assert importers <= {"threadloom.cli.demo", "threadloom.cli.session"}, importers
    loaded_by = {
        i.importer for i in all_imports() if i.imported == "threadloom._demo" and i.when != "typing"
    }
    assert loaded_by == {"threadloom.cli.demo"}


@pytest.mark.parametrize("module", NOT_ON_IMPORT)
def test_import_threadloom_does_not_load(module: str) -> None:
    code = f"import sys, threadloom; print({module!r} in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# The public module paths, the seed's among them: each stays importable, and a
# seed module gives the very objects of the module that now holds them.
PUBLIC_MODULES = [
    "threadloom",
    "threadloom.executor",
    "threadloom.managed",
    "threadloom.pool",
    "threadloom.thread_pool_manager",
    "threadloom.task_manager",
    "threadloom.resource_monitor",
    "threadloom.monitor",
    "threadloom.graph",
    "threadloom.scheduling",
    "threadloom.history",
    "threadloom.events",
    "threadloom.workflow",
    "threadloom.retry",
    "threadloom.distributed",
    "threadloom.profiling",
    "threadloom.dashboard",
    "threadloom.cli",
]
SEED_MODULES = {
    "threadloom.thread_pool_manager": "threadloom.pool",
    "threadloom.task_manager": "threadloom.graph.manager",
    "threadloom.resource_monitor": "threadloom.monitor",
}


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_module_paths_stay_importable(name: str) -> None:
    module = importlib.import_module(name)
    for exported in getattr(module, "__all__", ()):
        assert getattr(module, exported, None) is not None, f"{name}.{exported}"


@pytest.mark.parametrize(("seed", "home"), sorted(SEED_MODULES.items()))
def test_seed_modules_reexport_their_new_home(seed: str, home: str) -> None:
    seed_module, home_module = importlib.import_module(seed), importlib.import_module(home)
    assert seed_module.__all__
    for name in seed_module.__all__:
        assert getattr(seed_module, name) is getattr(home_module, name), name
    # Nothing but the re-exports: the code lives in one place.
    defined = [
        node
        for node in ast.parse(Path(str(seed_module.__file__)).read_text()).body
        if isinstance(node, (ast.FunctionDef, ast.ClassDef))
    ]
    assert defined == []
