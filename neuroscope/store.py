"""The activation store: word activations on disk, memory-mapped, float16.

Activations are written once per (adapter, checkpoint identity, aggregation,
corpus text checksum, store format version) and reused by every run and task
that shares them (DESIGN.md, "Out-of-core"). One store entry is a directory

    <root>/<key>/activations.npy   float16, (tokens, layers * hidden), .npy header
                 offsets.npy       int64, (sentences + 1,), row of each sentence
                 manifest.json     shape, layers, neuron index, identity, checksums

Extraction writes into ``<key>.partial`` with a per-sentence "done" mask, so an
interrupted extraction resumes where it stopped; the directory is renamed to
``<key>`` only when every sentence is written. Consumers read rows in chunks;
nothing here loads the whole tokens x neurons matrix.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from neuroscope.errors import StoreError
from neuroscope.model import ModelAdapter
from neuroscope.types import Corpus, NeuronIndex

log = logging.getLogger(__name__)

STORE_FORMAT_VERSION = 1
DEFAULT_CHUNK_BYTES = 64 * 2**20


def store_key(identity: dict[str, Any], text_checksum: str) -> str:
    """Content address of one store entry."""
    payload = json.dumps(
        {"identity": identity, "text": text_checksum, "format": STORE_FORMAT_VERSION},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def exceeds_page_cache(n_bytes: int) -> bool:
    """Whether ``n_bytes`` of activations are more than half the physical memory, so the
    operating system cannot be expected to keep them cached between passes."""
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return True
    return n_bytes > memory / 2


def to_float32(block: np.ndarray) -> np.ndarray:
    """float16 -> float32 through torch, whose vectorised conversion is ~10x numpy's."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(block)).float().numpy()


class ActivationSet:
    """Read side of one store entry: a (tokens, neurons) float16 matrix on disk.

    Rows are read with positional reads (``preadv``) straight into the output
    buffer, not through a memory map: the operating system may cache the file,
    but none of it counts towards the process's resident memory, so a 20 GB
    store is read with a resident footprint of one chunk (DESIGN.md,
    "Out-of-core"). ``array`` still offers a read-only memory map for inspection.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        manifest_path = self.path / "manifest.json"
        if not manifest_path.is_file():
            raise StoreError(f"{self.path}: not a complete activation store (no manifest.json)")
        with open(manifest_path, encoding="utf-8") as fh:
            self.manifest: dict[str, Any] = json.load(fh)
        if self.manifest.get("format") != STORE_FORMAT_VERSION:
            raise StoreError(
                f"{manifest_path}: store format {self.manifest.get('format')}, expected {STORE_FORMAT_VERSION}"
            )
        self._file = self.path / "activations.npy"
        with open(self._file, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(fh)
            self._offset = fh.tell()
        if fortran or dtype != np.float16 or len(shape) != 2:
            raise StoreError(f"{self._file}: expected a C-ordered 2-D float16 array, found {dtype} {shape}")
        self.shape: tuple[int, int] = (int(shape[0]), int(shape[1]))
        self._row_bytes = 2 * self.shape[1]
        expected_size = self._offset + self.shape[0] * self._row_bytes
        if self._file.stat().st_size != expected_size:
            raise StoreError(f"{self._file}: {self._file.stat().st_size} bytes, expected {expected_size} (truncated?)")
        self.offsets: np.ndarray = np.load(self.path / "offsets.npy")
        self.index = NeuronIndex.from_json(self.manifest["neuron_index"])
        expected = (int(self.manifest["n_tokens"]), self.index.n_neurons)
        if self.shape != expected:
            raise StoreError(f"{self.path}: activations have shape {self.shape}, manifest says {expected}")
        self._fd = os.open(self._file, os.O_RDONLY)

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)

    @property
    def array(self) -> np.ndarray:
        """A read-only memory map of the whole matrix (for inspection; pages it touches count as resident)."""
        return np.load(self._file, mmap_mode="r")

    @property
    def n_tokens(self) -> int:
        return self.shape[0]

    @property
    def n_neurons(self) -> int:
        return self.shape[1]

    def chunk_rows(self, n_neurons: int | None = None, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
        width = n_neurons or self.n_neurons
        return max(1, chunk_bytes // (4 * width))

    def chunks(
        self, neurons: np.ndarray | None = None, chunk_bytes: int = DEFAULT_CHUNK_BYTES
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (first row, float32 block) over all rows, optionally a neuron subset."""
        step = self.chunk_rows(None if neurons is None else len(neurons), chunk_bytes)
        for start in range(0, self.n_tokens, step):
            yield start, self.rows(slice(start, min(start + step, self.n_tokens)), neurons)

    def _read(self, start: int, out: np.ndarray) -> None:
        view = memoryview(out).cast("B")
        position = self._offset + start * self._row_bytes
        done = 0
        while done < len(view):
            n = os.preadv(self._fd, [view[done:]], position + done)
            if n <= 0:
                raise StoreError(f"{self._file}: unexpected end of file at byte {position + done}")
            done += n

    def raw_rows(self, rows: slice | np.ndarray) -> np.ndarray:
        """float16 copy of the given rows: a slice, or sorted row indices (read as contiguous runs)."""
        if isinstance(rows, slice):
            start, stop, step = rows.indices(self.n_tokens)
            if step != 1:
                raise ValueError("row slices must have step 1")
            out = np.empty((max(0, stop - start), self.n_neurons), dtype=np.float16)
            if len(out):
                self._read(start, out)
            return out
        idx = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(idx), self.n_neurons), dtype=np.float16)
        if len(idx) == 0:
            return out
        if idx[0] < 0 or idx[-1] >= self.n_tokens or (len(idx) > 1 and (np.diff(idx) <= 0).any()):
            raise ValueError("row indices must be sorted, unique and within the store")
        breaks = np.flatnonzero(np.diff(idx) != 1) + 1
        starts = np.concatenate([[0], breaks])
        ends = np.concatenate([breaks, [len(idx)]])
        for a, b in zip(starts.tolist(), ends.tolist()):
            self._read(int(idx[a]), out[a:b])
        return out

    def rows(self, rows: slice | np.ndarray, neurons: np.ndarray | None = None) -> np.ndarray:
        """float32 copy of the given rows (a slice or sorted indices) and neurons."""
        block = self.raw_rows(rows)
        if neurons is not None:
            block = np.take(block, neurons, axis=1)
        return to_float32(block)


