"""The scheduler thread: one heap of next due times, submitted to the owner, never run."""

from __future__ import annotations

import dataclasses
import enum
import heapq
import itertools
import logging
import random
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from .. import events as tl_events
from .base import Schedule
from .clock import Clock, SystemClock
from .parser import parse_schedule
from .zones import UTC

if TYPE_CHECKING:
    pass

logger = logging.getLogger("threadloom.scheduling")

# --------------------------------------------------------------------------- scheduler


class MissReason(str, enum.Enum):
    """Why a fire time did not become a run (passed to ``on_missed``)."""

    MISFIRE = "misfire"
    """It could not start within the schedule's ``misfire_grace_time``."""
    COALESCED = "coalesced"
    """Folded into another run of the same backlog (``coalesce``)."""
    MAX_INSTANCES = "max_instances"
    """``max_instances`` runs were in progress and ``on_max_instances="skip"``."""
    SUBMIT_FAILED = "submit_failed"
    """The owner's ``submit`` callback raised (the error is logged)."""
    REMOVED = "removed"
    """It was queued for a free instance when its schedule was removed."""

    def __str__(self) -> str:
        return self.value


@dataclasses.dataclass(frozen=True)
class ScheduleInfo:
    """A snapshot of one scheduled job (from :meth:`Scheduler.list`)."""

    job_id: str
    schedule: Schedule
    next_fire_time: datetime | None
    """Next nominal fire time in the schedule's zone; None when paused or finished."""
    paused: bool
    running: int
    """Runs submitted and not yet reported finished."""
    queued: int
    """Runs waiting for a free instance (``on_max_instances="queue"``)."""


class _Entry:
    __slots__ = ("due", "job_id", "next_fire", "paused", "queued", "schedule", "token", "upcoming")

    def __init__(self, job_id: str, schedule: Schedule, upcoming: Iterator[datetime]) -> None:
        self.job_id = job_id
        self.schedule = schedule
        self.upcoming = upcoming  # live UTC fire-time iterator; only touched under the lock
        self.next_fire: datetime | None = None
        self.due: datetime | None = None  # next_fire plus this run's jitter
        self.paused = False
        self.token = 0  # bumped to invalidate heap items
        self.queued: deque[datetime] = deque()


@dataclasses.dataclass(frozen=True)
class _Action:
    job_id: str
    fire_time: datetime  # aware, in the schedule's zone
    missed: MissReason | None  # None: submit


# Spelled as aliases: inside Scheduler, "list" names its list() method.
_ActionList = list[_Action]
_InfoList = list[ScheduleInfo]
SubmitCallback = Callable[[str, datetime], object]
MissedCallback = Callable[[str, datetime, MissReason], object]


