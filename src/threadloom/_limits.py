"""How many CPUs and how much memory this process may really use.

A container sees the host's CPUs and memory through ``os.cpu_count()`` and
``/proc/meminfo``, but the kernel holds it to its cgroup's limits.  This module
reads those limits (cgroup v2 and v1, including the nested path named in
``/proc/self/cgroup`` and every ancestor above it) and says where each limit
came from.

It sits below everything else: the executor imports it to choose its default
worker count, so it uses the standard library only (psutil is imported lazily,
and only where the standard library cannot tell the host's memory size).

The ``read_*`` functions re-read the system every call and take root paths so
that tests can point them at fixture trees; ``usable_cpu_count()`` and
``memory_limit()`` are the cached forms most callers want.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from dataclasses import dataclass

__all__ = [
    "CpuLimit",
    "MemoryLimit",
    "cgroup_memory_usage",
    "memory_limit",
    "read_memory_limit",
    "read_usable_cpu_count",
    "usable_cpu_count",
]

DEFAULT_CGROUP_ROOT = "/sys/fs/cgroup"
DEFAULT_PROC_SELF_CGROUP = "/proc/self/cgroup"

SOURCE_HOST = "host"
SOURCE_AFFINITY = "sched_getaffinity"
SOURCE_ENV = "PYTHON_CPU_COUNT"
SOURCE_V2_CPU = "cgroup v2 cpu.max"
SOURCE_V1_CPU = "cgroup v1 cpu.cfs_quota_us"
SOURCE_V2_MEMORY = "cgroup v2 memory.max"
SOURCE_V1_MEMORY = "cgroup v1 memory.limit_in_bytes"


@dataclass(frozen=True)
class CpuLimit:
    """The number of CPUs this process can keep busy.

    Attributes:
        count: usable CPUs, at least 1 (a fractional quota is rounded up).
        source: what set the limit: ``"host"``, ``"sched_getaffinity"``,
            ``"cgroup v2 cpu.max"``, ``"cgroup v1 cpu.cfs_quota_us"`` or
            ``"PYTHON_CPU_COUNT"``.
        host_count: the CPUs of the machine (``os.cpu_count()``).
    """

    count: int
    source: str
    host_count: int


@dataclass(frozen=True)
class MemoryLimit:
    """The memory this process's cgroup may use before the OOM killer acts.

    Attributes:
        bytes: the limit in bytes: the smaller of the host's memory and the
            cgroup's limit (the tightest along the cgroup's ancestry).
        source: ``"host"``, ``"cgroup v2 memory.max"`` or
            ``"cgroup v1 memory.limit_in_bytes"``.
        host_bytes: the machine's physical memory.
    """

    bytes: int
    source: str
    host_bytes: int


@dataclass(frozen=True)
class _CgroupEntry:
    """One line of /proc/self/cgroup: hierarchy id, controllers, path."""

    hierarchy: str
    controllers: tuple[str, ...]
    path: str


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _parse_proc_self_cgroup(proc_self_cgroup: str) -> list[_CgroupEntry]:
    text = _read_text(proc_self_cgroup)
    if not text:
        return []
    entries = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        names = tuple(name for name in controllers.split(",") if name)
        entries.append(_CgroupEntry(hierarchy, names, path))
    return entries


def _chain(mount: str, cgroup_path: str) -> list[str]:
    """The cgroup directory for *cgroup_path* under *mount*, then each ancestor up to *mount*.

    Limits are hierarchical: a parent's limit binds its children, so the
    effective limit is the tightest along this chain.  When the process's path
    is not visible under the mount (a container without a cgroup namespace sees
    its own cgroup mounted as the root, while /proc/self/cgroup names the host
    path), the mount itself is the process's cgroup.
    """
    # normpath folds "/../.." that a cgroup namespace shows for an outside path.
    relative = os.path.normpath("/" + cgroup_path).strip("/")
    if not os.path.isdir(mount):
        return []
    if not relative or not os.path.isdir(os.path.join(mount, relative)):
        return [mount]
    parts = relative.split("/")
    return [os.path.join(mount, *parts[:depth]) for depth in range(len(parts), -1, -1)]


def _v2_mounts(cgroup_root: str) -> list[str]:
    # Pure v2 mounts the unified hierarchy at the root; the hybrid layout of
    # systemd puts it under "unified" beside the v1 controllers.
    return [
        mount
        for mount in (cgroup_root, os.path.join(cgroup_root, "unified"))
        if os.path.isfile(os.path.join(mount, "cgroup.controllers"))
    ]


def _v1_mounts(cgroup_root: str, entry: _CgroupEntry, controller: str) -> list[str]:
    # v1 controllers are often co-mounted ("cpu,cpuacct") with symlinks per name.
    names = [",".join(entry.controllers), controller]
    mounts = [os.path.join(cgroup_root, name) for name in names]
    return [mount for mount in mounts if os.path.isdir(mount)][:1]


def _v2_chains(cgroup_root: str, entries: list[_CgroupEntry]) -> list[list[str]]:
    return [
        _chain(mount, entry.path)
        for entry in entries
        if entry.hierarchy == "0" and not entry.controllers
        for mount in _v2_mounts(cgroup_root)
    ]


def _v1_chains(cgroup_root: str, entries: list[_CgroupEntry], controller: str) -> list[list[str]]:
    return [
        _chain(mount, entry.path)
        for entry in entries
        if controller in entry.controllers
        for mount in _v1_mounts(cgroup_root, entry, controller)
    ]


def _parse_cpu_max(text: str) -> float | None:
    """CPUs allowed by a v2 ``cpu.max`` ("$QUOTA $PERIOD" or "max $PERIOD"); None if unlimited."""
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    try:
        quota = int(parts[0])
        period = int(parts[1]) if len(parts) > 1 else 100_000
    except ValueError:
        return None
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def _v1_cpu_quota(directory: str) -> float | None:
    quota_text = _read_text(os.path.join(directory, "cpu.cfs_quota_us"))
    period_text = _read_text(os.path.join(directory, "cpu.cfs_period_us"))
    if quota_text is None or period_text is None:
        return None
    try:
        quota, period = int(quota_text), int(period_text)
    except ValueError:
        return None
    # -1 is v1's "no quota".
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def _cgroup_cpu_quota(cgroup_root: str, proc_self_cgroup: str) -> tuple[float, str] | None:
    """The tightest CPU quota along the process's cgroups, as (CPUs, source)."""
    entries = _parse_proc_self_cgroup(proc_self_cgroup)
    found: list[tuple[float, str]] = []
    for chain in _v2_chains(cgroup_root, entries):
        for directory in chain:
            text = _read_text(os.path.join(directory, "cpu.max"))
            quota = _parse_cpu_max(text) if text is not None else None
            if quota is not None:
                found.append((quota, SOURCE_V2_CPU))
    for chain in _v1_chains(cgroup_root, entries, "cpu"):
        for directory in chain:
            quota = _v1_cpu_quota(directory)
            if quota is not None:
                found.append((quota, SOURCE_V1_CPU))
    return min(found, key=lambda item: item[0]) if found else None


