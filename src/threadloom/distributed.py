"""Beyond one machine: threadloom's tasks and task graphs on a Dask cluster.

Nothing here is a cluster of our own: the scheduling, the data movement and
the worker processes are Dask ``distributed``'s (``pip install
'threadloom[dask]'``).  What threadloom adds is on the client:

* :class:`DaskExecutor`, a :class:`concurrent.futures.Executor` over
  ``Client.submit`` with threadloom's ``options(priority=, retry=, timeout=,
  name=)`` view (plus ``resources=``).  Its futures are plain
  :class:`concurrent.futures.Future` objects.
* :class:`DaskBackend`, which runs :class:`~threadloom.task_manager.TaskManager`
  graphs on the cluster (``TaskManager(cluster="local:4")``).  Every node is
  submitted with its upstream Dask futures as inputs, so results move worker to
  worker and reach the client only when asked for
  (``get_execution_status(...).results``).  Policy stays on the client: trigger
  rules, priority inheritance, retry delays (on threadloom's timer, never a
  sleeping worker), deadlines, cancellation, history, schedules.

On a worker, each task runs on a small threadloom pool in that process, so
``threadloom.current_task()`` works there: a cancelled or timed-out task is
asked to stop through ``current_task().cancelled`` as on the local pool (Python
cannot stop a thread from outside; Dask cannot either).  What differs from the
local pool, and why:

* A node's task ends CANCELLED (or TIMED_OUT) as soon as the client cancels
  it: Dask releases the key at once and drops a late result.  Locally a running
  task that ignores the request still ends COMPLETED.
* ``current_task().upstream_results`` holds the upstream results of a node as
  locally; ``current_task().attempt`` counts attempts on that worker only
  (threadloom's record of attempts, in the history, is the client's).
* A worker that dies mid-task: Dask runs the task again elsewhere; the client
  counts each start it is told of, so the history shows the extra attempt.
  After ``distributed.scheduler.allowed-failures`` deaths Dask gives up with
  ``KilledWorker``, which is an ordinary failure (retried by the task's policy).

Workers need threadloom installed (the task wrapper is imported there by name).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextvars
import functools
import logging
import os
import re
import threading
import time
import types
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

try:
    import dask
    import distributed
    from distributed import Client
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "threadloom.distributed needs Dask distributed: pip install 'threadloom[dask]'"
    ) from exc

from ._errors import ClusterUnreachableError
from ._types import TaskPriority, TaskStatus
from ._validate import check_priority
from .core import PyGraphRunner, core
from .retry import RetryPolicy

__all__ = [
    "ClusterConnection",
    "ClusterUnreachableError",
    "DaskBackend",
    "DaskExecutor",
    "DaskGraphRunner",
    "connect",
    "dask_priority",
    "parse_cluster",
]

logger = logging.getLogger(__name__)

#: The topic on which workers tell the client that a task started.
_START_TOPIC = "threadloom-task-started"
#: How often a worker thread checks whether its task was cancelled (seconds).
_POLL = 0.05


#: Passed to ``Client.submit``: every submission is its own Dask "generation",
#: so that equal priorities run in submission order (see :func:`dask_priority`).
FIFO_TIMEOUT = 0


def dask_priority(priority: int) -> int:
    """The one place threadloom's priority becomes Dask's.

    Both run a higher number first (``TaskPriority.CRITICAL`` = 3 before
    ``LOW`` = 0), so the integer passes through unchanged.  Dask applies it on
    the scheduler (which task a free worker gets next) and on each worker
    (which of its assigned tasks runs next).  Within a priority threadloom runs
    tasks in submission order; Dask does so only across submissions more than
    ``fifo_timeout`` apart (100 ms by default), so threadloom submits with
    ``fifo_timeout=0`` (:data:`FIFO_TIMEOUT`).
    """
    return int(priority)


# -- connecting ---------------------------------------------------------------


_LOCAL = re.compile(r"local(?::(\d+))?")
_SCHEMES = ("tcp://", "tls://", "inproc://", "ws://", "wss://", "ucx://")


def parse_cluster(spec: str) -> tuple[str, int | str]:
    """Read a cluster spec: ``local``, ``local:N`` or a scheduler address.

    Returns:
        ``("local", n_workers)`` or ``("address", address)``.

    Raises:
        TypeError: *spec* is not a string.
        ValueError: *spec* is none of these (the message says what is accepted).
    """
    if not isinstance(spec, str):
        raise TypeError(f"cluster must be a string such as 'local:2', not {spec!r}")
    text = spec.strip()
    match = _LOCAL.fullmatch(text)
    if match:
        count = int(match.group(1)) if match.group(1) else (os.cpu_count() or 1)
        if count < 1:
            raise ValueError(f"cluster {spec!r}: local:N needs N >= 1 worker")
        return ("local", count)
    if text.startswith(_SCHEMES) and len(text) > text.index("://") + 3:
        return ("address", text)
    raise ValueError(
        f"cluster {spec!r} is not understood: use 'local:N' (N worker processes on this "
        "machine) or a scheduler address such as 'tcp://HOST:8786'"
    )


@dataclass
class ClusterConnection:
    """A client, and the local cluster it owns (if it started one)."""

    client: Client
    cluster: Any = None
    address: str = ""

    def close(self) -> None:
        """Close the client, then the cluster it started (if any)."""
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()


def connect(cluster: str | Client, *, timeout: float | None = None) -> ClusterConnection:
    """Connect to a cluster: ``local:N`` starts one; an address joins one.

    A local cluster has N worker processes of one thread each on 127.0.0.1,
    without a dashboard (processes, so that CPU-bound Python escapes the GIL).
    *timeout* (seconds) bounds the wait for a scheduler address; None takes
    Dask's ``distributed.comm.timeouts.connect`` setting (e.g. the environment
    variable ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=5s``).

    Raises:
        ClusterUnreachableError: nothing answered at the address within *timeout*.
        ValueError: the spec is not understood.
    """
    if isinstance(cluster, Client):
        return ClusterConnection(cluster, None, str(getattr(cluster.scheduler, "address", "")))
    kind, value = parse_cluster(cluster)
    if kind == "local":
        local = distributed.LocalCluster(
            n_workers=int(value),
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            # A task's failure is threadloom's to report (history, events),
            # not each worker's log; the scheduler, here, still logs deaths.
            silence_logs=logging.CRITICAL,
        )
        try:
            client = Client(local)
        except BaseException:
            local.close()
            raise
        return ClusterConnection(client, local, str(local.scheduler_address))
    address = str(value)
    if timeout is None:
        timeout = float(
            dask.utils.parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"))
        )
    try:
        client = Client(address, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise ClusterUnreachableError(
            f"cannot reach the Dask scheduler at {address} (waited {timeout:g} s): {exc}"
        ) from exc
    return ClusterConnection(client, None, address)


# -- on the worker --------------------------------------------------------------

_inner_lock = threading.Lock()
_inner_pool: Any = None
_inner_size = 0


def _worker_pool(threads: int) -> Any:
    """This worker process's threadloom pool (one per process, made on first use).

    It has a thread for each of Dask's worker threads: each of those waits for
    the one task it handed over.
    """
    global _inner_pool, _inner_size
    if _inner_size < threads:
        from .executor import ThreadPoolExecutor

        with _inner_lock:
            if _inner_size < threads:
                _inner_pool = ThreadPoolExecutor(
                    max_workers=threads, thread_name_prefix="threadloom-dask"
                )
                _inner_size = threads
    return _inner_pool


class _CatchUp(Exception):
    """An attempt skipped on the worker so that ``current_task().attempt`` is the client's."""


