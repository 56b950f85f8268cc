"""Calls a type checker must flag; checked by mypy, never run.

Each line that must be an error ends with ``# E: <mypy error code>``;
tests/test_typing.py compares mypy's errors with these markers, both ways.
"""

from __future__ import annotations

from collections.abc import Iterator

from threadloom import ThreadPoolExecutor


def add(a: int, b: int) -> int:
    return a + b


def wrong(ex: ThreadPoolExecutor) -> None:
    ex.submit(add, 1, "2")  # E: arg-type
    ex.submit(add, 1)  # E: call-arg
    ex.submit(add, 1, 2, c=3)  # E: call-arg
    ex.options(priority=1.5)  # E: call-overload
    ex.options(priority="high").submit(add, "1", 2)  # E: arg-type
    text: str = ex.submit(add, 1, 2).result()  # E: assignment
    print(ex.options(priority="high").submit(add, 1, 2).status)  # E: attr-defined
    ex.options(timeout=1.0).submit(add, 1, "2")  # E: arg-type
    ex.map(add, [1], ["2"])  # E: arg-type
    ex.map(add, [1])  # E: arg-type
    ex.map(add, [1], [2], [3])  # E: arg-type
    ex.map(str, [1], buffersize="2")  # E: call-overload
    ex.map(str, [1], chunksize=None)  # E: call-overload
    strings: Iterator[str] = ex.map(add, [1], [2])  # E: arg-type
    ex.options(priority="high").map(add, ["1"], [2])  # E: arg-type
    del text, strings
