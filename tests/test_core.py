"""The core (TaskQueue, Counters, Dispatcher, future primitives), native and twin alike."""

from __future__ import annotations

import concurrent.futures as cf
import importlib
import random
import threading
import time
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from threadloom.core._future import Future, future_class_for

from .conftest import NO_EXTENSIONS, TIMEOUT


def noop() -> None:
    return None


# ----------------------------------------------------------------- Counters


def test_counters_add_get_snapshot(core: ModuleType) -> None:
    counters = core.Counters()
    counters.add(core.COUNT_SUBMITTED)
    counters.add(core.COUNT_FAILED, 5)
    snapshot = counters.snapshot()
    assert len(snapshot) == len(core.COUNTER_NAMES) == 8
    assert snapshot[core.COUNT_SUBMITTED] == 1
    assert snapshot[core.COUNT_FAILED] == 5
    assert counters.get(core.COUNT_FAILED) == 5
    with pytest.raises(IndexError):
        counters.add(8)
    with pytest.raises(IndexError):
        counters.get(-1)


def test_counters_lose_nothing_under_concurrent_adds(core: ModuleType) -> None:
    counters = core.Counters()
    threads, per_thread = 4, 20_000
    barrier = threading.Barrier(threads)

    def bump() -> None:
        barrier.wait(TIMEOUT)
        for _ in range(per_thread):
            counters.add(core.COUNT_COMPLETED)

    workers = [threading.Thread(target=bump) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(TIMEOUT)
    assert counters.get(core.COUNT_COMPLETED) == threads * per_thread


# ---------------------------------------------------------------- TaskQueue


def test_pop_order_is_priority_then_fifo(core: ModuleType) -> None:
    queue = core.TaskQueue()
    pushed = [(p, i) for i, p in enumerate([1, 3, 0, 3, 1, -5, 2**31 - 1, 2, 1, -(2**31)])]
    for priority, i in pushed:
        queue.push(priority, noop, (i,))
    assert len(queue) == len(pushed)
    popped = [queue.pop(0) for _ in pushed]
    assert [(e[0], e[3][0]) for e in popped] == sorted(pushed, key=lambda pi: (-pi[0], pi[1]))
    sequences = [e[1] for e in popped]
    assert len(set(sequences)) == len(pushed)
    assert queue.pop(0) is None
    assert len(queue) == 0


def test_priority_must_fit_32_bits(core: ModuleType) -> None:
    queue = core.TaskQueue()
    with pytest.raises(OverflowError, match="32 bits"):
        queue.push(2**31, noop)
    with pytest.raises(OverflowError):
        queue.push(-(2**31) - 1, noop)
    with pytest.raises(ValueError, match="stripes"):
        core.TaskQueue(0)


def test_entries_keep_args_kwargs_and_future(core: ModuleType, future_cls: type) -> None:
    queue = core.TaskQueue()
    future = future_cls()
    queue.push(1, pow, (2, 3), {"mod": 5}, future)
    priority, _, fn, args, kwargs, got_future = queue.pop(0)
    assert (priority, fn, args, kwargs) == (1, pow, (2, 3), {"mod": 5})
    assert got_future is future
    queue.push(1, pow, (2, 3), {})
    assert queue.pop(0)[4] is None  # an empty kwargs dict is not kept


def test_pushes_from_many_threads_pop_in_global_order(core: ModuleType) -> None:
    # Each thread pushes to its own stripe in the native queue: the pop order
    # must still be global.
    queue = core.TaskQueue(stripes=4)
    barrier = threading.Barrier(4)
    lock = threading.Lock()
    pushed: list[tuple[int, int]] = []

    def producer(seed: int) -> None:
        rng = random.Random(seed)
        barrier.wait(TIMEOUT)
        for _ in range(500):
            priority = rng.randrange(4)
            with lock:
                sequence = queue.push(priority, noop)
                pushed.append((priority, sequence))

    threads = [threading.Thread(target=producer, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    popped = [queue.pop(0) for _ in range(len(pushed))]
    assert [(e[0], e[1]) for e in popped] == sorted(pushed, key=lambda e: (-e[0], e[1]))


def test_pop_times_out_with_none(core: ModuleType) -> None:
    queue = core.TaskQueue()
    assert queue.pop(0) is None
    assert queue.pop(0.01) is None


def test_close_wakes_blocked_pop_and_refuses_pushes(core: ModuleType) -> None:
    queue = core.TaskQueue()
    started = threading.Event()
    outcome: list[BaseException | object] = []

    def consumer() -> None:
        started.set()
        try:
            outcome.append(queue.pop())  # no timeout: only close() can end it
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=consumer)
    thread.start()
    assert started.wait(TIMEOUT)
    queue.close()
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], core.QueueClosed)
    assert queue.closed
    with pytest.raises(core.QueueClosed):
        queue.push(1, noop)


