"""What a run shows while it works: progress that library code can drive without knowing
where it is shown, log lines, and each finished cell's summary.

In a terminal, progress is rich's bars, each counting its unit (rows, sentences,
units). Anywhere else (a log file, CI, a cluster's batch system, ``nohup``, a Jupyter
notebook, where rich's bars need ipywidgets) it is plain lines: one when a step starts,
one every ``NEUROSCOPE_PROGRESS_SECONDS`` (default 30) with the count, share, elapsed
and remaining time, and one when it ends.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

#: seconds between two progress lines outside a terminal (NEUROSCOPE_PROGRESS_SECONDS)
PROGRESS_SECONDS = 30.0


def progress_seconds() -> float:
    value = os.environ.get("NEUROSCOPE_PROGRESS_SECONDS", "")
    try:
        return max(0.0, float(value)) if value else PROGRESS_SECONDS
    except ValueError:
        return PROGRESS_SECONDS


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class CountColumn(ProgressColumn):
    """``1,234/5,678 rows``, ``72,652 rows`` when the total is unknown, ``done`` for a step
    that had nothing to count (a reused probe)."""

    def render(self, task: Any) -> Text:
        unit = task.fields.get("unit", "")
        if task.finished and not task.completed:
            return Text("done")
        if task.total is None:
            return Text(f"{int(task.completed):,} {unit}".rstrip())
        return Text(f"{int(task.completed):,}/{int(task.total):,} {unit}".rstrip())


class LineProgress:
    """One step's progress as plain lines (outside a terminal)."""

    def __init__(self, console: Console, description: str, total: int | None, unit: str, interval: float):
        self.console, self.description, self.total, self.unit = console, description, total, unit
        self.interval, self.done = interval, 0
        self.start = self.last = time.monotonic()
        size = f" ({total:,} {unit})" if total else ""
        self.print(f"{description}: started{size}")

    def print(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            elapsed = now - self.start
            if self.total:
                share = min(1.0, self.done / self.total)
                left = f", about {duration(elapsed * (1 - share) / share)} left" if share else ""
                self.print(f"{self.description}: {self.done:,}/{self.total:,} {self.unit} ({100 * share:.0f}%), "
                           f"{duration(elapsed)}{left}")
            else:
                self.print(f"{self.description}: {self.done:,} {self.unit}, {duration(elapsed)}")

    def finish(self) -> None:
        counted = f", {self.done:,} {self.unit}" if self.done else ""
        self.print(f"{self.description}: done in {duration(time.monotonic() - self.start)}{counted}")


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

    @property
    def bars(self) -> bool:
        """Whether progress is drawn as bars: in a terminal, not in a notebook."""
        return self.console.is_terminal and not self.console.is_jupyter

    def _display(self) -> Progress | None:
        if self._progress is None and self._running:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), CountColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=False,
            )
            self._progress.start()
        return self._progress

    @contextlib.contextmanager
    def task(self, description: str, total: int | None, unit: str = "rows") -> Iterator[Callable[[int], None]]:
        """A progress callback ``advance(n)`` counting ``unit`` (rows, sentences, units, ...);
        ``total`` None when the amount of work is not known."""
        if not self._running:
            yield lambda n: None
            return
        if not self.bars:
            lines = LineProgress(self.console, description, total, unit, progress_seconds())
            yield lines.advance
            lines.finish()
            return
        progress = self._display()
        assert progress is not None
        task_id = progress.add_task(escape(description), total=total, unit=unit)
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
        minimal set of the first delta, selectivity, each ranker's where several ran, and the
        live-model ablation's accuracies (and the model's loss) with ``--causal``."""
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
        screen = results.get("screen")
        if screen is not None:
            self.console.print(f"screen: {screen['k']:,} of {screen['network_neurons']:,} neurons kept by "
                               f"{screen['rule']} (--screen {screen['requested']})" if screen["screened"] else
                               f"screen: not screened (--screen {screen['requested']}: the full store fits "
                               "--store-budget)", markup=False, highlight=False)
        if len(results.get("rankers", [])) > 1:
            for name, ranker in results["per_ranker"].items():
                s = ranker["summary"]
                self.console.print(f"  {name}: test top {s['ablation']['test']['top']['mean']:.2f}, random "
                                   f"{s['ablation']['test']['random']['mean']:.2f}, bottom "
                                   f"{s['ablation']['test']['bottom']['mean']:.2f}; minimal set "
                                   f"{s['minimal'][str(deltas[0])]['n_neurons']['mean']:.0f} neurons",
                                   markup=False, highlight=False)
        causal = results.get("causal")
        if causal is not None:
            for name, conditions in causal["per_ranker"].items():
                parts = [f"{kind} {conditions[kind]['in_model']['mean']:.2f}"
                         + (f" (loss {conditions[kind]['loss']['mean']:.3f})" if conditions[kind].get("loss") else "")
                         for kind in ("top", "random", "bottom")]
                loss = causal["none"].get("loss")
                self.console.print(f"causal ({name}, {int(round(100 * causal['fraction']))}% removed inside the "
                                   f"model): test accuracy {', '.join(parts)}; nothing removed "
                                   f"{causal['none']['in_model']['mean']:.2f}"
                                   + (f" (loss {loss:.3f})" if loss is not None else ""),
                                   markup=False, highlight=False)
        self.console.print(f"run directory: {run_dir} (report.html, tables.md)", markup=False, highlight=False)
