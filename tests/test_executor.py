"""ThreadPoolExecutor: drop-in behaviour, asserted on the stdlib's class and ours alike.

Tests that take the ``executor``/``executor_cls`` fixture run twice: once on
``concurrent.futures.ThreadPoolExecutor`` and once on threadloom's.  Tests of
what only threadloom offers are at the end.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings
import weakref
from typing import Any

import pytest

import threadloom
from threadloom import TaskPriority

from .conftest import TIMEOUT


def identity(x: Any) -> Any:
    return x


def keywords(**kwargs: Any) -> dict[str, Any]:
    return kwargs


# ------------------------------------------------------------- submission


def test_submit_returns_a_real_future(executor: Any) -> None:
    future = executor.submit(pow, 2, 10)
    assert isinstance(future, cf.Future)
    assert future.result(TIMEOUT) == 1024


def test_submit_passes_every_keyword_to_the_function(executor: Any) -> None:
    # Names threadloom uses elsewhere must still reach the function.
    got = executor.submit(keywords, priority=1, name="n", timeout=2, retry=None, fn=3).result(
        TIMEOUT
    )
    assert got == {"priority": 1, "name": "n", "timeout": 2, "retry": None, "fn": 3}


def test_exceptions_and_base_exceptions_land_in_the_future(executor: Any) -> None:
    def fail() -> None:
        raise KeyboardInterrupt

    assert isinstance(executor.submit(int, "x").exception(TIMEOUT), ValueError)
    assert isinstance(executor.submit(fail).exception(TIMEOUT), KeyboardInterrupt)
    # The worker survived both.
    assert executor.submit(pow, 3, 3).result(TIMEOUT) == 27


def test_constructor_errors_match(executor_cls: type[Any]) -> None:
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        executor_cls(max_workers=0)
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        executor_cls(max_workers=-1)
    with pytest.raises(TypeError, match="initializer must be a callable"):
        executor_cls(initializer=123)


def test_default_worker_count_follows_the_stdlib_rule(executor_cls: type[Any]) -> None:
    ex = executor_cls()
    try:
        if executor_cls is cf.ThreadPoolExecutor:
            cpus = os.process_cpu_count() if hasattr(os, "process_cpu_count") else os.cpu_count()
        else:
            from threadloom._limits import usable_cpu_count

            cpus = usable_cpu_count().count
        assert ex._max_workers == min(32, (cpus or 1) + 4)
    finally:
        ex.shutdown()


def test_an_invalid_python_cpu_count_does_not_stop_the_pool(
    executor_cls: type[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression (issue 11): ours raised ValueError; the stdlib ignores it.
    from threadloom._limits import usable_cpu_count

    monkeypatch.delenv("PYTHON_CPU_COUNT", raising=False)
    usable_cpu_count.cache_clear()
    probe = executor_cls()
    expected = probe._max_workers
    probe.shutdown()
    monkeypatch.setenv("PYTHON_CPU_COUNT", "abc")
    usable_cpu_count.cache_clear()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            with executor_cls() as ex:
                assert ex._max_workers == expected
                assert ex.submit(pow, 2, 3).result(TIMEOUT) == 8
    finally:
        usable_cpu_count.cache_clear()


def test_thread_names_use_the_prefix(executor_cls: type[Any]) -> None:
    barrier = threading.Barrier(3)
    ex = executor_cls(max_workers=2, thread_name_prefix="Loom")
    try:
        names = [
            ex.submit(lambda: (barrier.wait(TIMEOUT), threading.current_thread().name)[1])
            for _ in range(2)
        ]
        barrier.wait(TIMEOUT)
        assert sorted(f.result(TIMEOUT) for f in names) == ["Loom_0", "Loom_1"]
    finally:
        ex.shutdown()


def test_default_thread_names(executor_cls: type[Any]) -> None:
    with executor_cls(max_workers=1) as ex:
        name = ex.submit(lambda: threading.current_thread().name).result(TIMEOUT)
    assert name.startswith("ThreadPoolExecutor-") and name.endswith("_0")


def test_idle_workers_are_reused(executor_cls: type[Any]) -> None:
    with executor_cls(max_workers=4) as ex:
        for _ in range(20):
            ex.submit(identity, 1).result(TIMEOUT)
        assert len(ex._threads) == 1


# -------------------------------------------------------------------- map


def test_map_returns_results_in_order(executor: Any) -> None:
    assert list(executor.map(identity, range(1000))) == list(range(1000))
    assert list(executor.map(pow, [2, 3, 4], [5, 2])) == [32, 9]
    assert list(executor.map(identity, [])) == []


def test_map_submits_eagerly_and_yields_lazily(executor: Any) -> None:
    ran = threading.Event()
    results = executor.map(lambda _: ran.set(), [1])
    assert ran.wait(TIMEOUT)  # ran without anyone iterating
    assert list(results) == [None]


def test_map_raises_at_the_item_that_failed(executor: Any) -> None:
    results = executor.map(lambda x: 10 // x, [5, 2, 0, 1], chunksize=4)
    assert next(results) == 2
    assert next(results) == 5
    with pytest.raises(ZeroDivisionError):
        next(results)


class _Argument:
    """An argument whose lifetime a test follows with a weak reference."""


def _fail(argument: _Argument) -> None:
    raise ValueError("failed on purpose")


@pytest.fixture
def no_cyclic_gc() -> Any:
    # Only reference counting frees anything while the test runs: an object
    # kept by a reference cycle stays alive and the test sees it.
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.usefixtures("no_cyclic_gc")
def test_failed_calls_free_their_arguments_without_the_cyclic_gc(executor_cls: type[Any]) -> None:
    # Regression (issue 11): the error raised by map() held, through its
    # traceback, the frame of map's iterator, which held the chunk's future,
    # which held the error: 200 of 200 arguments lived until the GC ran.
    refs: list[weakref.ref[_Argument]] = []
    with executor_cls(max_workers=2) as ex:
        for _ in range(50):
            mapped, submitted = _Argument(), _Argument()
            refs += [weakref.ref(mapped), weakref.ref(submitted)]
            with contextlib.suppress(ValueError):
                list(ex.map(_fail, [mapped]))
            with contextlib.suppress(ValueError):
                ex.submit(_fail, submitted).result(TIMEOUT)
            del mapped, submitted
    # After the shutdown: a worker drops its call only after completing it.
    assert sum(ref() is not None for ref in refs) == 0


@pytest.mark.usefixtures("no_cyclic_gc")
def test_a_kept_map_error_keeps_only_the_failing_argument(executor_cls: type[Any]) -> None:
    items = [_Argument() for _ in range(10)]
    refs = [weakref.ref(item) for item in items]

    def fail_on_last(item: _Argument) -> None:
        if item is refs[-1]():
            raise ValueError("last")

    with executor_cls(max_workers=2) as ex:
        try:
            list(ex.map(fail_on_last, items, chunksize=10))
        except ValueError as exc:
            kept = exc
    del items
    # As with the stdlib: the failing call's frame (in the traceback) holds
    # its argument; the other items of the map are freed.
    assert [ref() is not None for ref in refs] == [False] * 9 + [True]
    del kept
    assert all(ref() is None for ref in refs)


def test_map_timeout(executor: Any) -> None:
    gate = threading.Event()
    try:
        results = executor.map(gate.wait, [TIMEOUT], timeout=0.05)
        with pytest.raises(cf.TimeoutError):
            next(results)
    finally:
        gate.set()


def test_map_with_chunks_keeps_order(executor: Any) -> None:
    assert list(executor.map(identity, range(2000), chunksize=7)) == list(range(2000))


@pytest.mark.parametrize("buffersize", [1, 3, 100])
def test_map_buffersize_bounds_what_is_submitted(executor_cls: type[Any], buffersize: int) -> None:
    if executor_cls is cf.ThreadPoolExecutor and sys.version_info < (3, 14):
        pytest.skip("the stdlib has buffersize from Python 3.14")
    consumed = 0
    started: list[int] = []
    lock = threading.Lock()

    def record(x: int) -> int:
        with lock:
            started.append(x)
        return x

    def source() -> Any:
        nonlocal consumed
        for i in range(50):
            consumed += 1
            yield i

    with executor_cls(max_workers=2) as ex:
        results = ex.map(record, source(), buffersize=buffersize)
        assert consumed <= buffersize
        assert list(results) == list(range(50))


def test_map_buffersize_validation(executor_cls: type[Any]) -> None:
    if executor_cls is cf.ThreadPoolExecutor and sys.version_info < (3, 14):
        pytest.skip("the stdlib has buffersize from Python 3.14")
    with executor_cls(max_workers=1) as ex:
        with pytest.raises(ValueError, match="buffersize must be None or > 0"):
            ex.map(identity, [1], buffersize=0)
        with pytest.raises(TypeError, match="buffersize must be an integer or None"):
            ex.map(identity, [1], buffersize=1.5)


# --------------------------------------------------------------- shutdown


def test_submit_after_shutdown_raises(executor_cls: type[Any]) -> None:
    ex = executor_cls(max_workers=1)
    ex.shutdown()
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        ex.submit(identity, 1)


def test_shutdown_waits_for_queued_work(executor_cls: type[Any]) -> None:
    ex = executor_cls(max_workers=1)
    gate = threading.Event()
    futures = [ex.submit(gate.wait, TIMEOUT)] + [ex.submit(identity, i) for i in range(10)]
    threading.Timer(0.01, gate.set).start()
    ex.shutdown(wait=True)
    assert all(f.done() for f in futures)
    assert [f.result(0) for f in futures[1:]] == list(range(10))


def test_shutdown_cancel_futures(executor_cls: type[Any]) -> None:
    ex = executor_cls(max_workers=1)
    gate = threading.Event()
    started = threading.Event()

    def block() -> None:
        started.set()
        gate.wait(TIMEOUT)

    running = ex.submit(block)
    assert started.wait(TIMEOUT)
    queued = [ex.submit(identity, i) for i in range(20)]
    ex.shutdown(wait=False, cancel_futures=True)
    gate.set()
    ex.shutdown(wait=True)
    assert running.result(TIMEOUT) is None
    assert all(f.cancelled() for f in queued)


def test_context_manager_shuts_down(executor_cls: type[Any]) -> None:
    with executor_cls(max_workers=2) as ex:
        future = ex.submit(identity, 5)
    assert future.done()
    with pytest.raises(RuntimeError):
        ex.submit(identity, 1)
    assert all(not t.is_alive() for t in ex._threads)


def test_failing_initializer_breaks_the_pool(executor_cls: type[Any]) -> None:
    submitted = threading.Event()

    def bad_init() -> None:
        # Fail only once every task is queued, so that they are all pending
        # when the pool breaks.
        submitted.wait(TIMEOUT)
        raise ValueError("no")

    ex = executor_cls(max_workers=1, initializer=bad_init)
    try:
        futures = [ex.submit(identity, i) for i in range(5)]
        submitted.set()
        for future in futures:
            with pytest.raises(cf.BrokenExecutor):
                future.result(TIMEOUT)
        with pytest.raises(cf.thread.BrokenThreadPool):
            ex.submit(identity, 1)
    finally:
        ex.shutdown(wait=True)


def test_initializer_runs_in_each_worker(executor_cls: type[Any]) -> None:
    local = threading.local()

    def init(value: int) -> None:
        local.value = value

    with executor_cls(max_workers=2, initializer=init, initargs=(7,)) as ex:
        assert ex.submit(lambda: local.value).result(TIMEOUT) == 7


def test_broken_thread_pool_is_the_stdlib_class() -> None:
    assert threadloom.BrokenThreadPool is cf.thread.BrokenThreadPool


# -------------------------------------------------- futures interoperate


def test_wait_and_as_completed(executor: Any) -> None:
    futures = [executor.submit(identity, i) for i in range(200)]
    done, not_done = cf.wait(futures, timeout=TIMEOUT)
    assert len(done) == 200 and not not_done
    assert sorted(f.result() for f in cf.as_completed(futures, timeout=TIMEOUT)) == list(range(200))


def test_wait_first_exception(executor: Any) -> None:
    gate = threading.Event()
    try:
        slow = executor.submit(gate.wait, TIMEOUT)
        bad = executor.submit(int, "x")
        done, not_done = cf.wait([slow, bad], timeout=TIMEOUT, return_when=cf.FIRST_EXCEPTION)
        assert bad in done and slow in not_done
    finally:
        gate.set()


def _sum_below(n: int) -> int:
    return sum(range(n))


def test_as_completed_yields_each_future_once_under_thread_switches(executor: Any) -> None:
    # Regression (issue 11): a future completing while as_completed()
    # installed its waiter was reported twice (KeyError).  A tiny switch
    # interval and a spinning thread make the window wide; tests/test_core.py
    # stages the same interleaving deterministically.
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    spinner = threading.Thread(target=spin)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    spinner.start()
    try:
        for _ in range(3000):
            futures = [executor.submit(_sum_below, k * 50) for k in range(8)]
            yielded = list(cf.as_completed(futures, timeout=TIMEOUT))
            assert len(yielded) == 8 and set(yielded) == set(futures)
    finally:
        sys.setswitchinterval(interval)
        stop.set()
        spinner.join(TIMEOUT)


def test_asyncio_interop(executor: Any) -> None:
    async def main() -> tuple[Any, Any]:
        loop = asyncio.get_running_loop()
        via_wrap = await asyncio.wrap_future(executor.submit(pow, 2, 5))
        via_loop = await loop.run_in_executor(executor, pow, 3, 2)
        return via_wrap, via_loop

    assert asyncio.run(main()) == (32, 9)


def test_asyncio_takes_it_as_the_default_executor(executor_cls: type[Any]) -> None:
    # Regression (issue 11): set_default_executor() requires an instance of
    # the stdlib's ThreadPoolExecutor (TypeError from 3.11; 3.10 warns).
    ex = executor_cls(max_workers=1, thread_name_prefix="default-pool")

    async def main() -> tuple[Any, str]:
        loop = asyncio.get_running_loop()
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            loop.set_default_executor(ex)
        value = await loop.run_in_executor(None, pow, 2, 5)
        name = await asyncio.to_thread(lambda: threading.current_thread().name)
        return value, name

    # asyncio.run() ends by shutting the default executor down.
    value, name = asyncio.run(main())
    assert value == 32 and name.startswith("default-pool")
    with pytest.raises(RuntimeError, match="shutdown"):
        ex.submit(pow, 2, 2)


def test_done_callbacks_run_once(executor: Any) -> None:
    calls: list[Any] = []
    done = threading.Event()

    def callback(f: Any) -> None:
        calls.append(f.result())
        done.set()

    future = executor.submit(identity, 3)
    future.add_done_callback(callback)
    assert done.wait(TIMEOUT)
    future.add_done_callback(lambda f: calls.append("late"))
    assert calls == [3, "late"]


# --------------------------------------------------- process-level behaviour


def _run_script(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("module", ["concurrent.futures", "threadloom"])
def test_interpreter_exit_joins_workers(module: str) -> None:
    result = _run_script(
        f"""
        import threading
        from {module} import ThreadPoolExecutor
        started = threading.Event()
        def late():
            started.set()
            threading.Event().wait(0.2)
            print("finished", flush=True)
        ex = ThreadPoolExecutor(max_workers=1)
        ex.submit(late)
        started.wait(10)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "finished"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize(
    "module",
    [
        # The stdlib pool hangs here: its child believes the parent's workers
        # still exist and never starts one.  Kept to show the difference.
        pytest.param("concurrent.futures", marks=pytest.mark.xfail(strict=True, reason="stdlib")),
        "threadloom",
    ],
)
def test_pool_works_in_a_forked_child(module: str) -> None:
    result = _run_script(
        f"""
        import os, warnings
        warnings.simplefilter("ignore", DeprecationWarning)
        from {module} import ThreadPoolExecutor
        ex = ThreadPoolExecutor(max_workers=2)
        assert ex.submit(pow, 2, 3).result(10) == 8
        pid = os.fork()
        if pid == 0:
            try:
                ok = ex.submit(pow, 3, 3).result(2) == 27
            except BaseException as exc:
                print("child failed", repr(exc), flush=True)
                ok = False
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status), flush=True)
        ex.shutdown()
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "child 0", result.stdout + result.stderr


def test_unreferenced_executor_is_collected_and_its_workers_exit(executor_cls: type[Any]) -> None:
    ex = executor_cls(max_workers=2)
    ex.submit(identity, 1).result(TIMEOUT)
    threads = list(ex._threads)
    ref = weakref.ref(ex)
    del ex
    gc.collect()
    assert ref() is None
    for t in threads:
        t.join(TIMEOUT)
        assert not t.is_alive()


# ------------------------------------------------------ threadloom only

#: Members of the stdlib's classes that ours inherits on purpose, and why each
#: reaches none of the stdlib's internals.  Anything else must be overridden.
_INHERITED_ON_PURPOSE = {
    "__enter__": "Executor's: returns self",
    "__exit__": "Executor's: calls self.shutdown(wait=True)",
    "__class_getitem__": "a generic alias, no instance",
    "BROKEN": "3.14: the class BrokenThreadPool, which ours raises",
    "prepare_context": "3.14 classmethod: WorkerContext.prepare(initializer, initargs)",
}


def test_is_a_stdlib_thread_pool_that_shares_none_of_its_internals() -> None:
    # Regression (issue 11): isinstance() was False.  Being a subclass must
    # not mean running the stdlib's code: its __init__ is never called, so a
    # stdlib method reached by inheritance would use internals that do not
    # exist.  Checked against the classes of the Python running the tests.
    ours = threadloom.ThreadPoolExecutor
    stdlib_classes = [k for k in cf.ThreadPoolExecutor.__mro__ if k is not object]
    own_classes = [k for k in ours.__mro__ if k not in stdlib_classes and k is not object]
    members = {
        name
        for k in stdlib_classes
        for name, value in vars(k).items()
        if callable(value) or isinstance(value, (classmethod, staticmethod, property))
    }
    assert {"submit", "map", "shutdown", "_adjust_thread_count", "__init__"} <= members
    inherited = {n for n in members if not any(n in vars(k) for k in own_classes)}
    assert inherited <= set(_INHERITED_ON_PURPOSE), inherited - set(_INHERITED_ON_PURPOSE)
    with ours(max_workers=1) as ex:
        assert isinstance(ex, cf.ThreadPoolExecutor)
        assert not hasattr(ex, "_work_queue") and not hasattr(ex, "_idle_semaphore")
        ex._adjust_thread_count()
        assert ex.submit(pow, 2, 3).result(TIMEOUT) == 8
        assert len(ex._threads) == 1


def test_priority_option_runs_critical_next() -> None:
    with threadloom.ThreadPoolExecutor(max_workers=1) as ex:
        gate = threading.Event()
        started = threading.Event()
        order: list[str] = []

        def block() -> None:
            started.set()
            gate.wait(TIMEOUT)

        ex.submit(block)
        assert started.wait(TIMEOUT)
        low = ex.options(priority=TaskPriority.LOW)
        for i in range(50):
            low.submit(order.append, f"low{i}")
        ex.submit(order.append, "normal")
        ex.options(priority=TaskPriority.CRITICAL).submit(order.append, "critical")
        ex.options(priority=7).submit(order.append, "seven")
        gate.set()
    assert order[:3] == ["seven", "critical", "normal"]
    assert order[3:] == [f"low{i}" for i in range(50)]


def test_options_validate_priority() -> None:
    with threadloom.ThreadPoolExecutor(max_workers=1) as ex:
        with pytest.raises(TypeError, match="priority must be one of"):
            ex.options(priority=1.5)  # type: ignore[call-overload]
        with pytest.raises(TypeError, match="priority must be one of"):
            ex.options(priority=True)
        with pytest.raises(ValueError, match="unknown priority 'urgent'"):
            ex.options(priority="urgent")
        with pytest.raises(ValueError, match="32 bits"):
            ex.options(priority=2**40)


def test_options_with_a_name_retry_or_timeout_are_managed_options() -> None:
    with threadloom.ThreadPoolExecutor(max_workers=1) as ex:
        assert type(ex.options(priority="high")) is threadloom.SubmitOptions
        for options in (
            ex.options(name="n"),
            ex.options(retry=threadloom.RetryPolicy(1)),
            ex.options(timeout=5.0, priority=2),
        ):
            assert type(options) is threadloom.ManagedOptions
            assert options.managed
            future = options.submit(pow, 2, 5)
            assert isinstance(future, threadloom.TaskFuture)
            assert future.result(TIMEOUT) == 32


@pytest.mark.parametrize(
    ("spelling", "value"),
    [("high", TaskPriority.HIGH), ("LOW", TaskPriority.LOW), ("Critical", 3), (-7, -7)],
)
def test_options_accept_the_workflow_spellings_of_priority(spelling: int | str, value: int) -> None:
    with threadloom.ThreadPoolExecutor(max_workers=1) as ex:
        options = ex.options(priority=spelling)
        assert options.priority == value
        assert type(options.priority) is int


def test_coroutines_run_on_one_loop_per_worker() -> None:
    async def loop_id() -> int:
        await asyncio.sleep(0)
        return id(asyncio.get_running_loop())

    with threadloom.ThreadPoolExecutor(max_workers=1) as ex:
        first = ex.submit(loop_id).result(TIMEOUT)
        second = ex.submit(loop_id).result(TIMEOUT)
        mapped = list(ex.map(lambda _: loop_id(), range(3)))
    assert first == second
    assert set(mapped) == {first}


def test_statistics_snapshot_adds_up() -> None:
    ex = threadloom.ThreadPoolExecutor(max_workers=2)
    try:
        futures = [ex.submit(identity, i) for i in range(100)]
        futures.append(ex.submit(int, "x"))
        cf.wait(futures, timeout=TIMEOUT)
        stats = ex.statistics()
        assert stats.submitted == 101
        assert stats.completed == 100 and stats.failed == 1
        assert (
            stats.workers_total <= 2
            and stats.workers_idle + stats.workers_busy == stats.workers_total
        )
        assert stats.run_time.count == 101
        assert 0 <= stats.wait_time.p50 <= stats.wait_time.p99 <= stats.wait_time.max
        with pytest.raises(AttributeError):
            stats.submitted = 0  # type: ignore[misc]
    finally:
        ex.shutdown()
    with pytest.raises(RuntimeError):
        ex.submit(identity, 1)
    assert ex.statistics().rejected == 1


def test_statistics_queue_depth_by_priority() -> None:
    with threadloom.ThreadPoolExecutor(max_workers=1) as ex:
        gate = threading.Event()
        started = threading.Event()

        def hold_the_worker() -> bool:
            started.set()
            return gate.wait(TIMEOUT)

        ex.submit(hold_the_worker)
        assert started.wait(TIMEOUT)
        for priority in (0, 0, 3):
            ex.options(priority=priority).submit(identity, 1)
        stats = ex.statistics()
        assert dict(stats.queue_depth_by_priority) == {0: 2, 3: 1}
        assert stats.queue_depth == 3 and stats.workers_busy == 1
        gate.set()


def test_shutdown_wait_covers_a_submit_racing_it(executor_cls: type[Any]) -> None:
    # Whatever submit() accepted while shutdown(wait=True) ran has finished
    # by the time shutdown returns.
    for _ in range(50):
        ex = executor_cls(max_workers=2)
        barrier = threading.Barrier(2)
        accepted: list[Any] = []

        def submitter(
            pool: Any = ex, start: threading.Barrier = barrier, out: list[Any] = accepted
        ) -> None:
            start.wait(TIMEOUT)
            for i in range(20):
                try:
                    out.append(pool.submit(identity, i))
                except RuntimeError:
                    return

        thread = threading.Thread(target=submitter)
        thread.start()
        barrier.wait(TIMEOUT)
        ex.shutdown(wait=True)
        thread.join(TIMEOUT)
        assert all(f.done() for f in accepted)


def test_shutdown_reruns_a_waiting_retry_even_with_no_worker_left() -> None:
    from threadloom import RetryPolicy, TaskStatus

    ex = threadloom.ThreadPoolExecutor(max_workers=2)
    ex.resize(2, 0)
    ex.idle_timeout = 0.01
    calls: list[int] = []

    def fails_once() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("first attempt")
        return "second"

    future = ex.options(retry=RetryPolicy(1, delay=60.0)).submit(fails_once)
    deadline = time.monotonic() + TIMEOUT
    while (future.status is not TaskStatus.RETRYING or ex.statistics().workers_total) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.005)
    assert future.status is TaskStatus.RETRYING and ex.statistics().workers_total == 0
    done = threading.Event()

    def shut_down_then_signal() -> None:
        ex.shutdown(wait=True)
        done.set()

    stopper = threading.Thread(target=shut_down_then_signal)
    stopper.start()
    assert done.wait(TIMEOUT), "shutdown() hung"
    assert future.result(0) == "second"
