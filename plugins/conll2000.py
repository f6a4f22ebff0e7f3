"""CoNLL-2000 chunking reader (Tjong Kim Sang & Buchholz 2000; paper appendix A.1).

Lines are ``word POS chunk``; the label is the BIO chunk tag. The data has no
development set, so a deterministic one is cut from train: the last
``dev_fraction`` of the training sentences, one contiguous block, so that no
document straddles train and dev (docs/data.md).
"""

from __future__ import annotations

from pathlib import Path

from neuroscope.plugin import Corpus, NeuroscopeError, TaskData, data_file, hookimpl, read_columns


def read_conll2000(
    data_dir: Path,
    *,
    train: str,
    test: str,
    dev: str | None = None,
    dev_fraction: float = 0.1,
    task: str = "chunk",
) -> TaskData:
    train_path = data_file(data_dir, train, task)
    test_path = data_file(data_dir, test, task)
    train_sents = read_columns(train_path, 0, 2, 3, sep=" ", comment=None)
    test_sents = read_columns(test_path, 0, 2, 3, sep=" ", comment=None)
    if dev is not None:
        dev_path = data_file(data_dir, dev, task)
        dev_sents = read_columns(dev_path, 0, 2, 3, sep=" ", comment=None)
        dev_source = str(dev_path)
    else:
        if not 0 < dev_fraction < 1:
            raise NeuroscopeError(f"task {task!r}: dev_fraction must be in (0, 1), got {dev_fraction}")
        n_dev = max(1, int(round(len(train_sents) * dev_fraction)))
        train_sents, dev_sents = train_sents[:-n_dev], train_sents[-n_dev:]
        dev_source = f"{train_path} (last {n_dev} sentences)"
    return TaskData(
        task,
        Corpus("train", train_sents, str(train_path) + ("" if dev else f" (all but the last {len(dev_sents)} sentences)")),
        Corpus("dev", dev_sents, dev_source),
        Corpus("test", test_sents, str(test_path)),
        "CoNLL-2000 chunking (BIO chunk tags)",
    )


@hookimpl
def register_tasks(register):
    register("conll2000", read_conll2000)
