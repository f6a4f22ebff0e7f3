"""Progress bars (rich) that library code can drive without knowing about the terminal."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class Reporter:
    """Creates progress tasks; with ``quiet`` every callback is a no-op."""

    def __init__(self, quiet: bool = False, console: Console | None = None):
        self.quiet = quiet
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._running = False

    @contextlib.contextmanager
    def running(self) -> Iterator["Reporter"]:
        """Progress bars for the duration of a run; the display starts with the first task,
        so an error before any work prints no empty progress line."""
        self._running = not self.quiet
        try:
            yield self
        finally:
            self._running = False
            if self._progress is not None:
                self._progress.stop()
                self._progress = None

    def _display(self) -> Progress | None:
        if self._progress is None and self._running:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=False,
            )
            self._progress.start()
        return self._progress

    @contextlib.contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
        """A progress callback ``advance(n)``; ``total`` None when the amount of work is not known."""
        progress = self._display()
        if progress is None:
            yield lambda n: None
            return
        task_id = progress.add_task(escape(description), total=total)
        yield lambda n: progress.advance(task_id, n)
        if total is not None:
            progress.update(task_id, completed=total)
        else:
            progress.update(task_id, total=progress.tasks[task_id].completed)

    def log(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, markup=False, highlight=False)
