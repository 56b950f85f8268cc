# cython: language_level=3, embedsignature=True
"""threadloom's native core: the task queue, counters, worker loop and future state machine.

The pure-Python twin, ``_core_py.py``, implements the same interface and is the
oracle this module is tested against; keep the two in lockstep.

Atomicity: each future transition below is a short run of C-API calls that
executes no Python code, so under the GIL it cannot interleave with another
transition; on free-threaded builds the per-object critical section does the
same job.  Nothing here holds a queue lock while it could wait for the GIL.
"""

cimport cython
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport calloc, free, malloc

import logging
import threading
from concurrent.futures import CancelledError, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeoutError
from concurrent.futures._base import (
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
    RUNNING,
)


cdef extern from "Python.h":
    bint PyCoro_CheckExact(object o)
    Py_ssize_t PyTuple_GET_SIZE(object o)


cdef extern from *:
    """
    static PyObject *tl_new_instance(PyObject *cls) {
        /* object.__new__(cls): no __init__, so no stdlib Condition is built. */
        PyObject *empty = PyTuple_New(0);
        if (!empty) return NULL;
        PyObject *result = PyBaseObject_Type.tp_new((PyTypeObject *)cls, empty, NULL);
        Py_DECREF(empty);
        return result;
    }
    """
    object tl_new_instance(object cls)


cdef extern from *:
    """
    /* Future transitions must be atomic.  With the GIL they are: they run no
     * Python code.  Without it (free-threaded builds) a striped mutex keyed by
     * the future's address serialises them; PyMutex detaches while blocked,
     * so it cannot deadlock with a stop-the-world pause. */
    #ifdef Py_GIL_DISABLED
    static PyMutex tl_future_mutexes[64];
    static inline void tl_future_lock(PyObject *o) {
        PyMutex_Lock(&tl_future_mutexes[((uintptr_t)o >> 4) & 63]);
    }
    static inline void tl_future_unlock(PyObject *o) {
        PyMutex_Unlock(&tl_future_mutexes[((uintptr_t)o >> 4) & 63]);
    }
    #else
    static inline void tl_future_lock(PyObject *o) { (void)o; }
    static inline void tl_future_unlock(PyObject *o) { (void)o; }
    #endif
    """
    void tl_future_lock(object o)
    void tl_future_unlock(object o)


NATIVE = True

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
COUNT_SUBMITTED = 0
COUNT_STARTED = 1
COUNT_COMPLETED = 2
COUNT_FAILED = 3
COUNT_CANCELLED = 4
COUNT_RETRIED = 5
COUNT_TIMED_OUT = 6
COUNT_REJECTED = 7

cdef enum:
    C_SUBMITTED = 0
    C_STARTED = 1
    C_COMPLETED = 2
    C_FAILED = 3
    C_CANCELLED = 4

SAMPLE_CAPACITY = 4096

# How long a worker that ran out of work spins (without the GIL) before it
# sleeps, and how long result() yields the GIL before it blocks: both short and
# bounded, so an idle pool does not burn a core.
cdef extern from *:
    """
    static tl_spin_policy tl_result_spin;
    static tl_spin_policy tl_gil_hint_spin;
    """
    tl_spin_policy tl_result_spin
    tl_spin_policy tl_gil_hint_spin


cdef uint64_t WORKER_SPIN_NS = 50000
cdef uint64_t RESULT_SPIN_NS = 30000
cdef uint64_t GIL_HINT_SPIN_NS = 10000


def _set_spin_budgets(worker_ns, result_ns, gil_hint_ns):
    """Tune the bounded spins (nanoseconds; 0 turns one off).  For benchmarks."""
    global WORKER_SPIN_NS, RESULT_SPIN_NS, GIL_HINT_SPIN_NS
    WORKER_SPIN_NS = worker_ns
    RESULT_SPIN_NS = result_ns
    GIL_HINT_SPIN_NS = gil_hint_ns
    tl_spin_policy_init(&tl_result_spin, result_ns)
    tl_spin_policy_init(&tl_gil_hint_spin, gil_hint_ns)


tl_spin_policy_init(&tl_result_spin, RESULT_SPIN_NS)
tl_spin_policy_init(&tl_gil_hint_spin, GIL_HINT_SPIN_NS)

_INT32_MIN = -(2 ** 31)
_INT32_MAX = 2 ** 31 - 1


class QueueClosed(RuntimeError):
    """Raised by a push onto, or a pop from an empty, closed queue."""


cdef object _future_type = None
cdef object _Condition = threading.Condition
cdef object _PENDING = PENDING
cdef object _RUNNING = RUNNING
cdef object _CANCELLED = CANCELLED
cdef object _CANCELLED_AND_NOTIFIED = CANCELLED_AND_NOTIFIED
cdef object _FINISHED = FINISHED


def set_future_type(cls):
    """Tell the core which class to instantiate for the futures it creates."""
    global _future_type
    _future_type = cls