def test_closed_queue_still_hands_out_what_it_holds(core: ModuleType) -> None:
    queue = core.TaskQueue()
    queue.push(0, noop, (1,))
    queue.push(5, noop, (2,))
    queue.close()
    assert queue.pop()[3] == (2,)
    assert queue.pop()[3] == (1,)
    with pytest.raises(core.QueueClosed):
        queue.pop()
    queue.reopen()
    queue.push(1, noop)
    assert len(queue) == 1


def test_cancelled_entries_are_skipped_and_notified(core: ModuleType, future_cls: type) -> None:
    queue = core.TaskQueue()
    futures = [future_cls() for _ in range(3)]
    for i, f in enumerate(futures):
        queue.push(1, noop, (i,), None, f)
    assert futures[0].cancel()
    done_waiter = threading.Thread(target=lambda: cf.wait([futures[0]], timeout=TIMEOUT))
    done_waiter.start()
    entry = queue.pop(0)
    assert entry[5] is futures[1]
    # Lazy removal moved the skipped future to CANCELLED_AND_NOTIFIED, which
    # is what wait() needs to see it as done.
    assert futures[0]._state == "CANCELLED_AND_NOTIFIED"
    done_waiter.join(TIMEOUT)
    assert not done_waiter.is_alive()
    assert queue.take_cancelled_skipped() == 1
    assert queue.take_cancelled_skipped() == 0


def test_purge_and_drain(core: ModuleType, future_cls: type) -> None:
    queue = core.TaskQueue()
    futures = [future_cls() for _ in range(6)]
    for i, f in enumerate(futures):
        queue.push(i % 3, noop, (i,), None, f)
    for f in futures[::2]:
        f.cancel()
    assert queue.depth_by_priority() == {0: 2, 1: 2, 2: 2}
    assert queue.purge_cancelled() == 3
    assert len(queue) == 3
    assert all(f._state == "CANCELLED_AND_NOTIFIED" for f in futures[::2])
    drained = queue.drain()
    assert [e[3][0] for e in drained] == [5, 1, 3]
    assert len(queue) == 0


def test_every_item_popped_exactly_once_under_contention(core: ModuleType) -> None:
    queue = core.TaskQueue(stripes=3)
    producers, consumers, per_producer = 3, 3, 4000
    barrier = threading.Barrier(producers + consumers)
    seen: list[list[int]] = [[] for _ in range(consumers)]

    def produce(p: int) -> None:
        barrier.wait(TIMEOUT)
        for i in range(per_producer):
            queue.push(i % 4, noop, (p * per_producer + i,))

    def consume(c: int) -> None:
        barrier.wait(TIMEOUT)
        while True:
            try:
                entry = queue.pop(TIMEOUT)
            except core.QueueClosed:
                return
            if entry is None:
                return  # a stuck queue: the assertion below fails
            seen[c].append(entry[3][0])

    threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    threads += [threading.Thread(target=consume, args=(c,)) for c in range(consumers)]
    for t in threads:
        t.start()
    for t in threads[:producers]:
        t.join(TIMEOUT)
    queue.close()
    for t in threads[producers:]:
        t.join(TIMEOUT)
        assert not t.is_alive()
    everything = sorted(x for part in seen for x in part)
    assert everything == list(range(producers * per_producer))


