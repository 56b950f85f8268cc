"""The profiler: times each attempt on its worker, samples the workers' stacks,
and folds both into per-name figures (see the package docstring for what and why)."""

from __future__ import annotations

import functools
import math
import sys
import threading
import time
import tracemalloc
from collections import Counter, deque
from collections.abc import Callable, Iterable
from types import CodeType, FrameType
from typing import Any

from ..managed import current_task
from .advice import (
    CPU_USER_SHARE,
    advise,
    cpu_demand,
    runnable_fraction,
)
from .report import CallNode, FunctionCost, ProfileReport
from .schedstat import SCHEDSTAT, read_schedstat
from .stacks import call_tree, speedscope, top_functions
from .stats import NameStats, name_profile


def _events() -> Any:
    # Imported on first use, as the pool imports this module.
    from .. import events

    return events


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


# -- the profiler -------------------------------------------------------------------


class Profiler:
    """Profiles the tasks of the pools it is given to (see threadloom.profiling's docstring).

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
        self._stats: dict[str, NameStats] = {}
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
        if SCHEDSTAT:
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
            reading = read_schedstat(native)
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
                    stats = stats_by_name[name] = NameStats(limit)
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
        return call_tree(name, stacks, frames, self.sample_rate)

    def top_functions(self, name: str, limit: int = 10) -> tuple[FunctionCost, ...]:
        """The functions of name *name* with the most samples on top of the stack."""
        with self._lock:
            stacks = dict(self._stacks.get(name, {}))
            frames = list(self._frames)
        return top_functions(stacks, frames, limit)

    def speedscope(self, names: Iterable[str] | None = None) -> dict[str, Any]:
        """The sampled stacks as a speedscope file (one "sampled" profile per name).

        Weights are seconds; open the JSON at https://www.speedscope.app.
        """
        with self._lock:
            wanted = sorted(self._stacks) if names is None else list(names)
            stacks = {n: dict(self._stacks.get(n, {})) for n in wanted}
            frames = list(self._frames)
        return speedscope(wanted, stacks, frames)

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
            from .._limits import usable_cpu_count

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
        runnable = {n: runnable_fraction(sched.get(n)) for n in stats_by_name}
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
                and cpu_demand(s.cpu.total / s.wall.total, runnable[n]) >= CPU_USER_SHARE
            )
            / duration
            if duration > 0
            else 0.0
        )
        profiles = []
        for name in sorted(set(stats_by_name) | set(stacks)):
            stats = stats_by_name.get(name) or NameStats(1)
            profiles.append(
                name_profile(
                    name,
                    stats,
                    top_functions(stacks.get(name, {}), frames, 10),
                    name_samples.get(name, 0),
                    gil_load,
                    cpu_users / coverage,
                    coverage,
                    runnable_fraction(sched.get(name)),
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
        advice = advise(report, waits)
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