cdef inline object _new_future():
    if _future_type is None:
        raise RuntimeError("threadloom core used before set_future_type()")
    return tl_new_instance(_future_type)


# --------------------------------------------------------------------------
# Future primitives (see _core_py.py for the ordering argument)
# --------------------------------------------------------------------------

def future_condition(future):
    """Return the future's condition, creating it (and its waiter list) once."""
    cdef object condition = future._tl_condition
    if condition is not None:
        return condition
    # Built outside the atomic section: constructing a Condition runs Python
    # code, which could switch threads.  The section only installs it.
    fresh = _Condition()
    waiters = []
    tl_future_lock(future)
    try:
        condition = future._tl_condition
        if condition is None:
            future._tl_waiters = waiters
            future._tl_condition = fresh
            condition = fresh
    finally:
        tl_future_unlock(future)
    return condition


cdef object _lock_transition(object future):
    """Take what a transition of *future* holds: its condition if it has one
    (acquired first), then its state lock.  Returns the condition, or None.

    With the GIL, nothing between the read of ``_tl_condition`` and the end of
    the caller's atomic section runs Python code, so the re-check cannot fail;
    without it, future_condition() may install one in between.
    """
    cdef object condition = future._tl_condition
    cdef object installed
    while True:
        if condition is not None:
            condition.acquire()
        tl_future_lock(future)
        installed = future._tl_condition
        if installed is condition:
            return condition
        tl_future_unlock(future)
        condition = installed


cdef int _invoke_callbacks(object future, object callbacks) except -1:
    # Every callback runs; then a SystemExit or KeyboardInterrupt from one is
    # raised to the caller (see _core_py.py).
    cdef object escaped = None
    if callbacks:
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
        raise escaped
    return 0


cdef int _finish(object future, object value, bint is_exception) except -1:
    cdef object state
    cdef object condition = None
    cdef object callbacks = None
    cdef bint invalid = False
    # The state is written and reported to the waiters in one hold of the
    # condition, if there is one (see _core_py.py for the ordering argument).
    condition = _lock_transition(future)
    try:
        try:
            state = future._state
            if state == _FINISHED or state == _CANCELLED or state == _CANCELLED_AND_NOTIFIED:
                invalid = True
            else:
                if is_exception:
                    future._exception = value
                else:
                    future._result = value
                future._state = _FINISHED
                callbacks = future._tl_callbacks
        finally:
            tl_future_unlock(future)
        if not invalid:
            tl_completion_signal()
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
    if invalid:
        raise InvalidStateError(f"{state}: {future!r}")
    _invoke_callbacks(future, callbacks)
    return 0


def future_set_result(future, result):
    """Complete *future* with *result* (``Future.set_result``)."""
    _finish(future, result, False)


def future_set_exception(future, exception):
    """Complete *future* with *exception* (``Future.set_exception``)."""
    _finish(future, exception, True)


cdef int _set_running(object future, bint strict) except -1:
    """1 if PENDING -> RUNNING; 0 if it was cancelled (now notified) or, when
    not *strict*, in any other state; raises in strict mode for other states."""
    cdef object state
    cdef object condition = None
    cdef bint notified = False
    tl_future_lock(future)
    try:
        state = future._state
        if state == _PENDING:
            # RUNNING is not a state waiters look for: no condition needed.
            future._state = _RUNNING
            return 1
    finally:
        tl_future_unlock(future)
    if state == _CANCELLED:
        # CANCELLED_AND_NOTIFIED is: written and reported in one hold of the
        # condition.  Re-read: another thread may have notified in between.
        condition = _lock_transition(future)
        try:
            try:
                state = future._state
                if state == _CANCELLED:
                    future._state = _CANCELLED_AND_NOTIFIED
                    notified = True
            finally:
                tl_future_unlock(future)
            if notified and condition is not None:
                for waiter in future._tl_waiters:
                    waiter.add_cancelled(future)
        finally:
            if condition is not None:
                condition.release()
        if notified:
            return 0
    # States that never go back to PENDING or CANCELLED.
    if not strict:
        return 0
    LOGGER.critical("Future %s in unexpected state: %s", id(future), state)
    raise RuntimeError("Future in unexpected state")


def future_set_running_or_notify_cancel(future):
    """Mark *future* running, or report (and notify waiters) that it was cancelled."""
    return _set_running(future, True) == 1


def future_set_running_or_notify_cancel_safe(future):
    """Like ``set_running_or_notify_cancel`` but False (not an error) if not pending."""
    return _set_running(future, False) == 1


