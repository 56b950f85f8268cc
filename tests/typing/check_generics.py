"""What threadloom's generic types give a type checker; checked by mypy, never run.

tests/test_typing.py runs mypy on this file and expects no error: each
``assert_type`` holds only if the inferred type is exactly the one written.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator

from typing_extensions import assert_type

from threadloom import (
    ExecutionInfo,
    Future,
    ManagedOptions,
    RegisteredTask,
    RetryPolicy,
    SubmitOptions,
    TaskFuture,
    TaskInfo,
    TaskManager,
    TaskPriority,
    ThreadPoolExecutor,
    ThreadPoolManager,
)


def add(a: int, b: int) -> int:
    return a + b


def greet(name: str, *, punctuation: str = "!") -> str:
    return name + punctuation


def describe(a: int, b: str, c: float, d: bytes, e: bool) -> str:
    return f"{a}{b}{c}{d!r}{e}"


def total(*numbers: float) -> float:
    return sum(numbers)


def executor(ex: ThreadPoolExecutor) -> None:
    assert_type(ex.submit(int, "3"), Future[int])
    assert_type(ex.submit(int, "3").result(), int)
    assert_type(ex.submit(add, 1, 2).result(timeout=1.0), int)
    assert_type(ex.submit(greet, "a", punctuation="?").result(), str)
    assert_type(ex.submit(add, 1, 2).exception(), BaseException | None)
    assert_type(ex.map(str, [1, 2]), Iterator[str])
    assert_type(ex.map(add, [1], (2,)), Iterator[int])
    assert_type(ex.map(greet, iter(["a"]), timeout=1.0, chunksize=2, buffersize=4), Iterator[str])
    assert_type(ex.map(describe, [1], ["b"], [1.5], [b"d"], [True]), Iterator[str])
    # Six iterables or more: the result is typed, the items are not checked.
    assert_type(ex.map(total, [1], [2], [3], [4], [5], [6], [7.5]), Iterator[float])
    assert_type(ex.options(priority="high").submit(add, 1, 2).result(), int)
    assert_type(ex.options(priority=TaskPriority.LOW).map(str, [1]), Iterator[str])
    assert_type(ex.options(priority="high").map(add, [1], [2], buffersize=2), Iterator[int])
    assert_type(ex.options(priority="high"), SubmitOptions)
    assert_type(ex.options(timeout=1.0), ManagedOptions)
    assert_type(ex.options(name="n", priority=3).submit(add, 1, 2), TaskFuture[int])
    assert_type(ex.options(retry=RetryPolicy(2)).submit(greet, "a").result(), str)


def stdlib_executor(ex: concurrent.futures.ThreadPoolExecutor) -> None:
    # The same calls on the stdlib's executor (typeshed's stubs) give the
    # same types: code moving between the two keeps its inferred types.
    assert_type(ex.submit(add, 1, 2).result(), int)
    assert_type(ex.map(str, [1, 2]), Iterator[str])
    assert_type(ex.map(add, [1], (2,)), Iterator[int])
    assert_type(ex.map(greet, iter(["a"]), timeout=1.0, chunksize=2), Iterator[str])
    assert_type(ex.map(describe, [1], ["b"], [1.5], [b"d"], [True]), Iterator[str])


def stdlib_functions(ex: ThreadPoolExecutor) -> None:
    # Our futures are accepted by the stdlib's functions (their stubs ask for
    # settable _condition and _waiters).
    futures = [ex.submit(add, 1, 2)]
    for future in concurrent.futures.as_completed(futures):
        assert_type(future.result(), int)
    done, _ = concurrent.futures.wait(futures)
    assert_type(done, set[concurrent.futures.Future[int]])


def drop_in(ex: ThreadPoolExecutor) -> concurrent.futures.Executor:
    # Ours is accepted where the stdlib's executor is expected.
    stdlib: concurrent.futures.ThreadPoolExecutor = ex
    return stdlib


def task_future(future: TaskFuture[bytes]) -> None:
    assert_type(future.result(), bytes)
    assert_type(future.task_id, str)


def pool(manager: ThreadPoolManager) -> None:
    assert_type(manager.submit(print, "x", priority="high"), str)
    assert_type(manager.submit_future(add, (1, 2), priority="critical"), TaskFuture[int])
    assert_type(manager.get_task_info("t"), TaskInfo)


def task_manager(manager: TaskManager) -> None:
    assert_type(manager.register_task("a", add, 1, 2, priority="high"), str)
    assert_type(manager.get_task("a"), RegisteredTask)
    assert_type(manager.get_execution("e"), ExecutionInfo)
    assert_type(manager.get_execution_status("e"), ExecutionInfo)
