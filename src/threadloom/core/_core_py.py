"""The pure-Python twin of the native core (``_core.pyx``).

It implements the same interface with ``heapq`` and ``threading`` and is the
oracle the native core is tested against.  ``THREADLOOM_NO_EXTENSIONS=1``
selects it.  Keep the two in lockstep: a change to one is a change to both.

Three things live here:

* the future primitives: the state machine of our lazy
  :class:`concurrent.futures.Future` subclass (see ``_future.py``);
* :class:`TaskQueue`: a priority queue of call entries;
* :class:`Dispatcher`: the queue, the counters, the worker gauges and the
  worker loop of one executor.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import math
import threading
import time
import types
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import CancelledError, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeoutError
from concurrent.futures._base import (
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
    RUNNING,
)
from typing import Any, TypeVar, cast

__all__ = [
    "COUNTER_NAMES",
    "NATIVE",
    "Counters",
    "Dispatcher",
    "QueueClosed",
    "ResultDrain",
    "TaskQueue",
    "future_add_done_callback",
    "future_cancel",
    "future_condition",
    "future_exception",
    "future_force_cancel",
    "future_result",
    "future_set_exception",
    "future_set_result",
    "future_set_running_or_notify_cancel",
    "future_set_running_or_notify_cancel_safe",
    "run_chunk",
    "set_future_type",
]

NATIVE = False

LOGGER = logging.getLogger("concurrent.futures")

COUNTER_NAMES = (
    "submitted",
    "started",
    "completed",
    "failed",
    "cancelled",
    "retried",
    "timed_out",
    "rejected",
)
(
    COUNT_SUBMITTED,
    COUNT_STARTED,
    COUNT_COMPLETED,
    COUNT_FAILED,
    COUNT_CANCELLED,
    COUNT_RETRIED,
    COUNT_TIMED_OUT,
    COUNT_REJECTED,
) = range(8)

#: How many recent wait and run times the dispatcher keeps for percentiles.
SAMPLE_CAPACITY = 4096

_DONE_STATES = (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED)


class QueueClosed(RuntimeError):
    """Raised by a push onto, or a pop from an empty, closed queue."""


# --------------------------------------------------------------------------
# Future primitives
#
# A future created by the core has no condition, no waiter list and no
# callback list: those are made only when someone needs them.  The state
# transitions below are atomic with respect to each other (here through a
# striped lock; in the native core through the GIL or a critical section).
#
# Waiters.  The stdlib's wait() and as_completed() take the condition of
# every future, read the states, and install a waiter on the futures that
# are not done, all before releasing the conditions; a completion then
# reports itself to the waiter under the condition.  So a transition that
# waiters observe (to FINISHED, CANCELLED, CANCELLED_AND_NOTIFIED) must
# write the state and report to the waiters in one hold of the condition:
# if the state were written first and the waiters read later (as this file
# once did), as_completed() could see the future done, install its waiter,
# and then be told again: the future is yielded twice (KeyError).
#
# The condition is created lazily, so a transition may find none.  Rule:
# a transition holds the condition if the future has one (taken first),
# then the state lock; future_condition() installs a new condition under
# the state lock.  Hence the ordering argument:
#   completer: under the state lock, see no condition, write the state;
#   waiter:    under the state lock, install the condition; then acquire
#              it and read the state.
# The two state-lock sections are ordered.  If the completer's comes first,
# the waiter reads the final state once it holds the condition, and no
# completion reports to it later.  If the installation comes first, the
# completer sees the condition and takes it, so its write and its report to
# the waiters happen in one hold, which the waiter's own hold either
# precedes (its waiter is reported to) or follows (it reads the final
# state).  Never both, never neither.  A condition, once installed, never
# changes, so only the step from none to one needs the re-check.
# --------------------------------------------------------------------------

_STATE_LOCKS = tuple(threading.Lock() for _ in range(64))


def _state_lock(future: Any) -> threading.Lock:
    return _STATE_LOCKS[(id(future) >> 4) & 63]


def future_condition(future: Any) -> threading.Condition:
    """Return the future's condition, creating it (and its waiter list) once."""
    with _state_lock(future):
        condition = future._tl_condition
        if condition is None:
            condition = threading.Condition()
            future._tl_waiters = []
            future._tl_condition = condition
        result: threading.Condition = condition
        return result


def _lock_transition(future: Any) -> threading.Condition | None:
    """Take what a transition of *future* holds: its condition if it has one
    (acquired first), then its state lock.  Returns the condition, or None."""
    condition: threading.Condition | None = future._tl_condition
    lock = _state_lock(future)
    while True:
        if condition is not None:
            condition.acquire()
        lock.acquire()
        installed: threading.Condition | None = future._tl_condition
        if installed is condition:
            return condition
        # Installed between the read and the lock: take it too.
        lock.release()
        condition = installed


def _invoke_callbacks(future: Any, callbacks: list[Callable[[Any], object]] | None) -> None:
    # As in the stdlib, an Exception from a callback is logged, and a
    # BaseException that is not one (SystemExit, KeyboardInterrupt) is the
    # caller's: raised from set_result() and the like.  Unlike the stdlib,
    # it is raised once every callback has run: one callback's exit does not
    # silently skip the others (asyncio.wrap_future's, say).
    if callbacks:
        escaped: BaseException | None = None
        for callback in callbacks:
            try:
                callback(future)
            except Exception:
                LOGGER.exception("exception calling callback for %r", future)
            except BaseException as exc:
                if escaped is None:
                    escaped = exc
                else:
                    LOGGER.critical("exception calling callback for %r", future, exc_info=True)
        if escaped is not None:
            try:
                raise escaped
            finally:
                escaped = None


def _complete_in_worker(future: Any, value: object, is_exception: bool) -> None:
    """Complete a task's future on its worker thread.

    What can escape ``_finish`` here: a done-callback's SystemExit or
    KeyboardInterrupt, or InvalidStateError if someone else completed the
    future.  The stdlib's worker logs it ("Exception in worker") and dies,
    leaving its pool a thread short for good (with one worker, every later
    task hangs).  Ours logs it the same way and goes on to the next task.
    """
    try:
        _finish(future, value, is_exception)
    except BaseException:
        LOGGER.critical("Exception in worker completing %r", future, exc_info=True)


def _finish(future: Any, value: object, is_exception: bool) -> None:
    condition = _lock_transition(future)
    try:
        try:
            state = future._state
            if state in _DONE_STATES:
                raise InvalidStateError(f"{state}: {future!r}")
            if is_exception:
                future._exception = value
            else:
                future._result = value
            future._state = FINISHED
            callbacks = future._tl_callbacks
        finally:
            _state_lock(future).release()
        if condition is not None:
            for waiter in future._tl_waiters:
                if is_exception:
                    waiter.add_exception(future)
                else:
                    waiter.add_result(future)
            condition.notify_all()
    finally:
        if condition is not None:
            condition.release()
    _invoke_callbacks(future, callbacks)


def future_set_result(future: Any, result: object) -> None:
    """Complete *future* with *result* (``Future.set_result``)."""
    _finish(future, result, False)


def future_set_exception(future: Any, exception: BaseException | None) -> None:
    """Complete *future* with *exception* (``Future.set_exception``)."""
    _finish(future, exception, True)


def _set_running(future: Any, strict: bool) -> bool:
    with _state_lock(future):
        state = future._state
        if state == PENDING:
            # RUNNING is not a state waiters look for: no condition needed.
            future._state = RUNNING
            return True
    if state == CANCELLED:
        # CANCELLED_AND_NOTIFIED is, so it is written and reported in one
        # hold of the condition (see above).  Re-read: another thread may
        # have notified in between.
        condition = _lock_transition(future)
        try:
            try:
                state = future._state
                if state == CANCELLED:
                    future._state = CANCELLED_AND_NOTIFIED
            finally:
                _state_lock(future).release()
            if state == CANCELLED:
                if condition is not None:
                    for waiter in future._tl_waiters:
                        waiter.add_cancelled(future)
                return False
        finally:
            if condition is not None:
                condition.release()
    # States that never go back to PENDING or CANCELLED.
    if strict:
        LOGGER.critical("Future %s in unexpected state: %s", id(future), state)
        raise RuntimeError("Future in unexpected state")
    return False


def future_set_running_or_notify_cancel(future: Any) -> bool:
    """Mark *future* running, or report (and notify waiters) that it was cancelled."""
    return _set_running(future, True)


def future_cancel(future: Any) -> bool:
    """Cancel *future* unless it is running or finished (``Future.cancel``)."""
    condition = _lock_transition(future)
    try:
        try:
            state = future._state
            if state in (RUNNING, FINISHED):
                return False
            if state in (CANCELLED, CANCELLED_AND_NOTIFIED):
                return True
            future._state = CANCELLED
            callbacks = future._tl_callbacks
        finally:
            _state_lock(future).release()
        if condition is not None:
            condition.notify_all()
    finally:
        if condition is not None:
            condition.release()
    _invoke_callbacks(future, callbacks)
    return True


def future_force_cancel(future: Any) -> bool:
    """Cancel *future* even if it is running, and report it to waiters at once
    (CANCELLED_AND_NOTIFIED).  For the owner of a task that ends it as
    cancelled; False if the future was already done."""
    condition = _lock_transition(future)
    try:
        try:
            if future._state in _DONE_STATES:
                return False
            future._state = CANCELLED_AND_NOTIFIED
            callbacks = future._tl_callbacks
        finally:
            _state_lock(future).release()
        if condition is not None:
            for waiter in future._tl_waiters:
                waiter.add_cancelled(future)
            condition.notify_all()
    finally:
        if condition is not None:
            condition.release()
    _invoke_callbacks(future, callbacks)
    return True


def future_add_done_callback(future: Any, fn: Callable[[Any], object]) -> None:
    """Call *fn(future)* when it is done, or now if it already is."""
    with _state_lock(future):
        if future._state not in _DONE_STATES:
            callbacks = future._tl_callbacks
            if callbacks is None:
                future._tl_callbacks = [fn]
            else:
                callbacks.append(fn)
            return
    try:
        fn(future)
    except Exception:
        LOGGER.exception("exception calling callback for %r", future)


def _wait_done(future: Any, timeout: float | None) -> None:
    condition = future_condition(future)
    with condition:
        if future._state not in _DONE_STATES:
            condition.wait(timeout)


# Timeouts raise concurrent.futures.TimeoutError: an alias of the builtin from
# 3.11, but a class of its own on 3.10, where `except TimeoutError` misses it.