def _env_cpu_count() -> int | None:
    # PYTHON_CPU_COUNT is CPython's from 3.13, which refuses to start with an
    # invalid value; before 3.13 the stdlib ignores the variable.  So a value
    # seen here is invalid only on 3.10-3.12 (or if set at run time), and
    # the stdlib's pool works regardless: ours must too.  Ignored, loudly.
    value = os.environ.get("PYTHON_CPU_COUNT")
    if value is None or value == "" or value == "default":
        return None
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        warnings.warn(
            f"PYTHON_CPU_COUNT={value!r} ignored: it must be a positive integer or 'default'",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    return count


def _affinity_count() -> int | None:
    getaffinity = getattr(os, "sched_getaffinity", None)
    if getaffinity is None:
        return None
    try:
        return len(getaffinity(0)) or None
    except OSError:
        return None


def read_usable_cpu_count(
    cgroup_root: str = DEFAULT_CGROUP_ROOT,
    proc_self_cgroup: str = DEFAULT_PROC_SELF_CGROUP,
) -> CpuLimit:
    """Read, uncached, how many CPUs this process can keep busy.

    The count is the smallest of: the CPUs in this process's affinity mask
    (which a cpuset restricts), the cgroup CPU quota (v2 ``cpu.max`` or v1
    ``cpu.cfs_quota_us / cpu.cfs_period_us``, the tightest along the cgroup's
    ancestors, rounded up) and ``PYTHON_CPU_COUNT`` when set to a positive
    integer (any other value but ``"default"`` is ignored with a
    ``RuntimeWarning``, as the stdlib ignores the variable before 3.13).

    Args:
        cgroup_root: where the cgroup filesystem is mounted.
        proc_self_cgroup: the file naming this process's cgroups.

    Returns:
        The usable CPU count and the source of the limit that set it.
    """
    host_count = os.cpu_count() or 1
    count, source = host_count, SOURCE_HOST
    affinity = _affinity_count()
    if affinity is not None and affinity < count:
        count, source = affinity, SOURCE_AFFINITY
    quota = _cgroup_cpu_quota(cgroup_root, proc_self_cgroup)
    if quota is not None:
        quota_cpus = max(1, math.ceil(quota[0]))
        if quota_cpus < count:
            count, source = quota_cpus, quota[1]
    env_count = _env_cpu_count()
    if env_count is not None and env_count < count:
        count, source = env_count, SOURCE_ENV
    return CpuLimit(count=count, source=source, host_count=host_count)


@functools.lru_cache(maxsize=8)
def usable_cpu_count(
    cgroup_root: str = DEFAULT_CGROUP_ROOT,
    proc_self_cgroup: str = DEFAULT_PROC_SELF_CGROUP,
) -> CpuLimit:
    """Cached :func:`read_usable_cpu_count`; ``usable_cpu_count.cache_clear()`` forgets it.

    Args:
        cgroup_root: where the cgroup filesystem is mounted.
        proc_self_cgroup: the file naming this process's cgroups.

    Returns:
        The usable CPU count and the source of the limit that set it.
    """
    return read_usable_cpu_count(cgroup_root, proc_self_cgroup)


def _host_memory_bytes() -> int:
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        page_size = os.sysconf("SC_PAGE_SIZE")
        if pages > 0 and page_size > 0:
            return int(pages * page_size)
    except (AttributeError, OSError, ValueError):
        pass
    # Windows has no sysconf; psutil is a dependency, imported only here.
    import psutil

    return int(psutil.virtual_memory().total)


def _parse_memory_value(text: str | None) -> int | None:
    if text is None or text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value > 0 else None


def _cgroup_memory_limit(cgroup_root: str, proc_self_cgroup: str) -> tuple[int, str, str] | None:
    """The tightest memory limit along the process's cgroups: (bytes, source, directory)."""
    entries = _parse_proc_self_cgroup(proc_self_cgroup)
    found: list[tuple[int, str, str]] = []
    for chain in _v2_chains(cgroup_root, entries):
        for directory in chain:
            limit = _parse_memory_value(_read_text(os.path.join(directory, "memory.max")))
            if limit is not None:
                found.append((limit, SOURCE_V2_MEMORY, directory))
    for chain in _v1_chains(cgroup_root, entries, "memory"):
        for directory in chain:
            # v1 says "unlimited" with a huge page-aligned number; min() with
            # the host's memory below disposes of it.
            limit_file = os.path.join(directory, "memory.limit_in_bytes")
            limit = _parse_memory_value(_read_text(limit_file))
            if limit is not None:
                found.append((limit, SOURCE_V1_MEMORY, directory))
    return min(found, key=lambda item: item[0]) if found else None


def read_memory_limit(
    cgroup_root: str = DEFAULT_CGROUP_ROOT,
    proc_self_cgroup: str = DEFAULT_PROC_SELF_CGROUP,
) -> MemoryLimit:
    """Read, uncached, how much memory this process's cgroup may use.

    The limit is the smaller of the host's physical memory and the cgroup's
    limit (v2 ``memory.max``, ``max`` meaning none, or v1
    ``memory.limit_in_bytes``; the tightest along the cgroup's ancestors).

    Args:
        cgroup_root: where the cgroup filesystem is mounted.
        proc_self_cgroup: the file naming this process's cgroups.

    Returns:
        The limit in bytes and the source that set it.
    """
    host_bytes = _host_memory_bytes()
    found = _cgroup_memory_limit(cgroup_root, proc_self_cgroup)
    if found is not None and found[0] < host_bytes:
        return MemoryLimit(bytes=found[0], source=found[1], host_bytes=host_bytes)
    return MemoryLimit(bytes=host_bytes, source=SOURCE_HOST, host_bytes=host_bytes)


@functools.lru_cache(maxsize=8)
def memory_limit(
    cgroup_root: str = DEFAULT_CGROUP_ROOT,
    proc_self_cgroup: str = DEFAULT_PROC_SELF_CGROUP,
) -> MemoryLimit:
    """Cached :func:`read_memory_limit`; ``memory_limit.cache_clear()`` forgets it.

    Args:
        cgroup_root: where the cgroup filesystem is mounted.
        proc_self_cgroup: the file naming this process's cgroups.

    Returns:
        The limit in bytes and the source that set it.
    """
    return read_memory_limit(cgroup_root, proc_self_cgroup)


def _stat_value(text: str | None, key: str) -> int:
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def cgroup_memory_usage(
    cgroup_root: str = DEFAULT_CGROUP_ROOT,
    proc_self_cgroup: str = DEFAULT_PROC_SELF_CGROUP,
) -> int | None:
    """The memory charged against the cgroup that sets this process's memory limit.

    This is the cgroup's working set, as ``docker stats`` and the kubelet count
    it: usage (v2 ``memory.current``, v1 ``memory.usage_in_bytes``) less the
    inactive file cache, which the kernel reclaims before it OOM-kills.

    Args:
        cgroup_root: where the cgroup filesystem is mounted.
        proc_self_cgroup: the file naming this process's cgroups.

    Returns:
        Bytes in use, or None when no cgroup limit below the host's memory
        applies (then the host's own figures are the right ones).
    """
    found = _cgroup_memory_limit(cgroup_root, proc_self_cgroup)
    if found is None or found[0] >= _host_memory_bytes():
        return None
    _, source, directory = found
    if source == SOURCE_V2_MEMORY:
        usage = _parse_memory_value(_read_text(os.path.join(directory, "memory.current")))
        inactive_key = "inactive_file"
    else:
        usage = _parse_memory_value(_read_text(os.path.join(directory, "memory.usage_in_bytes")))
        inactive_key = "total_inactive_file"
    inactive = _stat_value(_read_text(os.path.join(directory, "memory.stat")), inactive_key)
    if usage is None:
        return None
    return max(0, usage - inactive)
