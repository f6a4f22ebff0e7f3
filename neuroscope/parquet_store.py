"""Activation store entries as parquet word tables, and back (``neuroscope export RUN OUT
--to parquet``, ``neuroscope cache import FILE``; docs/results.md, "Export").

One file per split, ``OUT/<split>.parquet``, one row per word in corpus order:

    split     string   train / dev / test
    sentence  int32    the sentence's number in the split (0 ..)
    word      int32    the word's position in its sentence (0 ..)
    token     string   the word
    label     string   its gold label
    layer_<name>       fixed_size_list<float16>[units]: the word's activations in that
                       layer, the store's float16 values bit for bit

Only the units the run kept are there (a screened run's store holds the screened neurons;
the metadata says which). pandas, polars, duckdb and ``datasets.load_dataset("parquet")``
read the files as they are. The file's key-value metadata ``neuroscope`` (JSON) holds
the store entry's own manifest (identity, extraction settings, corpus checksum, neuron
index and the CRC-32 of every block of rows), and ``layers``, each column's layer and
network neuron ids. :func:`import_parquet` writes such a file back into an activation
store as the very entry it was exported from (same key), after checking every block's
checksum against the values read: a table whose values were changed is refused, and an
imported entry is reused by any run with the same model, settings and corpus, e.g. on
another machine.

Files are written row group by row group (:data:`GROUP_ROWS` words), from store chunks, so
an export holds one chunk in memory; each under a temporary name, renamed when complete.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from neuroscope.errors import NeuroscopeError, StoreError
from neuroscope.rundir import atomic_path
from neuroscope.store import ActivationSet, ActivationStore, word_positions

#: the format named in each file's metadata
FORMAT = "neuroscope-parquet/1"
#: the metadata key holding the description
META_KEY = b"neuroscope"
#: words per row group
GROUP_ROWS = 4096
#: the splits exported, one file each
SPLITS = ("train", "dev", "test")
#: the word columns before the layer columns
WORD_COLUMNS = ("split", "sentence", "word", "token", "label")


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise NeuroscopeError("parquet export and import need pyarrow: pip install 'neuroscope-nlp[parquet]'") from None
    return pa, pq


def layer_columns(X: ActivationSet) -> list[dict[str, Any]]:
    """Per layer holding kept neurons: its name, column name, the store columns and the
    network neuron ids in that layer (the store's column order)."""
    index = X.index
    ids = index.network(np.arange(index.n_neurons))
    layer_of = ids // index.hidden_size
    out = []
    for layer, name in enumerate(index.layer_names):
        columns = np.flatnonzero(layer_of == layer)
        if len(columns):
            out.append({"layer": name, "column": f"layer_{name}", "store_columns": columns.tolist(),
                        "neurons": ids[columns].tolist(), "units": (ids[columns] % index.hidden_size).tolist()})
    return out


def export_split(X: ActivationSet, split: str, words: list[tuple[str, ...]], labels: list[str], path: Path,
                 extra: dict[str, Any] | None = None) -> Path:
    """Write one split's store entry ``X`` with its corpus ``words`` and ``labels`` to ``path``."""
    pa, pq = _pyarrow()
    offsets = np.asarray(X.offsets, dtype=np.int64)
    lengths = np.diff(offsets)
    if [len(w) for w in words] != lengths.tolist() or len(labels) != X.shape[0]:
        raise StoreError(f"{X.path}: its sentence boundaries do not match the corpus of {split} "
                         f"({len(words)} sentences, {len(labels)} words; the entry {len(lengths)} and {X.shape[0]})")
    layers = layer_columns(X)
    description = {"format": FORMAT, "split": split, "store": X.manifest, "layers": layers, **(extra or {})}
    fields = [pa.field("split", pa.string()), pa.field("sentence", pa.int32()), pa.field("word", pa.int32()),
              pa.field("token", pa.string()), pa.field("label", pa.string())]
    fields += [pa.field(layer["column"], pa.list_(pa.float16(), len(layer["store_columns"]))) for layer in layers]
    schema = pa.schema(fields, metadata={META_KEY: json.dumps(description).encode("utf-8")})
    sentence_of, position = (a.astype(np.int32) for a in word_positions(offsets))
    tokens = [w for sentence in words for w in sentence]
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(str(tmp), schema) as writer:
            for start in range(0, X.shape[0], GROUP_ROWS):
                stop = min(start + GROUP_ROWS, X.shape[0])
                block = X.raw_rows(slice(start, stop))
                arrays = [pa.array([split] * (stop - start), pa.string()), pa.array(sentence_of[start:stop]),
                          pa.array(position[start:stop]), pa.array(tokens[start:stop], pa.string()),
                          pa.array(labels[start:stop], pa.string())]
                for layer in layers:
                    values = np.ascontiguousarray(block[:, layer["store_columns"]]).reshape(-1)
                    arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(values, pa.float16()),
                                                                    len(layer["store_columns"])))
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
    return path


