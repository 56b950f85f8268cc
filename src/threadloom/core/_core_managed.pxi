# Included by _core.pyx: managed tasks, the timer heap and task registries.
#
# A managed task is one queue entry ``(priority, sequence, task, (), NULL,
# future)`` whose worker step is ``ManagedTask._run``: one attempt, then the
# decision (complete, fail, cancel, or retry after a delay).  Its status is a
# C int changed only by ``_transition``-style sections that run no Python code
# between reading and writing it, so under the GIL each is atomic; free-
# threaded builds wrap them in a critical section on the task.  Whoever moves
# the status to a terminal value owns the completion of the future, which is
# therefore resolved exactly once.  The task never references its future (the
# future references the task), so a finished task is freed by reference
# counting, never left to the cyclic GC.

from cpython.object cimport PyObject
from cpython.object cimport Py_TYPE

cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        const char *name
        int type
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef *d_member
    int T_OBJECT_EX
from threadloom._errors import TaskCancelled
from threadloom._types import TaskStatus
import heapq as _heapq

cdef object _heappush = _heapq.heappush
cdef object _heappop = _heapq.heappop
cdef object _heapify = _heapq.heapify
import time as _time
import types as _types
from collections import deque as _deque

cdef tuple _EMPTY_ARGS = ()
cdef object _task_future_type = None
cdef object _EMPTY_MAPPING = _types.MappingProxyType({})
cdef object time_time = _time.time
cdef object time_monotonic = _time.monotonic
# Wall-clock seconds = monotonic ns / 1e9 + this (fixed at import).
cdef double _WALL_OFFSET = _time.time() - <double>tl_now_ns() / 1e9


cdef inline double _wall(uint64_t ns):
    return <double>ns / 1e9 + _WALL_OFFSET

cdef extern from *:
    """
    /* The managed task running on this thread (borrowed: the worker running
     * it holds a reference for as long as it is set). */
    #if defined(_MSC_VER)
    static __declspec(thread) PyObject *tl_current_task = NULL;
    #else
    static _Thread_local PyObject *tl_current_task = NULL;
    #endif
    static inline PyObject *tl_current_task_get(void) { return tl_current_task; }
    static inline void tl_current_task_set(PyObject *o) { tl_current_task = o; }
    """
    PyObject *tl_current_task_get()
    void tl_current_task_set(PyObject *o)


cdef enum:
    ST_QUEUED = 1
    ST_RUNNING = 2
    ST_RETRYING = 3
    ST_COMPLETED = 4
    ST_FAILED = 5
    ST_CANCELLED = 6
    ST_TIMED_OUT = 7

cdef tuple _STATUS = (
    None,
    TaskStatus.QUEUED,
    TaskStatus.RUNNING,
    TaskStatus.RETRYING,
    TaskStatus.COMPLETED,
    TaskStatus.FAILED,
    TaskStatus.CANCELLED,
    TaskStatus.TIMED_OUT,
)

# Counter indexes not in _core.pyx's enum.
cdef enum:
    C_RETRIED = 5
    C_TIMED_OUT = 6

# Timer kinds.
cdef enum:
    TK_DEADLINE = 0
    TK_RETRY = 1
    TK_CALL = 2

# Above every user priority (those fit in 32 bits): the completions a timer
# hands to the pool run before any queued task.
cdef int64_t _INTERNAL_PRIORITY = (<int64_t>1) << 40

cdef int64_t _task_numbers = 0
# Validated durations stop here: threading.TIMEOUT_MAX is about 292 years on
# Linux and 49 days on Windows; every timer and wait must stay below it.
MAX_SECONDS = threading.TIMEOUT_MAX


def set_task_future_type(cls):
    """Tell the core which class to instantiate for managed tasks' futures."""
    global _task_future_type
    _task_future_type = cls


def current_task():
    """The running managed task's context (the task itself).

    Raises:
        RuntimeError: not called from inside a managed task.
    """
    cdef PyObject *task = tl_current_task_get()
    if task == NULL:
        raise RuntimeError(
            "current_task() called outside a managed threadloom task "
            "(submit through ThreadPoolExecutor.options() or ThreadPoolManager)"
        )
    return <object>task


