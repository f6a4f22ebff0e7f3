"""A third-party neuroscope plugin used by the tests, installed through a dist-info
entry point (group ``neuroscope``) exactly as a pip-installed package would be.

It adds a model ("charstats": character statistics of each word, two layers, or at its
own site "last" the word's last letter, one layer) and a task ("vowels": label each word by whether it starts with a vowel, read
from a one-word-per-line file).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import neuroscope
from neuroscope.readers import data_file, read_columns


class CharStats(neuroscope.ModelAdapter):
    name = "charstats"
    sites = ("hidden", "last")

    def __init__(self, *, device="cpu", aggregation="last", batch_size=32, site="hidden"):
        self.site = site
        self._index = neuroscope.NeuronIndex(("chars", "first") if site == "hidden" else ("last",), 27)

    @property
    def neuron_index(self):
        return self._index

    def identity(self):
        return {"adapter": "charstats", "version": 1, **({"site": self.site} if self.site != "hidden" else {})}

    def embed(self, sentences):
        if self.site == "last":
            out = []
            for words in sentences:
                vec = np.zeros((1, len(words), 27), dtype=np.float32)
                for i, w in enumerate(words):
                    last = w[-1].lower()
                    vec[0, i, ord(last) - 97 if "a" <= last <= "z" else 26] = 1
                out.append(vec)
            return out
        out = []
        for words in sentences:
            vec = np.zeros((2, len(words), 27), dtype=np.float32)
            for i, w in enumerate(words):
                for ch in w.lower():
                    vec[0, i, ord(ch) - 97 if "a" <= ch <= "z" else 26] += 1
                first = w[0].lower()
                vec[1, i, ord(first) - 97 if "a" <= first <= "z" else 26] = 1
            out.append(vec)
        return out


def read_vowels(data_dir: Path, *, path: str = "words.txt", task: str = "vowels") -> neuroscope.TaskData:
    sentences = read_columns(data_file(data_dir, path, task), 0, 1, 2, comment=None)
    n = len(sentences)
    train, dev, test = sentences[: n * 8 // 10], sentences[n * 8 // 10 : n * 9 // 10], sentences[n * 9 // 10 :]
    return neuroscope.TaskData(task, neuroscope.Corpus("train", train), neuroscope.Corpus("dev", dev),
                               neuroscope.Corpus("test", test), "starts with a vowel")


@neuroscope.hookimpl
def register_models(register):
    register("charstats", CharStats, aliases=["cs"])


@neuroscope.hookimpl
def register_tasks(register):
    register("vowels", read_vowels)
