"""A persisted history of task-manager executions and task runs, in SQLite.

Every record goes through one writer thread: callers only append to a queue
(:meth:`TaskHistory.record_run` and :meth:`TaskHistory.record_execution` do not
wait for the database while fewer than *max_pending* records are queued), and
the writer commits what it finds in batches, one transaction per batch.  A file
database uses WAL, so readers (who get their own connection) never wait for the
writer.  An in-memory database (the default) lives on the writer's connection,
and queries are run by the writer thread between batches.

Every query first waits for the records enqueued before it, so a caller reads
its own writes.

Nothing accepted is lost without a word:

- A database locked by another connection makes records wait (the writer
  retries until the lock clears); producers wait once *max_pending* records are
  queued, and get a :class:`HistoryError` if the queue stays full for
  *backpressure_timeout* seconds.
- A record that cannot be written (a value SQLite cannot store) is dropped alone,
  logged and counted (:attr:`HistoryStats`); the rest of its batch is written.
- A history file deleted (or replaced) while in use is detected before the next
  batch and recreated, with an error in the log.
- An execution left RUNNING by a process that died is marked INTERRUPTED when
  the file is next opened for writing, and shown as such by readers meanwhile.

The modules, bottom to top: ``records`` (the record types and the row form of a
run), ``schema`` (the tables, their migrations and the INSERT statements),
``owner`` (which process wrote an execution, and whether it has ended),
``database`` (the connections: opened, prepared, checked), ``writer`` (the
queue and the writer thread), ``query`` (filters, paging, rows back into
records) and ``store`` (:class:`TaskHistory`).
"""

from .._errors import HistoryError
from .records import ExecutionRecord, HistoryStats, TaskRunRecord, run_row, tags_json
from .schema import SCHEMA_VERSION as SCHEMA_VERSION
from .store import AUTO as AUTO
from .store import MEMORY_RETAIN_COUNT as MEMORY_RETAIN_COUNT
from .store import TaskHistory

__all__ = [
    "ExecutionRecord",
    "HistoryError",
    "HistoryStats",
    "TaskHistory",
    "TaskRunRecord",
    "run_row",
    "tags_json",
]