def future_cancel(future):
    """Cancel *future* unless it is running or finished (``Future.cancel``)."""
    cdef object state
    cdef object condition = None
    cdef object callbacks = None
    cdef int outcome = 0
    condition = _lock_transition(future)
    try:
        try:
            state = future._state
            if state == _RUNNING or state == _FINISHED:
                outcome = 0
            elif state == _CANCELLED or state == _CANCELLED_AND_NOTIFIED:
                outcome = 1
            else:
                future._state = _CANCELLED
                callbacks = future._tl_callbacks
                outcome = 2
        finally:
            tl_future_unlock(future)
        if outcome == 2:
            tl_completion_signal()
            if condition is not None:
                condition.notify_all()
    finally:
        if condition is not None:
            condition.release()
    if outcome != 2:
        return outcome == 1
    _invoke_callbacks(future, callbacks)
    return True


def future_force_cancel(future):
    """Cancel *future* even if it is running, and report it to waiters at once
    (CANCELLED_AND_NOTIFIED).  For the owner of a task that ends it as
    cancelled; False if the future was already done."""
    cdef object state
    cdef object callbacks = None
    cdef bint done = False
    condition = _lock_transition(future)
    try:
        try:
            state = future._state
            if state == _FINISHED or state == _CANCELLED or state == _CANCELLED_AND_NOTIFIED:
                done = True
            else:
                future._state = _CANCELLED_AND_NOTIFIED
                callbacks = future._tl_callbacks
        finally:
            tl_future_unlock(future)
        if not done:
            tl_completion_signal()
            if condition is not None:
                for waiter in future._tl_waiters:
                    waiter.add_cancelled(future)
                condition.notify_all()
    finally:
        if condition is not None:
            condition.release()
    if done:
        return False
    _invoke_callbacks(future, callbacks)
    return True


def future_add_done_callback(future, fn):
    """Call *fn(future)* when it is done, or now if it already is."""
    cdef object state
    cdef object callbacks
    cdef bint added = False
    fresh = [fn]
    tl_future_lock(future)
    try:
        state = future._state
        if not (state == _FINISHED or state == _CANCELLED or state == _CANCELLED_AND_NOTIFIED):
            callbacks = future._tl_callbacks
            if callbacks is None:
                future._tl_callbacks = fresh
            else:
                # list.append on an existing list runs no Python code.
                callbacks.append(fn)
            added = True
    finally:
        tl_future_unlock(future)
    if added:
        return
    try:
        fn(future)
    except Exception:
        LOGGER.exception("exception calling callback for %r", future)


cdef inline bint _is_done(object state):
    return state == _FINISHED or state == _CANCELLED or state == _CANCELLED_AND_NOTIFIED


cdef int _wait_done(object future, object timeout) except -1:
    cdef uint64_t start, epoch, left
    # A short, bounded spin without the GIL: a task that takes a few
    # microseconds finishes (the worker takes the free GIL at once) without
    # this thread sleeping on a condition.  The GIL is held only to look at
    # the state after some completion happened.
    cdef uint64_t budget = tl_spin_budget(&tl_result_spin) if (timeout is None or timeout > 0) else 0
    if budget:
        start = tl_now_ns()
        while True:
            epoch = tl_completion_epoch()
            if _is_done(future._state):
                tl_spin_outcome(&tl_result_spin, 1)
                return 0
            left = tl_now_ns() - start
            if left >= budget:
                tl_spin_outcome(&tl_result_spin, 0)
                break
            with nogil:
                tl_result_spin_enter()
                tl_spin_for_completion(epoch, budget - left)
                tl_result_spin_leave()
    condition = future_condition(future)
    with condition:
        if not _is_done(future._state):
            condition.wait(timeout)
    return 0


# Timeouts raise concurrent.futures.TimeoutError: an alias of the builtin from
# 3.11, but a class of its own on 3.10, where `except TimeoutError` misses it.

cdef int _wait_finished(object future, object timeout) except -1:
    """Return once *future* is FINISHED; raise if it is cancelled or time runs out."""
    cdef object state = future._state
    if state == _CANCELLED or state == _CANCELLED_AND_NOTIFIED:
        raise CancelledError()
    _wait_done(future, timeout)
    state = future._state
    if state == _CANCELLED or state == _CANCELLED_AND_NOTIFIED:
        raise CancelledError()
    if state != _FINISHED:
        raise FutureTimeoutError()
    return 0


def future_result(future, timeout=None):
    """``Future.result``: the fast path reads the state without any lock."""
    if future._state != _FINISHED:
        _wait_finished(future, timeout)
    exception = future._exception
    if exception is not None:
        raise exception
    return future._result


def future_exception(future, timeout=None):
    """``Future.exception``."""
    if future._state != _FINISHED:
        _wait_finished(future, timeout)
    return future._exception


# --------------------------------------------------------------------------
# Counters
# --------------------------------------------------------------------------

