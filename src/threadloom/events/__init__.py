"""One typed stream of events: what happens to tasks, executions, schedules,
workers and resources, delivered to subscribers off the workers' hot path.

Every event is a small frozen record with a ``kind`` (a class attribute, the
name used to filter subscriptions) and a ``timestamp`` (``time.time()`` when
it was made)::

    with pool.subscribe(print, kinds={"task_finished"}):
        pool.submit(work)

An :class:`EventBus` belongs to the object that emits (a ``ThreadPoolManager``
shares its bus with the ``TaskManager`` and ``Scheduler`` built on it, so one
subscriber sees one ordered stream).  Costs:

* nobody subscribed: the emitter checks :attr:`EventBus.active` (one attribute
  read) and builds nothing;
* subscribed: the emitter builds the record and appends it to each matching
  subscription's buffer under that buffer's own short lock; it never runs a
  callback.  Each subscription has its own delivery thread, which wakes at
  most every :data:`BATCH_DELAY` seconds (so delivery lags by up to that;
  :meth:`Subscription.flush` waits for it) and calls the callback outside any
  lock; an exception from it is logged (the first, then
  every 1000th) and counted in :attr:`Subscription.errors`, and delivery goes on.

Buffers are bounded (``buffer_size`` events per subscription, default
10,000).  When a subscriber falls that far behind, its *oldest* undelivered
event is dropped to make room and counted in :attr:`Subscription.dropped`;
the emitter never waits and no task is delayed.  A formatted traceback is cut
to :data:`MAX_TRACEBACK_CHARS`, so one subscription's buffer holds at most
about ``buffer_size * (MAX_TRACEBACK_CHARS + 1 KiB)``.

The modules: ``records`` (the event types), ``bus`` (:class:`EventBus`, its
subscriptions and their delivery threads), ``build`` (:func:`task_queued` and
friends, which build events from plain values, so that an emitter's hook stays
one line) and ``observe`` (:class:`AttemptObserver`, which reports a pool
task's attempts).
"""

# The names in __all__ are the public vocabulary; the rest (the builders, the
# observer, the kind names) are for the emitters in threadloom, re-exported
# explicitly so that ``threadloom.events.task_queued`` keeps working.
from .build import alert as alert
from .build import execution_finished as execution_finished
from .build import execution_started as execution_started
from .build import resource_sampled as resource_sampled
from .build import schedule_fired as schedule_fired
from .build import schedule_missed as schedule_missed
from .build import task_finished as task_finished
from .build import task_finished_from_future as task_finished_from_future
from .build import task_queued as task_queued
from .build import task_retrying as task_retrying
from .build import task_started as task_started
from .build import workers_changed as workers_changed
from .bus import BATCH_DELAY as BATCH_DELAY
from .bus import Callback as Callback
from .bus import EventBus, Subscription
from .observe import AttemptObserver as AttemptObserver
from .observe import observe_attempts as observe_attempts
from .records import EVENT_TYPES as EVENT_TYPES
from .records import KINDS as KINDS
from .records import (
    MAX_TRACEBACK_CHARS,
    AlertCleared,
    AlertRaised,
    Event,
    ExecutionFinished,
    ExecutionStarted,
    ResourceSampled,
    ScheduleFired,
    ScheduleMissed,
    TaskFinished,
    TaskQueued,
    TaskRetrying,
    TaskStarted,
    WorkersChanged,
)
from .records import TaskProfiled as TaskProfiled

__all__ = [
    "MAX_TRACEBACK_CHARS",
    "AlertCleared",
    "AlertRaised",
    "Event",
    "EventBus",
    "ExecutionFinished",
    "ExecutionStarted",
    "ResourceSampled",
    "ScheduleFired",
    "ScheduleMissed",
    "Subscription",
    "TaskFinished",
    "TaskQueued",
    "TaskRetrying",
    "TaskStarted",
    "WorkersChanged",
]
