"""The bus: :class:`EventBus` fans events out to :class:`Subscription` s, each
with its own bounded buffer and delivery thread (see :mod:`threadloom.events`
for the costs and guarantees)."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from types import TracebackType

from .records import KINDS, Event

__all__ = ["BATCH_DELAY", "Callback", "EventBus", "Subscription"]

LOGGER = logging.getLogger("threadloom.events")

#: Seconds a delivery thread lets events gather before handing them over.
BATCH_DELAY = 0.02
_SAMPLE_WINDOW = 0.1

Callback = Callable[[Event], object]


class Subscription:
    """One subscriber's buffer and delivery thread (from :meth:`EventBus.subscribe`).

    Attributes:
        dropped: events dropped because the buffer was full (oldest first).
        errors: times the callback raised.
        delivered: events handed to the callback.
    """

    def __init__(
        self,
        bus: EventBus,
        callback: Callback,
        kinds: frozenset[str] | None,
        buffer_size: int,
        max_task_rate: float | None = None,
    ) -> None:
        self._bus = bus
        self.callback = callback
        self.kinds = kinds
        self.buffer_size = buffer_size
        self.max_task_rate = max_task_rate
        self.dropped = 0
        self.errors = 0
        self.delivered = 0
        # _lock guards _buffer, _pushed, dropped and _wake_pending; it is held
        # only for an append or a swap, never while a callback runs.
        self._lock = threading.Lock()
        self._buffer: deque[Event] = deque()
        self._pushed = 0
        self._wake_pending = False
        self._wake = threading.Event()
        self._hurry = threading.Event()
        self._closed = False
        self._settled = 0  # events delivered or dropped; guarded by _progress
        self._progress = threading.Condition(threading.Lock())
        self._thread = threading.Thread(
            target=self._deliver_loop, name=f"threadloom-events-{bus.name}", daemon=True
        )

    # -- emitter side (any thread) --------------------------------------------
    def _push(self, event: Event) -> None:
        with self._lock:
            buffer = self._buffer
            if len(buffer) >= self.buffer_size:
                buffer.popleft()
                self.dropped += 1
            buffer.append(event)
            self._pushed += 1
            wake = not self._wake_pending
            self._wake_pending = True
        if wake:
            # Only the first push after a swap pays for the Event's condition.
            self._wake.set()

    # -- delivery thread -------------------------------------------------------
    def _deliver_loop(self) -> None:
        dropped_seen = 0
        while True:
            self._wake.wait()
            # Let a batch gather: waking per event would hand the GIL back and
            # forth with the workers on every task.  Bounded latency; cut
            # short by unsubscribe() and flush().
            self._hurry.wait(BATCH_DELAY)
            with self._lock:
                # Cleared under the lock that _push sets _wake_pending under: a
                # push after this swap sees _wake_pending False and sets the
                # event again, so no event is left behind.
                self._wake.clear()
                batch, self._buffer = self._buffer, deque()
                self._wake_pending = False
                closed = self._closed
                dropped_now = self.dropped
            for event in batch:
                try:
                    self.callback(event)
                except Exception:
                    self.errors += 1
                    if self.errors == 1 or self.errors % 1000 == 0:
                        LOGGER.exception(
                            "event subscriber %r raised (%d times so far); delivery goes on",
                            self.callback,
                            self.errors,
                        )
                self.delivered += 1
            with self._progress:
                self._settled += len(batch) + dropped_now - dropped_seen
                self._progress.notify_all()
            dropped_seen = dropped_now
            if closed:
                if not batch:
                    return
                # Closed: no more waiting; one more swap picks up late pushes.
                self._wake.set()

    # -- public ----------------------------------------------------------------
    @property
    def active(self) -> bool:
        """True until :meth:`unsubscribe`."""
        return not self._closed

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event emitted before this call was delivered (or dropped).

        Must not be called from the callback itself (it would wait for itself).

        Returns:
            True if done within *timeout* seconds.
        """
        with self._lock:
            target = self._pushed
        self._hurry.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            with self._progress:
                while self._settled < target:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._progress.wait(remaining)
        finally:
            self._hurry.clear()
        return True

    def unsubscribe(self, timeout: float | None = 5.0) -> bool:
        """Stop receiving events; deliver those already buffered, then end the thread.

        Calling it twice does nothing.  From inside the callback it returns
        at once (the thread ends after the current batch).

        Returns:
            True if the delivery thread ended within *timeout* seconds.
        """
        self._bus._remove(self)  # noqa: SLF001 (same module)
        with self._lock:
            self._closed = True
        self._hurry.set()
        self._wake.set()
        if threading.current_thread() is self._thread or not self._thread.is_alive():
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.unsubscribe()

    def __repr__(self) -> str:
        kinds = "all" if self.kinds is None else ",".join(sorted(self.kinds))
        return (
            f"<Subscription {self.callback!r} kinds={kinds} delivered={self.delivered} "
            f"dropped={self.dropped} errors={self.errors}>"
        )