@cython.final
cdef class Counters:
    """Monotonic event counters (``COUNTER_NAMES``): C11 atomics, read without locks."""

    def __cinit__(self):
        self.c = <tl_counters *>calloc(1, sizeof(tl_counters))
        if self.c is NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.c)

    def add(self, int index, uint64_t n=1):
        if not 0 <= index < TL_COUNTERS:
            raise IndexError(f"counter index {index} out of range")
        tl_counter_add(self.c, index, n)

    def get(self, int index):
        if not 0 <= index < TL_COUNTERS:
            raise IndexError(f"counter index {index} out of range")
        return tl_counter_get(self.c, index)

    def snapshot(self):
        return tuple([tl_counter_get(self.c, i) for i in range(TL_COUNTERS)])


# --------------------------------------------------------------------------
# TaskQueue
# --------------------------------------------------------------------------

cdef inline void _entry_release(tl_entry *e) noexcept:
    Py_XDECREF(<PyObject *>e.fn)
    Py_XDECREF(<PyObject *>e.args)
    Py_XDECREF(<PyObject *>e.kwargs)
    Py_XDECREF(<PyObject *>e.future)
    e.fn = e.args = e.kwargs = e.future = NULL


@cython.final
cdef class TaskQueue:
    """A lock-striped binary-heap priority queue of call entries.

    Entries are ``(priority, sequence, fn, args, kwargs, future)``.  Ordering
    guarantee: a pop returns the entry with the highest priority among those
    whose push completed before the pop began; among equal priorities, the one
    pushed first.  Entries whose future has been cancelled are skipped at pop
    time (lazy removal; their future moves to CANCELLED_AND_NOTIFIED);
    ``purge_cancelled`` removes them eagerly.  After ``close()`` pushes raise
    :class:`QueueClosed`, pops still return what is left, and a pop of an
    empty closed queue raises :class:`QueueClosed`; every blocked pop is woken.
    """

    def __cinit__(self, int stripes=4):
        if stripes < 1:
            raise ValueError(f"stripes must be a positive int, not {stripes!r}")
        if tl_queue_init(&self.q, stripes) != 0:
            raise MemoryError()
        self.initialised = True
        self.cancelled_skipped = 0
        self.counters_sink = None

    def __dealloc__(self):
        cdef tl_entry *entries
        cdef size_t n, k
        cdef int i
        if not self.initialised:
            return
        for i in range(self.q.nstripes):
            n = tl_stripe_take_all(&self.q, i, &entries)
            for k in range(n):
                _entry_release(&entries[k])
            free(entries)
        tl_queue_free(&self.q)

    @property
    def stripes(self):
        return self.q.nstripes

    @property
    def closed(self):
        return tl_queue_closed(&self.q)

    def __len__(self):
        cdef int64_t n = tl_queue_size(&self.q)
        return n if n > 0 else 0

    def push(self, priority, fn, tuple args=(), dict kwargs=None, future=None):
        """Queue a call; return its sequence number.

        Raises:
            QueueClosed: the queue was closed.
            OverflowError: *priority* does not fit in 32 bits.
        """
        if not _INT32_MIN <= priority <= _INT32_MAX:
            raise OverflowError(f"priority {priority} does not fit in 32 bits")
        return self._push(<int64_t>priority, fn, args, kwargs, future)

    cdef uint64_t _push(self, int64_t priority, object fn, object args, object kwargs, object future, int keep_seq=0, uint64_t seq=0) except? 0:
        cdef tl_entry e
        cdef int r
        e.priority = priority
        e.seq = seq
        e.fn = <void *>fn
        e.args = <void *>args
        e.kwargs = <void *>kwargs if kwargs else NULL
        e.future = <void *>future if future is not None else NULL
        e.enqueued_ns = tl_now_ns()
        Py_INCREF(fn)
        Py_INCREF(args)
        if e.kwargs != NULL:
            Py_INCREF(kwargs)
        if e.future != NULL:
            Py_INCREF(future)
        r = tl_queue_push_ex(&self.q, &e, keep_seq)
        if r != 0:
            _entry_release(&e)
            if r == -1:
                raise QueueClosed("queue is closed")
            raise MemoryError()
        return e.seq

    cdef int _pop_live(self, tl_entry *out, int64_t timeout_ns, uint64_t spin_ns, int64_t *idle_tokens) except -2:
        """1: popped into *out*; 0: timed out; -1: closed and empty.

        *idle_tokens* (may be NULL): a worker that finds nothing ready offers a
        token while it waits and takes one back when it wakes; a submitter
        that takes a token relies on a waiting worker instead of starting one.
        """
        cdef int r
        cdef uint64_t hint
        while True:
            # Holding the GIL already: take what is ready without giving it up.
            r = tl_queue_try_pop(&self.q, out)
            if not r:
                if idle_tokens != NULL:
                    tl_add64(idle_tokens, 1)
                with nogil:
                    tl_flush_completion()
                    r = tl_queue_pop_wait(&self.q, out, timeout_ns, spin_ns)
                    if r == 1 and spin_ns:
                        hint = tl_spin_budget(&tl_gil_hint_spin)
                        if hint:
                            tl_spin_outcome(&tl_gil_hint_spin, tl_wait_for_free_gil_hint(hint))
                if idle_tokens != NULL:
                    tl_take_token(idle_tokens)
                if r != 1:
                    return r
            if out.future != NULL and (<object>out.future)._state == _CANCELLED:
                # Lazy removal: CANCELLED never changes back, so the entry is dead.
                _set_running(<object>out.future, False)
                _entry_release(out)
                if self.counters_sink is not None:
                    tl_counter_add(self.counters_sink.c, C_CANCELLED, 1)
                else:
                    self.cancelled_skipped += 1
                continue
            return 1

    cdef object _entry_tuple(self, tl_entry *e):
        result = (
            e.priority,
            e.seq,
            <object>e.fn,
            <object>e.args,
            <object>e.kwargs if e.kwargs != NULL else None,
            <object>e.future if e.future != NULL else None,
        )
        _entry_release(e)
        return result

    def pop(self, timeout=None):
        """Remove and return the best entry as ``(priority, sequence, fn, args, kwargs, future)``.

        Blocks up to *timeout* seconds (forever if None); returns None on
        timeout.  Entries whose future was cancelled are skipped.

        Raises:
            QueueClosed: the queue is closed and empty.
        """
        cdef tl_entry e
        cdef int64_t timeout_ns = -1
        if timeout is not None:
            timeout_ns = <int64_t>(max(timeout, 0.0) * 1e9)
        r = self._pop_live(&e, timeout_ns, 0, NULL)
        if r == -1:
            raise QueueClosed("queue is closed")
        if r == 0:
            return None
        return self._entry_tuple(&e)

    def take_cancelled_skipped(self):
        """Return and reset how many cancelled entries pops have skipped."""
        n = self.cancelled_skipped
        self.cancelled_skipped = 0
        return n

    def close(self):
        """Refuse further pushes and wake every blocked pop."""
        with nogil:
            tl_queue_close(&self.q)

    def reopen(self):
        """Accept pushes again (used by a pool that is restarted)."""
        with nogil:
            tl_queue_reopen(&self.q)

    def drain(self):
        """Remove every entry and return them in pop order (cancelled ones too)."""
        cdef tl_entry *entries
        cdef size_t n, k
        out = []
        for i in range(self.q.nstripes):
            with nogil:
                n = tl_stripe_take_all(&self.q, i, &entries)
            for k in range(n):
                out.append(self._entry_tuple(&entries[k]))
            free(entries)
        out.sort(key=_drain_key)
        return out

    def purge_cancelled(self):
        """Remove entries whose future is cancelled now; return how many."""
        cdef tl_entry *entries
        cdef tl_entry *keep
        cdef size_t n, k, kept
        cdef list removed = []
        for i in range(self.q.nstripes):
            with nogil:
                n = tl_stripe_take_all(&self.q, i, &entries)
            if n == 0:
                free(entries)
                continue
            keep = <tl_entry *>malloc(n * sizeof(tl_entry))
            if keep is NULL:
                tl_stripe_put_back(&self.q, i, entries, n)
                free(entries)
                raise MemoryError()
            kept = 0
            for k in range(n):
                if entries[k].future != NULL and (<object>entries[k].future)._state in (
                    _CANCELLED, _CANCELLED_AND_NOTIFIED
                ):
                    removed.append(self._entry_tuple(&entries[k]))
                else:
                    keep[kept] = entries[k]
                    kept += 1
            # The taken entries are briefly invisible to pops: a pop in that
            # window may return a lower-priority entry of another stripe.
            # purge_cancelled is a maintenance call, not a hot path.
            if tl_stripe_put_back(&self.q, i, keep, kept) != 0:
                free(keep)
                free(entries)
                raise MemoryError()
            free(keep)
            free(entries)
        for entry in removed:
            _set_running(entry[5], False)
        return len(removed)

    def depth_by_priority(self):
        """Number of queued entries per priority (cancelled ones included)."""
        cdef size_t n, k
        cdef int64_t *priorities
        cdef tl_stripe *s
        depth = {}
        for i in range(self.q.nstripes):
            s = &self.q.stripes[i]
            # Copy under the lock, build Python objects after: an allocation
            # could run a finalizer that pushes to this very stripe.
            tl_stripe_lock(&self.q, i)
            n = s.len
            priorities = <int64_t *>malloc((n if n else 1) * sizeof(int64_t))
            if priorities is NULL:
                tl_stripe_unlock(&self.q, i)
                raise MemoryError()
            for k in range(n):
                priorities[k] = s.heap[k].priority
            tl_stripe_unlock(&self.q, i)
            for k in range(n):
                p = priorities[k]
                depth[p] = depth.get(p, 0) + 1
            free(priorities)
        return depth

    def _after_fork_in_child(self):
        tl_queue_after_fork(&self.q)