def describe_file(path: Path) -> dict[str, Any]:
    """The ``neuroscope`` metadata of an exported parquet file, checked."""
    _, pq = _pyarrow()
    try:
        metadata = pq.read_schema(str(path)).metadata or {}
    except Exception as exc:  # pyarrow raises several types for files that are not parquet
        raise StoreError(f"{path}: not a readable parquet file ({type(exc).__name__}: {exc})") from None
    if META_KEY not in metadata:
        raise StoreError(f"{path}: no neuroscope metadata: not a file written by `neuroscope export --to parquet`")
    try:
        description = json.loads(metadata[META_KEY])
    except ValueError as exc:
        raise StoreError(f"{path}: its neuroscope metadata is not JSON ({exc})") from None
    if not isinstance(description, dict) or description.get("format") != FORMAT:
        found = description.get("format") if isinstance(description, dict) else None
        raise StoreError(f"{path}: metadata format {found!r}, expected {FORMAT}")
    return description


def stored_blocks(path: Path, description: dict[str, Any]) -> Iterator[np.ndarray]:
    """The file's float16 rows in the store's column order, one row group at a time."""
    _, pq = _pyarrow()
    layers = description["layers"]
    n_columns = sum(len(layer["store_columns"]) for layer in layers)
    reader = pq.ParquetFile(str(path))
    names = set(reader.schema_arrow.names)
    missing = [c for c in (*WORD_COLUMNS, *(layer["column"] for layer in layers)) if c not in names]
    if missing:
        raise StoreError(f"{path}: no column {missing[0]!r} (the metadata's layers name it)")
    for group in range(reader.num_row_groups):
        table = reader.read_row_group(group, columns=[layer["column"] for layer in layers])
        block = np.empty((table.num_rows, n_columns), dtype=np.float16)
        for layer in layers:
            column = table.column(layer["column"]).combine_chunks()
            width = len(layer["store_columns"])
            if column.null_count or column.type.list_size != width:
                raise StoreError(f"{path}: column {layer['column']} is not {width} float16 values per word")
            values = column.flatten().to_numpy(zero_copy_only=False)
            if values.dtype != np.float16:
                raise StoreError(f"{path}: column {layer['column']} holds {values.dtype}, expected float16")
            block[:, layer["store_columns"]] = values.reshape(table.num_rows, width)
        yield block


def file_offsets(path: Path) -> np.ndarray:
    """Sentence row boundaries from the file's sentence and word columns."""
    _, pq = _pyarrow()
    table = pq.read_table(str(path), columns=["sentence", "word"])
    sentence = table.column("sentence").to_numpy()
    word = table.column("word").to_numpy()
    starts = np.flatnonzero(word == 0)
    if len(sentence) == 0 or word[0] != 0 or (np.diff(sentence) < 0).any() \
            or not np.array_equal(sentence[starts], np.arange(len(starts))):
        raise StoreError(f"{path}: the sentence and word columns are not in corpus order (sentence 0 .., each from "
                         "word 0)")
    return np.concatenate([starts, [len(sentence)]]).astype(np.int64)


def import_parquet(path: str | Path, store: ActivationStore) -> ActivationSet:
    """The store entry an exported parquet file holds, written into ``store`` (or the one
    already there) after every block's checksum is checked against the file's values."""
    path = Path(path)
    description = describe_file(path)
    manifest = description["store"]
    offsets = file_offsets(path)
    if len(offsets) - 1 != int(manifest.get("n_sentences", -1)):
        raise StoreError(f"{path}: holds {len(offsets) - 1} sentences, its store entry {manifest.get('n_sentences')}")
    return store.add_entry(manifest, offsets, stored_blocks(path, description), source=str(path))
