"""CCGBank reader: CCG supertags from AUTO-format derivations (paper section 3,
"CCG supertagging using CCGBank"; Hockenmaier & Steedman 2007).

An AUTO file alternates a header line (``ID=wsj_0001.1 PARSER=GOLD
NUMPARSE=1``) and a derivation line of nodes

    (<T category head children> child ... )            internal node
    (<L category modified_POS original_POS word predicate_argument_category>)   leaf

The supertag of a word is its leaf category (e.g. ``(S[dcl]\\NP)/NP``).
Every line is checked: balanced brackets, well-formed node headers and each
internal node's declared number of children.

Split: with the CCGBank layout (``data/AUTO/SS/wsj_SSNN.auto``) and sections
02-21, 00 and 23 present, the standard split: train 02-21, dev 00, test 23.
Otherwise files are sorted by name and split by document 80 / 10 / 10 %
(docs/data.md). ``min_count`` > 1 maps categories seen fewer times in train to
``<rare>`` in every split (the usual cut-off is 10); the default keeps all.
"""

from __future__ import annotations

import re
from pathlib import Path

from neuroscope.plugin import (Corpus, DataFormatError, NeuroscopeError, Sentence, TaskData, collapse_rare_labels,
                               data_file, hookimpl, split_documents, text_lines)

NODE = re.compile(r"\(<(T|L) ([^<>]*)>|\)|\s+|[^\s()<>]+|.")
AUTO_NAME = re.compile(r"wsj_(\d\d)(\d\d)\.auto$")
STANDARD = {"train": range(2, 22), "dev": range(0, 1), "test": range(23, 24)}


def parse_derivation(line: str, path: str, number: int) -> list[tuple[str, str]]:
    """(word, category) of every leaf of one AUTO derivation line, left to right."""
    leaves: list[tuple[str, str]] = []
    stack: list[list[int]] = []  # [declared children, children seen]
    closed_root = False
    for match in NODE.finditer(line):
        tok = match.group(0)
        if tok.isspace():
            continue
        if closed_root:
            raise DataFormatError(path, number, "one derivation per line", tok)
        if match.group(1) == "T":
            fields = match.group(2).split(" ")
            if len(fields) != 3 or not (fields[1].isdigit() and fields[2].isdigit()):
                raise DataFormatError(path, number, "an internal node <T category head children>", tok)
            if stack:
                stack[-1][1] += 1
            stack.append([int(fields[2]), 0])
        elif match.group(1) == "L":
            fields = match.group(2).split(" ")
            if len(fields) != 5:
                raise DataFormatError(path, number, "a leaf <L category modified_POS original_POS word pred_arg_cat>",
                                      tok)
            if stack:
                stack[-1][1] += 1
            stack.append([0, 0])
            leaves.append((fields[3], fields[0]))
        elif tok == ")":
            if not stack:
                raise DataFormatError(path, number, "'(<' before ')' (unbalanced brackets)", tok)
            declared, seen = stack.pop()
            if declared != seen:
                raise DataFormatError(path, number, f"{declared} children as the node declares", f"{seen} children")
            closed_root = not stack
        else:
            raise DataFormatError(path, number, "a node '(<T ...>' or '(<L ...>)'", tok)
    if stack:
        raise DataFormatError(path, number, "a ')' closing every node (unbalanced brackets)")
    if not leaves:
        raise DataFormatError(path, number, "a derivation with at least one leaf", line.strip()[:40])
    return leaves


def read_auto(path: Path) -> list[Sentence]:
    sentences = []
    header: int | None = None
    for number, line in text_lines(path):
        if not line.strip():
            continue
        if line.startswith("ID="):
            if header is not None:
                raise DataFormatError(path, number, f"a derivation after the header on line {header}", line)
            header = number
            continue
        if header is None:
            raise DataFormatError(path, number, "a header line 'ID=...' before the derivation", line[:40])
        leaves = parse_derivation(line, str(path), number)
        sentences.append(Sentence([w for w, _ in leaves], [c for _, c in leaves]))
        header = None
    if header is not None:
        raise DataFormatError(path, header, "a derivation after this header", "end of file")
    if not sentences:
        raise DataFormatError(path, None, "at least one derivation", "an empty file")
    return sentences


def _section(path: Path) -> int | None:
    match = AUTO_NAME.search(path.name)
    return int(match.group(1)) if match else None


def read_ccgbank(data_dir: Path, *, path: str, min_count: int = 1, train_fraction: float = 0.8,
                 dev_fraction: float = 0.1, task: str = "ccg") -> TaskData:
    root = data_file(data_dir, path, task)
    files = sorted(root.rglob("*.auto"), key=lambda p: p.name) if root.is_dir() else [root]
    if not files:
        raise NeuroscopeError(f"{root}: no .auto files found (expected CCGBank's data/AUTO/SS/wsj_SSNN.auto)")
    groups, how = split_documents(files, _section, STANDARD, "standard split: train 02-21, dev 00, test 23",
                                  train_fraction, dev_fraction, root)
    splits = {split: [s for f in group for s in read_auto(f)] for split, group in groups.items()}
    splits = collapse_rare_labels(splits, min_count)
    corpora = [Corpus(split, splits[split], f"{root}: {len(groups[split])} files") for split in ("train", "dev", "test")]
    cut = "" if min_count <= 1 else f"; categories seen < {min_count} times in train -> <rare>"
    return TaskData(task, *corpora, f"CCGBank supertags; {how}{cut}")


@hookimpl
def register_tasks(register):
    register("ccgbank", read_ccgbank)
