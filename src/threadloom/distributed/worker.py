"""What a Dask worker runs for each threadloom task: a small threadloom pool per
worker process, on which the task runs as on Dask's worker thread.

Imported on the workers by name (:func:`run_on_worker` is pickled by reference).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextvars
import os
import threading
import time
import types
from collections.abc import Callable, Mapping
from typing import Any

from ..retry import RetryPolicy

#: The topic on which workers tell the client that a task started.
START_TOPIC = "threadloom-task-started"
#: How often a worker thread checks whether its task was cancelled (seconds).
_POLL = 0.05


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
        from ..executor import ThreadPoolExecutor

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
        from ..managed import current_task

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
    worker.log_event(START_TOPIC, [str(key), time.time(), os.getpid()])
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
