"""The future returned by threadloom: a real ``concurrent.futures.Future``.

The stdlib future builds a ``threading.Condition`` (a lock, a list, bound
methods) in its constructor, which is most of what a task costs.  This subclass
creates its condition, waiter list and callback list only when something needs
them: a thread that blocks in ``result()``, ``wait()``/``as_completed()``
(which use ``_condition`` and ``_waiters`` directly), or a done callback.  The
state machine lives in the core (``future_*`` functions), where each transition
is atomic; the ordering argument is written there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future as _StdFuture
from concurrent.futures._base import (
    _STATE_TO_DESCRIPTION_MAP,
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
    RUNNING,
)
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from . import core

__all__ = ["Future"]

_T = TypeVar("_T")


class Future(_StdFuture[_T], Generic[_T]):
    """A ``concurrent.futures.Future`` whose synchronisation is made on demand.

    It behaves exactly like the stdlib future and is accepted everywhere one is
    (``wait``, ``as_completed``, ``asyncio.wrap_future``), with one change:
    when a done callback raises ``SystemExit`` or ``KeyboardInterrupt``, the
    callbacks after it still run before it is raised to the caller of
    ``set_result``/``set_exception``/``cancel`` (the stdlib skips them).
    """

    _state: str = PENDING
    _result: Any = None
    _exception: BaseException | None = None
    _tl_condition: threading.Condition | None = None
    _tl_waiters: list[Any] | None = None
    _tl_callbacks: list[Callable[[Any], object]] | None = None

    def __init__(self) -> None:
        # Deliberately not calling the stdlib constructor: see the module docstring.
        pass

    if TYPE_CHECKING:
        # Attributes to type checkers, as in the stdlib's stub: as_completed()
        # accepts only futures whose _condition and _waiters are settable.
        _condition: threading.Condition
        _waiters: list[Any]
    else:

        @property
        def _condition(self) -> threading.Condition:
            condition: threading.Condition = self._core.future_condition(self)
            return condition

        @property
        def _waiters(self) -> list[Any]:
            self._core.future_condition(self)
            waiters = self._tl_waiters
            assert waiters is not None
            return waiters

    @property
    def _done_callbacks(self) -> list[Callable[[Any], object]]:
        callbacks = self._tl_callbacks
        return list(callbacks) if callbacks is not None else []

    # The state machine: plain functions of the core, bound here as methods.
    # Type checkers do not see the binding: they see the stdlib's typed
    # methods (``result() -> _T``), which these implement.
    if not TYPE_CHECKING:
        result = core.future_result
        exception = core.future_exception
        set_result = core.future_set_result
        set_exception = core.future_set_exception
        set_running_or_notify_cancel = core.future_set_running_or_notify_cancel
        cancel = core.future_cancel
        add_done_callback = core.future_add_done_callback
    _core = core

    def cancelled(self) -> bool:
        return self._state in (CANCELLED, CANCELLED_AND_NOTIFIED)

    def running(self) -> bool:
        return self._state == RUNNING

    def done(self) -> bool:
        return self._state in (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED)

    def __repr__(self) -> str:
        state = self._state
        description = _STATE_TO_DESCRIPTION_MAP[state]
        head = f"<{self.__class__.__name__} at {id(self):#x} state={description}"
        if state == FINISHED:
            exception = self._exception
            if exception:
                return f"{head} raised {type(exception).__name__}>"
            return f"{head} returned {type(self._result).__name__}>"
        return f"{head}>"


def future_class_for(core_module: Any) -> type[Future[Any]]:
    """A Future subclass whose state machine is *core_module*'s (tests use it
    to run the native core and its twin side by side)."""
    if core_module is core:
        return Future
    namespace = {
        name: getattr(core_module, "future_" + name)
        for name in ("result", "exception", "set_result", "set_exception", "cancel")
    }
    namespace["set_running_or_notify_cancel"] = core_module.future_set_running_or_notify_cancel
    namespace["add_done_callback"] = core_module.future_add_done_callback
    namespace["_core"] = core_module
    return type("Future", (Future,), namespace)


core.set_future_type(Future)
