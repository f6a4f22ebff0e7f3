"""The ``elmo`` model adapter: ELMo in torch, read from AllenNLP's original checkpoint
format (options JSON + HDF5 weights), equal to AllenNLP by the parity fixtures.

This module only registers the adapter; the implementation is
:mod:`neuroscope_plugins.elmo_adapter`, imported when a run first uses it.
"""

from __future__ import annotations

from neuroscope.plugin import hookimpl


@hookimpl
def register_models(register):
    register("elmo", "neuroscope_plugins.elmo_adapter:elmo_model")
