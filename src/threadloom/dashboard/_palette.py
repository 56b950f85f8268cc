"""The designer's palette: the callables a workflow may use, which is also its allow-list.

Three sources, as the designer's documentation says: modules named on the
command line (imported: the user asked for them), the modules in the
workflow's ``python_path`` directories (read with :mod:`ast`, not imported,
so that a script lying next to the workflow does not run just because the
designer opened), and the modules of the tasks already in the file (imported,
as ``threadloom run`` would).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .._errors import PaletteError as PaletteError  # re-exported: it was defined here

#: A module name: dotted identifiers, nothing else (no "..", no slashes).
MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
#: Characters of a docstring kept in the palette.
DOC_CHARS = 2_000


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One parameter of a palette callable, as the side panel shows it.

    Attributes:
        name: The parameter's name.
        kind: ``positional_only``, ``positional_or_keyword``, ``var_positional``,
            ``keyword_only`` or ``var_keyword`` (as :class:`inspect.Parameter`).
        required: True if a call must give it.
        default: The default's source text (empty if none).
    """

    name: str
    kind: str
    required: bool
    default: str = ""


@dataclasses.dataclass(frozen=True)
class PaletteEntry:
    """One callable the designer may place.

    Attributes:
        call: What a task's ``call`` field holds (``module:function``).
        signature: ``(a, b=1)`` for display.
        doc: The docstring (cleaned, shortened), or "".
        params: The parameters.
    """

    call: str
    module: str
    name: str
    signature: str
    doc: str
    params: tuple[Parameter, ...]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_module_name(name: str) -> str:
    """Return *name* if it is a dotted module name, else raise :class:`PaletteError`."""
    if not isinstance(name, str) or not MODULE_NAME.fullmatch(name):
        raise PaletteError(
            f"{name!r} is not a module name: use dotted identifiers such as 'pkg.tasks' "
            "(no '..', slashes or file paths)"
        )
    return name


def split_call(call: str) -> tuple[str, str]:
    """``module:attr`` or ``module.attr`` -> (module, attr); ("", "") if neither."""
    if ":" in call:
        module, _, attribute = call.partition(":")
    else:
        module, _, attribute = call.rpartition(".")
    return module, attribute


def build_palette(
    modules: Sequence[str], python_path: Iterable[Path], task_calls: Iterable[str]
) -> dict[str, PaletteEntry]:
    """Collect the palette: ``call`` -> entry, modules in the order given.

    Raises:
        PaletteError: a module of *modules* has a bad name or cannot be imported
            (the modules of *task_calls* that cannot be imported are skipped:
            the checker reports them on their tasks).
    """
    entries: dict[str, PaletteEntry] = {}
    for name in modules:
        check_module_name(name)
        try:
            module = importlib.import_module(name)
        except Exception as exc:
            raise PaletteError(
                f"cannot import module {name!r}: {type(exc).__name__}: {exc}"
            ) from None
        except SystemExit as exc:
            raise PaletteError(f"importing module {name!r} called sys.exit({exc.code!r})") from None
        _add_all(entries, _imported_functions(module))
    scanned: set[str] = set()
    for directory in python_path:
        for file in sorted(directory.glob("*.py")):
            if MODULE_NAME.fullmatch(file.stem) and file.stem not in scanned:
                scanned.add(file.stem)
                _add_all(entries, _source_functions(file.stem, file))
    for call in task_calls:
        module_name, _ = split_call(call)
        if not MODULE_NAME.fullmatch(module_name or "-") or module_name in scanned:
            continue
        try:
            module = importlib.import_module(module_name)
        except (Exception, SystemExit):
            continue
        scanned.add(module_name)
        _add_all(entries, _imported_functions(module))
    return entries


def _add_all(entries: dict[str, PaletteEntry], found: Iterable[PaletteEntry]) -> None:
    for entry in found:
        entries.setdefault(entry.call, entry)


def entry_for(call: str, obj: Any) -> PaletteEntry | None:
    """An entry for an imported callable *obj* named by *call* (None if not callable)."""
    if not callable(obj):
        return None
    module, name = split_call(call)
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return PaletteEntry(call, module, name, "(...)", _doc(inspect.getdoc(obj)), ())
    params = tuple(
        Parameter(
            p.name,
            p.kind.name.lower(),
            p.default is inspect.Parameter.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD),
            "" if p.default is inspect.Parameter.empty else repr(p.default),
        )
        for p in signature.parameters.values()
    )
    return PaletteEntry(call, module, name, str(signature), _doc(inspect.getdoc(obj)), params)


