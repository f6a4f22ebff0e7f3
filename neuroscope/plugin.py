"""Everything a plugin author needs, in one module: ``from neuroscope.plugin import ...``.

The built-in plugins (``plugins/``, installed as ``neuroscope_plugins``) import
neuroscope only through this module, exactly as a third-party package would
(a test enforces it), so whatever a built-in can do, a plugin written against
``docs/plugins.md`` can do too. Names here are the stable plugin API; other
modules of neuroscope may change between versions.

* hooks: :data:`hookimpl`
* errors: :class:`NeuroscopeError` and its kinds (each can be raised with one
  message; :class:`DataFormatError` also as ``(path, line, expected, found)``)
* data: :class:`Sentence`, :class:`Corpus`, :class:`TaskData` and the reader
  helpers (file lookup, UTF-8 lines, column files, document splits, rare labels)
* models: :class:`ModelAdapter`, :class:`NeuronIndex`, :data:`AGGREGATIONS`,
  :func:`resolve_device`, :func:`sha256_of`
* probes and rankers: :class:`ElasticNetProbe`, :func:`train_elastic_net`,
  :class:`TrainSettings`, :class:`LinearModel`, :class:`Ranking`, the ranker
  contract (:func:`ranker`, :class:`RankerInputs`) and the built-in ranking
  methods (:func:`weight_mass_ranking`, :func:`probeless`, :func:`iou`,
  :func:`gaussian`, :func:`random_order`)
"""

from neuroscope.causal import Ablation, InterventionRecord, InterventionUnsupported, edit_hidden
from neuroscope.datasets import sha256_of
from neuroscope.executors import (GraphProgress, LocalExecutor, Unit, UnitOutcome, cell_files, limit_threads, not_run,
                                  read_files, run_graph, run_unit, write_files)
from neuroscope.errors import (DataFormatError, ModelLoadError, NeuroscopeError, RegistryError, StoreError,
                               ValidationError)
from neuroscope.hookspecs import hookimpl
from neuroscope.lbfgs import LbfgsProbe, train_lbfgs
from neuroscope.choices import AGGREGATIONS
from neuroscope.model import ModelAdapter, resolve_device
from neuroscope.probe import ElasticNetProbe, LinearModel, TrainSettings, train_elastic_net
from neuroscope.rankers import RankerInputs, ranker
from neuroscope.rankers.gaussian import gaussian
from neuroscope.rankers.iou import iou
from neuroscope.rankers.probeless import probeless
from neuroscope.rankers.random_baseline import random_order
from neuroscope.ranking import Ranking, weight_mass_ranking
from neuroscope.readers import (RARE_LABEL, collapse_rare_labels, column_blocks, data_file, decode_text, read_columns,
                                read_text, split_documents, task_from_files, task_option, text_lines)
from neuroscope.types import Corpus, NeuronIndex, Sentence, TaskData
from neuroscope.validation import check_number

__all__ = [
    "AGGREGATIONS",
    "Ablation",
    "Corpus",
    "DataFormatError",
    "ElasticNetProbe",
    "InterventionRecord",
    "InterventionUnsupported",
    "LbfgsProbe",
    "LinearModel",
    "GraphProgress",
    "LocalExecutor",
    "ModelAdapter",
    "ModelLoadError",
    "NeuronIndex",
    "NeuroscopeError",
    "RARE_LABEL",
    "RankerInputs",
    "Ranking",
    "RegistryError",
    "Sentence",
    "StoreError",
    "TaskData",
    "TrainSettings",
    "Unit",
    "UnitOutcome",
    "ValidationError",
    "collapse_rare_labels",
    "check_number",
    "column_blocks",
    "data_file",
    "decode_text",
    "edit_hidden",
    "gaussian",
    "iou",
    "probeless",
    "random_order",
    "ranker",
    "hookimpl",
    "limit_threads",
    "cell_files",
    "not_run",
    "read_columns",
    "read_files",
    "read_text",
    "resolve_device",
    "run_graph",
    "run_unit",
    "sha256_of",
    "split_documents",
    "task_from_files",
    "task_option",
    "text_lines",
    "train_elastic_net",
    "train_lbfgs",
    "weight_mass_ranking",
    "write_files",
]
