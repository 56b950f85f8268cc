"""The workflow designer: draw the workflow files ``threadloom run`` executes.

    threadloom design WORKFLOW.toml [--module NAME ...] [--port P]

or, from Python, a page of a :class:`~threadloom.dashboard.Dashboard`::

    designer = Designer("flow.toml", modules=["myapp.tasks"])
    with TaskManager() as manager, Dashboard(manager, designer=designer) as dash:
        print(dash.url + "designer")

The page (``/designer``) edits the file's tasks; the server owns the file:

* The palette is an allow-list (see :mod:`._palette`): a task's ``call`` must
  name one of its callables (or a call the file already holds), and the
  browser only ever sends such names, never code.  New task names are plain
  words; the text of every field but the call's arguments (tags, dependencies,
  rules, descriptions, schedules, retry tables, ``kwargs`` names) may not carry
  markup, quotes or control characters the file does not already hold;
  ``retry_on`` names builtins or exceptions of the palette's modules; a field
  the workflow file does not define is refused unless the file already holds
  it (so that a file with a typo can still be opened, fixed and saved).
  Anything else is refused (400) with a message naming it, and nothing is
  written or run.
* Every edit is checked by :func:`threadloom.workflow.workflow_problems`, the
  checker of ``threadloom run``, so the page shows the messages ``run`` would.
* Save merges the tasks into the file with :mod:`tomlkit`, which keeps what
  it does not change (comments, layout, the ``[workflow]`` table) as it was,
  and writes atomically.  Values JSON cannot carry (TOML dates and times,
  ``10.0`` as a float) come back as the page sends them, as strings and
  numbers: where they equal the file's value, the file's value is kept.
  Each save names the version (content hash) it was based on: if the file
  changed on disk since, the save is refused (409).
* Run registers the tasks with the dashboard's task manager and executes the
  whole graph once; the page follows it on the dashboard's event stream.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import TaskPriority, TriggerRule
from .._errors import DesignerError, PaletteError, RequestRefused
from ..workflow import (
    TASK_FIELDS,
    WorkflowError,
    WorkflowProblem,
    parse_schedule,
    parse_workflow,
    register_workflow,
    workflow_problems,
)
from ._palette import (
    MODULE_NAME,
    PaletteEntry,
    build_palette,
    check_module_name,
    split_call,
)

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from ..task_manager import TaskManager

__all__ = ["Designer", "DesignerError", "PaletteError", "RequestRefused"]

#: New task names: what a person types, safe in TOML keys, URLs and markup.
TASK_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,99}")
#: What the text of a field (dependencies, tags, rules, schedules, descriptions...)
#: may not hold unless the file already does: markup, quotes and control characters.
#: Arguments are data for the function and may hold anything (they are shown as text).
MARKUP = re.compile(r"[<>\"'`&\x00-\x1f\x7f]")
#: Bytes of a request body the designer reads.
MAX_BODY = 2 * 1024 * 1024
#: Tasks in one document.
MAX_TASKS = 2_000
#: Fire times shown in a schedule's preview.
PREVIEW_FIRES = 5


@dataclasses.dataclass
class _Run:
    execution_id: str
    task_ids: dict[str, str]


class Designer:
    """Edits one workflow file for the designer page.

    Args:
        path: The workflow file; created (a ``[workflow]`` table naming it) if missing.
        modules: Modules whose public functions join the palette.

    Raises:
        DesignerError: the file cannot be created or read, or is not TOML.
        PaletteError: a module has a bad name or cannot be imported.
    """

    def __init__(self, path: str | os.PathLike[str], modules: Sequence[str] = ()) -> None:
        import tomlkit

        self.path = Path(path).absolute()
        self.base_dir = self.path.parent
        self.modules = tuple(check_module_name(m) for m in modules)
        self._lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._last_run: _Run | None = None
        if not self.path.exists():
            try:
                with open(self.path, "x", encoding="utf-8") as file:
                    file.write(f'[workflow]\nname = "{_toml_safe_stem(self.path)}"\n')
            except FileExistsError:
                pass  # someone made it meanwhile: use theirs
            except OSError as exc:
                raise DesignerError(f"cannot create {str(self.path)!r}: {exc}") from None
        text, self._version = self._read()
        try:
            document = tomlkit.parse(text)
        except Exception as exc:
            raise DesignerError(f"{str(self.path)!r} is not valid TOML: {exc}") from None
        header = document.get("workflow", {})
        self._header: dict[str, Any] = _plain_table(header)
        python_path = self._header.get("python_path", ["."])
        if not isinstance(python_path, list) or not all(isinstance(p, str) for p in python_path):
            python_path = ["."]
        directories = []
        for entry in python_path:
            directory = (self.base_dir / entry).resolve()
            if directory.is_dir():
                directories.append(directory)
                # As threadloom run does: --module may name a module next to the file.
                if str(directory) not in sys.path:
                    sys.path.insert(0, str(directory))
        self.palette: dict[str, PaletteEntry] = build_palette(
            self.modules, directories, sorted(_calls_of(document))
        )
        self._file_names: set[str] = set()
        self._file_labels: set[str] = set()
        self._file_keys: set[str] = set()  # fields the file holds that workflows do not define
        self._file_tasks: dict[str, dict[str, Any]] = {}  # the file's tasks as last read
        self.allowed: set[str] = set(self.palette)
        self.allowed_modules: set[str] = set()
        self._learn_file(document)

    def _learn_file(self, document: Any) -> None:
        """Allow the names and calls the file holds now (its author wrote them).

        Its calls are allowed even if they name no function the palette found
        (a class, a callable object); its task names even if the designer would
        not accept them as new names; its text and its unknown fields even if
        the designer would refuse them from the page.
        """
        tasks = document.get("tasks", {})
        self._file_names |= set(tasks) if isinstance(tasks, dict) else set()
        self._file_tasks = {}
        for name, table in tasks.items() if isinstance(tasks, dict) else ():
            if not isinstance(table, dict):
                continue
            plain = table.unwrap() if hasattr(table, "unwrap") else dict(table)
            self._file_tasks[str(name)] = plain
            self._file_keys |= {str(k) for k in plain if k not in TASK_FIELDS}
            for key, value in plain.items():
                self._file_labels |= set(_texts_of(key, value))
        self.allowed |= _calls_of(document)
        self.allowed_modules = {split_call(c)[0] for c in self.allowed}

    @property
    def workers(self) -> int | None:
        """The file's ``[workflow] workers``, if it is a valid worker count."""
        from ..workflow import MAX_WORKERS

        workers = self._header.get("workers")
        if (
            isinstance(workers, int)
            and not isinstance(workers, bool)
            and 1 <= workers <= MAX_WORKERS
        ):
            return workers
        return None

    # -- reading -------------------------------------------------------------------
    def _read(self) -> tuple[str, str]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return "", ""
        except OSError as exc:
            raise DesignerError(f"cannot read {str(self.path)!r}: {exc}") from None
        try:
            return data.decode("utf-8"), _version_of(data)
        except UnicodeDecodeError:
            raise DesignerError(f"{str(self.path)!r} is not UTF-8 text") from None

    def document(self) -> dict[str, Any]:
        """The file as the page edits it, with its version, palette and problems."""
        import tomlkit

        with self._lock:
            text, version = self._read()
            try:
                document = tomlkit.parse(text)
            except Exception as exc:
                raise RequestRefused(
                    409, f"{self.path.name} is no longer valid TOML on disk: {exc}"
                ) from None
            self._header = _plain_table(document.get("workflow", {}))
            self._learn_file(document)
            self._version = version
        tasks_table = document.get("tasks", {})
        tasks = []
        plain: dict[str, Any] = {}
        if isinstance(tasks_table, dict):
            for name, table in tasks_table.items():
                plain[name] = table.unwrap() if hasattr(table, "unwrap") else table
                tasks.append({"name": name, "fields": _to_json(plain[name])})
        return {
            "path": str(self.path),
            "file": self.path.name,
            "version": version,
            "workflow": _to_json(self._header),
            "tasks": tasks,
            "palette": [e.to_json() for e in self.palette.values()],
            "trigger_rules": [r.value for r in TriggerRule],
            "priorities": [p.name.lower() for p in TaskPriority],
            "problems": self._problems(plain),
        }

    # -- checking ------------------------------------------------------------------
    def accept(self, body: object) -> dict[str, dict[str, Any]]:
        """Check a document sent by the page; return its tasks as the file would hold them.

        Raises:
            RequestRefused: 400 naming what is refused (a callable outside the
                palette, a name with markup, an unknown field, a malformed body).
        """
        if not isinstance(body, Mapping) or not isinstance(body.get("tasks"), list):
            raise RequestRefused(400, 'the body must be a JSON object with a "tasks" list')
        items = body["tasks"]
        if len(items) > MAX_TASKS:
            raise RequestRefused(400, f"at most {MAX_TASKS} tasks, not {len(items)}")
        tasks: dict[str, dict[str, Any]] = {}
        for item in items:
            if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
                raise RequestRefused(400, 'each task must be an object with a "name" string')
            name = item["name"]
            fields = item.get("fields", {})
            if not isinstance(fields, Mapping):
                raise RequestRefused(400, f"task {name!r}: fields must be an object")
            if name in tasks:
                raise RequestRefused(400, f"two tasks are named {name!r}")
            if name not in self._file_names and not TASK_NAME.fullmatch(name):
                raise RequestRefused(
                    400,
                    f"task name {name!r} is refused: use letters, digits, '_' and '-', "
                    "starting with a letter or '_' (at most 100 characters)",
                )
            for key in fields:
                if key not in TASK_FIELDS and key not in self._file_keys:
                    raise RequestRefused(
                        400,
                        f"task {name!r}: unknown field {key!r} (known: {', '.join(TASK_FIELDS)})",
                    )
            self._accept_call(name, fields.get("call"))
            for key, value in fields.items():
                self._accept_text(name, key, value)
            retry = fields.get("retry")
            if isinstance(retry, Mapping) and "retry_on" in retry:
                self._accept_exceptions(name, retry["retry_on"])
            old = self._file_tasks.get(name, {})
            tasks[name] = {k: _restore(old[k], v) if k in old else v for k, v in fields.items()}
        return _from_json_tasks(tasks)

    def _accept_call(self, task: str, call: object) -> None:
        if call is None:
            return  # the checker says it is missing
        if not isinstance(call, str):
            raise RequestRefused(400, f"task {task!r}: call must be a string")
        module, _ = split_call(call)
        if ".." in call or "/" in call or "\\" in call or not MODULE_NAME.fullmatch(module or "-"):
            raise RequestRefused(
                400,
                f"task {task!r}: call {call!r} is refused: a module path is dotted names "
                "('pkg.tasks:function'), without '..' or slashes",
            )
        if call not in self.allowed:
            raise RequestRefused(
                400,
                f"task {task!r}: call {call!r} is refused: it is not in the palette "
                "(the designer allows only the public functions of the modules given "
                "with --module, of the workflow's python_path and of its tasks); "
                "nothing was changed",
            )

    def _accept_text(self, task: str, key: str, value: object) -> None:
        for field, item in _texts_with_fields(key, value):
            known = item in self._file_labels or item in self._file_names
            if MARKUP.search(item) and not known:
                raise RequestRefused(
                    400,
                    f"task {task!r}: field {field!r} is refused: {item!r} holds markup, "
                    "quotes or control characters (< > \" ' ` & are not allowed here)",
                )

    def _accept_exceptions(self, task: str, value: object) -> None:
        # retry_on imports what it names: only builtins and the palette's modules.
        for name in value if isinstance(value, list) else [value]:
            if not isinstance(name, str) or not ("." in name or ":" in name):
                continue  # a builtin's name, or not a string (the checker says so)
            module, _ = split_call(name)
            if module not in self.allowed_modules and module != "builtins":
                raise RequestRefused(
                    400,
                    f"task {task!r}: retry.retry_on {name!r} is refused: exceptions must be "
                    "builtins or come from the palette's modules",
                )

    def _problems(self, tasks: Mapping[str, Any]) -> list[dict[str, Any]]:
        data = {"workflow": self._header, "tasks": dict(tasks)}
        problems = workflow_problems(data, source=str(self.path), base_dir=self.base_dir)
        return [_problem_json(p) for p in problems]

    def validate(self, body: object) -> dict[str, Any]:
        """The checker's problems with a document sent by the page."""
        return {"problems": self._problems(self.accept(body))}

    def preview_schedule(self, body: object) -> dict[str, Any]:
        """The next fire times of a ``schedule`` value and, for cron, the expression in words."""
        if not isinstance(body, Mapping) or "schedule" not in body:
            raise RequestRefused(400, 'the body must be a JSON object with a "schedule"')
        value = _from_json_schedule(body["schedule"])
        timezone = self._header.get("timezone")
        try:
            schedule = parse_schedule(
                value, timezone if isinstance(timezone, str) else None, source=str(self.path)
            )
            now = _dt.datetime.now(_dt.timezone.utc)
            fires = schedule.next_fire_times(now, PREVIEW_FIRES)
        except WorkflowError as exc:
            return {"fires": [], "words": "", "problems": [_problem_json(p) for p in exc.problems]}
        except ValueError as exc:
            return {
                "fires": [],
                "words": "",
                "problems": [{"task": None, "field": "schedule", "message": str(exc)}],
            }
        return {
            "fires": [f.isoformat() for f in fires],
            "words": _in_words(schedule, value),
            "timezone": str(schedule.tz),
            "problems": [],
        }

    # -- saving --------------------------------------------------------------------
    def save(self, body: object) -> dict[str, Any]:
        """Merge the page's tasks into the file, if it is still the version they were based on.

        Raises:
            RequestRefused: 400 (refused content, see :meth:`accept`), 409 (the
                file changed on disk since *version*).
        """
        import tomlkit

        tasks = self.accept(body)
        assert isinstance(body, Mapping)
        base = body.get("version")
        if not isinstance(base, str):
            raise RequestRefused(400, 'the body must name the "version" it was based on')
        with self._lock:
            text, current = self._read()
            if current != base:
                raise RequestRefused(
                    409,
                    f"{self.path.name} changed on disk since it was opened (or last saved) "
                    "here: nothing was written. Reload to see the file as it is now "
                    "(your changes are lost on reload: note them first).",
                )
            document = tomlkit.parse(text)
            _merge_tasks(document, tasks)
            new_text = tomlkit.dumps(document)
            data = new_text.encode("utf-8")
            _write_atomically(self.path, data)
            self._version = _version_of(data)
            self._learn_file(document)
        return {"version": self._version, "problems": self._problems(tasks)}

    # -- running -------------------------------------------------------------------
    def run(self, body: object, manager: TaskManager | None) -> dict[str, Any]:
        """Register the page's tasks with *manager* and execute the whole graph once.

        The previous run's tasks are unregistered first, so that names stay unique.

        Raises:
            RequestRefused: 400 (refused content), 404 (no task manager),
                409 (the previous run is still going), 422 (the checker's problems).
        """
        if manager is None:
            raise RequestRefused(404, "this dashboard has no task manager to run the workflow on")
        tasks = self.accept(body)
        problems = self._problems(tasks)
        if problems:
            raise RequestRefused(
                422,
                f"fix the workflow's {len(problems)} problem(s) before running it: "
                + "; ".join(p["text"] for p in problems[:5]),
            )
        data = {"workflow": self._header, "tasks": tasks}
        workflow = parse_workflow(data, source=str(self.path), base_dir=self.base_dir)
        with self._run_lock:
            last = self._last_run
            if last is not None:
                if not manager.wait_for_execution(last.execution_id, 0):
                    raise RequestRefused(
                        409, f"the previous run {last.execution_id} is still running"
                    )
                for task_id in reversed(list(last.task_ids.values())):
                    # Unregistered by someone else: what matters is that it is gone.
                    with contextlib.suppress(Exception):
                        manager.unregister_task(task_id)
                self._last_run = None
            try:
                ids = register_workflow(workflow, manager, schedules=False)
            except WorkflowError as exc:
                raise RequestRefused(409, str(exc)) from None
            try:
                execution_id = manager.execute_tasks(list(ids.values()))[0]
            except (ValueError, RuntimeError) as exc:
                for task_id in reversed(list(ids.values())):
                    manager.unregister_task(task_id)
                raise RequestRefused(409, f"cannot run: {exc}") from None
            self._last_run = _Run(execution_id, ids)
        return {"execution_id": execution_id, "tasks": ids}

    # -- the page --------------------------------------------------------------------
    def routes(self, manager: Callable[[], TaskManager | None]) -> list[Route]:
        """The designer's page and API, for the dashboard's app."""
        from starlette.routing import Route

        return [
            Route("/designer", self._page),
            Route("/api/designer/document", self._endpoint(lambda _: self.document())),
            Route("/api/designer/validate", self._endpoint(self.validate), methods=["POST"]),
            Route("/api/designer/save", self._endpoint(self.save), methods=["POST"]),
            Route(
                "/api/designer/schedule", self._endpoint(self.preview_schedule), methods=["POST"]
            ),
            Route("/api/designer/layout", self._endpoint(_layout), methods=["POST"]),
            Route(
                "/api/designer/run",
                self._endpoint(lambda body: self.run(body, manager())),
                methods=["POST"],
            ),
        ]

    async def _page(self, request: Request) -> Response:
        from starlette.responses import FileResponse

        from ._app import STATIC

        return FileResponse(STATIC / "designer.html", headers={"cache-control": "no-store"})

    def _endpoint(self, handler: Callable[[object], dict[str, Any]]) -> Callable[[Request], Any]:
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import JSONResponse

        async def endpoint(request: Request) -> Response:
            body: object = None
            if request.method == "POST":
                raw = b""
                async for chunk in request.stream():
                    raw += chunk
                    if len(raw) > MAX_BODY:
                        return JSONResponse(
                            {"error": f"the request is larger than {MAX_BODY} bytes"},
                            status_code=413,
                        )
                try:
                    body = json.loads(raw)
                except ValueError:
                    return JSONResponse({"error": "the body is not JSON"}, status_code=400)
                except RecursionError:
                    return JSONResponse({"error": "the body is nested too deeply"}, status_code=400)
            try:
                result = await run_in_threadpool(handler, body)
            except RequestRefused as exc:
                return JSONResponse({"error": exc.message}, status_code=exc.status)
            except DesignerError as exc:
                return JSONResponse({"error": str(exc)}, status_code=409)
            except RecursionError:
                return JSONResponse({"error": "values are nested too deeply"}, status_code=400)
            return JSONResponse(result, headers={"cache-control": "no-store"})

        return endpoint