def _drain_key(entry):
    return (-entry[0], entry[1])


# --------------------------------------------------------------------------
# Dispatcher
# --------------------------------------------------------------------------

def _check_idle_timeout(value):
    if value is None:
        return None
    return check_seconds("idle_timeout", value, False)


cdef list _samples_list(tl_samples *s):
    cdef uint64_t n = (<uint64_t *>s)[0]
    cdef uint64_t *values = (<uint64_t *>s) + 1
    if n > TL_SAMPLES:
        n = TL_SAMPLES
    return [values[i] / 1e9 for i in range(n)]


@cython.final
cdef class Dispatcher:
    """One executor's queue, counters, worker gauges and worker loop.

    Worker threads are started by the executor through ``spawn`` (the
    dispatcher holds no reference to the executor, so that an unreferenced
    executor can be collected); each runs :meth:`run_worker` until the queue
    is closed and drained, or until it retires (idle past *idle_timeout* above
    *min_workers*, or above a lowered *max_workers*).
    """

    def __cinit__(self, max_workers, min_workers=0, idle_timeout=None, int stripes=4):
        self.queue = TaskQueue(stripes)
        self.counters = Counters()
        self.queue.counters_sink = self.counters
        self.spawn = None
        self._threads = 0
        self._busy = 0
        self._idle_tokens = 0
        self._max_workers = 1
        self._min_workers = 0
        self._spin_ns = WORKER_SPIN_NS
        self._wait = <tl_samples *>calloc(1, sizeof(tl_samples))
        self._run = <tl_samples *>calloc(1, sizeof(tl_samples))
        if self._wait is NULL or self._run is NULL:
            raise MemoryError()
        self.set_limits(max_workers, min_workers)
        self.idle_timeout = idle_timeout
        self._dead = {}
        self._retrying = set()
        self._closing = False
        self.reject = None

    def __dealloc__(self):
        free(self._wait)
        free(self._run)

    # -- configuration ---------------------------------------------------
    def set_limits(self, max_workers, min_workers=None):
        if min_workers is None:
            min_workers = min(self._min_workers, max_workers)
        if max_workers < 1:
            raise ValueError("max_workers must be greater than 0")
        if not 0 <= min_workers <= max_workers:
            raise ValueError(
                f"min_workers must be between 0 and max_workers ({max_workers}), not {min_workers}"
            )
        self._max_workers = max_workers
        self._min_workers = min_workers

    @property
    def max_workers(self):
        return self._max_workers

    @property
    def min_workers(self):
        return self._min_workers

    @property
    def idle_timeout(self):
        if self._idle_timeout_ns < 0:
            return None
        return self._idle_timeout_ns / 1e9

    @idle_timeout.setter
    def idle_timeout(self, value):
        value = _check_idle_timeout(value)
        self._idle_timeout_ns = -1 if value is None else <int64_t>(value * 1e9)

    @property
    def threads(self):
        return tl_load64(&self._threads)

    @property
    def busy(self):
        return tl_load64(&self._busy)

    # -- submission -------------------------------------------------------
    def submit(self, priority, fn, tuple args, dict kwargs):
        """Create a future, queue the call, count it; return the future.

        Raises:
            QueueClosed: the dispatcher was closed.
        """
        future = _new_future()
        self.queue._push(priority, fn, args, kwargs, future)
        tl_counter_add(self.counters.c, C_SUBMITTED, 1)
        if tl_load64(&self._threads) < self._max_workers and self._reserve(True):
            self._start_worker()
        return future

    # -- managed tasks (see _core_managed.pxi) ---------------------------------
    def submit_managed(
        self, fn, tuple args, dict kwargs, priority, name=None, retry=None, timeout=None,
        on_done=None, on_start=None, tag=None, bint run_in_caller=False, run_coroutine=None,
    ):
        """Queue a managed task; return its future (a task future).

        *timeout* (seconds, validated by the caller) arms a deadline before the
        task is queued, so that a task that ends at once never leaves a timer
        holding it.  With *run_in_caller* the first attempt runs on this thread.

        Raises:
            QueueClosed: the dispatcher was closed.
            OverflowError: *priority* does not fit in 32 bits.
        """
        if not _INT32_MIN <= priority <= _INT32_MAX:
            raise OverflowError(f"priority {priority} does not fit in 32 bits")
        return self._submit_managed(
            fn, args, kwargs, priority, name, retry, timeout, on_done, on_start, tag,
            run_in_caller, run_coroutine, -1,
        )

    cdef object _submit_managed(
        self, object fn, tuple args, dict kwargs, int64_t priority, object name, object retry,
        object timeout, object on_done, object on_start, object tag, bint run_in_caller,
        object run_coroutine, Py_ssize_t node,
    ):
        cdef ManagedTask task
        future = _new_managed(self, fn, args, kwargs, priority, name, retry, timeout, on_done, on_start, tag, node)
        task = <ManagedTask>future._task
        if timeout is not None:
            task._deadline_ns = tl_now_ns() + <uint64_t>(<double>timeout * 1e9)
            task._deadline_entry = _TIMERS.arm(task._deadline_ns, future, TK_DEADLINE)
        if type(on_done) is TaskRegistry:
            # Known to its registry before it can end.
            (<TaskRegistry>on_done)._add(task, future)
        tl_counter_add(self.counters.c, C_SUBMITTED, 1)
        if run_in_caller:
            task._run(future, run_coroutine)
            return future
        try:
            task._sequence = self.queue._push(task._priority, task, _EMPTY_ARGS, None, future)
        except BaseException:
            if task._deadline_entry is not None:
                _TIMERS.disarm(task._deadline_entry)
                task._deadline_entry = None
            tl_counter_add(self.counters.c, C_SUBMITTED, <uint64_t>-1)
            if type(on_done) is TaskRegistry:
                (<TaskRegistry>on_done)._forget(task)
            raise
        self._after_push()
        return future

    cdef void _after_push(self) except *:
        if tl_load64(&self._threads) < self._max_workers and self._reserve(True):
            self._start_worker()

    cdef void _dead_added(self, int64_t priority) except *:
        with cython.critical_section(self):
            self._dead[priority] = self._dead.get(priority, 0) + 1

    cdef void _dead_popped(self, int64_t priority) except *:
        with cython.critical_section(self):
            left = self._dead.get(priority, 0) - 1
            if left:
                self._dead[priority] = left
            else:
                self._dead.pop(priority, None)

    def dead_entries(self):
        """Queue entries of managed tasks that ended while queued, by priority."""
        with cython.critical_section(self):
            return dict(self._dead)

    cdef bint _hold_retry(self, object future) except -1:
        with cython.critical_section(self):
            if self._closing:
                return False
            self._retrying.add(future)
            return True

    cdef void _release_retry(self, object future) except *:
        with cython.critical_section(self):
            self._retrying.discard(future)

    def begin_close(self):
        """No retry waits for a timer from now on; return the futures of those waiting."""
        with cython.critical_section(self):
            self._closing = True
            waiting = list(self._retrying)
            self._retrying.clear()
        return waiting

    cdef object _rejection(self):
        reject = self.reject
        if reject is None:
            return QueueClosed("queue is closed")
        return reject()

    cdef _start_worker(self):
        spawn = self.spawn
        if spawn is None:
            self.release_worker()
            return
        spawn()

    cdef bint _reserve(self, bint only_if_needed) noexcept:
        # A submitter that finds an idle token leaves its task to that waiting
        # worker; otherwise it starts a worker (below max_workers).  A worker
        # that pops work takes a token back, so tokens never outnumber the
        # waiting workers for long; a stale token can delay a spawn only until
        # a busy worker comes back to the queue, never strand work forever.
        cdef int64_t threads
        if only_if_needed and tl_take_token(&self._idle_tokens):
            return False
        while True:
            threads = tl_load64(&self._threads)
            if threads >= self._max_workers:
                return False
            if tl_cas64(&self._threads, threads, threads + 1):
                return True

    def reserve_worker(self):
        """Claim a slot for a new worker thread if queued work outnumbers idle ones.

        The caller must start a thread that calls :meth:`run_worker` when this
        returns True (or give the slot back with :meth:`release_worker`).
        """
        return self._reserve(True)

    def reserve_worker_unconditionally(self):
        """Claim a worker slot if below max_workers, whatever the queue holds."""
        return self._reserve(False)

    def release_worker(self):
        """Give back a slot whose thread could not be started."""
        tl_add64(&self._threads, -1)

    def close(self):
        self.queue.close()

    # -- the worker loop --------------------------------------------------
    cdef bint _retire(self, bint idle) noexcept:
        # Ordering argument: a retiring worker first gives up its slot, then
        # looks at the queue; a submitter first pushes, then looks at the
        # slots (_reserve).  Both sequentially consistent, so either the
        # submitter sees the slot gone (and starts a worker) or this worker
        # sees the push (and takes its slot back).  Never zero workers with
        # work queued.
        cdef int64_t threads
        while True:
            threads = tl_load64(&self._threads)
            if threads > self._max_workers:
                pass
            elif idle and threads > self._min_workers:
                pass
            else:
                return False
            if tl_cas64(&self._threads, threads, threads - 1):
                break
        if idle and tl_queue_size(&self.queue.q) > 0:
            while True:
                threads = tl_load64(&self._threads)
                if threads >= self._max_workers:
                    return True
                if tl_cas64(&self._threads, threads, threads + 1):
                    return False
        return True

    def run_worker(self, run_coroutine=None):
        """Run queued calls on this thread until closed and drained, or retired."""
        tl_worker_enter()
        try:
            self._worker_loop(run_coroutine)
        finally:
            tl_worker_leave()

    def _worker_loop(self, run_coroutine):
        cdef tl_entry e
        cdef int r
        while True:
            r = self.queue._pop_live(&e, self._idle_timeout_ns, self._spin_ns, &self._idle_tokens)
            if r == -1:
                tl_add64(&self._threads, -1)
                return
            if r == 0:
                if self._retire(True):
                    return
                continue
            self._run_entry(&e, run_coroutine)
            if tl_load64(&self._threads) > self._max_workers and self._retire(False):
                return

    cdef int _run_entry(self, tl_entry *e, object run_coroutine) except -1:
        cdef object fn = <object>e.fn
        cdef object args = <object>e.args
        cdef object kwargs = <object>e.kwargs if e.kwargs != NULL else None
        cdef object future = <object>e.future if e.future != NULL else None
        cdef uint64_t enqueued = e.enqueued_ns
        cdef uint64_t started
        cdef tl_counters *counters = self.counters.c
        _entry_release(e)  # the locals above now own the references
        if type(fn) is ManagedTask:
            tl_add64(&self._busy, 1)
            started = tl_now_ns()
            tl_samples_add(self._wait, started - enqueued if started > enqueued else 0)
            try:
                (<ManagedTask>fn)._run(future, run_coroutine)
            finally:
                tl_add64(&self._busy, -1)
                tl_samples_add(self._run, tl_now_ns() - started)
            return 0
        if future is not None:
            if not _set_running(future, False):
                tl_counter_add(counters, C_CANCELLED, 1)
                return 0
            tl_counter_add(counters, C_STARTED, 1)
        tl_add64(&self._busy, 1)
        started = tl_now_ns()
        tl_samples_add(self._wait, started - enqueued if started > enqueued else 0)
        try:
            if future is None:
                try:
                    if kwargs is not None:
                        result = fn(*args, **kwargs)
                    elif PyTuple_GET_SIZE(args) == 0:
                        result = fn()
                    else:
                        result = fn(*args)
                    if run_coroutine is not None and PyCoro_CheckExact(result):
                        run_coroutine(result)
                except BaseException:
                    LOGGER.exception("exception in threadloom internal call %r", fn)
                return 0
            try:
                if kwargs is not None:
                    result = fn(*args, **kwargs)
                elif PyTuple_GET_SIZE(args) == 0:
                    result = fn()
                else:
                    result = fn(*args)
                if run_coroutine is not None and PyCoro_CheckExact(result):
                    result = run_coroutine(result)
            except BaseException as exc:
                # Count before completing: whoever sees the future done sees the count.
                tl_counter_add(counters, C_FAILED, 1)
                try:
                    _finish(future, exc, True)
                except BaseException:
                    # A done-callback's SystemExit: logged, the worker goes on
                    # (see _complete_in_worker in _core_py.py).
                    LOGGER.critical("Exception in worker completing %r", future, exc_info=True)
            else:
                tl_counter_add(counters, C_COMPLETED, 1)
                try:
                    _finish(future, result, False)
                except BaseException:
                    LOGGER.critical("Exception in worker completing %r", future, exc_info=True)
        finally:
            tl_add64(&self._busy, -1)
            tl_samples_add(self._run, tl_now_ns() - started)
        return 0

    # -- introspection ----------------------------------------------------
    def wait_samples(self):
        return _samples_list(self._wait)

    def run_samples(self):
        return _samples_list(self._run)

    def _after_fork_in_child(self):
        self._threads = 0
        self._busy = 0
        self._idle_tokens = 0
        self.queue._after_fork_in_child()


