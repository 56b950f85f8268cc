"""Task profiling: where each kind of task spends its time, and what to change.

Opt in with ``ThreadPoolManager(profile=True)`` (or ``TaskManager(profile=True)``,
or ``--profile`` on the CLI); a pool without a profiler runs exactly the code it
ran before (its fast submit path included).  With one, every attempt of a
timed task runs inside a small wrapper on its worker that reads two clocks
around the call (``time.perf_counter`` for wall time, ``time.thread_time`` for
the worker thread's CPU time) and appends one record to a deque.  Nothing else
happens on the worker: the sampler thread folds the records into per-name
aggregates.  Every task is timed up to ``max_task_rate`` tasks a second
(1,000 by default); beyond it the rest keep the pool's fast path, untouched,
and the report says what share was timed (``coverage``).

What is measured, per task name (the task's ``name``, else its function's
qualified name):

* wall and CPU time of each attempt, queue wait (submission to first start),
  attempts and failed attempts, deadlines missed, percentiles of each;
* the share of wall time off the CPU (waiting on IO or locks, or for the GIL),
  told apart (on Linux) from time spent runnable but waiting for a core
  because the machine is busy: the sampler reads each busy worker's
  ``/proc/self/task/<tid>/schedstat``, so a CPU-bound task on an overloaded
  machine is not taken for an IO-bound one;
* with ``trace_memory=True``, the traced memory each attempt left allocated
  (``tracemalloc``; it slows allocation-heavy code about 2x, hence off by
  default; with several tasks running at once the figure also counts what the
  others allocated meanwhile, so read it as an estimate);
* a sampled call tree: one thread wakes ``sample_rate`` times a second, takes
  ``sys._current_frames()`` and, for every worker that is running a task,
  walks its stack down to the task's wrapper and counts that stack against
  the task's name.

Why sample ``sys._current_frames()`` ourselves rather than use yappi or
pyinstrument: both hook every Python call (``sys.setprofile``) or profile the
thread that started them.  A per-call hook costs a few hundred nanoseconds per
call, on every call, on every worker: on tasks that are themselves a few
microseconds it is a 2-10x slowdown, far beyond the budget of a profiler that
is meant to stay on.  A sampler costs per sample, not per call: at 100 Hz,
walking a few stacks of 20-50 frames takes well under 1% of one core, whatever
the tasks do (Dask's worker profiler makes the same choice).  The price is
statistical: a function is seen in proportion to the time spent in it, and
names that ran for less than a few sample intervals have few or no samples.

:meth:`Profiler.report` turns the aggregates into a :class:`ProfileReport`
with :class:`Recommendation` s (Little's law for IO-bound names waiting in the
queue, processes or a free-threaded build for GIL-bound names, retry hot
spots, starving low priorities, missed deadlines, memory growing per task);
:meth:`Profiler.speedscope` exports the samples for https://www.speedscope.app.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
import threading
import time
import tracemalloc
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import CodeType, FrameType
from typing import Any

from ._version import __version__
from .managed import current_task


def _events() -> Any:
    # Imported on first use, as the pool imports this module.
    from . import events

    return events


__all__ = [
    "SPEEDSCOPE_SCHEMA",
    "CallNode",
    "Distribution",
    "FunctionCost",
    "NameProfile",
    "ProfileReport",
    "Profiler",
    "Recommendation",
    "RecordedProfile",
    "format_report",
    "load_profiles",
    "report_from_dict",
    "save_profile",
]

SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"

#: Default samples per second of the stack sampler.
DEFAULT_SAMPLE_RATE = 100.0
#: Tasks timed per second by default (the rest run untouched; see Profiler).
DEFAULT_MAX_TASK_RATE = 1000.0
#: Seconds of a timing window: the task budget is refilled at each.
WINDOW = 0.1
#: Values kept per name for percentiles (beyond it, a uniform reservoir sample).
DEFAULT_MAX_VALUES = 10_000
#: Distinct task names kept; tasks of further names are counted under OTHER_NAMES.
MAX_NAMES = 2_000
OTHER_NAMES = "(other names)"
#: Frames kept per sampled stack (the innermost are dropped beyond it).
MAX_STACK_DEPTH = 128
# A name is CPU-bound when its CPU share (corrected for GIL sharing) is at
# least this, IO-bound when its off-CPU share is at least _IO_SHARE.
_CPU_SHARE = 0.5
_IO_SHARE = 0.7
# Names at least this much on the CPU compete for the GIL; the GIL is busy
# when task CPU per second of profile reaches _GIL_BUSY.
_CPU_USER_SHARE = 0.15
_GIL_BUSY = 0.4
# A priority starves when its tasks wait this many times longer than the
# higher priorities arriving meanwhile.
_STARVING_RATIO = 5.0


def _task_label(func: Callable[..., Any]) -> str:
    while isinstance(func, functools.partial):
        func = func.func
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    return str(name) if name else type(func).__qualname__


# -- the worker side ------------------------------------------------------------


class _ProfiledCall:
    """A task's function, run through the profiler on each attempt (on the worker)."""

    __slots__ = ("func", "label", "profiler")

    def __init__(self, profiler: Profiler, func: Callable[..., Any]) -> None:
        self.profiler = profiler
        self.func = func
        self.label = _task_label(func)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        profiler = self.profiler
        task = current_task()
        name = self.label if profiler.by_function else (task.name or self.label)
        attempt = task.attempt
        ident = threading.get_ident()
        running = profiler._running  # noqa: SLF001 (the profiler, same module)
        # A task run on its submitter (caller_runs) may be inside another task.
        outer = running.get(ident)
        if ident not in profiler._natives:  # noqa: SLF001 (same module)
            profiler._natives[ident] = threading.get_native_id()  # noqa: SLF001 (same module)
        memory = profiler.trace_memory and tracemalloc.is_tracing()
        mem_start = tracemalloc.get_traced_memory()[0] if memory else 0
        failed = ""
        wall_start = time.perf_counter()
        cpu_start = time.thread_time()
        running[ident] = name
        try:
            return self.func(*args, **kwargs)
        except BaseException as exc:
            failed = type(exc).__qualname__
            raise
        finally:
            cpu = time.thread_time() - cpu_start
            wall = time.perf_counter() - wall_start
            if outer is None:
                running.pop(ident, None)
            else:
                running[ident] = outer
            deadline = task.deadline
            now = time.time()
            submitted = task.submitted_at
            bus = profiler._bus  # noqa: SLF001 (same module)
            if bus is not None and bus.active:
                # The same measurements, per attempt, for subscribers.
                bus.emit(
                    _events().TaskProfiled(
                        now,
                        task.task_id,
                        name,
                        attempt,
                        threading.current_thread().name,
                        wall,
                        cpu,
                        max(0.0, 1.0 - cpu / wall) if wall > 0 else 0.0,
                        failed,
                        (tracemalloc.get_traced_memory()[0] - mem_start) if memory else None,
                    )
                )
            profiler._records.append(  # noqa: SLF001 (same module)
                (
                    name,
                    task.priority,
                    attempt,
                    submitted,
                    # queue wait of the first attempt (retries wait by design)
                    (now - wall - submitted) if attempt == 1 else -1.0,
                    now,
                    wall,
                    cpu,
                    failed,
                    deadline is not None and time.monotonic() > deadline,
                    task.timeout,
                    (tracemalloc.get_traced_memory()[0] - mem_start) if memory else None,
                )
            )

    def task_done(self, future: Any) -> None:
        """The pool's done-callback: count a deadline missed before any attempt started."""
        task = getattr(future, "task", None)
        if task is None or task.started_at is not None:
            return
        if getattr(task.status, "value", None) != "timed_out":
            return
        name = self.label if self.profiler.by_function else (task.name or self.label)
        self.profiler._records.append(  # noqa: SLF001 (same module)
            (
                name,
                task.priority,
                0,
                task.submitted_at,
                -1.0,
                time.time(),
                0.0,
                0.0,
                "",
                True,
                task.timeout,
                None,
            )
        )


