"""The event stream: records, the bus's delivery guarantees, and the emitters."""

from __future__ import annotations

import dataclasses
import threading
from datetime import datetime, timezone
from typing import Any

import pytest

from threadloom import RetryPolicy, TaskManager, TaskStatus, ThreadPoolManager
from threadloom import events as ev
from threadloom.resource_monitor import ResourceMonitor
from threadloom.scheduling import CronSchedule, Scheduler
from threadloom.scheduling.clock import ManualClock

WAIT = 10.0


class Recorder:
    """A thread-safe subscriber that lets a test wait for a given event."""

    def __init__(self) -> None:
        self.events: list[ev.Event] = []
        self._cond = threading.Condition()

    def __call__(self, event: ev.Event) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait_for(self, predicate: Any, timeout: float = WAIT) -> ev.Event:
        with self._cond:
            found: list[ev.Event] = []

            def check() -> bool:
                found[:] = [e for e in self.events if predicate(e)]
                return bool(found)

            assert self._cond.wait_for(check, timeout), f"no such event in {self.events}"
            return found[0]

    def of(self, kind: str) -> list[Any]:
        with self._cond:
            return [e for e in self.events if e.kind == kind]


# -- records -------------------------------------------------------------------


def test_events_are_frozen_with_a_kind_and_a_timestamp() -> None:
    event = ev.task_queued("task-1", "fetch", 2)
    assert event.kind == "task_queued"
    assert event.timestamp > 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.name = "other"  # type: ignore[misc]
    assert event.to_dict() == {
        "kind": "task_queued",
        "timestamp": event.timestamp,
        "task_id": "task-1",
        "name": "fetch",
        "priority": 2,
        "execution_id": None,
    }
    assert len(ev.KINDS) == 13  # twelve kinds, and a profiled attempt (task_profiled)


def test_finished_event_carries_the_error_and_its_traceback() -> None:
    try:
        raise KeyError("missing")
    except KeyError as exc:
        error = exc
    event = ev.task_finished("t", None, 1, "failed", 2, 10.0, 12.5, 13.0, error)
    assert (event.status, event.attempts, event.wait_time, event.run_time) == (
        "failed",
        2,
        2.5,
        0.5,
    )
    assert event.error_type == "KeyError"
    assert event.message == "'missing'"
    assert "raise KeyError" in event.traceback
    assert event.traceback.startswith("Traceback (most recent call last)")


def test_a_huge_traceback_is_cut_to_its_tail() -> None:
    error = ValueError("x" * (ev.MAX_TRACEBACK_CHARS * 2))
    event = ev.task_finished("t", None, 1, "failed", 1, None, None, None, error)
    assert len(event.traceback) <= ev.MAX_TRACEBACK_CHARS + 10
    assert event.traceback.startswith("...")


# -- the bus -------------------------------------------------------------------


def test_active_follows_the_subscriptions() -> None:
    bus = ev.EventBus()
    assert not bus.active
    first = bus.subscribe(lambda e: None)
    second = bus.subscribe(lambda e: None)
    assert bus.active
    first.unsubscribe()
    assert bus.active
    second.unsubscribe()
    assert not bus.active
    second.unsubscribe()  # twice is harmless


def test_delivery_is_in_order_and_filtered_by_kind() -> None:
    bus = ev.EventBus()
    everything, finished = Recorder(), Recorder()
    with bus.subscribe(everything), bus.subscribe(finished, kinds=[ev.TaskFinished]) as sub:
        for i in range(100):
            bus.emit(ev.task_queued(f"t{i}", None, 1))
            bus.emit(ev.task_finished(f"t{i}", None, 1, "completed", 1, 0.0, 0.0, 0.0))
        assert sub.flush(WAIT)
        everything.wait_for(lambda e: e.kind == "task_finished" and e.task_id == "t99")
    assert [e.task_id for e in finished.events] == [f"t{i}" for i in range(100)]  # type: ignore[attr-defined]
    assert len(everything.events) == 200
    assert everything.events[0].task_id == "t0"  # type: ignore[attr-defined]


