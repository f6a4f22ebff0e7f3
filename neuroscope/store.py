"""The activation store: word activations on disk, float16, read in chunks.

Activations are written once per (adapter, checkpoint identity, aggregation,
extraction batch size and device kind, corpus text checksum, store format
version) and reused by every run and task that shares them (DESIGN.md,
"Out-of-core"). The batch size is part of the key because padding changes the
float32 arithmetic and so, now and then, the float16 value stored; the device
kind for the same reason (docs/architecture.md, "The activation store"). One
store entry is a directory

    <root>/<key>/activations.npy   float16, (tokens, layers * hidden), .npy header
                 offsets.npy       int64, (sentences + 1,), row of each sentence
                 manifest.json     shape, layers, neuron index, identity, checksums

Integrity: extraction refuses NaN and inf, and records a CRC-32 of every block
of ``chunk_rows`` rows (about 16 MiB) in the manifest. A reader checks each
block the first time any of its rows is read (and that it holds no NaN or
inf), so a damaged entry (bytes zeroed, overwritten, truncated) is an error
naming the entry and the way out, never a silently different result. The
check costs one pass over the entry per process (bench/RESULTS.md).

Extraction writes into ``<key>.partial`` with a per-sentence "done" mask,
saved every ``flush_every`` batches and at least every ``flush_seconds``, so
an interrupted extraction resumes where it stopped, in the same batches as an
uninterrupted one (so with identical values); the directory is renamed to
``<key>`` only when every sentence is written. An extraction split over several
devices or nodes (``--extract-shards``) writes the same partial entry: each shard a
contiguous run of the same batches, its own rows and its own "done" mask, under a
shared lock (an unsharded extraction holds it alone); the entry is checked and renamed
(:meth:`ActivationStore.seal`) once all are written, byte for byte what one extraction
writes. Consumers read rows in chunks; nothing here loads the whole tokens x neurons
matrix.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import attrs
import numpy as np

from neuroscope.errors import StoreError
from neuroscope.rundir import atomic_path, naming
from neuroscope.types import Corpus, NeuronIndex

if TYPE_CHECKING:  # the store itself needs no torch: `neuroscope cache` answers without it
    from neuroscope.model import ModelAdapter

log = logging.getLogger(__name__)

STORE_FORMAT_VERSION = 2
DEFAULT_CHUNK_BYTES = 64 * 2**20
#: bytes per checksummed block of rows
CHECK_BYTES = 16 * 2**20
#: bytes per stored value (float16)
VALUE_BYTES = 2
#: float16 bits of the exponent; all set means inf or NaN
_F16_EXPONENT = 0x7C00

WAY_OUT = ("remove it with `neuroscope cache remove {key}` (or `neuroscope cache prune`) and run again to "
           "re-extract")


def store_key(identity: dict[str, Any], text_checksum: str, extraction: dict[str, Any] | None = None) -> str:
    """Content address of one store entry: everything its values depend on."""
    payload = json.dumps(
        {"identity": identity, "extraction": extraction or {}, "text": text_checksum, "format": STORE_FORMAT_VERSION},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def extraction_settings(adapter: ModelAdapter) -> dict[str, Any]:
    """The settings of the forward passes that change stored values beside the adapter's identity."""
    settings = {"batch_size": int(adapter.batch_size), "device": adapter.device_name().split(":")[0]}
    if getattr(adapter, "batch_tokens", 0):  # batches by tokens: other padding (keys of sentence batches unchanged)
        settings["batch_tokens"] = int(adapter.batch_tokens)
    return settings


