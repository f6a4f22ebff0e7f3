"""neuroscope: neuron-level analysis of pre-trained language models.

Implements and extends Durrani, Sajjad, Dalvi & Belinkov, "Analyzing
Individual Neurons in Pre-trained Language Models" (EMNLP 2020).

For notebooks (docs/python.md)::

    import neuroscope as ns
    run = ns.run(model="minilm", task="pos", data_dir="../shared/data")
    run.top_neurons(label="NN", k=10)

``run``, ``open``, ``protocol``, ``Run``, ``Neuron`` and the probes are the analysis
API; the rest (``hookimpl``, ``ModelAdapter``, ``TaskData``, ...) is for plugin authors
(docs/plugins.md). ``from neuroscope import *`` would shadow the builtin ``open``: import
the module instead.
"""

from neuroscope.api import Neuron, Run, TopNeuron, WordActivation, open, protocol, run
from neuroscope.errors import DataFormatError, ModelLoadError, NeuroscopeError, RegistryError, StoreError
from neuroscope.heatmap import HeatMap
from neuroscope.hookspecs import hookimpl
from neuroscope.lbfgs import LbfgsProbe
from neuroscope.model import AGGREGATIONS, ModelAdapter
from neuroscope.probe import ElasticNetProbe
from neuroscope.types import Corpus, NeuronIndex, Sentence, TaskData
from neuroscope.version import __version__


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
    "hookimpl",
    "open",
    "protocol",
    "run",
]