# -- helpers -----------------------------------------------------------------------


def _layout(body: object) -> dict[str, Any]:
    from ._layout import layered_layout

    if not isinstance(body, Mapping) or not isinstance(body.get("parents"), Mapping):
        raise RequestRefused(400, 'the body must be a JSON object with "parents": {node: [...]}')
    parents = {
        str(node): [str(p) for p in ps] if isinstance(ps, list) else []
        for node, ps in body["parents"].items()
    }
    if len(parents) > MAX_TASKS:
        raise RequestRefused(400, f"at most {MAX_TASKS} nodes")
    positions = layered_layout(list(parents), _without_back_edges(parents))
    return {"positions": {n: list(p) for n, p in positions.items()}}


def _without_back_edges(parents: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """*parents* minus the edges that close cycles (found by a depth-first search).

    The layered layout needs a DAG, and a file on disk (or a request) may hold
    a cycle: drawn without its closing edges, it still shows, and the checker
    reports the cycle.
    """
    known = set(parents)
    kept: dict[str, list[str]] = {node: [] for node in parents}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in parents:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(parents[root]))]
        while stack:
            node, ups = stack[-1]
            up = next(ups, None)
            if up is None:
                state[node] = 2
                stack.pop()
            elif up not in known or state.get(up) == 1:
                continue  # unknown, or an edge back onto the path: a cycle's closing edge
            else:
                kept[node].append(up)
                if up not in state:
                    state[up] = 1
                    stack.append((up, iter(parents[up])))
    return kept