def check_seconds(name, value, allow_zero=True):
    """Return *value* as float seconds, or raise naming *name* (same text in both cores)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, not {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, not {value!r}")
    if value > MAX_SECONDS:
        raise ValueError(f"{name} must be at most {MAX_SECONDS:.0f} seconds, not {value!r}")
    return float(value)


# --------------------------------------------------------------------------
# The timer heap
# --------------------------------------------------------------------------

# Not tracked by the cyclic GC (nor is ManagedTask): a task allocates these by
# the hundred thousand, and every tracked object is work for each collection.
# Safe because each cycle through them (task -> entry -> future -> task) is
# broken explicitly when the task ends or the timer fires or is disarmed.
@cython.final
@cython.no_gc
cdef class TimerEntry:
    cdef uint64_t due
    cdef uint64_t sequence
    cdef object target
    cdef int kind

    def __richcmp__(TimerEntry self, TimerEntry other, int op):
        if op != 0:
            return NotImplemented
        return self.due < other.due or (self.due == other.due and self.sequence < other.sequence)

@cython.final
cdef class TimerHeap:
    """One thread that fires deadlines, ends retry delays and runs short calls.

    Entries (due time, sequence, target, kind) are in a heap.  A
    disarmed entry has its target cleared at once (so it keeps nothing alive)
    and is dropped when it reaches the top; when disarmed entries are more
    than half the heap, the heap is rebuilt without them (as asyncio does), so
    it never grows with tasks that finished before their deadline.

    The thread only hands work over: a retry goes back into its pool's queue,
    a deadline ends its task and gives the future's callbacks to the pool.
    It sleeps (without the GIL) until the earliest due time, and an arm that
    becomes the new earliest wakes it.
    """

    cdef list _heap
    cdef uint64_t _sequence
    cdef Py_ssize_t _disarmed
    cdef object _thread
    cdef object _name
    cdef tl_mutex _mutex
    cdef tl_cond _cond
    cdef int64_t _sleep_until  # ns; 0: not sleeping; -1: sleeping with nothing due
    cdef int _signalled

    def __cinit__(self, name="threadloom-timers"):
        self._heap = []
        self._sequence = 0
        self._disarmed = 0
        self._thread = None
        self._name = name
        tl_mutex_init(&self._mutex)
        tl_cond_init(&self._cond)
        self._sleep_until = 0
        self._signalled = 0

    def __len__(self):
        return len(self._heap) - self._disarmed

    @property
    def heap_size(self):
        """Entries in the heap, disarmed ones included (for tests)."""
        return len(self._heap)

    cdef TimerEntry arm(self, uint64_t due_ns, object target, int kind):
        cdef TimerEntry entry = TimerEntry.__new__(TimerEntry)
        cdef int64_t sleeping
        cdef bint wake = False
        entry.due = due_ns
        entry.target = target
        entry.kind = kind
        with cython.critical_section(self):
            entry.sequence = self._sequence
            self._sequence += 1
            _heappush(self._heap, entry)
            if self._heap[0] is entry:
                sleeping = self._sleep_until
                wake = sleeping == -1 or (sleeping > 0 and <uint64_t>sleeping > due_ns)
        if self._thread is None:
            self._start()
        elif wake:
            # The thread published its wake-up time before it let go of the
            # GIL (and before it checks _signalled under the mutex): either it
            # sees this entry when it looks at the heap, or this signal.
            with nogil:
                tl_mutex_lock(&self._mutex)
                self._signalled = 1
                tl_cond_signal(&self._cond)
                tl_mutex_unlock(&self._mutex)
        return entry

    cdef void disarm(self, TimerEntry entry) noexcept:
        cdef TimerEntry e
        with cython.critical_section(self):
            if entry.target is None:
                return
            entry.target = None
            self._disarmed += 1
            if self._disarmed > 64 and self._disarmed * 2 > len(self._heap):
                self._heap = [e for e in self._heap if e.target is not None]
                _heapify(self._heap)
                self._disarmed = 0

    def call_later(self, delay, callback):
        """Run ``callback()`` on the timer thread after *delay* seconds; return a handle
        whose ``cancel()`` disarms it.  The callback must be quick and not block."""
        delay = check_seconds("delay", delay)
        entry = self.arm(tl_now_ns() + <uint64_t>(delay * 1e9), callback, TK_CALL)
        return TimerHandle(self, entry)

    cdef void _start(self) noexcept:
        with cython.critical_section(self):
            if self._thread is not None:
                return
            thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread = thread
        try:
            thread.start()
        except BaseException:
            self._thread = None
            LOGGER.exception("could not start the threadloom timer thread")

    cdef list _take_due(self, uint64_t now):
        """Pop the due entries; if none, publish when to wake (-1: never)."""
        cdef list fired = []
        cdef list heap
        cdef TimerEntry top
        with cython.critical_section(self):
            heap = self._heap
            self._sleep_until = -1
            while heap:
                top = heap[0]
                if top.target is None:
                    _heappop(heap)
                    self._disarmed -= 1
                elif top.due <= now:
                    _heappop(heap)
                    fired.append(top)
                else:
                    self._sleep_until = <int64_t>top.due
                    break
            if fired:
                # Not going to sleep: the loop looks at the heap again first.
                self._sleep_until = 0
        return fired

    def _run(self):
        cdef list fired
        cdef TimerEntry entry
        cdef int64_t until
        cdef uint64_t now
        while True:
            fired = self._take_due(tl_now_ns())
            if fired:
                for entry in fired:
                    with cython.critical_section(self):
                        target = entry.target
                        entry.target = None
                    if target is None:
                        continue
                    try:
                        self._fire(target, entry.kind)
                    except BaseException:
                        LOGGER.exception("threadloom timer %r failed", target)
                    target = None
                continue
            with nogil:
                tl_mutex_lock(&self._mutex)
                while not self._signalled:
                    until = self._sleep_until
                    if until == -1:
                        tl_cond_wait(&self._cond, &self._mutex)
                        continue
                    now = tl_now_ns()
                    if <uint64_t>until <= now:
                        break
                    # Bounded like threading's waits, whatever the due time.
                    tl_cond_timedwait_ns(&self._cond, &self._mutex, min(<uint64_t>until - now, <uint64_t>3600_000_000_000))
                self._signalled = 0
                tl_mutex_unlock(&self._mutex)

    cdef void _fire(self, object target, int kind) except *:
        cdef ManagedTask task
        if kind == TK_CALL:
            target()
            return
        task = <ManagedTask>(target._task)
        if kind == TK_DEADLINE:
            task._expire(target)
        else:
            task._retry_due(target)

    def _after_fork_in_child(self):
        tl_mutex_init(&self._mutex)
        tl_cond_init(&self._cond)
        self._thread = None
        self._sleep_until = 0
        self._signalled = 0
        if self._heap:
            self._start()


@cython.final
cdef class TimerHandle:
    """A call scheduled with :meth:`TimerHeap.call_later`."""

    cdef TimerHeap _timers
    cdef TimerEntry _entry

    def __cinit__(self, TimerHeap timers, TimerEntry entry):
        self._timers = timers
        self._entry = entry

    def cancel(self):
        self._timers.disarm(self._entry)

    @property
    def cancelled(self):
        return self._entry.target is None


cdef TimerHeap _TIMERS = TimerHeap()
TIMERS = _TIMERS


# --------------------------------------------------------------------------
# Managed tasks
# --------------------------------------------------------------------------

@cython.final
@cython.no_gc
cdef class ManagedTask:
    """One managed task: its options, status and attempts; also its context.

    The running task is what ``threadloom.current_task()`` returns: its
    :attr:`cancelled` flag, :meth:`check_cancelled`, :meth:`wait_cancelled`
    and :meth:`remaining` let it stop cooperatively (Python cannot stop a
    thread from outside).
    """

    cdef readonly object fn
    cdef readonly object args
    cdef readonly object kwargs
    cdef readonly object name
    cdef readonly object retry
    cdef readonly object timeout
    cdef readonly int attempts
    # Monotonic nanoseconds (0: not yet); shown as wall-clock seconds through
    # one offset taken at import, which saves three clock reads per task.
    cdef uint64_t _submitted_ns
    cdef uint64_t _started_ns
    cdef uint64_t _finished_ns
    cdef int64_t _priority
    cdef uint64_t _number
    cdef uint64_t _sequence
    cdef uint64_t _deadline_ns
    cdef int _status
    cdef bint _cancel_requested
    cdef bint _counted_dead
    cdef object _cancel_event
    cdef TimerEntry _deadline_entry
    cdef TimerEntry _retry_entry
    cdef Dispatcher _dispatch
    cdef object on_done
    cdef object on_start
    cdef object _upstream
    #: Its node in a graph run (on_done is then the GraphRunner), else -1.
    cdef Py_ssize_t _node
    #: The owner's data about this task (a TaskManager's run record).
    cdef public object tag
    cdef object __weakref__

    def __init__(self):
        raise TypeError("ManagedTask is created by ThreadPoolExecutor.options(...).submit")

    # -- what the task can know about itself --------------------------------
    @property
    def task_id(self):
        return f"task-{self._number}"

    @property
    def priority(self):
        return self._priority

    @property
    def number(self):
        """The task's number (its id is ``f"task-{number}"``)."""
        return self._number

    @property
    def status(self):
        return _STATUS[self._status]

    @property
    def attempt(self):
        """The 1-based number of the attempt running (or last run)."""
        return self.attempts

    @property
    def submitted_at(self):
        """When the task was submitted (``time.time()`` seconds)."""
        return _wall(self._submitted_ns)

    @property
    def started_at(self):
        """When its first attempt started, or None."""
        return _wall(self._started_ns) if self._started_ns else None

    @property
    def finished_at(self):
        """When it ended, or None."""
        return _wall(self._finished_ns) if self._finished_ns else None

    @property
    def deadline(self):
        """The deadline on the ``time.monotonic()`` clock, or None."""
        if not self._deadline_ns:
            return None
        return self._deadline_ns / 1e9

    @property
    def cancelled(self):
        """True once cancellation was requested (cancel, deadline, shutdown)."""
        return self._cancel_requested

    def check_cancelled(self):
        """Raise :class:`TaskCancelled` if cancellation was requested."""
        if self._cancel_requested:
            raise TaskCancelled(f"task {self.name or self.task_id} was cancelled")

    def wait_cancelled(self, timeout=None):
        """Sleep up to *timeout* seconds, waking early if cancelled; return :attr:`cancelled`."""
        event = self._cancel_event
        if event is None:
            fresh = threading.Event()
            with cython.critical_section(self):
                if self._cancel_event is None:
                    self._cancel_event = fresh
                event = self._cancel_event
            # _request_cancel sets the flag, then reads the event; here the
            # event is installed, then the flag read: one sees the other.
            if self._cancel_requested:
                event.set()
        return event.wait(timeout)

    def remaining(self):
        """Seconds left before the deadline, or None without one."""
        if not self._deadline_ns:
            return None
        return (<double>self._deadline_ns - <double>tl_now_ns()) / 1e9

    cdef void _request_cancel(self) noexcept:
        self._cancel_requested = True
        event = self._cancel_event
        if event is not None:
            try:
                event.set()
            except BaseException:
                pass

    @property
    def upstream_results(self):
        """Results of the task's dependencies that completed, by name (in a task graph)."""
        upstream = self._upstream
        if upstream is None:
            if self._node >= 0 and type(self.on_done) is GraphRunner:
                upstream = (<GraphRunner>self.on_done)._upstream_of(self._node)
            else:
                upstream = _EMPTY_MAPPING
            self._upstream = upstream
        return upstream

    @upstream_results.setter
    def upstream_results(self, value):
        self._upstream = value

    def __repr__(self):
        return f"<ManagedTask {self.task_id} name={self.name!r} status={self.status.value}>"

    # -- one attempt, on a worker -------------------------------------------
    cdef int _run(self, object future, object run_coroutine) except -1:
        # An attempt that fails while the pool is closing is retried at once,
        # here: no timer may fire into a closed queue.
        while self._attempt(future, run_coroutine) == 1:
            pass
        return 0

    cdef int _attempt(self, object future, object run_coroutine) except -1:
        cdef bint first
        cdef bint failed = False
        cdef object outcome = None
        cdef PyObject *previous
        cdef int ending = 0
        cdef int was
        cdef Dispatcher dispatch = self._dispatch
        with cython.critical_section(self):
            was = self._status
            if was == ST_QUEUED:
                self._status = ST_RUNNING
                self.attempts += 1
        if was != ST_QUEUED:
            # Cancelled or timed out while queued: this entry is dead.
            if self._counted_dead:
                self._counted_dead = False
                dispatch._dead_popped(self._priority)
            return 0
        first = self.attempts == 1
        if first:
            self._started_ns = tl_now_ns()
            _set_running(future, False)
            tl_counter_add(dispatch.counters.c, C_STARTED, 1)
        if self.on_start is not None:
            try:
                self.on_start(self, future)
            except BaseException:
                LOGGER.exception("task-start hook failed for %s", self.task_id)
        previous = tl_current_task_get()
        tl_current_task_set(<PyObject *>self)
        try:
            kwargs = self.kwargs
            if kwargs is not None:
                outcome = self.fn(*self.args, **kwargs)
            else:
                outcome = self.fn(*self.args)
            if run_coroutine is not None and PyCoro_CheckExact(outcome):
                outcome = run_coroutine(outcome)
        except BaseException as exc:
            outcome = exc
            failed = True
        finally:
            tl_current_task_set(previous)
        if not failed:
            ending = ST_COMPLETED
        elif isinstance(outcome, TaskCancelled) and self._cancel_requested:
            ending = ST_CANCELLED
        elif self.retry is not None and self._should_retry(outcome):
            outcome = None
            return self._schedule_retry(future)
        else:
            ending = ST_FAILED
        with cython.critical_section(self):
            if self._status != ST_RUNNING:
                # The deadline (or a cancel) ended the task meanwhile.
                return 0
            self._status = ending
        if ending == ST_COMPLETED:
            tl_counter_add(dispatch.counters.c, C_COMPLETED, 1)
            self._finish(future, outcome, False, False)
        elif ending == ST_FAILED:
            tl_counter_add(dispatch.counters.c, C_FAILED, 1)
            self._finish(future, outcome, True, False)
        else:
            tl_counter_add(dispatch.counters.c, C_CANCELLED, 1)
            self._finish(future, None, True, True)
        return 0

    cdef bint _should_retry(self, object error) except -1:
        try:
            return bool(self.retry.should_retry(error, self.attempts))
        except BaseException:
            LOGGER.exception("retry policy of %s failed; not retrying", self.task_id)
            return False

    cdef int _schedule_retry(self, object future) except -1:
        """RETRYING, then a timer (0) or, if the pool is closing, QUEUED to run now (1)."""
        cdef Dispatcher dispatch = self._dispatch
        cdef double delay
        try:
            delay = self.retry.delay_for(self.attempts)
            if not 0.0 <= delay <= MAX_SECONDS:
                raise ValueError(f"retry delay {delay!r} out of range")
        except BaseException:
            LOGGER.exception("retry policy of %s gave no usable delay; retrying now", self.task_id)
            delay = 0.0
        with cython.critical_section(self):
            if self._status != ST_RUNNING:
                return 0
            self._status = ST_RETRYING
        tl_counter_add(dispatch.counters.c, C_RETRIED, 1)
        if not dispatch._hold_retry(future):
            # Closing: the retry runs now, on this worker.
            with cython.critical_section(self):
                if self._status != ST_RETRYING:
                    return 0
                self._status = ST_QUEUED
            return 1
        if delay > 0:
            # Armed after the status change: the timer may fire at once.  A
            # requeue_now() (shutdown) may also run before the entry is kept
            # here: then the entry is not needed any more.
            entry = _TIMERS.arm(tl_now_ns() + <uint64_t>(delay * 1e9), future, TK_RETRY)
            with cython.critical_section(self):
                if self._status == ST_RETRYING and self._retry_entry is None:
                    self._retry_entry = entry
                    entry = None
            if entry is not None:
                _TIMERS.disarm(entry)
            return 0
        if self._admitted(future):
            dispatch._release_retry(future)
            self._requeue(future)
        return 0

    cdef void _retry_due(self, object future) except *:
        # On the timer thread.
        self._retry_entry = None
        if self._admitted(future):
            self._dispatch._release_retry(future)
            self._requeue(future)

    cdef bint _admitted(self, object future) except -1:
        # The owner's registry may hold a retry back (a full queue): the task
        # stays RETRYING until the owner calls requeue_now().
        on_done = self.on_done
        if type(on_done) is not TaskRegistry:
            return True
        hook = (<TaskRegistry>on_done).on_requeue
        if hook is None:
            return True
        try:
            return bool(hook(self, future))
        except BaseException:
            LOGGER.exception("requeue hook failed for %s; requeued anyway", self.task_id)
            return True

    def requeue_now(self, future):
        """A task waiting for its retry delay goes back into the queue at once (shutdown)."""
        cdef TimerEntry entry
        with cython.critical_section(self):
            if self._status != ST_RETRYING:
                return False
            entry = self._retry_entry
            self._retry_entry = None
        if entry is not None:
            _TIMERS.disarm(entry)
        self._dispatch._release_retry(future)
        self._requeue(future)
        return True

    cdef void _requeue(self, object future) except *:
        cdef Dispatcher dispatch = self._dispatch
        with cython.critical_section(self):
            if self._status != ST_RETRYING:
                return
            self._status = ST_QUEUED
        try:
            # Its original sequence number: a retry whose delay is over does
            # not wait behind everything submitted after it.
            dispatch.queue._push(self._priority, self, _EMPTY_ARGS, None, future, 1, self._sequence)
            dispatch._after_push()
        except QueueClosed:
            self._end_from_queue(future, ST_FAILED, dispatch._rejection())

    # -- ending early ----------------------------------------------------------
    cdef void _expire(self, object future) except *:
        # On the timer thread: the deadline passed.
        cdef int was
        self._deadline_entry = None
        with cython.critical_section(self):
            was = self._status
            if was == ST_QUEUED or was == ST_RUNNING or was == ST_RETRYING:
                self._status = ST_TIMED_OUT
                if was == ST_QUEUED:
                    self._counted_dead = True
        if not (was == ST_QUEUED or was == ST_RUNNING or was == ST_RETRYING):
            return
        error = FutureTimeoutError(
            f"task {self.name or self.task_id} did not finish within {self.timeout} s"
        )
        self._end_early(future, was, C_TIMED_OUT, error, False, True)

    def cancel(self, future):
        """Cancel: at once if queued or waiting to retry (True); if running,
        request cooperative cancellation and return False."""
        cdef int was
        with cython.critical_section(self):
            was = self._status
            if was == ST_QUEUED or was == ST_RETRYING:
                self._status = ST_CANCELLED
                if was == ST_QUEUED:
                    self._counted_dead = True
        if was == ST_RUNNING:
            self._request_cancel()
            return False
        if not (was == ST_QUEUED or was == ST_RETRYING):
            return was == ST_CANCELLED
        self._end_early(future, was, C_CANCELLED, None, True, False)
        return True

    cdef void _end_early(self, object future, int was, int counter, object error, bint cancel, bint defer) except *:
        cdef Dispatcher dispatch = self._dispatch
        cdef TimerEntry entry = self._retry_entry
        if entry is not None:
            self._retry_entry = None
            _TIMERS.disarm(entry)
        if was == ST_RETRYING:
            # Also when its timer entry was not kept yet (see _schedule_retry).
            dispatch._release_retry(future)
        if was == ST_QUEUED:
            dispatch._dead_added(self._priority)
        self._request_cancel()
        tl_counter_add(dispatch.counters.c, counter, 1)
        self._finish(future, error, True, cancel, defer)

    def cancel_from_queue(self, future):
        """The queue was drained (shutdown with cancel_futures): cancel."""
        self._end_from_queue(future, ST_CANCELLED, None)

    def fail_from_queue(self, future, error):
        """The pool broke with this task queued: fail it with *error*."""
        self._end_from_queue(future, ST_FAILED, error)

    cdef void _end_from_queue(self, object future, int status, object error) except *:
        # The task's entry was taken out of the queue without being run.
        cdef int was
        cdef Dispatcher dispatch = self._dispatch
        with cython.critical_section(self):
            was = self._status
            if was == ST_QUEUED:
                self._status = status
        if was != ST_QUEUED:
            if self._counted_dead:
                self._counted_dead = False
                dispatch._dead_popped(self._priority)
            return
        if status == ST_CANCELLED:
            self._request_cancel()
            tl_counter_add(dispatch.counters.c, C_CANCELLED, 1)
            self._finish(future, None, True, True)
        else:
            tl_counter_add(dispatch.counters.c, C_FAILED, 1)
            self._finish(future, error, True, False)

    # -- the one completion ------------------------------------------------------
    cdef void _finish(self, object future, object value, bint is_exception, bint cancel, bint defer=False) except *:
        """Complete *future* (this thread made the status terminal, so it owns this)."""
        cdef TimerEntry entry = self._deadline_entry
        if entry is not None:
            self._deadline_entry = None
            _TIMERS.disarm(entry)
        self._finished_ns = tl_now_ns()
        # What the task ran is not needed any more; a kept record (a pool's
        # task table) must not keep the arguments alive.
        self.fn = None
        self.args = _EMPTY_ARGS
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
                    _INTERNAL_PRIORITY, _run_deferred, (self, future, callbacks), None, None, 0, 0
                )
                self._dispatch._after_push()
                return
            except QueueClosed:
                pass
        _run_completion(self, future, callbacks)




