"""One typed stream of events: what happens to tasks, executions, schedules,
workers and resources, delivered to subscribers off the workers' hot path.

Every event is a small frozen record with a ``kind`` (a class attribute, the
name used to filter subscriptions) and a ``timestamp`` (``time.time()`` when
it was made)::

    with pool.subscribe(print, kinds={"task_finished"}):
        pool.submit(work)

An :class:`EventBus` belongs to the object that emits (a ``ThreadPoolManager``
shares its bus with the ``TaskManager`` and ``Scheduler`` built on it, so one
subscriber sees one ordered stream).  Costs:

* nobody subscribed: the emitter checks :attr:`EventBus.active` (one attribute
  read) and builds nothing;
* subscribed: the emitter builds the record and appends it to each matching
  subscription's buffer under that buffer's own short lock; it never runs a
  callback.  Each subscription has its own delivery thread, which wakes at
  most every :data:`BATCH_DELAY` seconds (so delivery lags by up to that;
  :meth:`Subscription.flush` waits for it) and calls the callback outside any
  lock; an exception from it is logged (the first, then
  every 1000th) and counted in :attr:`Subscription.errors`, and delivery goes on.

Buffers are bounded (``buffer_size`` events per subscription, default
10,000).  When a subscriber falls that far behind, its *oldest* undelivered
event is dropped to make room and counted in :attr:`Subscription.dropped`;
the emitter never waits and no task is delayed.  A formatted traceback is cut
to :data:`MAX_TRACEBACK_CHARS`, so one subscription's buffer holds at most
about ``buffer_size * (MAX_TRACEBACK_CHARS + 1 KiB)``.

The helpers at the bottom (:func:`task_queued` and friends) build events from
plain values, so that an emitter's hook stays one line.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar

__all__ = [
    "MAX_TRACEBACK_CHARS",
    "AlertCleared",
    "AlertRaised",
    "Event",
    "EventBus",
    "ExecutionFinished",
    "ExecutionStarted",
    "ResourceSampled",
    "ScheduleFired",
    "ScheduleMissed",
    "Subscription",
    "TaskFinished",
    "TaskQueued",
    "TaskRetrying",
    "TaskStarted",
    "WorkersChanged",
]

LOGGER = logging.getLogger("threadloom.events")

#: The longest formatted traceback an event carries (longer ones keep their tail).
MAX_TRACEBACK_CHARS = 16_000
#: Seconds a delivery thread lets events gather before handing them over.
BATCH_DELAY = 0.02
_SAMPLE_WINDOW = 0.1


@dataclass(frozen=True, slots=True)
class Event:
    """The base of every event: ``kind`` names the type, ``timestamp`` is epoch seconds."""

    kind: ClassVar[str] = "event"
    timestamp: float

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready plain values (``kind`` included)."""
        data: dict[str, Any] = {"kind": self.kind}
        for name in _field_names(type(self)):
            value = getattr(self, name)
            if isinstance(value, frozenset | tuple):
                value = sorted(value) if isinstance(value, frozenset) else list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            data[name] = value
        return data


_FIELDS: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    return names


@dataclass(frozen=True, slots=True)
class TaskQueued(Event):
    """A task was accepted and queued (its first attempt).

    ``execution_id`` is set when the event comes from a ``TaskManager`` run
    (then ``task_id`` is the registered task's id); the pool's own events for
    the same work carry the pool's task id and no execution id.
    """

    kind: ClassVar[str] = "task_queued"
    task_id: str
    name: str | None
    priority: int
    execution_id: str | None = None


@dataclass(frozen=True, slots=True)
class TaskStarted(Event):
    """An attempt started on a worker thread (``worker`` is the thread's name).

    ``wait_time`` is seconds from queued to this attempt's start.
    """

    kind: ClassVar[str] = "task_started"
    task_id: str
    name: str | None
    priority: int
    attempt: int
    worker: str
    wait_time: float
    execution_id: str | None = None


@dataclass(frozen=True, slots=True)
class TaskRetrying(Event):
    """An attempt failed and the task will be retried after about ``delay`` seconds."""

    kind: ClassVar[str] = "task_retrying"
    task_id: str
    name: str | None
    attempt: int
    worker: str
    run_time: float
    delay: float
    error_type: str
    message: str
    traceback: str


