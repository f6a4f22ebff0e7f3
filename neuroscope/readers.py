"""Helpers for task readers: locating data files and reading column formats.

Every malformed line raises :class:`~neuroscope.errors.DataFormatError` with
the file, the line number and what was expected; nothing is skipped quietly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

from neuroscope.errors import DataFormatError, NeuroscopeError
from neuroscope.types import Corpus, Sentence, TaskData
from neuroscope.validation import check_number


def task_option(task: str, name: str, value: Any, choices: Iterable[str]) -> Any:
    """``value`` if it is one of ``choices`` (a task reader's option from registry.toml), else
    an error naming the task, the option and what is allowed. With a mapping of choices,
    the value it maps to."""
    if value not in choices:
        raise NeuroscopeError(f"task {task!r}: option {name} must be one of {', '.join(map(str, choices))}, "
                              f"got {value!r}")
    return choices[value] if isinstance(choices, Mapping) else value


def data_file(data_dir: Path, relative: str, task: str) -> Path:
    """``data_dir / relative``, or a clear error saying where the file was expected."""
    path = Path(data_dir) / relative
    if not path.exists():
        raise NeuroscopeError(
            f"task {task!r}: data file {path} not found (data directory {data_dir}); pass --data-dir (e.g. "
            f"--data-dir ../shared/data), set NEUROSCOPE_DATA, fetch it (neuroscope data fetch {task} --data-dir "
            f"DIR), or edit the task's paths in registry.toml"
        )
    return path


def decode_text(data: bytes, where: str | Path) -> str:
    """UTF-8 text of a file's bytes, or a DataFormatError naming the file, the line and the byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataFormatError(where, line, "UTF-8 text", f"byte 0x{data[exc.start]:02x}") from None


def read_text(path: Path) -> str:
    """A whole UTF-8 text file (see :func:`decode_text`)."""
    return decode_text(Path(path).read_bytes(), path)


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line without its end) of a UTF-8 text file, streamed; a line that is not
    UTF-8 is a DataFormatError naming the file and the line."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataFormatError(path, number, "UTF-8 text", f"byte 0x{raw[exc.start]:02x}") from None
            yield number, line.rstrip("\r\n")


def column_blocks(path: Path, comment: str | None = "#") -> Iterator[list[tuple[int, str]]]:
    """Blank-line separated blocks of (line number, line) from a text file.

    Lines starting with ``comment`` are skipped. A file with no data line is
    an error.
    """
    block: list[tuple[int, str]] = []
    seen = False
    for number, line in text_lines(path):
        if comment is not None and line.startswith(comment):
            continue
        if not line.strip():
            if block:
                yield block
                seen = True
            block = []
            continue
        block.append((number, line))
    if block:
        seen = True
        yield block
    if not seen:
        raise DataFormatError(path, None, "at least one sentence", "an empty file")


def read_columns(
    path: Path,
    word_column: int,
    label_column: int,
    n_columns: int,
    sep: str | None = None,
    comment: str | None = "#",
    skip: Callable[[list[str]], bool] | None = None,
) -> list[Sentence]:
    """Sentences from a one-token-per-line file with exactly ``n_columns`` columns.

    Columns are 0-based. ``sep`` None splits on runs of whitespace. ``skip``
    may drop whole lines on purpose (e.g. CoNLL-U multiword ranges).
    """
    sentences = []
    for block in column_blocks(path, comment):
        words, labels = [], []
        for number, line in block:
            cols = line.split(sep)
            if len(cols) != n_columns:
                raise DataFormatError(path, number, f"{n_columns} columns separated by "
                                      f"{'whitespace' if sep is None else repr(sep)}, got {len(cols)}", line)
            if skip is not None and skip(cols):
                continue
            word, label = cols[word_column], cols[label_column]
            if not word or not label:
                raise DataFormatError(path, number, "a non-empty word and label", line)
            words.append(word)
            labels.append(label)
        if words:
            sentences.append(Sentence(words, labels))
    return sentences


RARE_LABEL = "<rare>"
Doc = TypeVar("Doc")


def split_documents(
    docs: Sequence[Doc],
    section_of: Callable[[Doc], int | None],
    standard: Mapping[str, range],
    standard_label: str,
    train_fraction: float,
    dev_fraction: float,
    root: Path | str,
) -> tuple[dict[str, list[Doc]], str]:
    """Train / dev / test documents and a description of the split.

    The standard split by section when every document has a section and each split's
    sections are present (WSJ treebanks); otherwise the documents, in the given order,
    split by document: the first ``train_fraction``, the next ``dev_fraction``, the
    rest (each split gets at least one document).
    """
    check_number("option train_fraction", train_fraction, low=0, high=1, low_open=True, high_open=True)
    check_number("option dev_fraction", dev_fraction, low=0, high=1 - train_fraction, low_open=True, high_open=True)
    sections = {section_of(d) for d in docs}
    if None not in sections and all(any(s in sections for s in r) for r in standard.values()):
        return {split: [d for d in docs if section_of(d) in secs] for split, secs in standard.items()}, standard_label
    n = len(docs)
    if n < 3:
        raise NeuroscopeError(f"{root}: {n} document(s); a document split needs at least 3")
    n_train = min(max(1, int(round(n * train_fraction))), n - 2)
    n_dev = min(max(1, int(round(n * dev_fraction))), n - n_train - 1)
    groups = {"train": list(docs[:n_train]), "dev": list(docs[n_train : n_train + n_dev]),
              "test": list(docs[n_train + n_dev :])}
    return groups, f"split by document: {n_train} / {n_dev} / {n - n_train - n_dev} files"


def collapse_rare_labels(splits: dict[str, list[Sentence]], min_count: int, label: str = RARE_LABEL
                         ) -> dict[str, list[Sentence]]:
    """Map labels seen fewer than ``min_count`` times in train to ``label``, in every split.

    The usual frequency cut-off of supertagging (e.g. CCG categories seen fewer
    than 10 times); ``min_count`` 1 keeps every label.
    """
    check_number("option min_count", min_count, low=1, integer=True)
    if min_count <= 1:
        return splits
    counts: dict[str, int] = {}
    for s in splits["train"]:
        for t in s.labels:
            counts[t] = counts.get(t, 0) + 1
    keep = {t for t, c in counts.items() if c >= min_count}
    return {name: [Sentence(s.words, [t if t in keep else label for t in s.labels]) for s in sents]
            for name, sents in splits.items()}


def task_from_files(
    data_dir: Path,
    task: str,
    files: Mapping[str, str],
    read: Callable[[Path], list[Sentence]],
    description: str,
    min_count: int = 1,
    transform: Callable[[list[Sentence]], list[Sentence]] | None = None,
) -> TaskData:
    """A TaskData from one file per split (``files``: split -> path relative to ``data_dir``),
    each read with ``read``, optionally transformed, rare labels collapsed."""
    paths = {name: data_file(data_dir, files[name], task) for name in ("train", "dev", "test")}
    splits = {name: read(path) for name, path in paths.items()}
    if transform is not None:
        splits = {name: transform(sentences) for name, sentences in splits.items()}
    splits = collapse_rare_labels(splits, min_count)
    return TaskData(task, *(Corpus(n, splits[n], str(paths[n])) for n in ("train", "dev", "test")), description)