def test_callbacks_run_on_the_subscription_thread() -> None:
    bus = ev.EventBus("mybus")
    threads: list[str] = []
    with bus.subscribe(lambda e: threads.append(threading.current_thread().name)) as sub:
        bus.emit(ev.workers_changed(1, 2, 2))
        assert sub.flush(WAIT)
    assert threads == ["threadloom-events-mybus"]


def test_bad_subscriptions_are_refused_with_a_clear_error() -> None:
    bus = ev.EventBus()
    with pytest.raises(TypeError, match="callable"):
        bus.subscribe(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown event kind 'task_done'"):
        bus.subscribe(print, kinds=["task_done"])
    with pytest.raises(ValueError, match="buffer_size"):
        bus.subscribe(print, buffer_size=0)
    assert not bus.active


def test_a_raising_subscriber_is_counted_and_others_still_get_everything(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = ev.EventBus()
    good = Recorder()

    def bad(event: ev.Event) -> None:
        raise RuntimeError("subscriber bug")

    with bus.subscribe(bad) as bad_sub, bus.subscribe(good):
        for i in range(5):
            bus.emit(ev.task_queued(f"t{i}", None, 1))
        assert bad_sub.flush(WAIT)
        good.wait_for(lambda e: e.task_id == "t4")
    assert bad_sub.errors == 5
    assert bad_sub.delivered == 5
    assert len(good.events) == 5
    assert "subscriber bug" in caplog.text


def test_a_stuck_subscriber_drops_its_oldest_events_and_never_blocks_the_emitter() -> None:
    bus = ev.EventBus()
    entered, release = threading.Event(), threading.Event()
    seen: list[str] = []

    def stuck(event: ev.Event) -> None:
        seen.append(event.task_id)  # type: ignore[attr-defined]
        entered.set()
        assert release.wait(WAIT)

    sub = bus.subscribe(stuck, buffer_size=3)
    try:
        bus.emit(ev.task_queued("t0", None, 1))
        assert entered.wait(WAIT)
        # The subscriber is stuck inside its callback: emitting returns at once.
        for i in range(1, 11):
            bus.emit(ev.task_queued(f"t{i}", None, 1))
        assert sub.dropped == 7
        release.set()
        assert sub.flush(WAIT)
    finally:
        release.set()
        sub.unsubscribe()
    assert seen == ["t0", "t8", "t9", "t10"]


def test_a_callback_may_unsubscribe_itself() -> None:
    bus = ev.EventBus()
    done = threading.Event()
    holder: list[ev.Subscription] = []

    def once(event: ev.Event) -> None:
        holder[0].unsubscribe()
        done.set()

    holder.append(bus.subscribe(once))
    bus.emit(ev.task_queued("t", None, 1))
    assert done.wait(WAIT)
    assert not bus.active
    holder[0]._thread.join(WAIT)
    assert not holder[0]._thread.is_alive()


def test_unsubscribe_delivers_what_was_buffered_then_ends_the_thread() -> None:
    bus = ev.EventBus()
    got = Recorder()
    sub = bus.subscribe(got)
    for i in range(50):
        bus.emit(ev.task_queued(f"t{i}", None, 1))
    assert sub.unsubscribe(WAIT)
    assert len(got.events) == 50
    bus.emit(ev.task_queued("late", None, 1))
    assert len(got.events) == 50


# -- the emitters --------------------------------------------------------------


def test_pool_reports_each_task_and_attempt() -> None:
    got = Recorder()
    with ThreadPoolManager(1, 2) as pool, pool.subscribe(got):

        def flaky() -> None:
            raise ValueError("nope")

        failing = pool.submit_call(flaky, retry=RetryPolicy(1, delay=0.01), name="flaky")
        ok = pool.submit_call(lambda: 42, name="ok")
        assert pool.wait_all(WAIT)
        got.wait_for(lambda e: e.kind == "task_finished" and e.task_id == failing)
        got.wait_for(lambda e: e.kind == "task_finished" and e.task_id == ok)

    def of(task_id: str) -> list[Any]:
        return [e for e in got.events if getattr(e, "task_id", None) == task_id]

    assert [e.kind for e in of(ok)] == ["task_queued", "task_started", "task_finished"]
    assert of(ok)[-1].status == "completed"
    assert of(ok)[1].worker.startswith("threadloom-pool")
    kinds = [e.kind for e in of(failing)]
    assert kinds == [
        "task_queued",
        "task_started",
        "task_retrying",
        "task_started",
        "task_finished",
    ]
    retrying, finished = of(failing)[2], of(failing)[-1]
    assert (retrying.attempt, retrying.error_type, retrying.delay) == (1, "ValueError", 0.01)
    assert [e.attempt for e in of(failing) if e.kind == "task_started"] == [1, 2]
    assert (finished.status, finished.attempts, finished.error_type) == ("failed", 2, "ValueError")
    assert "in flaky" in finished.traceback
    assert finished.name == "flaky"


def test_a_stuck_subscriber_does_not_delay_or_lose_tasks() -> None:
    release = threading.Event()
    with ThreadPoolManager(2, 2) as pool:
        sub = pool.subscribe(lambda e: release.wait(WAIT), kinds=["task_finished"])
        try:
            ids = [pool.submit(lambda i=i: i) for i in range(200)]
            assert pool.wait_all(WAIT)
            assert [pool.get_task_result(t, 0) for t in ids] == list(range(200))
        finally:
            release.set()
            sub.unsubscribe()
    assert sub.delivered + sub.dropped == 200


def test_unobserved_pool_emits_nothing_and_builds_no_wrapper() -> None:
    with ThreadPoolManager(1, 1) as pool:
        seen: list[Any] = []
        task = pool.submit_future(lambda: seen.append(1))
        task.result(WAIT)
        assert not pool.events.active
        # Subscribing later sees only later tasks.
        got = Recorder()
        with pool.subscribe(got):
            later = pool.submit(lambda: None)
            got.wait_for(lambda e: e.kind == "task_finished" and e.task_id == later)
        assert {getattr(e, "task_id", None) for e in got.events} == {later}


def test_task_manager_reports_executions_and_every_run() -> None:
    got = Recorder()
    with TaskManager() as manager, manager.subscribe(got):

        def broken() -> None:
            raise RuntimeError("upstream broke")

        a = manager.register_task("a", broken)
        b = manager.register_task("b", lambda: None, dependencies=[a])
        (execution_id,) = manager.execute_tasks([b], wait=True)
        finished = got.wait_for(
            lambda e: e.kind == "execution_finished" and e.execution_id == execution_id
        )
    started = got.wait_for(lambda e: e.kind == "execution_started")
    assert isinstance(started, ev.ExecutionStarted)
    assert isinstance(finished, ev.ExecutionFinished)
    assert set(started.tasks) == {a, b}
    assert started.targets == (b,)
    assert finished.status == "failed"
    assert "upstream broke" in finished.error
    runs = {e.task_id: e for e in got.of("task_finished") if e.execution_id == execution_id}
    assert runs[a].status == "failed"
    assert "upstream broke" in runs[a].traceback
    assert runs[b].status == "upstream_failed"
    # A graph's run is reported once, by its manager, under the registered
    # task's id (the pool runs it as the graph's, not as a pool task).
    assert [e.task_id for e in got.of("task_finished")] == [a, b]
    assert not got.of("task_queued") and not got.of("task_started")


def test_scheduler_reports_fired_and_missed_runs() -> None:
    start = datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc)
    clock = ManualClock(start)
    submitted = threading.Event()
    scheduler = Scheduler(lambda job, fire: submitted.set(), clock)
    got = Recorder()
    scheduler.start()
    try:
        with scheduler.subscribe(got):
            scheduler.add("job", CronSchedule("* * * * *", "UTC", misfire_grace_time=1))
            assert clock.wait_for_sleepers(timeout=WAIT)
            clock.advance(90)  # 12:01 is missed by 30 s
            missed = got.wait_for(lambda e: e.kind == "schedule_missed")
            assert clock.wait_for_sleepers(timeout=WAIT)
            clock.advance(30)  # 12:02 fires on time
            fired = got.wait_for(lambda e: e.kind == "schedule_fired")
    finally:
        assert scheduler.stop(timeout=WAIT)
    assert isinstance(missed, ev.ScheduleMissed) and isinstance(fired, ev.ScheduleFired)
    assert (missed.job_id, missed.reason) == ("job", "misfire")
    assert missed.fire_time.startswith("2024-01-01T12:01")
    assert fired.fire_time.startswith("2024-01-01T12:02")
    assert submitted.is_set()


def test_resource_monitor_reports_samples_and_alerts() -> None:
    monitor = ResourceMonitor(check_interval=60, disk_threshold=0.001)
    got = Recorder()
    with monitor.subscribe(got):
        sample = monitor.sample_now()
        sampled = got.wait_for(lambda e: e.kind == "resource_sampled")
        raised = got.wait_for(lambda e: e.kind == "alert_raised" and e.resource == "disk")
        monitor.update_thresholds(disk_threshold=100.0)
        monitor.sample_now()
        cleared = got.wait_for(lambda e: e.kind == "alert_cleared" and e.resource == "disk")
    assert isinstance(sampled, ev.ResourceSampled)
    assert isinstance(raised, ev.AlertRaised) and isinstance(cleared, ev.AlertCleared)
    assert sampled.memory_percent == pytest.approx(sample.memory_percent)
    assert sampled.usable_cpus == sample.cpu_count
    assert (raised.resource, raised.threshold) == ("disk", 0.001)
    assert cleared.resource == "disk"


def test_a_rate_limited_subscriber_gets_a_sample_of_whole_tasks() -> None:
    limited, everything = Recorder(), Recorder()
    with ThreadPoolManager(2, 2) as pool:
        with pool.events.subscribe(limited, max_task_rate=1.0) as sub:
            ids = [pool.submit(lambda: None) for _ in range(300)]
            assert pool.wait_all(WAIT)
            assert sub.flush(WAIT)
        # One subscriber wanting every task makes the pool report every task.
        with pool.events.subscribe(limited, max_task_rate=1.0), pool.subscribe(everything) as all_:
            more = [pool.submit(lambda: None) for _ in range(50)]
            assert pool.wait_all(WAIT)
            assert all_.flush(WAIT)
    assert all(pool.get_task_status(t) is TaskStatus.COMPLETED for t in ids)
    reported = {e.task_id for e in limited.events if isinstance(e, ev.TaskQueued)}
    # One task per 0.1 s window at 1 task/s: far fewer than submitted (the
    # 300 submissions would have to take 30 s to report them all).
    assert 1 <= len(reported & set(ids)) < 300
    # Whole tasks: each sampled task's events are all there, in order.
    for task_id in reported & set(ids):
        kinds = [e.kind for e in limited.events if getattr(e, "task_id", None) == task_id]
        assert kinds == ["task_queued", "task_started", "task_finished"]
    finished = {e.task_id for e in everything.events if isinstance(e, ev.TaskFinished)}
    assert finished == set(more)


def test_max_task_rate_is_checked() -> None:
    bus = ev.EventBus()
    for bad in (0, -1.0, "fast", True):
        with pytest.raises(ValueError, match="max_task_rate"):
            bus.subscribe(print, max_task_rate=bad)  # type: ignore[arg-type]