class EventBus:
    """Fans events out to subscriptions; see :mod:`threadloom.events` for the guarantees.

    Emitters write ``if bus.active: bus.emit(make_event(...))`` so that
    nothing is built when nobody listens.

    Args:
        name: used in the delivery threads' names.
        buffer_size: the default per-subscription buffer size.
    """

    def __init__(self, name: str = "bus", *, buffer_size: int = 10_000) -> None:
        _check_buffer_size(buffer_size)
        self.name = name
        self.buffer_size = buffer_size
        #: True while at least one subscription exists: the hot path's one check.
        self.active = False
        self._lock = threading.Lock()
        # Replaced, never mutated, so emit() iterates without the lock.
        self._subscriptions: tuple[Subscription, ...] = ()
        # Task sampling (see subscribe's max_task_rate); None: report every task.
        self._task_rate: float | None = None
        self._budget = 0.0
        self._refill_at = 0.0
        self._skip = 0

    def subscribe(
        self,
        callback: Callback,
        kinds: Iterable[str | type[Event]] | None = None,
        *,
        buffer_size: int | None = None,
        max_task_rate: float | None = None,
    ) -> Subscription:
        """Call ``callback(event)`` for every event (of *kinds*, if given), on a
        delivery thread of this subscription.

        Args:
            callback: called with one event at a time, in emission order.
            kinds: kind names (``"task_finished"``) or event classes; None: all.
            buffer_size: events buffered before the oldest is dropped.
            max_task_rate: tasks per second this subscriber needs to hear
                about (None: every task).  While every subscription of a
                bus sets one, the pool reports a sample of its tasks, at most
                the highest of these rates, each task's events complete
                (queued, every attempt, finished) or absent; the rest cost
                the workers one check each.  The dashboard uses it to watch
                a busy pool without slowing it down.

        Raises:
            TypeError: *callback* is not callable.
            ValueError: an unknown kind (the message lists the known ones).
        """
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        kind_set = None if kinds is None else _check_kinds(kinds)
        size = self.buffer_size if buffer_size is None else _check_buffer_size(buffer_size)
        if max_task_rate is not None and not (
            isinstance(max_task_rate, int | float)
            and not isinstance(max_task_rate, bool)
            and max_task_rate > 0
        ):
            raise ValueError(
                f"max_task_rate must be a positive number or None, not {max_task_rate!r}"
            )
        subscription = Subscription(self, callback, kind_set, size, max_task_rate)
        subscription._thread.start()  # noqa: SLF001 (same module)
        with self._lock:
            self._subscriptions = (*self._subscriptions, subscription)
            self._update_rate()
            self.active = True
        return subscription

    def _remove(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscriptions = tuple(s for s in self._subscriptions if s is not subscription)
            self._update_rate()
            self.active = bool(self._subscriptions)

    def _update_rate(self) -> None:
        rates = [s.max_task_rate for s in self._subscriptions]
        self._task_rate = None if not rates or None in rates else max(rates)  # type: ignore[type-var]
        self._budget = 0.0
        self._refill_at = 0.0
        self._skip = 0

    def sample_task(self) -> bool:
        """Whether to report the task being submitted (see ``max_task_rate``).

        Called by emitters only while :attr:`active`.  The budget is refilled
        every tenth of a second; concurrent callers may over- or under-spend it
        by a few tasks, which only changes the sample's size.
        """
        rate = self._task_rate
        if rate is None:
            return True
        self._budget -= 1
        if self._budget >= 0:
            return True
        # Out of budget: look at the clock only every 256 tasks (at a
        # submit rate where it matters, that is well under a millisecond).
        self._skip -= 1
        if self._skip > 0:
            return False
        self._skip = 256
        now = time.monotonic()
        if now < self._refill_at:
            return False
        self._refill_at = now + _SAMPLE_WINDOW
        self._budget = rate * _SAMPLE_WINDOW - 1
        return True

    def emit(self, event: Event) -> None:
        """Hand *event* to every matching subscription (never blocks on a subscriber)."""
        kind = event.kind
        for subscription in self._subscriptions:
            kinds = subscription.kinds
            if kinds is None or kind in kinds:
                subscription._push(event)  # noqa: SLF001 (same module; the hot path of emit)

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return self._subscriptions

    def close(self, timeout: float | None = 5.0) -> None:
        """Unsubscribe everyone (delivering what is buffered)."""
        for subscription in self._subscriptions:
            subscription.unsubscribe(timeout)

    def __repr__(self) -> str:
        return f"<EventBus {self.name} subscriptions={len(self._subscriptions)}>"


def _check_buffer_size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"buffer_size must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"buffer_size must be >= 1, not {value}")
    return value


def _check_kinds(kinds: Iterable[str | type[Event]]) -> frozenset[str]:
    if isinstance(kinds, str):
        kinds = (kinds,)
    names = set()
    for kind in kinds:
        name = kind.kind if isinstance(kind, type) and issubclass(kind, Event) else kind
        if name not in KINDS:
            raise ValueError(f"unknown event kind {kind!r} (known: {', '.join(sorted(KINDS))})")
        names.add(str(name))
    return frozenset(names)
