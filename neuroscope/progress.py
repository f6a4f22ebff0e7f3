"""Progress bars (rich) that library code can drive without knowing about the terminal."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class Reporter:
    """Creates progress tasks; with ``quiet`` every callback is a no-op."""

    def __init__(self, quiet: bool = False, console: Console | None = None):
        self.quiet = quiet
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None

    @contextlib.contextmanager
    def running(self) -> Iterator["Reporter"]:
        if self.quiet:
            yield self
            return
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=False,
        )
        with self._progress:
            yield self
        self._progress = None

    @contextlib.contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
        """A progress callback ``advance(n)``; ``total`` None when the amount of work is not known."""
        if self._progress is None:
            yield lambda n: None
            return
        task_id = self._progress.add_task(description, total=total)
        yield lambda n: self._progress.advance(task_id, n) if self._progress else None
        if total is not None:
            self._progress.update(task_id, completed=total)
        else:
            self._progress.update(task_id, total=self._progress.tasks[task_id].completed)

    def log(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message)