def check_rows(n_neurons: int) -> int:
    """Rows per checksummed block: about :data:`CHECK_BYTES` of float16 rows."""
    return max(1, CHECK_BYTES // (2 * n_neurons))


def non_finite_row(block: np.ndarray) -> int | None:
    """Index of the first row of a float16 block holding NaN or inf, or None."""
    bad = (np.ascontiguousarray(block).view(np.uint16) & _F16_EXPONENT) == _F16_EXPONENT
    rows = np.flatnonzero(bad.any(axis=1))
    return int(rows[0]) if len(rows) else None


def _write_json_atomic(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())


def free_space(root: Path) -> int:
    """Free bytes on the disk that holds ``root`` (or would: its nearest existing parent)."""
    where = Path(root)
    while not where.exists() and where != where.parent:
        where = where.parent
    return shutil.disk_usage(where).free


def check_space(root: Path, tokens: int, neurons: int) -> None:
    """Refuse, in one line, activations that would not fit on the store's disk: ``tokens``
    words x ``neurons`` float16 values against the free space under ``root`` (an MLP site
    of a large model is 917 KB per token; docs/models.md, "Sites")."""
    need = VALUE_BYTES * int(tokens) * int(neurons)
    free = free_space(root)
    if need > free:
        raise StoreError(f"the activations need {need / 1e9:,.1f} GB ({tokens:,} words x {neurons:,} neurons x 2 "
                         f"bytes), but {free / 1e9:,.1f} GB are free under {root}; read fewer layers (--layers), "
                         "fewer sentences (--max-sentences) or use another --cache-dir")


def physical_memory() -> int | None:
    """Bytes of physical memory, or None where the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def exceeds_page_cache(n_bytes: int) -> bool:
    """Whether ``n_bytes`` of activations are more than half the physical memory, so the
    operating system cannot be expected to keep them cached between passes."""
    memory = physical_memory()
    return memory is None or n_bytes > memory / 2


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
        self.key = self.path.name
        manifest_path = self.path / "manifest.json"
        if not manifest_path.is_file():
            raise StoreError(f"{self.path}: not a complete activation store (no manifest.json)")
        try:
            self._open(manifest_path)
        except StoreError:
            raise
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise StoreError(f"activation store entry {self.path} is damaged ({type(exc).__name__}: {exc}); "
                             + WAY_OUT.format(key=self.key)) from None
        self._verified = np.zeros(len(self._checksums), dtype=bool)
        self._verify_lock = threading.Lock()
        self._fd = os.open(self._file, os.O_RDONLY)

    def _damaged(self, what: str) -> StoreError:
        return StoreError(f"activation store entry {self.path} is damaged: {what}; " + WAY_OUT.format(key=self.key))

    def _open(self, manifest_path: Path) -> None:
        with open(manifest_path, encoding="utf-8") as fh:
            self.manifest: dict[str, Any] = json.load(fh)
        if not isinstance(self.manifest, dict) or self.manifest.get("format") != STORE_FORMAT_VERSION:
            found = self.manifest.get("format") if isinstance(self.manifest, dict) else None
            raise StoreError(f"{manifest_path}: store format {found}, expected {STORE_FORMAT_VERSION}; "
                             + WAY_OUT.format(key=self.key))
        self._file = self.path / "activations.npy"
        with open(self._file, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(fh)
            self._offset = fh.tell()
        if fortran or dtype != np.float16 or len(shape) != 2:
            raise self._damaged(f"{self._file.name} holds {dtype} {shape}, expected a C-ordered 2-D float16 array")
        self.shape: tuple[int, int] = (int(shape[0]), int(shape[1]))
        self._row_bytes = 2 * self.shape[1]
        expected_size = self._offset + self.shape[0] * self._row_bytes
        if self._file.stat().st_size != expected_size:
            raise self._damaged(f"{self._file.name} has {self._file.stat().st_size} bytes, expected "
                                f"{expected_size} (truncated?)")
        self.offsets: np.ndarray = np.load(self.path / "offsets.npy")
        self.index = NeuronIndex.from_json(self.manifest["neuron_index"])
        expected = (int(self.manifest["n_tokens"]), self.index.n_neurons)
        if self.shape != expected:
            raise self._damaged(f"activations have shape {self.shape}, the manifest says {expected}")
        offsets = self.offsets
        if (offsets.shape != (int(self.manifest["n_sentences"]) + 1,) or offsets.dtype.kind not in "iu"
                or offsets[0] != 0 or offsets[-1] != self.shape[0] or (np.diff(offsets) <= 0).any()):
            raise self._damaged("offsets.npy does not match the manifest (sentence boundaries)")
        checks = self.manifest["checksums"]
        self.check_rows = int(checks["chunk_rows"])
        self._checksums = np.asarray(checks["crc32"], dtype=np.int64)
        if checks["algorithm"] != "crc32" or len(self._checksums) != -(-self.shape[0] // self.check_rows):
            raise self._damaged("the manifest's checksums do not cover the activations")

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

    def _check_block(self, block: int) -> None:
        """Read block ``block`` of rows, compare its CRC-32 with the manifest's and refuse NaN / inf."""
        start = block * self.check_rows
        data = np.empty((min(self.check_rows, self.shape[0] - start), self.shape[1]), dtype=np.float16)
        self._pread(start, data)
        if zlib.crc32(data) != self._checksums[block]:
            raise self._damaged(f"rows {start}..{start + len(data) - 1} do not match their checksum")
        bad = non_finite_row(data)
        if bad is not None:
            raise self._damaged(f"row {start + bad} holds NaN or inf")

    def _ensure_verified(self, first: int, last: int) -> None:
        """Check every not yet checked block holding rows ``first`` .. ``last`` (once per block
        and process)."""
        blocks = range(first // self.check_rows, last // self.check_rows + 1)
        if self._verified[blocks.start : blocks.stop].all():
            return
        with self._verify_lock:
            for block in blocks:
                if not self._verified[block]:
                    self._check_block(block)
                    self._verified[block] = True

    def verify(self) -> None:
        """Check every block now (``neuroscope cache verify``); raises StoreError on damage."""
        if self.shape[0]:
            self._ensure_verified(0, self.shape[0] - 1)

    def _read(self, start: int, out: np.ndarray) -> None:
        """Rows ``start`` .. ``start + len(out)`` into ``out``, checked against their checksums."""
        self._ensure_verified(start, start + len(out) - 1)
        self._pread(start, out)

    def _pread(self, start: int, out: np.ndarray) -> None:
        view = memoryview(out).cast("B")
        position = self._offset + start * self._row_bytes
        done = 0
        while done < len(view):
            n = os.preadv(self._fd, [view[done:]], position + done)
            if n <= 0:
                raise self._damaged(f"{self._file.name} ends early, at byte {position + done} (truncated?)")
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
        self._ensure_verified(int(idx[0]), int(idx[-1]))
        breaks = np.flatnonzero(np.diff(idx) != 1) + 1
        starts = np.concatenate([[0], breaks])
        ends = np.concatenate([breaks, [len(idx)]])
        for a, b in zip(starts.tolist(), ends.tolist()):
            self._pread(int(idx[a]), out[a:b])
        return out

    def rows(self, rows: slice | np.ndarray, neurons: np.ndarray | None = None) -> np.ndarray:
        """float32 copy of the given rows (a slice or sorted indices) and neurons."""
        block = self.raw_rows(rows)
        if neurons is not None:
            block = np.take(block, neurons, axis=1)
        return to_float32(block)


def entry_manifest(key: str, identity: dict[str, Any], extraction: dict[str, Any], corpus: Corpus, n_tokens: int,
                   index: NeuronIndex) -> dict[str, Any]:
    """What a store entry's manifest.json says of it (on disk it adds its checksums)."""
    return {"format": STORE_FORMAT_VERSION, "key": key, "identity": identity, "extraction": extraction,
            "corpus": {"name": corpus.name, "source": corpus.source, "text_sha256": corpus.text_checksum()},
            "n_sentences": len(corpus), "n_tokens": n_tokens, "dtype": "float16", "neuron_index": index.to_json()}


def stored_rows(adapter: ModelAdapter, name: str, words: Sequence[Sequence[str]], ids: Sequence[int]
                ) -> Iterator[tuple[int, np.ndarray]]:
    """(sentence id, float16 rows) of one batch of sentences ``ids``, as the store holds
    them: checked for shape and refused when a value is not finite (float16 overflow, NaN)."""
    index = adapter.neuron_index
    for sid, vec in zip(ids, adapter.embed_rows([words[i] for i in ids])):
        if vec.shape != (len(words[sid]), index.n_neurons):
            raise StoreError(f"adapter {adapter.name} returned shape {vec.shape} for sentence {sid} of {name}; "
                             f"expected ({len(words[sid])} words, {index.n_neurons} neurons)")
        rows = vec.astype(np.float16)
        if not np.isfinite(rows).all():
            bad = int(np.argwhere(~np.isfinite(rows).all(axis=0))[0, 0])
            raise StoreError(f"non-finite activation (float16 overflow or NaN) at neuron {index.name(bad)} in "
                             f"sentence {sid} of {name}: {' '.join(words[sid][:20])}")
        yield sid, rows


#: ``--keep memory``: activations held by this process, by store key (no disk store)
IN_MEMORY: dict[str, "MemoryActivations"] = {}


class MemoryActivations(ActivationSet):
    """``--keep memory``: the rows a store entry would hold, in this process's memory (its
    float16 array), read through the same interface, so every method runs on it unchanged.
    Kept in :data:`IN_MEMORY` under the key the store would give it, for the units of the
    run in this process."""

    def __init__(self, manifest: dict[str, Any], array: np.ndarray, offsets: np.ndarray):
        self.path = Path(f"memory:{manifest['key']}")
        self.key = manifest["key"]
        self.manifest = manifest
        self._array = array
        self.shape = (int(array.shape[0]), int(array.shape[1]))
        self.offsets = offsets
        self.index = NeuronIndex.from_json(manifest["neuron_index"])
        self.check_rows = max(1, self.shape[0])

    def __del__(self) -> None:
        return None

    @property
    def array(self) -> np.ndarray:
        view = self._array.view()
        view.flags.writeable = False
        return view

    def _ensure_verified(self, first: int, last: int) -> None:
        return None  # written by this process, checked for NaN and inf as it was

    def verify(self) -> None:
        return None

    def _pread(self, start: int, out: np.ndarray) -> None:
        out[...] = self._array[start : start + len(out)]


def extract_in_memory(adapter: ModelAdapter, corpus: Corpus, progress: Callable[[int], None] | None = None
                      ) -> MemoryActivations:
    """``corpus``'s activations under ``adapter`` in memory (``--keep memory``), in the
    store's batches and float16 rows, so they equal the store's entry; registered in
    :data:`IN_MEMORY` under the store's key (a second call returns them)."""
    extraction = extraction_settings(adapter)
    key = store_key(adapter.identity(), corpus.text_checksum(), extraction)
    if key in IN_MEMORY:
        if progress:
            progress(len(corpus))
        return IN_MEMORY[key]
    index = adapter.neuron_index
    words = corpus.words()
    offsets = np.concatenate([[0], np.cumsum([len(w) for w in words])]).astype(np.int64)
    array = np.empty((int(offsets[-1]), index.n_neurons), dtype=np.float16)
    for ids in adapter.batches(words):
        for sid, rows in stored_rows(adapter, corpus.name, words, ids):
            array[offsets[sid]:offsets[sid + 1]] = rows
        if progress:
            progress(len(ids))
    manifest = {**entry_manifest(key, adapter.identity(), extraction, corpus, int(offsets[-1]), index),
                "kept": "memory"}
    IN_MEMORY[key] = MemoryActivations(manifest, array, offsets)
    return IN_MEMORY[key]


@attrs.frozen
class StoreEntry:
    """One directory of the store, as ``neuroscope cache list`` shows it."""

    key: str
    state: str  # complete, partial (being extracted or interrupted), damaged, old format
    model: str
    corpus: str
    sentences: int | str
    tokens: int | str
    neurons: int | str
    size: int


def _describe_identity(identity: dict[str, Any]) -> str:
    where = identity.get("checkpoint") or identity.get("archive_sha256", "")[:12] or identity.get("weights_sha256", "")[:12]
    return f"{identity.get('adapter', '?')} {where}".strip()


class ActivationStore:
    """A directory of content-addressed activation sets."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path_for(self, key: str) -> Path:
        return self.root / key

    def open(self, key: str) -> ActivationSet:
        return ActivationSet(self.path_for(key))

    def stored(self, adapter: ModelAdapter, corpus: Corpus) -> ActivationSet | None:
        """The stored (complete) activations of ``corpus`` under ``adapter``, or None; nothing
        is extracted."""
        key = store_key(adapter.identity(), corpus.text_checksum(), extraction_settings(adapter))
        final = self.path_for(key)
        if not (final / "manifest.json").is_file():
            return None
        log.info("reusing activations %s for %s", final, corpus.name)
        return ActivationSet(final)

    def get_or_extract(
        self,
        adapter: ModelAdapter,
        corpus: Corpus,
        progress: Callable[[int], None] | None = None,
        flush_every: int = 50,
        flush_seconds: float = 10.0,
    ) -> ActivationSet:
        """The activations of ``corpus`` under ``adapter``, extracted if not stored yet."""
        identity = adapter.identity()
        extraction = extraction_settings(adapter)
        key = store_key(identity, corpus.text_checksum(), extraction)
        final = self.path_for(key)
        if (final / "manifest.json").is_file():
            log.info("reusing activations %s for %s", final, corpus.name)
            if progress:
                progress(len(corpus))
            return ActivationSet(final)
        self._make_root()
        with self._lock(key):
            if (final / "manifest.json").is_file():
                return ActivationSet(final)
            with naming(self.path_for(key + ".partial")):  # a full disk: the entry being written
                self._extract(adapter, corpus, identity, extraction, key, progress, flush_every, flush_seconds)
        return ActivationSet(final)

    def _make_root(self) -> None:
        """Create the store's directory, or say clearly why it cannot be used."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise StoreError(f"activation store {self.root}: a file is in the way (expected a directory); "
                             "pass --cache-dir elsewhere") from None
        except OSError as exc:
            raise StoreError(f"activation store {self.root}: cannot create it ({exc.strerror}); "
                             "pass --cache-dir elsewhere") from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StoreError(f"activation store {self.root}: not writable; pass --cache-dir elsewhere, e.g. "
                             "--cache-dir ~/neuroscope-cache")

    @contextlib.contextmanager
    def _lock(self, key: str, shared: bool = False) -> Iterator[None]:
        """The extraction lock of ``key``: exclusive (one extraction, or making and sealing a
        sharded one's partial entry), or ``shared`` by the shards writing their rows."""
        lock_path = self.root / f"{key}.lock"
        with open(lock_path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _busy(self, key: str) -> bool:
        """Whether another process holds the extraction lock of ``key`` now."""
        lock_path = self.root / f"{key}.lock"
        if not lock_path.exists():
            return False
        with open(lock_path, "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
        return False

    def _extract(
        self,
        adapter: ModelAdapter,
        corpus: Corpus,
        identity: dict[str, Any],
        extraction: dict[str, Any],
        key: str,
        progress: Callable[[int], None] | None,
        flush_every: int,
        flush_seconds: float,
    ) -> None:
        words = corpus.words()
        partial, offsets, done = self._partial(adapter, corpus, identity, extraction, key)
        if done.any():
            log.info("resuming extraction in %s: %d of %d sentences done", partial, int(done.sum()), len(words))
            if progress:
                progress(int(done.sum()))
        # the batches of an uninterrupted extraction; a resumed one skips those already written
        # (also by shards, --extract-shards), so every sentence is embedded in the same batch,
        # with the same padding, either way
        batches = [b for b in adapter.batches(words) if not done[b].all()]
        self._write_batches(adapter, corpus, partial, offsets, done, partial / "done.npy", batches, progress,
                            flush_every, flush_seconds)
        self._seal(key)

    def _partial(self, adapter: ModelAdapter, corpus: Corpus, identity: dict[str, Any], extraction: dict[str, Any],
                 key: str) -> tuple[Path, np.ndarray, np.ndarray]:
        """``<key>.partial``, created (its zeroed rows, an empty "done" mask, the manifest
        to be and the sentences' rows) or continued where its layout is the entry's; with
        the sentences done so far (its own mask and every shard's). Called under the key's
        exclusive lock, or by a shard under the shared one and the making lock."""
        index = adapter.neuron_index
        words = corpus.words()
        offsets = np.concatenate([[0], np.cumsum([len(w) for w in words])]).astype(np.int64)
        n_tokens = int(offsets[-1])
        partial = self.path_for(key + ".partial")
        layout = {"n_tokens": n_tokens, "n_neurons": index.n_neurons, "n_sentences": len(words)}
        if partial.is_dir():
            try:
                with open(partial / "layout.json", encoding="utf-8") as fh:
                    resumed = json.load(fh) == layout
                done = _done_so_far(partial, len(words))
                _RowWriter.open(partial / "activations.npy", (n_tokens, index.n_neurons)).close()
            except (OSError, ValueError, StoreError):
                resumed = False
            if resumed:
                _save_atomic(partial / "offsets.npy", offsets)
                _write_json_atomic(partial / PENDING, entry_manifest(key, identity, extraction, corpus, n_tokens,
                                                                     index))
                return partial, offsets, done
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
        _write_json_atomic(partial / "layout.json", layout)
        _RowWriter.create(partial / "activations.npy", (n_tokens, index.n_neurons)).close()
        _save_atomic(partial / "done.npy", np.zeros(len(words), dtype=bool))
        _save_atomic(partial / "offsets.npy", offsets)
        _write_json_atomic(partial / PENDING, entry_manifest(key, identity, extraction, corpus, n_tokens, index))
        return partial, offsets, np.zeros(len(words), dtype=bool)

    def _write_batches(self, adapter: ModelAdapter, corpus: Corpus, partial: Path, offsets: np.ndarray,
                       done: np.ndarray, done_path: Path, batches: Sequence[Sequence[int]],
                       progress: Callable[[int], None] | None, flush_every: int, flush_seconds: float) -> None:
        """Embed ``batches`` into the partial entry's rows, saving ``done`` (the sentences
        written) at ``done_path`` every ``flush_every`` batches and ``flush_seconds``, after
        the rows it marks are on disk."""
        words = corpus.words()
        writer = _RowWriter.open(partial / "activations.npy", (int(offsets[-1]), adapter.neuron_index.n_neurons))
        try:
            last_flush = time.monotonic()
            for n_batch, ids in enumerate(batches):
                for sid, rows in stored_rows(adapter, corpus.name, words, ids):
                    writer.write(int(offsets[sid]), rows)
                done[ids] = True
                if progress:
                    progress(len(ids))
                if (n_batch + 1) % flush_every == 0 or time.monotonic() - last_flush >= flush_seconds:
                    writer.sync()
                    _save_atomic(done_path, done)
                    last_flush = time.monotonic()
            writer.sync()
            _save_atomic(done_path, done)
        finally:
            writer.close()

    def _seal(self, key: str) -> None:
        """Finish ``<key>.partial`` once every sentence is written (by one extraction or by
        all its shards): the block checksums into its manifest, the masks removed, the
        directory renamed to ``<key>``. Needs no model: what the manifest says was written
        when the partial entry was made. Called under the key's exclusive lock."""
        partial = self.path_for(key + ".partial")
        try:
            with open(partial / PENDING, encoding="utf-8") as fh:
                manifest = json.load(fh)
            n_tokens, n_neurons = int(manifest["n_tokens"]), NeuronIndex.from_json(manifest["neuron_index"]).n_neurons
            done = _done_so_far(partial, int(manifest["n_sentences"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{partial}: not a partial activation store entry that can be finished "
                             f"({type(exc).__name__}: {exc}); " + WAY_OUT.format(key=key + ".partial")) from None
        if not done.all():
            missing = np.flatnonzero(~done)
            raise StoreError(f"{partial}: {len(missing):,} of {len(done):,} sentences are not extracted yet (the "
                             f"first: sentence {int(missing[0])}); an extraction shard did not finish: run again to "
                             "extract the rest")
        manifest["checksums"] = _checksums(partial / "activations.npy", (n_tokens, n_neurons))
        for mask in [partial / "done.npy", *partial.glob(f"{SHARD_DONE}*.npy")]:
            mask.unlink(missing_ok=True)
        os.remove(partial / "layout.json")
        os.remove(partial / PENDING)
        _write_json_atomic(partial / "manifest.json", manifest)
        os.replace(partial, self.path_for(key))
        log.info("stored activations of %s (%d tokens x %d neurons) in %s", manifest["corpus"]["name"], n_tokens,
                 n_neurons, self.path_for(key))

    def extract_shard(self, adapter: ModelAdapter, corpus: Corpus, shard: int, shards: int,
                      progress: Callable[[int], None] | None = None, flush_every: int = 50,
                      flush_seconds: float = 10.0) -> str:
        """Write shard ``shard`` (0-based) of ``shards`` of ``corpus``'s extraction into
        ``<key>.partial`` and return the entry's key (``--extract-shards``,
        docs/distributed.md). The shards are contiguous runs of the batches an unsharded
        extraction makes (:func:`shard_batches`), so every sentence is embedded in the same
        batch with the same padding and the finished entry is byte for byte a one-device
        extraction's. Shards write their own rows concurrently, each its own "done" mask,
        under a shared lock (``cache list`` shows the entry as being extracted); nothing is
        renamed into place here: :meth:`seal` does that once every shard has finished. A
        stored entry: nothing to do."""
        identity = adapter.identity()
        extraction = extraction_settings(adapter)
        key = store_key(identity, corpus.text_checksum(), extraction)
        if (self.path_for(key) / "manifest.json").is_file():
            if progress:
                progress(len(corpus))
            return key
        self._make_root()
        partial = self.path_for(key + ".partial")
        # shared with the other shards (an unsharded extraction or the seal holds it alone);
        # the first shard in makes the partial entry, under a lock of its own, that the
        # others check, so that no shard waits for another's writing
        with self._lock(key, shared=True), naming(partial):
            if (self.path_for(key) / "manifest.json").is_file():
                return key
            with self._lock(key + MAKING):
                partial, offsets, done = self._partial(adapter, corpus, identity, extraction, key)
            words = corpus.words()
            mine = shard_batches(adapter.batches(words), words, shard, shards)
            if progress:  # the other shards' sentences and this one's written already count as done
                progress(len(words) - sum(len(b) for b in mine if not done[b].all()))
            mask = partial / f"{SHARD_DONE}{shard}-of-{shards}.npy"
            self._write_batches(adapter, corpus, partial, offsets, done, mask, [b for b in mine if not done[b].all()],
                                progress, flush_every, flush_seconds)
        return key

    def seal(self, key: str) -> ActivationSet:
        """The entry ``key`` whose shards (:meth:`extract_shard`) have all been written, made
        complete and opened; an error naming what is missing where a shard did not finish."""
        final = self.path_for(key)
        if not (final / "manifest.json").is_file():
            with self._lock(key), naming(self.path_for(key + ".partial")):
                if not (final / "manifest.json").is_file():
                    self._seal(key)
        return ActivationSet(final)

    def add_entry(self, manifest: dict[str, Any], offsets: np.ndarray, blocks: Iterator[np.ndarray],
                  source: str) -> ActivationSet:
        """A complete entry written from outside (``neuroscope cache import``): ``manifest``
        as an entry's manifest.json holds it (its key, shape and checksums), ``offsets`` its
        sentence rows, ``blocks`` its float16 rows in order. The rows are written into
        ``<key>.partial`` and checked against the manifest's checksums before the entry
        is renamed into place, so an entry whose values differ by one bit from those the
        checksums were taken of is refused (naming ``source``), never stored. An entry
        already stored is kept and returned."""
        key = str(manifest.get("key", ""))
        if not key or not key.isalnum() or manifest.get("format") != STORE_FORMAT_VERSION:
            raise StoreError(f"{source}: not an activation store entry's description (key {key!r}, format "
                             f"{manifest.get('format')!r}, expected {STORE_FORMAT_VERSION})")
        final = self.path_for(key)
        if (final / "manifest.json").is_file():
            return ActivationSet(final)
        self._make_root()
        shape = (int(manifest["n_tokens"]), NeuronIndex.from_json(manifest["neuron_index"]).n_neurons)
        with self._lock(key):
            partial = self.path_for(key + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            with naming(partial):
                writer = _RowWriter.create(partial / "activations.npy", shape)
                row = 0
                try:
                    for block in blocks:
                        if row + len(block) > shape[0] or block.shape[1:] != (shape[1],):
                            raise StoreError(f"{source}: holds more rows or other columns than its description "
                                             f"({shape[0]} x {shape[1]})")
                        writer.write(row, block)
                        row += len(block)
                    writer.sync()
                finally:
                    writer.close()
                if row != shape[0]:
                    shutil.rmtree(partial, ignore_errors=True)
                    raise StoreError(f"{source}: holds {row} rows, its description {shape[0]}")
                _save_atomic(partial / "offsets.npy", np.asarray(offsets, dtype=np.int64))
                _write_json_atomic(partial / "manifest.json", manifest)
                try:
                    ActivationSet(partial).verify()
                except StoreError as exc:
                    shutil.rmtree(partial, ignore_errors=True)
                    raise StoreError(f"{source}: its values are not those its checksums were taken of "
                                     f"({str(exc).split(': ', 1)[-1].split(';')[0]}); nothing was stored") from None
                os.replace(partial, final)
        return ActivationSet(final)

    def entries(self) -> list[StoreEntry]:
        """Every entry directory of the store, complete or not, sorted by key."""
        if not self.root.is_dir():
            return []
        out = []
        for path in sorted(p for p in self.root.iterdir() if p.is_dir()):
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            key = path.name
            if key.endswith(".partial"):
                state = "extracting" if self._busy(key[: -len(".partial")]) else "interrupted"
                out.append(StoreEntry(key, state, "-", "-", "-", "-", "-", size))
                continue
            try:
                with open(path / "manifest.json", encoding="utf-8") as fh:
                    manifest = json.load(fh)
                model = _describe_identity(manifest["identity"])
                corpus = f"{manifest['corpus']['name']}: {manifest['corpus']['source']}"
                counts = (manifest["n_sentences"], manifest["n_tokens"],
                          NeuronIndex.from_json(manifest["neuron_index"]).n_neurons)
                state = "complete" if manifest.get("format") == STORE_FORMAT_VERSION else \
                    f"old format {manifest.get('format')}"
            except (OSError, ValueError, KeyError, TypeError) as exc:
                out.append(StoreEntry(key, f"damaged ({type(exc).__name__})", "-", "-", "-", "-", "-", size))
                continue
            out.append(StoreEntry(key, state, model, corpus, *counts, size))
        return out

    def match(self, prefixes: Sequence[str]) -> list[str]:
        """Entry keys for key prefixes; a prefix that matches none or several is an error."""
        keys = [e.key for e in self.entries()]
        out = []
        for prefix in prefixes:
            if not prefix or not all(c.isalnum() or c in "._-" for c in prefix) or prefix.startswith("."):
                raise StoreError(f"{prefix!r} is not an entry key (or the start of one): keys are letters, digits "
                                 "and '.', '_', '-'; `neuroscope cache list` shows them")
            found = [k for k in keys if k.startswith(prefix)]
            if len(found) != 1:
                raise StoreError(f"{self.root}: {len(found)} entries match {prefix!r}"
                                 + (f" ({', '.join(found)})" if found else "") + "; `neuroscope cache list` shows them")
            out.append(found[0])
        return out

    def prunable(self) -> list[str]:
        """Entries no run can use: interrupted extractions nobody continues, damaged or
        old-format entries, and complete entries that fail verification."""
        out = []
        for entry in self.entries():
            if entry.state == "complete":
                try:
                    self.open(entry.key).verify()
                    continue
                except StoreError:
                    pass
            elif entry.state == "extracting":
                continue
            out.append(entry.key)
        return out

    def remove(self, key: str) -> int:
        """Delete one entry (and its lock file); returns the bytes freed."""
        base = key[: -len(".partial")] if key.endswith(".partial") else key
        if self._busy(base):
            raise StoreError(f"{self.path_for(key)}: an extraction is writing it now; wait for it to finish")
        path = self.path_for(key)
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        shutil.rmtree(path)
        if not any(self.path_for(k).exists() for k in (base, base + ".partial")):
            for lock in (self.root / f"{base}.lock", self.root / f"{base}{MAKING}.lock"):
                lock.unlink(missing_ok=True)
        return size


#: the manifest a partial entry will have, its checksums aside (what sealing it needs)
PENDING = "manifest.pending.json"
#: the suffix of the lock a sharded extraction's first shard makes the partial entry under
MAKING = ".making"
#: the start of a shard's "done" mask's name: ``done-shard-<i>-of-<n>.npy``
SHARD_DONE = "done-shard-"


def _done_so_far(partial: Path, n_sentences: int) -> np.ndarray:
    """The sentences a partial entry holds: its own "done" mask and every shard's, or'ed."""
    done = np.zeros(n_sentences, dtype=bool)
    for path in [partial / "done.npy", *sorted(partial.glob(f"{SHARD_DONE}*.npy"))]:
        if path.is_file():
            mask = np.load(path)
            if mask.shape != (n_sentences,) or mask.dtype != bool:
                raise StoreError(f"{path}: a mask of {mask.dtype} {mask.shape}, expected bool ({n_sentences},)")
            done |= mask
    return done


def shard_batches(batches: Sequence[Sequence[int]], words: Sequence[Sequence[str]], shard: int, shards: int
                  ) -> list[Sequence[int]]:
    """Shard ``shard`` (0-based) of ``shards``: a contiguous run of ``batches`` (in their
    order), the runs cut where the padded words (a batch's sentences x its longest) reach
    each ``shard / shards`` of the total, so that shards take about the same time."""
    if not 0 <= shard < shards:
        raise StoreError(f"extraction shard {shard} of {shards}: expected 0 <= shard < shards")
    cost = np.array([len(b) * max(len(words[i]) for i in b) for b in batches], dtype=np.float64)
    ends = np.cumsum(cost)
    total = ends[-1] if len(ends) else 0.0
    # batch j belongs to the shard its cost's midpoint falls in
    owner = np.minimum((shards * (ends - cost / 2) / max(total, 1.0)).astype(np.int64), shards - 1)
    return [b for b, o in zip(batches, owner) if o == shard]


def _checksums(array_path: Path, shape: tuple[int, int]) -> dict[str, Any]:
    """CRC-32 of every block of :func:`check_rows` rows of a finished activations file."""
    rows = check_rows(shape[1])
    with open(array_path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(fh)
        values = []
        for start in range(0, shape[0], rows):
            data = fh.read(min(rows, shape[0] - start) * 2 * shape[1])
            values.append(zlib.crc32(data))
    return {"algorithm": "crc32", "chunk_rows": rows, "crc32": values}


def _save_atomic(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)


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


def word_positions(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sentence of each row, the row's word position in its sentence), int64, from an
    entry's sentence offsets."""
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.diff(offsets)
    sentence_of = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    return sentence_of, np.arange(int(offsets[-1]), dtype=np.int64) - offsets[sentence_of]


def labels_to_ids(labels: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """Label strings to class ids; labels not in ``classes`` get -1 (never predicted)."""
    lookup = {c: i for i, c in enumerate(classes)}
    return np.array([lookup.get(label, -1) for label in labels], dtype=np.int64)
