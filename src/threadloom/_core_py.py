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

import heapq
import itertools
import logging
import math
import threading
import time
import types
from collections.abc import Callable
from concurrent.futures import CancelledError, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeoutError
from concurrent.futures._base import (
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
    RUNNING,
)
from typing import Any

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
    ) -> int:
        """Queue a call; return its sequence number.

        Raises:
            QueueClosed: the queue was closed.
            OverflowError: *priority* does not fit in 32 bits.
        """
        if not _INT32_MIN <= priority <= _INT32_MAX:
            raise OverflowError(f"priority {priority} does not fit in 32 bits")
        with self._mutex:
            if self._closed:
                raise QueueClosed("queue is closed")
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

    def submit_entry(
        self,
        priority: int,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        future: Any,
        count_submitted: bool | None = None,
    ) -> int:
        """Queue a call for an existing future (or None: *fn* completes nothing).

        A call without a future is run as is; it must handle its own errors
        (one that escapes is logged).  It is counted as submitted if
        *count_submitted* says so (default: if it has a future).
        """
        count = future is not None if count_submitted is None else count_submitted
        if count:
            self.counters.add(COUNT_SUBMITTED)
        try:
            sequence = self.queue.push(priority, fn, args, kwargs, future)
        except BaseException:
            if count:
                self.counters._retract(COUNT_SUBMITTED)
            raise
        if self._threads < self._max_workers and self.reserve_worker():
            self._start_worker()
        return sequence

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
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise TypeError(f"idle_timeout must be a number of seconds or None, not {value!r}")
    if value <= 0:
        raise ValueError(f"idle_timeout must be positive, not {value!r}")
    return float(value)