# -- aggregates -------------------------------------------------------------------


class _Reservoir:
    """Exact count and sum; a bounded uniform sample of the values for percentiles."""

    __slots__ = ("_rng", "count", "limit", "max", "total", "values")

    def __init__(self, limit: int) -> None:
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        self.limit = limit
        self.values: list[float] = []
        self._rng = 0x9E3779B9

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        if value > self.max:
            self.max = value
        if len(self.values) < self.limit:
            self.values.append(value)
            return
        # Algorithm R with a cheap xorshift (the stdlib's random is shared state).
        x = self._rng
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._rng = x
        slot = x % self.count
        if slot < self.limit:
            self.values[slot] = value

    def distribution(self) -> Distribution:
        if not self.count:
            return Distribution(0, 0.0, 0.0, 0.0, 0.0, 0.0)
        ordered = sorted(self.values)
        return Distribution(
            self.count,
            self.total / self.count,
            _quantile(ordered, 0.5),
            _quantile(ordered, 0.9),
            _quantile(ordered, 0.99),
            self.max,
        )


def _quantile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class _NameStats:
    __slots__ = (
        "attempts",
        "cpu",
        "deadline_missed",
        "errors",
        "failed_attempts",
        "first_submit",
        "last_submit",
        "memory",
        "memory_grew",
        "priorities",
        "retried_tasks",
        "tasks",
        "timeout",
        "wait",
        "wall",
    )

    def __init__(self, limit: int) -> None:
        self.tasks = 0
        self.attempts = 0
        self.failed_attempts = 0
        self.retried_tasks = 0
        self.deadline_missed = 0
        self.errors: Counter[str] = Counter()
        self.wall = _Reservoir(limit)
        self.cpu = _Reservoir(limit)
        self.wait = _Reservoir(limit)
        self.memory = _Reservoir(limit)
        self.memory_grew = 0
        self.first_submit = math.inf
        self.last_submit = -math.inf
        self.timeout: float | None = None
        self.priorities: Counter[int] = Counter()


# -- report records ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Distribution:
    """Count, mean and percentiles of one measure (seconds, or bytes for memory)."""

    count: int
    mean: float
    p50: float
    p90: float
    p99: float
    max: float

    def to_dict(self) -> dict[str, float]:
        return {
            "count": self.count,
            "mean": self.mean,
            "p50": self.p50,
            "p90": self.p90,
            "p99": self.p99,
            "max": self.max,
        }


@dataclass(frozen=True, slots=True)
class FunctionCost:
    """One function's share of a name's samples: ``self_share`` with it on top of
    the stack, ``total_share`` with it anywhere on the stack."""

    function: str
    file: str
    line: int
    self_share: float
    total_share: float
    samples: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "file": self.file,
            "line": self.line,
            "self_share": self.self_share,
            "total_share": self.total_share,
            "samples": self.samples,
        }


@dataclass(slots=True)
class CallNode:
    """A node of a sampled call tree: ``total`` samples through it, ``self`` in it."""

    function: str
    file: str
    line: int
    total: int = 0
    self: int = 0
    children: dict[tuple[str, str, int], CallNode] = field(default_factory=dict)

    def heaviest_path(self) -> list[CallNode]:
        """From this node down, always into the child with the most samples."""
        path = [self]
        node = self
        while node.children:
            node = max(node.children.values(), key=lambda child: child.total)
            path.append(node)
        return path

    def to_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "file": self.file,
            "line": self.line,
            "total": self.total,
            "self": self.self,
            "children": [
                child.to_dict() for child in sorted(self.children.values(), key=lambda c: -c.total)
            ],
        }


