"""CoNLL-U reader (Universal Dependencies), e.g. UD English-EWT with PTB-style XPOS.

Ten tab-separated columns; ``column`` chooses ``upos`` (column 4) or ``xpos``
(column 5) as the label. Multiword-token range lines (``3-4``) and empty nodes
(``8.1``) are skipped as the CoNLL-U format defines them: the syntactic words
carry the tags.
"""

from __future__ import annotations

from pathlib import Path

from neuroscope.plugin import TaskData, hookimpl, read_columns, task_from_files, task_option

COLUMNS = {"upos": 3, "xpos": 4}


def _is_range_or_empty(cols: list[str]) -> bool:
    return "-" in cols[0] or "." in cols[0]


def read_conllu(
    data_dir: Path, *, train: str, dev: str, test: str, column: str = "xpos", task: str = "conllu"
) -> TaskData:
    label_column = task_option(task, "column", column, COLUMNS)
    return task_from_files(
        data_dir, task, {"train": train, "dev": dev, "test": test},
        lambda path: read_columns(path, 1, label_column, 10, sep="\t", comment="#", skip=_is_range_or_empty),
        f"CoNLL-U {column.upper()} tagging")


@hookimpl
def register_tasks(register):
    register("conllu", read_conllu)
