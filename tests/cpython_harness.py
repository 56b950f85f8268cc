"""Run CPython's own ``concurrent.futures`` thread-pool tests against threadloom.

CPython ships the tests of its thread pool in its ``test`` package, as
``test.test_concurrent_futures`` (one module in older versions, such as 3.10; a
package of modules in newer ones, such as 3.13; both are handled).  This
harness runs them with ``ThreadPoolExecutor``
(``concurrent.futures.ThreadPoolExecutor`` and
``concurrent.futures.thread.ThreadPoolExecutor``) and ``Future``
(``concurrent.futures.Future`` and ``concurrent.futures._base.Future``)
replaced by threadloom's, so the same assertions that hold the stdlib class to
its contract hold ours to it.

How the replacement reaches every process the tests start: several tests run a
script in a fresh interpreter (``assert_python_ok``, which passes ``-I`` and so
ignores ``PYTHONPATH``), for instance to check that workers are joined at
interpreter exit.  So the harness makes a throw-away virtual environment (no
pip, a second or less) whose ``site-packages`` holds a ``.pth`` file that, at
start-up of *every* interpreter of that environment, puts the caller's
``sys.path`` after its own (so the threadloom under test, installed or from
``PYTHONPATH=src``, is the one imported) and installs the replacement before
any test module is imported.  The tests run in that interpreter, under
``unittest``, so ``sys.executable`` (what the tests use for their own
subprocesses) is that environment's interpreter too.

What is skipped, explicitly, with the reason shown in the report: tests of
``ProcessPoolExecutor`` and ``InterpreterPoolExecutor`` (threadloom replaces
only the thread pool) and tests that patch private internals of the stdlib
modules.  Every other test runs; see ``PRIVATE_ATTRIBUTES`` for the private
executor attributes the tests read and what threadloom offers for them.

Usage::

    python tests/cpython_harness.py [--json FILE] [--verbose] [--stdlib]
                                    [--jobs N] [--timeout SECONDS]

Exit status: 0 if every selected test passed and no test left threads behind,
1 if not, 2 if this interpreter has no ``test_concurrent_futures``, 3 if the
run itself broke (timeout, crash, the replacement not in effect).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Only for annotations: the test interpreter imports it after the boot.
    import concurrent.futures

#: Where the environment variable tells the boot module what to install.
TARGET_ENV = "THREADLOOM_CPYTHON_HARNESS_TARGET"
SUITE = "test.test_concurrent_futures"

#: Exit codes of the harness.
EXIT_OK, EXIT_FAILED, EXIT_UNAVAILABLE, EXIT_BROKEN = 0, 1, 2, 3

#: Private attributes of the stdlib executor that the thread-pool tests read,
#: and what threadloom offers for each.  Kept here so the report can say it.
PRIVATE_ATTRIBUTES = {
    "_threads": "offered: the set of worker threads (test_saturation, test_idle_thread_reuse, "
    "test_threads_terminate, test_context_manager_shutdown, test_del_shutdown, "
    "test_shutdown_no_wait, test_thread_names_*)",
    "_max_workers": "offered (test_default_workers, test_saturation)",
    "_broken": "offered (FailingInitializer test_initializer)",
    "Future._state/_result/_exception/_condition": "offered by threadloom's Future "
    "(test_future, test_wait, test_as_completed build futures in a given state)",
}

# --------------------------------------------------------------------------
# The replacement (runs inside the test interpreter, from the .pth boot)
# --------------------------------------------------------------------------


def threadloom_classes() -> tuple[
    type[concurrent.futures.ThreadPoolExecutor], type[concurrent.futures.Future[Any]]
]:
    """threadloom's executor and future classes (public names preferred)."""
    import threadloom

    executor = getattr(threadloom, "ThreadPoolExecutor", None)
    if executor is None:
        executor = importlib.import_module("threadloom.executor").ThreadPoolExecutor
    future = getattr(threadloom, "Future", None)
    if future is None:
        future = importlib.import_module("threadloom.core._future").Future
    return executor, future