# ------------------------------------------- native queue vs twin (oracle)


def _native_or_skip() -> ModuleType:
    try:
        return importlib.import_module("threadloom.core._core")
    except ImportError:
        if NO_EXTENSIONS:
            pytest.skip("native core not built")
        raise


class QueueAgainstTwin(RuleBasedStateMachine):
    """Random push/pop/cancel/purge/close sequences: native and twin agree."""

    def __init__(self) -> None:
        super().__init__()
        self.native = importlib.import_module("threadloom.core._core")
        self.twin = importlib.import_module("threadloom.core._core_py")
        self.native_future = future_class_for(self.native)
        self.twin_future = future_class_for(self.twin)
        self.queues = (self.native.TaskQueue(stripes=3), self.twin.TaskQueue())
        self.futures: list[tuple[Any, Any]] = []
        self.closed = False

    @precondition(lambda self: not self.closed)
    @rule(priority=st.integers(-3, 3), with_future=st.booleans())
    def push(self, priority: int, with_future: bool) -> None:
        index = len(self.futures)
        pair = (self.native_future(), self.twin_future()) if with_future else (None, None)
        self.futures.append(pair)
        sequences = [
            q.push(priority, noop, (index,), None, f)
            for q, f in zip(self.queues, pair, strict=True)
        ]
        assert sequences[0] == sequences[1]

    @rule()
    def pop(self) -> None:
        outcomes: list[tuple[Any, Any, Any] | str | None] = []
        closed_errors = (self.native.QueueClosed, self.twin.QueueClosed)
        for queue, closed_error in zip(self.queues, closed_errors, strict=True):
            try:
                entry = queue.pop(0)
                outcomes.append(None if entry is None else (entry[0], entry[1], entry[3]))
            except closed_error:
                outcomes.append("closed")
        assert outcomes[0] == outcomes[1]

    @precondition(lambda self: self.futures)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.futures) - 1))
        native_future, twin_future = self.futures[index]
        if native_future is not None:
            assert native_future.cancel() == twin_future.cancel()

    @rule()
    def purge(self) -> None:
        assert self.queues[0].purge_cancelled() == self.queues[1].purge_cancelled()

    @rule()
    def close(self) -> None:
        self.closed = True
        for queue in self.queues:
            queue.close()

    @invariant()
    def same_length_and_depth(self) -> None:
        assert len(self.queues[0]) == len(self.queues[1])
        assert self.queues[0].depth_by_priority() == self.queues[1].depth_by_priority()