# --------------------------------------------------------------------------
# map() chunks
# --------------------------------------------------------------------------

def run_chunk(fn, list items, Py_ssize_t start, Py_ssize_t stop, bint star, run_coroutine):
    """Call *fn* on ``items[start:stop]``; return the results and the error that ended it."""
    cdef list results = []
    cdef Py_ssize_t index
    cdef Py_ssize_t end = min(stop, len(items))
    try:
        for index in range(start, end):
            if star:
                result = fn(*items[index])
            else:
                result = fn(items[index])
            if run_coroutine is not None and PyCoro_CheckExact(result):
                result = run_coroutine(result)
            results.append(result)
    except BaseException as exc:
        return results, exc
    return results, None


@cython.final
cdef class ResultDrain:
    """Iterates a list, clearing each slot as its value is handed over.

    ``map()`` yields a chunk's results through it, so that a result the
    consumer drops is freed at once (bpo-14406), without a Python frame per
    item.
    """

    cdef list _items
    cdef Py_ssize_t _next

    def __cinit__(self, list items):
        self._items = items
        self._next = 0

    def __iter__(self):
        return self

    def __next__(self):
        cdef list items = self._items
        if self._next >= len(items):
            del items[:]
            raise StopIteration
        value = items[self._next]
        items[self._next] = None
        self._next += 1
        return value


include "_core_managed.pxi"
include "_core_sqlite.pxi"
