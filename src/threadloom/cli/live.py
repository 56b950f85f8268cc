"""The live view: what is running, what finished, redrawn in place."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .._types import TaskPriority, TaskStatus
from .console import STATUS_STYLE, TERMINAL_ORDER, clean, literal_text

if TYPE_CHECKING:
    from rich.console import RenderableType

    from .session import Session

# --------------------------------------------------------------------------- the live view


def _priority_name(priority: int) -> str:
    try:
        return TaskPriority(priority).name.lower()
    except ValueError:
        return str(priority)


class View:
    """Progress per stage, workers and queue: a rich Live display on a terminal,
    a plain line every few seconds otherwise (logs, pipes, tests)."""

    def __init__(
        self,
        session: Session,
        title: Callable[[], str],
        *,
        stage_labels: Mapping[str, str] | None = None,
        plain_interval: float = 2.0,
    ) -> None:
        self.session = session
        self.title = title
        self.stage_labels = dict(stage_labels or {})
        self.plain_interval = plain_interval
        self._live: Any = None
        self._next_plain = plain_interval

    def __enter__(self) -> View:
        console = self.session.console
        if self.session.live and console.is_terminal and not console.is_dumb_terminal:
            from rich.live import Live

            # While it runs, sys.stdout and sys.stderr are proxies that print
            # above the display: a task's print() and log records (the root
            # handler writes to the sys.stderr of the moment) stay visible.
            self._live = Live(
                console=console,
                auto_refresh=False,
                transient=False,
                redirect_stdout=True,
                redirect_stderr=True,
            )
            self._live.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._live is not None:
            self._live.update(self._render(), refresh=True)
            self._live.stop()
            self._live = None

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render(), refresh=True)
        elif self.session.elapsed >= self._next_plain:
            self._next_plain += self.plain_interval
            self.session.console.print(self._plain_line(), highlight=False, soft_wrap=True)

    def _numbers(self) -> tuple[dict[str, int], dict[str, Counter[TaskStatus]], dict[str, Any]]:
        totals, statuses, _ = self.session.tracker.snapshot()
        return totals, statuses, self.session.pool.get_metrics()

    def _pool_line(self, metrics: Mapping[str, Any], done: int) -> str:
        depth = metrics["queue_size"]
        by_priority = sorted(metrics["queue_size_by_priority"].items(), reverse=True)
        detail = ", ".join(f"{_priority_name(p)} {n}" for p, n in by_priority if n)
        elapsed = max(self.session.elapsed, 1e-9)
        return (
            f"workers {metrics['worker_count']} (busy {metrics['active_workers']}, "
            f"target {metrics['target_workers']}, max {metrics['max_workers']}) · queue {depth}"
            + (f" ({detail})" if detail else "")
            + f" · retries {metrics['tasks_retried']} · {done / elapsed:.1f} tasks/s"
        )

    def _plain_line(self) -> str:
        totals, statuses, metrics = self._numbers()
        parts = []
        done_all = 0
        for stage in self.session.stages:
            done = sum(statuses.get(stage, Counter()).values())
            done_all += done
            label = clean(self.stage_labels.get(stage, stage))
            parts.append(f"{label} {done}/{totals.get(stage, 0)}")
        return (
            f"[{self.session.elapsed:6.1f}s] "
            + " · ".join(parts)
            + " | "
            + self._pool_line(metrics, done_all)
        )

    def _render(self) -> RenderableType:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        totals, statuses, metrics = self._numbers()
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(width=32)
        grid.add_column(justify="right", no_wrap=True)
        grid.add_column(no_wrap=True)
        done_all = 0
        for stage in self.session.stages:
            counts = statuses.get(stage, Counter())
            done = sum(counts.values())
            done_all += done
            total = totals.get(stage, 0)
            trouble = Text(", ").join(
                Text(f"{counts[s]} {s.value}", style=STATUS_STYLE[s])
                for s in TERMINAL_ORDER[1:]
                if counts.get(s)
            )
            grid.add_row(
                literal_text(self.stage_labels.get(stage, stage)),
                ProgressBar(total=max(total, 1), completed=done if total else 0, width=32),
                f"{done}/{total}",
                trouble,
            )
        return Group(
            literal_text(self.title(), style="bold"),
            grid,
            Text(self._pool_line(metrics, done_all), style="cyan"),
        )
