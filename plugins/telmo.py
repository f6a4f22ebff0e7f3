"""The ``telmo`` model adapter: Transformer-ELMo in torch, read from its AllenNLP model
archive (``model.tar.gz``), equal to AllenNLP by the parity fixtures.

This module only registers the adapter; the implementation is
:mod:`neuroscope_plugins.telmo_adapter`, imported when a run first uses it.
"""

from __future__ import annotations

from neuroscope.plugin import hookimpl


@hookimpl
def register_models(register):
    register("telmo", "neuroscope_plugins.telmo_adapter:telmo_model")