cdef void _run_completion(ManagedTask task, object future, object callbacks) except *:
    try:
        _invoke_callbacks(future, callbacks)
    except BaseException:
        # A callback's SystemExit must not skip the owner's hook (an execution
        # would never learn that its task ended): logged as a worker does.
        LOGGER.critical("Exception in a done-callback of %r", future, exc_info=True)
    on_done = task.on_done
    # The task is not tracked by the cyclic GC: nothing it references after
    # its end may lead back to it (an owner's hook holds the owner's table,
    # which holds the task's future).
    task.on_done = None
    task.on_start = None
    if on_done is not None:
        try:
            if type(on_done) is GraphRunner:
                (<GraphRunner>on_done)._node_done(task, future)
            elif type(on_done) is TaskRegistry:
                (<TaskRegistry>on_done)._task_done(task, future)
            else:
                on_done(task, future)
        except BaseException:
            LOGGER.exception("task-done hook failed for %s", task.task_id)
    task.tag = None


def _run_deferred(task, future, callbacks):
    _run_completion(<ManagedTask>task, future, callbacks)


cdef object _complete(object future, object value, bint is_exception, bint defer):
    """FINISHED with *value*; notify waiters; return the callbacks if *defer*, else run them.

    The state is written and reported to the waiters in one hold of the
    future's condition, if it has one (the ordering of _finish in _core.pyx).
    """
    cdef object state
    cdef object condition
    cdef object callbacks = None
    cdef bint done = False
    condition = _lock_transition(future)
    try:
        try:
            state = future._state
            if not (state == _FINISHED or state == _CANCELLED or state == _CANCELLED_AND_NOTIFIED):
                if is_exception:
                    future._exception = value
                else:
                    future._result = value
                future._state = _FINISHED
                callbacks = future._tl_callbacks
                done = True
        finally:
            tl_future_unlock(future)
        if done:
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
    if not done or defer:
        return callbacks
    _invoke_callbacks(future, callbacks)
    return None


