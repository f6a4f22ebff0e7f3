"""Parallel Meaning Bank reader: semantic tags and CCG categories (paper section 3,
"semantic tagging using the Parallel Meaning Bank"; appendix A.1).

Reads the PMB 4.0.0 gold ``.conll`` layer files: seven tab-separated columns
(token, token, symbol, sem tag, CCG category, WordNet sense, VerbNet roles),
``#`` comment lines, a blank line after each sentence. ``column`` chooses the
label: ``sem`` (column 4) or ``ccg`` (column 5, PMB/Boxer notation, e.g.
``(s:dcl\\np)/np``). The official split is the split of the files (train,
dev, test; ``test = "eval"`` takes the eval part instead).

Multiword expressions are single tokens joined with ``~`` (``Brad~Pitt``):
``multiword = "keep"`` (default, as annotated) keeps them as one word;
``"split"`` makes one word per part, each with the token's label.
"""

from __future__ import annotations

from pathlib import Path

from neuroscope.plugin import Sentence, TaskData, hookimpl, read_columns, task_from_files, task_option

COLUMNS = {"sem": 3, "ccg": 4}
MULTIWORD = ("keep", "split")


def split_multiwords(sentences: list[Sentence]) -> list[Sentence]:
    out = []
    for s in sentences:
        words, labels = [], []
        for w, t in zip(s.words, s.labels):
            parts = [p for p in w.split("~") if p] or [w]
            words += parts
            labels += [t] * len(parts)
        out.append(Sentence(words, labels))
    return out


def read_pmb(
    data_dir: Path,
    *,
    train: str,
    dev: str,
    test: str,
    column: str = "sem",
    multiword: str = "keep",
    min_count: int = 1,
    task: str = "sem",
) -> TaskData:
    label_column = task_option(task, "column", column, COLUMNS)
    task_option(task, "multiword", multiword, MULTIWORD)
    what = "semantic tags" if column == "sem" else "CCG categories (PMB notation)"
    return task_from_files(
        data_dir, task, {"train": train, "dev": dev, "test": test},
        lambda path: read_columns(path, 0, label_column, 7, sep="\t", comment="#"),
        f"PMB 4.0.0 gold {what}; multiword tokens: {multiword}", min_count,
        split_multiwords if multiword == "split" else None)


@hookimpl
def register_tasks(register):
    register("pmb", read_pmb)
