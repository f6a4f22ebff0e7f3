"""The README's tour, line by line, as written, in a fresh copy of this checkout.

Reads the first code block of README.md's "A short tour" (the lines that run in a
checkout after the main job), and runs each ``neuroscope ...`` line in order with bash
from a copy of the committed tree (``git archive HEAD``), with ``../shared/data``
beside it holding *small slices* of the real corpora in the same layout (every 5th
document of the PTB sample, the first sentences of CoNLL-2000 and of the PMB files), and
a fresh activation store (UD English-EWT, which no run of the tour reads, is copied whole:
``data fetch`` checks every file's sha256). Nothing in the lines is rewritten. Prints each line's exit
status and wall time, and exits 1 when any line fails.

    python bench/tour.py [--data ../shared/data] [--keep] [--sentences 300]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from _common import DATA, REPO, committed_copy, write_results


def tour_lines(readme: Path) -> list[str]:
    """The ``neuroscope`` commands of the tour's first code block, comments removed."""
    text = readme.read_text(encoding="utf-8")
    section = text[text.index("## A short tour"):]
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("    neuroscope "))
    commands = []
    for line in lines[start:]:
        if line and not line.startswith("    "):
            break
        stripped = line.strip()
        if stripped.startswith("neuroscope "):
            commands.append(re.sub(r"\s{2,}#.*$", "", stripped))
    return commands


def sentence_blocks(text: str) -> list[str]:
    return [b for b in re.split(r"\n\s*\n", text) if b.strip()]


def slice_corpora(source: Path, target: Path, sentences: int) -> None:
    """The corpora the tour uses, cut small, in ``../shared/data``'s layout."""
    treebank = "pos/nltk_treebank_sample/treebank.zip"
    (target / treebank).parent.mkdir(parents=True)
    with zipfile.ZipFile(source / treebank) as src, zipfile.ZipFile(target / treebank, "w") as dst:
        documents = [n for n in src.namelist() if n.endswith(".mrg")]
        keep = set(documents[::5])
        for name in src.namelist():
            if not name.endswith(".mrg") or name in keep:
                dst.writestr(name, src.read(name))
    for name in ("chunking/conll2000/train.txt", "chunking/conll2000/test.txt"):
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        blocks = sentence_blocks((source / name).read_text(encoding="utf-8"))
        share = sentences if "train" in name else sentences // 3
        (target / name).write_text("\n\n".join(blocks[:share]) + "\n\n", encoding="utf-8")
    shutil.copytree(source / "pos" / "ud_english_ewt", target / "pos" / "ud_english_ewt")
    for split in ("train", "dev", "test"):
        name = f"pmb/pmb-4.0.0-en-gold-{split}.conll"
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        blocks = sentence_blocks((source / name).read_text(encoding="utf-8"))
        share = sentences if split == "train" else sentences // 3
        (target / name).write_text("\n\n".join(blocks[:share]) + "\n\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the real corpora (NEUROSCOPE_TEST_DATA or ../shared/data)")
    parser.add_argument("--sentences", type=int, default=300, help="train sentences kept of CoNLL-2000 and the PMB")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    commands = tour_lines(REPO / "README.md")
    root = Path(tempfile.mkdtemp(prefix="neuroscope-tour-"))
    checkout = root / "checkout"
    checkout.mkdir()
    committed_copy(checkout)
    slice_corpora(args.data, root / "shared" / "data", args.sentences)
    env = {**os.environ, "NEUROSCOPE_CACHE": str(root / "cache"), "NEUROSCOPE_PROGRESS_SECONDS": "60"}
    env.pop("NEUROSCOPE_DATA", None)
    outcomes = []
    for command in commands:
        began = time.perf_counter()
        done = subprocess.run(["bash", "-c", command], cwd=checkout, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - began
        outcomes.append({"command": command, "rc": done.returncode, "seconds": round(seconds, 1)})
        print(f"{done.returncode:>3}  {seconds:7.1f} s  {command}", flush=True)
        if done.returncode != 0:
            print((done.stdout + done.stderr)[-3000:], flush=True)
    failed = [o for o in outcomes if o["rc"] != 0]
    print(f"{len(outcomes) - len(failed)} of {len(outcomes)} tour lines ran; "
          f"{sum(o['seconds'] for o in outcomes):.0f} s in all; in {root if args.keep else 'a removed temp dir'}")
    write_results("tour", {"lines": outcomes})
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