cdef object _cancel_notified(object future, bint defer):
    """CANCELLED_AND_NOTIFIED at once (a managed task is never left CANCELLED)."""
    cdef object state
    cdef object condition
    cdef object callbacks = None
    cdef bint done = False
    condition = _lock_transition(future)
    try:
        try:
            state = future._state
            if not (state == _FINISHED or state == _CANCELLED or state == _CANCELLED_AND_NOTIFIED):
                future._state = _CANCELLED_AND_NOTIFIED
                callbacks = future._tl_callbacks
                done = True
        finally:
            tl_future_unlock(future)
        if done:
            tl_completion_signal()
            if condition is not None:
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


cdef object _new_managed(
    Dispatcher dispatch, object fn, object args, object kwargs, int64_t priority,
    object name, object retry, object timeout, object on_done, object on_start, object tag,
    Py_ssize_t node,
):
    cdef ManagedTask task = ManagedTask.__new__(ManagedTask)
    if _task_future_type is None:
        raise RuntimeError("threadloom core used before set_task_future_type()")
    future = tl_new_instance(_task_future_type)
    future._task = task
    task.fn = fn
    task.args = args
    task.kwargs = kwargs if kwargs else None
    task._priority = priority
    task.name = name
    task.retry = retry
    task.timeout = timeout
    task.on_done = on_done
    task.on_start = on_start
    task.tag = tag
    task._node = node
    task._status = ST_QUEUED
    task._dispatch = dispatch
    task._submitted_ns = tl_now_ns()
    task._number = <uint64_t>tl_add64(&_task_numbers, 1)
    return future


# --------------------------------------------------------------------------
# Task registries (ThreadPoolManager's table of tasks by id)
# --------------------------------------------------------------------------

@cython.final
cdef class TaskRegistry:
    """Futures of managed tasks by task id, finished ones kept for a bounded
    count and time; counts unfinished tasks and wakes ``wait_all``.

    Used as a task's done-hook: ends are recorded natively, without a lock
    (each step runs no Python code, so under the GIL it is atomic; free-
    threaded builds take a critical section).
    """

    cdef dict _futures
    # Finished tasks, oldest first: two deques of ints (end time in monotonic
    # ns, task number) rather than one of tuples, which the GC would track.
    cdef object _finished_ns
    cdef object _finished_numbers
    cdef Py_ssize_t keep_finished
    cdef uint64_t keep_ns
    cdef int64_t _unfinished
    cdef double _run_total
    cdef double _run_max
    cdef double _run_min
    cdef int64_t _run_count
    cdef object _all_done   # threading.Condition, made when someone waits
    cdef int64_t _waiters
    cdef public object on_task_done   # an extra Python hook (events), or None
    #: ``on_requeue(task, future) -> bool``: False holds a due retry back
    #: (RETRYING) until the owner calls ``task.requeue_now(future)``.
    cdef public object on_requeue

    def __cinit__(self, keep_finished, keep_seconds):
        self._futures = {}
        self._finished_ns = _deque()
        self._finished_numbers = _deque()
        self.keep_finished = keep_finished
        self.keep_ns = <uint64_t>(keep_seconds * 1e9)
        self._unfinished = 0
        self._run_total = 0.0
        self._run_max = 0.0
        self._run_min = float("inf")
        self._run_count = 0
        self._all_done = threading.Condition(threading.Lock())
        self._waiters = 0
        self.on_task_done = None
        self.on_requeue = None

    cdef void _add(self, ManagedTask task, object future) except *:
        with cython.critical_section(self):
            self._futures[task._number] = future
            self._unfinished += 1

    cdef void _forget(self, ManagedTask task) except *:
        # Undoes _add for a task refused before it was queued.
        with cython.critical_section(self):
            if self._futures.pop(task._number, None) is not None:
                self._unfinished -= 1
        self._notify_if_idle()

    def submit(self, Dispatcher dispatch, fn, tuple args, dict kwargs, priority, retry):
        """Queue a managed task known to this registry; return its id ("task-N").

        ``ThreadPoolManager.submit``'s fast path: one call into the core.

        Raises:
            QueueClosed: the dispatcher was closed.
        """
        if not _INT32_MIN <= priority <= _INT32_MAX:
            raise OverflowError(f"priority {priority} does not fit in 32 bits")
        future = dispatch._submit_managed(
            fn, args, kwargs, priority, None, retry, None, self, None, None, False, None, -1
        )
        return f"task-{(<ManagedTask>future._task)._number}"

    def get(self, task_id):
        """The future of task *task_id* ("task-N"), or None if unknown or pruned."""
        if type(task_id) is not str or not task_id.startswith("task-"):
            return None
        try:
            number = int(task_id[5:])
        except ValueError:
            return None
        return self._futures.get(number)

    def ids(self):
        with cython.critical_section(self):
            return [f"task-{number}" for number in self._futures]

    def futures(self):
        with cython.critical_section(self):
            return list(self._futures.values())

    def __len__(self):
        return len(self._futures)

    @property
    def unfinished(self):
        return self._unfinished

    def run_times(self):
        """(count, total, max, min) of the finished tasks' run times (seconds)."""
        with cython.critical_section(self):
            return self._run_count, self._run_total, self._run_max, self._run_min

    cdef void _task_done(self, ManagedTask task, object future) except *:
        # The extra hook (events, admission slots) runs before the task stops
        # counting as unfinished: whoever wait_all() releases then also sees
        # the task's task_finished event emitted.
        hook = self.on_task_done
        try:
            if hook is not None:
                hook(task, future)
        finally:
            self._count_finished(task)

    cdef void _count_finished(self, ManagedTask task) except *:
        cdef double elapsed
        cdef uint64_t now = tl_now_ns()
        cdef object ends = self._finished_ns
        cdef object numbers = self._finished_numbers
        with cython.critical_section(self):
            if task._started_ns:
                elapsed = (<double>task._finished_ns - <double>task._started_ns) / 1e9
                if elapsed < 0:
                    elapsed = 0.0
                self._run_total += elapsed
                self._run_count += 1
                if elapsed > self._run_max:
                    self._run_max = elapsed
                if elapsed < self._run_min:
                    self._run_min = elapsed
            self._unfinished -= 1
            ends.append(now)
            numbers.append(task._number)
            while numbers and (
                len(numbers) > self.keep_finished or <uint64_t>ends[0] + self.keep_ns < now
            ):
                ends.popleft()
                self._futures.pop(numbers.popleft(), None)
        if self._unfinished == 0 and self._waiters:
            self._notify_if_idle()

    def __call__(self, task, future):
        self._task_done(task, future)

    cdef void _notify_if_idle(self) except *:
        condition = self._all_done
        with condition:
            if self._unfinished == 0:
                condition.notify_all()

    def wait_all(self, timeout=None):
        """Wait until no task is unfinished; True if none is."""
        cdef double deadline = 0.0
        if timeout is not None:
            deadline = time_monotonic() + timeout
        condition = self._all_done
        with condition:
            tl_add64(&self._waiters, 1)
            try:
                # Ordering: this thread counts itself a waiter, then reads
                # _unfinished (under the condition); a finishing task lowers
                # _unfinished, then reads _waiters and notifies under the
                # condition.  One of the two sees the other's write.
                while self._unfinished > 0:
                    if timeout is None:
                        condition.wait()
                    else:
                        left = deadline - time_monotonic()
                        if left <= 0:
                            return False
                        condition.wait(left)
            finally:
                tl_add64(&self._waiters, -1)
        return True




