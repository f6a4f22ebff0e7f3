"""Issue 5 corpora: PMB (real files), CCGBank (hand-written AUTO sample), generic column
tasks from registry.toml, and the dataset registry with `neuroscope data`."""

import functools
import hashlib
import http.server
import io
import shutil
import threading
import zipfile
from pathlib import Path

import pytest

from neuroscope import DataFormatError, NeuroscopeError
from neuroscope.cli import main
from neuroscope.datasets import datasets, fetch, get_dataset, status
from neuroscope.registry import Registry
from neuroscope.loading import load_task
from neuroscope_plugins.ccgbank import parse_derivation, read_auto, read_ccgbank
from neuroscope_plugins.pmb import read_pmb

SAMPLE = Path(__file__).parent / "data"
PMB = {"train": "pmb/pmb-4.0.0-en-gold-train.conll", "dev": "pmb/pmb-4.0.0-en-gold-dev.conll",
       "test": "pmb/pmb-4.0.0-en-gold-test.conll"}


@pytest.mark.parametrize("column,n_labels,unseen", [("sem", 69, {"dev": 0, "test": 0}),
                                                     ("ccg", 294, {"dev": 13, "test": 8})])
def test_pmb_counts_match_sources(data_dir, column, n_labels, unseen):
    task = read_pmb(data_dir, column=column, **PMB)
    assert [(len(c), c.n_tokens) for c in task.splits.values()] == [(7745, 50408), (1174, 7368), (1053, 6821)]
    assert len(task.labels) == n_labels
    assert {k: sum(v.values()) for k, v in task.unseen_labels().items()} == unseen
    first = task.train.sentences[0]
    assert first.words == ("A", "girl", "is", "styling", "her", "hair")
    expected = ("DIS", "CON", "NOW", "EXG", "HAS", "CON") if column == "sem" else \
        ("np/n", "n", "(s:dcl\\np)/(s:ng\\np)", "(s:ng\\np)/np", "np/n", "n")
    assert first.labels == expected


def test_pmb_sem_tag_frequencies(data_dir):
    counts = read_pmb(data_dir, **PMB).train.label_counts()
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
    assert top == [("NIL", 7746), ("CON", 6515), ("PRO", 4095)]


def test_pmb_multiwords_keep_or_split(data_dir):
    kept = read_pmb(data_dir, **PMB)
    assert sum(w.count("~") > 0 for s in kept.train.sentences for w in s.words) == 1591
    split = read_pmb(data_dir, multiword="split", **PMB)
    assert all("~" not in w for s in split.train.sentences for w in s.words)
    assert split.train.n_tokens == 52285 and len(split.train) == 7745
    with pytest.raises(NeuroscopeError, match="multiword must be one of"):
        read_pmb(data_dir, multiword="join", **PMB)


def test_pmb_wrong_column_count(tmp_path):
    (tmp_path / "t.conll").write_text("# raw sent = A b\nA\tA\ta\tDIS\tnp/n\tO\t[]\nb\tb\tb\tCON\tn\n\n")
    with pytest.raises(DataFormatError, match=r"t\.conll, line 3: expected 7 columns"):
        read_pmb(tmp_path, train="t.conll", dev="t.conll", test="t.conll")


def test_ccgbank_sample_standard_split_and_supertags():
    task = read_ccgbank(SAMPLE, path="ccgbank/data/AUTO")
    assert "standard split" in task.description
    assert [len(c) for c in task.splits.values()] == [3, 1, 1]
    assert task.train.sentences[0].labels == ("N", "(S[dcl]\\NP)/NP", "N")
    assert task.train.sentences[2].words == ("It", "will", "rain", ".")
    assert task.train.sentences[2].labels == ("NP", "(S[dcl]\\NP)/(S[b]\\NP)", "S[b]\\NP", ".")
    assert task.dev.sentences[0].labels == ("N/N", "N", "S[dcl]\\NP", ".")
    assert task.test.sentences[0].labels == ("NP", "(S[dcl]\\NP)/NP", "NP", ".")
    assert task.unseen_labels() == {"dev": {"N/N": 1}, "test": {}}


def test_ccgbank_frequency_cutoff():
    task = read_ccgbank(SAMPLE, path="ccgbank/data/AUTO", min_count=2)
    # in train: N x3, . x2 kept; everything else seen once -> <rare>
    assert task.train.sentences[0].labels == ("N", "<rare>", "N")
    assert task.test.sentences[0].labels == ("<rare>", "<rare>", "<rare>", ".")
    assert set(task.labels) == {"N", ".", "<rare>"}


@pytest.mark.parametrize("line,message", [
    ("(<T S 0 2> (<L N NN NN a N>) )", r"line 7: expected 2 children as the node declares, found '1 children'"),
    ("(<T S 0 1> (<L N NN NN a N>)", r"line 7: expected a '\)' closing every node"),
    ("(<T S 0 1> (<L N NN a N>) )", r"line 7: expected a leaf <L category"),
    ("(<T S 0 1> (<L N NN NN a N>) ) )", r"line 7: expected one derivation per line"),
    ("(<T S x 1> (<L N NN NN a N>) )", r"line 7: expected an internal node"),
    ("(<T S 0 1> word )", r"line 7: expected a node"),
])
def test_ccgbank_malformed_derivations(line, message):
    with pytest.raises(DataFormatError, match=message):
        parse_derivation(line, "x.auto", 7)