def install_replacement(target: str) -> None:
    """Point ``concurrent.futures`` at threadloom's classes (*target* "threadloom").

    With *target* "stdlib" nothing is replaced: the same run then measures the
    stdlib itself, which tells a threadloom failure from a flaky test.
    """
    if target == "stdlib":
        return
    if target != "threadloom":
        raise ValueError(f"{TARGET_ENV} must be 'threadloom' or 'stdlib', not {target!r}")
    import concurrent.futures
    import concurrent.futures._base
    import concurrent.futures.thread

    # InterpreterPoolExecutor (3.14+) subclasses the stdlib thread pool and
    # relies on its internals: import it first so it keeps its real base.
    with contextlib.suppress(ImportError):
        importlib.import_module("concurrent.futures.interpreter")
    executor, future = threadloom_classes()
    concurrent.futures.ThreadPoolExecutor = executor  # type: ignore[misc]
    concurrent.futures.thread.ThreadPoolExecutor = executor  # type: ignore[misc]
    concurrent.futures.Future = future  # type: ignore[misc]
    concurrent.futures._base.Future = future  # type: ignore[misc]


def replacement_in_effect() -> bool:
    import concurrent.futures
    import concurrent.futures._base
    import concurrent.futures.thread

    executor, future = threadloom_classes()
    return (
        concurrent.futures.ThreadPoolExecutor is executor
        and concurrent.futures.thread.ThreadPoolExecutor is executor
        and concurrent.futures.Future is future
        and concurrent.futures._base.Future is future
    )


_BOOT_TEMPLATE = '''\
"""Written by threadloom's tests/cpython_harness.py: runs at start-up (see the .pth)."""
import importlib.util
import os
import site
import sys
import traceback


def _boot():
    # The caller's path, in its order, after this environment's own: the
    # threadloom under test is the one the caller would import.  addsitedir
    # also runs .pth files there (editable installs need that).
    for entry in {paths!r}:
        if entry not in sys.path and os.path.isdir(entry):
            site.addsitedir(entry)
    spec = importlib.util.spec_from_file_location("_threadloom_cpython_harness", {harness!r})
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    module.install_replacement(os.environ.get({target_env!r}, "threadloom"))


try:
    _boot()
except BaseException:
    # Loudly: a test run against the stdlib by mistake would pass for the wrong reason.
    traceback.print_exc()
    sys.stderr.write("threadloom cpython harness: could not install the replacement\\n")
    sys.stderr.flush()
    os._exit(70)
'''


