"""What a run shows while it works: progress bars (rich) that library code can drive without
knowing about the terminal, log lines, and each finished cell's summary."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text


class Reporter:
    """Creates progress tasks, prints log lines and summaries; with ``quiet`` every
    callback is a no-op."""

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

    def summary(self, cell: str, deltas: Sequence[float], results: dict[str, Any], run_dir: Path) -> None:
        """A finished cell's headline numbers (``cell``: "MODEL x TASK"): the lambdas, test
        accuracy with all / top / random / bottom neurons against the majority baseline, the
        minimal set of the first delta, selectivity, and each ranker's where several ran."""
        if self.quiet:
            return
        summary = results["summary"]
        test = summary["ablation"]["test"]
        lam = results["lambdas"]
        minimal = summary["minimal"][str(deltas[0])]
        self.console.print(Text.assemble((cell, "bold green"),
                                         f": lambdas {lam['l1']:g}, {lam['l2']:g} ({lam['chosen_by']}); "
                                         f"test accuracy all {test['all']['mean']:.2f}, top {test['top']['mean']:.2f}, "
                                         f"random {test['random']['mean']:.2f}, bottom {test['bottom']['mean']:.2f} "
                                         f"(majority {results['majority_baseline']['test']:.2f})"))
        line = (f"minimal set (delta {deltas[0]:g}): {minimal['n_neurons']['mean']:.0f} neurons "
                f"({minimal['share']['mean']:.1f}%), test Acc_t {minimal['test']['selected']['mean']:.2f} "
                f"vs Acc_a {minimal['test']['all']['mean']:.2f}")
        if summary["selectivity"]:
            sel = summary["selectivity"]["test"]
            line += f"; selectivity Sel_a {sel['all']['mean']:.2f}, Sel_t {sel['selected']['mean']:.2f}"
        self.console.print(line, markup=False, highlight=False)
        if len(results.get("rankers", [])) > 1:
            for name, ranker in results["per_ranker"].items():
                s = ranker["summary"]
                self.console.print(f"  {name}: test top {s['ablation']['test']['top']['mean']:.2f}, random "
                                   f"{s['ablation']['test']['random']['mean']:.2f}, bottom "
                                   f"{s['ablation']['test']['bottom']['mean']:.2f}; minimal set "
                                   f"{s['minimal'][str(deltas[0])]['n_neurons']['mean']:.0f} neurons",
                                   markup=False, highlight=False)
        self.console.print(f"run directory: {run_dir} (report.html, tables.md)", markup=False, highlight=False)
