"""Progress of a long run: a transient rich bar on a terminal; one plain line per step elsewhere (a CI log).

Outside a terminal each new stage, and each step of a stage with a total (batch 2/3), prints one line with
the time since the run started, so a log never stays silent for minutes:

    parity: [   0.0s] loading the reference
    parity: [   4.1s] comparing batches 1/3

Both objects offer the methods of rich's Progress that the commands use (add_task, update, advance,
remove_task, start_task, stop_task).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

PREFIX = "parity: ["  # how a progress line starts (tests and log filters can tell it from an error line)


class LineProgress:
    """Stands in for rich Progress when the console is not a terminal: one line per step, with elapsed time.

    `clock` returns seconds (time.monotonic by default; tests pass a fake one).
    """

    def __init__(self, console: Console | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.clock = clock
        self.start = clock()
        self._next = 0
        self.tasks: dict[int, dict[str, Any]] = {}
        self.lines: list[str] = []  # what was printed, for tests

    def _say(self, task: dict[str, Any]) -> None:
        text = str(task["description"])
        total, done = task.get("total"), task.get("completed") or 0
        if total and done:
            text += f" {int(done)}/{int(total)}"
        if text == task.get("_said"):
            return  # nothing new to say
        task["_said"] = text
        line = f"{PREFIX}{self.clock() - self.start:7.1f}s] {text}"
        self.lines.append(line)
        if self.console is not None:
            self.console.print(Text(line), soft_wrap=True, highlight=False)
            self.console.file.flush()

    def add_task(self, description: str, total: float | None = None, **fields: Any) -> int:
        task_id = self._next
        self._next += 1
        self.tasks[task_id] = {"description": description, "total": total, "completed": 0, **fields}
        self._say(self.tasks[task_id])
        return task_id

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def update(self, task_id: int, *, advance: float | None = None, **fields: Any) -> None:
        task = self.tasks[task_id]
        if advance is not None:
            task["completed"] += advance
        task.update({k: v for k, v in fields.items() if v is not None})
        if task.get("total") and task["completed"] or "description" in fields:
            self._say(task)

    def remove_task(self, task_id: int) -> None:
        self.tasks.pop(task_id, None)

    def start_task(self, task_id: int) -> None:
        pass

    def stop_task(self, task_id: int) -> None:
        pass


@contextlib.contextmanager
def progress(console: Console) -> Iterator[Progress | LineProgress]:
    """A transient rich Progress on a terminal; elsewhere a LineProgress printing to the same console."""
    if not console.is_terminal:
        yield LineProgress(console)
        return
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        yield bar
