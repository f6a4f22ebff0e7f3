import zlib

import numpy as np
import pytest

from neuroscope import Corpus, ModelAdapter, NeuronIndex, Sentence, StoreError
from neuroscope.probe import ElasticNetProbe
from neuroscope.store import ActivationSet, ActivationStore, labels_to_ids, store_key


class WordHashAdapter(ModelAdapter):
    """A deterministic adapter for store tests: each word's vector is seeded by its text and position."""

    name = "word-hash"

    def __init__(self, layers=2, hidden=3, fail_after=None, shape_bug=False):
        self._index = NeuronIndex(tuple(f"l{i}" for i in range(layers)), hidden)
        self.calls = 0
        self.fail_after = fail_after
        self.shape_bug = shape_bug

    @property
    def neuron_index(self):
        return self._index

    def identity(self):
        return {"adapter": self.name, "layers": self._index.n_layers, "hidden": self._index.hidden_size}

    def batches(self, sentences):
        return [[i] for i in range(len(sentences))]

    def vector(self, word, position):
        rng = np.random.default_rng(zlib.crc32(f"{word}/{position}".encode()))
        return rng.normal(size=(self._index.n_layers, self._index.hidden_size)).astype(np.float32)

    def embed(self, sentences):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        out = []
        for words in sentences:
            vecs = np.stack([self.vector(w, i) for i, w in enumerate(words)], axis=1)
            out.append(vecs[:, :-1] if self.shape_bug else vecs)
        return out


def corpus(n=7):
    return Corpus("train", [Sentence([f"w{i}", f"x{i}", "y"][: 1 + i % 3], ["A", "B", "C"][: 1 + i % 3]) for i in range(n)])


def expected_rows(adapter, corp):
    rows = []
    for s in corp.sentences:
        for i, w in enumerate(s.words):
            rows.append(adapter.vector(w, i).reshape(-1))
    return np.array(rows, dtype=np.float16)


def test_extract_writes_memmap_with_manifest_and_offsets(tmp_path):
    adapter, corp = WordHashAdapter(), corpus()
    acts = ActivationStore(tmp_path).get_or_extract(adapter, corp)
    assert isinstance(acts.array, np.memmap)
    assert acts.array.dtype == np.float16
    assert acts.array.shape == (corp.n_tokens, 6)
    np.testing.assert_array_equal(np.asarray(acts.array), expected_rows(adapter, corp))
    assert acts.offsets.tolist() == [0] + np.cumsum([len(s) for s in corp.sentences]).tolist()
    assert acts.manifest["identity"] == adapter.identity()
    assert acts.index.layer_names == ("l0", "l1")
    assert not list(tmp_path.glob("*.partial"))


def test_store_is_reused_and_content_addressed(tmp_path):
    store = ActivationStore(tmp_path)
    adapter = WordHashAdapter()
    first = store.get_or_extract(adapter, corpus())
    calls = adapter.calls
    again = store.get_or_extract(adapter, corpus())
    assert adapter.calls == calls and again.path == first.path
    relabelled = Corpus("train", [Sentence(s.words, ["Z"] * len(s)) for s in corpus().sentences])
    assert store.get_or_extract(adapter, relabelled).path == first.path  # labels do not change activations
    other = store.get_or_extract(WordHashAdapter(hidden=4), corpus())
    assert other.path != first.path
    assert store_key({"a": 1}, "x") != store_key({"a": 2}, "x")


def test_interrupted_extraction_resumes(tmp_path):
    store, corp = ActivationStore(tmp_path), corpus(9)
    with pytest.raises(KeyboardInterrupt):
        store.get_or_extract(WordHashAdapter(fail_after=5), corp, flush_every=1)
    assert list(tmp_path.glob("*.partial"))
    resumed = WordHashAdapter()
    acts = store.get_or_extract(resumed, corp)
    assert resumed.calls == 4  # only the sentences not yet written
    np.testing.assert_array_equal(np.asarray(acts.array), expected_rows(resumed, corp))


def test_wrong_shape_from_adapter_is_an_error(tmp_path):
    with pytest.raises(StoreError, match="returned shape"):
        ActivationStore(tmp_path).get_or_extract(WordHashAdapter(shape_bug=True), corpus())


def test_chunks_cover_all_rows_and_subsets(tmp_path):
    acts = ActivationStore(tmp_path).get_or_extract(WordHashAdapter(), corpus(30))
    full = np.asarray(acts.array, dtype=np.float32)
    blocks = list(acts.chunks(chunk_bytes=4 * 6 * 5))
    assert len(blocks) > 1
    np.testing.assert_array_equal(np.concatenate([b for _, b in blocks]), full)
    sub = np.array([1, 4])
    np.testing.assert_array_equal(np.concatenate([b for _, b in acts.chunks(sub, 64)]), full[:, sub])