@dataclass(frozen=True, slots=True)
class TaskFinished(Event):
    """A task ended (``status`` is its final status's value, e.g. ``"failed"``).

    ``wait_time`` is queued to first start, ``run_time`` first start to end
    (None if it never started); the error fields are empty strings when it
    ended without an exception.
    """

    kind: ClassVar[str] = "task_finished"
    task_id: str
    name: str | None
    priority: int
    status: str
    attempts: int
    wait_time: float | None
    run_time: float | None
    error_type: str = ""
    message: str = ""
    traceback: str = ""
    execution_id: str | None = None


@dataclass(frozen=True, slots=True)
class ExecutionStarted(Event):
    """A ``TaskManager`` execution started; ``tasks`` are the ids of every task it runs."""

    kind: ClassVar[str] = "execution_started"
    execution_id: str
    targets: tuple[str, ...]
    tasks: tuple[str, ...]
    trigger: str


@dataclass(frozen=True, slots=True)
class ExecutionFinished(Event):
    """An execution ended with ``status`` (``"completed"``, ``"failed"``, ``"cancelled"``)."""

    kind: ClassVar[str] = "execution_finished"
    execution_id: str
    status: str
    duration: float | None
    error: str = ""


@dataclass(frozen=True, slots=True)
class ScheduleFired(Event):
    """A schedule's fire time was handed to its owner (``fire_time`` is ISO 8601)."""

    kind: ClassVar[str] = "schedule_fired"
    job_id: str
    fire_time: str


@dataclass(frozen=True, slots=True)
class ScheduleMissed(Event):
    """A fire time did not become a run; ``reason`` is a ``MissReason`` value."""

    kind: ClassVar[str] = "schedule_missed"
    job_id: str
    fire_time: str
    reason: str


@dataclass(frozen=True, slots=True)
class WorkersChanged(Event):
    """The pool's worker limit changed from ``previous`` to ``target``."""

    kind: ClassVar[str] = "workers_changed"
    previous: int
    target: int
    running: int


@dataclass(frozen=True, slots=True)
class ResourceSampled(Event):
    """A resource monitor sample (percentages; limits as the monitor reports them)."""

    kind: ClassVar[str] = "resource_sampled"
    cpu_percent: float
    memory_percent: float
    disk_percent: float
    io_percent: float
    usable_cpus: float
    memory_limit: int


@dataclass(frozen=True, slots=True)
class AlertRaised(Event):
    """A resource crossed its threshold."""

    kind: ClassVar[str] = "alert_raised"
    resource: str
    value: float
    threshold: float


@dataclass(frozen=True, slots=True)
class AlertCleared(Event):
    """A resource fell back below its threshold (minus the monitor's margin)."""

    kind: ClassVar[str] = "alert_cleared"
    resource: str
    value: float
    threshold: float


@dataclass(frozen=True, slots=True)
class TaskProfiled(Event):
    """One profiled attempt's measurements (a pool with a ``Profiler`` timing it).

    ``cpu_time`` is the worker thread's CPU time during the attempt;
    ``off_cpu_share`` the share of ``wall_time`` not on a CPU (waiting on IO,
    locks, or the GIL); ``memory`` the bytes it left allocated (with
    ``trace_memory``), else None.
    """

    kind: ClassVar[str] = "task_profiled"
    task_id: str
    name: str | None
    attempt: int
    worker: str
    wall_time: float
    cpu_time: float
    off_cpu_share: float
    failed: str = ""
    memory: int | None = None


EVENT_TYPES: tuple[type[Event], ...] = (
    TaskQueued,
    TaskStarted,
    TaskRetrying,
    TaskFinished,
    ExecutionStarted,
    ExecutionFinished,
    ScheduleFired,
    ScheduleMissed,
    WorkersChanged,
    ResourceSampled,
    AlertRaised,
    AlertCleared,
    TaskProfiled,
)
#: Every event kind name.
KINDS: frozenset[str] = frozenset(cls.kind for cls in EVENT_TYPES)

Callback = Callable[[Event], object]