# --------------------------------------------------------------------------
# The options view's submit (ThreadPoolExecutor.options(...).submit)
# --------------------------------------------------------------------------

cdef class SubmitView:
    """The native half of ``SubmitOptions``: options checked once, submit in C."""

    cdef Dispatcher _dispatch
    cdef int64_t _priority
    cdef readonly object name
    cdef readonly object retry
    cdef readonly object timeout
    cdef readonly bint managed

    def __cinit__(self, Dispatcher dispatch, priority, name, retry, timeout, *args, **kwargs):
        if not _INT32_MIN <= priority <= _INT32_MAX:
            raise OverflowError(f"priority {priority} does not fit in 32 bits")
        self._dispatch = dispatch
        self._priority = priority
        self.name = name
        self.retry = retry
        self.timeout = timeout
        self.managed = name is not None or retry is not None or timeout is not None

    @property
    def priority(self):
        return self._priority

    def submit(self, fn, /, *args, **kwargs):
        """Like ``ThreadPoolExecutor.submit``, with this view's options.

        With a name, retry policy or timeout the future is a ``TaskFuture``
        and the function can call ``threadloom.current_task()``.
        """
        cdef Dispatcher dispatch = self._dispatch
        try:
            if not self.managed:
                return dispatch.submit(self._priority, fn, args, kwargs)
            return dispatch._submit_managed(
                fn, args, kwargs, self._priority, self.name, self.retry, self.timeout,
                None, None, None, False, None, -1,
            )
        except QueueClosed:
            raise dispatch._rejection() from None


# --------------------------------------------------------------------------
# ThreadPoolManager's hot methods
# --------------------------------------------------------------------------

cdef class PoolBase:
    """The native half of ``ThreadPoolManager``: ``submit`` and
    ``get_task_result`` in the common case (no queue limit, no resource
    monitor, no retry arguments) never leave the core."""

    #: The running executor's dispatcher when the fast path applies, else None.
    cdef public object _fast_dispatch
    cdef public TaskRegistry _registry
    cdef public object default_retry
    # The sample of submitted tasks reported to sampling subscribers (the
    # bus's ``max_task_rate``), drawn here: one Python call per submit would
    # cost a no-op task a third of its time.  Same policy as
    # EventBus.sample_task: a budget per tenth of a second.
    cdef double _sample_budget
    cdef uint64_t _sample_refill_ns
    cdef int _sample_skip

    cdef bint _sampled(self, object events) except -1:
        cdef uint64_t now
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
        now = tl_now_ns()
        if now < self._sample_refill_ns:
            return False
        self._sample_refill_ns = now + 100_000_000
        self._sample_budget = <double>rate * 0.1 - 1
        return True

    def submit(self, func, *args, priority=1, max_retries=0, retry_delay=1.0, **kwargs):
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
        cdef object dispatch = self._fast_dispatch
        cdef ManagedTask task
        events = self._events
        if events.active and self._sampled(events):
            # Someone follows this task: the Python path reports it.
            return self._submit_slow(func, args, kwargs, priority, max_retries, retry_delay, True)
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
                future = (<Dispatcher>dispatch)._submit_managed(
                    func, args, kwargs, priority, None, self.default_retry, None,
                    self._registry, None, None, False, None, -1,
                )
            except QueueClosed:
                raise self._rejection() from None
            task = <ManagedTask>future._task
            return f"task-{task._number}"
        return self._submit_slow(func, args, kwargs, priority, max_retries, retry_delay, False)

    def get_task_result(self, task_id, timeout=None):
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
            raise self._unknown_task(task_id)
        return future_result(future, timeout)


# --------------------------------------------------------------------------
# Task graphs: one execution of a dependency closure
# --------------------------------------------------------------------------

# Node states: waiting (undecided), launched (handed to the pool), then a
# terminal status.  Trigger rules as in threadloom._graph.TriggerRule.
cdef enum:
    NS_WAITING = 0
    NS_LAUNCHED = 1
    NS_COMPLETED = 2
    NS_FAILED = 3
    NS_CANCELLED = 4
    NS_TIMED_OUT = 5
    NS_SKIPPED = 6
    NS_UPSTREAM_FAILED = 7

cdef enum:
    RULE_ALL_SUCCESS = 0
    RULE_ALL_DONE = 1
    RULE_ONE_SUCCESS = 2
    RULE_ONE_FAILED = 3
    RULE_NONE_FAILED = 4

cdef tuple _NODE_STATUS = (
    TaskStatus.PENDING,
    TaskStatus.QUEUED,
    TaskStatus.COMPLETED,
    TaskStatus.FAILED,
    TaskStatus.CANCELLED,
    TaskStatus.TIMED_OUT,
    TaskStatus.SKIPPED,
    TaskStatus.UPSTREAM_FAILED,
)
cdef dict _RULE_CODES = {
    "all_success": RULE_ALL_SUCCESS,
    "all_done": RULE_ALL_DONE,
    "one_success": RULE_ONE_SUCCESS,
    "one_failed": RULE_ONE_FAILED,
    "none_failed": RULE_NONE_FAILED,
}


cdef inline int _rule_code(rule) except -1:
    if rule is None:
        return RULE_ALL_SUCCESS
    return <int>_RULE_CODES[str(rule.value) if hasattr(rule, "value") else str(rule)]


# The fields a graph runner reads from a node's task, by position.
cdef enum:
    F_TASK_ID = 0
    F_DEPENDENCIES = 1
    F_PRIORITY = 2
    F_TRIGGER_RULE = 3
    F_ENABLED = 4
    F_KWARGS = 5
    F_RESULTS_PARAM = 6
    F_MAX_RETRIES = 7
    F_RETRY = 8
    F_FUNC = 9
    F_ARGS = 10
    F_NAME = 11
    F_TIMEOUT = 12
    F_TAGS = 13
    F_COUNT = 14

cdef tuple _NODE_FIELDS = (
    "task_id", "dependencies", "priority", "trigger_rule", "enabled", "kwargs",
    "results_param", "max_retries", "retry", "func", "args", "name", "timeout", "tags",
)
cdef bint _node_slot_offsets(type cls, Py_ssize_t *offsets) except -1:
    """Fill *offsets* with where *cls* keeps each of _NODE_FIELDS; False where
    reading them there would not be what getattr() does (no plain object slot
    found first on the MRO, or a custom __getattribute__)."""
    cdef Py_ssize_t field
    if cls.__getattribute__ is not object.__getattribute__:
        return False
    mro = cls.__mro__
    for field in range(F_COUNT):
        name = _NODE_FIELDS[field]
        descriptor = None
        for klass in mro:
            descriptor = klass.__dict__.get(name)
            if descriptor is not None:
                break
        if (
            type(descriptor).__name__ != "member_descriptor"
            or (<PyMemberDescrObject *><PyObject *>descriptor).d_member.type != T_OBJECT_EX
        ):
            return False
        offsets[field] = (<PyMemberDescrObject *><PyObject *>descriptor).d_member.offset
    return True


cdef inline int _judge(int rule, int total, int succeeded, int failed, int skipped) noexcept:
    """threadloom._graph.judge: NS_LAUNCHED (run), NS_WAITING, NS_SKIPPED or NS_UPSTREAM_FAILED."""
    if rule == RULE_ONE_SUCCESS and succeeded:
        return NS_LAUNCHED
    if rule == RULE_ONE_FAILED and failed:
        return NS_LAUNCHED
    if succeeded + failed + skipped < total:
        return NS_WAITING
    if rule == RULE_ALL_DONE or total == 0:
        return NS_LAUNCHED
    if rule == RULE_ONE_FAILED:
        return NS_SKIPPED
    if failed:
        return NS_UPSTREAM_FAILED
    if rule == RULE_NONE_FAILED or (rule == RULE_ALL_SUCCESS and not skipped):
        return NS_LAUNCHED
    return NS_SKIPPED


