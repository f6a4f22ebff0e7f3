"""neuroscope: neuron-level analysis of pre-trained language models.

Implements and extends Durrani, Sajjad, Dalvi & Belinkov, "Analyzing
Individual Neurons in Pre-trained Language Models" (EMNLP 2020). The public
API for plugin authors is what this module exports.
"""

from neuroscope.errors import DataFormatError, ModelLoadError, NeuroscopeError, RegistryError, StoreError
from neuroscope.hookspecs import hookimpl
from neuroscope.model import AGGREGATIONS, ModelAdapter
from neuroscope.types import Corpus, NeuronIndex, Sentence, TaskData

__version__ = "0.1.0"

__all__ = [
    "AGGREGATIONS",
    "Corpus",
    "DataFormatError",
    "ModelAdapter",
    "ModelLoadError",
    "NeuronIndex",
    "NeuroscopeError",
    "RegistryError",
    "Sentence",
    "StoreError",
    "TaskData",
    "__version__",
    "hookimpl",
]