def _imported_functions(module: Any) -> list[PaletteEntry]:
    names = getattr(module, "__all__", None)
    found = []
    for name, obj in vars(module).items():
        if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isbuiltin(obj)):
            continue
        # Only what the module defines (or exports): not what it imported.
        if names is not None:
            if name not in names:
                continue
        elif getattr(obj, "__module__", None) != module.__name__:
            continue
        entry = entry_for(f"{module.__name__}:{name}", obj)
        if entry is not None:
            found.append(entry)
    return found


def _source_functions(module: str, file: Path) -> list[PaletteEntry]:
    try:
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return []  # not a module the palette can read; nothing to offer from it
    exported = _literal_all(tree)
    found = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if node.name.startswith("_") or (exported is not None and node.name not in exported):
            continue
        found.append(
            PaletteEntry(
                f"{module}:{node.name}",
                module,
                node.name,
                _ast_signature(node.args),
                _doc(ast.get_docstring(node)),
                _ast_parameters(node.args),
            )
        )
    return found


def _literal_all(tree: ast.Module) -> set[str] | None:
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
            and isinstance(node.value, ast.List | ast.Tuple)
        ):
            return {
                e.value
                for e in node.value.elts
                if isinstance(e, ast.Constant) and isinstance(e.value, str)
            }
    return None


class _Source:
    """Source text that repr()s as itself, so inspect formats it as written."""

    def __init__(self, node: ast.expr) -> None:
        self.text = ast.unparse(node)

    def __repr__(self) -> str:
        return self.text


def _ast_signature(args: ast.arguments) -> str:
    """The signature as :func:`inspect.signature` would print it for the imported function."""
    empty = inspect.Parameter.empty
    positional = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
    defaults += list(args.defaults)
    params = []

    def make(arg: ast.arg, kind: Any, default: ast.expr | None = None) -> inspect.Parameter:
        return inspect.Parameter(
            arg.arg,
            kind,
            default=empty if default is None else _Source(default),
            annotation=empty if arg.annotation is None else _Source(arg.annotation),
        )

    for index, (arg, default) in enumerate(zip(positional, defaults, strict=True)):
        kind = (
            inspect.Parameter.POSITIONAL_ONLY
            if index < len(args.posonlyargs)
            else inspect.Parameter.POSITIONAL_OR_KEYWORD
        )
        params.append(make(arg, kind, default))
    if args.vararg is not None:
        params.append(make(args.vararg, inspect.Parameter.VAR_POSITIONAL))
    for arg, kw_default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        params.append(make(arg, inspect.Parameter.KEYWORD_ONLY, kw_default))
    if args.kwarg is not None:
        params.append(make(args.kwarg, inspect.Parameter.VAR_KEYWORD))
    try:
        return str(inspect.Signature(params))
    except ValueError:
        return f"({ast.unparse(args)})"


def _ast_parameters(args: ast.arguments) -> tuple[Parameter, ...]:
    positional = [*args.posonlyargs, *args.args]
    # Defaults belong to the last positional parameters.
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
    defaults += list(args.defaults)
    params = []
    for index, (arg, default) in enumerate(zip(positional, defaults, strict=True)):
        kind = "positional_only" if index < len(args.posonlyargs) else "positional_or_keyword"
        params.append(
            Parameter(
                arg.arg, kind, default is None, "" if default is None else ast.unparse(default)
            )
        )
    if args.vararg is not None:
        params.append(Parameter(args.vararg.arg, "var_positional", False))
    for arg, kw_default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        params.append(
            Parameter(
                arg.arg,
                "keyword_only",
                kw_default is None,
                "" if kw_default is None else ast.unparse(kw_default),
            )
        )
    if args.kwarg is not None:
        params.append(Parameter(args.kwarg.arg, "var_keyword", False))
    return tuple(params)


def _doc(text: str | None) -> str:
    if not text:
        return ""
    return text if len(text) <= DOC_CHARS else text[: DOC_CHARS - 1] + "…"