def _in_dask_context(
    context: contextvars.Context,
    dask_thread: dict[str, Any],
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None,
    upstream: Mapping[str, Any] | None,
    attempt: int,
) -> Any:
    # The task runs as if on Dask's worker thread: get_worker(), get_client(),
    # Dask's Event/Lock/Variable work (they find the worker through a context
    # variable, and the key through a thread local).
    from distributed.worker import thread_state  # type: ignore[attr-defined]

    saved = dict(thread_state.__dict__)
    thread_state.__dict__.update(dask_thread)
    try:
        return context.copy().run(_with_upstream, fn, args, kwargs, upstream, attempt)
    finally:
        thread_state.__dict__.clear()
        thread_state.__dict__.update(saved)


def _with_upstream(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None,
    upstream: Mapping[str, Any] | None,
    attempt: int,
) -> Any:
    if upstream is not None or attempt > 1:
        from .managed import current_task

        task = current_task()
        if task.attempt < attempt:
            raise _CatchUp
        if upstream is not None:
            task.upstream_results = upstream
    return fn(*args, **kwargs) if kwargs else fn(*args)


def run_on_worker(
    name: str | None,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None,
    results_param: str | None,
    upstream_names: tuple[str, ...] | None,
    attempt: int,
    *upstream_values: Any,
) -> Any:
    """What a Dask worker runs for each threadloom task (public so it pickles by name).

    The user's keywords travel as one dict, so none of them is ever taken for
    Dask's.  Upstream results arrive as resolved Dask inputs.
    """
    from distributed.worker import get_worker, thread_state  # type: ignore[attr-defined]

    worker = get_worker()
    key = getattr(thread_state, "key", None)
    # Told before the task runs: the client counts attempts (a rerun after a
    # worker died is a second start) and shows the task RUNNING.  The event
    # leaves on the worker's stream to the scheduler ahead of the task's
    # result, so the client hears of the start before the end.
    worker.log_event(_START_TOPIC, [str(key), time.time(), os.getpid()])
    upstream = None
    if upstream_names is not None:
        upstream = types.MappingProxyType(dict(zip(upstream_names, upstream_values, strict=True)))
        if results_param is not None:
            kwargs = dict(kwargs or {})
            kwargs[results_param] = upstream
    pool = _worker_pool(max(1, int(worker.state.nthreads)))
    # The attempt number is the client's (it retries by submitting again): a
    # task reading ``current_task().attempt`` sees it after attempt - 1
    # instant, empty attempts here, the only way to set it on a worker's task.
    catch_up = None
    if attempt > 1:
        catch_up = RetryPolicy(max_retries=attempt - 1, delay=0.0, retry_on=(_CatchUp,))
    # A name makes it a managed task (current_task() works) even without options.
    label = name or getattr(fn, "__name__", None) or "task"
    future = pool.options(name=label, retry=catch_up).submit(
        _in_dask_context,
        contextvars.copy_context(),
        dict(thread_state.__dict__),
        fn,
        args,
        kwargs,
        upstream,
        attempt,
    )
    asked = False
    while True:
        try:
            return future.result(timeout=_POLL)
        except cf.TimeoutError:
            pass
        if not asked:
            state = worker.state.tasks.get(key) if key is not None else None
            # The client cancelled the key (a cancel or a deadline): ask the
            # task to stop, then wait for it as a local pool would.
            if state is None or state.state in ("cancelled", "released", "forgotten"):
                future.cancel()
                asked = True


