"""Shared helpers of the benchmarks (not tests): stores, timing, results files, the NeuroX venv."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
BENCH_CACHE = Path(os.environ.get("NEUROSCOPE_BENCH_CACHE", Path.home() / ".cache" / "neuroscope-bench"))
DATA = Path(os.environ.get("NEUROSCOPE_TEST_DATA", REPO.parent / "shared" / "data"))
NEUROX_PYTHON = REPO / ".venv-neurox" / "bin" / "python"
NEUROX_SETUP = (
    "python3 -m venv --system-site-packages .venv-neurox && .venv-neurox/bin/pip install --no-deps neurox==1.0.9 "
    "&& .venv-neurox/bin/pip install scikit-learn imbalanced-learn tqdm h5py"
)


def machine() -> dict[str, Any]:
    import torch

    info = {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def committed_copy(target: Path) -> None:
    """The committed tree (``git archive HEAD``) unpacked into ``target``, as a fresh clone
    has it: what the README tour and the notebook bench run from."""
    import io
    import tarfile

    archive = subprocess.run(["git", "-C", str(REPO), "archive", "HEAD"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def write_results(name: str, results: dict[str, Any], out: Path | None = None) -> Path:
    out = out or REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "date": dt.datetime.now().isoformat(timespec="seconds"), "commit": commit(),
               "command": " ".join([Path(sys.executable).name] + sys.argv), "machine": machine(), **results}
    path = out / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload, indent=2))
    print(f"wrote {path}")
    return path


def require_neurox() -> Path:
    if not NEUROX_PYTHON.is_file():
        sys.exit(f"NeuroX's venv is missing: from the repository root run\n  {NEUROX_SETUP}")
    return NEUROX_PYTHON


class Timer:
    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def minilm_pos_store(cache: Path, max_sentences: int | None = None):
    """Activations and label ids of MiniLM x PTB sample (train, dev, test), extracted once into ``cache``."""
    return minilm_store(cache, "pos", max_sentences, max_sentences, max_sentences)


def minilm_store(cache: Path, task_name: str, train: int | None = None, dev: int | None = None,
                 test: int | None = None):
    """(task, activations, label ids, labels) of MiniLM x a registered task, the first
    ``train`` / ``dev`` / ``test`` sentences of each split (None: all), extracted once into ``cache``."""
    from neuroscope.progress import Reporter
    from neuroscope.registry import Registry
    from neuroscope.loading import load_model, load_task
    from neuroscope.steps.extraction import extract
    from neuroscope.store import ActivationStore, labels_to_ids

    registry = Registry()
    task = load_task(registry, task_name, DATA).head(train, dev, test)
    adapter = load_model(registry, "minilm", "cpu", "last", 32)
    acts = extract(ActivationStore(cache / "activations"), adapter, task, Reporter(quiet=True).task)
    classes = np.asarray(task.labels)
    gold = {name: labels_to_ids(task.splits[name].labels(), classes) for name in task.splits}
    return task, acts, gold, classes


def _model_adapter_base():
    from neuroscope import ModelAdapter

    return ModelAdapter


class PlantedAdapter(_model_adapter_base()):
    """Synthetic activations: Gaussian noise with a few neurons per label shifted for that label.

    Used by the benchmarks as a ModelAdapter whose 'sentences' are label sequences, so that
    a synthetic store goes through the same writer as real activations.
    """

    def __init__(self, n_layers: int, hidden: int, n_labels: int, per_label: int = 3, seed: int = 0):
        from neuroscope import NeuronIndex

        self._index = NeuronIndex(tuple(f"l{i}" for i in range(n_layers)), hidden)
        rng = np.random.default_rng(seed)
        self.planted = rng.choice(n_layers * hidden, size=(n_labels, per_label), replace=False)
        self.seed = seed

    name = "planted"

    @property
    def neuron_index(self):
        return self._index

    def identity(self) -> dict[str, Any]:
        return {"adapter": "planted", "shape": [self._index.n_layers, self._index.hidden_size],
                "planted": self.planted.tolist(), "seed": self.seed}

    def batches(self, sentences):
        return [list(range(i, min(i + 256, len(sentences)))) for i in range(0, len(sentences), 256)]

    def embed(self, sentences):
        out = []
        for words in sentences:
            labels = np.array([int(w) for w in words])
            rng = np.random.default_rng([self.seed, zlib.crc32(' '.join(words).encode()), len(words)])
            x = rng.standard_normal((len(words), self._index.n_neurons), dtype=np.float32)
            for c in np.unique(labels):
                rows = np.flatnonzero(labels == c)
                x[np.ix_(rows, self.planted[c])] += 3.0
            out.append(x.reshape(len(words), self._index.n_layers, self._index.hidden_size).transpose(1, 0, 2))
        return out


def planted_task(n_tokens: int, n_labels: int, sentence_length: int = 25, seed: int = 0):
    """A TaskData whose words are the labels' ids (the PlantedAdapter reads them)."""
    from neuroscope import Corpus, Sentence, TaskData

    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(n_labels) * 2)

    def split(name: str, tokens: int, offset: int) -> Corpus:
        sentences = []
        for k in range(max(1, tokens // sentence_length)):
            labels = rng.choice(n_labels, size=sentence_length, p=probs)
            sentences.append(Sentence([str(c) for c in labels], [f"L{c}" for c in labels]))
        return Corpus(name, sentences, f"planted ({name}, seed {seed})")

    return TaskData("planted", split("train", n_tokens, 0), split("dev", max(2000, n_tokens // 10), 1),
                    split("test", max(2000, n_tokens // 10), 2), "synthetic planted neurons")