def closure_order(dependencies, targets):
    """*targets* and everything they depend on, dependencies first, each once.

    *dependencies* maps a node to its dependencies and must be acyclic.  An
    iterative depth-first walk: chains of any depth are fine.

    Raises:
        KeyError: a target or dependency is not in *dependencies*.
    """
    # Three parallel stacks (node, its dependencies, how far they were walked);
    # no negative indexes: the module is compiled with wraparound off.
    cdef list order = []
    cdef set seen = set()
    cdef list stack_nodes = []
    cdef list stack_deps = []
    cdef list stack_pos = []
    cdef Py_ssize_t pos, top
    cdef tuple deps
    for target in targets:
        if target in seen:
            continue
        seen.add(target)
        stack_nodes.append(target)
        stack_deps.append(tuple(dependencies[target]))
        stack_pos.append(0)
        while stack_nodes:
            top = len(stack_nodes) - 1
            deps = <tuple>stack_deps[top]
            pos = <Py_ssize_t>stack_pos[top]
            while pos < len(deps) and deps[pos] in seen:
                pos += 1
            if pos < len(deps):
                dep = deps[pos]
                stack_pos[top] = pos + 1
                seen.add(dep)
                stack_nodes.append(dep)
                stack_deps.append(tuple(dependencies[dep]))
                stack_pos.append(0)
            else:
                order.append(stack_nodes.pop())
                stack_deps.pop()
                stack_pos.pop()
    return order


cdef Py_ssize_t REPORT_BATCH = 256
cdef uint64_t REPORT_DELAY_NS = 20_000_000


def _flush_runner_report(runner):
    (<GraphRunner>runner)._flush_report()