def test_ccgbank_header_and_empty_file_errors(tmp_path):
    bad = tmp_path / "wsj_0001.auto"
    bad.write_text("(<L N NN NN a N>)\n")
    with pytest.raises(DataFormatError, match=r"wsj_0001\.auto, line 1: expected a header line"):
        read_auto(bad)
    bad.write_text("ID=wsj_0001.1 PARSER=GOLD NUMPARSE=1\n")
    with pytest.raises(DataFormatError, match=r"line 1: expected a derivation after this header"):
        read_auto(bad)
    bad.write_text("\n")
    with pytest.raises(DataFormatError, match="expected at least one derivation"):
        read_auto(bad)


def test_user_task_without_code(tmp_path):
    (tmp_path / "d").mkdir()
    for split in ("train", "dev", "test"):
        (tmp_path / "d" / f"{split}.tsv").write_text("# c\n1\tThe\tDT\n2\tdog\tNN\n\n1\tRuns\tVBZ\n")
    (tmp_path / "registry.toml").write_text(
        '[tasks.mytags]\nreader = "columns"\ntrain = "d/train.tsv"\ndev = "d/dev.tsv"\ntest = "d/test.tsv"\n'
        'columns = 3\nword = 2\nlabel = 3\n')
    task = load_task(Registry(), "mytags", tmp_path)
    assert task.name == "mytags" and task.train.sentences[0].words == ("The", "dog")
    assert task.labels == ("DT", "NN", "VBZ")


def test_registry_names_the_paper_tasks():
    registry = Registry()
    for task, reader in (("pos", "ptb"), ("chunk", "conll2000"), ("ccg", "ccgbank"), ("sem", "pmb"),
                         ("pos-ewt", "conllu"), ("ccg-pmb", "pmb")):
        assert registry.resolve_task(task).entry.name == reader
    assert {d.name for d in datasets(registry)} >= {"ptb-sample", "conll2000", "ud-ewt", "pmb-gold", "ccgbank", "ptb"}
    assert get_dataset(registry, "sem").name == "pmb-gold"


def test_data_list_reports_presence_and_labels(data_dir, capsys):
    registry = Registry()
    st = status(get_dataset(registry, "pmb-gold"), data_dir, registry, verify=True)
    assert st["present"] and st["verified"] and st["labels"] == {"sem": 69, "ccg-pmb": 294}
    assert main(["data", "list", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "pmb-gold  present" in out and "ccgbank  licensed: obtain it" in out and "LDC2005T13" in out


def test_fetch_from_mirror_verifies(data_dir, tmp_path, capsys):
    target = tmp_path / "data"
    assert main(["data", "fetch", "chunk", "--data-dir", str(target), "--from", str(data_dir)]) == 0
    assert "sha256 verified" in capsys.readouterr().out
    assert (target / "chunking/conll2000/train.txt").read_bytes() == (data_dir / "chunking/conll2000/train.txt").read_bytes()
    mirror = tmp_path / "mirror"
    shutil.copytree(data_dir / "pmb", mirror / "pmb")
    (mirror / "pmb/pmb-4.0.0-en-gold-dev.conll").chmod(0o644)
    with open(mirror / "pmb/pmb-4.0.0-en-gold-dev.conll", "a") as fh:
        fh.write("tampered\n")
    assert main(["data", "fetch", "pmb-gold", "--data-dir", str(target), "--from", str(mirror)]) == 2
    assert "does not match the expected" in capsys.readouterr().err
    assert not (target / "pmb/pmb-4.0.0-en-gold-dev.conll").exists()
    assert not list((target / "pmb").glob("*.part"))


def test_licensed_dataset_says_where_to_obtain(tmp_path, capsys):
    assert main(["data", "fetch", "ccgbank", "--data-dir", str(tmp_path)]) == 2
    assert "https://catalog.ldc.upenn.edu/LDC2005T13" in capsys.readouterr().err


def test_fetch_downloads_zip_members_over_http(tmp_path, monkeypatch):
    """A real HTTP download from a server on 127.0.0.1, a zip member extracted and checksummed."""
    served = tmp_path / "served"
    served.mkdir()
    payload = b"The DT B-NP\ndog NN I-NP\n\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("corpus/train.txt", payload)
    (served / "corpus.zip").write_bytes(buffer.getvalue())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/corpus.zip"
        digest = hashlib.sha256(payload).hexdigest()
        (tmp_path / "registry.toml").write_text(
            f'[datasets.tiny]\ndescription = "tiny"\nlicence = "public domain"\ntasks = []\n'
            f'files = [{{ path = "tiny/train.txt", sha256 = "{digest}", url = "{url}", member = "corpus/train.txt" }}]\n')
        monkeypatch.chdir(tmp_path)
        seen = []
        written = fetch(get_dataset(Registry(), "tiny"), tmp_path / "data", progress=lambda n, t: seen.append(n))
        assert written[0].read_bytes() == payload and sum(seen) == len(buffer.getvalue())
        (tmp_path / "registry.toml").write_text((tmp_path / "registry.toml").read_text().replace(digest, "0" * 64))
        with pytest.raises(NeuroscopeError, match="does not match"):
            fetch(get_dataset(Registry(), "tiny"), tmp_path / "data2")
        assert not (tmp_path / "data2" / "tiny" / "train.txt").exists()
    finally:
        server.shutdown()
