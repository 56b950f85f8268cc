"""The history writer's throughput (task graphs themselves: ``bench_graph.py``).

Run with ``python bench/run_bench.py bench_task_manager.py``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from threadloom import TaskStatus
from threadloom.history import TaskHistory, TaskRunRecord

RECORDS = 100_000


def _records() -> list[TaskRunRecord]:
    now = time.time()
    return [
        TaskRunRecord(
            f"e:{i}",
            "e",
            f"t{i % 1000}",
            f"task {i % 1000}",
            TaskStatus.COMPLETED,
            1,
            now,
            now,
            now + i * 1e-6,
            0.001,
            None,
            None,
            ("bench",),
        )
        for i in range(RECORDS)
    ]


@pytest.mark.parametrize("where", ["memory", "file"])
def test_history_write_throughput(benchmark, tmp_path: Path, where: str) -> None:  # type: ignore[no-untyped-def]
    records = _records()
    counter = iter(range(1000))

    def run() -> None:
        path = ":memory:" if where == "memory" else tmp_path / f"h{next(counter)}.db"
        history = TaskHistory(path)
        for record in records:
            history.record_run(record)
        assert history.flush(timeout=600)
        assert history.stats().written == RECORDS
        history.close()

    benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info["records_per_second"] = RECORDS / benchmark.stats.stats.mean