@cython.final
@cython.no_gc_clear
cdef class GraphRunner:
    """One execution of a task graph, run on a dispatcher.

    *tasks* are the graph's nodes, dependencies first (``closure_order``);
    each has ``task_id``, ``name``, ``func``, ``args``, ``kwargs``,
    ``dependencies`` (ids), ``priority``, ``max_retries``, ``retry``,
    ``timeout``, ``enabled``, ``trigger_rule`` and ``results_param`` (a
    TaskManager's TaskInfo).  A node runs at its priority raised to that of
    the highest-priority node waiting on it.

    The bookkeeping is a few flat C arrays (no object per node).  The worker
    that ends a node's task updates its dependents' counters and queues those
    that became ready at once: no hop through another thread.  Each update
    of the arrays runs no Python code, so under the GIL it is atomic (free-
    threaded builds take a critical section on the runner); launches and the
    owner's hooks run outside it.

    ``on_nodes_end(runner, indexes)`` is told of every node's end (run or
    not) exactly once, in batches: at most ``REPORT_BATCH`` at a time, at the
    latest ``REPORT_DELAY_NS`` after the end (a timer hands the report to the
    pool), and all of them before ``on_finished(runner)``, which is called
    once, after the last.  Neither may block.
    """

    cdef Dispatcher _dispatch
    cdef readonly Py_ssize_t size
    cdef list _tasks
    cdef list _results
    cdef list _errors
    cdef list _futures
    cdef int *_total
    cdef int *_succeeded
    cdef int *_failed
    cdef int *_skipped
    cdef int *_rules
    cdef int *_attempts
    cdef unsigned char *_state
    cdef unsigned char *_cancel
    cdef int64_t *_priority
    cdef uint64_t *_queued_ns
    cdef uint64_t *_started_ns
    cdef uint64_t *_finished_ns
    cdef Py_ssize_t *_first
    cdef Py_ssize_t *_dependents
    cdef Py_ssize_t *_dep_first
    cdef Py_ssize_t *_deps
    cdef Py_ssize_t _unfinished
    # Nodes whose end the owner has not been told yet: the execution finishes
    # only once every node-end hook has returned (a worker that ended a node
    # may still be reporting it when another ends the last one).
    cdef Py_ssize_t _unreported
    cdef list _pending_report
    cdef bint _report_armed
    cdef bint _cancel_all
    cdef bint _finished
    cdef bint _started
    cdef public object on_nodes_end
    cdef public object on_finished
    #: ``wrap(func, args, kwargs) -> (func, args, kwargs)`` applied at launch, or None.
    cdef public object call_wrapper
    # The nodes' tasks are read by slot offset where their type allows it
    # (a TaskManager's registered tasks: 14 fields a node, each a type and MRO
    # lookup through getattr()); _slot_type is NULL otherwise.
    cdef PyObject *_slot_type
    cdef Py_ssize_t _slot_offsets[14]

    cdef inline object _field(self, object task, int field):
        cdef PyObject *value
        if <PyObject *>Py_TYPE(task) == self._slot_type:
            value = (<PyObject **>((<char *><PyObject *>task) + self._slot_offsets[field]))[0]
            if value != NULL:
                return <object>value
        return getattr(task, <str>_NODE_FIELDS[field])

    def __cinit__(self, Dispatcher dispatch, list tasks):
        cdef Py_ssize_t n = len(tasks)
        cdef Py_ssize_t i, j, k, edges = 0
        cdef dict index = {}
        self._dispatch = dispatch
        self.size = n
        self._tasks = tasks
        self._results = [None] * n
        self._errors = [None] * n
        self._futures = [None] * n
        self._unfinished = n
        self._slot_type = NULL
        if n and _node_slot_offsets(type(tasks[0]), self._slot_offsets):
            # Borrowed: the tasks list holds instances, and they their type.
            self._slot_type = <PyObject *>Py_TYPE(tasks[0])
        for i in range(n):
            task = tasks[i]
            index[self._field(task, F_TASK_ID)] = i
            edges += len(self._field(task, F_DEPENDENCIES))
        self._total = <int *>calloc(n + 1, sizeof(int))
        self._succeeded = <int *>calloc(n + 1, sizeof(int))
        self._failed = <int *>calloc(n + 1, sizeof(int))
        self._skipped = <int *>calloc(n + 1, sizeof(int))
        self._rules = <int *>calloc(n + 1, sizeof(int))
        self._attempts = <int *>calloc(n + 1, sizeof(int))
        self._state = <unsigned char *>calloc(n + 1, 1)
        self._cancel = <unsigned char *>calloc(n + 1, 1)
        self._priority = <int64_t *>calloc(n + 1, sizeof(int64_t))
        self._queued_ns = <uint64_t *>calloc(n + 1, sizeof(uint64_t))
        self._started_ns = <uint64_t *>calloc(n + 1, sizeof(uint64_t))
        self._finished_ns = <uint64_t *>calloc(n + 1, sizeof(uint64_t))
        self._first = <Py_ssize_t *>calloc(n + 1, sizeof(Py_ssize_t))
        self._dependents = <Py_ssize_t *>calloc(edges + 1, sizeof(Py_ssize_t))
        self._dep_first = <Py_ssize_t *>calloc(n + 1, sizeof(Py_ssize_t))
        self._deps = <Py_ssize_t *>calloc(edges + 1, sizeof(Py_ssize_t))
        if (
            not self._total or not self._succeeded or not self._failed or not self._skipped
            or not self._rules or not self._attempts or not self._state or not self._cancel
            or not self._priority or not self._queued_ns or not self._started_ns
            or not self._finished_ns or not self._first or not self._dependents
            or not self._dep_first or not self._deps
        ):
            raise MemoryError()
        # Dependencies by index (CSR), and the fan-out of each node.
        k = 0
        last_rule = None
        cdef int last_code = RULE_ALL_SUCCESS
        for i in range(n):
            task = tasks[i]
            self._dep_first[i] = k
            for dep in self._field(task, F_DEPENDENCIES):
                j = <Py_ssize_t>index[dep]
                self._deps[k] = j
                self._first[j] += 1
                k += 1
            self._total[i] = <int>(k - self._dep_first[i])
            self._priority[i] = <int64_t>self._field(task, F_PRIORITY)
            rule = self._field(task, F_TRIGGER_RULE)
            if rule is not last_rule:
                last_code = _rule_code(rule)
                last_rule = rule
            self._rules[i] = last_code
        self._dep_first[n] = k
        # Dependents (CSR): turn the fan-out counts into offsets, then fill.
        cdef Py_ssize_t running = 0, count
        for i in range(n):
            count = self._first[i]
            self._first[i] = running
            running += count
        self._first[n] = running
        cdef Py_ssize_t *fill = <Py_ssize_t *>malloc((n + 1) * sizeof(Py_ssize_t))
        if fill == NULL:
            raise MemoryError()
        for i in range(n):
            fill[i] = self._first[i]
        for i in range(n):
            for k in range(self._dep_first[i], self._dep_first[i + 1]):
                j = self._deps[k]
                self._dependents[fill[j]] = i
                fill[j] += 1
        free(fill)
        # Priority inheritance: dependents come after their dependencies, so
        # walking backwards settles a node before it is pushed down.
        for i in range(n - 1, -1, -1):
            for k in range(self._dep_first[i], self._dep_first[i + 1]):
                j = self._deps[k]
                if self._priority[j] < self._priority[i]:
                    self._priority[j] = self._priority[i]
        self._unfinished = n
        self._unreported = n
        self._pending_report = []
        self.on_nodes_end = None
        self.on_finished = None

    def __dealloc__(self):
        free(self._total)
        free(self._succeeded)
        free(self._failed)
        free(self._skipped)
        free(self._rules)
        free(self._attempts)
        free(self._state)
        free(self._cancel)
        free(self._priority)
        free(self._queued_ns)
        free(self._started_ns)
        free(self._finished_ns)
        free(self._first)
        free(self._dependents)
        free(self._dep_first)
        free(self._deps)

    # -- running ---------------------------------------------------------------
    def start(self):
        """Queue every node without dependencies (once)."""
        cdef list ready = []
        cdef list ended = []
        cdef Py_ssize_t i
        with cython.critical_section(self):
            if self._started:
                return
            self._started = True
            for i in range(self.size):
                if self._total[i] == 0 and self._state[i] == NS_WAITING:
                    self._state[i] = NS_LAUNCHED
                    ready.append(i)
        self._advance(ready, ended)

    cdef void _advance(self, list ready, list ended) except *:
        """Launch *ready* nodes (and whatever that decides), then report *ended* ones."""
        cdef Py_ssize_t i
        cdef list work = []
        cdef list codes = []
        while ready:
            i = <Py_ssize_t>ready.pop()
            self._launch(i, ready, ended, work, codes)
        self._report(ended)
        self._check_finished()

    cdef void _report(self, list ended) except *:
        # Ends are reported in batches: one call of the owner's hook (its
        # history records) per batch, not per node.
        cdef bint flush = False
        cdef bint arm = False
        with cython.critical_section(self):
            if ended:
                self._pending_report.extend(ended)
            if self._pending_report:
                if len(self._pending_report) >= REPORT_BATCH or self._unfinished == 0:
                    flush = True
                elif not self._report_armed:
                    self._report_armed = True
                    arm = True
        if flush:
            self._flush_report()
        elif arm:
            _TIMERS.arm(tl_now_ns() + REPORT_DELAY_NS, self, TK_CALL)

    def __call__(self):
        # On the timer thread: the report is the owner's code, so it runs on
        # the pool (or here, if the pool is closing).
        try:
            self._dispatch.queue._push(
                _INTERNAL_PRIORITY, _flush_runner_report, (self,), None, None, 0, 0
            )
            self._dispatch._after_push()
        except QueueClosed:
            self._flush_report()

    cdef void _flush_report(self) except *:
        cdef list batch
        # Made before the swap: allocating a list can run a garbage
        # collection, and so other threads' code, which must not come between
        # taking the batch and replacing it (two flushers would report it twice).
        cdef list fresh = []
        with cython.critical_section(self):
            batch = self._pending_report
            self._pending_report = fresh
            self._report_armed = False
        if not batch:
            return
        hook = self.on_nodes_end
        if hook is not None:
            try:
                hook(self, batch)
            except BaseException:
                LOGGER.exception("graph node-end hook failed")
        with cython.critical_section(self):
            self._unreported -= len(batch)
        self._check_finished()

    cdef void _check_finished(self) except *:
        cdef bint finished = False
        with cython.critical_section(self):
            if self._unreported == 0 and self._started and not self._finished:
                self._finished = True
                finished = True
        if finished:
            hook = self.on_finished
            if hook is not None:
                try:
                    hook(self)
                except BaseException:
                    LOGGER.exception("graph finished hook failed")

    cdef void _launch(self, Py_ssize_t i, list ready, list ended, list work, list codes) except *:
        # The node's state is NS_LAUNCHED (set when it became ready).
        cdef int code = NS_WAITING
        task = self._tasks[i]
        error = None
        if self._cancel_all or self._cancel[i]:
            code = NS_CANCELLED
        elif not self._field(task, F_ENABLED):
            code = NS_SKIPPED
        if code != NS_WAITING:
            with cython.critical_section(self):
                self._end(i, code, ready, ended, work, codes)
            return
        kwargs = self._field(task, F_KWARGS)
        kwargs = dict(kwargs) if kwargs else None
        results_param = self._field(task, F_RESULTS_PARAM)
        if results_param is not None:
            if kwargs is None:
                kwargs = {}
            kwargs[results_param] = self._upstream_of(i)
        retry = self._field(task, F_RETRY) if self._field(task, F_MAX_RETRIES) else None
        func = self._field(task, F_FUNC)
        args = self._field(task, F_ARGS)
        self._queued_ns[i] = tl_now_ns()
        try:
            if self.call_wrapper is not None:
                func, args, kwargs = self.call_wrapper(func, args, kwargs)
            future = self._dispatch._submit_managed(
                func, args, kwargs, self._priority[i], self._field(task, F_NAME), retry,
                self._field(task, F_TIMEOUT),
                self, None, None, False, None, i,
            )
        except QueueClosed:
            error = self._dispatch._rejection()
        except BaseException as exc:
            error = exc
        if error is not None:
            # The pool refused it (it is stopping): the run fails, and its
            # dependents are judged as after any failure.
            self._errors[i] = error
            with cython.critical_section(self):
                self._end(i, NS_FAILED, ready, ended, work, codes)
            return
        cancel_now = False
        with cython.critical_section(self):
            if self._state[i] == NS_LAUNCHED:
                self._futures[i] = future
                # A cancel that ran between the check above and now found no
                # future to cancel: it is this thread's job.
                cancel_now = self._cancel_all or self._cancel[i]
        if cancel_now:
            future.cancel()

    cdef void _node_done(self, ManagedTask task, object future) except *:
        # On the thread that ended the task (the done-hook).
        cdef Py_ssize_t i = task._node
        cdef int status = task._status
        cdef int code
        cdef list ready = []
        cdef list ended = []
        cdef list work = []
        cdef list codes = []
        if status == ST_COMPLETED:
            code = NS_COMPLETED
            self._results[i] = future._result
        elif status == ST_CANCELLED:
            code = NS_CANCELLED
        elif status == ST_TIMED_OUT:
            code = NS_TIMED_OUT
            self._errors[i] = future._exception
        else:
            code = NS_FAILED
            self._errors[i] = future._exception
        self._attempts[i] = task.attempts
        self._started_ns[i] = task._started_ns
        self._finished_ns[i] = task._finished_ns
        with cython.critical_section(self):
            self._futures[i] = None
            if self._state[i] == NS_LAUNCHED:
                self._end(i, code, ready, ended, work, codes)
        self._advance(ready, ended)

    cdef void _end(self, Py_ssize_t i, int code, list ready, list ended, list work, list codes) noexcept:
        # Under the critical section.  A worklist, not recursion: a failure
        # can cascade down a 100,000-deep chain.  *work* and *codes* are the
        # caller's empty lists, made before it looked at the state: making a
        # list can run a garbage collection, and so other threads' code,
        # which must not come between that look and this update.
        cdef Py_ssize_t k, j
        cdef int verdict
        work.append(i)
        codes.append(code)
        while work:
            i = <Py_ssize_t>work.pop()
            code = <int>codes.pop()
            self._state[i] = <unsigned char>code
            if not self._finished_ns[i]:
                self._finished_ns[i] = tl_now_ns()
            self._unfinished -= 1
            ended.append(i)
            for k in range(self._first[i], self._first[i + 1]):
                j = self._dependents[k]
                if self._state[j] != NS_WAITING:
                    continue
                if code == NS_COMPLETED:
                    self._succeeded[j] += 1
                elif code == NS_SKIPPED:
                    self._skipped[j] += 1
                else:
                    self._failed[j] += 1
                verdict = _judge(
                    self._rules[j], self._total[j], self._succeeded[j], self._failed[j],
                    self._skipped[j],
                )
                if verdict == NS_LAUNCHED:
                    self._state[j] = NS_LAUNCHED
                    ready.append(j)
                elif verdict != NS_WAITING:
                    work.append(j)
                    codes.append(verdict)

    # -- cancelling --------------------------------------------------------------
    def cancel(self, nodes=None):
        """Cancel every node (*nodes* None) or the nodes at these indexes.

        A node not yet run ends CANCELLED at once (its dependents are judged
        by their rules; cancelling all decides every node); a queued one is
        cancelled in the pool; a running one is asked to stop.  Returns
        whether anything was left to cancel.
        """
        cdef list ready = []
        cdef list ended = []
        cdef list in_flight = []
        cdef list work = []
        cdef list codes = []
        cdef Py_ssize_t i
        cdef bint found = False
        with cython.critical_section(self):
            if nodes is None:
                if self._cancel_all or self._finished:
                    return False
                self._cancel_all = True
                found = True
                for i in range(self.size):
                    if self._state[i] == NS_WAITING:
                        self._state[i] = NS_CANCELLED
                        if not self._finished_ns[i]:
                            self._finished_ns[i] = tl_now_ns()
                        self._unfinished -= 1
                        ended.append(i)
                    elif self._state[i] == NS_LAUNCHED and self._futures[i] is not None:
                        in_flight.append(self._futures[i])
            else:
                for i in nodes:
                    if self._state[i] == NS_WAITING:
                        found = True
                        self._cancel[i] = 1
                        self._end(i, NS_CANCELLED, ready, ended, work, codes)
                    elif self._state[i] == NS_LAUNCHED:
                        found = True
                        self._cancel[i] = 1
                        if self._futures[i] is not None:
                            in_flight.append(self._futures[i])
        for future in in_flight:
            future.cancel()
        if self._started:
            self._advance(ready, ended)
        else:
            self._report(ended)
        return found

    # -- what it knows -------------------------------------------------------------
    @property
    def done(self):
        return self._finished

    @property
    def cancel_requested(self):
        return self._cancel_all

    def node_state(self, Py_ssize_t i):
        """The node's status: PENDING, a live QUEUED/RUNNING/RETRYING, or terminal."""
        cdef int state = self._state[i]
        if state == NS_LAUNCHED:
            future = self._futures[i]
            if future is not None:
                return (<ManagedTask>future._task).status
            return TaskStatus.QUEUED
        return _NODE_STATUS[state]

    def node_record(self, Py_ssize_t i):
        """``(status, priority, attempts, queued_at, started_at, finished_at, duration, error)``."""
        cdef int state = self._state[i]
        status = self.node_state(i)
        queued = _wall(self._queued_ns[i]) if self._queued_ns[i] else None
        started = _wall(self._started_ns[i]) if self._started_ns[i] else None
        finished = _wall(self._finished_ns[i]) if state >= NS_COMPLETED and self._finished_ns[i] else None
        duration = None
        if started is not None and finished is not None:
            duration = (<double>self._finished_ns[i] - <double>self._started_ns[i]) / 1e9
        return (
            status, self._priority[i], self._attempts[i], queued, started, finished, duration,
            self._errors[i],
        )

    def run_rows(self, list ended, str execution_id, dict last_status, describe_error, tags_json):
        """History rows of the nodes *ended*, one tuple each, in this order:

        ``(run_id, execution_id, task_id, task_name, status, attempts,
        queued_at, started_at, finished_at, duration, error_type,
        error_message, tags, traceback)``, with *status* the status's plain
        string value and times in wall-clock seconds.  Each node's status is
        also stored in *last_status* under its task id.
        ``describe_error(error)`` gives ``(error_type, error_message,
        traceback)`` of a failed node, ``tags_json(tags)`` the text of
        non-empty tags.  The per-node loop of a graph's history, in C: it is
        on the workers' path.
        """
        cdef list rows = []
        cdef Py_ssize_t i
        cdef int state
        cdef uint64_t queued_ns, started_ns, finished_ns
        cdef str prefix = execution_id + ":"
        for item in ended:
            i = <Py_ssize_t>item
            if i < 0 or i >= self.size:
                raise IndexError(f"node {i} is not in this graph of {self.size}")
            state = self._state[i]
            if state < NS_COMPLETED:
                raise ValueError(f"node {i} has not ended")
            task = self._tasks[i]
            task_id = self._field(task, F_TASK_ID)
            status = <object>_NODE_STATUS[state]
            last_status[task_id] = status
            queued_ns = self._queued_ns[i]
            started_ns = self._started_ns[i]
            finished_ns = self._finished_ns[i]
            if not finished_ns:
                finished_ns = tl_now_ns()
            error = self._errors[i]
            if error is None:
                error_type = error_message = trace = None
            else:
                error_type, error_message, trace = describe_error(error)
            tags = self._field(task, F_TAGS)
            rows.append((
                prefix + task_id, execution_id, task_id, self._field(task, F_NAME), status._value_,
                self._attempts[i],
                _wall(queued_ns) if queued_ns else None,
                _wall(started_ns) if started_ns else None,
                _wall(finished_ns),
                (<double>finished_ns - <double>started_ns) / 1e9 if started_ns else None,
                error_type, error_message,
                tags_json(tags) if tags else "[]",
                trace,
            ))
        return rows

    def node_status_code(self, Py_ssize_t i):
        return self._state[i]

    def result(self, Py_ssize_t i):
        return self._results[i]

    def error(self, Py_ssize_t i):
        return self._errors[i]

    def task(self, Py_ssize_t i):
        return self._tasks[i]

    cdef object _upstream_of(self, Py_ssize_t i):
        cdef Py_ssize_t k, j
        cdef dict upstream = {}
        for k in range(self._dep_first[i], self._dep_first[i + 1]):
            j = self._deps[k]
            if self._state[j] == NS_COMPLETED:
                upstream[self._field(self._tasks[j], F_NAME)] = self._results[j]
        return _types.MappingProxyType(upstream)


