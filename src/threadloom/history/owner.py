"""Owners: which process wrote an execution, whether it is still alive, and
marking INTERRUPTED what a process that has ended left RUNNING."""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import sqlite3

import psutil

from .._types import TaskStatus
from .schema import rollback

__all__ = [
    "INTERRUPTED_TYPE",
    "interrupted_message",
    "mark_interrupted",
    "owner_is_dead",
    "this_owner",
]

logger = logging.getLogger("threadloom.history")

INTERRUPTED_TYPE = "Interrupted"

_OWNER_CACHE: dict[int, str] = {}


def _read_first_line(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            return file.readline().strip()
    except OSError:
        return ""


@functools.lru_cache(maxsize=1)
def _machine() -> tuple[str, str]:
    """(host name, machine id): two processes with both equal share a process table."""
    machine_id = _read_first_line("/etc/machine-id") or _read_first_line("/var/lib/dbus/machine-id")
    return socket.gethostname(), machine_id


def _boot() -> str:
    # Linux names each boot; elsewhere the boot time stands in for it (in
    # whole seconds: it is derived from the wall clock, which may be stepped).
    return _read_first_line("/proc/sys/kernel/random/boot_id") or f"t{round(psutil.boot_time())}"


def _seconds_since_boot(process: psutil.Process) -> float:
    # create_time() is boot time + a count of ticks since boot: the difference
    # is what identifies the process, immune to steps of the wall clock.
    return float(process.create_time() - psutil.boot_time())


def this_owner() -> str:
    """Who this process is, durably: machine, boot, pid and the pid's start."""
    pid = os.getpid()
    owner = _OWNER_CACHE.get(pid)
    if owner is None:
        # A pid is reused, a pid and its start time since boot are not; the boot
        # tells a pid of this boot from the same pid before a reboot.
        host, machine = _machine()
        owner = json.dumps(
            {
                "host": host,
                "machine": machine,
                "boot": _boot(),
                "pid": pid,
                "start": _seconds_since_boot(psutil.Process(pid)),
            },
            separators=(",", ":"),
        )
        _OWNER_CACHE[pid] = owner
    return owner


def owner_is_dead(owner: str | None, cache: dict[str, bool]) -> bool:
    """True only if *owner* is known to have ended; unknown owners count as alive."""
    if owner is None:
        return False
    if owner in cache:
        return cache[owner]
    cache[owner] = dead = _check_owner_dead(owner)
    return dead


def _check_owner_dead(owner: str) -> bool:
    try:
        info = json.loads(owner)
        machine, boot, pid, start = (
            (info["host"], info["machine"]),
            info["boot"],
            int(info["pid"]),
            float(info["start"]),
        )
    except (ValueError, TypeError, KeyError):
        return False
    if machine != _machine():
        return False  # another machine's (or container's) process: nothing here can tell
    here = _boot()
    if boot != here:
        if boot.startswith("t") and here.startswith("t"):
            # Boot times read at different moments differ by clock steps, not
            # by a reboot's minutes.
            return abs(float(boot[1:]) - float(here[1:])) > 60
        return True
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return True
        # Start times are counted in clock ticks (1/100 s on Linux).
        return abs(_seconds_since_boot(process) - start) > 0.05
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False  # it exists, but is not ours to inspect


def interrupted_message(owner: str | None) -> str:
    try:
        pid = json.loads(owner or "")["pid"]
    except (ValueError, TypeError, KeyError):
        pid = "?"
    return f"the process that ran it (pid {pid}) ended before recording its end"


def mark_interrupted(conn: sqlite3.Connection, path: str) -> None:
    """Mark INTERRUPTED the executions of *conn* left RUNNING by a process that has ended."""
    running = conn.execute(
        "SELECT execution_id, owner, started_at FROM executions "
        "WHERE status = 'running' AND owner IS NOT NULL"
    ).fetchall()
    liveness: dict[str, bool] = {}
    dead = [row for row in running if owner_is_dead(row[1], liveness)]
    if not dead:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        for execution_id, owner, started_at in dead:
            last = conn.execute(
                "SELECT MAX(finished_at) FROM task_runs WHERE execution_id = ?",
                (execution_id,),
            ).fetchone()[0]
            # The end is unknown: the last thing known of it is its last run's end.
            finished_at = started_at if last is None else max(started_at, last)
            conn.execute(
                "UPDATE executions SET status = ?, finished_at = ?, duration = ?, "
                "error_type = ?, error_message = ? "
                "WHERE execution_id = ? AND status = 'running'",
                (
                    TaskStatus.INTERRUPTED.value,
                    finished_at,
                    finished_at - started_at,
                    INTERRUPTED_TYPE,
                    interrupted_message(owner),
                    execution_id,
                ),
            )
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    logger.warning(
        "history %r: %d execution(s) left running by a process that has ended "
        "are marked interrupted",
        path,
        len(dead),
    )