def _texts_with_fields(key: str, value: object) -> Iterator[tuple[str, str]]:
    """The strings of a task's field *key* that MARKUP applies to, with where they are.

    All of them (keys of tables included), except the values of the call's
    arguments (``args``, and ``kwargs`` but for its names).
    """
    if key == "args":
        return
    if key == "kwargs":
        if isinstance(value, Mapping):
            yield from (("kwargs", str(k)) for k in value)
        return
    stack: list[tuple[str, object]] = [(key, value)]
    while stack:
        field, item = stack.pop()
        if isinstance(item, str):
            yield field, item
        elif isinstance(item, Mapping):
            for inner_key, inner in item.items():
                yield f"{field}.{inner_key}", str(inner_key)
                stack.append((f"{field}.{inner_key}", inner))
        elif isinstance(item, list):
            stack.extend((field, inner) for inner in item)


def _texts_of(key: str, value: object) -> Iterator[str]:
    return (text for _, text in _texts_with_fields(key, value))


def _restore(old: Any, new: Any) -> Any:
    """*new* (as the page sent it, JSON) with the file's *old* values where they are equal.

    JSON has no dates and JavaScript no ``10.0`` apart from ``10``: a value the
    page got from the file and sent back unchanged becomes the file's again,
    part by part, so that the checker, a run and the file see what the file holds.
    """
    if _same_value(_to_json(old), new):
        return old
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [_restore(a, b) for a, b in zip(old, new, strict=True)]
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        return {k: _restore(old[k], v) if k in old else v for k, v in new.items()}
    return new


