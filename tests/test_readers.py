"""Readers on the real corpora (counts from ../shared/data/SOURCES.md) and on malformed input."""


import pytest

from neuroscope import DataFormatError, NeuroscopeError
from neuroscope_plugins.conll2000 import read_conll2000
from neuroscope_plugins.conllu import read_conllu
from neuroscope_plugins.ptb import parse_trees, read_ptb, sentences_of


def assert_partition(task, whole):
    """train + dev + test is exactly the corpus, each sentence once, in order: no sentence
    is in two splits (identical boilerplate sentences in different documents are separate sentences)."""
    joined = [s for c in task.splits.values() for s in c.sentences]
    assert len(joined) == len(whole)
    assert all(a is b or a == b for a, b in zip(joined, whole))


@pytest.fixture(scope="module")
def ptb(data_dir):
    return read_ptb(data_dir, path="pos/nltk_treebank_sample/treebank.zip")


def test_ptb_sample_counts_and_tagset(ptb):
    splits = ptb.splits.values()
    assert sum(len(c) for c in splits) == 3914
    assert sum(c.n_tokens for c in splits) == 94084
    tags = set().union(*(set(c.labels()) for c in splits))
    assert len(tags) == 45 and "-NONE-" not in tags
    assert "document" in ptb.description
    assert "wsj_0001.mrg .. wsj_0159.mrg (159 files)" in ptb.train.source
    assert "(20 files)" in ptb.dev.source and "(20 files)" in ptb.test.source
    first = ptb.train.sentences[0]
    assert first.words[:3] == ("Pierre", "Vinken", ",")
    assert first.labels[:3] == ("NNP", "NNP", ",")


def test_ptb_splits_share_no_sentences(ptb, data_dir):
    import zipfile

    with zipfile.ZipFile(data_dir / "pos/nltk_treebank_sample/treebank.zip") as zf:
        names = sorted(n for n in zf.namelist() if n.endswith(".mrg"))
        whole = [s for n in names for s in sentences_of(zf.read(n).decode("utf-8"), n)]
    assert_partition(ptb, whole)
    files = [set(c.source.split(": ")[1].split(" (")[0].split(" .. ")) for c in ptb.splits.values()]
    assert not (files[0] & files[1]) and not (files[1] & files[2])


def test_ptb_standard_split_by_section(tmp_path):
    tree = "( (S (NP-SBJ (NNP {w}) (-NONE- *T*-1)) (VP (VBZ runs)) (. .)) )\n"
    for section in (2, 3, 22, 23):
        d = tmp_path / f"{section:02d}"
        d.mkdir()
        (d / f"wsj_{section:02d}01.mrg").write_text(tree.format(w=f"S{section}"))
    task = read_ptb(tmp_path.parent, path=tmp_path.name)
    assert [len(task.train), len(task.dev), len(task.test)] == [2, 1, 1]
    assert task.dev.sentences[0].words == ("S22", "runs", ".")
    assert task.test.sentences[0].labels == ("NNP", "VBZ", ".")
    assert "standard WSJ split" in task.description


def test_ptb_malformed_trees_name_file_and_line():
    with pytest.raises(DataFormatError, match=r"x\.mrg, line 3: expected a '\)' closing"):
        parse_trees("\n\n( (S (NN dog)\n", "x.mrg")
    with pytest.raises(DataFormatError, match=r"x\.mrg, line 2: expected '\(' before '\)'"):
        parse_trees("( (NN a) )\n)", "x.mrg")
    with pytest.raises(DataFormatError, match=r"x\.mrg, line 1: expected words only inside"):
        parse_trees("( (S dog (NN cat)) )", "x.mrg")
    with pytest.raises(DataFormatError, match=r"x\.mrg: expected at least one tree"):
        sentences_of("", "x.mrg")


def test_ptb_missing_path_names_data_dir(tmp_path):
    with pytest.raises(NeuroscopeError, match="not found"):
        read_ptb(tmp_path, path="nothing.zip")


def test_conll2000_counts_and_dev_slice(data_dir):
    task = read_conll2000(data_dir, train="chunking/conll2000/train.txt", test="chunking/conll2000/test.txt")
    assert len(task.train) + len(task.dev) == 8936
    assert len(task.dev) == 894
    assert task.train.n_tokens + task.dev.n_tokens == 211727
    assert (len(task.test), task.test.n_tokens) == (2012, 47377)
    assert len(task.labels) == 22
    assert task.unseen_labels() == {"dev": {}, "test": {"I-LST": 2}}
    assert task.test.sentences[0].words[:2] == ("Rockwell", "International")
    assert task.test.sentences[0].labels[:2] == ("B-NP", "I-NP")
    whole = read_conll2000(data_dir, train="chunking/conll2000/train.txt", test="chunking/conll2000/test.txt",
                           dev="chunking/conll2000/train.txt")
    assert_partition(task, list(whole.dev.sentences) + list(whole.test.sentences))


def test_conll2000_wrong_column_count(tmp_path):
    (tmp_path / "train.txt").write_text("a DT B-NP\nb NN\n\n")
    (tmp_path / "test.txt").write_text("a DT B-NP\n")
    with pytest.raises(DataFormatError, match=r"train\.txt, line 2: expected 3 columns"):
        read_conll2000(tmp_path, train="train.txt", test="test.txt")


def test_empty_file_is_an_error(tmp_path):
    (tmp_path / "train.txt").write_text("\n\n")
    (tmp_path / "test.txt").write_text("a DT B-NP\n")
    with pytest.raises(DataFormatError, match=r"train\.txt: expected at least one sentence, found 'an empty file'"):
        read_conll2000(tmp_path, train="train.txt", test="test.txt")


def test_conllu_ewt_counts(data_dir):
    base = "pos/ud_english_ewt/en_ewt-ud-"
    task = read_conllu(data_dir, train=base + "train.conllu", dev=base + "dev.conllu", test=base + "test.conllu")
    assert [len(c) for c in task.splits.values()] == [12544, 2001, 2077]
    assert [c.n_tokens for c in task.splits.values()] == [204577, 25147, 25094]
    assert len(task.labels) == 49
    upos = read_conllu(data_dir, train=base + "train.conllu", dev=base + "dev.conllu", test=base + "test.conllu",
                       column="upos")
    assert len(upos.labels) == 17
    assert task.train.sentences[0].words[:2] == ("Al", "-")
    assert task.train.sentences[0].labels[:2] == ("NNP", "HYPH")
    assert upos.train.sentences[0].labels[:2] == ("PROPN", "PUNCT")


def test_conllu_bad_column_count(tmp_path):
    good = "1\ta\ta\tDET\tDT\t_\t0\troot\t_\t_\n"
    (tmp_path / "t.conllu").write_text("# sent_id = 1\n" + good + "2\tb\tb\tNOUN\n\n")
    with pytest.raises(DataFormatError, match=r"t\.conllu, line 3: expected 10 columns"):
        read_conllu(tmp_path, train="t.conllu", dev="t.conllu", test="t.conllu")