def test_incomplete_store_is_rejected(tmp_path):
    with pytest.raises(StoreError, match="manifest"):
        ActivationSet(tmp_path)


def test_probe_trains_from_store_like_from_array(tmp_path):
    corp = corpus(60)
    acts = ActivationStore(tmp_path).get_or_extract(WordHashAdapter(), corp)
    y = np.array(corp.labels())
    from_store = ElasticNetProbe(epochs=2, batch_size=16).fit(acts, y)
    from_array = ElasticNetProbe(epochs=2, batch_size=16).fit(np.asarray(acts.array, dtype=np.float32), y)
    np.testing.assert_allclose(from_store.coef_, from_array.coef_, atol=1e-6)


def test_a_training_held_in_memory_is_the_training_read_per_batch(tmp_path, monkeypatch):
    """Rows that fit RESIDENT_BYTES are read once (the store's chunks), the others per
    batch: the same values in the same order, so bit-identical weights, columns included."""
    import neuroscope.probe as probe_module
    from neuroscope.probe import TrainSettings, resident_rows, train_elastic_net

    corp = corpus(60)
    acts = ActivationStore(tmp_path).get_or_extract(WordHashAdapter(), corp)
    y = np.unique(np.array(corp.labels()), return_inverse=True)[1]
    columns = np.array([3, 0, 5])
    assert np.array_equal(resident_rows(acts, columns), acts.raw_rows(slice(0, acts.n_tokens))[:, columns])
    settings = TrainSettings(epochs=3, batch_size=16, seed=4)
    held = train_elastic_net(acts, y, int(y.max()) + 1, [(1e-3, 0.0), (0.0, 1e-3)], settings, neurons=columns)
    monkeypatch.setattr(probe_module, "RESIDENT_BYTES", 0)
    assert resident_rows(acts, columns) is None
    streamed = train_elastic_net(acts, y, int(y.max()) + 1, [(1e-3, 0.0), (0.0, 1e-3)], settings, neurons=columns)
    assert all(np.array_equal(a, b) for a, b in zip(held, streamed))


def test_labels_to_ids_marks_unknown():
    assert labels_to_ids(["B", "Q", "A"], ["A", "B"]).tolist() == [1, -1, 0]


def test_rows_read_runs_and_reject_unsorted(tmp_path):
    acts = ActivationStore(tmp_path).get_or_extract(WordHashAdapter(), corpus(40))
    full = np.asarray(acts.array)
    idx = np.array([0, 1, 2, 7, 9, 10, 30])
    np.testing.assert_array_equal(acts.raw_rows(idx), full[idx])
    np.testing.assert_array_equal(acts.rows(slice(5, 12), np.array([0, 5])), full[5:12][:, [0, 5]].astype(np.float32))
    with pytest.raises(ValueError, match="sorted"):
        acts.raw_rows(np.array([3, 1]))
    with pytest.raises(ValueError, match="within the store"):
        acts.raw_rows(np.array([0, acts.n_tokens]))


def test_truncated_store_file_is_detected(tmp_path):
    acts = ActivationStore(tmp_path).get_or_extract(WordHashAdapter(), corpus(10))
    path = acts.path / "activations.npy"
    del acts
    data = path.read_bytes()
    path.write_bytes(data[:-4])
    with pytest.raises(StoreError, match="truncated"):
        ActivationSet(path.parent)


def test_exceeds_page_cache_compares_with_half_of_ram():
    from neuroscope.store import exceeds_page_cache

    assert exceeds_page_cache(10**15) and not exceeds_page_cache(10**6)


def entry_files(root, key):
    return {p.name: p.read_bytes() for p in sorted((root / key).iterdir())}


def test_shard_batches_cut_the_batches_into_contiguous_balanced_runs():
    from neuroscope.store import shard_batches

    words = [["w"] * n for n in (9, 8, 8, 7, 5, 5, 4, 3, 2, 2, 1)]
    batches = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10]]
    for shards in (1, 2, 3, 7):
        runs = [shard_batches(batches, words, i, shards) for i in range(shards)]
        assert [b for run in runs for b in run] == batches  # every batch once, in order: contiguous runs
    halves = [shard_batches(batches, words, i, 2) for i in range(2)]
    # padded words 18, 16, 10, 8, 4, 1 (57): the first run stops where half the cost is reached
    assert halves == [[[0, 1], [2, 3]], [[4, 5], [6, 7], [8, 9], [10]]]
    with pytest.raises(StoreError, match="shard 2 of 2"):
        shard_batches(batches, words, 2, 2)