# -- shared by the executor and the graph runner ------------------------------------


def _key(name: str | None) -> str:
    # Dask groups keys by the text before the last dash-and-hex part: the
    # task's name, so its dashboard shows one group per threadloom task.
    label = re.sub(r"[^A-Za-z0-9_.]+", "_", name or "task")[:60]
    return f"threadloom-{label}-{uuid.uuid4().hex}"


def _valid_delay(policy: Any, attempts: int, label: str) -> float:
    try:
        delay = float(policy.delay_for(attempts))
        if delay < 0 or delay != delay:
            raise ValueError(f"retry delay {delay!r} out of range")
        return delay
    except Exception:
        logger.exception("retry policy of %s gave no usable delay; retrying now", label)
        return 0.0


def _should_retry(policy: Any, error: BaseException, attempts: int, label: str) -> bool:
    try:
        return bool(policy.should_retry(error, attempts))
    except Exception:
        logger.exception("retry policy of %s failed; not retrying", label)
        return False


class _Starts:
    """Task starts reported by workers, for the keys the client watches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watch: dict[str, Callable[[float, int], object]] = {}

    def watch(self, key: str, on_start: Callable[[float, int], object]) -> None:
        with self._lock:
            self._watch[key] = on_start

    def unwatch(self, key: str) -> None:
        with self._lock:
            self._watch.pop(key, None)

    def __call__(self, event: Any) -> None:
        # On the client's event loop: quick, and never raises into it.
        try:
            _, (key, started, pid) = event
            with self._lock:
                on_start = self._watch.get(key)
            if on_start is not None:
                on_start(float(started), int(pid))
        except Exception:
            logger.exception("bad task-start event %r", event)


class _Helper:
    """One thread for the client's slow calls (cancels, resubmits) off timers and loops."""

    def __init__(self) -> None:
        from .executor import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="threadloom-dask-client")

    def __call__(self, fn: Callable[..., object], *args: Any) -> None:
        try:
            self._pool.submit(fn, *args)
        except RuntimeError:
            # Shut down: run it here rather than lose it.
            fn(*args)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


# -- DaskExecutor -----------------------------------------------------------------


