"""Container-aware CPU and memory limits: cgroup v1/v2 fixture trees and this machine."""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from threadloom import _limits
from threadloom._limits import (
    CpuLimit,
    MemoryLimit,
    cgroup_memory_usage,
    memory_limit,
    read_memory_limit,
    read_usable_cpu_count,
    usable_cpu_count,
)

FIXTURES = Path(__file__).parent / "fixtures" / "cgroup"
MiB = 1024 * 1024


def roots(name: str) -> tuple[str, str]:
    """(cgroup_root, proc_self_cgroup) of a fixture tree."""
    return str(FIXTURES / name / "sys"), str(FIXTURES / name / "proc_self_cgroup")


def host_affinity() -> int:
    getaffinity = getattr(os, "sched_getaffinity", None)
    return len(getaffinity(0)) if getaffinity else (os.cpu_count() or 1)


@pytest.fixture(autouse=True)
def _no_cpu_count_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTHON_CPU_COUNT", raising=False)


# -- cgroup parsing, both versions ------------------------------------------------


@pytest.mark.parametrize(
    ("tree", "cpus", "source"),
    [
        # The pod's 150000/100000 binds the container whose own cpu.max is "max".
        ("v2_nested", 1.5, "cgroup v2 cpu.max"),
        ("v2_namespace", 0.5, "cgroup v2 cpu.max"),
        # 25000/50000 at the leaf under a parent with quota -1.
        ("v1_docker", 0.5, "cgroup v1 cpu.cfs_quota_us"),
        # /proc/self/cgroup names a path the mount does not show: the mount is the cgroup.
        ("v1_mount_is_cgroup", 1.0, "cgroup v1 cpu.cfs_quota_us"),
    ],
)
def test_cpu_quota_is_the_tightest_along_the_cgroup_path(
    tree: str, cpus: float, source: str
) -> None:
    assert _limits._cgroup_cpu_quota(*roots(tree)) == (cpus, source)


@pytest.mark.parametrize("tree", ["v2_unlimited", "v1_hybrid_unlimited"])
def test_unlimited_cpu_quota_is_no_quota(tree: str) -> None:
    assert _limits._cgroup_cpu_quota(*roots(tree)) is None


def test_missing_cgroup_files_mean_no_limit(tmp_path: Path) -> None:
    cgroup_root, proc_self_cgroup = str(tmp_path / "nothing"), str(tmp_path / "no_file")
    assert _limits._cgroup_cpu_quota(cgroup_root, proc_self_cgroup) is None
    limit = read_memory_limit(cgroup_root, proc_self_cgroup)
    assert (limit.bytes, limit.source) == (limit.host_bytes, "host")
    assert cgroup_memory_usage(cgroup_root, proc_self_cgroup) is None


@pytest.mark.parametrize(
    ("tree", "limit_bytes", "source", "working_set"),
    [
        # The pod's 512 MiB binds the container whose own memory.max is 1 GiB;
        # usage is the pod's memory.current less its inactive_file.
        ("v2_nested", 512 * MiB, "cgroup v2 memory.max", 314572800 - 100 * MiB),
        ("v2_namespace", 256 * MiB, "cgroup v2 memory.max", 96 * MiB - 32 * MiB),
        # v1 subtracts total_inactive_file (hierarchical), not inactive_file.
        ("v1_docker", 768 * MiB, "cgroup v1 memory.limit_in_bytes", 400 * MiB - 100 * MiB),
        ("v1_mount_is_cgroup", 128 * MiB, "cgroup v1 memory.limit_in_bytes", 48 * MiB),
    ],
)
def test_memory_limit_and_usage_from_cgroup(
    tree: str, limit_bytes: int, source: str, working_set: int
) -> None:
    limit = read_memory_limit(*roots(tree))
    assert limit == MemoryLimit(bytes=limit_bytes, source=source, host_bytes=limit.host_bytes)
    assert limit.host_bytes == psutil.virtual_memory().total
    assert cgroup_memory_usage(*roots(tree)) == working_set


@pytest.mark.parametrize("tree", ["v2_unlimited", "v1_hybrid_unlimited"])
def test_unlimited_memory_is_the_host(tree: str) -> None:
    limit = read_memory_limit(*roots(tree))
    assert limit == MemoryLimit(
        bytes=psutil.virtual_memory().total, source="host", host_bytes=psutil.virtual_memory().total
    )
    assert cgroup_memory_usage(*roots(tree)) is None


# -- combining the sources -------------------------------------------------------


def test_quota_below_the_cpus_sets_the_count() -> None:
    limit = read_usable_cpu_count(*roots("v2_namespace"))
    # Half a CPU rounds up to one: a quota never yields zero workers.
    assert limit.count == 1
    assert limit.host_count == os.cpu_count()
    assert limit.source == ("cgroup v2 cpu.max" if host_affinity() > 1 else "host")


