"""Client-side pieces shared by the executor and the graph runner: Dask keys,
retry decisions, the task starts workers report, and a thread for slow client calls."""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("threadloom.distributed")


def task_key(name: str | None) -> str:
    # Dask groups keys by the text before the last dash-and-hex part: the
    # task's name, so its dashboard shows one group per threadloom task.
    label = re.sub(r"[^A-Za-z0-9_.]+", "_", name or "task")[:60]
    return f"threadloom-{label}-{uuid.uuid4().hex}"


def valid_delay(policy: Any, attempts: int, label: str) -> float:
    try:
        delay = float(policy.delay_for(attempts))
        if delay < 0 or delay != delay:
            raise ValueError(f"retry delay {delay!r} out of range")
        return delay
    except Exception:
        logger.exception("retry policy of %s gave no usable delay; retrying now", label)
        return 0.0


def should_retry(policy: Any, error: BaseException, attempts: int, label: str) -> bool:
    try:
        return bool(policy.should_retry(error, attempts))
    except Exception:
        logger.exception("retry policy of %s failed; not retrying", label)
        return False


class Starts:
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


class Helper:
    """One thread for the client's slow calls (cancels, resubmits) off timers and loops."""

    def __init__(self) -> None:
        from ..executor import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="threadloom-dask-client")

    def __call__(self, fn: Callable[..., object], *args: Any) -> None:
        try:
            self._pool.submit(fn, *args)
        except RuntimeError:
            # Shut down: run it here rather than lose it.
            fn(*args)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
