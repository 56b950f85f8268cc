"""The core: the native hot path, its pure-Python twin, and the selection between them.

The native core is ``_core`` (Cython: ``_core.pyx``, ``_core_managed.pxi``,
``_core.pxd``, typed by ``_core.pyi``; its C headers are in ``csrc/`` at the top
of the repository); ``_core_py`` is its twin, the oracle of the differential
tests; ``_future`` is the ``Future`` both complete.  This module selects one.

``THREADLOOM_NO_EXTENSIONS=1`` selects the twin.  Without it the native core
is used; if it cannot be imported (a source checkout that was never built) the
twin is used with a warning, unless ``THREADLOOM_REQUIRE_EXTENSIONS=1`` makes
that an error (CI and the wheel tests set it).  Type checkers see the twin.

The layers above import from this module only: :data:`core` (the selected
core), :class:`Future`, :class:`PyGraphRunner` (the twin's graph runner, the
base of the Dask runner whatever core is selected, loaded on first use) and
:func:`after_fork_in_child`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._core_py import Dispatcher
    from ._core_py import GraphRunner as PyGraphRunner

NO_EXTENSIONS = os.environ.get("THREADLOOM_NO_EXTENSIONS", "") not in ("", "0")
REQUIRE_EXTENSIONS = os.environ.get("THREADLOOM_REQUIRE_EXTENSIONS", "") not in ("", "0")

if TYPE_CHECKING or NO_EXTENSIONS:
    from . import _core_py as core
else:
    try:
        from . import _core as core
    except ImportError as exc:
        if REQUIRE_EXTENSIONS:
            raise ImportError(
                "threadloom's native core is required (THREADLOOM_REQUIRE_EXTENSIONS=1) "
                f"but could not be imported: {exc}"
            ) from exc
        warnings.warn(
            f"threadloom's native core could not be imported ({exc}); using the slower "
            "pure-Python core. Reinstall threadloom to build it, or set "
            "THREADLOOM_NO_EXTENSIONS=1 to silence this warning.",
            RuntimeWarning,
            stacklevel=2,
        )
        from . import _core_py as core

NATIVE: bool = core.NATIVE

# After the selection: the Future completes through the selected core.
from ._future import Future  # noqa: E402


def __getattr__(name: str) -> Any:
    # The twin is imported only when its graph runner is asked for (the Dask
    # runner's base): with the native core, importing threadloom does not load it.
    if name == "PyGraphRunner":
        from ._core_py import GraphRunner

        globals()[name] = GraphRunner
        return GraphRunner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def after_fork_in_child(dispatchers: Iterable[Dispatcher] = ()) -> None:
    """Reset the core's state in a forked child (call it from ``os.register_at_fork``).

    Only the forking thread survives a fork: the timer thread is restarted
    (pending deadlines and retries stay armed), and each of *dispatchers*
    gets fresh locks and forgets its workers (its queued work stays, for the
    workers the child starts next).
    """
    core.TIMERS._after_fork_in_child()
    for dispatcher in dispatchers:
        dispatcher._after_fork_in_child()


__all__ = ["NATIVE", "Future", "PyGraphRunner", "after_fork_in_child", "core"]