def _calls_of(document: Any) -> set[str]:
    """The ``call`` strings of a workflow document's tasks."""
    tasks = document.get("tasks", {})
    tables = tasks.values() if isinstance(tasks, dict) else ()
    return {
        str(t["call"]) for t in tables if isinstance(t, dict) and isinstance(t.get("call"), str)
    }


def _plain_table(value: Any) -> dict[str, Any]:
    """A tomlkit table as plain Python values ({} if it is not a table)."""
    if not isinstance(value, dict):
        return {}
    return dict(value.unwrap()) if hasattr(value, "unwrap") else dict(value)


def _problem_json(problem: WorkflowProblem) -> dict[str, Any]:
    return {
        "task": problem.task,
        "field": problem.field,
        "message": problem.message,
        "text": str(problem),
    }


def _version_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _toml_safe_stem(path: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem)
    return stem or "workflow"


def _write_atomically(path: Path, data: bytes) -> None:
    """Write *data* to *path* through a temporary file and a rename.

    A reader (``threadloom run``, an editor) sees the old file or the new
    one, never half of one; the file's permissions are kept.
    """
    try:
        mode: int | None = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = None
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _to_json(value: Any) -> Any:
    """TOML values to JSON: dates and times become ISO strings."""
    if isinstance(value, Mapping):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    return value


