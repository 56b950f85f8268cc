"""Task profiling: where each kind of task spends its time, and what to change.

Opt in with ``ThreadPoolManager(profile=True)`` (or ``TaskManager(profile=True)``,
or ``--profile`` on the CLI); a pool without a profiler runs exactly the code it
ran before (its fast submit path included).  With one, every attempt of a
timed task runs inside a small wrapper on its worker that reads two clocks
around the call (``time.perf_counter`` for wall time, ``time.thread_time`` for
the worker thread's CPU time) and appends one record to a deque.  Nothing else
happens on the worker: the sampler thread folds the records into per-name
aggregates.  Every task is timed up to ``max_task_rate`` tasks a second
(1,000 by default); beyond it the rest keep the pool's fast path, untouched,
and the report says what share was timed (``coverage``).

What is measured, per task name (the task's ``name``, else its function's
qualified name):

* wall and CPU time of each attempt, queue wait (submission to first start),
  attempts and failed attempts, deadlines missed, percentiles of each;
* the share of wall time off the CPU (waiting on IO or locks, or for the GIL),
  told apart (on Linux) from time spent runnable but waiting for a core
  because the machine is busy: the sampler reads each busy worker's
  ``/proc/self/task/<tid>/schedstat``, so a CPU-bound task on an overloaded
  machine is not taken for an IO-bound one;
* with ``trace_memory=True``, the traced memory each attempt left allocated
  (``tracemalloc``; it slows allocation-heavy code about 2x, hence off by
  default; with several tasks running at once the figure also counts what the
  others allocated meanwhile, so read it as an estimate);
* a sampled call tree: one thread wakes ``sample_rate`` times a second, takes
  ``sys._current_frames()`` and, for every worker that is running a task,
  walks its stack down to the task's wrapper and counts that stack against
  the task's name.

Why sample ``sys._current_frames()`` ourselves rather than use yappi or
pyinstrument: both hook every Python call (``sys.setprofile``) or profile the
thread that started them.  A per-call hook costs a few hundred nanoseconds per
call, on every call, on every worker: on tasks that are themselves a few
microseconds it is a 2-10x slowdown, far beyond the budget of a profiler that
is meant to stay on.  A sampler costs per sample, not per call: at 100 Hz,
walking a few stacks of 20-50 frames takes well under 1% of one core, whatever
the tasks do (Dask's worker profiler makes the same choice).  The price is
statistical: a function is seen in proportion to the time spent in it, and
names that ran for less than a few sample intervals have few or no samples.

:meth:`Profiler.report` turns the aggregates into a :class:`ProfileReport`
with :class:`Recommendation` s (Little's law for IO-bound names waiting in the
queue, processes or a free-threaded build for GIL-bound names, retry hot
spots, starving low priorities, missed deadlines, memory growing per task);
:meth:`Profiler.speedscope` exports the samples for https://www.speedscope.app.

The modules: ``report`` (the report records and their text form), ``advice``
(the recommendations), ``stats`` (the per-name figures and their percentile
reservoirs), ``stacks`` (call trees, top functions and the speedscope
export of the sampled stacks), ``schedstat`` (the kernel's scheduler
statistics of a thread), ``profiler`` (the timing wrapper, the sampler
thread, the report) and ``storage`` (profiles kept in the history file).
"""

from .profiler import (
    DEFAULT_MAX_TASK_RATE,
    DEFAULT_SAMPLE_RATE,
    MAX_NAMES,
    OTHER_NAMES,
    Profiler,
    profiler_from,
)
from .report import (
    CallNode,
    Distribution,
    FunctionCost,
    NameProfile,
    ProfileReport,
    Recommendation,
    format_report,
)
from .stacks import SPEEDSCOPE_SCHEMA
from .storage import RecordedProfile, load_profiles, report_from_dict, save_profile

__all__ = [
    "DEFAULT_MAX_TASK_RATE",
    "DEFAULT_SAMPLE_RATE",
    "MAX_NAMES",
    "OTHER_NAMES",
    "SPEEDSCOPE_SCHEMA",
    "CallNode",
    "Distribution",
    "FunctionCost",
    "NameProfile",
    "ProfileReport",
    "Profiler",
    "Recommendation",
    "RecordedProfile",
    "format_report",
    "load_profiles",
    "profiler_from",
    "report_from_dict",
    "save_profile",
]
