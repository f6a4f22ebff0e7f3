"""A reader for corpora kept as parquet tables, one sentence per row (the layout the
Hugging Face hub serves datasets in, e.g. CoNLL-2000's ``tokens``, ``pos_tags``,
``chunk_tags``), so a task needs no code and no conversion to column files:

    [tasks.mychunk]
    reader = "parquet"
    train = "conll2000/train.parquet"
    dev = "conll2000/validation.parquet"
    test = "conll2000/test.parquet"
    words = "tokens"         # a list-of-strings column: the sentence's words
    labels = "chunk_tags"    # a list column, one label per word (strings or integers)
    label_names = ["O", "B-ADJP", ...]  # optional: the names of integer labels

Integer labels are mapped to names through ``label_names``, else through the class names
the file's own Hugging Face features record (``datasets`` writes them into the parquet
schema's ``huggingface`` metadata as a ``ClassLabel``); a file with integer labels and
neither is refused, as is a row whose words and labels differ in length, an empty or null
value, or a missing column (each named with the file and the row). Needs pyarrow
(``pip install neuroscope[parquet]``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from neuroscope.plugin import DataFormatError, NeuroscopeError, Sentence, TaskData, hookimpl, task_from_files


def _pyarrow() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise NeuroscopeError("reader 'parquet' needs pyarrow: pip install 'neuroscope[parquet]'") from None
    return pq


def feature_names(metadata: dict[bytes, bytes] | None, column: str) -> list[str] | None:
    """The class names of a label column as the file's Hugging Face features record them
    (a ClassLabel inside a Sequence or List), or None."""
    if not metadata or b"huggingface" not in metadata:
        return None
    try:
        features = json.loads(metadata[b"huggingface"])["info"]["features"][column]
    except (KeyError, TypeError, ValueError):
        return None
    inner = features.get("feature", features) if isinstance(features, dict) else None
    if isinstance(inner, dict) and inner.get("_type") == "ClassLabel" and isinstance(inner.get("names"), list):
        return [str(name) for name in inner["names"]]
    return None


def read_parquet(path: Path, words: str, labels: str, label_names: Sequence[str] | None = None) -> list[Sentence]:
    """Every row of ``path`` as a sentence (module docstring)."""
    pq = _pyarrow()
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow's errors name no file
        raise DataFormatError(f"{path}: not a readable parquet file ({type(exc).__name__}: {exc})") from None
    missing = [c for c in (words, labels) if c not in schema.names]
    if missing:
        raise DataFormatError(f"{path}: no column {', '.join(map(repr, missing))}; its columns: "
                              f"{', '.join(schema.names)}")
    names = list(label_names) if label_names is not None else feature_names(schema.metadata, labels)
    table = pq.read_table(path, columns=[words, labels])
    out = []
    for row, (ws, ls) in enumerate(zip(table.column(words).to_pylist(), table.column(labels).to_pylist())):
        where = f"{path}, row {row}"
        if not isinstance(ws, list) or not isinstance(ls, list) or not ws:
            raise DataFormatError(f"{where}: expected a non-empty list of words in {words!r} and a list of labels in "
                                  f"{labels!r}, found {type(ws).__name__} and {type(ls).__name__}")
        if len(ws) != len(ls):
            raise DataFormatError(f"{where}: {len(ws)} words but {len(ls)} labels")
        if any(w is None or not str(w).strip() for w in ws) or any(lab is None for lab in ls):
            raise DataFormatError(f"{where}: an empty or null word or label")
        if any(isinstance(lab, int) and not isinstance(lab, bool) for lab in ls):
            if names is None:
                raise DataFormatError(f"{path}: column {labels!r} holds integer labels but neither label_names nor "
                                      "the file's Hugging Face features name them; give label_names = [...] in "
                                      "the task's registry.toml table")
            bad = next((lab for lab in ls if not 0 <= lab < len(names)), None)
            if bad is not None:
                raise DataFormatError(f"{where}: label {bad} is outside the {len(names)} label names")
            ls = [names[lab] for lab in ls]
        out.append(Sentence(tuple(str(w) for w in ws), tuple(str(lab) for lab in ls)))
    if not out:
        raise DataFormatError(f"{path}: no rows")
    return out


def read_parquet_task(data_dir: Path, *, train: str = "train.parquet", dev: str = "dev.parquet",
                      test: str = "test.parquet", words: str = "tokens", labels: str | None = None,
                      label_names: Sequence[str] | None = None, min_count: int = 1, location: str | None = None,
                      task: str = "parquet") -> TaskData:
    """The task of three parquet files; with ``location`` (``--task parquet:DIR``, what
    :func:`neuroscope.corpus` writes) the files are DIR's train/dev/test.parquet and the
    columns those DIR/task.json names."""
    if location is not None:
        folder = Path(location)
        described = folder / "task.json"
        if not described.is_file():
            raise NeuroscopeError(f"task {task!r}: {described} not found (a parquet:DIR task's folder holds "
                                  "train.parquet, dev.parquet, test.parquet and task.json, as neuroscope.corpus "
                                  "writes them)")
        try:
            options = json.loads(described.read_text(encoding="utf-8"))
            words, labels, label_names = options["words"], options["labels"], options.get("label_names")
        except (ValueError, KeyError, TypeError) as exc:
            raise NeuroscopeError(f"{described}: expected a JSON object with words and labels ({exc})") from None
        data_dir = folder
    if labels is None:
        raise NeuroscopeError(f"task {task!r}: give labels = \"COLUMN\", the column of the labels")
    if label_names is not None and (not isinstance(label_names, list) or
                                    not all(isinstance(n, str) and n for n in label_names)):
        raise NeuroscopeError(f"task {task!r}: label_names must be a list of names")
    return task_from_files(data_dir, task, {"train": train, "dev": dev, "test": test},
                           lambda path: read_parquet(path, words, labels, label_names),
                           f"parquet task (words {words!r}, labels {labels!r})", min_count)


@hookimpl
def register_tasks(register):
    register("parquet", read_parquet_task)