def test_native_queue_matches_twin() -> None:
    _native_or_skip()
    machine = QueueAgainstTwin.TestCase
    machine.settings = settings(
        max_examples=60,
        stateful_step_count=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    machine().runTest()


# ------------------------------------------------------- future primitives


def test_future_is_a_stdlib_future_with_stdlib_semantics(future_cls: type) -> None:
    f = future_cls()
    assert isinstance(f, cf.Future)
    assert not f.done() and not f.running() and not f.cancelled()
    assert "state=pending" in repr(f)
    assert f.set_running_or_notify_cancel()
    assert f.running() and not f.cancel()
    f.set_result(42)
    assert f.done() and f.result(0) == 42 and f.exception(0) is None
    assert "returned int" in repr(f)
    with pytest.raises(cf.InvalidStateError):
        f.set_result(1)
    with pytest.raises(cf.InvalidStateError):
        f.set_exception(ValueError())


def test_future_exception_and_cancel(future_cls: type) -> None:
    failed = future_cls()
    failed.set_exception(KeyError("x"))
    assert isinstance(failed.exception(0), KeyError)
    with pytest.raises(KeyError):
        failed.result(0)
    assert "raised KeyError" in repr(failed)

    cancelled = future_cls()
    calls: list[Any] = []
    cancelled.add_done_callback(calls.append)
    assert cancelled.cancel() and cancelled.cancel()
    assert calls == [cancelled] and cancelled.cancelled() and cancelled.done()
    with pytest.raises(cf.CancelledError):
        cancelled.result(0)
    with pytest.raises(cf.CancelledError):
        cancelled.exception(0)
    assert not cancelled.set_running_or_notify_cancel()
    with pytest.raises(RuntimeError, match="unexpected state"):
        cancelled.set_running_or_notify_cancel()


def test_force_cancel_ends_a_running_future_and_tells_its_waiters(
    future_cls: type[Future[Any]],
) -> None:
    core = future_cls._core
    f = future_cls()
    assert f.set_running_or_notify_cancel() and not f.cancel()
    calls: list[Any] = []
    waited: list[Any] = []
    f.add_done_callback(calls.append)
    waiting = threading.Thread(target=lambda: waited.append(cf.wait([f], timeout=TIMEOUT)))
    waiting.start()
    assert core.future_force_cancel(f)
    waiting.join(TIMEOUT)
    assert calls == [f] and waited[0].done == {f}
    assert f.cancelled() and f.done()
    with pytest.raises(cf.CancelledError):
        f.result(0)
    assert not core.future_force_cancel(f)
    finished = future_cls()
    finished.set_result(1)
    assert not core.future_force_cancel(finished) and finished.result(0) == 1
    assert calls == [f]


def test_result_timeout_and_callbacks_after_done(future_cls: type) -> None:
    f = future_cls()
    with pytest.raises(cf.TimeoutError):
        f.result(timeout=0.01)
    with pytest.raises(cf.TimeoutError):
        f.exception(timeout=0)
    order: list[str] = []
    f.add_done_callback(lambda _: order.append("before"))
    f.add_done_callback(lambda _: 1 / 0)  # logged, not raised, the next one still runs
    f.add_done_callback(lambda _: order.append("second"))
    f.set_result(None)
    f.add_done_callback(lambda _: order.append("after"))
    assert order == ["before", "second", "after"]


def _exit_now(_: Any) -> None:
    raise SystemExit(3)


def test_a_callbacks_system_exit_reaches_the_caller_once_every_callback_ran(
    future_cls: type, caplog: pytest.LogCaptureFixture
) -> None:
    # As the stdlib's set_result() does, a SystemExit from a callback is
    # raised to the caller; unlike it, the callbacks after it still run.
    calls: list[str] = []

    def interrupt(_: Any) -> None:
        calls.append("interrupt")
        raise KeyboardInterrupt

    for complete in ("set_result", "set_exception", "cancel"):
        calls.clear()
        f = future_cls()
        f.add_done_callback(lambda _: calls.append("before"))
        f.add_done_callback(_exit_now)
        f.add_done_callback(interrupt)  # the second is logged, the first raised
        f.add_done_callback(lambda _: calls.append("after"))
        with caplog.at_level("CRITICAL", logger="concurrent.futures"):
            caplog.clear()
            with pytest.raises(SystemExit):
                if complete == "set_result":
                    f.set_result(1)
                elif complete == "set_exception":
                    f.set_exception(ValueError())
                else:
                    f.cancel()
        assert calls == ["before", "interrupt", "after"], complete
        assert f.done()
        assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [KeyboardInterrupt]
    with pytest.raises(SystemExit):
        f.add_done_callback(_exit_now)  # on a done future: at once, as the stdlib


def test_waiter_arriving_during_completion_never_misses_it(future_cls: type) -> None:
    # The lazily created condition is the risky part: hammer the window
    # between "complete" and "someone starts waiting".
    for _ in range(300):
        f = future_cls()
        barrier = threading.Barrier(2)

        def complete(future: Any = f, start: threading.Barrier = barrier) -> None:
            start.wait(TIMEOUT)
            future.set_result(1)

        thread = threading.Thread(target=complete)
        thread.start()
        barrier.wait(TIMEOUT)
        done, not_done = cf.wait([f], timeout=TIMEOUT)
        assert done == {f} and not not_done
        assert f.result(TIMEOUT) == 1
        thread.join(TIMEOUT)


def test_as_completed_with_lazy_and_stdlib_futures(future_cls: type) -> None:
    ours = [future_cls() for _ in range(5)]
    theirs: list[cf.Future[Any]] = [cf.Future() for _ in range(5)]
    everything = ours + theirs

    def finish_all() -> None:
        for i, f in enumerate(everything):
            f.set_result(i)

    thread = threading.Thread(target=finish_all)
    thread.start()
    results = sorted(f.result() for f in cf.as_completed(everything, timeout=TIMEOUT))
    thread.join(TIMEOUT)
    assert results == list(range(10))


class _GatedCondition(threading.Condition):
    """A future's condition that stages the race between a completion and
    ``as_completed()``: the completer's first acquisition waits until the
    consumer has taken its snapshot (acquire, read, release); the consumer's
    next ``with`` (to remove its waiter) waits until the completer is done."""

    def __init__(self, completer: threading.Thread) -> None:
        super().__init__()
        self.completer = completer
        self.completer_arrived = threading.Event()
        self.snapshot_taken = threading.Event()
        self.completer_done = threading.Event()
        plain_acquire, plain_release = self.acquire, self.release

        def acquire(blocking: bool = True, timeout: float = -1) -> bool:
            if threading.current_thread() is self.completer:
                self._hold_completer()
            return plain_acquire(blocking, timeout)

        def release() -> None:
            plain_release()
            if threading.current_thread() is not self.completer:
                self.snapshot_taken.set()

        self.acquire = acquire  # type: ignore[method-assign]
        self.release = release  # type: ignore[method-assign]

    def _hold_completer(self) -> None:
        if not self.completer_arrived.is_set():
            self.completer_arrived.set()
            assert self.snapshot_taken.wait(TIMEOUT)

    def __enter__(self) -> bool:
        if threading.current_thread() is self.completer:
            self._hold_completer()
        else:
            assert self.completer_done.wait(TIMEOUT)
        return super().__enter__()


@pytest.mark.parametrize("completion", ["result", "exception", "notify_cancel", "force_cancel"])
def test_as_completed_never_sees_a_completion_twice(
    future_cls: type[Future[Any]], completion: str
) -> None:
    # Regression: the state was written before the condition was taken, so
    # as_completed() could count the future done, install its waiter, and
    # then be told by the completer too: KeyError from as_completed.
    f, g = future_cls(), future_cls()
    if completion == "notify_cancel":
        assert f.cancel()
    else:
        assert f.set_running_or_notify_cancel()

    def complete() -> None:
        if completion == "result":
            f.set_result("f")
        elif completion == "exception":
            f.set_exception(ValueError("f"))
        elif completion == "force_cancel":
            assert future_cls._core.future_force_cancel(f)
        else:
            assert not f.set_running_or_notify_cancel()
        condition.completer_done.set()

    completer = threading.Thread(target=complete)
    condition = _GatedCondition(completer)
    f._tl_waiters = []
    f._tl_condition = condition
    completer.start()
    assert condition.completer_arrived.wait(TIMEOUT)
    seen: list[Any] = []
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            seen.extend(cf.as_completed([f, g], timeout=TIMEOUT))
        except BaseException as exc:
            errors.append(exc)

    consumer = threading.Thread(target=consume)
    consumer.start()
    completer.join(TIMEOUT)
    assert not completer.is_alive()
    g.set_result("g")
    consumer.join(TIMEOUT)
    assert not consumer.is_alive()
    assert errors == []
    assert seen == [f, g]


# --------------------------------------------------------------- Dispatcher


def _run_pool(core: ModuleType, dispatcher: Any) -> list[threading.Thread]:
    threads: list[threading.Thread] = []

    def spawn() -> None:
        t = threading.Thread(target=dispatcher.run_worker)
        threads.append(t)
        t.start()

    dispatcher.spawn = spawn
    return threads


def test_dispatcher_runs_and_counts(core: ModuleType) -> None:
    dispatcher = core.Dispatcher(2)
    threads = _run_pool(core, dispatcher)
    ok = [dispatcher.submit(1, pow, (2, i), None) for i in range(50)]
    bad = dispatcher.submit(1, int, ("x",), None)
    kw = dispatcher.submit(1, int, ("ff",), {"base": 16})
    assert [f.result(TIMEOUT) for f in ok] == [2**i for i in range(50)]
    assert isinstance(bad.exception(TIMEOUT), ValueError)
    assert kw.result(TIMEOUT) == 255
    assert len(threads) <= 2
    dispatcher.close()
    for t in threads:
        t.join(TIMEOUT)
        assert not t.is_alive()
    counts = dict(zip(core.COUNTER_NAMES, dispatcher.counters.snapshot(), strict=True))
    assert counts["submitted"] == 52
    assert counts["completed"] == 51 and counts["failed"] == 1 and counts["started"] == 52
    assert dispatcher.threads == 0
    assert len(dispatcher.run_samples()) == 52


def test_dispatcher_base_exception_does_not_kill_worker(core: ModuleType) -> None:
    dispatcher = core.Dispatcher(1)
    threads = _run_pool(core, dispatcher)

    def exit_now() -> None:
        raise SystemExit(3)

    first = dispatcher.submit(1, exit_now, (), None)
    second = dispatcher.submit(1, pow, (3, 2), None)
    assert isinstance(first.exception(TIMEOUT), SystemExit)
    assert second.result(TIMEOUT) == 9
    assert len(threads) == 1 and threads[0].is_alive()
    dispatcher.close()
    threads[0].join(TIMEOUT)


@pytest.mark.parametrize("outcome", ["result", "exception"])
def test_dispatcher_worker_survives_a_callbacks_system_exit(
    core: ModuleType, outcome: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Regression (issue 11): the twin's worker died (as the stdlib's does,
    # leaving a one-worker pool hung); the native one went on.  Both go on
    # now, and log it at CRITICAL as the stdlib does.
    dispatcher = core.Dispatcher(1)
    threads = _run_pool(core, dispatcher)
    gate = threading.Event()
    task = (gate.wait, (TIMEOUT,)) if outcome == "result" else (int, ("x",))
    blocker = dispatcher.submit(1, gate.wait, (TIMEOUT,), None)
    first = dispatcher.submit(1, task[0], task[1], None)
    ran: list[Any] = []
    first.add_done_callback(_exit_now)
    first.add_done_callback(ran.append)
    try:
        with caplog.at_level("CRITICAL", logger="concurrent.futures"):
            gate.set()
            assert blocker.result(TIMEOUT) is True
            second = dispatcher.submit(1, pow, (3, 2), None)
            assert second.result(TIMEOUT) == 9
        assert ran == [first]
        assert len(threads) == 1 and threads[0].is_alive()
    finally:
        gate.set()
        dispatcher.close()
        for t in threads:
            t.join(TIMEOUT)
    logged = [r for r in caplog.records if r.levelname == "CRITICAL" and r.exc_info]
    assert len(logged) == 1 and logged[0].exc_info is not None
    assert logged[0].exc_info[0] is SystemExit
    assert "Exception in worker" in logged[0].getMessage()
    assert not threads[0].is_alive()


def test_dispatcher_skips_cancelled_and_counts_once(core: ModuleType) -> None:
    dispatcher = core.Dispatcher(1)
    threads = _run_pool(core, dispatcher)
    gate = threading.Event()
    blocker = dispatcher.submit(1, gate.wait, (TIMEOUT,), None)
    queued = [dispatcher.submit(1, noop, (), None) for _ in range(5)]
    assert all(f.cancel() for f in queued[::2])
    gate.set()
    assert blocker.result(TIMEOUT) is True
    for f in queued[1::2]:
        f.result(TIMEOUT)
    dispatcher.close()
    threads[0].join(TIMEOUT)
    counts = dict(zip(core.COUNTER_NAMES, dispatcher.counters.snapshot(), strict=True))
    assert counts["cancelled"] == 3
    assert counts["submitted"] == counts["completed"] + counts["cancelled"] == 6


def test_dispatcher_idle_workers_retire_to_min_and_come_back(core: ModuleType) -> None:
    dispatcher = core.Dispatcher(3, min_workers=1, idle_timeout=0.05)
    threads = _run_pool(core, dispatcher)
    gate = threading.Event()
    started = threading.Semaphore(0)

    def hold() -> None:
        started.release()
        gate.wait(TIMEOUT)

    held = [dispatcher.submit(1, hold, (), None) for _ in range(3)]
    for _ in range(3):
        assert started.acquire(timeout=TIMEOUT)
    assert dispatcher.threads == 3
    gate.set()
    for f in held:
        f.result(TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    while dispatcher.threads > 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert dispatcher.threads == 1
    # The survivor (or a new worker) still runs new work.
    assert dispatcher.submit(1, pow, (2, 2), None).result(TIMEOUT) == 4
    dispatcher.close()
    for t in threads:
        t.join(TIMEOUT)
        assert not t.is_alive()


def test_dispatcher_never_strands_work_while_retiring(core: ModuleType) -> None:
    # min_workers=0: every idle worker may retire.  Submissions that race
    # with retirement must still run.
    dispatcher = core.Dispatcher(2, min_workers=0, idle_timeout=0.001)
    _run_pool(core, dispatcher)
    for _ in range(200):
        assert dispatcher.submit(1, pow, (2, 3), None).result(TIMEOUT) == 8
    dispatcher.close()


def test_dispatcher_validates_limits(core: ModuleType) -> None:
    with pytest.raises(ValueError, match="max_workers"):
        core.Dispatcher(0)
    with pytest.raises(ValueError, match="min_workers"):
        core.Dispatcher(2, min_workers=3)
    with pytest.raises(ValueError, match="idle_timeout"):
        core.Dispatcher(2, idle_timeout=0)
    with pytest.raises(TypeError, match="idle_timeout"):
        core.Dispatcher(2, idle_timeout="1")


def test_run_chunk_stops_at_the_failing_item(core: ModuleType) -> None:
    results, error = core.run_chunk(lambda x: 10 // x, [5, 2, 0, 1], 0, 4, False, None)
    assert results == [2, 5] and isinstance(error, ZeroDivisionError)
    results, error = core.run_chunk(pow, [(2, 1), (2, 2), (2, 3)], 1, 10, True, None)
    assert results == [4, 8] and error is None


def test_dispatcher_starts_a_worker_for_every_blocked_task_up_to_max(core: ModuleType) -> None:
    # Regression: a worker that had popped a task but not yet marked itself
    # busy was counted as idle, so the last of several quick submits could
    # sit in the queue behind busy workers while the pool was below max.
    for _ in range(20):
        dispatcher = core.Dispatcher(4, min_workers=1)
        threads = _run_pool(core, dispatcher)
        assert dispatcher.reserve_worker_unconditionally()
        dispatcher.spawn()
        release = threading.Event()
        barrier = threading.Barrier(5)

        def hold(start: threading.Barrier = barrier, done: threading.Event = release) -> None:
            start.wait(TIMEOUT)
            done.wait(TIMEOUT)

        futures = [dispatcher.submit(1, hold, (), None) for _ in range(4)]
        barrier.wait(TIMEOUT)  # all four run at once, or this raises
        release.set()
        for f in futures:
            f.result(TIMEOUT)
        dispatcher.close()
        for t in threads:
            t.join(TIMEOUT)