@dataclass(frozen=True, slots=True)
class NameProfile:
    """Everything measured about the tasks of one name.

    ``kind`` is ``"cpu"`` (Python holding the GIL most of its wall time),
    ``"io"`` (mostly off the CPU: waiting on IO or locks) or ``"mixed"``.
    ``cpu_share`` is the share of wall time on a CPU (``time.thread_time``),
    ``runnable_share`` the share spent ready to run but waiting for a core
    (the machine's other work; sampled from Linux's per-thread scheduler
    statistics, 0 elsewhere), ``off_cpu_share`` the rest: waiting on IO,
    locks or the GIL.
    """

    name: str
    kind: str
    tasks: int
    attempts: int
    failed_attempts: int
    retried_tasks: int
    deadline_missed: int
    timeout: float | None
    wall: Distribution
    cpu: Distribution
    wait: Distribution
    cpu_share: float
    runnable_share: float
    off_cpu_share: float
    arrival_rate: float
    memory_growth: Distribution | None
    memory_grew_share: float
    samples: int
    top_functions: tuple[FunctionCost, ...]
    errors: tuple[tuple[str, int], ...]
    priorities: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "tasks": self.tasks,
            "attempts": self.attempts,
            "failed_attempts": self.failed_attempts,
            "retried_tasks": self.retried_tasks,
            "deadline_missed": self.deadline_missed,
            "timeout": self.timeout,
            "wall": self.wall.to_dict(),
            "cpu": self.cpu.to_dict(),
            "wait": self.wait.to_dict(),
            "cpu_share": self.cpu_share,
            "runnable_share": self.runnable_share,
            "off_cpu_share": self.off_cpu_share,
            "arrival_rate": self.arrival_rate,
            "memory_growth": None if self.memory_growth is None else self.memory_growth.to_dict(),
            "memory_grew_share": self.memory_grew_share,
            "samples": self.samples,
            "top_functions": [f.to_dict() for f in self.top_functions],
            "errors": dict(self.errors),
            "priorities": list(self.priorities),
        }


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One piece of advice: what to change (``advice``), why (``reason``), and
    the figures both rest on (``numbers``).

    ``kind`` is one of ``"workers"``, ``"gil"``, ``"retries"``,
    ``"starvation"``, ``"deadlines"``, ``"memory"``; ``subject`` the task name
    (or ``"priority N"``).
    """

    kind: str
    subject: str
    advice: str
    reason: str
    numbers: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "advice": self.advice,
            "reason": self.reason,
            "numbers": dict(self.numbers),
        }


@dataclass(frozen=True, slots=True)
class ProfileReport:
    """A profile's summary: per-name figures and the recommendations.

    ``gil_load`` is the task CPU time per second of profile (about 1.0 when
    Python code keeps the GIL busy); ``concurrency`` the mean number of tasks
    running at once; ``coverage`` the share of the pools' tasks that were
    timed (below 1 when more than ``max_task_rate`` per second came: counts
    are then of the timed tasks, and rates are scaled up by it).
    """

    duration: float
    sample_rate: float
    samples: int
    max_workers: int | None
    cores: int
    gil_load: float
    concurrency: float
    names: tuple[NameProfile, ...]
    recommendations: tuple[Recommendation, ...]
    coverage: float = 1.0

    def name(self, name: str) -> NameProfile:
        """The profile of task name *name*.

        Raises:
            KeyError: no task of that name was profiled.
        """
        for profile in self.names:
            if profile.name == name:
                return profile
        raise KeyError(f"no profiled task named {name!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "duration": self.duration,
            "sample_rate": self.sample_rate,
            "samples": self.samples,
            "max_workers": self.max_workers,
            "cores": self.cores,
            "gil_load": self.gil_load,
            "concurrency": self.concurrency,
            "coverage": self.coverage,
            "names": [n.to_dict() for n in self.names],
            "recommendations": [r.to_dict() for r in self.recommendations],
        }


# -- the profiler -------------------------------------------------------------------


class Profiler:
    """Profiles the tasks of the pools it is given to (see the module docstring).

    Args:
        sample_rate: stack samples per second (0: no sampling, timings only).
        trace_memory: also measure traced memory left allocated per attempt
            (starts ``tracemalloc`` while the profiler runs, if it was not).
        max_values: values kept per name and measure for percentiles.
        group_by: ``"name"`` (the task's name, else its function's) or
            ``"function"`` (the function's qualified name: a graph whose
            tasks are many names of a few functions reads better so).
        max_task_rate: tasks timed per second, at most (None: every task).
            Beyond it the rest run untouched (on the pool's fast path), so
            that a flood of tiny tasks is not slowed down by its profile;
            the figures are then a sample (see ``ProfileReport.coverage``).

    Raises:
        TypeError, ValueError: a bad argument; the message names it.
    """

    def __init__(
        self,
        *,
        sample_rate: float = DEFAULT_SAMPLE_RATE,
        trace_memory: bool = False,
        max_values: int = DEFAULT_MAX_VALUES,
        group_by: str = "name",
        max_task_rate: float | None = DEFAULT_MAX_TASK_RATE,
    ) -> None:
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | float):
            raise TypeError(f"sample_rate must be a number, not {type(sample_rate).__name__}")
        if not (0 <= sample_rate <= 10_000) or math.isnan(sample_rate):
            raise ValueError(
                f"sample_rate must be between 0 and 10000 per second, not {sample_rate}"
            )
        if not isinstance(trace_memory, bool):
            raise TypeError(f"trace_memory must be a bool, not {type(trace_memory).__name__}")
        if isinstance(max_values, bool) or not isinstance(max_values, int) or max_values < 1:
            raise ValueError(f"max_values must be an int >= 1, not {max_values!r}")
        if group_by not in ("name", "function"):
            raise ValueError(f"group_by must be 'name' or 'function', not {group_by!r}")
        if max_task_rate is not None and (
            isinstance(max_task_rate, bool)
            or not isinstance(max_task_rate, int | float)
            or not max_task_rate > 0
        ):
            raise ValueError(
                f"max_task_rate must be a positive number or None, not {max_task_rate!r}"
            )
        self.max_task_rate = None if max_task_rate is None else float(max_task_rate)
        # The timing budget of the current window (see take()).
        self._budget = 0.0
        self._refill_at = 0.0
        # Called at each new window (a pool turns its fast path off again).
        self._window_hooks: list[Callable[[], object]] = []
        # Per attached pool: (its submitted-task counter, the value at attach).
        self._sources: list[tuple[Callable[[], int], int]] = []
        self._max_workers: Callable[[], int] | None = None
        self.group_by = group_by
        self.by_function = group_by == "function"
        self.sample_rate = float(sample_rate)
        self.trace_memory = trace_memory
        self.max_values = max_values
        # Thread ident -> name of the task it runs.  Written by workers (one
        # key each), read by the sampler: single dict operations, atomic.
        self._running: dict[int, str] = {}
        # Thread ident -> the kernel's thread id (for its scheduler statistics).
        self._natives: dict[int, int] = {}
        # Per thread: (name, when, cpu ns, run-queue ns) at its last sample.
        self._sched_last: dict[int, tuple[str, int, int, int]] = {}
        # Per name: [seconds observed, seconds on a CPU, seconds runnable
        # but waiting for a CPU] between consecutive samples.
        self._sched: dict[str, list[float]] = {}
        # Attempt records, appended by workers (deque.append is atomic) and
        # folded into _stats by whoever holds _lock.
        self._records: deque[tuple[Any, ...]] = deque()
        self._lock = threading.Lock()
        # The event bus of the pool it profiles (see attach), or None.
        self._bus: Any = None
        self._stats: dict[str, _NameStats] = {}
        # (priority, submitted_at, wait) of first attempts, for starvation.
        self._waits: deque[tuple[int, float, float]] = deque(maxlen=max_values * 4)
        # Sampled stacks per name: stack (frame indexes, root first) -> seconds.
        self._stacks: dict[str, dict[tuple[int, ...], float]] = {}
        self._frames: list[tuple[str, str, int]] = []
        self._frame_index: dict[CodeType, int] = {}
        self._samples = 0
        self._name_samples: Counter[str] = Counter()
        self._users = 0
        self._sampler: threading.Thread | None = None
        self._stop = threading.Event()
        self._started_tracemalloc = False
        self._first_start: float | None = None
        self._active_since: float | None = None
        self._active_total = 0.0
        # First submission and last end seen (epoch seconds): the busy window.
        self._busy_from = math.inf
        self._busy_until = -math.inf

    # -- wiring -------------------------------------------------------------
    def wrap(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
    ) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
        """``(func, args, kwargs)`` rewritten so that each attempt is profiled
        (the shape of a graph runner's ``call_wrapper``)."""
        return _ProfiledCall(self, func), args, kwargs or {}

    def take(self) -> bool:
        """Whether to time the task being submitted (see ``max_task_rate``).

        The budget is refilled every :data:`WINDOW` seconds; concurrent callers
        may over- or under-spend it by a few tasks, which only changes the
        sample's size.
        """
        rate = self.max_task_rate
        if rate is None:
            return True
        self._budget -= 1
        if self._budget >= 0:
            return True
        now = time.monotonic()
        if now < self._refill_at:
            return False
        self._refill_at = now + WINDOW
        self._budget = rate * WINDOW - 1
        return True

    def attach(
        self,
        submitted: Callable[[], int],
        on_window: Callable[[], object] | None = None,
        max_workers: Callable[[], int] | None = None,
        bus: Any = None,
    ) -> None:
        """Tell the profiler about a pool: *submitted* counts its tasks (for
        :attr:`ProfileReport.coverage`); *on_window* is called at each new timing
        window while some tasks go untimed; *max_workers* is its worker limit
        (the report's default); *bus* is its event bus, where each timed
        attempt is reported (``TaskProfiled``) while someone listens.  Pools
        call it when they start."""
        if bus is not None:
            self._bus = bus
        with self._lock:
            # A pool started again keeps the count it was attached with.
            if all(source != submitted for source, _ in self._sources):
                self._sources.append((submitted, submitted()))
            if on_window is not None:
                self._window_hooks.append(on_window)
            if max_workers is not None:
                self._max_workers = max_workers

    def detach(self, on_window: Callable[[], object] | None) -> None:
        with self._lock:
            self._window_hooks = [h for h in self._window_hooks if h != on_window]

    def start(self) -> Profiler:
        """Start sampling (each call needs a matching :meth:`stop`; pools call both)."""
        with self._lock:
            self._users += 1
            if self._users > 1:
                return self
            now = time.monotonic()
            if self._first_start is None:
                self._first_start = now
            self._active_since = now
            if self.trace_memory and not tracemalloc.is_tracing():
                tracemalloc.start()
                self._started_tracemalloc = True
            self._stop = threading.Event()
            # Always: besides sampling, it folds the records (bounding them)
            # and opens the timing windows.
            self._sampler = threading.Thread(
                target=self._sample_loop,
                args=(self._stop,),
                name="threadloom-profiler",
                daemon=True,
            )
            self._sampler.start()
        return self

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop sampling once every :meth:`start` was matched; keep what was measured."""
        with self._lock:
            if self._users == 0:
                return
            self._users -= 1
            if self._users:
                return
            self._stop.set()
            sampler, self._sampler = self._sampler, None
            if self._active_since is not None:
                self._active_total += time.monotonic() - self._active_since
                self._active_since = None
            if self._started_tracemalloc:
                tracemalloc.stop()
                self._started_tracemalloc = False
        if sampler is not None and sampler is not threading.current_thread():
            sampler.join(timeout)

    def __enter__(self) -> Profiler:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._users > 0

    # -- sampling -------------------------------------------------------------
    def _sample_loop(self, stop: threading.Event) -> None:
        sampling = self.sample_rate > 0
        interval = 1.0 / self.sample_rate if sampling else WINDOW
        last = time.perf_counter()
        folded_at = last
        stop_code = _ProfiledCall.__call__.__code__
        while not stop.wait(interval):
            now = time.perf_counter()
            # Weight by the time since the last sample: a sampler kept off the
            # GIL for a while still accounts for that while.
            weight = now - last
            last = now
            if sampling and self._running:
                self._sample(stop_code, min(weight, 10 * interval))
            if now - folded_at >= WINDOW:
                folded_at = now
                with self._lock:
                    self._fold()
                    hooks = list(self._window_hooks) if self._budget < 0 else []
                for hook in hooks:
                    # The budget ran out in the last window: the pools went
                    # to their fast path; the new window times tasks again.
                    hook()

    def _sample(self, stop_code: CodeType, weight: float) -> None:
        running = list(self._running.items())
        if not running:
            return
        if _SCHEDSTAT:
            self._sample_scheduler(running)
        frames = sys._current_frames()  # noqa: SLF001 (the interpreter's frame API, as Dask's profiler)
        index = self._frame_index
        table = self._frames
        with self._lock:
            for ident, name in running:
                frame: FrameType | None = frames.get(ident)
                stack: list[int] = []
                while frame is not None:
                    code = frame.f_code
                    if code is stop_code:
                        break
                    position = index.get(code)
                    if position is None:
                        position = index[code] = len(table)
                        table.append(
                            (
                                getattr(code, "co_qualname", code.co_name),
                                code.co_filename,
                                code.co_firstlineno,
                            )
                        )
                    stack.append(position)
                    frame = frame.f_back
                if frame is None or not stack:
                    # Between the wrapper's bookkeeping and the call: no task frames yet.
                    continue
                stack.reverse()
                counter = self._stacks.get(name)
                if counter is None:
                    if len(self._stacks) >= MAX_NAMES:
                        name = OTHER_NAMES
                    counter = self._stacks.setdefault(name, {})
                key = tuple(stack[:MAX_STACK_DEPTH])
                counter[key] = counter.get(key, 0.0) + weight
                self._name_samples[name] += 1
                self._samples += 1
        del frames

    def _sample_scheduler(self, running: list[tuple[int, str]]) -> None:
        """Read each busy worker's scheduler statistics (Linux): time on a CPU
        and time runnable but waiting for one.  Off-CPU time that is run-queue
        wait means the machine is short of cores, not that the task waits on
        IO; the classification needs to tell them apart."""
        now = time.monotonic_ns()
        last = self._sched_last
        seen = {}
        for ident, name in running:
            native = self._natives.get(ident)
            if native is None:
                continue
            reading = _read_schedstat(native)
            if reading is None:
                continue
            cpu, runq = reading
            seen[ident] = (name, now, cpu, runq)
            previous = last.get(ident)
            if previous is not None and previous[0] == name:
                totals = self._sched.get(name)
                if totals is None:
                    if len(self._sched) >= MAX_NAMES:
                        continue
                    totals = self._sched[name] = [0.0, 0.0, 0.0]
                totals[0] += (now - previous[1]) / 1e9
                totals[1] += (cpu - previous[2]) / 1e9
                totals[2] += (runq - previous[3]) / 1e9
        self._sched_last = seen

    # -- aggregation ------------------------------------------------------------
    def _fold(self) -> None:
        # Called with _lock held.
        records = self._records
        limit = self.max_values
        stats_by_name = self._stats
        while records:
            try:
                (
                    name,
                    priority,
                    attempt,
                    submitted,
                    wait,
                    end,
                    wall,
                    cpu,
                    failed,
                    missed,
                    timeout,
                    mem,
                ) = records.popleft()
            except IndexError:
                break
            if submitted < self._busy_from:
                self._busy_from = submitted
            if end > self._busy_until:
                self._busy_until = end
            stats = stats_by_name.get(name)
            if stats is None:
                if len(stats_by_name) >= MAX_NAMES:
                    # Unbounded distinct names (an id in every name) share one row.
                    name = OTHER_NAMES
                    stats = stats_by_name.get(name)
                if stats is None:
                    stats = stats_by_name[name] = _NameStats(limit)
            if timeout is not None:
                stats.timeout = timeout
            if attempt == 0:
                # Timed out in the queue, never started.
                stats.tasks += 1
                stats.deadline_missed += 1
                continue
            stats.attempts += 1
            if attempt == 1:
                stats.tasks += 1
                stats.priorities[priority] += 1
                stats.first_submit = min(stats.first_submit, submitted)
                stats.last_submit = max(stats.last_submit, submitted)
                if wait >= 0:
                    stats.wait.add(max(0.0, wait))
                    self._waits.append((priority, submitted, max(0.0, wait)))
            elif attempt == 2:
                stats.retried_tasks += 1
            stats.wall.add(wall)
            stats.cpu.add(min(cpu, wall) if wall > 0 else cpu)
            if failed:
                stats.failed_attempts += 1
                stats.errors[failed] += 1
            if missed:
                stats.deadline_missed += 1
            if mem is not None:
                stats.memory.add(float(mem))
                if mem > 0:
                    stats.memory_grew += 1

    def reset(self) -> None:
        """Forget everything measured so far (sampling goes on if running)."""
        with self._lock:
            self._records.clear()
            self._stats.clear()
            self._waits.clear()
            self._stacks.clear()
            self._sched.clear()
            self._name_samples.clear()
            self._samples = 0
            now = time.monotonic()
            self._first_start = now if self._users else None
            self._active_since = now if self._users else None
            self._active_total = 0.0
            self._busy_from = math.inf
            self._busy_until = -math.inf

    def _duration(self) -> float:
        total = self._active_total
        if self._active_since is not None:
            total += time.monotonic() - self._active_since
        return total

    # -- call trees -----------------------------------------------------------------
    def names(self) -> list[str]:
        """The task names measured so far, sorted."""
        with self._lock:
            self._fold()
            return sorted(set(self._stats) | set(self._stacks))

    def call_tree(self, name: str) -> CallNode:
        """The sampled call tree of task name *name* (root: the name itself).

        Node counts are samples; an unknown name gives an empty tree.
        """
        with self._lock:
            stacks = dict(self._stacks.get(name, {}))
            frames = list(self._frames)
        root = CallNode(name, "", 0)
        interval = 1.0 / self.sample_rate if self.sample_rate else 1.0
        for stack, seconds in stacks.items():
            count = max(1, round(seconds / interval))
            root.total += count
            node = root
            for position in stack:
                key = frames[position]
                child = node.children.get(key)
                if child is None:
                    child = node.children[key] = CallNode(*key)
                child.total += count
                node = child
            node.self += count
        return root

    def top_functions(self, name: str, limit: int = 10) -> tuple[FunctionCost, ...]:
        """The functions of name *name* with the most samples on top of the stack."""
        with self._lock:
            stacks = dict(self._stacks.get(name, {}))
            frames = list(self._frames)
        return _top_functions(stacks, frames, limit)

    def speedscope(self, names: Iterable[str] | None = None) -> dict[str, Any]:
        """The sampled stacks as a speedscope file (one "sampled" profile per name).

        Weights are seconds; open the JSON at https://www.speedscope.app.
        """
        with self._lock:
            wanted = sorted(self._stacks) if names is None else list(names)
            stacks = {n: dict(self._stacks.get(n, {})) for n in wanted}
            frames = list(self._frames)
        used: dict[int, int] = {}
        shared: list[dict[str, Any]] = []
        profiles = []
        for name in wanted:
            samples: list[list[int]] = []
            weights: list[float] = []
            for stack, seconds in sorted(stacks[name].items(), key=lambda item: -item[1]):
                mapped = []
                for position in stack:
                    index = used.get(position)
                    if index is None:
                        index = used[position] = len(shared)
                        function, file, line = frames[position]
                        shared.append({"name": function, "file": file, "line": line})
                    mapped.append(index)
                samples.append(mapped)
                weights.append(round(seconds, 6))
            profiles.append(
                {
                    "type": "sampled",
                    "name": name,
                    "unit": "seconds",
                    "startValue": 0,
                    "endValue": round(sum(weights), 6),
                    "samples": samples,
                    "weights": weights,
                }
            )
        return {
            "$schema": SPEEDSCOPE_SCHEMA,
            "shared": {"frames": shared},
            "profiles": profiles,
            "name": "threadloom task profile",
            "activeProfileIndex": 0,
            "exporter": f"threadloom {__version__}",
        }

    # -- the report ---------------------------------------------------------------------
    def report(self, *, max_workers: int | None = None, cores: int | None = None) -> ProfileReport:
        """Summarise what was measured and say what to change.

        Args:
            max_workers: the pool's worker limit (the advice compares with it;
                default: that of the last pool this profiler was given to).
            cores: usable CPU cores (default: the container-aware count).
        """
        if max_workers is None and self._max_workers is not None:
            max_workers = self._max_workers()
        if cores is None:
            from ._limits import usable_cpu_count

            cores = max(1, usable_cpu_count().count)
        with self._lock:
            self._fold()
            stats_by_name = dict(self._stats)
            stacks = {n: dict(c) for n, c in self._stacks.items()}
            frames = list(self._frames)
            waits = list(self._waits)
            samples = self._samples
            name_samples = dict(self._name_samples)
            sched = {n: tuple(v) for n, v in self._sched.items()}
            busy = self._busy_until - self._busy_from
            sources = list(self._sources)
        submitted = sum(count() - base for count, base in sources)
        timed = sum(s.tasks for s in stats_by_name.values())
        coverage = min(1.0, timed / submitted) if submitted > 0 and timed else 1.0
        # The window tasks were in the pool, not the profiler's idle time around it.
        duration = busy if busy > 0 else self._duration()
        # Untimed tasks ran too: scale the totals by the share that was timed.
        runnable = {n: _runnable_share(sched.get(n)) for n in stats_by_name}
        wall_total = sum(s.wall.total for s in stats_by_name.values()) / coverage
        cpu_total = sum(s.cpu.total for s in stats_by_name.values()) / coverage
        # The share of the time the tasks could have run: a machine busy with
        # other work keeps them runnable but off a core, which thread_time()
        # and the wall clock cannot tell from waiting on IO.
        kept_off = sum(runnable[n] * s.wall.total for n, s in stats_by_name.items())
        available = max(0.1, 1.0 - kept_off / coverage / wall_total) if wall_total > 0 else 1.0
        gil_load = cpu_total / duration / available if duration > 0 else 0.0
        concurrency = wall_total / duration if duration > 0 else 0.0
        # Tasks running Python at once: those of names that spend a visible
        # share of their time on the CPU (IO-bound names would inflate it).
        cpu_users = (
            sum(
                s.wall.total
                for n, s in stats_by_name.items()
                if s.wall.total > 0
                and _demand(s.cpu.total / s.wall.total, runnable[n]) >= _CPU_USER_SHARE
            )
            / duration
            if duration > 0
            else 0.0
        )
        profiles = []
        for name in sorted(set(stats_by_name) | set(stacks)):
            stats = stats_by_name.get(name) or _NameStats(1)
            profiles.append(
                _name_profile(
                    name,
                    stats,
                    _top_functions(stacks.get(name, {}), frames, 10),
                    name_samples.get(name, 0),
                    gil_load,
                    cpu_users / coverage,
                    coverage,
                    _runnable_share(sched.get(name)),
                )
            )
        report = ProfileReport(
            duration=duration,
            sample_rate=self.sample_rate,
            samples=samples,
            max_workers=max_workers,
            cores=cores,
            gil_load=gil_load,
            concurrency=concurrency,
            names=tuple(profiles),
            recommendations=(),
            coverage=coverage,
        )
        advice = _advise(report, waits)
        return ProfileReport(
            duration=report.duration,
            sample_rate=report.sample_rate,
            samples=report.samples,
            max_workers=max_workers,
            cores=cores,
            gil_load=gil_load,
            concurrency=concurrency,
            names=report.names,
            recommendations=tuple(advice),
            coverage=coverage,
        )

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Profiler {state} sample_rate={self.sample_rate:g} samples={self._samples}>"


def _schedstat_available() -> bool:
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/schedstat", "rb") as f:
            return len(f.read().split()) >= 2
    except OSError:
        return False


_SCHEDSTAT = sys.platform.startswith("linux") and _schedstat_available()


def _read_schedstat(native_id: int) -> tuple[int, int] | None:
    """(ns on a CPU, ns runnable waiting for one) of a thread, or None."""
    try:
        fd = os.open(f"/proc/self/task/{native_id}/schedstat", os.O_RDONLY)
    except OSError:
        return None  # the thread exited
    try:
        fields = os.read(fd, 128).split()
    finally:
        os.close(fd)
    return int(fields[0]), int(fields[1])


def _demand(cpu_share: float, runnable: float) -> float:
    """The share of the time a task was on a CPU out of the time it could
    have been (wall time minus the time the machine kept it waiting for one)."""
    return min(1.0, cpu_share / max(1.0 - runnable, 0.1))


def _runnable_share(totals: tuple[float, ...] | None) -> float:
    if not totals or totals[0] <= 0:
        return 0.0
    return max(0.0, min(1.0, totals[2] / totals[0]))


def _top_functions(
    stacks: dict[tuple[int, ...], float], frames: list[tuple[str, str, int]], limit: int
) -> tuple[FunctionCost, ...]:
    total = sum(stacks.values())
    if total <= 0:
        return ()
    own: dict[int, float] = {}
    anywhere: dict[int, float] = {}
    hits: Counter[int] = Counter()
    for stack, seconds in stacks.items():
        own[stack[-1]] = own.get(stack[-1], 0.0) + seconds
        for position in set(stack):
            anywhere[position] = anywhere.get(position, 0.0) + seconds
            hits[position] += 1
    ranked = sorted(anywhere, key=lambda p: (-own.get(p, 0.0), -anywhere[p]))
    result = []
    for position in ranked[:limit]:
        function, file, line = frames[position]
        result.append(
            FunctionCost(
                function=function,
                file=file,
                line=line,
                self_share=own.get(position, 0.0) / total,
                total_share=anywhere[position] / total,
                samples=hits[position],
            )
        )
    return tuple(result)


def _name_profile(
    name: str,
    stats: _NameStats,
    top: tuple[FunctionCost, ...],
    samples: int,
    gil_load: float,
    cpu_users: float,
    coverage: float,
    runnable: float,
) -> NameProfile:
    wall = stats.wall.total
    cpu_share = stats.cpu.total / wall if wall > 0 else 0.0
    runnable = min(runnable, max(0.0, 1.0 - cpu_share))
    demand = _demand(cpu_share, runnable)
    off_cpu = 1.0 - cpu_share - runnable if wall > 0 else 0.0
    # With the GIL busy (near one core of task CPU per second) and k tasks
    # running Python at once, a task that only wants the CPU gets about 1/k
    # of its wall time on it: the rest is waiting for the GIL, not for IO.
    gil_share = demand
    if gil_load >= _GIL_BUSY and demand >= _CPU_USER_SHARE:
        gil_share = demand * max(cpu_users, 1.0)
    if wall <= 0:
        kind = "unknown"
    elif demand >= _CPU_SHARE or gil_share >= _CPU_SHARE:
        kind = "cpu"
    elif 1.0 - demand >= _IO_SHARE:
        kind = "io"
    else:
        kind = "mixed"
    span = stats.last_submit - stats.first_submit if stats.tasks > 1 else 0.0
    mean_wall = stats.wall.total / stats.wall.count if stats.wall.count else 0.0
    window = max(span, mean_wall, 1e-9)
    arrival = stats.tasks / window / coverage if stats.tasks else 0.0
    memory = stats.memory.distribution() if stats.memory.count else None
    return NameProfile(
        name=name,
        kind=kind,
        tasks=stats.tasks,
        attempts=stats.attempts,
        failed_attempts=stats.failed_attempts,
        retried_tasks=stats.retried_tasks,
        deadline_missed=stats.deadline_missed,
        timeout=stats.timeout,
        wall=stats.wall.distribution(),
        cpu=stats.cpu.distribution(),
        wait=stats.wait.distribution(),
        cpu_share=cpu_share,
        runnable_share=runnable,
        off_cpu_share=off_cpu,
        arrival_rate=arrival,
        memory_growth=memory,
        memory_grew_share=stats.memory_grew / stats.memory.count if stats.memory.count else 0.0,
        samples=samples,
        top_functions=top,
        errors=tuple(stats.errors.most_common()),
        priorities=tuple(sorted(stats.priorities)),
    )


def _free_threaded() -> bool:
    is_enabled = getattr(sys, "_is_gil_enabled", None)
    return is_enabled is not None and not is_enabled()


def _seconds(value: float) -> str:
    if value >= 1:
        return f"{value:.2f} s"
    return f"{value * 1000:.1f} ms"


def _bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover


def _advise(report: ProfileReport, waits: list[tuple[int, float, float]]) -> list[Recommendation]:
    advice: list[Recommendation] = []
    names = report.names
    workers = report.max_workers
    # Little's law: tasks in service = arrival rate x time in service.
    demand = sum(p.arrival_rate * p.wall.mean for p in names if p.kind != "cpu")
    for p in names:
        if (
            p.kind == "io"
            and p.tasks > 1
            and p.wait.mean > p.wall.mean
            and workers is not None
            and demand > workers
        ):
            # Never more workers than the load has tasks in flight.
            target = max(workers + 1, math.ceil(min(demand, sum(q.tasks for q in names))))
            others = demand - p.arrival_rate * p.wall.mean
            reason = (
                f"{p.name!r} spends {p.off_cpu_share:.0%} of its run time off the CPU and "
                f"waits {_seconds(p.wait.mean)} in the queue on average, more than it runs "
                f"({_seconds(p.wall.mean)}): the pool is too small for an IO-bound load"
            )
            law = f"{p.arrival_rate:.1f} tasks/s x {p.wall.mean:.2f} s"
            if others > 0.05:
                law += f" + {others:.1f} for the other names"
            advice.append(
                Recommendation(
                    kind="workers",
                    subject=p.name,
                    advice=(
                        f"raise max_workers from {workers} to about {target} (Little's law: {law})"
                    ),
                    reason=reason,
                    numbers={
                        "max_workers": workers,
                        "recommended_workers": target,
                        "arrival_rate": p.arrival_rate,
                        "mean_wall": p.wall.mean,
                        "mean_wait": p.wait.mean,
                        "off_cpu_share": p.off_cpu_share,
                    },
                )
            )
    for p in names:
        if p.kind != "cpu" or _free_threaded():
            continue
        if p.cpu.mean * p.cpu.count < 0.1 * report.duration:
            # Not enough of the load to matter (tiny tasks classify noisily).
            continue
        parallel = min(report.cores, workers or report.cores, max(p.tasks, 1))
        if parallel < 2:
            continue
        advice.append(
            Recommendation(
                kind="gil",
                subject=p.name,
                advice=(
                    f"these tasks cannot use more than one core here; run them on processes "
                    f"with the Dask backend (--cluster local:{parallel}) or a free-threaded "
                    f"build; expected speed-up about {parallel}x"
                ),
                reason=(
                    f"{p.name!r} runs Python on the CPU {p.cpu_share:.0%} of its wall time while "
                    f"task CPU uses {report.gil_load:.2f} cores of {report.cores}: it holds the "
                    f"GIL, so more threads only take turns"
                ),
                numbers={
                    "cpu_share": p.cpu_share,
                    "gil_load": report.gil_load,
                    "cores": report.cores,
                    "expected_speedup": parallel,
                },
            )
        )
    for p in names:
        if p.attempts and p.failed_attempts >= 3 and (p.attempts - p.tasks) / p.attempts >= 0.2:
            error, count = p.errors[0] if p.errors else ("an error", p.failed_attempts)
            wasted = p.wall.mean * p.failed_attempts
            advice.append(
                Recommendation(
                    kind="retries",
                    subject=p.name,
                    advice=(
                        f"fix what makes {p.name!r} fail ({error}, {count} times) or lengthen "
                        f"its retry backoff: {p.attempts - p.tasks} of its {p.attempts} attempts "
                        f"were retries"
                    ),
                    reason=(
                        f"{p.retried_tasks} of {p.tasks} tasks needed a retry; failed attempts "
                        f"used about {_seconds(wasted)} of worker time"
                    ),
                    numbers={
                        "attempts": p.attempts,
                        "tasks": p.tasks,
                        "failed_attempts": p.failed_attempts,
                        "retry_share": (p.attempts - p.tasks) / p.attempts,
                        "wasted_seconds": wasted,
                    },
                )
            )
    advice.extend(_starvation(waits))
    for p in names:
        if p.deadline_missed:
            advice.append(
                Recommendation(
                    kind="deadlines",
                    subject=p.name,
                    advice=(
                        f"{p.deadline_missed} of {p.tasks} {p.name!r} tasks missed their deadline"
                        + (f" of {_seconds(p.timeout)}" if p.timeout is not None else "")
                        + f": raise the timeout to about {_seconds(p.wait.p99 + p.wall.p99)} "
                        f"(p99 wait + p99 run) or cut the queue wait"
                    ),
                    reason=(
                        f"queue wait p90 {_seconds(p.wait.p90)}, run time p90 "
                        f"{_seconds(p.wall.p90)}"
                    ),
                    numbers={
                        "missed": p.deadline_missed,
                        "tasks": p.tasks,
                        "wait_p90": p.wait.p90,
                        "wall_p90": p.wall.p90,
                        **({} if p.timeout is None else {"timeout": p.timeout}),
                    },
                )
            )
    for p in names:
        growth = p.memory_growth
        if (
            growth is not None
            and growth.count >= 3
            and p.memory_grew_share >= 0.8
            and growth.mean >= 4096
        ):
            advice.append(
                Recommendation(
                    kind="memory",
                    subject=p.name,
                    advice=(
                        f"{p.name!r} keeps about {_bytes(growth.mean)} per task after it "
                        f"returns: look for a cache or a list that outlives the task"
                    ),
                    reason=(
                        f"traced memory grew after {p.memory_grew_share:.0%} of "
                        f"{growth.count} attempts, {_bytes(growth.mean * growth.count)} in all"
                    ),
                    numbers={
                        "mean_growth_bytes": growth.mean,
                        "grew_share": p.memory_grew_share,
                        "attempts": growth.count,
                    },
                )
            )
    return advice


def _starvation(waits: list[tuple[int, float, float]]) -> list[Recommendation]:
    """Priorities that wait far longer than the higher priorities arriving meanwhile."""
    by_priority: dict[int, list[tuple[float, float]]] = {}
    for priority, submitted, wait in waits:
        by_priority.setdefault(priority, []).append((submitted, wait))
    advice = []
    for priority in sorted(by_priority):
        own = sorted(by_priority[priority])
        if len(own) < 4:
            continue
        first, last = own[0][0], own[-1][0] + max(w for _, w in own)
        higher = [
            (s, w)
            for p, entries in by_priority.items()
            if p > priority
            for s, w in entries
            if first <= s <= last
        ]
        if len(higher) < len(own):
            continue
        mean_own = sum(w for _, w in own) / len(own)
        longest = max(w for _, w in own)
        mean_higher = sum(w for _, w in higher) / len(higher)
        # Waiting longer than higher priorities is what priorities are for;
        # starving is waiting many times longer while they keep coming.
        if mean_own > _STARVING_RATIO * mean_higher and mean_own > 0:
            advice.append(
                Recommendation(
                    kind="starvation",
                    subject=f"priority {priority}",
                    advice=(
                        f"priority {priority} tasks are starving: raise their priority as they "
                        f"wait, reserve workers for them, or add workers"
                    ),
                    reason=(
                        f"they waited {_seconds(mean_own)} on average (up to {_seconds(longest)}) "
                        f"while {len(higher)} higher-priority tasks arrived and waited "
                        f"{_seconds(mean_higher)}"
                    ),
                    numbers={
                        "priority": priority,
                        "mean_wait": mean_own,
                        "max_wait": longest,
                        "higher_arrivals": len(higher),
                        "higher_mean_wait": mean_higher,
                    },
                )
            )
    return advice


def profiler_from(profile: object) -> Profiler | None:
    """The profiler a ``profile=`` argument asks for (True: a new default one).

    Raises:
        TypeError: *profile* is neither a bool nor a :class:`Profiler`.
    """
    if profile is False or profile is None:
        return None
    if profile is True:
        return Profiler()
    if isinstance(profile, Profiler):
        return profile
    raise TypeError(f"profile must be a bool or a Profiler, not {type(profile).__name__}")


def format_report(report: ProfileReport, *, top: int = 3, max_names: int = 15) -> list[str]:
    """The report as plain text lines (the CLI prints these).

    The names that took the most worker time come first; beyond *max_names*
    (and beyond as many recommendations) a line says how many were left out.
    """
    coverage = "" if report.coverage >= 1 else f"; {report.coverage:.0%} of the tasks timed"
    lines = [
        f"profiled {_seconds(report.duration)}: {len(report.names)} task names, "
        f"{report.samples} stack samples at {report.sample_rate:g} Hz; task CPU "
        f"{report.gil_load:.2f} cores of {report.cores}, "
        f"{report.concurrency:.1f} tasks running on average{coverage}",
        "",
        f"{'name':<28} {'kind':<6} {'tasks':>6} {'tries':>6} {'wall p50':>9} {'p90':>9} "
        f"{'cpu %':>6} {'wait p50':>9} {'p90':>9}",
    ]
    ranked = sorted(report.names, key=lambda p: -(p.wall.mean * p.wall.count))
    for p in ranked[:max_names]:
        name = p.name if len(p.name) <= 28 else p.name[:27] + "~"
        lines.append(
            f"{name:<28} {p.kind:<6} {p.tasks:>6} {p.attempts:>6} "
            f"{_seconds(p.wall.p50):>9} {_seconds(p.wall.p90):>9} {p.cpu_share:>6.0%} "
            f"{_seconds(p.wait.p50):>9} {_seconds(p.wait.p90):>9}"
        )
    if len(ranked) > max_names:
        lines.append(
            f"... and {len(ranked) - max_names} more names (--json for all; "
            f"--profile-by function groups them by the function they call)"
        )
    for p in ranked[:max_names]:
        if not p.top_functions:
            continue
        lines.append("")
        lines.append(f"top functions of {p.name!r} (self / total share of samples):")
        for f in p.top_functions[:top]:
            where = f"{os.path.basename(f.file)}:{f.line}"
            lines.append(f"  {f.self_share:6.1%} {f.total_share:6.1%}  {f.function}  ({where})")
    lines.append("")
    if report.recommendations:
        lines.append("recommendations:")
        for r in report.recommendations[:max_names]:
            lines.append(f"- {r.subject}: {r.advice}")
            lines.append(f"    because {r.reason}")
        if len(report.recommendations) > max_names:
            lines.append(f"... and {len(report.recommendations) - max_names} more (--json for all)")
    else:
        lines.append("recommendations: none (nothing measured calls for a change)")
    return lines


# -- recorded profiles ----------------------------------------------------------------

_PROFILES_TABLE = """
CREATE TABLE IF NOT EXISTS threadloom_profiles (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recorded_at REAL NOT NULL,
    source TEXT NOT NULL,
    report TEXT NOT NULL,
    speedscope TEXT NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class RecordedProfile:
    """A profile saved with a history file (see :func:`save_profile`)."""

    profile_id: int
    recorded_at: float
    source: str
    report: dict[str, Any]
    speedscope: dict[str, Any]


def save_profile(
    path: str | os.PathLike[str], profiler: Profiler, report: ProfileReport, source: str
) -> int | None:
    """Store *report* and the profiler's speedscope export in the history file
    *path* (its own table, beside the task runs); return the row id.

    A ``":memory:"`` history keeps nothing: returns None.
    """
    import json
    import sqlite3

    if str(path) == ":memory:":
        return None
    with sqlite3.connect(path, timeout=30.0) as conn:
        conn.execute(_PROFILES_TABLE)
        cursor = conn.execute(
            "INSERT INTO threadloom_profiles (recorded_at, source, report, speedscope) "
            "VALUES (?, ?, ?, ?)",
            (
                time.time(),
                source,
                json.dumps(report.to_dict(), allow_nan=False, default=_json_default),
                json.dumps(profiler.speedscope()),
            ),
        )
        row_id = cursor.lastrowid
    return row_id


def _json_default(value: object) -> object:
    raise TypeError(f"not JSON: {type(value).__name__}")


def load_profiles(path: str | os.PathLike[str], limit: int = 10) -> list[RecordedProfile]:
    """The profiles stored in history file *path*, newest first (none: an empty list)."""
    import json
    import sqlite3

    if str(path) == ":memory:" or not os.path.exists(path):
        return []
    uri = "file:" + os.path.abspath(path) + "?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=30.0)) as conn:
        try:
            rows = conn.execute(
                "SELECT id, recorded_at, source, report, speedscope FROM threadloom_profiles "
                "ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        except sqlite3.OperationalError:
            return []  # no profile was ever recorded in this file
    return [
        RecordedProfile(int(r[0]), float(r[1]), str(r[2]), json.loads(r[3]), json.loads(r[4]))
        for r in rows
    ]


def report_from_dict(data: dict[str, Any]) -> ProfileReport:
    """A :class:`ProfileReport` from its :meth:`~ProfileReport.to_dict` form (e.g. stored)."""

    def dist(value: dict[str, Any] | None) -> Distribution | None:
        if value is None:
            return None
        return Distribution(
            int(value["count"]),
            float(value["mean"]),
            float(value["p50"]),
            float(value["p90"]),
            float(value["p99"]),
            float(value["max"]),
        )

    def required(value: dict[str, Any]) -> Distribution:
        result = dist(value)
        assert result is not None
        return result

    names = tuple(
        NameProfile(
            name=n["name"],
            kind=n["kind"],
            tasks=n["tasks"],
            attempts=n["attempts"],
            failed_attempts=n["failed_attempts"],
            retried_tasks=n["retried_tasks"],
            deadline_missed=n["deadline_missed"],
            timeout=n["timeout"],
            wall=required(n["wall"]),
            cpu=required(n["cpu"]),
            wait=required(n["wait"]),
            cpu_share=n["cpu_share"],
            runnable_share=n.get("runnable_share", 0.0),
            off_cpu_share=n["off_cpu_share"],
            arrival_rate=n["arrival_rate"],
            memory_growth=dist(n["memory_growth"]),
            memory_grew_share=n["memory_grew_share"],
            samples=n["samples"],
            top_functions=tuple(FunctionCost(**f) for f in n["top_functions"]),
            errors=tuple(n["errors"].items()),
            priorities=tuple(n["priorities"]),
        )
        for n in data["names"]
    )
    return ProfileReport(
        duration=data["duration"],
        sample_rate=data["sample_rate"],
        samples=data["samples"],
        max_workers=data["max_workers"],
        cores=data["cores"],
        gil_load=data["gil_load"],
        concurrency=data["concurrency"],
        names=names,
        recommendations=tuple(Recommendation(**r) for r in data["recommendations"]),
        coverage=data.get("coverage", 1.0),
    )
