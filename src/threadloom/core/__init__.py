"""The core: the native hot path, its pure-Python twin, and the selection between them.

The native core is ``_core`` (Cython: ``_core.pyx``, ``_core_managed.pxi``,
``_core.pxd``, typed by ``_core.pyi``; its C headers are in ``csrc/`` at the top
of the repository); ``_core_py`` is its twin, the oracle of the differential
tests; ``_future`` is the ``Future`` both complete.  This module selects one.

``THREADLOOM_NO_EXTENSIONS=1`` selects the twin.  Without it the native core
is used; if it cannot be imported (a source checkout that was never built) the
twin is used with a warning, unless ``THREADLOOM_REQUIRE_EXTENSIONS=1`` makes
that an error (CI and the wheel tests set it).  Type checkers see the twin.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING

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

__all__ = ["NATIVE", "core"]