class _Call:
    __slots__ = (
        "args",
        "attempts",
        "dask_future",
        "deadline",
        "ended",
        "fn",
        "future",
        "kwargs",
        "opts",
        "retry_timer",
    )

    def __init__(
        self,
        future: cf.Future[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        opts: _Options,
    ) -> None:
        self.future = future
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.opts = opts
        self.attempts = 0
        self.dask_future: Any = None
        self.deadline: Any = None
        self.retry_timer: Any = None
        self.ended = False


@dataclass(frozen=True)
class _Options:
    priority: int = TaskPriority.NORMAL
    retry: RetryPolicy | None = None
    timeout: float | None = None
    name: str | None = None
    resources: Mapping[str, float] | None = None
    pure: bool = False
    workers: tuple[str, ...] | None = None


class DaskSubmitView:
    """``DaskExecutor.options(...)``: submits with those options."""

    def __init__(self, executor: DaskExecutor, opts: _Options) -> None:
        self._executor = executor
        self._opts = opts

    @property
    def priority(self) -> int:
        return self._opts.priority

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        """Submit ``fn(*args, **kwargs)`` with this view's options; every keyword goes to *fn*."""
        return self._executor._submit(fn, args, kwargs, self._opts)  # noqa: SLF001 (its own executor)

    def map(
        self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None
    ) -> Iterable[Any]:
        """:meth:`concurrent.futures.Executor.map` with this view's options."""
        futures = [self.submit(fn, *items) for items in zip(*iterables, strict=False)]
        return _results(futures, timeout)


def _results(futures: list[cf.Future[Any]], timeout: float | None) -> Iterable[Any]:
    end = None if timeout is None else time.monotonic() + timeout

    def generate() -> Iterable[Any]:
        try:
            futures.reverse()
            while futures:
                left = None if end is None else end - time.monotonic()
                yield futures.pop().result(left)
        finally:
            for future in futures:
                future.cancel()

    return generate()


class DaskExecutor(cf.Executor):
    """A :class:`concurrent.futures.Executor` that runs tasks on a Dask cluster.

    Built on ``Client.submit`` (not Dask's ``ClientExecutor``, which takes a
    user's ``priority=``/``key=`` keywords for its own): every keyword of
    :meth:`submit` goes to the function; threadloom's and Dask's options go
    through :meth:`options`.  Tasks are submitted ``pure=False`` (each call
    runs) unless a view says ``pure=True``.

    Args:
        client_or_address: A ``distributed.Client`` (left open at shutdown), or
            a spec for :func:`connect` (``"local:N"`` or ``"tcp://HOST:PORT"``),
            whose client and cluster the executor owns and closes.
        connect_timeout: Seconds to wait for a scheduler address to answer
            (None: Dask's ``distributed.comm.timeouts.connect``).

    Raises:
        ClusterUnreachableError: the scheduler did not answer.
    """

    def __init__(
        self,
        client_or_address: Client | str,
        *,
        connect_timeout: float | None = None,
    ) -> None:
        self._owns = not isinstance(client_or_address, Client)
        self._connection = connect(client_or_address, timeout=connect_timeout)
        self._client = self._connection.client
        self._lock = threading.Lock()
        self._calls: set[_Call] = set()
        self._shutdown = False
        self._helper = _Helper()

    @property
    def client(self) -> Client:
        """The Dask client the tasks go through."""
        return self._client

    def options(
        self,
        *,
        priority: int = TaskPriority.NORMAL,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        name: str | None = None,
        resources: Mapping[str, float] | None = None,
        pure: bool = False,
        workers: Iterable[str] | str | None = None,
    ) -> DaskSubmitView:
        """A view that submits with these options.

        Args:
            priority: any int, higher first (see :func:`dask_priority`).
            retry: a :class:`~threadloom.retry.RetryPolicy`; the client waits
                its delays on threadloom's timer and submits again.
            timeout: seconds from submission after which the future fails with
                ``TimeoutError`` and the task is cancelled on the cluster (a
                running task is asked to stop, ``current_task().cancelled``).
            name: the task's name (its Dask key starts with it).
            resources: Dask worker resources the task needs, e.g. ``{"GPU": 1}``.
            pure: let Dask reuse the result of an identical earlier call.
            workers: run only on these workers (addresses or names).

        Raises:
            TypeError: a bad type (priority not an int, retry not a RetryPolicy).
            ValueError: a negative timeout.
        """
        priority = check_priority(priority)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy, not {retry!r}")
        if timeout is not None:
            timeout = core.check_seconds("timeout", timeout)
        if resources is not None and not isinstance(resources, Mapping):
            raise TypeError(f"resources must be a mapping such as {{'GPU': 1}}, not {resources!r}")
        if isinstance(workers, str):
            workers = (workers,)
        return DaskSubmitView(
            self,
            _Options(
                priority,
                retry,
                timeout,
                name,
                dict(resources) if resources else None,
                pure,
                tuple(workers) if workers is not None else None,
            ),
        )

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        """Run ``fn(*args, **kwargs)`` on the cluster; every keyword goes to *fn*."""
        return self._submit(fn, args, kwargs, _DEFAULT_OPTIONS)

    def _submit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        opts: _Options,
    ) -> cf.Future[Any]:
        if not callable(fn):
            raise TypeError(f"{fn!r} is not callable")
        future: cf.Future[Any] = cf.Future()
        call = _Call(future, fn, args, kwargs, opts)
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._calls.add(call)
        future.add_done_callback(functools.partial(self._future_done, call))
        if opts.timeout is not None:
            call.deadline = core.TIMERS.call_later(
                opts.timeout, functools.partial(self._helper, self._expire, call)
            )
        self._launch(call)
        return future

    def _launch(self, call: _Call) -> None:
        opts = call.opts
        call.attempts += 1
        try:
            dask_future = self._client.submit(
                run_on_worker,
                opts.name,
                call.fn,
                call.args,
                call.kwargs or None,
                None,
                None,
                call.attempts,
                key=_key(opts.name or getattr(call.fn, "__name__", None)),
                pure=opts.pure,
                priority=dask_priority(opts.priority),
                fifo_timeout=FIFO_TIMEOUT,
                resources=opts.resources,
                workers=list(opts.workers) if opts.workers is not None else None,
            )
        except BaseException as exc:
            self._settle(call, exc, True)
            return
        with self._lock:
            call.dask_future = dask_future
            ended = call.ended
        if ended:
            # Cancelled or expired while being submitted.
            self._helper(dask_future.cancel)
            return
        dask_future.add_done_callback(functools.partial(self._dask_done, call))

    def _dask_done(self, call: _Call, dask_future: Any) -> None:
        # On Dask's callback thread.
        status = dask_future.status
        if status == "finished":
            try:
                value = dask_future.result()
            except BaseException as exc:
                self._settle(call, exc, True)
            else:
                self._settle(call, value, False)
        elif status == "error":
            error = dask_future.exception()
            policy = call.opts.retry
            label = call.opts.name or repr(call.fn)
            if (
                policy is not None
                and not call.ended
                and _should_retry(policy, error, call.attempts, label)
            ):
                delay = _valid_delay(policy, call.attempts, label)
                call.retry_timer = core.TIMERS.call_later(
                    delay, functools.partial(self._helper, self._retry, call)
                )
                return
            self._settle(call, error, True)
        else:
            # Cancelled on the cluster (by us, or by someone with the client).
            with self._lock:
                ended, call.ended = call.ended, True
            if not ended:
                call.future.cancel()
                self._forget(call)

    def _retry(self, call: _Call) -> None:
        if not call.ended:
            self._launch(call)

    def _expire(self, call: _Call) -> None:
        error = TimeoutError(
            f"task {call.opts.name or call.fn!r} did not finish within {call.opts.timeout} s"
        )
        if self._settle(call, error, True):
            self._cancel_remote(call)

    def _settle(self, call: _Call, value: Any, is_error: bool) -> bool:
        with self._lock:
            if call.ended:
                return False
            call.ended = True
        future = call.future
        if future.set_running_or_notify_cancel():
            if is_error:
                future.set_exception(value)
            else:
                future.set_result(value)
        self._forget(call)
        return True

    def _forget(self, call: _Call) -> None:
        for handle in (call.deadline, call.retry_timer):
            if handle is not None:
                handle.cancel()
        with self._lock:
            self._calls.discard(call)
        call.fn = call.args = call.kwargs = None  # type: ignore[assignment]

    def _future_done(self, call: _Call, future: cf.Future[Any]) -> None:
        # The caller cancelled the future (it was still pending here): cancel
        # it on the cluster too.
        if future.cancelled():
            with self._lock:
                ended, call.ended = call.ended, True
            if not ended:
                self._forget(call)
            self._cancel_remote(call)

    def _cancel_remote(self, call: _Call) -> None:
        dask_future = call.dask_future
        if dask_future is not None and not dask_future.done():
            self._helper(dask_future.cancel)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting tasks; optionally cancel those not done; optionally wait.

        Closes the client and cluster only if the executor opened them (once
        the last task has ended, if *wait* is False).
        """
        with self._lock:
            self._shutdown = True
            calls = list(self._calls)
        if cancel_futures:
            for call in calls:
                call.future.cancel()
        if wait:
            self._finish(calls)
        else:
            # Closed once the last task ends, off the caller's thread.
            threading.Thread(
                target=self._finish, args=(calls,), name="threadloom-dask-shutdown", daemon=True
            ).start()

    def _finish(self, calls: list[_Call]) -> None:
        cf.wait([call.future for call in calls])
        self._helper.close()
        if self._owns:
            self._connection.close()


_DEFAULT_OPTIONS = _Options()


# -- task graphs ------------------------------------------------------------------

# The runner's node codes (see GraphRunner.node_status_code).
_WAITING, _LAUNCHED, _COMPLETED, _FAILED, _CANCELLED, _TIMED_OUT, _SKIPPED = range(7)


class DaskGraphRunner(PyGraphRunner):
    """One execution of a task graph on a Dask cluster; the core GraphRunner's interface.

    The client decides what runs (trigger rules need every upstream's end):
    that bookkeeping (trigger rules, priority inheritance, cancellation, when
    the execution is finished) is the pure-Python core's ``GraphRunner``,
    which this class extends with where a ready node goes.  Dask moves the
    data: a node is submitted with the futures of its completed upstreams as
    inputs, so their results go worker to worker.  The futures of completed
    nodes are held for as long as the runner lives, which is what keeps
    their results on the cluster for dependents and for :meth:`result`.
    """

    def __init__(self, backend: DaskBackend, tasks: list[Any]) -> None:
        super().__init__(None, tasks)
        n = self.size
        self._backend = backend
        self._client = backend.client
        self._kept: list[Any] = [None] * n
        self._fetched = [False] * n
        self._submits = [0] * n
        self._starts = [0] * n
        self._running = [False] * n
        self._retry_timer: list[Any] = [None] * n
        self._deadline: list[Any] = [None] * n
        self._queued_at: list[float | None] = [None] * n
        self._started_at: list[float | None] = [None] * n

    # -- moving the graph ---------------------------------------------------------
    def _report(self, ended: list[int]) -> None:
        # At once, not batched on the core's timer: the node-end hook is the
        # task manager's, and a Dask callback thread may call it.
        for i in ended:
            self._release_timers(i)
        hook = self.on_nodes_end
        if hook is not None and ended:
            try:
                hook(self, list(ended))
            except BaseException:
                logger.exception("graph node-end hook failed")
        with self._lock:
            self._unreported -= len(ended)

    def _release_timers(self, i: int) -> None:
        for handles in (self._retry_timer, self._deadline):
            handle = handles[i]
            if handle is not None:
                handles[i] = None
                handle.cancel()

    def _launch(self, i: int, ready: list[int], ended: list[int]) -> None:
        task = self._tasks[i]
        with self._lock:
            if self._state[i] != _LAUNCHED:
                return  # a cancel ended it after it became ready
            code = _WAITING
            if self._cancel_all or self._cancel[i]:
                code = _CANCELLED
            elif not task.enabled:
                code = _SKIPPED
            if code != _WAITING:
                self._end(i, code, ready, ended)
                return
        self._queued_at[i] = time.time()
        if task.timeout is not None:
            self._deadline[i] = core.TIMERS.call_later(
                task.timeout, functools.partial(self._backend.helper, self._expire, i)
            )
        error = self._submit(i)
        if error is not None:
            with self._lock:
                if self._state[i] == _LAUNCHED:
                    self._errors[i] = error
                    self._end(i, _FAILED, ready, ended)

    def _submit(self, i: int) -> BaseException | None:
        """Submit node *i* (again, for a retry); an error if Dask refused it."""
        task = self._tasks[i]
        with self._lock:
            upstream = [j for j in self._deps[i] if self._state[j] == _COMPLETED]
            names = tuple(self._tasks[j].name for j in upstream)
            inputs = [self._kept[j] for j in upstream]
            self._submits[i] += 1
            attempt = max(self._submits[i], self._starts[i] + 1)
        key = _key(task.name)
        self._backend.starts.watch(key, functools.partial(self._started_on_worker, i, key))
        try:
            future = self._client.submit(
                run_on_worker,
                task.name,
                task.func,
                tuple(task.args),
                dict(task.kwargs) if task.kwargs else None,
                task.results_param,
                names,
                attempt,
                *inputs,
                key=key,
                pure=False,
                priority=dask_priority(self._priority[i]),
                fifo_timeout=FIFO_TIMEOUT,
            )
        except BaseException as exc:
            self._backend.starts.unwatch(key)
            return exc
        with self._lock:
            live = self._state[i] == _LAUNCHED
            if live:
                self._futures[i] = future
            cancel_now = live and (self._cancel_all or self._cancel[i])
        if not live or cancel_now:
            self._backend.helper(future.cancel)
        future.add_done_callback(functools.partial(self._done, i))
        return None

    def _started_on_worker(self, i: int, key: str, started: float, pid: int) -> None:
        # On the client's event loop.
        with self._lock:
            self._starts[i] += 1
            future = self._futures[i]
            if future is not None and future.key == key:
                self._running[i] = True
            if self._started_at[i] is None:
                self._started_at[i] = started

    def _done(self, i: int, future: Any) -> None:
        """A node's Dask future ended (on Dask's callback thread)."""
        self._backend.starts.unwatch(future.key)
        status = future.status
        error: BaseException | None = None
        if status == "error":
            try:
                error = future.exception()
            except BaseException as exc:
                error = exc
        task = self._tasks[i]
        ready: list[int] = []
        ended: list[int] = []
        with self._lock:
            if self._futures[i] is not future or self._state[i] != _LAUNCHED:
                return  # ended meanwhile (a deadline, a cancel): this end is late
            self._futures[i] = None
            self._running[i] = False
            if status == "finished":
                self._kept[i] = future
                code = _COMPLETED
            elif status == "error":
                assert error is not None
                attempts = max(self._submits[i], self._starts[i])
                retry = task.retry if task.max_retries else None
                if (
                    retry is not None
                    and not (self._cancel_all or self._cancel[i])
                    and _should_retry(retry, error, attempts, task.name)
                ):
                    delay = _valid_delay(retry, attempts, task.name)
                    self._retry_timer[i] = core.TIMERS.call_later(
                        delay, functools.partial(self._backend.helper, self._retry, i)
                    )
                    return
                self._errors[i] = error
                code = _FAILED
            else:
                code = _CANCELLED
            self._end(i, code, ready, ended)
        self._advance(ready, ended)

    def _retry(self, i: int) -> None:
        with self._lock:
            self._retry_timer[i] = None
            live = self._state[i] == _LAUNCHED and self._futures[i] is None
        if not live:
            return
        error = self._submit(i)
        if error is not None:
            ready: list[int] = []
            ended: list[int] = []
            with self._lock:
                if self._state[i] == _LAUNCHED:
                    self._errors[i] = error
                    self._end(i, _FAILED, ready, ended)
            self._advance(ready, ended)

    def _expire(self, i: int) -> None:
        task = self._tasks[i]
        ready: list[int] = []
        ended: list[int] = []
        with self._lock:
            self._deadline[i] = None
            if self._state[i] != _LAUNCHED:
                return
            future, self._futures[i] = self._futures[i], None
            self._running[i] = False
            self._errors[i] = TimeoutError(
                f"task {task.name} did not finish within {task.timeout} s"
            )
            self._end(i, _TIMED_OUT, ready, ended)
        if future is not None:
            # The worker sees its key cancelled and asks the task to stop.
            future.cancel()
        self._advance(ready, ended)

    def _cancel_launched(
        self, i: int, in_flight: list[Callable[[], object]], ready: list[int], ended: list[int]
    ) -> None:
        # Unlike a local task, the node ends CANCELLED at once: Dask releases
        # the key (a running task is asked to stop) and drops a late result.
        future, self._futures[i] = self._futures[i], None
        self._running[i] = False
        if future is not None:
            in_flight.append(functools.partial(self._backend.helper, future.cancel))
        self._end(i, _CANCELLED, ready, ended)

    # -- what the task manager reads ------------------------------------------------
    def node_state(self, i: int) -> TaskStatus:
        """PENDING, a live QUEUED / RUNNING / RETRYING, or the node's end."""
        if self._state[i] == _LAUNCHED:
            if self._retry_timer[i] is not None:
                return TaskStatus.RETRYING
            return TaskStatus.RUNNING if self._running[i] else TaskStatus.QUEUED
        return super().node_state(i)

    def node_record(self, i: int) -> tuple[Any, ...]:
        """``(status, priority, attempts, queued_at, started_at, finished_at, duration, error)``."""
        started = self._started_at[i]
        finished = None
        if self._state[i] >= _COMPLETED:
            # The bookkeeping stamps an end on the monotonic clock; the
            # worker's start is wall-clock time.
            finished = time.time() - (time.monotonic_ns() - self._finished_ns[i]) / 1e9
        duration = None
        if started is not None and finished is not None:
            duration = max(0.0, finished - started)
        attempts = max(self._submits[i], self._starts[i]) if self._submits[i] else 0
        return (
            self.node_state(i),
            self._priority[i],
            attempts,
            self._queued_at[i],
            started,
            finished,
            duration,
            self._errors[i],
        )

    def result(self, i: int) -> Any:
        """Node *i*'s result, fetched from the cluster the first time it is asked for."""
        if not self._fetched[i]:
            future = self._kept[i]
            if future is None:
                return None
            self._results[i] = future.result()
            self._fetched[i] = True
        return self._results[i]

    def fetch_results(self) -> None:
        """Bring every completed node's result to the client (before it disconnects)."""
        pending = [
            i for i in range(self.size) if self._kept[i] is not None and not self._fetched[i]
        ]
        if not pending:
            return
        values = self._client.gather([self._kept[i] for i in pending], errors="skip")
        for i, value in zip(pending, values, strict=True):
            self._results[i] = value
            self._fetched[i] = True
            self._kept[i] = None


