"""Penn Treebank reader: POS tags from bracketed ``.mrg`` trees (paper section 3, POS).

The label of a word is its preterminal (``(NN dog)``); ``-NONE-`` leaves
(traces and empty elements) are removed. Reads a directory tree of ``.mrg``
files or a zip of them (the NLTK sample, ``treebank.zip``).

Split: when WSJ sections 02-21, 22 and 23 are all present (file names
``wsj_SSNN.mrg``) the standard split is used: train 02-21, dev 22, test 23.
Otherwise (the NLTK sample holds only sections 00-01) files are sorted by
name and split by document: the first 80 % train, the next 10 % dev, the last
10 % test, so that no document is shared between splits (docs/data.md).
"""

from __future__ import annotations

import logging
import re
import zipfile
import zlib
from pathlib import Path

from neuroscope.plugin import (Corpus, DataFormatError, NeuroscopeError, Sentence, TaskData, data_file, decode_text,
                               hookimpl, read_text, split_documents)

log = logging.getLogger(__name__)

TOKEN = re.compile(r"\(|\)|[^\s()]+")
WSJ_NAME = re.compile(r"wsj_(\d\d)(\d\d)\.mrg$")
STANDARD = {"train": range(2, 22), "dev": range(22, 23), "test": range(23, 24)}


def _line(text: str, offset: int, known: tuple[int, int] = (0, 1)) -> int:
    """The line number of ``offset``, counted on from a known (offset, line) before it."""
    return known[1] + text.count("\n", known[0], offset)


def parse_trees(text: str, source: str) -> list[tuple[list[tuple[str, str]], int]]:
    """(leaves as (tag, word), first line) of every tree in a ``.mrg`` text. Line numbers
    are counted once per tree (and for the token an error names), not per token."""
    trees = []
    stack: list[list] = []
    start_line = 0
    known = (0, 1)  # (offset, line) of the last tree start counted
    for match in TOKEN.finditer(text):
        tok = match.group()
        if tok == "(":
            if not stack:
                start_line = _line(text, match.start(), known)
                known = (match.start(), start_line)
            stack.append([])
        elif tok == ")":
            if not stack:
                raise DataFormatError(source, _line(text, match.start(), known), "'(' before ')' (unbalanced brackets)",
                                      tok)
            node = stack.pop()
            if stack:
                stack[-1].append(node)
            else:
                leaves: list[tuple[str, str]] = []
                _collect(node, leaves, source, start_line)
                trees.append((leaves, start_line))
        else:
            if not stack:
                raise DataFormatError(source, _line(text, match.start(), known), "a tree starting with '('", tok)
            stack[-1].append(tok)
    if stack:
        raise DataFormatError(source, start_line, "a ')' closing the tree that starts here (unbalanced brackets)")
    return trees


def _collect(node: list, leaves: list[tuple[str, str]], source: str, line: int) -> None:
    if len(node) == 2 and isinstance(node[0], str) and isinstance(node[1], str):
        leaves.append((node[0], node[1]))
        return
    children = node[1:] if node and isinstance(node[0], str) else node
    if not children:
        raise DataFormatError(source, line, "a labelled constituent or a (TAG word) preterminal", "()")
    for child in children:
        if isinstance(child, str):
            raise DataFormatError(source, line, "words only inside (TAG word) preterminals", child)
        _collect(child, leaves, source, line)


def sentences_of(text: str, source: str) -> list[Sentence]:
    out = []
    for leaves, line in parse_trees(text, source):
        kept = [(tag, word) for tag, word in leaves if tag != "-NONE-"]
        if not kept:
            log.warning("%s, line %d: tree has only -NONE- leaves; no sentence", source, line)
            continue
        out.append(Sentence([w for _, w in kept], [t for t, _ in kept]))
    if not out:
        raise DataFormatError(source, None, "at least one tree with words", "no tree")
    return out


def _documents(path: Path) -> list[tuple[str, str]]:
    """(name, text) of every .mrg document, sorted by name."""
    docs = []
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                for name in zf.namelist():
                    if name.endswith(".mrg"):
                        docs.append((f"{path}!{name}", decode_text(zf.read(name), f"{path}!{name}")))
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise DataFormatError(path, None, "a readable zip of .mrg files", f"{type(exc).__name__}: {exc}") from None
    elif path.is_dir():
        for file in path.rglob("*.mrg"):
            docs.append((str(file), read_text(file)))
    else:
        raise NeuroscopeError(f"{path}: expected a directory of .mrg files or a zip of them")
    if not docs:
        raise NeuroscopeError(f"{path}: no .mrg files found")
    return sorted(docs, key=lambda d: Path(d[0].split("!")[-1]).name)


def _section(name: str) -> int | None:
    match = WSJ_NAME.search(name)
    return int(match.group(1)) if match else None


def read_ptb(
    data_dir: Path, *, path: str, train_fraction: float = 0.8, dev_fraction: float = 0.1, task: str = "pos"
) -> TaskData:
    root = data_file(data_dir, path, task)
    docs = _documents(root)
    groups, how = split_documents(docs, lambda d: _section(d[0]), STANDARD,
                                  "standard WSJ split by section: train 02-21, dev 22, test 23",
                                  train_fraction, dev_fraction, root)
    corpora = {}
    for split, group in groups.items():
        sentences = [s for name, text in group for s in sentences_of(text, name)]
        first, last = Path(group[0][0].split("!")[-1]).name, Path(group[-1][0].split("!")[-1]).name
        corpora[split] = Corpus(split, sentences, f"{root}: {first} .. {last} ({len(group)} files)")
    return TaskData(task, corpora["train"], corpora["dev"], corpora["test"], f"Penn Treebank POS tags; {how}")


@hookimpl
def register_tasks(register):
    register("ptb", read_ptb)
