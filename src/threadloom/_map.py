"""``map`` typed per argument, for the executor and its options view."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar, overload

if TYPE_CHECKING:
    from .executor import ThreadPoolExecutor

__all__ = ["TypedMap"]

_T = TypeVar("_T")
_R = TypeVar("_R")
_T1 = TypeVar("_T1")
_T2 = TypeVar("_T2")
_T3 = TypeVar("_T3")
_T4 = TypeVar("_T4")
_T5 = TypeVar("_T5")


class TypedMap:
    """``map(fn, *iterables)`` whose iterables a type checker matches with *fn*.

    The overloads are typeshed's for ``builtins.map``: with 1 to 5 iterables
    each item type must fit *fn*'s parameter; more are not checked.  (The
    stdlib's ``Executor.map`` stub accepts any callable with any iterables.)
    A subclass says where a map runs, in ``_map_on``.
    """

    __slots__ = ()

    @overload
    def map(
        self,
        fn: Callable[[_T1], _R],
        iterable1: Iterable[_T1],
        /,
        *,
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
    ) -> Iterator[_R]: ...
    @overload
    def map(
        self,
        fn: Callable[[_T1, _T2], _R],
        iterable1: Iterable[_T1],
        iterable2: Iterable[_T2],
        /,
        *,
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
    ) -> Iterator[_R]: ...
    @overload
    def map(
        self,
        fn: Callable[[_T1, _T2, _T3], _R],
        iterable1: Iterable[_T1],
        iterable2: Iterable[_T2],
        iterable3: Iterable[_T3],
        /,
        *,
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
    ) -> Iterator[_R]: ...
    @overload
    def map(
        self,
        fn: Callable[[_T1, _T2, _T3, _T4], _R],
        iterable1: Iterable[_T1],
        iterable2: Iterable[_T2],
        iterable3: Iterable[_T3],
        iterable4: Iterable[_T4],
        /,
        *,
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
    ) -> Iterator[_R]: ...
    @overload
    def map(
        self,
        fn: Callable[[_T1, _T2, _T3, _T4, _T5], _R],
        iterable1: Iterable[_T1],
        iterable2: Iterable[_T2],
        iterable3: Iterable[_T3],
        iterable4: Iterable[_T4],
        iterable5: Iterable[_T5],
        /,
        *,
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
    ) -> Iterator[_R]: ...
    @overload
    def map(
        self,
        fn: Callable[..., _R],
        iterable1: Iterable[Any],
        iterable2: Iterable[Any],
        iterable3: Iterable[Any],
        iterable4: Iterable[Any],
        iterable5: Iterable[Any],
        iterable6: Iterable[Any],
        /,
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
    ) -> Iterator[_R]: ...
    def map(
        self,
        fn: Callable[..., _T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
    ) -> Iterator[_T]:
        """``map(fn, *iterables)`` on the pool; results in order, lazily.

        Items are submitted when ``map`` is called (all of them, or at most
        *buffersize* ahead of the consumer, as in Python 3.14).  They are run
        in chunks: *chunksize* items per task, or, with the default of 1, a
        size chosen from the number of items and workers.  An item that raises
        ends its chunk (later items of that chunk are not run) and its
        exception is raised when the iterator reaches it.  On an options view
        the chunks run at the view's priority.

        Raises:
            TimeoutError: from the iterator, if a result is not ready *timeout*
                seconds after the call to ``map``.
            ValueError: *chunksize* < 1 or *buffersize* < 1; or the options
                view has a name, retry policy or timeout (per-task options do
                not apply to chunks of a map).
            TypeError: *buffersize* is not an int.
        """
        executor, priority = self._map_on()
        return executor.map_at(
            priority, fn, iterables, timeout=timeout, chunksize=chunksize, buffersize=buffersize
        )

    def _map_on(self) -> tuple[ThreadPoolExecutor, int]:
        """The executor a map runs on, and at which priority."""
        raise NotImplementedError