# -- the backend the task manager uses ------------------------------------------------


class DaskBackend:
    """Where a :class:`~threadloom.task_manager.TaskManager` runs its graphs: a Dask cluster.

    ``TaskManager(cluster="local:2")`` makes one; pass a ``DaskBackend`` (or a
    ``distributed.Client``) to share a client.  Connecting happens at
    :meth:`start` (the manager's start), so a bad address fails there, with
    :class:`ClusterUnreachableError` naming it.

    Args:
        cluster: ``"local:N"``, a scheduler address, or a ``distributed.Client``
            (left open at :meth:`close`).
        connect_timeout: Seconds to wait for the scheduler (None: Dask's setting).
    """

    def __init__(
        self,
        cluster: str | Client,
        *,
        connect_timeout: float | None = None,
    ) -> None:
        if not isinstance(cluster, Client):
            parse_cluster(cluster)  # a bad spec fails at construction
        self._spec = cluster
        self._timeout = connect_timeout
        self._connection: ClusterConnection | None = None
        self._lock = threading.Lock()
        self.starts = _Starts()
        self._helper: _Helper | None = None
        # The runners whose results may still be on the cluster.
        self._runners: weakref.WeakSet[DaskGraphRunner] = weakref.WeakSet()

    @property
    def spec(self) -> str:
        """The cluster as given (an address, or ``local:N``)."""
        return (
            self._spec
            if isinstance(self._spec, str)
            else str(getattr(self._spec.scheduler, "address", ""))
        )

    def start(self) -> None:
        """Connect (and start a local cluster for ``local:N``); again does nothing.

        Raises:
            ClusterUnreachableError: the scheduler did not answer.
        """
        with self._lock:
            if self._connection is not None:
                return
            connection = connect(self._spec, timeout=self._timeout)
            connection.client.subscribe_topic(_START_TOPIC, self.starts)
            self._helper = _Helper()
            self._connection = connection

    @property
    def client(self) -> Client:
        """The Dask client (after :meth:`start`)."""
        connection = self._connection
        if connection is None:
            raise RuntimeError("DaskBackend is not started: call start() first")
        return connection.client

    @property
    def helper(self) -> Callable[..., None]:
        """Runs slow client calls off timer threads and Dask's loop."""
        helper = self._helper
        if helper is None:
            raise RuntimeError("DaskBackend is not started: call start() first")
        return helper

    def graph_runner(self, tasks: list[Any]) -> DaskGraphRunner:
        """A runner of one task-graph execution on the cluster."""
        self.client  # noqa: B018 - raises if not started
        runner = DaskGraphRunner(self, tasks)
        self._runners.add(runner)
        return runner

    def close(self) -> None:
        """Disconnect; a cluster started for ``local:N`` is shut down."""
        with self._lock:
            connection, self._connection = self._connection, None
            helper, self._helper = self._helper, None
        if helper is not None:
            helper.close()
        if connection is None:
            return
        # Executions kept by the manager answer for their results after the
        # cluster is gone.
        for runner in list(self._runners):
            try:
                runner.fetch_results()
            except Exception:
                logger.exception("could not fetch an execution's results before disconnecting")
        if isinstance(self._spec, Client):
            connection.client.unsubscribe_topic(_START_TOPIC)
            return
        connection.close()