def _wait_finished(future: Any, timeout: float | None) -> None:
    """Return once *future* is FINISHED; raise if it is cancelled or time runs out."""
    if future._state in (CANCELLED, CANCELLED_AND_NOTIFIED):
        raise CancelledError()
    _wait_done(future, timeout)
    state = future._state
    if state in (CANCELLED, CANCELLED_AND_NOTIFIED):
        raise CancelledError()
    if state != FINISHED:
        raise FutureTimeoutError()


def future_result(future: Any, timeout: float | None = None) -> Any:
    """``Future.result``: the fast path reads the state without any lock."""
    if future._state != FINISHED:
        _wait_finished(future, timeout)
    exception = future._exception
    if exception is not None:
        try:
            raise exception
        finally:
            # Break the cycle frame -> exception -> traceback -> frame.
            exception = None
            future = None
    return future._result


def future_exception(future: Any, timeout: float | None = None) -> BaseException | None:
    """``Future.exception``."""
    if future._state != FINISHED:
        _wait_finished(future, timeout)
    exception: BaseException | None = future._exception
    return exception


_future_type: type | None = None


def set_future_type(cls: type) -> None:
    """Tell the core which class to instantiate for the futures it creates."""
    global _future_type
    _future_type = cls


def _new_future() -> Any:
    cls = _future_type
    if cls is None:
        raise RuntimeError("threadloom core used before set_future_type()")
    return object.__new__(cls)


# --------------------------------------------------------------------------
# Counters
# --------------------------------------------------------------------------


class Counters:
    """Monotonic event counters (``COUNTER_NAMES``), safe to bump from any thread."""

    __slots__ = ("_lock", "_values")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = [0] * len(COUNTER_NAMES)

    def add(self, index: int, n: int = 1) -> None:
        if not 0 <= index < len(COUNTER_NAMES):
            raise IndexError(f"counter index {index} out of range")
        with self._lock:
            self._values[index] += n

    def _retract(self, index: int) -> None:
        # Only for an add whose event then did not happen (a refused push).
        with self._lock:
            self._values[index] -= 1

    def get(self, index: int) -> int:
        if not 0 <= index < len(COUNTER_NAMES):
            raise IndexError(f"counter index {index} out of range")
        return self._values[index]

    def snapshot(self) -> tuple[int, ...]:
        with self._lock:
            return tuple(self._values)


# --------------------------------------------------------------------------
# TaskQueue
# --------------------------------------------------------------------------

_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1

# Entry: [-priority, sequence, fn, args, kwargs, future, enqueued_ns]
_Entry = list[Any]


class TaskQueue:
    """A priority queue of call entries ``(priority, sequence, fn, args, kwargs, future)``.

    Ordering guarantee: a pop returns the entry with the highest priority among
    those whose push completed before the pop began; among equal priorities,
    the one pushed first (lowest sequence number).  Entries whose future has
    been cancelled are skipped at pop time (lazy removal); ``purge_cancelled``
    removes them eagerly.  After ``close()`` pushes raise :class:`QueueClosed`,
    pops still return what is left, and a pop of an empty closed queue raises
    :class:`QueueClosed`; every blocked pop is woken.

    *stripes* is accepted for interface parity with the native queue, where it
    sets how many independently locked heaps share the load; the twin keeps
    one heap.
    """

    def __init__(self, stripes: int = 4) -> None:
        if not isinstance(stripes, int) or isinstance(stripes, bool) or stripes < 1:
            raise ValueError(f"stripes must be a positive int, not {stripes!r}")
        self._stripes = stripes
        self._heap: list[_Entry] = []
        self._mutex = threading.Lock()
        self._not_empty = threading.Condition(self._mutex)
        self._sequence = itertools.count()
        self._closed = False
        self._cancelled_skipped = 0
        #: When set, skipped cancelled entries are counted there instead.
        self.counters_sink: Counters | None = None

    @property
    def stripes(self) -> int:
        return self._stripes

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._heap)

    def push(
        self,
        priority: int,
        fn: object,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        future: object = None,
        sequence: int | None = None,
    ) -> int:
        """Queue a call; return its sequence number (*sequence*: keep that one).

        Raises:
            QueueClosed: the queue was closed.
            OverflowError: *priority* does not fit in 32 bits.
        """
        if not _INT32_MIN <= priority <= _INT32_MAX:
            raise OverflowError(f"priority {priority} does not fit in 32 bits")
        return self._push(priority, fn, args, kwargs, future, sequence)

    def _push(
        self,
        priority: int,
        fn: object,
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        future: object,
        sequence: int | None,
    ) -> int:
        with self._mutex:
            if self._closed:
                raise QueueClosed("queue is closed")
            if sequence is None:
                sequence = next(self._sequence)
            heapq.heappush(
                self._heap,
                [-priority, sequence, fn, args, kwargs or None, future, time.monotonic_ns()],
            )
            self._not_empty.notify()
        return sequence

    def pop(self, timeout: float | None = None) -> tuple[Any, ...] | None:
        """Remove and return the best entry as ``(priority, sequence, fn, args, kwargs, future)``.

        Blocks up to *timeout* seconds (forever if None); returns None on
        timeout.  Entries whose future was cancelled are skipped: their future
        moves to CANCELLED_AND_NOTIFIED.

        Raises:
            QueueClosed: the queue is closed and empty.
        """
        entry = self._pop_entry(timeout)
        if entry is None:
            return None
        return (-entry[0], entry[1], entry[2], entry[3], entry[4], entry[5])

    def _pop_entry(
        self, timeout: float | None, idle_tokens: _IdleTokens | None = None
    ) -> _Entry | None:
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        while True:
            with self._mutex:
                offered = False
                try:
                    while not self._heap:
                        if self._closed:
                            raise QueueClosed("queue is closed")
                        if idle_tokens is not None and not offered:
                            idle_tokens.offer()
                            offered = True
                        if deadline is None:
                            self._not_empty.wait()
                        else:
                            remaining = deadline - time.monotonic()
                            if remaining <= 0:
                                return None
                            self._not_empty.wait(remaining)
                    entry = heapq.heappop(self._heap)
                finally:
                    if offered and idle_tokens is not None:
                        idle_tokens.take()
            future = entry[5]
            if future is not None and future._state == CANCELLED:
                # Lazy removal: CANCELLED never changes back, so this entry is dead.
                future_set_running_or_notify_cancel_safe(future)
                sink = self.counters_sink
                if sink is not None:
                    sink.add(COUNT_CANCELLED)
                else:
                    with self._mutex:
                        self._cancelled_skipped += 1
                continue
            return entry

    def take_cancelled_skipped(self) -> int:
        """Return and reset how many cancelled entries pops have skipped."""
        with self._mutex:
            n = self._cancelled_skipped
            self._cancelled_skipped = 0
            return n

    def close(self) -> None:
        """Refuse further pushes and wake every blocked pop."""
        with self._mutex:
            self._closed = True
            self._not_empty.notify_all()

    def reopen(self) -> None:
        """Accept pushes again (used by a pool that is restarted)."""
        with self._mutex:
            self._closed = False

    def drain(self) -> list[tuple[Any, ...]]:
        """Remove every entry and return them in pop order (cancelled ones too)."""
        with self._mutex:
            heap = self._heap
            self._heap = []
        heap.sort()
        return [(-e[0], e[1], e[2], e[3], e[4], e[5]) for e in heap]

    def purge_cancelled(self) -> int:
        """Remove entries whose future is cancelled now; return how many."""
        with self._mutex:
            keep: list[_Entry] = []
            removed: list[_Entry] = []
            for entry in self._heap:
                future = entry[5]
                if future is not None and future._state in (CANCELLED, CANCELLED_AND_NOTIFIED):
                    removed.append(entry)
                else:
                    keep.append(entry)
            heapq.heapify(keep)
            self._heap = keep
        for entry in removed:
            future_set_running_or_notify_cancel_safe(entry[5])
        return len(removed)

    def depth_by_priority(self) -> dict[int, int]:
        """Number of queued entries per priority (cancelled ones included)."""
        depth: dict[int, int] = {}
        with self._mutex:
            for entry in self._heap:
                priority = -entry[0]
                depth[priority] = depth.get(priority, 0) + 1
        return depth

    def _after_fork_in_child(self) -> None:
        self._mutex = threading.Lock()
        self._not_empty = threading.Condition(self._mutex)


def future_set_running_or_notify_cancel_safe(future: Any) -> bool:
    """Like ``set_running_or_notify_cancel`` but False (not an error) if not pending."""
    return _set_running(future, False)


# --------------------------------------------------------------------------
# Dispatcher
# --------------------------------------------------------------------------