class Subscription:
    """One subscriber's buffer and delivery thread (from :meth:`EventBus.subscribe`).

    Attributes:
        dropped: events dropped because the buffer was full (oldest first).
        errors: times the callback raised.
        delivered: events handed to the callback.
    """

    def __init__(
        self,
        bus: EventBus,
        callback: Callback,
        kinds: frozenset[str] | None,
        buffer_size: int,
        max_task_rate: float | None = None,
    ) -> None:
        self._bus = bus
        self.callback = callback
        self.kinds = kinds
        self.buffer_size = buffer_size
        self.max_task_rate = max_task_rate
        self.dropped = 0
        self.errors = 0
        self.delivered = 0
        # _lock guards _buffer, _pushed, dropped and _wake_pending; it is held
        # only for an append or a swap, never while a callback runs.
        self._lock = threading.Lock()
        self._buffer: deque[Event] = deque()
        self._pushed = 0
        self._wake_pending = False
        self._wake = threading.Event()
        self._hurry = threading.Event()
        self._closed = False
        self._settled = 0  # events delivered or dropped; guarded by _progress
        self._progress = threading.Condition(threading.Lock())
        self._thread = threading.Thread(
            target=self._deliver_loop, name=f"threadloom-events-{bus.name}", daemon=True
        )

    # -- emitter side (any thread) --------------------------------------------
    def _push(self, event: Event) -> None:
        with self._lock:
            buffer = self._buffer
            if len(buffer) >= self.buffer_size:
                buffer.popleft()
                self.dropped += 1
            buffer.append(event)
            self._pushed += 1
            wake = not self._wake_pending
            self._wake_pending = True
        if wake:
            # Only the first push after a swap pays for the Event's condition.
            self._wake.set()

    # -- delivery thread -------------------------------------------------------
    def _deliver_loop(self) -> None:
        dropped_seen = 0
        while True:
            self._wake.wait()
            # Let a batch gather: waking per event would hand the GIL back and
            # forth with the workers on every task.  Bounded latency; cut
            # short by unsubscribe() and flush().
            self._hurry.wait(BATCH_DELAY)
            with self._lock:
                # Cleared under the lock that _push sets _wake_pending under: a
                # push after this swap sees _wake_pending False and sets the
                # event again, so no event is left behind.
                self._wake.clear()
                batch, self._buffer = self._buffer, deque()
                self._wake_pending = False
                closed = self._closed
                dropped_now = self.dropped
            for event in batch:
                try:
                    self.callback(event)
                except Exception:
                    self.errors += 1
                    if self.errors == 1 or self.errors % 1000 == 0:
                        LOGGER.exception(
                            "event subscriber %r raised (%d times so far); delivery goes on",
                            self.callback,
                            self.errors,
                        )
                self.delivered += 1
            with self._progress:
                self._settled += len(batch) + dropped_now - dropped_seen
                self._progress.notify_all()
            dropped_seen = dropped_now
            if closed:
                if not batch:
                    return
                # Closed: no more waiting; one more swap picks up late pushes.
                self._wake.set()

    # -- public ----------------------------------------------------------------
    @property
    def active(self) -> bool:
        """True until :meth:`unsubscribe`."""
        return not self._closed

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event emitted before this call was delivered (or dropped).

        Must not be called from the callback itself (it would wait for itself).

        Returns:
            True if done within *timeout* seconds.
        """
        with self._lock:
            target = self._pushed
        self._hurry.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            with self._progress:
                while self._settled < target:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._progress.wait(remaining)
        finally:
            self._hurry.clear()
        return True

    def unsubscribe(self, timeout: float | None = 5.0) -> bool:
        """Stop receiving events; deliver those already buffered, then end the thread.

        Calling it twice does nothing.  From inside the callback it returns
        at once (the thread ends after the current batch).

        Returns:
            True if the delivery thread ended within *timeout* seconds.
        """
        self._bus._remove(self)  # noqa: SLF001 (same module)
        with self._lock:
            self._closed = True
        self._hurry.set()
        self._wake.set()
        if threading.current_thread() is self._thread or not self._thread.is_alive():
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.unsubscribe()

    def __repr__(self) -> str:
        kinds = "all" if self.kinds is None else ",".join(sorted(self.kinds))
        return (
            f"<Subscription {self.callback!r} kinds={kinds} delivered={self.delivered} "
            f"dropped={self.dropped} errors={self.errors}>"
        )


class EventBus:
    """Fans events out to subscriptions; see the module docstring for the guarantees.

    Emitters write ``if bus.active: bus.emit(make_event(...))`` so that
    nothing is built when nobody listens.

    Args:
        name: used in the delivery threads' names.
        buffer_size: the default per-subscription buffer size.
    """

    def __init__(self, name: str = "bus", *, buffer_size: int = 10_000) -> None:
        _check_buffer_size(buffer_size)
        self.name = name
        self.buffer_size = buffer_size
        #: True while at least one subscription exists: the hot path's one check.
        self.active = False
        self._lock = threading.Lock()
        # Replaced, never mutated, so emit() iterates without the lock.
        self._subscriptions: tuple[Subscription, ...] = ()
        # Task sampling (see subscribe's max_task_rate); None: report every task.
        self._task_rate: float | None = None
        self._budget = 0.0
        self._refill_at = 0.0
        self._skip = 0

    def subscribe(
        self,
        callback: Callback,
        kinds: Iterable[str | type[Event]] | None = None,
        *,
        buffer_size: int | None = None,
        max_task_rate: float | None = None,
    ) -> Subscription:
        """Call ``callback(event)`` for every event (of *kinds*, if given), on a
        delivery thread of this subscription.

        Args:
            callback: called with one event at a time, in emission order.
            kinds: kind names (``"task_finished"``) or event classes; None: all.
            buffer_size: events buffered before the oldest is dropped.
            max_task_rate: tasks per second this subscriber needs to hear
                about (None: every task).  While every subscription of a
                bus sets one, the pool reports a sample of its tasks, at most
                the highest of these rates, each task's events complete
                (queued, every attempt, finished) or absent; the rest cost
                the workers one check each.  The dashboard uses it to watch
                a busy pool without slowing it down.

        Raises:
            TypeError: *callback* is not callable.
            ValueError: an unknown kind (the message lists the known ones).
        """
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        kind_set = None if kinds is None else _check_kinds(kinds)
        size = self.buffer_size if buffer_size is None else _check_buffer_size(buffer_size)
        if max_task_rate is not None and not (
            isinstance(max_task_rate, int | float)
            and not isinstance(max_task_rate, bool)
            and max_task_rate > 0
        ):
            raise ValueError(
                f"max_task_rate must be a positive number or None, not {max_task_rate!r}"
            )
        subscription = Subscription(self, callback, kind_set, size, max_task_rate)
        subscription._thread.start()  # noqa: SLF001 (same module)
        with self._lock:
            self._subscriptions = (*self._subscriptions, subscription)
            self._update_rate()
            self.active = True
        return subscription

    def _remove(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscriptions = tuple(s for s in self._subscriptions if s is not subscription)
            self._update_rate()
            self.active = bool(self._subscriptions)

    def _update_rate(self) -> None:
        rates = [s.max_task_rate for s in self._subscriptions]
        self._task_rate = None if not rates or None in rates else max(rates)  # type: ignore[type-var]
        self._budget = 0.0
        self._refill_at = 0.0
        self._skip = 0

    def sample_task(self) -> bool:
        """Whether to report the task being submitted (see ``max_task_rate``).

        Called by emitters only while :attr:`active`.  The budget is refilled
        every tenth of a second; concurrent callers may over- or under-spend it
        by a few tasks, which only changes the sample's size.
        """
        rate = self._task_rate
        if rate is None:
            return True
        self._budget -= 1
        if self._budget >= 0:
            return True
        # Out of budget: look at the clock only every 256 tasks (at a
        # submit rate where it matters, that is well under a millisecond).
        self._skip -= 1
        if self._skip > 0:
            return False
        self._skip = 256
        now = time.monotonic()
        if now < self._refill_at:
            return False
        self._refill_at = now + _SAMPLE_WINDOW
        self._budget = rate * _SAMPLE_WINDOW - 1
        return True

    def emit(self, event: Event) -> None:
        """Hand *event* to every matching subscription (never blocks on a subscriber)."""
        kind = event.kind
        for subscription in self._subscriptions:
            kinds = subscription.kinds
            if kinds is None or kind in kinds:
                subscription._push(event)  # noqa: SLF001 (same module; the hot path of emit)

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return self._subscriptions

    def close(self, timeout: float | None = 5.0) -> None:
        """Unsubscribe everyone (delivering what is buffered)."""
        for subscription in self._subscriptions:
            subscription.unsubscribe(timeout)

    def __repr__(self) -> str:
        return f"<EventBus {self.name} subscriptions={len(self._subscriptions)}>"


def _check_buffer_size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"buffer_size must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"buffer_size must be >= 1, not {value}")
    return value


def _check_kinds(kinds: Iterable[str | type[Event]]) -> frozenset[str]:
    if isinstance(kinds, str):
        kinds = (kinds,)
    names = set()
    for kind in kinds:
        name = kind.kind if isinstance(kind, type) and issubclass(kind, Event) else kind
        if name not in KINDS:
            raise ValueError(f"unknown event kind {kind!r} (known: {', '.join(sorted(KINDS))})")
        names.add(str(name))
    return frozenset(names)


# -- builders: plain values in, events out (keep emitters' hooks one line) -----


def _safe_str(error: BaseException) -> str:
    # A user's exception may fail to print itself: that must never end a
    # task's bookkeeping (or an event).
    try:
        return str(error)
    except Exception as exc:
        return f"<{type(error).__qualname__}: str() raised {type(exc).__qualname__}>"


def _error_fields(error: BaseException | None) -> tuple[str, str, str]:
    if error is None:
        return "", "", ""
    try:
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    except Exception:
        text = ""
    if len(text) > MAX_TRACEBACK_CHARS:
        text = "...\n" + text[-MAX_TRACEBACK_CHARS:]
    return type(error).__qualname__, _safe_str(error), text


def _span(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, end - start)


def task_queued(
    task_id: str, name: str | None, priority: int, execution_id: str | None = None
) -> TaskQueued:
    # Positional: these builders run once per task while someone listens.
    return TaskQueued(time.time(), task_id, name, int(priority), execution_id)


def task_started(
    task_id: str, name: str | None, priority: int, attempt: int, queued_at: float
) -> TaskStarted:
    """The event of an attempt starting on the calling (worker) thread."""
    now = time.time()
    wait = now - queued_at
    return TaskStarted(
        now,
        task_id,
        name,
        int(priority),
        attempt,
        threading.current_thread().name,
        wait if wait > 0.0 else 0.0,
    )


def task_retrying(
    task_id: str,
    name: str | None,
    attempt: int,
    run_time: float,
    delay: float,
    error: BaseException,
) -> TaskRetrying:
    error_type, message, text = _error_fields(error)
    return TaskRetrying(
        timestamp=time.time(),
        task_id=task_id,
        name=name,
        attempt=attempt,
        worker=threading.current_thread().name,
        run_time=run_time,
        delay=delay,
        error_type=error_type,
        message=message,
        traceback=text,
    )


def task_finished(
    task_id: str,
    name: str | None,
    priority: int,
    status: object,
    attempts: int,
    queued_at: float | None,
    started_at: float | None,
    finished_at: float | None,
    error: BaseException | None = None,
    execution_id: str | None = None,
) -> TaskFinished:
    """*status* is a ``TaskStatus`` (or its value); times are epoch seconds."""
    if error is None:
        error_type = message = text = ""
    else:
        error_type, message, text = _error_fields(error)
    return TaskFinished(
        time.time(),
        task_id,
        name,
        int(priority),
        str(getattr(status, "value", status)),
        attempts,
        _span(queued_at, started_at),
        _span(started_at, finished_at),
        error_type,
        message,
        text,
        execution_id,
    )


def task_finished_from_future(task: Any, future: Any) -> TaskFinished:
    """The end of a pool task: *task* has the ``ManagedTask`` attributes
    (``task_id``, ``name``, ``priority``, ``status``, ``attempts``,
    ``submitted_at``, ``started_at``, ``finished_at``); the error is read from
    its resolved *future*."""
    error = None
    if getattr(task.status, "value", task.status) in ("failed", "timed_out"):
        error = future.exception(0)
    return task_finished(
        task.task_id,
        task.name,
        task.priority,
        task.status,
        task.attempts,
        task.submitted_at,
        task.started_at,
        task.finished_at,
        error,
    )


def execution_started(
    execution_id: str, targets: Iterable[str], tasks: Iterable[str], trigger: str
) -> ExecutionStarted:
    return ExecutionStarted(
        timestamp=time.time(),
        execution_id=execution_id,
        targets=tuple(targets),
        tasks=tuple(tasks),
        trigger=trigger,
    )


def execution_finished(
    execution_id: str,
    status: object,
    started_at: float,
    finished_at: float | None,
    first_error: tuple[str, BaseException] | None = None,
) -> ExecutionFinished:
    """*first_error* is (task name, exception) of the first task that failed."""
    return ExecutionFinished(
        timestamp=time.time(),
        execution_id=execution_id,
        status=str(getattr(status, "value", status)),
        duration=_span(started_at, finished_at),
        error=""
        if first_error is None
        else f"task {first_error[0]!r}: {_safe_str(first_error[1])}",
    )


def schedule_fired(job_id: str, fire_time: Any) -> ScheduleFired:
    return ScheduleFired(timestamp=time.time(), job_id=job_id, fire_time=fire_time.isoformat())


def schedule_missed(job_id: str, fire_time: Any, reason: object) -> ScheduleMissed:
    return ScheduleMissed(
        timestamp=time.time(),
        job_id=job_id,
        fire_time=fire_time.isoformat(),
        reason=str(getattr(reason, "value", reason)),
    )


def workers_changed(previous: int, target: int, running: int) -> WorkersChanged:
    return WorkersChanged(timestamp=time.time(), previous=previous, target=target, running=running)


def resource_sampled(sample: Any) -> ResourceSampled:
    """From a ``ResourceSample`` (read by attribute, so this module imports nothing above it)."""
    return ResourceSampled(
        timestamp=float(sample.timestamp),
        cpu_percent=float(sample.cpu_percent),
        memory_percent=float(sample.memory_percent),
        disk_percent=float(sample.disk_percent),
        io_percent=float(sample.io_percent),
        usable_cpus=float(sample.cpu_count),
        memory_limit=int(sample.memory_limit_bytes),
    )


def alert(resource: str, value: float, threshold: float, *, recovered: bool) -> Event:
    """An :class:`AlertCleared` if *recovered*, else an :class:`AlertRaised`."""
    cls = AlertCleared if recovered else AlertRaised
    return cls(
        timestamp=time.time(), resource=resource, value=float(value), threshold=float(threshold)
    )


class AttemptObserver:
    """Wraps a pool task's function to report each attempt (used only while
    someone subscribes, so unobserved tasks pay nothing).

    Runs on the worker: emits :class:`TaskStarted` before the attempt and, if
    it raises and *retry* would retry it, :class:`TaskRetrying` (the delay is
    the policy's nominal one: jitter is drawn later, by the pool).  An attempt
    of a task submitted before the first subscription is not reported.
    """

    __slots__ = ("_announced", "_lock", "bus", "func", "queued_at", "retry")

    def __init__(self, bus: EventBus, func: Callable[..., Any], retry: Any) -> None:
        self.bus = bus
        self.func = func
        self.retry = retry
        self._lock = threading.Lock()
        self._announced = False
        # Written by the attempt that fails, read by the next one: attempts of
        # one task never overlap (the retry is queued after this one returns).
        self.queued_at = time.time()

    def announce(self, task_id: str, name: str | None, priority: int) -> None:
        """Emit the task's :class:`TaskQueued`, once: by its submitter after the
        submit, or by its first attempt (or its end) if that comes first, so
        that a subscriber sees it queued before anything else about it."""
        with self._lock:
            if self._announced:
                return
            self._announced = True
        if self.bus.active:
            self.bus.emit(task_queued(task_id, name, priority))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        context = (_current_task or _load_current_task())()
        bus = self.bus
        attempt = context.attempt
        self.announce(context.task_id, context.name, context.priority)
        if bus.active:
            bus.emit(
                task_started(
                    context.task_id, context.name, context.priority, attempt, self.queued_at
                )
            )
        start = time.perf_counter()
        try:
            return self.func(*args, **kwargs)
        except BaseException as exc:
            retry = self.retry
            if retry is not None and not context.cancelled and retry.should_retry(exc, attempt):
                delay = retry.delay_for(attempt)
                self.queued_at = time.time() + delay
                if bus.active:
                    bus.emit(
                        task_retrying(
                            context.task_id,
                            context.name,
                            attempt,
                            time.perf_counter() - start,
                            delay,
                            exc,
                        )
                    )
            raise


_current_task: Callable[[], Any] | None = None


def _load_current_task() -> Callable[[], Any]:
    # Imported on first use, so that importing the event types alone stays cheap.
    global _current_task
    from .core import core

    current_task: Callable[[], Any] = core.current_task
    _current_task = current_task
    return current_task


def is_observed(task: Any) -> bool:
    """Whether a pool task runs through an :class:`AttemptObserver` (it was
    submitted while someone listened, and sampled): only such tasks report
    their end, so that a subscriber never sees an end without a start."""
    return type(task.fn) is AttemptObserver


def observe_attempts(
    bus: EventBus,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    retry: Any,
) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
    """``(func, args, kwargs)`` rewritten to run through an :class:`AttemptObserver`."""
    return AttemptObserver(bus, func, retry), args, kwargs
