"""The ``transformers`` model adapter (alias ``hf``): encoders (BERT, XLNet, RoBERTa, ...)
and decoder LMs (GPT-2, Pythia, Llama / Qwen / Mistral style) through Hugging Face
transformers.

This module only registers the adapter; the implementation is
:mod:`neuroscope_plugins.transformers_adapter`, imported when a run first uses it, so
``neuroscope plugins`` and ``neuroscope data list`` answer without importing torch.
"""

from __future__ import annotations

from neuroscope.plugin import hookimpl


@hookimpl
def register_models(register):
    register("transformers", "neuroscope_plugins.transformers_adapter:transformers_model", aliases=["hf"])