class _IdleTokens:
    """Tokens offered by waiting workers (see the native Dispatcher._reserve)."""

    __slots__ = ("_count", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def offer(self) -> None:
        with self._lock:
            self._count += 1

    def take(self) -> bool:
        with self._lock:
            if self._count > 0:
                self._count -= 1
                return True
            return False


class _Samples:
    """A ring of the most recent durations (seconds)."""

    __slots__ = ("_count", "_values")

    def __init__(self) -> None:
        self._values = [0.0] * SAMPLE_CAPACITY
        self._count = 0

    def add(self, value: float) -> None:
        self._values[self._count % SAMPLE_CAPACITY] = value
        self._count += 1

    def snapshot(self) -> list[float]:
        n = min(self._count, SAMPLE_CAPACITY)
        return self._values[:n]


class Dispatcher:
    """One executor's queue, counters, worker gauges and worker loop.

    Worker threads are started by the executor (the dispatcher holds no
    reference to it, so that an unreferenced executor can be collected) and
    each one runs :meth:`run_worker` until the queue is closed and drained, or
    until it retires (idle past *idle_timeout* above *min_workers*, or above a
    lowered *max_workers*).
    """

    def __init__(
        self,
        max_workers: int,
        min_workers: int = 0,
        idle_timeout: float | None = None,
        stripes: int = 4,
    ) -> None:
        self.queue = TaskQueue(stripes)
        self.counters = Counters()
        self.queue.counters_sink = self.counters
        self._gauge_lock = threading.Lock()
        self._threads = 0
        self._busy = 0
        self._max_workers = 1
        self._min_workers = 0
        self.set_limits(max_workers, min_workers)
        self._idle_timeout = _check_idle_timeout(idle_timeout)
        self._wait_samples = _Samples()
        self._run_samples = _Samples()
        self._idle_tokens = _IdleTokens()
        #: Called (with no arguments) when a worker slot was reserved for a new thread.
        self.spawn: Callable[[], None] | None = None
        #: Called (with no arguments) for the exception a refused managed retry fails with.
        self.reject: Callable[[], BaseException] | None = None
        self._managed_lock = threading.Lock()
        self._dead: dict[int, int] = {}
        self._retrying: set[Any] = set()
        self._closing = False

    # -- configuration ---------------------------------------------------
    def set_limits(self, max_workers: int, min_workers: int | None = None) -> None:
        if min_workers is None:
            min_workers = min(self._min_workers, max_workers)
        if max_workers < 1:
            raise ValueError("max_workers must be greater than 0")
        if not 0 <= min_workers <= max_workers:
            raise ValueError(
                f"min_workers must be between 0 and max_workers ({max_workers}), not {min_workers}"
            )
        with self._gauge_lock:
            self._max_workers = max_workers
            self._min_workers = min_workers

    @property
    def max_workers(self) -> int:
        return self._max_workers

    @property
    def min_workers(self) -> int:
        return self._min_workers

    @property
    def idle_timeout(self) -> float | None:
        return self._idle_timeout

    @idle_timeout.setter
    def idle_timeout(self, value: float | None) -> None:
        self._idle_timeout = _check_idle_timeout(value)

    @property
    def threads(self) -> int:
        return self._threads

    @property
    def busy(self) -> int:
        return self._busy

    # -- submission -------------------------------------------------------
    def submit(
        self,
        priority: int,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
    ) -> Any:
        """Create a future, queue the call, count it; return the future.

        Raises:
            QueueClosed: the dispatcher was closed.
        """
        future = _new_future()
        # Counted before the push (and retracted if it fails): a worker may
        # finish the task before this thread runs again, and no snapshot may
        # show more tasks completed than submitted.
        self.counters.add(COUNT_SUBMITTED)
        try:
            self.queue.push(priority, fn, args, kwargs, future)
        except BaseException:
            self.counters._retract(COUNT_SUBMITTED)
            raise
        if self._threads < self._max_workers and self.reserve_worker():
            self._start_worker()
        return future

    # -- managed tasks (the twin of _core_managed.pxi) ----------------------
    def submit_managed(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        priority: int,
        name: str | None = None,
        retry: Any = None,
        timeout: float | None = None,
        on_done: Callable[[Any, Any], object] | None = None,
        on_start: Callable[[Any, Any], object] | None = None,
        tag: Any = None,
        run_in_caller: bool = False,
        run_coroutine: Callable[[Any], Any] | None = None,
        node: int = -1,
    ) -> Any:
        """Queue a managed task; return its future (see the native core)."""
        if not _INT32_MIN <= priority <= _INT32_MAX:
            raise OverflowError(f"priority {priority} does not fit in 32 bits")
        future = _new_managed(
            self, fn, args, kwargs, priority, name, retry, timeout, on_done, on_start, tag, node
        )
        task: ManagedTask = future._task
        if timeout is not None:
            task._deadline_ns = time.monotonic_ns() + int(timeout * 1e9)
            task._deadline_entry = TIMERS._arm(task._deadline_ns, future, _TK_DEADLINE)
        if isinstance(on_done, TaskRegistry):
            # Known to its registry before it can end.
            on_done._add(task, future)
        self.counters.add(COUNT_SUBMITTED)
        if run_in_caller:
            task._run(future, run_coroutine)
            return future
        try:
            task._sequence = self.queue.push(task._priority, task, (), None, future)
        except BaseException:
            entry = task._deadline_entry
            if entry is not None:
                task._deadline_entry = None
                TIMERS._disarm(entry)
            self.counters._retract(COUNT_SUBMITTED)
            if isinstance(on_done, TaskRegistry):
                on_done._forget(task)
            raise
        self._after_push()
        return future

    def _after_push(self) -> None:
        if self._threads < self._max_workers and self.reserve_worker():
            self._start_worker()

    def _dead_added(self, priority: int) -> None:
        with self._managed_lock:
            self._dead[priority] = self._dead.get(priority, 0) + 1

    def _dead_popped(self, priority: int) -> None:
        with self._managed_lock:
            left = self._dead.get(priority, 0) - 1
            if left:
                self._dead[priority] = left
            else:
                self._dead.pop(priority, None)

    def dead_entries(self) -> dict[int, int]:
        """Queue entries of managed tasks that ended while queued, by priority."""
        with self._managed_lock:
            return dict(self._dead)

    def _hold_retry(self, future: Any) -> bool:
        with self._managed_lock:
            if self._closing:
                return False
            self._retrying.add(future)
            return True

    def _release_retry(self, future: Any) -> None:
        with self._managed_lock:
            self._retrying.discard(future)

    def begin_close(self) -> list[Any]:
        """No retry waits for a timer from now on; return the futures of those waiting."""
        with self._managed_lock:
            self._closing = True
            waiting = list(self._retrying)
            self._retrying.clear()
        return waiting

    def _rejection(self) -> BaseException:
        reject = self.reject
        if reject is None:
            return QueueClosed("queue is closed")
        return reject()

    def _start_worker(self) -> None:
        spawn = self.spawn
        if spawn is None:
            self.release_worker()
            return
        try:
            spawn()
        except BaseException:
            # The spawner gives the slot back itself if the thread failed to start.
            raise

    def reserve_worker(self) -> bool:
        """Claim a slot for a new worker thread if queued work outnumbers idle ones.

        The caller must start a thread that calls :meth:`run_worker` when this
        returns True (or give the slot back with :meth:`release_worker`).
        """
        if self._idle_tokens.take():
            return False
        with self._gauge_lock:
            if self._threads < self._max_workers:
                self._threads += 1
                return True
            return False

    def reserve_worker_unconditionally(self) -> bool:
        """Claim a worker slot if below max_workers, whatever the queue holds."""
        with self._gauge_lock:
            if self._threads < self._max_workers:
                self._threads += 1
                return True
            return False

    def release_worker(self) -> None:
        """Give back a slot whose thread could not be started."""
        with self._gauge_lock:
            self._threads -= 1

    def close(self) -> None:
        self.queue.close()

    # -- the worker loop --------------------------------------------------
    def _retire(self, idle: bool) -> bool:
        # Ordering argument (the same as the native core's): a worker first
        # gives up its slot, then looks at the queue; a submitter first pushes,
        # then looks at the slots.  Under one lock here, so either the submitter
        # sees the slot gone (and starts a worker) or this worker sees the push
        # (and stays).
        with self._gauge_lock:
            if self._threads > self._max_workers or (
                idle and self._threads > self._min_workers and len(self.queue) == 0
            ):
                self._threads -= 1
                return True
            return False

    def run_worker(self, run_coroutine: Callable[[Any], Any] | None = None) -> None:
        """Run queued calls on this thread until closed and drained, or retired."""
        queue = self.queue
        try:
            while True:
                timeout = self._idle_timeout
                try:
                    entry = queue._pop_entry(timeout, self._idle_tokens)
                except QueueClosed:
                    with self._gauge_lock:
                        self._threads -= 1
                    return
                if entry is None:
                    if self._retire(idle=True):
                        return
                    continue
                self._run_entry(entry, run_coroutine)
                # Drop the call (fn, args, future) before blocking for the next
                # one, as the stdlib does (bpo-16284): an object reachable only
                # from a finished call must be freed now, not at the next task.
                entry = None
                if self._threads > self._max_workers and self._retire(idle=False):
                    return
        except BaseException:
            LOGGER.critical("threadloom worker loop failed", exc_info=True)
            with self._gauge_lock:
                self._threads -= 1
            raise

    def _run_entry(self, entry: _Entry, run_coroutine: Callable[[Any], Any] | None) -> None:
        fn, args, kwargs, future = entry[2], entry[3], entry[4], entry[5]
        if type(fn) is ManagedTask:
            with self._gauge_lock:
                self._busy += 1
            started = time.monotonic_ns()
            self._wait_samples.add((started - entry[6]) / 1e9)
            try:
                fn._run(future, run_coroutine)
            finally:
                self._run_samples.add((time.monotonic_ns() - started) / 1e9)
                with self._gauge_lock:
                    self._busy -= 1
                del entry, fn, future
            return
        counters = self.counters
        if future is not None and not future_set_running_or_notify_cancel_safe(future):
            counters.add(COUNT_CANCELLED)
            return
        with self._gauge_lock:
            self._busy += 1
        started = time.monotonic_ns()
        self._wait_samples.add((started - entry[6]) / 1e9)
        if future is not None:
            counters.add(COUNT_STARTED)
        try:
            if future is None:
                try:
                    result = fn(*args, **kwargs) if kwargs else fn(*args)
                    if type(result) is types.CoroutineType and run_coroutine is not None:
                        run_coroutine(result)
                except BaseException:
                    LOGGER.exception("exception in threadloom internal call %r", fn)
                return
            try:
                result = fn(*args, **kwargs) if kwargs else fn(*args)
                if type(result) is types.CoroutineType and run_coroutine is not None:
                    result = run_coroutine(result)
            except BaseException as exc:
                counters.add(COUNT_FAILED)
                _complete_in_worker(future, exc, True)
                del exc
            else:
                counters.add(COUNT_COMPLETED)
                _complete_in_worker(future, result, False)
                del result
        finally:
            self._run_samples.add((time.monotonic_ns() - started) / 1e9)
            with self._gauge_lock:
                self._busy -= 1
            # A traceback kept by the future (its exception's, or one inside
            # its result, as a map chunk's) holds this frame: drop what would
            # lead back to the future, a cycle only the GC could free (the
            # stdlib's _WorkItem.run does the same with `self = None`).
            del entry, fn, args, kwargs, future

    # -- introspection ----------------------------------------------------
    def wait_samples(self) -> list[float]:
        return self._wait_samples.snapshot()

    def run_samples(self) -> list[float]:
        return self._run_samples.snapshot()

    def _after_fork_in_child(self) -> None:
        self._gauge_lock = threading.Lock()
        self._managed_lock = threading.Lock()
        self._threads = 0
        self._busy = 0
        self._idle_tokens = _IdleTokens()
        self.queue._after_fork_in_child()


def run_chunk(
    fn: Callable[..., Any],
    items: list[Any],
    start: int,
    stop: int,
    star: bool,
    run_coroutine: Callable[[Any], Any] | None,
) -> tuple[list[Any], BaseException | None]:
    """Call *fn* on ``items[start:stop]``; return the results and the error that ended it."""
    results: list[Any] = []
    append = results.append
    try:
        for index in range(start, min(stop, len(items))):
            result = fn(*items[index]) if star else fn(items[index])
            if type(result) is types.CoroutineType and run_coroutine is not None:
                result = run_coroutine(result)
            append(result)
    except BaseException as exc:
        # The error's traceback holds this frame: let it keep only what the
        # stdlib's would (the failing call), not every item of the map.
        items = fn = run_coroutine = None  # type: ignore[assignment]
        return results, exc
    return results, None


class ResultDrain:
    """Iterates a list, clearing each slot as its value is handed over (see _core.pyx)."""

    __slots__ = ("_items", "_next")

    def __init__(self, items: list[Any]) -> None:
        self._items = items
        self._next = 0

    def __iter__(self) -> ResultDrain:
        return self

    def __next__(self) -> Any:
        items = self._items
        index = self._next
        if index >= len(items):
            del items[:]
            raise StopIteration
        value = items[index]
        items[index] = None
        self._next = index + 1
        return value


def _check_idle_timeout(value: float | None) -> float | None:
    if value is None:
        return None
    return check_seconds("idle_timeout", value, False)


# --------------------------------------------------------------------------
# Managed tasks, the timer heap and task registries (twin of _core_managed.pxi)
#
# A task's status changes only under its lock; whoever moves it to a terminal
# value owns the completion of the future, which is resolved exactly once.
# The task never references its future (the future references the task), so
# a finished task is freed by reference counting.
# --------------------------------------------------------------------------

from .._errors import TaskCancelled  # noqa: E402
from .._types import TaskStatus  # noqa: E402

_ST_QUEUED = TaskStatus.QUEUED
_ST_RUNNING = TaskStatus.RUNNING
_ST_RETRYING = TaskStatus.RETRYING
_ST_COMPLETED = TaskStatus.COMPLETED
_ST_FAILED = TaskStatus.FAILED
_ST_CANCELLED = TaskStatus.CANCELLED
_ST_TIMED_OUT = TaskStatus.TIMED_OUT
_EARLY_ENDABLE = (_ST_QUEUED, _ST_RUNNING, _ST_RETRYING)

_TK_DEADLINE = 0
_TK_RETRY = 1
_TK_CALL = 2

# Above every user priority (those fit in 32 bits).
_INTERNAL_PRIORITY = 1 << 40

#: Durations are validated up to this (threading's own limit on waits).
MAX_SECONDS = threading.TIMEOUT_MAX

_EMPTY_MAPPING: types.MappingProxyType[str, Any] = types.MappingProxyType({})
# Wall-clock seconds = monotonic ns / 1e9 + this (fixed at import).
_WALL_OFFSET = time.time() - time.monotonic_ns() / 1e9
_task_numbers = itertools.count(1)
_task_future_type: type | None = None
_current = threading.local()


def set_task_future_type(cls: type) -> None:
    """Tell the core which class to instantiate for managed tasks' futures."""
    global _task_future_type
    _task_future_type = cls


def current_task() -> ManagedTask:
    """The running managed task's context (the task itself).

    Raises:
        RuntimeError: not called from inside a managed task.
    """
    task: ManagedTask | None = getattr(_current, "task", None)
    if task is None:
        raise RuntimeError(
            "current_task() called outside a managed threadloom task "
            "(submit through ThreadPoolExecutor.options() or ThreadPoolManager)"
        )
    return task


def check_seconds(name: str, value: object, allow_zero: bool = True) -> float:
    """Return *value* as float seconds, or raise naming *name* (same text in both cores)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} must be finite, not {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, not {value!r}")
    if value > MAX_SECONDS:
        raise ValueError(f"{name} must be at most {MAX_SECONDS:.0f} seconds, not {value!r}")
    return float(value)


class TimerHeap:
    """One thread that fires deadlines, ends retry delays and runs short calls.

    See the native core for the contract: disarmed entries keep nothing alive
    and are compacted once they are more than half the heap; the thread only
    hands work to the pools.
    """

    def __init__(self, name: str = "threadloom-timers") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._heap: list[list[Any]] = []
        self._sequence = itertools.count()
        self._disarmed = 0
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._heap) - self._disarmed

    @property
    def heap_size(self) -> int:
        """Entries in the heap, disarmed ones included (for tests)."""
        return len(self._heap)

    def _arm(self, due_ns: int, target: Any, kind: int) -> list[Any]:
        with self._lock:
            entry = [due_ns, next(self._sequence), target, kind]
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            elif self._heap[0] is entry:
                self._wake.notify()
        return entry

    def _disarm(self, entry: list[Any]) -> None:
        with self._lock:
            if entry[2] is None:
                return
            entry[2] = None
            self._disarmed += 1
            if self._disarmed > 64 and self._disarmed * 2 > len(self._heap):
                self._heap = [e for e in self._heap if e[2] is not None]
                heapq.heapify(self._heap)
                self._disarmed = 0

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        """Run ``callback()`` on the timer thread after *delay* seconds; return a handle
        whose ``cancel()`` disarms it.  The callback must be quick and not block."""
        delay = check_seconds("delay", delay)
        entry = self._arm(time.monotonic_ns() + int(delay * 1e9), callback, _TK_CALL)
        return TimerHandle(self, entry)

    def _run(self) -> None:
        while True:
            fired: list[list[Any]] = []
            with self._lock:
                heap = self._heap
                while True:
                    while heap and heap[0][2] is None:
                        heapq.heappop(heap)
                        self._disarmed -= 1
                    if not heap:
                        self._wake.wait()
                        heap = self._heap
                        continue
                    now = time.monotonic_ns()
                    while heap and (heap[0][2] is None or heap[0][0] <= now):
                        entry = heapq.heappop(heap)
                        if entry[2] is None:
                            self._disarmed -= 1
                        else:
                            fired.append(entry)
                    if fired:
                        break
                    if heap:
                        self._wake.wait(min((heap[0][0] - now) / 1e9, 3600.0))
                        heap = self._heap
            for entry in fired:
                with self._lock:
                    target, entry[2] = entry[2], None
                if target is None:
                    continue
                try:
                    self._fire(target, entry[3])
                except BaseException:
                    LOGGER.exception("threadloom timer %r failed", target)
                target = None

    @staticmethod
    def _fire(target: Any, kind: int) -> None:
        if kind == _TK_CALL:
            target()
            return
        task: ManagedTask = target._task
        if kind == _TK_DEADLINE:
            task._expire(target)
        else:
            task._retry_due(target)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread = None
        if self._heap:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()


class TimerHandle:
    """A call scheduled with :meth:`TimerHeap.call_later`."""

    __slots__ = ("_entry", "_timers")

    def __init__(self, timers: TimerHeap, entry: list[Any]) -> None:
        self._timers = timers
        self._entry = entry

    def cancel(self) -> None:
        self._timers._disarm(self._entry)

    @property
    def cancelled(self) -> bool:
        return self._entry[2] is None


TIMERS = TimerHeap()


class ManagedTask:
    """One managed task: its options, status and attempts; also its context.

    The running task is what ``threadloom.current_task()`` returns: its
    :attr:`cancelled` flag, :meth:`check_cancelled`, :meth:`wait_cancelled`
    and :meth:`remaining` let it stop cooperatively (Python cannot stop a
    thread from outside).
    """

    __slots__ = (
        "__weakref__",
        "_cancel_event",
        "_cancel_requested",
        "_counted_dead",
        "_deadline_entry",
        "_deadline_ns",
        "_dispatch",
        "_finished_ns",
        "_lock",
        "_node",
        "_number",
        "_priority",
        "_retry_entry",
        "_sequence",
        "_started_ns",
        "_status",
        "_submitted_ns",
        "_upstream",
        "args",
        "attempts",
        "fn",
        "kwargs",
        "name",
        "on_done",
        "on_start",
        "retry",
        "tag",
        "timeout",
    )

    fn: Callable[..., Any] | None
    args: tuple[Any, ...]
    kwargs: dict[str, Any] | None
    name: str | None
    retry: Any
    timeout: float | None
    attempts: int
    on_done: Callable[[ManagedTask, Any], object] | None
    on_start: Callable[[ManagedTask, Any], object] | None
    tag: Any
    _cancel_event: threading.Event | None
    _cancel_requested: bool
    _counted_dead: bool
    _deadline_entry: list[Any] | None
    _deadline_ns: int
    _dispatch: Dispatcher
    _finished_ns: int
    _lock: threading.Lock
    _node: int
    _number: int
    _priority: int
    _retry_entry: list[Any] | None
    _sequence: int
    _started_ns: int
    _status: TaskStatus
    _submitted_ns: int
    _upstream: Any

    def __init__(self) -> None:
        raise TypeError("ManagedTask is created by ThreadPoolExecutor.options(...).submit")

    # -- what the task can know about itself ------------------------------
    @property
    def task_id(self) -> str:
        return f"task-{self._number}"

    @property
    def priority(self) -> int:
        return self._priority

    @property
    def number(self) -> int:
        """The task's number (its id is ``f"task-{number}"``)."""
        return self._number

    @property
    def status(self) -> TaskStatus:
        return self._status

    @property
    def attempt(self) -> int:
        """The 1-based number of the attempt running (or last run)."""
        return self.attempts

    @property
    def submitted_at(self) -> float:
        """When the task was submitted (``time.time()`` seconds)."""
        return self._submitted_ns / 1e9 + _WALL_OFFSET

    @property
    def started_at(self) -> float | None:
        """When its first attempt started, or None."""
        return self._started_ns / 1e9 + _WALL_OFFSET if self._started_ns else None

    @property
    def finished_at(self) -> float | None:
        """When it ended, or None."""
        return self._finished_ns / 1e9 + _WALL_OFFSET if self._finished_ns else None

    @property
    def deadline(self) -> float | None:
        """The deadline on the ``time.monotonic()`` clock, or None."""
        return self._deadline_ns / 1e9 if self._deadline_ns else None

    @property
    def cancelled(self) -> bool:
        """True once cancellation was requested (cancel, deadline, shutdown)."""
        return self._cancel_requested

    def check_cancelled(self) -> None:
        """Raise :class:`TaskCancelled` if cancellation was requested."""
        if self._cancel_requested:
            raise TaskCancelled(f"task {self.name or self.task_id} was cancelled")

    def wait_cancelled(self, timeout: float | None = None) -> bool:
        """Sleep up to *timeout* seconds, waking early if cancelled; return :attr:`cancelled`."""
        event = self._cancel_event
        if event is None:
            with self._lock:
                if self._cancel_event is None:
                    self._cancel_event = threading.Event()
                event = self._cancel_event
            # _request_cancel sets the flag, then reads the event; here the
            # event is installed, then the flag read: one sees the other.
            if self._cancel_requested:
                event.set()
        return event.wait(timeout)

    def remaining(self) -> float | None:
        """Seconds left before the deadline, or None without one."""
        if not self._deadline_ns:
            return None
        return (self._deadline_ns - time.monotonic_ns()) / 1e9

    def _request_cancel(self) -> None:
        self._cancel_requested = True
        event = self._cancel_event
        if event is not None:
            event.set()

    @property
    def upstream_results(self) -> Any:
        """Results of the task's dependencies that completed, by name (in a task graph)."""
        upstream = self._upstream
        if upstream is None:
            on_done = self.on_done
            if self._node >= 0 and isinstance(on_done, GraphRunner):
                upstream = on_done._upstream_of(self._node)
            else:
                upstream = _EMPTY_MAPPING
            self._upstream = upstream
        return upstream

    @upstream_results.setter
    def upstream_results(self, value: Any) -> None:
        self._upstream = value

    def __repr__(self) -> str:
        return f"<ManagedTask {self.task_id} name={self.name!r} status={self._status.value}>"

    # -- one attempt, on a worker -----------------------------------------
    def _run(self, future: Any, run_coroutine: Callable[[Any], Any] | None) -> None:
        # An attempt that fails while the pool is closing is retried at once,
        # here: no timer may fire into a closed queue.
        try:
            while self._attempt(future, run_coroutine):
                pass
        finally:
            # A failed attempt's traceback keeps this frame (and its callers'):
            # nothing left in it may lead back to the task or its future, or
            # only the cyclic GC could free them (as the stdlib's work item).
            self = future = None  # type: ignore[assignment]

    def _attempt(self, future: Any, run_coroutine: Callable[[Any], Any] | None) -> bool:
        try:
            return self._attempt_once(future, run_coroutine)
        finally:
            self = future = None  # type: ignore[assignment]

    def _attempt_once(self, future: Any, run_coroutine: Callable[[Any], Any] | None) -> bool:
        dispatch: Dispatcher = self._dispatch
        with self._lock:
            was = self._status
            if was is _ST_QUEUED:
                self._status = _ST_RUNNING
                self.attempts += 1
        if was is not _ST_QUEUED:
            # Cancelled or timed out while queued: this entry is dead.
            if self._counted_dead:
                self._counted_dead = False
                dispatch._dead_popped(self._priority)
            return False
        if self.attempts == 1:
            self._started_ns = time.monotonic_ns()
            future_set_running_or_notify_cancel_safe(future)
            dispatch.counters.add(COUNT_STARTED)
        if self.on_start is not None:
            try:
                self.on_start(self, future)
            except BaseException:
                LOGGER.exception("task-start hook failed for %s", self.task_id)
        previous = getattr(_current, "task", None)
        _current.task = self
        failed = False
        try:
            fn = self.fn
            assert fn is not None  # cleared only when the task ends
            kwargs = self.kwargs
            outcome = fn(*self.args, **kwargs) if kwargs else fn(*self.args)
            if run_coroutine is not None and type(outcome) is types.CoroutineType:
                outcome = run_coroutine(outcome)
        except BaseException as exc:
            outcome = exc
            failed = True
            # This frame is in the exception's traceback: keep nothing here
            # that leads back to it (a cycle only the GC could free).
            del exc
        finally:
            _current.task = previous
            del previous
        if not failed:
            ending = _ST_COMPLETED
        elif isinstance(outcome, TaskCancelled) and self._cancel_requested:
            ending = _ST_CANCELLED
        elif self.retry is not None and self._should_retry(outcome):
            outcome = None
            retry_now = self._schedule_retry(future)
            future = None
            return retry_now
        else:
            ending = _ST_FAILED
        with self._lock:
            if self._status is not _ST_RUNNING:
                # The deadline (or a cancel) ended the task meanwhile.
                outcome = future = None
                return False
            self._status = ending
        if ending is _ST_COMPLETED:
            dispatch.counters.add(COUNT_COMPLETED)
            self._finish(future, outcome, False, False)
        elif ending is _ST_FAILED:
            dispatch.counters.add(COUNT_FAILED)
            self._finish(future, outcome, True, False)
        else:
            dispatch.counters.add(COUNT_CANCELLED)
            self._finish(future, None, True, True)
        outcome = future = None
        return False

    def _should_retry(self, error: BaseException) -> bool:
        try:
            return bool(self.retry.should_retry(error, self.attempts))
        except BaseException:
            LOGGER.exception("retry policy of %s failed; not retrying", self.task_id)
            return False

    def _schedule_retry(self, future: Any) -> bool:
        """RETRYING, then a timer (False) or, if the pool is closing, QUEUED to run now (True)."""
        dispatch: Dispatcher = self._dispatch
        try:
            delay = float(self.retry.delay_for(self.attempts))
            if not 0.0 <= delay <= MAX_SECONDS:
                raise ValueError(f"retry delay {delay!r} out of range")
        except BaseException:
            LOGGER.exception("retry policy of %s gave no usable delay; retrying now", self.task_id)
            delay = 0.0
        with self._lock:
            if self._status is not _ST_RUNNING:
                return False
            self._status = _ST_RETRYING
        dispatch.counters.add(COUNT_RETRIED)
        if not dispatch._hold_retry(future):
            # Closing: the retry runs now, on this worker.
            with self._lock:
                if self._status is not _ST_RETRYING:
                    return False
                self._status = _ST_QUEUED
            return True
        if delay > 0:
            # Armed after the status change: the timer may fire at once.  A
            # requeue_now() (shutdown) may also run before the entry is kept
            # here: then the entry is not needed any more.
            entry: list[Any] | None = TIMERS._arm(
                time.monotonic_ns() + int(delay * 1e9), future, _TK_RETRY
            )
            with self._lock:
                if self._status is _ST_RETRYING and self._retry_entry is None:
                    self._retry_entry, entry = entry, None
            if entry is not None:
                TIMERS._disarm(entry)
            return False
        if self._admitted(future):
            dispatch._release_retry(future)
            self._requeue(future)
        return False

    def _retry_due(self, future: Any) -> None:
        # On the timer thread.
        self._retry_entry = None
        if self._admitted(future):
            self._dispatch._release_retry(future)
            self._requeue(future)

    def _admitted(self, future: Any) -> bool:
        # The owner's registry may hold a retry back (a full queue): the task
        # stays RETRYING until the owner calls requeue_now().
        on_done = self.on_done
        if not isinstance(on_done, TaskRegistry) or on_done.on_requeue is None:
            return True
        try:
            return bool(on_done.on_requeue(self, future))
        except BaseException:
            LOGGER.exception("requeue hook failed for %s; requeued anyway", self.task_id)
            return True

    def requeue_now(self, future: Any) -> bool:
        """A task waiting for its retry delay goes back into the queue at once (shutdown)."""
        with self._lock:
            if self._status is not _ST_RETRYING:
                return False
            entry, self._retry_entry = self._retry_entry, None
        if entry is not None:
            TIMERS._disarm(entry)
        self._dispatch._release_retry(future)
        self._requeue(future)
        return True

    def _requeue(self, future: Any) -> None:
        dispatch: Dispatcher = self._dispatch
        with self._lock:
            if self._status is not _ST_RETRYING:
                return
            self._status = _ST_QUEUED
        try:
            # Its original sequence number: a retry whose delay is over does
            # not wait behind everything submitted after it.
            dispatch.queue.push(self._priority, self, (), None, future, self._sequence)
            dispatch._after_push()
        except QueueClosed:
            self._end_from_queue(future, _ST_FAILED, dispatch._rejection())

    # -- ending early ------------------------------------------------------
    def _expire(self, future: Any) -> None:
        # On the timer thread: the deadline passed.
        self._deadline_entry = None
        with self._lock:
            was = self._status
            if was in _EARLY_ENDABLE:
                self._status = _ST_TIMED_OUT
                if was is _ST_QUEUED:
                    self._counted_dead = True
        if was not in _EARLY_ENDABLE:
            return
        error = FutureTimeoutError(
            f"task {self.name or self.task_id} did not finish within {self.timeout} s"
        )
        self._end_early(future, was, COUNT_TIMED_OUT, error, False, True)

    def cancel(self, future: Any) -> bool:
        """Cancel: at once if queued or waiting to retry (True); if running,
        request cooperative cancellation and return False."""
        with self._lock:
            was = self._status
            if was is _ST_QUEUED or was is _ST_RETRYING:
                self._status = _ST_CANCELLED
                if was is _ST_QUEUED:
                    self._counted_dead = True
        if was is _ST_RUNNING:
            self._request_cancel()
            return False
        if not (was is _ST_QUEUED or was is _ST_RETRYING):
            return was is _ST_CANCELLED
        self._end_early(future, was, COUNT_CANCELLED, None, True, False)
        return True

    def _end_early(
        self,
        future: Any,
        was: TaskStatus,
        counter: int,
        error: BaseException | None,
        cancel: bool,
        defer: bool,
    ) -> None:
        dispatch: Dispatcher = self._dispatch
        entry = self._retry_entry
        if entry is not None:
            self._retry_entry = None
            TIMERS._disarm(entry)
        if was is _ST_RETRYING:
            # Also when its timer entry was not kept yet (see _schedule_retry).
            dispatch._release_retry(future)
        if was is _ST_QUEUED:
            dispatch._dead_added(self._priority)
        self._request_cancel()
        dispatch.counters.add(counter)
        self._finish(future, error, True, cancel, defer)

    def cancel_from_queue(self, future: Any) -> None:
        """The queue was drained (shutdown with cancel_futures): cancel."""
        self._end_from_queue(future, _ST_CANCELLED, None)

    def fail_from_queue(self, future: Any, error: BaseException) -> None:
        """The pool broke with this task queued: fail it with *error*."""
        self._end_from_queue(future, _ST_FAILED, error)

    def _end_from_queue(self, future: Any, status: TaskStatus, error: Any) -> None:
        # The task's entry was taken out of the queue without being run.
        dispatch: Dispatcher = self._dispatch
        with self._lock:
            was = self._status
            if was is _ST_QUEUED:
                self._status = status
        if was is not _ST_QUEUED:
            if self._counted_dead:
                self._counted_dead = False
                dispatch._dead_popped(self._priority)
            return
        if status is _ST_CANCELLED:
            self._request_cancel()
            dispatch.counters.add(COUNT_CANCELLED)
            self._finish(future, None, True, True)
        else:
            dispatch.counters.add(COUNT_FAILED)
            self._finish(future, error, True, False)

    # -- the one completion ------------------------------------------------
    def _finish(
        self, future: Any, value: Any, is_exception: bool, cancel: bool, defer: bool = False
    ) -> None:
        """Complete *future* (this thread made the status terminal, so it owns this)."""
        entry = self._deadline_entry
        if entry is not None:
            self._deadline_entry = None
            TIMERS._disarm(entry)
        self._finished_ns = time.monotonic_ns()
        # What the task ran is not needed any more; a kept record (a pool's
        # task table) must not keep the arguments alive.
        self.fn = None
        self.args = ()
        self.kwargs = None
        self._upstream = None
        # The callbacks come back to be run with the owner's hook (or handed
        # to the pool with it): a callback's SystemExit must not skip the hook.
        callbacks = None
        try:
            if cancel:
                callbacks = _cancel_notified(future, True)
            else:
                callbacks = _complete(future, value, is_exception, True)
        except BaseException:
            LOGGER.exception("could not complete the future of %s", self.task_id)
        value = None
        if defer:
            # On the timer thread: waiters have their answer; the callbacks
            # (user code, and the owner's hook) run on the pool.
            try:
                self._dispatch.queue._push(
                    _INTERNAL_PRIORITY, _run_deferred, (self, future, callbacks), None, None, None
                )
                self._dispatch._after_push()
                return
            except QueueClosed:
                pass
        _run_completion(self, future, callbacks)


def _run_completion(task: ManagedTask, future: Any, callbacks: Any) -> None:
    try:
        _invoke_callbacks(future, callbacks)
    except BaseException:
        # A callback's SystemExit must not skip the owner's hook (an execution
        # would never learn that its task ended): logged as a worker does.
        LOGGER.critical("Exception in a done-callback of %r", future, exc_info=True)
    on_done = task.on_done
    task.on_done = None
    task.on_start = None
    if on_done is not None:
        try:
            on_done(task, future)
        except BaseException:
            LOGGER.exception("task-done hook failed for %s", task.task_id)
    task.tag = None


def _run_deferred(task: ManagedTask, future: Any, callbacks: Any) -> None:
    _run_completion(task, future, callbacks)


def _complete(future: Any, value: Any, is_exception: bool, defer: bool) -> Any:
    """FINISHED with *value*; notify waiters; return the callbacks if *defer*, else run them.

    The state is written and reported to the waiters in one hold of the
    future's condition, if it has one (the ordering of _finish).
    """
    done = False
    callbacks = None
    condition = _lock_transition(future)
    try:
        try:
            if future._state not in _DONE_STATES:
                if is_exception:
                    future._exception = value
                else:
                    future._result = value
                future._state = FINISHED
                callbacks = future._tl_callbacks
                done = True
        finally:
            _state_lock(future).release()
        if done and condition is not None:
            for waiter in future._tl_waiters:
                if is_exception:
                    waiter.add_exception(future)
                else:
                    waiter.add_result(future)
            condition.notify_all()
    finally:
        if condition is not None:
            condition.release()
    if not done or defer:
        return callbacks
    _invoke_callbacks(future, callbacks)
    return None


def _cancel_notified(future: Any, defer: bool) -> Any:
    """CANCELLED_AND_NOTIFIED at once (a managed task is never left CANCELLED)."""
    done = False
    callbacks = None
    condition = _lock_transition(future)
    try:
        try:
            if future._state not in _DONE_STATES:
                future._state = CANCELLED_AND_NOTIFIED
                callbacks = future._tl_callbacks
                done = True
        finally:
            _state_lock(future).release()
        if done and condition is not None:
            for waiter in future._tl_waiters:
                waiter.add_cancelled(future)
            condition.notify_all()
    finally:
        if condition is not None:
            condition.release()
    if not done or defer:
        return callbacks
    _invoke_callbacks(future, callbacks)
    return None


def _new_managed(
    dispatch: Dispatcher,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None,
    priority: int,
    name: str | None,
    retry: Any,
    timeout: float | None,
    on_done: Any,
    on_start: Any,
    tag: Any,
    node: int = -1,
) -> Any:
    if _task_future_type is None:
        raise RuntimeError("threadloom core used before set_task_future_type()")
    task = object.__new__(ManagedTask)
    task.fn = fn
    task.args = args
    task.kwargs = kwargs or None
    task._priority = priority
    task.name = name
    task.retry = retry
    task.timeout = timeout
    task.on_done = on_done
    task.on_start = on_start
    task.tag = tag
    task._node = node
    task._upstream = None
    task._status = _ST_QUEUED
    task._dispatch = dispatch
    task._number = next(_task_numbers)
    task._sequence = 0
    task._deadline_ns = 0
    task._deadline_entry = None
    task._retry_entry = None
    task._cancel_requested = False
    task._cancel_event = None
    task._counted_dead = False
    task._lock = threading.Lock()
    task.attempts = 0
    task._submitted_ns = time.monotonic_ns()
    task._started_ns = 0
    task._finished_ns = 0
    future: Any = object.__new__(_task_future_type)
    future._task = task
    return future


class TaskRegistry:
    """Futures of managed tasks by task id, finished ones kept for a bounded
    count and time; counts unfinished tasks and wakes ``wait_all``."""

    def __init__(self, keep_finished: int, keep_seconds: float) -> None:
        self._lock = threading.Lock()
        self._all_done = threading.Condition(self._lock)
        self._futures: dict[int, Any] = {}
        self._finished: collections.deque[tuple[int, int]] = collections.deque()
        self.keep_finished = keep_finished
        self.keep_ns = int(keep_seconds * 1e9)
        self._unfinished = 0
        self._run_total = 0.0
        self._run_max = 0.0
        self._run_min = math.inf
        self._run_count = 0
        #: An extra hook called after each end is recorded (events), or None.
        self.on_task_done: Callable[[Any, Any], object] | None = None
        #: ``on_requeue(task, future) -> bool``: False holds a due retry back
        #: (RETRYING) until the owner calls ``task.requeue_now(future)``.
        self.on_requeue: Callable[[Any, Any], bool] | None = None

    def _add(self, task: ManagedTask, future: Any) -> None:
        with self._lock:
            self._futures[task._number] = future
            self._unfinished += 1

    def _forget(self, task: ManagedTask) -> None:
        # Undoes _add for a task refused before it was queued.
        with self._lock:
            if self._futures.pop(task._number, None) is not None:
                self._unfinished -= 1
            if self._unfinished == 0:
                self._all_done.notify_all()

    def submit(
        self,
        dispatch: Dispatcher,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        priority: int,
        retry: Any,
    ) -> str:
        """Queue a managed task known to this registry; return its id ("task-N").

        Raises:
            QueueClosed: the dispatcher was closed.
        """
        future = dispatch.submit_managed(fn, args, kwargs, priority, None, retry, None, self)
        return f"task-{future._task._number}"

    def get(self, task_id: str) -> Any:
        """The future of task *task_id* ("task-N"), or None if unknown or pruned."""
        if type(task_id) is not str or not task_id.startswith("task-"):
            return None
        try:
            number = int(task_id[5:])
        except ValueError:
            return None
        return self._futures.get(number)

    def ids(self) -> list[str]:
        with self._lock:
            return [f"task-{number}" for number in self._futures]

    def futures(self) -> list[Any]:
        with self._lock:
            return list(self._futures.values())

    def __len__(self) -> int:
        return len(self._futures)

    @property
    def unfinished(self) -> int:
        return self._unfinished

    def run_times(self) -> tuple[int, float, float, float]:
        """(count, total, max, min) of the finished tasks' run times (seconds)."""
        with self._lock:
            return self._run_count, self._run_total, self._run_max, self._run_min

    def _task_done_hook(self, task: ManagedTask, future: Any) -> None:
        # The extra hook (events, admission slots) runs before the task stops
        # counting as unfinished: whoever wait_all() releases then also sees
        # the task's task_finished event emitted.
        hook = self.on_task_done
        try:
            if hook is not None:
                hook(task, future)
        finally:
            self._count_finished(task)

    def _count_finished(self, task: ManagedTask) -> None:
        now = time.monotonic_ns()
        with self._lock:
            if task._started_ns:
                elapsed = max(0.0, (task._finished_ns - task._started_ns) / 1e9)
                self._run_total += elapsed
                self._run_count += 1
                self._run_max = max(self._run_max, elapsed)
                self._run_min = min(self._run_min, elapsed)
            self._unfinished -= 1
            finished = self._finished
            finished.append((now, task._number))
            while finished and (
                len(finished) > self.keep_finished or finished[0][0] + self.keep_ns < now
            ):
                self._futures.pop(finished.popleft()[1], None)
            if self._unfinished == 0:
                self._all_done.notify_all()

    __call__ = _task_done_hook

    def wait_all(self, timeout: float | None = None) -> bool:
        """Wait until no task is unfinished; True if none is."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._unfinished > 0:
                if deadline is None:
                    self._all_done.wait()
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._all_done.wait(left)
        return True


_View = TypeVar("_View", bound="SubmitView")


class SubmitView:
    """The core half of ``SubmitOptions``: options checked once, then submit."""

    __slots__ = ("_dispatch", "_priority", "managed", "name", "retry", "timeout")

    _dispatch: Dispatcher
    _priority: int
    managed: bool
    name: str | None
    retry: Any
    timeout: float | None

    def __new__(
        cls: type[_View],
        dispatch: Dispatcher,
        priority: int,
        name: str | None,
        retry: Any,
        timeout: float | None,
        *args: Any,
        **kwargs: Any,
    ) -> _View:
        if not _INT32_MIN <= priority <= _INT32_MAX:
            raise OverflowError(f"priority {priority} does not fit in 32 bits")
        self = object.__new__(cls)
        self._dispatch = dispatch
        self._priority = priority
        self.name = name
        self.retry = retry
        self.timeout = timeout
        self.managed = name is not None or retry is not None or timeout is not None
        return self

    @property
    def priority(self) -> int:
        return self._priority

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Like ``ThreadPoolExecutor.submit``, with this view's options.

        With a name, retry policy or timeout the future is a ``TaskFuture``
        and the function can call ``threadloom.current_task()``.
        """
        dispatch = self._dispatch
        try:
            if not self.managed:
                return dispatch.submit(self._priority, fn, args, kwargs)
            return dispatch.submit_managed(
                fn, args, kwargs, self._priority, self.name, self.retry, self.timeout
            )
        except QueueClosed:
            raise dispatch._rejection() from None


class PoolBase:
    """The core half of ``ThreadPoolManager``: ``submit`` and
    ``get_task_result`` in the common case (no queue limit, no resource
    monitor, no retry arguments)."""

    _fast_dispatch: Dispatcher | None
    _registry: TaskRegistry
    default_retry: Any
    # The sample of submitted tasks reported to sampling subscribers (see the
    # native core; the same policy as EventBus.sample_task).
    _sample_budget = 0.0
    _sample_refill_ns = 0
    _sample_skip = 0

    def _sampled(self, events: Any) -> bool:
        rate = events._task_rate
        if rate is None:
            return True
        self._sample_budget -= 1
        if self._sample_budget >= 0:
            return True
        self._sample_skip -= 1
        if self._sample_skip > 0:
            return False
        self._sample_skip = 256
        now = time.monotonic_ns()
        if now < self._sample_refill_ns:
            return False
        self._sample_refill_ns = now + 100_000_000
        self._sample_budget = rate * 0.1 - 1
        return True

    def submit(
        self,
        func: Callable[..., Any],
        *args: Any,
        priority: int | str = 1,
        max_retries: int = 0,
        retry_delay: float = 1.0,
        **kwargs: Any,
    ) -> str:
        """Queue ``func(*args, **kwargs)``; return its task id.

        ``priority``, ``max_retries`` and ``retry_delay`` are this method's own
        (as in the original API); use ``submit_call`` to pass keywords of those
        names to *func*, or for a full ``RetryPolicy`` and a deadline.

        Raises:
            TypeError: *func* is not callable, or *priority*, *max_retries* or
                *retry_delay* has the wrong type.
            ValueError: *priority*, *max_retries* or *retry_delay* is out of
                range (*retry_delay* is checked even when *max_retries* is 0).
            RuntimeError: the pool is not started.
            QueueFull: see ``queue_full_policy``.
        """
        dispatch = self._fast_dispatch
        events = self._events  # type: ignore[attr-defined]
        if events.active and self._sampled(events):
            # Someone follows this task: the Python path reports it.
            return self._submit_slow(  # type: ignore[attr-defined,no-any-return]
                func, args, kwargs, priority, max_retries, retry_delay, True
            )
        if (
            dispatch is not None
            and type(priority) is int
            and _INT32_MIN <= priority <= _INT32_MAX
            and (max_retries is None or max_retries == 0)
            and type(retry_delay) is float
            and 0.0 <= retry_delay <= MAX_SECONDS
            and callable(func)
        ):
            try:
                future = dispatch.submit_managed(
                    func, args, kwargs, priority, None, self.default_retry, None, self._registry
                )
            except QueueClosed:
                raise self._rejection() from None  # type: ignore[attr-defined]
            return f"task-{future._task._number}"
        return self._submit_slow(  # type: ignore[attr-defined,no-any-return]
            func, args, kwargs, priority, max_retries, retry_delay, False
        )

    def get_task_result(self, task_id: str, timeout: float | None = None) -> Any:
        """The task's result, waiting up to *timeout* seconds for it.

        Raises:
            UnknownTaskError: no such task.
            TimeoutError: not finished within *timeout* (or the task's own
                deadline passed: then ``get_task_status`` says TIMED_OUT).
            concurrent.futures.CancelledError: the task was cancelled.
            Exception: whatever the task raised on its last attempt.
        """
        future = self._registry.get(task_id)
        if future is None:
            raise self._unknown_task(task_id)  # type: ignore[attr-defined]
        return future_result(future, timeout)


# --------------------------------------------------------------------------
# Task graphs (twin of GraphRunner in _core_managed.pxi)
# --------------------------------------------------------------------------

_NS_WAITING = 0
_NS_LAUNCHED = 1
_NS_COMPLETED = 2
_NS_FAILED = 3
_NS_CANCELLED = 4
_NS_TIMED_OUT = 5
_NS_SKIPPED = 6
_NS_UPSTREAM_FAILED = 7
_NODE_STATUS = (
    TaskStatus.PENDING,
    TaskStatus.QUEUED,
    TaskStatus.COMPLETED,
    TaskStatus.FAILED,
    TaskStatus.CANCELLED,
    TaskStatus.TIMED_OUT,
    TaskStatus.SKIPPED,
    TaskStatus.UPSTREAM_FAILED,
)
_RULE_CODES = {
    "all_success": 0,
    "all_done": 1,
    "one_success": 2,
    "one_failed": 3,
    "none_failed": 4,
}


def _judge(rule: int, total: int, succeeded: int, failed: int, skipped: int) -> int:
    if rule == 2 and succeeded:
        return _NS_LAUNCHED
    if rule == 3 and failed:
        return _NS_LAUNCHED
    if succeeded + failed + skipped < total:
        return _NS_WAITING
    if rule == 1 or total == 0:
        return _NS_LAUNCHED
    if rule == 3:
        return _NS_SKIPPED
    if failed:
        return _NS_UPSTREAM_FAILED
    if rule == 4 or (rule == 0 and not skipped):
        return _NS_LAUNCHED
    return _NS_SKIPPED


def closure_order(dependencies: Any, targets: Any) -> list[Any]:
    """*targets* and everything they depend on, dependencies first, each once.

    Raises:
        KeyError: a target or dependency is not in *dependencies*.
    """
    order: list[Any] = []
    seen: set[Any] = set()
    for target in targets:
        if target in seen:
            continue
        seen.add(target)
        stack = [(target, iter(dependencies[target]))]
        while stack:
            node, pending = stack[-1]
            for dep in pending:
                if dep not in seen:
                    seen.add(dep)
                    stack.append((dep, iter(dependencies[dep])))
                    break
            else:
                stack.pop()
                order.append(node)
    return order


_REPORT_BATCH = 256
_REPORT_DELAY_NS = 20_000_000


class GraphRunner:
    """One execution of a task graph, run on a dispatcher (see the native core).

    A subclass may run the nodes elsewhere: it overrides ``_launch`` (submit a
    ready node), ``_report`` (tell the owner of ended nodes) and
    ``_cancel_launched``, passes no dispatcher, and ends each node with
    ``_end`` under ``_lock`` (``threadloom.distributed.DaskGraphRunner``).
    """

    def __init__(self, dispatch: Dispatcher | None, tasks: list[Any]) -> None:
        n = len(tasks)
        index = {task.task_id: i for i, task in enumerate(tasks)}
        self._lock = threading.Lock()
        # None only in a subclass that overrides every use (see the docstring).
        self._dispatch = cast(Dispatcher, dispatch)
        self.size = n
        self._tasks = tasks
        self._results: list[Any] = [None] * n
        self._errors: list[Any] = [None] * n
        self._futures: list[Any] = [None] * n
        self._deps = [[index[d] for d in task.dependencies] for task in tasks]
        self._dependents: list[list[int]] = [[] for _ in range(n)]
        for i, deps in enumerate(self._deps):
            for j in deps:
                self._dependents[j].append(i)
        self._total = [len(d) for d in self._deps]
        self._succeeded = [0] * n
        self._failed = [0] * n
        self._skipped = [0] * n
        self._rules = [
            _RULE_CODES[getattr(t.trigger_rule, "value", t.trigger_rule) or "all_success"]
            for t in tasks
        ]
        self._attempts = [0] * n
        self._state = [_NS_WAITING] * n
        self._cancel = [False] * n
        self._priority = [t.priority for t in tasks]
        for i in range(n - 1, -1, -1):
            for j in self._deps[i]:
                if self._priority[j] < self._priority[i]:
                    self._priority[j] = self._priority[i]
        self._queued_ns = [0] * n
        self._started_ns = [0] * n
        self._finished_ns = [0] * n
        self._unfinished = n
        # Nodes whose end the owner has not been told yet: the execution
        # finishes only once every node-end hook has returned.
        self._unreported = n
        self._pending_report: list[int] = []
        self._report_armed = False
        self._cancel_all = False
        self._finished = False
        self._started = False
        self.on_nodes_end: Callable[[GraphRunner, list[int]], object] | None = None
        self.on_finished: Callable[[GraphRunner], object] | None = None
        #: ``wrap(func, args, kwargs) -> (func, args, kwargs)`` applied at launch, or None.
        self.call_wrapper: Callable[..., tuple[Any, Any, Any]] | None = None

    def start(self) -> None:
        """Queue every node without dependencies (once)."""
        ready: list[int] = []
        with self._lock:
            if self._started:
                return
            self._started = True
            for i in range(self.size):
                if self._total[i] == 0 and self._state[i] == _NS_WAITING:
                    self._state[i] = _NS_LAUNCHED
                    ready.append(i)
        self._advance(ready, [])

    def _advance(self, ready: list[int], ended: list[int]) -> None:
        while ready:
            self._launch(ready.pop(), ready, ended)
        self._report(ended)
        self._check_finished()

    def _report(self, ended: list[int]) -> None:
        # Ends are reported in batches (see the native core).
        flush = arm = False
        with self._lock:
            self._pending_report.extend(ended)
            if self._pending_report:
                if len(self._pending_report) >= _REPORT_BATCH or self._unfinished == 0:
                    flush = True
                elif not self._report_armed:
                    self._report_armed = arm = True
        if flush:
            self._flush_report()
        elif arm:
            TIMERS._arm(time.monotonic_ns() + _REPORT_DELAY_NS, self._hand_report, _TK_CALL)

    def _hand_report(self) -> None:
        # On the timer thread: the report is the owner's code, so it runs on
        # the pool (or here, if the pool is closing).
        try:
            self._dispatch.queue._push(_INTERNAL_PRIORITY, self._flush_report, (), None, None, None)
            self._dispatch._after_push()
        except QueueClosed:
            self._flush_report()

    def _flush_report(self) -> None:
        with self._lock:
            batch, self._pending_report = self._pending_report, []
            self._report_armed = False
        if not batch:
            return
        hook = self.on_nodes_end
        if hook is not None:
            try:
                hook(self, batch)
            except BaseException:
                LOGGER.exception("graph node-end hook failed")
        with self._lock:
            self._unreported -= len(batch)
        self._check_finished()

    def _check_finished(self) -> None:
        with self._lock:
            finished = self._unreported == 0 and self._started and not self._finished
            if finished:
                self._finished = True
        if finished and self.on_finished is not None:
            try:
                self.on_finished(self)
            except BaseException:
                LOGGER.exception("graph finished hook failed")

    def _launch(self, i: int, ready: list[int], ended: list[int]) -> None:
        task = self._tasks[i]
        code = _NS_WAITING
        if self._cancel_all or self._cancel[i]:
            code = _NS_CANCELLED
        elif not task.enabled:
            code = _NS_SKIPPED
        if code != _NS_WAITING:
            with self._lock:
                self._end(i, code, ready, ended)
            return
        kwargs = dict(task.kwargs) if task.kwargs else None
        if task.results_param is not None:
            kwargs = kwargs or {}
            kwargs[task.results_param] = self._upstream_of(i)
        retry = task.retry if task.max_retries else None
        func, args = task.func, task.args
        self._queued_ns[i] = time.monotonic_ns()
        error: BaseException | None = None
        try:
            if self.call_wrapper is not None:
                func, args, kwargs = self.call_wrapper(func, args, kwargs)
            future = self._dispatch.submit_managed(
                func,
                args,
                kwargs,
                self._priority[i],
                task.name,
                retry,
                task.timeout,
                self,
                node=i,
            )
        except QueueClosed:
            error = self._dispatch._rejection()
        except BaseException as exc:
            error = exc
        if error is not None:
            self._errors[i] = error
            with self._lock:
                self._end(i, _NS_FAILED, ready, ended)
            return
        with self._lock:
            cancel_now = False
            if self._state[i] == _NS_LAUNCHED:
                self._futures[i] = future
                cancel_now = self._cancel_all or self._cancel[i]
        if cancel_now:
            future.cancel()

    def __call__(self, task: ManagedTask, future: Any) -> None:
        """The done-hook of every node's task."""
        i = task._node
        status = task._status
        if status is _ST_COMPLETED:
            code = _NS_COMPLETED
            self._results[i] = future._result
        elif status is _ST_CANCELLED:
            code = _NS_CANCELLED
        elif status is _ST_TIMED_OUT:
            code = _NS_TIMED_OUT
            self._errors[i] = future._exception
        else:
            code = _NS_FAILED
            self._errors[i] = future._exception
        self._attempts[i] = task.attempts
        self._started_ns[i] = task._started_ns
        self._finished_ns[i] = task._finished_ns
        ready: list[int] = []
        ended: list[int] = []
        with self._lock:
            self._futures[i] = None
            if self._state[i] == _NS_LAUNCHED:
                self._end(i, code, ready, ended)
        self._advance(ready, ended)

    def _end(self, i: int, code: int, ready: list[int], ended: list[int]) -> None:
        work = [(i, code)]
        while work:
            i, code = work.pop()
            self._state[i] = code
            if not self._finished_ns[i]:
                self._finished_ns[i] = time.monotonic_ns()
            self._unfinished -= 1
            ended.append(i)
            for j in self._dependents[i]:
                if self._state[j] != _NS_WAITING:
                    continue
                if code == _NS_COMPLETED:
                    self._succeeded[j] += 1
                elif code == _NS_SKIPPED:
                    self._skipped[j] += 1
                else:
                    self._failed[j] += 1
                verdict = _judge(
                    self._rules[j],
                    self._total[j],
                    self._succeeded[j],
                    self._failed[j],
                    self._skipped[j],
                )
                if verdict == _NS_LAUNCHED:
                    self._state[j] = _NS_LAUNCHED
                    ready.append(j)
                elif verdict != _NS_WAITING:
                    work.append((j, verdict))

    def cancel(self, nodes: Any = None) -> bool:
        """Cancel every node (*nodes* None) or the nodes at these indexes (see the native core)."""
        ready: list[int] = []
        ended: list[int] = []
        in_flight: list[Callable[[], object]] = []
        found = False
        with self._lock:
            if nodes is None:
                if self._cancel_all or self._finished:
                    return False
                self._cancel_all = True
                found = True
                for i in range(self.size):
                    if self._state[i] == _NS_WAITING:
                        self._state[i] = _NS_CANCELLED
                        if not self._finished_ns[i]:
                            self._finished_ns[i] = time.monotonic_ns()
                        self._unfinished -= 1
                        ended.append(i)
                # Every waiting node has ended in its own right first, so that
                # a launched node that ends at once below readies none of them.
                for i in range(self.size):
                    if self._state[i] == _NS_LAUNCHED:
                        self._cancel_launched(i, in_flight, ready, ended)
            else:
                for i in nodes:
                    if self._state[i] == _NS_WAITING:
                        found = True
                        self._cancel[i] = True
                        self._end(i, _NS_CANCELLED, ready, ended)
                    elif self._state[i] == _NS_LAUNCHED:
                        found = True
                        self._cancel[i] = True
                        self._cancel_launched(i, in_flight, ready, ended)
        for cancel in in_flight:
            cancel()
        if self._started:
            self._advance(ready, ended)
        else:
            self._report(ended)
        return found

    def _cancel_launched(
        self, i: int, in_flight: list[Callable[[], object]], ready: list[int], ended: list[int]
    ) -> None:
        # Under the lock: cancel launched node *i* by what *in_flight* will
        # call after it; the node ends when its task does.
        future = self._futures[i]
        if future is not None:
            in_flight.append(future.cancel)

    @property
    def done(self) -> bool:
        return self._finished

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_all

    def node_state(self, i: int) -> TaskStatus:
        """The node's status: PENDING, a live QUEUED/RUNNING/RETRYING, or terminal."""
        state = self._state[i]
        if state == _NS_LAUNCHED:
            future = self._futures[i]
            if future is not None:
                status: TaskStatus = future._task.status
                return status
            return TaskStatus.QUEUED
        return _NODE_STATUS[state]

    def node_record(self, i: int) -> tuple[Any, ...]:
        """``(status, priority, attempts, queued_at, started_at, finished_at, duration, error)``."""
        state = self._state[i]
        status = self.node_state(i)
        queued = self._queued_ns[i] / 1e9 + _WALL_OFFSET if self._queued_ns[i] else None
        started = self._started_ns[i] / 1e9 + _WALL_OFFSET if self._started_ns[i] else None
        finished = (
            self._finished_ns[i] / 1e9 + _WALL_OFFSET
            if state >= _NS_COMPLETED and self._finished_ns[i]
            else None
        )
        duration = None
        if started is not None and finished is not None:
            duration = (self._finished_ns[i] - self._started_ns[i]) / 1e9
        return (
            status,
            self._priority[i],
            self._attempts[i],
            queued,
            started,
            finished,
            duration,
            self._errors[i],
        )

    def run_rows(
        self,
        ended: list[int],
        execution_id: str,
        last_status: dict[str, TaskStatus],
        describe_error: Callable[[BaseException], tuple[str, str, str | None]],
        tags_json: Callable[[tuple[str, ...]], str],
    ) -> list[tuple[Any, ...]]:
        """History rows of the nodes *ended* (see the native twin for the columns).

        Made from :meth:`node_record`, so that a runner that keeps its
        records elsewhere (the Dask backend's) makes the same rows.
        """
        rows = []
        prefix = execution_id + ":"
        for i in ended:
            if not 0 <= i < self.size:
                raise IndexError(f"node {i} is not in this graph of {self.size}")
            if self._state[i] < _NS_COMPLETED:
                raise ValueError(f"node {i} has not ended")
            task = self._tasks[i]
            task_id = task.task_id
            status, _, attempts, queued, started, finished, duration, error = self.node_record(i)
            last_status[task_id] = status
            if error is None:
                error_type = error_message = trace = None
            else:
                error_type, error_message, trace = describe_error(error)
            tags = task.tags
            rows.append(
                (
                    prefix + task_id,
                    execution_id,
                    task_id,
                    task.name,
                    status.value,
                    attempts,
                    queued,
                    started,
                    time.time() if finished is None else finished,
                    duration,
                    error_type,
                    error_message,
                    tags_json(tags) if tags else "[]",
                    trace,
                )
            )
        return rows

    def node_status_code(self, i: int) -> int:
        return self._state[i]

    def result(self, i: int) -> Any:
        return self._results[i]

    def error(self, i: int) -> Any:
        return self._errors[i]

    def task(self, i: int) -> Any:
        return self._tasks[i]

    def _upstream_of(self, i: int) -> Any:
        return types.MappingProxyType(
            {
                self._tasks[j].name: self._results[j]
                for j in self._deps[i]
                if self._state[j] == _NS_COMPLETED
            }
        )


def slot_offsets(cls: type, names: Any) -> tuple[Any, ...]:
    """The twin's stand-in for slot offsets: the slots' setters."""
    setters = []
    for name in names:
        descriptor: Any = cls.__dict__.get(name)
        if type(descriptor).__name__ != "member_descriptor":
            raise TypeError(f"{cls.__name__}.{name} is not a slot")
        setters.append(descriptor.__set__)
    return tuple(setters)


def new_slotted(cls: type, offsets: tuple[Any, ...], values: tuple[Any, ...]) -> Any:
    """A new *cls* whose slots hold *values*, bypassing ``__init__`` (see the native core)."""
    if len(values) != len(offsets):
        raise ValueError(f"{len(offsets)} slots, {len(values)} values")
    obj: Any = object.__new__(cls)
    for setter, value in zip(offsets, values, strict=True):
        setter(obj, value)
    return obj


def _resolve_dependencies(
    tasks: dict[str, Any], by_name: dict[str, str], refs: Iterable[str]
) -> tuple[str, ...] | None:
    resolved: dict[str, None] = {}
    for ref in refs:
        dep = ref if ref in tasks else by_name.get(ref)
        if dep is None:
            return None
        resolved[dep] = None
    return tuple(resolved)


def add_plain_task(
    tasks: dict[str, Any],
    by_name: dict[str, str],
    dependency_map: dict[str, tuple[str, ...]],
    task_id: str,
    name: object,
    func: object,
    args: tuple[Any, ...],
    kwargs: Any,
    dependencies: Iterable[str],
    cls: type,
    offsets: tuple[Any, ...],
    defaults: tuple[Any, ...],
) -> Any:
    """Register a task with default options in one step (see the native core)."""
    if type(name) is not str or not name or not callable(func):
        return None
    if name in tasks or by_name.get(name, task_id) != task_id or task_id in dependency_map:
        return None
    deps = _resolve_dependencies(tasks, by_name, dependencies)
    if deps is None:
        return None
    obj = new_slotted(cls, offsets, (task_id, name, func, args, kwargs, deps, *defaults))
    tasks[task_id] = obj
    by_name[name] = task_id
    dependency_map[task_id] = deps
    return obj


# -- SQLite batches (the native core runs them without the GIL) -----------------


def sqlite_bulk_write_available() -> bool:
    """True: this twin runs :func:`sqlite_bulk_write` through the sqlite3 module."""
    return True


def sqlite_bulk_write(
    connection: Any, statements: Iterable[tuple[str, Sequence[Sequence[Any]], int]]
) -> None:
    """Run each ``(sql, rows, group)`` of *statements*, in one transaction.

    *sql* runs once per *group* rows (an ``INSERT`` of *group* rows in one
    ``VALUES`` list): its parameters are the next *group* rows, in order;
    *rows* holds a whole number of groups.  ``BEGIN IMMEDIATE`` first and
    ``COMMIT`` last, on *connection* (a ``sqlite3.Connection`` in autocommit
    mode, ``isolation_level=None``, not in a transaction).  On an error the
    transaction is rolled back and the error raised.
    """
    import sqlite3

    if type(connection) is not sqlite3.Connection:
        raise TypeError(f"connection must be a sqlite3.Connection, not {type(connection).__name__}")
    plan = []
    for sql, rows, group in statements:
        if type(group) is not int or group < 1:
            raise ValueError(f"group must be an int >= 1, not {group!r}")
        if len(rows) % group:
            raise ValueError(f"{len(rows)} rows are not a whole number of groups of {group}")
        if len(rows):
            plan.append((sql, rows, group))
    if connection.in_transaction:
        raise sqlite3.ProgrammingError("a transaction is already open on this connection")
    if not plan:
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        for sql, rows, group in plan:
            connection.executemany(
                sql,
                (
                    tuple(itertools.chain.from_iterable(rows[i : i + group]))
                    for i in range(0, len(rows), group)
                ),
            )
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