class Scheduler:
    """One thread that fires many schedules by handing due runs to *submit*.

    The thread keeps a heap of due times and sleeps (through the clock) until the
    earliest, woken early when schedules change; it never polls.  For each due
    run it calls ``submit(job_id, fire_time)`` on its own thread, with the
    nominal fire time (aware, in the schedule's zone).  The owner queues the job
    on its pool and calls :meth:`run_finished` when that run ends, however it
    ends, so that ``max_instances`` can count runs in progress.  Fire times that
    do not become runs are reported to ``on_missed(job_id, fire_time, reason)``.
    Exceptions from either callback are logged and never stop the thread; a
    failed submit is reported missed (:attr:`MissReason.SUBMIT_FAILED`).

    A submit that does not start a run must raise, so that the run is not
    counted in progress (no :meth:`run_finished` will come for it).  The
    callbacks run without the scheduler's lock, after the decision to fire was
    taken under it: a run being dispatched when :meth:`remove` or :meth:`pause`
    is called may still be submitted just after that call returns, so *submit*
    should raise for a job its owner no longer runs.

    Args:
        submit: Called once per run, on the scheduler thread.
        clock: Time source; default :class:`SystemClock`.
        on_missed: Called for each fire time that was not run, on the scheduler
            thread.
        rng: Random source for jitter; default a fresh ``random.Random``.
        events: The bus to emit ``schedule_fired`` / ``schedule_missed`` on
            (a ``TaskManager`` passes its pool's); default a bus of its own.

    Raises:
        TypeError: If a callback is not callable.
    """

    def __init__(
        self,
        submit: SubmitCallback,
        clock: Clock | None = None,
        *,
        on_missed: MissedCallback | None = None,
        rng: random.Random | None = None,
        events: tl_events.EventBus | None = None,
    ) -> None:
        if not callable(submit):
            raise TypeError(f"submit must be callable, not {submit!r}")
        if on_missed is not None and not callable(on_missed):
            raise TypeError(f"on_missed must be callable or None, not {on_missed!r}")
        if clock is not None and not isinstance(clock, Clock):
            raise TypeError(f"clock must provide now(), monotonic() and sleep_until(); {clock!r}")
        self._submit = submit
        self._on_missed = on_missed
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._rng = rng if rng is not None else random.Random()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[datetime, int, _Entry, int]] = []
        self._sequence = itertools.count()
        # Runs in progress per job, kept apart from entries: a run outlives the
        # removal (and re-adding) of its schedule and still counts against max_instances.
        self._running: dict[str, int] = {}
        self._ready: set[str] = set()  # jobs with queued runs and a freed instance
        self._reports: _ActionList = []  # missed runs found outside the thread
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._events = events if events is not None else tl_events.EventBus("scheduler")

    def subscribe(
        self,
        callback: Callable[[tl_events.Event], object],
        kinds: Iterable[str | type[tl_events.Event]] | None = None,
    ) -> tl_events.Subscription:
        """Receive ``schedule_fired`` and ``schedule_missed`` events (see
        :mod:`threadloom.events`); on a shared bus, its other events too."""
        return self._events.subscribe(callback, kinds)

    # -- lifecycle

    def start(self) -> None:
        """Start the scheduler thread.

        Raises:
            RuntimeError: If it is already running.
        """
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise RuntimeError("the scheduler is already running")
            self._stopping = False
            self._thread = threading.Thread(
                target=self._run, name="threadloom-scheduler", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop the thread; schedules are kept, so :meth:`start` can resume them.

        Args:
            timeout: Seconds to wait for the thread to end; None waits for it.

        Returns:
            True if the thread has ended (or never ran).
        """
        with self._lock:
            self._stopping = True
            thread = self._thread
        self._wake.set()
        if thread is None or thread is threading.current_thread():
            return thread is None
        thread.join(timeout)
        return not thread.is_alive()

    def __enter__(self) -> Scheduler:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- schedules

    def add(self, job_id: str, schedule: object, *, replace: bool = False) -> None:
        """Start firing *schedule* for *job_id*.

        An interval without an anchor is anchored at the clock's current time.

        Args:
            job_id: The owner's id for the job; passed back to the callbacks.
            schedule: A :class:`Schedule` or anything :func:`parse_schedule` takes.
            replace: Replace an existing schedule for *job_id* (keeping its paused
                state and queued runs) instead of refusing.

        Raises:
            TypeError: If *job_id* is not a string or *schedule* is not a schedule.
            ValueError: If *job_id* is empty, already has a schedule and not *replace*, the
                schedule never fires from now on, or a one-off time has passed
                beyond its grace time.
        """
        if not isinstance(job_id, str):
            raise TypeError(f"job_id must be a string, not {job_id!r}")
        if not job_id:
            raise ValueError("job_id must not be empty")
        parsed = parse_schedule(schedule)
        now = self._clock.now()
        bound = parsed.bind(now)
        upcoming = bound.fire_times_from(now)
        # Found outside the lock (a sparse window search can take a while); a
        # first fire time that passes meanwhile is simply due at once.
        first = next(upcoming, None)
        if first is None:
            raise ValueError(f"{parsed!r} never fires after {now.astimezone(parsed.tz)}")
        entry = _Entry(job_id, bound, upcoming)
        entry.next_fire = first
        with self._lock:
            old = self._entries.get(job_id)
            if old is not None:
                if not replace:
                    raise ValueError(
                        f"job {job_id!r} already has a schedule; remove it first or "
                        "pass replace=True"
                    )
                old.token += 1
                entry.paused = old.paused
                entry.queued = old.queued
            self._entries[job_id] = entry
            wake = self._push(entry)
        if wake:
            self._wake.set()

    def remove(self, job_id: str) -> None:
        """Stop firing *job_id*'s schedule and forget it.

        Runs in progress still count until reported with :meth:`run_finished`;
        runs queued for a free instance are reported missed (:attr:`MissReason.REMOVED`).

        Raises:
            KeyError: If *job_id* has no schedule.
        """
        with self._lock:
            entry = self._pop_entry(job_id)
            tz = entry.schedule.tz
            for fire in entry.queued:
                self._reports.append(_Action(job_id, fire.astimezone(tz), MissReason.REMOVED))
            entry.queued.clear()
            wake = bool(self._reports)
        if wake:
            self._wake.set()

    def pause(self, job_id: str) -> None:
        """Stop firing *job_id* until :meth:`resume`; fire times meanwhile are not run
        nor reported.  Runs already queued still run when an instance frees.

        Raises:
            KeyError: If *job_id* has no schedule.
        """
        with self._lock:
            entry = self._get_entry(job_id)
            entry.paused = True
            entry.token += 1

    def resume(self, job_id: str) -> None:
        """Fire *job_id* again, from its first fire time after now.

        Raises:
            KeyError: If *job_id* has no schedule.
        """
        with self._lock:
            entry = self._get_entry(job_id)
            if not entry.paused:
                return
            entry.paused = False
            now = self._clock.now()
            entry.upcoming = entry.schedule.iter_utc(now)
            entry.next_fire = next(entry.upcoming, None)
            wake = self._push(entry)
        if wake:
            self._wake.set()

    def run_finished(self, job_id: str) -> None:
        """Report that a run submitted for *job_id* has ended (call once per submit).

        Raises:
            ValueError: If *job_id* has no run in progress.
        """
        with self._lock:
            count = self._running.get(job_id, 0)
            if count == 0:
                raise ValueError(f"run_finished({job_id!r}) without a run of it in progress")
            if count == 1:
                del self._running[job_id]
            else:
                self._running[job_id] = count - 1
            entry = self._entries.get(job_id)
            wake = entry is not None and bool(entry.queued)
            if wake:
                # Submitted by the scheduler thread, never by this (worker) thread.
                self._ready.add(job_id)
        if wake:
            self._wake.set()

    def get(self, job_id: str) -> ScheduleInfo:
        """Return a snapshot of *job_id*'s schedule.

        Raises:
            KeyError: If *job_id* has no schedule.
        """
        with self._lock:
            return self._info(self._get_entry(job_id))

    def list_schedules(self) -> list[ScheduleInfo]:
        """Return a snapshot of every schedule, soonest next fire time first."""
        with self._lock:
            infos = [self._info(entry) for entry in self._entries.values()]
        far = datetime.max.replace(tzinfo=UTC)
        return sorted(infos, key=lambda info: (info.next_fire_time or far, info.job_id))

    def list(self) -> _InfoList:
        """Deprecated alias of :meth:`list_schedules` (its name shadowed a builtin)."""
        warnings.warn(
            "Scheduler.list() is deprecated; use Scheduler.list_schedules()",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.list_schedules()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    # -- internals (all under self._lock unless said otherwise)

    def _info(self, entry: _Entry) -> ScheduleInfo:
        tz = entry.schedule.tz
        upcoming = None if entry.paused or entry.next_fire is None else entry.next_fire
        return ScheduleInfo(
            job_id=entry.job_id,
            schedule=entry.schedule,
            next_fire_time=None if upcoming is None else upcoming.astimezone(tz),
            paused=entry.paused,
            running=self._running.get(entry.job_id, 0),
            queued=len(entry.queued),
        )

    def _get_entry(self, job_id: str) -> _Entry:
        try:
            return self._entries[job_id]
        except KeyError:
            raise KeyError(f"no schedule for job {job_id!r}") from None

    def _pop_entry(self, job_id: str) -> _Entry:
        entry = self._get_entry(job_id)
        del self._entries[job_id]
        entry.token += 1
        self._ready.discard(job_id)
        return entry

    def _push(self, entry: _Entry) -> bool:
        """Queue *entry*'s next fire time on the heap; True if it became the earliest."""
        entry.token += 1
        if entry.paused or entry.next_fire is None:
            entry.due = None
            return False
        due = entry.next_fire
        schedule = entry.schedule
        if schedule.jitter:
            jittered = due + timedelta(seconds=self._rng.uniform(0.0, schedule.jitter))
            if schedule.allows_utc(jittered):
                due = jittered
        entry.due = due
        item = (due, next(self._sequence), entry, entry.token)
        heapq.heappush(self._heap, item)
        if len(self._heap) > 2 * len(self._entries) + 64:
            self._heap = [it for it in self._heap if self._is_current(it[2], it[3])]
            heapq.heapify(self._heap)
        return self._heap[0] is item

    def _is_current(self, entry: _Entry, token: int) -> bool:
        return (
            token == entry.token and not entry.paused and self._entries.get(entry.job_id) is entry
        )

    def _next_deadline(self) -> datetime | None:
        while self._heap and not self._is_current(self._heap[0][2], self._heap[0][3]):
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def _collect(self, now: datetime) -> _ActionList:
        """Decide what to do at *now*; the callbacks run later, outside the lock."""
        actions = self._reports
        self._reports = []
        for job_id in self._ready:
            entry = self._entries.get(job_id)
            if entry is not None:
                self._release_queued(entry, now, actions)
        self._ready.clear()
        while self._heap and self._heap[0][0] <= now:
            _, _, entry, token = heapq.heappop(self._heap)
            if not self._is_current(entry, token):
                continue
            try:
                self._fire(entry, now, actions)
            except Exception:
                # A schedule whose computation fails stops firing; the others go on.
                logger.exception("schedule of job %r failed; it will not fire again", entry.job_id)
                entry.next_fire = entry.due = None
        return actions

    def _fire(self, entry: _Entry, now: datetime, actions: _ActionList) -> None:
        schedule = entry.schedule
        assert entry.next_fire is not None and entry.due is not None
        # The backlog: every fire time up to now.  Lateness counts from the due
        # time, so that jitter does not count as being late.
        backlog = [(entry.next_fire, now - entry.due)]
        upcoming = next(entry.upcoming, None)
        while upcoming is not None and upcoming <= now:
            backlog.append((upcoming, now - upcoming))
            upcoming = next(entry.upcoming, None)
        grace = schedule.misfire_grace_time
        on_time = [fire for fire, late in backlog if grace is None or late.total_seconds() <= grace]
        if schedule.coalesce == "all" or not on_time:
            chosen = set(on_time)
        else:
            chosen = {on_time[-1] if schedule.coalesce == "latest" else on_time[0]}
        on_time_set = set(on_time)
        for fire, _ in backlog:
            if fire in chosen:
                self._admit(entry, fire, actions)
            else:
                reason = MissReason.COALESCED if fire in on_time_set else MissReason.MISFIRE
                actions.append(_Action(entry.job_id, fire.astimezone(schedule.tz), reason))
        entry.next_fire = upcoming
        self._push(entry)

    def _admit(self, entry: _Entry, fire: datetime, actions: _ActionList) -> None:
        schedule = entry.schedule
        running = self._running.get(entry.job_id, 0)
        if running < schedule.max_instances:
            self._running[entry.job_id] = running + 1
            actions.append(_Action(entry.job_id, fire.astimezone(schedule.tz), None))
        elif schedule.on_max_instances == "skip":
            actions.append(
                _Action(entry.job_id, fire.astimezone(schedule.tz), MissReason.MAX_INSTANCES)
            )
        elif schedule.coalesce == "all" or not entry.queued:
            entry.queued.append(fire)
        else:
            # At most one queued run: keep the latest or the earliest (fire times
            # arrive in ascending order, so *fire* is the latest).
            dropped = fire
            if schedule.coalesce == "latest":
                dropped, entry.queued[0] = entry.queued[0], fire
            actions.append(
                _Action(entry.job_id, dropped.astimezone(schedule.tz), MissReason.COALESCED)
            )

    def _release_queued(self, entry: _Entry, now: datetime, actions: _ActionList) -> None:
        schedule = entry.schedule
        while entry.queued and self._running.get(entry.job_id, 0) < schedule.max_instances:
            fire = entry.queued.popleft()
            if schedule.is_misfire(fire, now):
                actions.append(
                    _Action(entry.job_id, fire.astimezone(schedule.tz), MissReason.MISFIRE)
                )
            else:
                self._admit(entry, fire, actions)

    # -- the thread

    def _run(self) -> None:
        while True:
            # Cleared before the state is read: a change made after this line sets
            # the event again, so sleep_until returns at once and none is lost.
            self._wake.clear()
            with self._lock:
                if self._stopping:
                    return
                actions = self._collect(self._clock.now())
                deadline = None if actions else self._next_deadline()
            if actions:
                self._perform(actions)
                continue
            self._clock.sleep_until(deadline, self._wake)

    def _perform(self, actions: _ActionList) -> None:
        """Run the callbacks (scheduler thread, lock not held)."""
        for action in actions:
            if action.missed is not None:
                self._report_missed(action.job_id, action.fire_time, action.missed)
                continue
            try:
                self._submit(action.job_id, action.fire_time)
                if self._events.active:
                    self._events.emit(tl_events.schedule_fired(action.job_id, action.fire_time))
            except Exception:
                logger.exception(
                    "submit for scheduled job %r (due %s) raised; the run is recorded missed",
                    action.job_id,
                    action.fire_time.isoformat(),
                )
                with self._lock:
                    self._release_instance(action.job_id)
                self._report_missed(action.job_id, action.fire_time, MissReason.SUBMIT_FAILED)

    def _release_instance(self, job_id: str) -> None:
        count = self._running.get(job_id, 0) - 1
        if count > 0:
            self._running[job_id] = count
        else:
            self._running.pop(job_id, None)
        entry = self._entries.get(job_id)
        if entry is not None and entry.queued:
            self._ready.add(job_id)

    def _report_missed(self, job_id: str, fire_time: datetime, reason: MissReason) -> None:
        logger.debug("scheduled run of %r due %s missed: %s", job_id, fire_time, reason)
        if self._events.active:
            self._events.emit(tl_events.schedule_missed(job_id, fire_time, reason))
        if self._on_missed is None:
            return
        try:
            self._on_missed(job_id, fire_time, reason)
        except Exception:
            logger.exception("on_missed for scheduled job %r raised", job_id)

    def __repr__(self) -> str:
        running = self._thread is not None and self._thread.is_alive()
        return f"<Scheduler {len(self._entries)} schedules, {'running' if running else 'stopped'}>"