def make_environment(root: Path) -> Path:
    """Create the throw-away environment under *root*; return its interpreter."""
    builder = venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt")
    builder.create(root)
    context = builder.ensure_directories(root)  # idempotent: names the interpreter
    python = Path(context.env_exe)
    purelib = subprocess.run(
        [str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    site_packages = Path(purelib)
    site_packages.mkdir(parents=True, exist_ok=True)
    paths = [entry for entry in sys.path if entry and os.path.isdir(entry)]
    boot = _BOOT_TEMPLATE.format(
        paths=[os.path.abspath(p) for p in paths],
        harness=os.path.abspath(__file__),
        target_env=TARGET_ENV,
    )
    (site_packages / "_threadloom_cpython_boot.py").write_text(boot, encoding="utf-8")
    (site_packages / "_threadloom_cpython_boot.pth").write_text(
        "import _threadloom_cpython_boot\n", encoding="utf-8"
    )
    return python


# --------------------------------------------------------------------------
# Test selection (runs inside the test interpreter)
# --------------------------------------------------------------------------


def _executor_kind(cls: type) -> str | None:
    executor_type = getattr(cls, "executor_type", None)
    if not isinstance(executor_type, type):
        return None
    from concurrent.futures.process import ProcessPoolExecutor

    if issubclass(executor_type, ProcessPoolExecutor):
        return "process"
    try:
        from concurrent.futures.interpreter import (  # type: ignore[import-not-found]
            InterpreterPoolExecutor,
        )
    except ImportError:
        pass
    else:
        if issubclass(executor_type, InterpreterPoolExecutor):
            return "interpreter"
    return "thread"


_PROCESS_REASON = "about ProcessPoolExecutor: threadloom replaces only the thread pool"
_INTERPRETER_REASON = "about InterpreterPoolExecutor: threadloom replaces only the thread pool"

#: Modules of the package that test only the other executors.
_MODULE_REASONS = {
    "test_process_pool": _PROCESS_REASON,
    "test_deadlock": _PROCESS_REASON + " (worker crashes and pickling deadlocks)",
    "test_interpreter_pool": _INTERPRETER_REASON,
}

#: Individual test classes about the other executors that have no executor_type.
_CLASS_REASONS = {
    "FailingInitializerResourcesTest": _PROCESS_REASON
    + " (multiprocessing's resource tracker after a failing initializer)",
}

#: (class name, test method) -> reason, for tests that patch stdlib-private
#: module internals of the thread pool.  None do in 3.10-3.13; keep the table
#: so that a later CPython's such test is skipped here, visibly, not silently.
_TEST_REASONS: dict[tuple[str, str], str] = {}


def skip_reason(test: Any) -> str | None:
    """Why *test* does not apply to threadloom, or None if it must run."""
    cls = type(test)
    module = cls.__module__.rpartition(".")[2]
    if module in _MODULE_REASONS:
        return _MODULE_REASONS[module]
    if cls.__name__ in _CLASS_REASONS:
        return _CLASS_REASONS[cls.__name__]
    kind = _executor_kind(cls)
    if kind == "process":
        return _PROCESS_REASON
    if kind == "interpreter":
        return _INTERPRETER_REASON
    method = getattr(test, "_testMethodName", "")
    reason = _TEST_REASONS.get((cls.__name__, method))
    if reason is not None:
        return reason
    if method == "test_default_workers":
        return _default_workers_deviation()
    return None


def _default_workers_deviation() -> str | None:
    # threadloom's default worker count is the stdlib's rule, min(32, cpus + 4),
    # with a container-aware CPU count (affinity and cgroup quota).  Where that
    # count equals the one the test expects, the test runs; where a quota
    # makes them differ, it would fail by design, so it is skipped, saying so.
    try:
        from threadloom._limits import usable_cpu_count
    except ImportError:  # renamed: run the test, which then says what differs
        return None

    usable = usable_cpu_count()
    stdlib_count = getattr(os, "process_cpu_count", os.cpu_count)() or 1
    if usable.count == stdlib_count:
        return None
    return (
        "threadloom's default is container-aware by design: "
        f"{usable.count} usable CPUs ({usable.source}) vs {stdlib_count} seen by the stdlib"
    )


def iter_tests(suite: Any) -> Iterator[Any]:
    """Every test case of a (nested) suite, in run order."""
    import unittest

    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from iter_tests(item)
        else:
            yield item


def mark_skipped(test: Any, reason: str) -> None:
    """Make *test* report a skip with *reason* instead of running."""
    cls = type(test)
    if _executor_kind(cls) in ("process", "interpreter") or cls.__name__ in _CLASS_REASONS:
        # Skip the whole class, so its setUpClass does not run either.
        cls.__unittest_skip__ = True
        cls.__unittest_skip_why__ = reason
        return

    def skipped() -> None:  # pragma: no cover - never called
        raise AssertionError("a skipped test ran")

    skipped.__unittest_skip__ = True  # type: ignore[attr-defined]
    skipped.__unittest_skip_why__ = reason  # type: ignore[attr-defined]
    setattr(test, test._testMethodName, skipped)


# --------------------------------------------------------------------------
# The child: runs the tests, writes a JSON record
# --------------------------------------------------------------------------


def _make_result_class() -> type:
    import unittest

    from test import support  # type: ignore[import-not-found]  # CPython's own, no stubs

    class RecordingResult(unittest.TextTestResult):
        """Keeps each test's outcome and notes tests that left threads behind."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.outcomes: dict[str, str] = {}
            self.details: dict[str, str] = {}
            self.skip_reasons: dict[str, str] = {}
            self.env_changed: list[str] = []
            self.durations: dict[str, float] = {}
            self._started = 0.0

        def _set(self, test: Any, outcome: str, detail: str | None = None) -> None:
            test_id = test.id()
            # A failure (of the test or of a subtest) is never overwritten by a pass.
            if self.outcomes.get(test_id) in ("failure", "error") and outcome == "passed":
                return
            self.outcomes[test_id] = outcome
            if detail is not None:
                previous = self.details.get(test_id)
                self.details[test_id] = detail if previous is None else previous + "\n" + detail

        def startTest(self, test: Any) -> None:
            support.environment_altered = False
            self._started = time.monotonic()
            super().startTest(test)

        def stopTest(self, test: Any) -> None:
            super().stopTest(test)
            self.durations[test.id()] = time.monotonic() - self._started
            if support.environment_altered:
                self.env_changed.append(test.id())
                support.environment_altered = False

        def addSuccess(self, test: Any) -> None:
            super().addSuccess(test)
            self._set(test, "passed")

        def addFailure(self, test: Any, err: Any) -> None:
            super().addFailure(test, err)
            self._set(test, "failure", self._describe(err, test))

        def addError(self, test: Any, err: Any) -> None:
            super().addError(test, err)
            # Errors of class/module fixtures come with a placeholder "test".
            self._set(test, "error", self._describe(err, test))

        def addSkip(self, test: Any, reason: str) -> None:
            super().addSkip(test, reason)
            self._set(test, "skipped")
            self.skip_reasons[test.id()] = reason

        def addExpectedFailure(self, test: Any, err: Any) -> None:
            super().addExpectedFailure(test, err)
            self._set(test, "passed")

        def addUnexpectedSuccess(self, test: Any) -> None:
            super().addUnexpectedSuccess(test)
            self._set(test, "failure", "unexpected success")

        def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
            super().addSubTest(test, subtest, err)
            if err is not None:
                kind = "failure" if issubclass(err[0], test.failureException) else "error"
                self._set(test, kind, f"{subtest}: {self._describe(err, test)}")

        def _describe(self, err: Any, test: Any) -> str:
            # unittest's own rendering of a failure (private, so not in typeshed).
            text: str = self._exc_info_to_string(err, test)  # type: ignore[attr-defined]
            return text

    return RecordingResult


#: Rough run time (seconds) of the slow thread-pool classes, measured on the
#: stdlib: their sleeps dominate.  Only used to balance the shards.
_CLASS_COSTS = {
    "ThreadPoolWaitTests": 17.0,
    "ThreadPoolExecutorTest": 10.0,
    "ThreadPoolShutdownTest": 4.5,
    "ThreadPoolAsCompletedTest": 4.5,
    "FutureTests": 3.0,
}


def load_selected(shard: int, shards: int) -> tuple[Any, dict[str, str]]:
    """Load the suite, mark the skips, keep this shard's classes (whole, in order)."""
    import unittest

    suite = unittest.TestLoader().loadTestsFromModule(importlib.import_module(SUITE))
    tests = list(iter_tests(suite))
    harness_skips: dict[str, str] = {}
    costs: dict[str, float] = {}
    for test in tests:
        reason = skip_reason(test)
        key = f"{type(test).__module__}.{type(test).__qualname__}"
        if reason is not None:
            mark_skipped(test, reason)
            harness_skips[test.id()] = reason
            costs.setdefault(key, 0.0)
        else:
            costs[key] = _CLASS_COSTS.get(type(test).__name__, 0.5)
    # Greedy balance, heaviest class first; deterministic, so that the shards
    # together run every test exactly once.
    loads = [0.0] * shards
    owner: dict[str, int] = {}
    for key in sorted(costs, key=lambda k: (-costs[k], k)):
        index = loads.index(min(loads))
        owner[key] = index
        loads[index] += costs[key] + 0.01
    cases = [
        test
        for test in tests
        if owner[f"{type(test).__module__}.{type(test).__qualname__}"] == shard
    ]
    selected = unittest.TestSuite(cases)
    return selected, {t.id(): harness_skips[t.id()] for t in cases if t.id() in harness_skips}


def run_child(out_path: str, verbose: bool, shard: int, shards: int, deadline: float) -> int:
    import faulthandler
    import unittest

    target = os.environ.get(TARGET_ENV, "threadloom")
    if target == "threadloom" and not replacement_in_effect():
        sys.stderr.write("threadloom cpython harness: the replacement is not in effect\n")
        return EXIT_BROKEN
    # A hang prints every thread's stack and ends the run instead of stalling it.
    if deadline > 0:
        faulthandler.dump_traceback_later(deadline, exit=True)
    suite, harness_skips = load_selected(shard, shards)
    executor, _ = threadloom_classes()
    runner = unittest.TextTestRunner(
        stream=sys.stdout, verbosity=2 if verbose else 1, resultclass=_make_result_class()
    )
    started = time.monotonic()
    result = runner.run(suite)
    elapsed = time.monotonic() - started
    outcomes = result.outcomes  # type: ignore[attr-defined]
    record = {
        "python": sys.version.split()[0],
        "implementation": sys.implementation.name,
        "target": target,
        "executor": f"{executor.__module__}.{executor.__qualname__}" if target != "stdlib" else "",
        "native_core": _native_core(),
        "ran": result.testsRun,
        "passed": sum(1 for o in outcomes.values() if o == "passed"),
        "skipped": sum(1 for o in outcomes.values() if o == "skipped"),
        "failed": sorted(t for t, o in outcomes.items() if o in ("failure", "error")),
        "failures": {t: d for t, d in result.details.items()},  # type: ignore[attr-defined]
        "skipped_by_harness": harness_skips,
        "skip_reasons": result.skip_reasons,  # type: ignore[attr-defined]
        "env_changed": result.env_changed,  # type: ignore[attr-defined]
        "durations": result.durations,  # type: ignore[attr-defined]
        "seconds": round(elapsed, 2),
        "was_successful": result.wasSuccessful(),
    }
    Path(out_path).write_text(json.dumps(record, indent=1, sort_keys=True), encoding="utf-8")
    return EXIT_OK


def _native_core() -> bool | None:
    try:
        return bool(importlib.import_module("threadloom.core").NATIVE)
    except ImportError:
        return None


# --------------------------------------------------------------------------
# The parent: finds the suite, makes the environment, runs and merges shards
# --------------------------------------------------------------------------


def suite_available() -> bool:
    """Whether this interpreter has CPython's concurrent.futures tests."""
    try:
        return importlib.util.find_spec(SUITE) is not None
    except ModuleNotFoundError:
        return False


def _kill_group(process: subprocess.Popen[Any]) -> None:
    if os.name == "nt":
        process.kill()
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def run(
    *,
    target: str = "threadloom",
    jobs: int = 2,
    timeout: float = 300.0,
    verbose: bool = False,
    log: Any = None,
) -> dict[str, Any]:
    """Run the suite; return the merged record (see ``main`` for the keys)."""
    if not suite_available():
        return {"available": False, "python": sys.version.split()[0]}
    log = log or sys.stdout
    with tempfile.TemporaryDirectory(prefix="threadloom-cpython-") as tmp:
        root = Path(tmp)
        python = make_environment(root / "env")
        env = dict(os.environ)
        env[TARGET_ENV] = target
        env.pop("PYTHONPATH", None)  # the boot module carries the caller's path
        env["PYTHONUNBUFFERED"] = "1"
        processes = []
        jobs = max(1, jobs)
        for shard in range(jobs):
            out = root / f"result-{shard}.json"
            log_path = root / f"log-{shard}.txt"
            # -I as the tests' own subprocesses do; it also keeps tests/ off sys.path.
            command = [str(python), "-I", "-X", "faulthandler", os.path.abspath(__file__)]
            command.append("--child")
            command += ["--out", str(out), "--deadline", str(max(1.0, timeout - 5.0))]
            if verbose:
                command.append("--verbose")
            command += ["--shard", str(shard), "--shards", str(jobs)]
            handle = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed below
            process = subprocess.Popen(
                command,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=tmp,
                start_new_session=os.name != "nt",
            )
            processes.append((process, handle, out, log_path, shard))
        deadline = time.monotonic() + timeout
        records: list[dict[str, Any]] = []
        broken: list[str] = []
        for process, handle, out, log_path, shard in processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _kill_group(process)
                process.wait()
                broken.append(f"shard {shard}: timed out after {timeout:.0f} s")
            finally:
                handle.close()
            text = log_path.read_text(encoding="utf-8", errors="replace")
            if verbose:
                log.write(text)
            if process.returncode == 0 and out.exists():
                records.append(json.loads(out.read_text(encoding="utf-8")))
            else:
                broken.append(f"shard {shard}: exit status {process.returncode}\n" + text[-6000:])
    return merge(records, broken)


def merge(records: list[dict[str, Any]], broken: list[str]) -> dict[str, Any]:
    merged: dict[str, Any] = {
        "available": True,
        "broken": broken,
        "ran": 0,
        "passed": 0,
        "skipped": 0,
        "failed": [],
        "failures": {},
        "skipped_by_harness": {},
        "skip_reasons": {},
        "env_changed": [],
        "durations": {},
        "seconds": 0.0,
    }
    for record in records:
        for key in ("python", "implementation", "target", "executor", "native_core"):
            merged[key] = record[key]
        for key in ("ran", "passed", "skipped"):
            merged[key] += record[key]
        merged["failed"] += record["failed"]
        merged["env_changed"] += record["env_changed"]
        for key in ("failures", "skipped_by_harness", "skip_reasons", "durations"):
            merged[key].update(record[key])
        merged["seconds"] = max(merged["seconds"], record["seconds"])
    merged["failed"].sort()
    merged["ok"] = not broken and not merged["failed"] and not merged["env_changed"]
    return merged


def counts(record: dict[str, Any]) -> dict[str, int]:
    """The counts that matter: thread-pool tests selected, passed, failed, skipped."""
    by_harness = len(record["skipped_by_harness"])
    return {
        "ran": record["ran"],
        "selected": record["ran"] - by_harness,
        "passed": record["passed"],
        "failed": len(record["failed"]),
        "skipped_by_tests": record["skipped"] - by_harness,
        "skipped_by_harness": by_harness,
        "left_threads_behind": len(record["env_changed"]),
    }


def summary(record: dict[str, Any]) -> str:
    """One line: what ran, on what, with the counts."""
    if not record.get("available"):
        return f"CPython {record['python']} has no {SUITE}: nothing to run"
    core = {True: "native core", False: "pure-Python core", None: "stdlib"}[
        record.get("native_core") if record.get("target") == "threadloom" else None
    ]
    n = counts(record)
    return (
        f"CPython {record.get('python', '?')} {SUITE} against {record.get('target', '?')} "
        f"({core}): ran {n['ran']} = {n['selected']} thread-pool tests "
        f"(passed {n['passed']}, failed {n['failed']}, "
        f"skipped by the tests themselves {n['skipped_by_tests']}) "
        f"+ {n['skipped_by_harness']} skipped by the harness (other executors); "
        f"left threads behind {n['left_threads_behind']}; {record['seconds']:.1f} s"
    )


def describe(record: dict[str, Any]) -> str:
    """The summary, then every failure, env change and skip reason."""
    lines = [summary(record)]
    for problem in record.get("broken", []):
        lines.append(f"BROKEN RUN: {problem}")
    for test_id in record.get("failed", []):
        lines.append(f"FAILED {test_id}\n{textwrap.indent(record['failures'][test_id], '    ')}")
    for test_id in record.get("env_changed", []):
        lines.append(f"LEFT THREADS BEHIND {test_id}")
    reasons: dict[str, int] = {}
    for reason in record.get("skip_reasons", {}).values():
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
        lines.append(f"skipped {count:4d}: {reason}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the full record to this file")
    parser.add_argument("--verbose", action="store_true", help="print unittest's output")
    parser.add_argument(
        "--stdlib", action="store_true", help="run against the stdlib itself (a baseline)"
    )
    parser.add_argument("--jobs", type=int, default=2, help="parallel test processes")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for the whole run")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--shard", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--shards", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        try:
            return run_child(args.out, args.verbose, args.shard, args.shards, args.deadline)
        except BaseException:
            traceback.print_exc()
            return EXIT_BROKEN
    record = run(
        target="stdlib" if args.stdlib else "threadloom",
        jobs=args.jobs,
        timeout=args.timeout,
        verbose=args.verbose,
    )
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1, sort_keys=True), encoding="utf-8")
    print(describe(record))
    if not record["available"]:
        return EXIT_UNAVAILABLE
    if record["broken"]:
        return EXIT_BROKEN
    return EXIT_OK if record["ok"] else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