class ActivationStore:
    """A directory of content-addressed activation sets."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path_for(self, key: str) -> Path:
        return self.root / key

    def get_or_extract(
        self,
        adapter: ModelAdapter,
        corpus: Corpus,
        progress: Callable[[int], None] | None = None,
        flush_every: int = 50,
    ) -> ActivationSet:
        """The activations of ``corpus`` under ``adapter``, extracted if not stored yet."""
        identity = adapter.identity()
        key = store_key(identity, corpus.text_checksum())
        final = self.path_for(key)
        if (final / "manifest.json").is_file():
            log.info("reusing activations %s for %s", final, corpus.name)
            if progress:
                progress(len(corpus))
            return ActivationSet(final)
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock(key):
            if (final / "manifest.json").is_file():
                return ActivationSet(final)
            self._extract(adapter, corpus, identity, key, progress, flush_every)
        return ActivationSet(final)

    @contextlib.contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        lock_path = self.root / f"{key}.lock"
        with open(lock_path, "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _extract(
        self,
        adapter: ModelAdapter,
        corpus: Corpus,
        identity: dict[str, Any],
        key: str,
        progress: Callable[[int], None] | None,
        flush_every: int,
    ) -> None:
        index = adapter.neuron_index
        words = corpus.words()
        lengths = np.array([len(w) for w in words], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        n_tokens = int(offsets[-1])
        partial = self.path_for(key + ".partial")
        done_path = partial / "done.npy"
        array_path = partial / "activations.npy"
        layout = {"n_tokens": n_tokens, "n_neurons": index.n_neurons, "n_sentences": len(words)}
        resumed = False
        if partial.is_dir():
            try:
                with open(partial / "layout.json", encoding="utf-8") as fh:
                    resumed = json.load(fh) == layout
                done = np.load(done_path)
                writer = _RowWriter.open(array_path, (n_tokens, index.n_neurons))
            except (OSError, ValueError, StoreError):
                resumed = False
            if not resumed:
                shutil.rmtree(partial)
        if not resumed:
            partial.mkdir(parents=True)
            _write_json_atomic(partial / "layout.json", layout)
            writer = _RowWriter.create(array_path, (n_tokens, index.n_neurons))
            done = np.zeros(len(words), dtype=bool)
            _save_atomic(done_path, done)
        else:
            log.info("resuming extraction in %s: %d of %d sentences done", partial, int(done.sum()), len(words))
            if progress:
                progress(int(done.sum()))
        todo = [i for i in range(len(words)) if not done[i]]
        todo_words = [words[i] for i in todo]
        for n_batch, batch in enumerate(adapter.batches(todo_words)):
            ids = [todo[i] for i in batch]
            vectors = adapter.embed([words[i] for i in ids])
            for sid, vec in zip(ids, vectors):
                n_layers, n_words, hidden = vec.shape
                if (n_layers, hidden) != (index.n_layers, index.hidden_size) or n_words != lengths[sid]:
                    raise StoreError(
                        f"adapter {adapter.name} returned shape {vec.shape} for sentence {sid} of "
                        f"{corpus.name}; expected ({index.n_layers}, {lengths[sid]}, {index.hidden_size})"
                    )
                rows = vec.transpose(1, 0, 2).reshape(n_words, n_layers * hidden).astype(np.float16)
                if not np.isfinite(rows).all():
                    bad = int(np.argwhere(~np.isfinite(rows).all(axis=0))[0, 0])
                    raise StoreError(
                        f"non-finite activation (float16 overflow or NaN) at neuron {index.name(bad)} in "
                        f"sentence {sid} of {corpus.name}: {' '.join(words[sid][:20])}"
                    )
                writer.write(int(offsets[sid]), rows)
                done[sid] = True
            if progress:
                progress(len(ids))
            if (n_batch + 1) % flush_every == 0:
                writer.sync()
                _save_atomic(done_path, done)
        writer.sync()
        writer.close()
        np.save(partial / "offsets.npy", offsets)
        manifest = {
            "format": STORE_FORMAT_VERSION,
            "key": key,
            "identity": identity,
            "corpus": {"name": corpus.name, "source": corpus.source, "text_sha256": corpus.text_checksum()},
            "n_sentences": len(words),
            "n_tokens": n_tokens,
            "dtype": "float16",
            "neuron_index": index.to_json(),
        }
        os.remove(done_path)
        os.remove(partial / "layout.json")
        _write_json_atomic(partial / "manifest.json", manifest)
        os.replace(partial, self.path_for(key))
        log.info("stored activations of %s (%d tokens x %d neurons) in %s", corpus.name, n_tokens,
                 index.n_neurons, self.path_for(key))


def _save_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.stem + ".tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


class _RowWriter:
    """Writes float16 rows into a .npy file with positional writes (no memory map, so the
    pages written do not stay in the process's resident memory)."""

    def __init__(self, path: Path, shape: tuple[int, int], offset: int):
        self.path, self.shape, self.offset = path, shape, offset
        self.row_bytes = 2 * shape[1]
        self.fd = os.open(path, os.O_RDWR)

    @classmethod
    def create(cls, path: Path, shape: tuple[int, int]) -> "_RowWriter":
        with open(path, "wb") as fh:
            np.lib.format.write_array_header_2_0(fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)),
                                                      "fortran_order": False, "shape": shape})
            offset = fh.tell()
            fh.truncate(offset + shape[0] * shape[1] * 2)
        return cls(path, shape, offset)

    @classmethod
    def open(cls, path: Path, shape: tuple[int, int]) -> "_RowWriter":
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            found, fortran, dtype = read_header(fh)
            offset = fh.tell()
        if tuple(found) != tuple(shape) or fortran or dtype != np.float16:
            raise StoreError(f"{path}: a partial store of another layout")
        return cls(path, shape, offset)

    def write(self, row: int, rows: np.ndarray) -> None:
        data = memoryview(np.ascontiguousarray(rows, dtype=np.float16)).cast("B")
        position = self.offset + row * self.row_bytes
        done = 0
        while done < len(data):
            done += os.pwrite(self.fd, data[done:], position + done)

    def sync(self) -> None:
        os.fdatasync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


def labels_to_ids(labels: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """Label strings to class ids; labels not in ``classes`` get -1 (never predicted)."""
    lookup = {c: i for i, c in enumerate(classes)}
    return np.array([lookup.get(label, -1) for label in labels], dtype=np.int64)
