"""A generic reader for one-token-per-line column files, so that users can add a
task in their own registry.toml with no code:

    [tasks.mytask]
    reader = "columns"
    train = "my/train.tsv"
    dev = "my/dev.tsv"
    test = "my/test.tsv"
    columns = 3          # columns on every token line
    word = 1             # 1-based column of the word
    label = 3            # 1-based column of the label
    separator = "tab"    # "tab", "space" or "whitespace"
    comment = "#"        # lines starting with this are skipped ("" for none)
"""

from __future__ import annotations

from pathlib import Path

from neuroscope.plugin import (NeuroscopeError, TaskData, check_number, hookimpl, read_columns, task_from_files,
                               task_option)

SEPARATORS = {"tab": "\t", "space": " ", "whitespace": None}


def read_column_task(
    data_dir: Path,
    *,
    train: str,
    dev: str,
    test: str,
    columns: int,
    word: int,
    label: int,
    separator: str = "tab",
    comment: str = "#",
    min_count: int = 1,
    task: str = "columns",
) -> TaskData:
    sep = task_option(task, "separator", separator, SEPARATORS)
    for name, value in (("columns", columns), ("word", word), ("label", label)):
        check_number(f"task {task!r}: option {name}", value, low=1, integer=True)
    if not (1 <= word <= columns and 1 <= label <= columns):
        raise NeuroscopeError(f"task {task!r}: word and label must be column numbers between 1 and {columns}")
    return task_from_files(
        data_dir, task, {"train": train, "dev": dev, "test": test},
        lambda path: read_columns(path, word - 1, label - 1, columns, sep=sep,
                                  comment=comment or None),
        f"column file task (word column {word}, label column {label})", min_count)


@hookimpl
def register_tasks(register):
    register("columns", read_column_task)
