"""Benchmark: words per second of activation extraction on all-MiniLM-L6-v2 over the PTB sample.

Three ways over the same sentences, one after the other:
* ``bare``: the limit - a batched, length-sorted forward pass of the model with every
  hidden state, no word alignment, nothing written;
* ``neuroscope``: the transformers adapter into the activation store (alignment with
  word_ids, last sub-token, float16 rows written to disk);
* ``neurox``: NeuroX 1.0.9's transformers extractor (one sentence per forward pass),
  in its venv, writing its HDF5 output.

    python bench/extraction.py [--sentences 1000] [--batch-size 32]

Writes bench/results/extraction.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, Timer, require_neurox, write_results  # noqa: E402

NEUROX_SCRIPT = """
import sys, time, json, contextlib, io
from neurox.data.extraction import transformers_extractor
start = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    transformers_extractor.extract_representations(sys.argv[1], sys.argv[2], sys.argv[3], device="cpu",
                                                   aggregation="last", output_type="hdf5")
print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    from neuroscope.registry import Registry
    from neuroscope.loading import load_model, load_task
    from neuroscope.store import ActivationStore

    registry = Registry()
    corpus = load_task(registry, "pos", DATA).train.head(args.sentences)
    words = corpus.words()
    n_words = corpus.n_tokens
    adapter = load_model(registry, "minilm", "cpu", "last", args.batch_size)
    results = {"settings": vars(args), "sentences": len(words), "words": n_words}

    tokenizer, model = adapter.tokenizer, adapter.model
    order = sorted(range(len(words)), key=lambda i: -len(words[i]))
    with Timer() as t, torch.inference_mode():
        for start in range(0, len(order), args.batch_size):
            batch = [words[i] for i in order[start : start + args.batch_size]]
            enc = tokenizer(batch, is_split_into_words=True, padding=True, return_tensors="pt")
            model(**enc, output_hidden_states=True)
    results["bare"] = {"seconds": t.seconds, "words_per_second": n_words / t.seconds}

    with tempfile.TemporaryDirectory(prefix="neuroscope-bench-") as tmpdir:
        tmp = Path(tmpdir)
        with Timer() as t:
            ActivationStore(tmp / "store").get_or_extract(adapter, corpus)
        results["neuroscope"] = {"seconds": t.seconds, "words_per_second": n_words / t.seconds}

        text = tmp / "corpus.txt"
        text.write_text("\n".join(" ".join(w) for w in words) + "\n", encoding="utf-8")
        try:
            out = subprocess.run([str(require_neurox()), "-c", NEUROX_SCRIPT, str(adapter.path), str(text),
                                  str(tmp / "neurox.hdf5")], capture_output=True, text=True, check=True)
            seconds = json.loads(out.stdout.strip().splitlines()[-1])["seconds"]
            results["neurox"] = {"seconds": seconds, "words_per_second": n_words / seconds}
        except subprocess.CalledProcessError as exc:
            results["neurox"] = {"error": exc.stderr.strip().splitlines()[-1] if exc.stderr else str(exc)}
    results["neuroscope_share_of_bare"] = results["neuroscope"]["words_per_second"] / results["bare"]["words_per_second"]
    if "words_per_second" in results["neurox"]:
        results["speedup_over_neurox"] = results["neuroscope"]["words_per_second"] / results["neurox"]["words_per_second"]
    write_results("extraction", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
