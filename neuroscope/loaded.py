"""Models already loaded in this Python process, as models of a run (``ns.run(model=obj)``).

A transformers model object and its tokenizer are registered under ``loaded:HASH``,
HASH the first 16 hex digits of :func:`weights_digest`, a sha256 over the weights (every
tensor of the state dict: its name, dtype, shape and bytes), the configuration and the
tokenizer. The run then names the model ``hf:loaded:HASH`` and the transformers adapter
takes the object from here instead of loading files; the digest is the store's
``checkpoint_sha256``, so the activations of a model whose weights changed, even by one
value, are never served from the cache (docs/python.md, "A model already loaded").

The table holds weak references: it keeps nothing alive that the caller dropped. A name
whose object is gone, or that a run directory recorded in another process, cannot be
resolved and says so; run units in other processes (``--executor ray``, ``--cpus``) are
refused at planning for the same reason.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from typing import Any

from neuroscope.errors import ModelLoadError

#: the location prefix of a loaded model (``--model hf:loaded:HASH``)
PREFIX = "loaded:"
#: hex digits of the digest in a loaded model's name
NAME_DIGITS = 16
#: configuration entries that say where a model came from, not what it computes
UNWEIGHED_CONFIG = ("_name_or_path", "transformers_version", "_commit_hash", "_attn_implementation_autoset")

#: entries of a fast tokenizer's serialised form that its last call set (padding, truncation)
CALL_STATE = ("padding", "truncation")

_TABLE: dict[str, tuple[weakref.ref, weakref.ref, str]] = {}


def weights_digest(model: Any, tokenizer: Any) -> str:
    """sha256 (hex) over the model's state dict, in name order (name, dtype, shape and the
    bytes of each tensor), its configuration without :data:`UNWEIGHED_CONFIG`, and the
    tokenizer's serialised vocabulary and rules (without :data:`CALL_STATE`, which using
    the tokenizer changes) with its special tokens (but the pad token, which a run sets on a
    decoder's tokenizer that has none)."""
    import torch

    h = hashlib.sha256()
    state = model.state_dict()
    for name in sorted(state):
        tensor = state[name]
        if tensor.device.type == "meta":
            raise ModelLoadError(f"the loaded model's {name} has no values (a meta tensor, e.g. offloaded by "
                                 "device_map); load the model fully or pass its directory instead")
        flat = tensor.detach().reshape(-1).contiguous().cpu()
        h.update(f"{name}\0{flat.dtype}\0{tuple(tensor.shape)}\0".encode("utf-8"))
        h.update(flat.view(torch.uint8).numpy().tobytes())
    config = {k: v for k, v in model.config.to_dict().items() if k not in UNWEIGHED_CONFIG}
    h.update(json.dumps(config, sort_keys=True, default=str).encode("utf-8"))
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ModelLoadError(f"the tokenizer ({type(tokenizer).__name__}) is not a fast tokenizer; neuroscope aligns "
                             "sub-words with words through word_ids(): load it with AutoTokenizer.from_pretrained(...)")
    rules = {k: v for k, v in json.loads(backend.to_str()).items() if k not in CALL_STATE}
    h.update(json.dumps(rules, sort_keys=True).encode("utf-8"))
    special = {k: v for k, v in tokenizer.special_tokens_map.items() if k != "pad_token"}
    h.update(json.dumps(special, sort_keys=True, default=str).encode("utf-8"))
    return h.hexdigest()


def register(model: Any, tokenizer: Any) -> str:
    """``loaded:HASH`` for ``model`` and ``tokenizer``, registered for this process."""
    if not hasattr(model, "state_dict") or not hasattr(model, "config"):
        raise ModelLoadError(f"model must be a model name or a transformers model object, got {type(model).__name__}")
    if tokenizer is None:
        raise ModelLoadError("a loaded model needs its tokenizer: ns.run(model=model, tokenizer=tokenizer, ...)")
    digest = weights_digest(model, tokenizer)
    name = PREFIX + digest[:NAME_DIGITS]
    _TABLE[name] = (weakref.ref(model), weakref.ref(tokenizer), digest)
    return name


def is_loaded_model(location: str) -> bool:
    """Whether a model location names a loaded model object."""
    return location.startswith(PREFIX)


def loaded_model(location: str) -> tuple[Any, Any, str]:
    """(model, tokenizer, digest) registered as ``location`` in this process."""
    entry = _TABLE.get(location)
    model, tokenizer = (entry[0](), entry[1]()) if entry else (None, None)
    if model is None or tokenizer is None:
        raise ModelLoadError(f"{location} names a model object loaded in a Python process (ns.run(model=<object>)), "
                             "not in this one or no longer alive; pass the object again: ns.run(model=model, "
                             "tokenizer=tokenizer, ...), or save it (model.save_pretrained(DIR)) and use --model hf:DIR")
    return model, tokenizer, entry[2]
