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
  :func:`resolve_device`, :func:`sha256_of`, and a model object of this process
  (:func:`loaded_model`, :func:`is_loaded_model`)
* probes and rankers: :class:`ElasticNetProbe`, :func:`train_elastic_net`,
  :class:`TrainSettings`, :class:`LinearModel`, :class:`Ranking`, the ranker
  contract (:func:`ranker`, :class:`RankerInputs`, :func:`order_by_score`,
  :func:`ranking_from_order`) and the built-in ranking
  methods (:func:`weight_mass_ranking`, :func:`probeless`, :func:`iou`,
  :func:`gaussian`, :func:`random_order`)
"""

from __future__ import annotations

import importlib
from typing import Any

#: module -> the names this facade takes from it; a name's module is imported on first use
#: (PEP 562), so registering plugins and listing them never imports torch
_SOURCES: dict[str, str] = {
    "neuroscope.causal": "Ablation InterventionRecord InterventionUnsupported edit_hidden",
    "neuroscope.choices": "AGGREGATIONS",
    "neuroscope.datasets": "sha256_of",
    "neuroscope.errors": "DataFormatError ModelLoadError NeuroscopeError RegistryError StoreError ValidationError",
    "neuroscope.executors": (
        "GraphProgress LocalExecutor Retried Unit UnitOutcome cell_files error_line limit_threads not_run "
        "read_files run_graph run_unit write_files"),
    "neuroscope.hookspecs": "hookimpl",
    "neuroscope.lbfgs": "LbfgsProbe train_lbfgs",
    "neuroscope.loaded": "is_loaded_model loaded_model",
    "neuroscope.model": "AttributionUnsupported ModelAdapter resolve_device",
    "neuroscope.probe": "ElasticNetProbe LinearModel TrainSettings train_elastic_net",
    "neuroscope.rankers": "RankerInputs check_options order_by_score ranker ranking_from_order with_label_scores",
    "neuroscope.rankers.attribution": "attribution",
    "neuroscope.rankers.contrast": "f_stat mean_diff",
    "neuroscope.rankers.lape": "lape",
    "neuroscope.rankers.mutual_information": "mutual_information",
    "neuroscope.rankers.gaussian": "gaussian",
    "neuroscope.rankers.iou": "iou",
    "neuroscope.rankers.probeless": "probeless",
    "neuroscope.rankers.random_baseline": "random_order",
    "neuroscope.ranking": "Ranking weight_mass_ranking",
    "neuroscope.readers": (
        "RARE_LABEL collapse_rare_labels column_blocks data_file decode_text read_columns read_text "
        "split_documents task_from_files task_option text_lines"),
    "neuroscope.types": "Corpus NeuronIndex Sentence TaskData",
    "neuroscope.validation": "check_number",
}
_MODULE_OF = {name: module for module, names in _SOURCES.items() for name in names.split()}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'neuroscope.plugin' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULE_OF))