def test_fractional_quota_rounds_up(monkeypatch: pytest.MonkeyPatch) -> None:
    # Inject a larger affinity so the 1.5-CPU quota is the binding limit.
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert read_usable_cpu_count(*roots("v2_nested")) == CpuLimit(2, "cgroup v2 cpu.max", 8)


def test_affinity_below_host_is_the_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert read_usable_cpu_count(*roots("v2_unlimited")) == CpuLimit(3, "sched_getaffinity", 16)
    # ...and a tighter quota still wins over the affinity.
    assert read_usable_cpu_count(*roots("v2_nested")) == CpuLimit(2, "cgroup v2 cpu.max", 16)


def test_python_cpu_count_lowers_the_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setenv("PYTHON_CPU_COUNT", "1")
    assert read_usable_cpu_count(*roots("v2_nested")) == CpuLimit(1, "PYTHON_CPU_COUNT", 8)
    # It is a minimum like the others: it cannot raise the count above a quota.
    monkeypatch.setenv("PYTHON_CPU_COUNT", "6")
    assert read_usable_cpu_count(*roots("v2_nested")) == CpuLimit(2, "cgroup v2 cpu.max", 8)
    monkeypatch.setenv("PYTHON_CPU_COUNT", "default")
    assert read_usable_cpu_count(*roots("v2_unlimited")) == CpuLimit(8, "host", 8)


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5", "abc"])
def test_invalid_python_cpu_count_is_ignored_with_a_warning_naming_it(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    # Regression (issue 11): it raised, so ThreadPoolExecutor() failed where
    # the stdlib's works (3.10-3.12 ignore the variable; 3.13 will not start).
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setenv("PYTHON_CPU_COUNT", value)
    with pytest.warns(RuntimeWarning, match=f"PYTHON_CPU_COUNT={value!r} ignored"):
        limit = read_usable_cpu_count(*roots("v2_unlimited"))
    assert limit == CpuLimit(8, "host", 8)


# -- this machine, for real --------------------------------------------------------


def test_this_machine_cpu_limit() -> None:
    limit = read_usable_cpu_count()
    assert limit.host_count == os.cpu_count()
    assert 1 <= limit.count <= host_affinity() <= limit.host_count
    quota = _limits._cgroup_cpu_quota(_limits.DEFAULT_CGROUP_ROOT, _limits.DEFAULT_PROC_SELF_CGROUP)
    if quota is None:
        expected_source = "sched_getaffinity" if host_affinity() < limit.host_count else "host"
        assert (limit.count, limit.source) == (host_affinity(), expected_source)
    else:
        assert limit.count == min(host_affinity(), max(1, math.ceil(quota[0])))


def test_this_machine_memory_limit() -> None:
    limit = read_memory_limit()
    assert limit.host_bytes == psutil.virtual_memory().total
    assert 0 < limit.bytes <= limit.host_bytes
    assert limit.source in ("host", "cgroup v2 memory.max", "cgroup v1 memory.limit_in_bytes")
    if limit.source == "host":
        assert limit.bytes == limit.host_bytes
        assert cgroup_memory_usage() is None
    else:
        used = cgroup_memory_usage()
        assert used is not None and 0 < used <= limit.bytes


def test_this_machine_cgroup_path_resolves_to_a_real_directory() -> None:
    found = _limits._cgroup_memory_limit(
        _limits.DEFAULT_CGROUP_ROOT, _limits.DEFAULT_PROC_SELF_CGROUP
    )
    if not Path(_limits.DEFAULT_PROC_SELF_CGROUP).exists():
        assert found is None
        return
    if found is not None:
        value, _, directory = found
        assert value > 0
        assert Path(directory).is_dir()
        assert Path(_limits.DEFAULT_CGROUP_ROOT) in (Path(directory), *Path(directory).parents)


# -- caching and import cost ------------------------------------------------------------


def test_cached_forms_return_the_same_record_until_cleared() -> None:
    usable_cpu_count.cache_clear()
    memory_limit.cache_clear()
    first = usable_cpu_count()
    assert usable_cpu_count() is first
    assert first == read_usable_cpu_count()
    assert memory_limit() is memory_limit()
    usable_cpu_count.cache_clear()
    assert usable_cpu_count() is not first


def test_module_imports_without_psutil() -> None:
    # Load the module file alone, outside the package, so that nothing else the
    # package imports can pull psutil in: the executor imports this on its hot path.
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('limits_alone', {_limits.__file__!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "sys.modules['limits_alone'] = module\n"
        "spec.loader.exec_module(module)\n"
        "module.read_usable_cpu_count()\n"
        "print('psutil' in sys.modules)\n"
    )
    assert importlib.util.find_spec("psutil") is not None
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "False"
