"""neuroscope: neuron-level analysis of pre-trained language models.

Implements and extends Durrani, Sajjad, Dalvi & Belinkov, "Analyzing
Individual Neurons in Pre-trained Language Models" (EMNLP 2020).

For notebooks (docs/python.md)::

    import neuroscope as ns
    run = ns.run(model="minilm", task="pos", data_dir="../shared/data")
    run.top_neurons(label="NN", k=10)

``run``, ``open``, ``corpus``, ``protocol``, ``Run``, ``Neuron`` and the probes are the analysis
API; the rest (``hookimpl``, ``ModelAdapter``, ``TaskData``, ...) is for plugin authors
(docs/plugins.md). ``from neuroscope import *`` would shadow the builtin ``open``: import
the module instead.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# Intel MKL's strict conditional numerical reproducibility: its matrix products then give
# the same bits whatever the thread count, so a unit run by a 1-CPU worker gives exactly the
# numbers of the same unit in a 2-thread process (docs/distributed.md). Read when MKL first
# runs, so it is set before anything here imports torch; a value the user set stays.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

from neuroscope.errors import DataFormatError, ModelLoadError, NeuroscopeError, RegistryError, StoreError
from neuroscope.hookspecs import hookimpl
from neuroscope.types import Corpus, NeuronIndex, Sentence, TaskData
from neuroscope.version import __version__

#: names imported when first used (PEP 562): they need torch, which `neuroscope --help`,
#: `plugins`, `data list` and `cache list` never import
_LAZY = {"Neuron": "api", "Run": "api", "TopNeuron": "api", "WordActivation": "api", "open": "api", "corpus": "api",
         "protocol": "api", "run": "api", "HeatMap": "heatmap", "LbfgsProbe": "lbfgs", "AGGREGATIONS": "choices",
         "ModelAdapter": "model", "ElasticNetProbe": "probe"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"neuroscope.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'neuroscope' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AGGREGATIONS",
    "Corpus",
    "DataFormatError",
    "ElasticNetProbe",
    "HeatMap",
    "LbfgsProbe",
    "ModelAdapter",
    "ModelLoadError",
    "Neuron",
    "NeuronIndex",
    "NeuroscopeError",
    "RegistryError",
    "Run",
    "Sentence",
    "StoreError",
    "TaskData",
    "TopNeuron",
    "WordActivation",
    "__version__",
    "corpus",
    "hookimpl",
    "open",
    "protocol",
    "run",
]
