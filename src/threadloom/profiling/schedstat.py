"""The kernel's scheduler statistics of a thread (Linux ``schedstat``): time on
a CPU and time runnable but waiting for one."""

from __future__ import annotations

import os
import sys
import threading

__all__ = ["SCHEDSTAT", "read_schedstat"]


def _schedstat_available() -> bool:
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/schedstat", "rb") as f:
            return len(f.read().split()) >= 2
    except OSError:
        return False


SCHEDSTAT = sys.platform.startswith("linux") and _schedstat_available()


def read_schedstat(native_id: int) -> tuple[int, int] | None:
    """(ns on a CPU, ns runnable waiting for one) of a thread, or None."""
    try:
        fd = os.open(f"/proc/self/task/{native_id}/schedstat", os.O_RDONLY)
    except OSError:
        return None  # the thread exited
    try:
        fields = os.read(fd, 128).split()
    except OSError:
        return None  # it exited after the open (ESRCH)
    finally:
        os.close(fd)
    return int(fields[0]), int(fields[1])
