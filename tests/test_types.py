import numpy as np
import pytest

from neuroscope import Corpus, NeuronIndex, Sentence, TaskData


def test_sentence_needs_one_label_per_word():
    with pytest.raises(ValueError, match="one label per word"):
        Sentence(["a", "b"], ["X"])
    with pytest.raises(ValueError, match="at least one word"):
        Sentence([], [])


def test_text_checksum_ignores_labels_but_checksum_does_not():
    a = Corpus("train", [Sentence(["a", "b"], ["X", "Y"])])
    b = Corpus("train", [Sentence(["a", "b"], ["X", "Z"])])
    c = Corpus("train", [Sentence(["a"], ["X"]), Sentence(["b"], ["Y"])])
    assert a.text_checksum() == b.text_checksum()
    assert a.checksum() != b.checksum()
    assert a.text_checksum() != c.text_checksum()  # sentence boundaries matter


def test_task_labels_and_unseen():
    train = Corpus("train", [Sentence(["a", "b"], ["X", "Y"])])
    dev = Corpus("dev", [Sentence(["a", "c", "d"], ["X", "Z", "Z"])])
    test = Corpus("test", [Sentence(["b"], ["Y"])])
    task = TaskData("t", train, dev, test)
    assert task.labels == ("X", "Y")
    assert task.unseen_labels() == {"dev": {"Z": 2}, "test": {}}


def test_neuron_index_maps_layer_and_unit():
    index = NeuronIndex(("emb", "1", "2"), 4)
    assert index.n_neurons == 12
    assert index.layer_of([0, 3, 4, 11]).tolist() == [0, 0, 1, 2]
    assert index.unit_of([0, 3, 4, 11]).tolist() == [0, 3, 0, 3]
    assert index.name(5) == "1:1"
    assert NeuronIndex.from_json(index.to_json()) == index
    assert isinstance(index.layer_of(np.array([1])), np.ndarray)