# --------------------------------------------------------------------------
# Building records with __slots__ (a TaskManager's registered tasks)
# --------------------------------------------------------------------------

def slot_offsets(cls, names):
    """The memory offsets of *cls*'s ``__slots__`` member *names*, for :func:`new_slotted`.

    Raises:
        TypeError: a name is not a plain object slot of *cls*.
    """
    offsets = []
    for name in names:
        descriptor = cls.__dict__.get(name)
        if type(descriptor).__name__ != "member_descriptor":
            raise TypeError(f"{cls.__name__}.{name} is not a slot")
        if (<PyMemberDescrObject *><PyObject *>descriptor).d_member.type != T_OBJECT_EX:
            raise TypeError(f"{cls.__name__}.{name} is not an object slot")
        offsets.append((<PyMemberDescrObject *><PyObject *>descriptor).d_member.offset)
    return tuple(offsets)


def new_slotted(cls, tuple offsets, tuple values):
    """A new *cls* whose slots at *offsets* hold *values*, bypassing ``__init__``
    (and a frozen dataclass's ``__setattr__``): what ``__init__`` would build,
    at a fraction of the cost.  The caller passes checked values for every slot."""
    cdef Py_ssize_t i, n = len(offsets)
    cdef PyObject **slot
    if len(values) != n:
        raise ValueError(f"{n} slots, {len(values)} values")
    obj = tl_new_instance(cls)
    for i in range(n):
        value = values[i]
        slot = <PyObject **>((<char *><PyObject *>obj) + <Py_ssize_t>offsets[i])
        Py_INCREF(value)
        Py_XDECREF(slot[0])
        slot[0] = <PyObject *>value
    return obj


cdef inline void _fill_slot(object obj, object offset, object value) except *:
    cdef PyObject **slot = <PyObject **>((<char *><PyObject *>obj) + <Py_ssize_t>offset)
    Py_INCREF(value)
    Py_XDECREF(slot[0])
    slot[0] = <PyObject *>value


cdef object _resolve_dependencies(dict tasks, dict by_name, object refs):
    # Ids or names to distinct ids, in order; None if one names no task.
    cdef list resolved = []
    cdef set seen = None
    for ref in refs:
        if ref in tasks:
            dep = ref
        else:
            dep = by_name.get(ref)
            if dep is None:
                return None
        if seen is not None:
            if dep in seen:
                continue
            seen.add(dep)
        elif dep in resolved:
            continue
        elif len(resolved) >= 8:
            # Linear look-ups for the usual few dependencies, a set for a fan-in.
            seen = set(resolved)
            seen.add(dep)
        resolved.append(dep)
    return tuple(resolved)


def add_plain_task(
    dict tasks, dict by_name, dict dependency_map, str task_id, object name, object func,
    tuple args, object kwargs, object dependencies, object cls, tuple offsets, tuple defaults,
):
    """Register a task with default options in one step: the common case of
    ``TaskManager.register_task``, in C.

    Resolves *dependencies* (ids or names) to distinct ids, builds *cls* (a
    slotted record) from ``(task_id, name, func, args, kwargs, dependencies,
    *defaults)`` and stores it in *tasks*, its id in *by_name* and its
    dependencies in *dependency_map*.  Returns the record, or None, changing
    nothing, when the general path must decide: *name* is not a non-empty
    str or is taken, *func* is not callable, a dependency names no task.
    The caller holds the registry's lock.
    """
    cdef Py_ssize_t i, n = len(offsets)
    if type(name) is not str or not name or not callable(func):
        return None
    if name in tasks or by_name.get(name, task_id) != task_id or task_id in dependency_map:
        return None
    deps = _resolve_dependencies(tasks, by_name, dependencies)
    if deps is None:
        return None
    if len(defaults) + 6 != n:
        raise ValueError(f"{n} slots, {len(defaults) + 6} values")
    obj = tl_new_instance(cls)
    _fill_slot(obj, offsets[0], task_id)
    _fill_slot(obj, offsets[1], name)
    _fill_slot(obj, offsets[2], func)
    _fill_slot(obj, offsets[3], args)
    _fill_slot(obj, offsets[4], kwargs)
    _fill_slot(obj, offsets[5], deps)
    for i in range(6, n):
        _fill_slot(obj, offsets[i], defaults[i - 6])
    tasks[task_id] = obj
    by_name[name] = task_id
    dependency_map[task_id] = deps
    return obj