def test_sharded_extraction_seals_into_the_unsharded_entry_byte_for_byte(tmp_path):
    corp = corpus(11)
    whole = ActivationStore(tmp_path / "one")
    key = whole.get_or_extract(WordHashAdapter(), corp).key
    for shards in (2, 3):
        store = ActivationStore(tmp_path / f"shards-{shards}")
        adapters = [WordHashAdapter() for _ in range(shards)]
        keys = {store.extract_shard(a, corp, i, shards) for i, a in enumerate(adapters)}
        assert keys == {key} and sum(a.calls for a in adapters) == len(corp)  # each sentence embedded once
        assert store.entries()[0].state in ("interrupted", "extracting") and not (store.root / key).exists()
        acts = store.seal(key)
        assert entry_files(store.root, key) == entry_files(whole.root, key)
        np.testing.assert_array_equal(np.asarray(acts.array), expected_rows(adapters[0], corp))
        assert store.extract_shard(WordHashAdapter(), corp, 0, shards) == key  # stored: nothing to do


def test_a_shard_that_did_not_finish_is_named_and_the_rest_extracted_on_the_next_run(tmp_path):
    store, corp = ActivationStore(tmp_path), corpus(10)
    key = store.extract_shard(WordHashAdapter(), corp, 1, 2)
    with pytest.raises(KeyboardInterrupt):  # shard 0 dies after writing 2 of its sentences
        store.extract_shard(WordHashAdapter(fail_after=2), corp, 0, 2, flush_every=1)
    with pytest.raises(StoreError, match=r"sentences are not extracted yet .*shard did not finish"):
        store.seal(key)
    rest = WordHashAdapter()
    acts = store.get_or_extract(rest, corp)  # an unsharded run continues the shards' partial entry
    assert rest.calls == 3  # shard 0's 5 sentences less the 2 it wrote
    assert not list(tmp_path.glob("*.partial"))
    whole = ActivationStore(tmp_path / "one")
    whole.get_or_extract(WordHashAdapter(), corp)
    assert entry_files(store.root, key) == entry_files(whole.root, key)
    np.testing.assert_array_equal(np.asarray(acts.array), expected_rows(rest, corp))


def test_sealing_shards_without_a_model_and_what_a_seal_refuses(tmp_path):
    """The unit after the shards seals their entries from the shards' records alone (no
    adapter: the model is not loaded) into the record a cell opens; shards that wrote other
    entries, or a store that lacks some of their rows (node-local caches), are one line."""
    from neuroscope import TaskData
    from neuroscope.orchestrator import Orchestrator
    from neuroscope.progress import Reporter
    from neuroscope.registry import Registry
    from neuroscope.settings import RunConfig

    task = TaskData("toy", corpus(9), Corpus("dev", corpus(4).sentences), Corpus("test", corpus(5).sentences))
    store = ActivationStore(tmp_path / "activations")
    records = [{"device": "cpu", "keys": {name: store.extract_shard(WordHashAdapter(), c, i, 2)
                                          for name, c in task.splits.items()}, "shard": [i, 2]} for i in range(2)]
    config = RunConfig(model="m", task="toy", data_dir="d", cache_dir=str(tmp_path))
    orchestrator = Orchestrator(Registry(), Reporter(quiet=True), [])
    record = orchestrator.seal_shards(config, task, records)
    assert record["device"] == "cpu" and record["labels"] == len(task.labels)
    assert {n: h["key"] for n, h in record["splits"].items()} == records[0]["keys"]
    np.testing.assert_array_equal(np.asarray(store.open(records[0]["keys"]["train"]).array),
                                  expected_rows(WordHashAdapter(), task.train))
    other = [records[0], {**records[1], "keys": {**records[1]["keys"], "train": "0" * 32}}]
    with pytest.raises(StoreError, match="wrote different store entries"):
        orchestrator.seal_shards(config, task, other)
    lone = ActivationStore(tmp_path / "node-b" / "activations")  # a node whose cache saw one shard only
    keys = {name: lone.extract_shard(WordHashAdapter(), c, 0, 2) for name, c in task.splits.items()}
    node_b = RunConfig(model="m", task="toy", data_dir="d", cache_dir=str(tmp_path / "node-b"))
    with pytest.raises(StoreError, match="sentences are not extracted yet .* need a --cache-dir every node shares"):
        orchestrator.seal_shards(node_b, task, [{"device": "cpu", "keys": keys, "shard": [0, 2]}] * 2)
