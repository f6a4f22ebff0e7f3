"""Benchmark: every MLP neuron of an 8B-shaped model (issue 24), streamed and screened.

A randomly initialised Llama of Llama-3-8B's shape (hidden 4,096, MLP 14,336, 32 heads,
8 KV heads; ``--layers`` of its 32: 2 on a CPU, 32 on a GPU; a small BPE vocabulary
trained on the corpus, so the embedding and LM head are small) is saved once and loaded
through the real transformers adapter at ``--site mlp`` (``--layers`` x 14,336 neurons).
For each N of ``--sentences`` (the first N train sentences of the PTB sample, then of
UD English-EWT) it measures, each N in a fresh process:

* the bare forward pass (the model over the adapter's batches, nothing read) in sub-word
  tokens/s;
* the streamed pass (:func:`neuroscope.statistics.stream_statistics`: MLP values read at
  every word, statistics accumulated on the device) in the same tokens/s, and its share
  of the bare pass's;
* peak RSS, peak accelerator memory, the bytes the statistics take on disk against the
  bytes a full store would take;
* with ``--protocol``: ``neuroscope run --site mlp --screen K`` (lambda search on
  ``--grid``, oracle, ablations, minimal set, control task) on the same sentences, its
  wall time and store bytes (tokens x K).

Prints a Markdown table and writes bench/results/scale_llm.json.

    python bench/scale_llm.py [--layers 2] [--sentences 250,1000,4000] [--device cpu] [--dtype float32]
                              [--protocol] [--screen 8192] [--grid 0,1e-4]
    python bench/scale_llm.py --layers 32 --device cuda --dtype bfloat16 --sentences 1000,4000,8000 --protocol
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH_CACHE, DATA, write_results  # noqa: E402

SHAPE = {"hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32, "num_key_value_heads": 8}


def model_dir(layers: int) -> Path:
    """The random 8B-shaped model with ``layers`` layers, saved once under the bench cache."""
    path = BENCH_CACHE / f"llama3-8b-shape-{layers}-layers"
    if (path / "config.json").is_file():
        return path
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    sentences = [" ".join(s) for s in corpus_sentences(4000)]
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    tok.train_from_iterator(sentences, trainers.BpeTrainer(vocab_size=8000, special_tokens=specials))
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                        model_max_length=512)
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), num_hidden_layers=layers, max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, **SHAPE)
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def corpus_sentences(n: int) -> list[list[str]]:
    """The first ``n`` train sentences of the PTB sample, then of UD English-EWT."""
    return [s.words for s in corpus(n).sentences]


def corpus(n: int):  # type: ignore[no-untyped-def]
    from neuroscope.loading import load_task
    from neuroscope.registry import Registry
    from neuroscope.types import Corpus

    registry = Registry()
    ptb = load_task(registry, "pos", DATA).train.sentences
    sentences = list(ptb[:n])
    if len(sentences) < n:
        sentences += list(load_task(registry, "pos-ewt", DATA).train.sentences[:n - len(sentences)])
    return Corpus("train", sentences, f"PTB sample + UD EWT, first {n} train sentences")


def measure(n: int, layers: int, device: str, dtype: str) -> dict:
    """One N, in this process: bare and streamed tokens/s, memory, bytes."""
    import numpy as np
    import torch

    from neuroscope.statistics import stream_statistics
    from neuroscope.store import labels_to_ids
    from neuroscope_plugins.transformers_adapter import TransformersAdapter

    adapter = TransformersAdapter(checkpoint=str(model_dir(layers)), device=device, site="mlp", dtype=dtype,
                                  batch_size=16)
    data = corpus(n)
    words = data.words()
    labels = tuple(sorted(set(data.labels())))
    gold = labels_to_ids(data.labels(), labels)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    sub_tokens = 0
    start = time.perf_counter()
    for ids in adapter.batches(words):
        enc = adapter.tokenizer([words[i] for i in ids], is_split_into_words=True, padding=True, return_tensors="pt")
        inputs = {k: v.to(adapter.device) for k, v in enc.items() if k in adapter.tokenizer.model_input_names}
        sub_tokens += int(enc["attention_mask"].sum())
        with torch.inference_mode():
            adapter.lm(**inputs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    bare = time.perf_counter() - start
    start = time.perf_counter()
    stats = stream_statistics(adapter, data, gold, labels)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    streamed = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        stats_bytes = stats.save(Path(tmp) / "statistics.npz").stat().st_size
    assert np.isfinite(stats.sums).all()
    return {"sentences": n, "words": data.n_tokens, "sub_tokens": sub_tokens, "neurons": adapter.neuron_index.n_neurons,
            "bare_seconds": round(bare, 2), "streamed_seconds": round(streamed, 2),
            "bare_tokens_per_s": round(sub_tokens / bare, 1), "streamed_tokens_per_s": round(sub_tokens / streamed, 1),
            "streamed_share": round(bare / streamed, 3),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None,
            "statistics_bytes": stats_bytes, "full_store_bytes": data.n_tokens * adapter.neuron_index.n_neurons * 2}


def protocol(n: int, layers: int, device: str, dtype: str, screen: str, grid: str, work: Path) -> dict:
    """``neuroscope run --site mlp --screen K`` on the first N sentences (PTB slice)."""
    out, cache = work / f"run-{n}", work / f"cache-{n}"
    command = [sys.executable, "-m", "neuroscope.cli", "run", "--model", f"hf:{model_dir(layers)}", "--task", "pos",
               "--site", "mlp", "--screen", screen, "--data-dir", str(DATA), "--max-sentences",
               f"{n},{max(n // 8, 20)},{max(n // 8, 20)}", "--seeds", "1", "--grid", grid, "--device", device,
               "--dtype", dtype, "--out", str(out), "--cache-dir", str(cache), "--quiet"]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - start
    results = json.loads((out / "results.json").read_text())
    store = sum(f.stat().st_size for f in (cache / "activations").rglob("*.npy"))
    test = results["summary"]["ablation"]["test"]
    return {"protocol_seconds": round(seconds, 1), "screened_to": results["neurons"], "store_bytes": store,
            "test_all_top_random_bottom": [round(test[k]["mean"], 2) for k in ("all", "top", "random", "bottom")]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--sentences", default="250,1000,4000")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--protocol", action="store_true")
    parser.add_argument("--screen", default="8192")
    parser.add_argument("--grid", default="0,1e-4")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child is not None:
        print(json.dumps(measure(opts.child, opts.layers, opts.device, opts.dtype)))
        return
    model_dir(opts.layers)
    rows = []
    with tempfile.TemporaryDirectory(prefix="neuroscope-scale-llm-") as tmp:
        for n in (int(x) for x in opts.sentences.split(",")):
            child = subprocess.run([sys.executable, __file__, "--child", str(n), "--layers", str(opts.layers),
                                    "--device", opts.device, "--dtype", opts.dtype], check=True, capture_output=True,
                                   text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            row = json.loads(child.stdout.strip().splitlines()[-1])
            if opts.protocol:
                row.update(protocol(n, opts.layers, opts.device, opts.dtype, opts.screen, opts.grid, Path(tmp)))
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("| N | words | sub-tokens | neurons | bare tok/s | streamed tok/s | share | peak RSS GB | peak GPU GB | "
          "statistics MB | full store GB |" + (" protocol s | K | store MB |" if opts.protocol else ""))
    print("|---" * (11 + 3 * opts.protocol) + "|")
    for r in rows:
        line = (f"| {r['sentences']:,} | {r['words']:,} | {r['sub_tokens']:,} | {r['neurons']:,} | "
                f"{r['bare_tokens_per_s']:,.0f} | {r['streamed_tokens_per_s']:,.0f} | {100 * r['streamed_share']:.0f} % | "
                f"{r['peak_rss_gb']} | {r['peak_gpu_gb']} | {r['statistics_bytes'] / 1e6:.1f} | "
                f"{r['full_store_bytes'] / 1e9:.2f} |")
        if opts.protocol:
            line += f" {r['protocol_seconds']:.0f} | {r['screened_to']:,} | {r['store_bytes'] / 1e6:.1f} |"
        print(line)
    write_results("scale_llm", {"settings": vars(opts), "rows": rows})


if __name__ == "__main__":
    main()