def _from_json_schedule(value: Any) -> Any:
    # A one-off time travels as an ISO string; the file holds a TOML date-time.
    if isinstance(value, Mapping) and isinstance(value.get("once"), str):
        try:
            moment = _dt.datetime.fromisoformat(value["once"])
        except ValueError:
            return dict(value)  # the checker says what a one-off time must be
        return {**value, "once": moment}
    return value


def _from_json_tasks(tasks: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for name, fields in tasks.items():
        fields = dict(fields)
        if "schedule" in fields:
            fields["schedule"] = _from_json_schedule(fields["schedule"])
        out[name] = fields
    return out


def _in_words(schedule: Any, value: Any) -> str:
    expr = getattr(schedule, "expr", None)
    if isinstance(expr, str):
        try:
            from cronsim import CronSim

            return str(CronSim(expr, _dt.datetime.now(_dt.timezone.utc)).explain())
        except Exception:
            return ""
    if isinstance(value, Mapping) and "every" in value:
        unit = str(value.get("unit", ""))
        count = value["every"]
        at = f" at {value['at']}" if value.get("at") else ""
        if unit.endswith("day") and unit != "days":
            return f"Every {unit.capitalize()}{at}"
        return f"Every {count} {unit}{at}"
    if isinstance(value, Mapping) and "once" in value:
        return f"Once, at {_to_json(value['once'])}"
    return ""


def _same_value(old: Any, new: Any) -> bool:
    """Equal as the file means them (10 and 10.0 are; true and 1 are not)."""
    if isinstance(old, bool) or isinstance(new, bool):
        return type(old) is type(new) and old == new
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        return old.keys() == new.keys() and all(_same_value(old[k], new[k]) for k in old)
    if isinstance(old, list) and isinstance(new, list):
        return len(old) == len(new) and all(
            _same_value(a, b) for a, b in zip(old, new, strict=True)
        )
    if isinstance(old, Mapping | list) or isinstance(new, Mapping | list):
        return False
    return bool(old == new) and (type(old) is type(new) or {type(old), type(new)} <= {int, float})


def _toml_item(value: Any) -> Any:
    """A value for a task's field: tables inline (``retry = { ... }``), as people write them."""
    import tomlkit

    if isinstance(value, Mapping):
        table = tomlkit.inline_table()
        for key, inner in value.items():
            table[key] = _toml_item(inner)
        return table
    if isinstance(value, list):
        array = tomlkit.array()
        for inner in value:
            array.append(_toml_item(inner))
        return array
    return value


def _field_rank(key: str) -> int:
    return TASK_FIELDS.index(key) if key in TASK_FIELDS else 0


def _merge_tasks(document: Any, tasks: Mapping[str, Mapping[str, Any]]) -> None:
    """Make *document*'s ``[tasks]`` hold *tasks*, touching only what differs."""
    import tomlkit

    table = document.get("tasks")
    if table is None:
        table = tomlkit.table(is_super_table=True)
        document["tasks"] = table
    for name in list(table.keys()):
        if name not in tasks:
            del table[name]
    for name, fields in tasks.items():
        task = table.get(name)
        if task is None:
            task = tomlkit.table()
            for key in sorted(fields, key=lambda k: (k not in TASK_FIELDS, _field_rank(k))):
                task[key] = _toml_item(fields[key])
            table[name] = task
            continue
        for key in list(task.keys()):
            if key not in fields:
                del task[key]
        for key, value in fields.items():
            existing = task.get(key)
            plain = existing.unwrap() if hasattr(existing, "unwrap") else existing
            if key in task and _same_value(plain, value):
                continue
            task[key] = _toml_item(value)


# -- the command ---------------------------------------------------------------------


def serve_designer(
    workflow: str | os.PathLike[str],
    *,
    modules: Sequence[str] = (),
    port: int = 0,
    history: str | os.PathLike[str] = ":memory:",
    duration: float | None = None,
    announce: Callable[[str], object] = print,
) -> int:
    """``threadloom design``: serve the designer on *workflow* until Ctrl-C (or *duration*).

    Runs started from the page execute on a task manager of this process,
    recorded in *history*.

    Returns:
        The exit code (0).

    Raises:
        DesignerError: the file cannot be opened, a module cannot be used, or
            the port cannot be bound.
    """
    from .. import DashboardError
    from ..task_manager import TaskManager
    from ..thread_pool_manager import ThreadPoolManager
    from . import Dashboard

    try:
        designer = Designer(workflow, modules)
    except PaletteError as exc:
        raise DesignerError(str(exc)) from None
    # The pool threadloom run would use for this file.
    workers = designer.workers or 4
    with (
        ThreadPoolManager(min_workers=min(2, workers), max_workers=workers) as pool,
        TaskManager(thread_pool=pool, history=history) as manager,
    ):
        try:
            dashboard = Dashboard(manager, port=port, designer=designer)
            dashboard.start()
        except (DashboardError, ValueError, TypeError) as exc:
            raise DesignerError(str(exc)) from None
        try:
            announce(f"designer: {dashboard.url.split('?')[0]}designer")
            announce(f"editing {designer.path}; Ctrl-C to stop")
            finished = threading.Event()  # never set: a bounded wait Ctrl-C can interrupt
            deadline = None if duration is None else time.monotonic() + duration
            while deadline is None or time.monotonic() < deadline:
                finished.wait(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            dashboard.stop()
    return 0
