"""What each unit of a run declares to the executor: CPUs, GPUs and memory
(``--cpus-per-unit``, ``--model-gpus``, ``--unit-memory``; docs/distributed.md).

Memory is an estimate, made where the sizes it rests on are known: an extract unit's
from the model's weight files (before anything loads), a cell's units' from the store
entries its extract unit recorded (their rows and columns) and the number of labels.
Ray treats memory as a logical resource: it places units so that what they declare fits
a node's memory, it does not measure or cap them. The estimate is deliberately simple,
and a number given with ``--unit-memory KIND=SIZE`` replaces it.

* every unit: :data:`BASE_BYTES` (the interpreter, torch, the corpus);
* extract: the weights' bytes (their files' size) and a fifth more for the forward pass;
* search: the training rows it holds (float16, at most :data:`~neuroscope.probe.RESIDENT_BYTES`)
  and each trained setting's weights with their gradient and Adam moments (4 float32
  copies of neurons x labels), for every lambda pair at once but never more than
  ``--grid-memory`` (the settings trained together are cut to it);
* seed: the same rows, :data:`SEED_SETTINGS` settings at once (the scan's blocks, the
  control task; again at most ``--grid-memory``), and a read chunk;
* finish: two read chunks (report.html's statistics read the store in chunks), and the
  weights with ``--causal`` (it runs the model).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

from neuroscope.errors import ValidationError

log = logging.getLogger(__name__)

#: what every unit needs before its own work: the interpreter, torch and the corpus
BASE_BYTES = 2**30
#: settings a seed unit trains at once, at most (the minimal-set scan's blocks, the control task)
SEED_SETTINGS = 16
#: the unit kinds ``--unit-memory`` names (a sharded extraction's shards are extract units)
MEMORY_KINDS = ("extract", "search", "seed", "finish")
#: files whose size is a checkpoint's weights
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".hdf5", ".h5", ".npz", ".tar.gz", ".model")


def parse_unit_memory(value: str) -> dict[str, int]:
    """``--unit-memory``: ``auto`` (every kind estimated) or ``KIND=SIZE`` pairs, comma-
    separated (e.g. ``extract=40GB,seed=8GiB``; ``0`` declares none); the kinds not named
    stay estimated."""
    from neuroscope.screening import parse_bytes

    text = str(value).strip()
    if text.lower() == "auto":
        return {}
    out: dict[str, int] = {}
    for part in text.split(","):
        kind, sep, size = part.partition("=")
        kind = kind.strip()
        if not sep or kind not in MEMORY_KINDS:
            raise ValidationError(f"--unit-memory {value!r}: expected auto or KIND=SIZE pairs such as "
                                  f"extract=40GB,seed=8GB, KIND one of {', '.join(MEMORY_KINDS)}")
        if kind in out:
            raise ValidationError(f"--unit-memory {value!r}: {kind} is given twice")
        out[kind] = 0 if size.strip() == "0" else parse_bytes(size, "--unit-memory")  # type: ignore[assignment]
        if out[kind] is None:
            raise ValidationError(f"--unit-memory {value!r}: {kind}=auto; leave the kind out to have it estimated")
    return out


def weight_files_bytes(path: Path) -> int:
    """Bytes of the weights of a checkpoint: a file, or a directory's weight files of one
    format (the first of :data:`WEIGHT_SUFFIXES` it holds: a hub directory often holds the
    same weights as .safetensors and as .bin, counted once)."""
    if path.is_file():
        return path.stat().st_size
    sizes: dict[str, int] = {}
    for root, _, names in os.walk(path):
        for name in names:
            suffix = next((s for s in WEIGHT_SUFFIXES if name.endswith(s)), None)
            if suffix is not None:
                sizes[suffix] = sizes.get(suffix, 0) + (Path(root) / name).stat().st_size
    return next((sizes[s] for s in WEIGHT_SUFFIXES if s in sizes), 0)


def model_weight_bytes(registry: Any, spec: str) -> int | None:
    """The bytes of ``spec``'s weights, from their files: where the model's registered
    adapter (or factory) says they lie (an optional ``weight_files(options) -> Path | None``
    attribute, docs/plugins.md; the transformers adapter finds ``package:`` models, local
    directories and hub models in this machine's cache), else any local path among its
    options. None where no file says (a hub model not downloaded here: then an extract unit
    declares only :data:`BASE_BYTES` unless ``--unit-memory extract=SIZE``)."""
    try:
        resolved = registry.resolve_model(spec)
    except Exception:  # resolution errors are reported where the run resolves its models
        return None
    finder = getattr(resolved.entry.obj, "weight_files", None)
    candidates: list[Path] = []
    if callable(finder):
        try:
            found = finder(dict(resolved.options))
        except Exception as exc:  # a plugin's finder failing costs the estimate, not the run
            log.info("%s: weight_files failed (%s); its memory is not estimated from its weights", spec, exc)
            found = None
        if found is not None:
            candidates.append(Path(found))
    candidates += [Path(str(v)).expanduser() for v in resolved.options.values() if isinstance(v, (str, os.PathLike))
                   and not str(v).startswith(("package:", "http://", "https://"))]
    for path in candidates:
        if path.exists():
            size = weight_files_bytes(path)
            if size:
                return size
    return None


def estimate_memory(kind: str, config: Mapping[str, Any], weights: int | None = None,
                    record: Mapping[str, Any] | None = None) -> int:
    """The bytes a unit of ``kind`` declares (see the module's docstring): ``config`` the
    cell's settings (``RunConfig.to_json()``), ``weights`` the model's weight bytes (None:
    unknown), ``record`` what its extract unit stored (per split the entry's shape, and
    the number of labels) where known."""
    from neuroscope.probe import RESIDENT_BYTES
    from neuroscope.store import DEFAULT_CHUNK_BYTES

    model = int(weights * 1.2) if weights else 0
    if kind == "extract":
        return BASE_BYTES + model
    if kind == "finish":
        return BASE_BYTES + 2 * DEFAULT_CHUNK_BYTES + (model if config.get("causal") else 0)
    splits = (record or {}).get("splits") or {}
    if "train" not in splits:
        return BASE_BYTES
    tokens, neurons = (int(n) for n in splits["train"]["shape"])
    labels = int((record or {}).get("labels") or 2)
    rows = min(2 * tokens * neurons, RESIDENT_BYTES)
    setting = 4 * 4 * neurons * labels
    at_once = int(config.get("grid_memory") or 2**31)  # --grid-memory: the settings trained together
    if kind == "search":
        grid = len(config.get("grid") or [0])
        pairs = grid ** ((config.get("l1") is None) + (config.get("l2") is None))
        return BASE_BYTES + rows + min((pairs + 1) * setting, at_once)
    return BASE_BYTES + rows + min(SEED_SETTINGS * setting, at_once) + DEFAULT_CHUNK_BYTES


def declared_memory(kind: str, config: Mapping[str, Any], overrides: Mapping[str, int], weights: int | None = None,
                    record: Mapping[str, Any] | None = None) -> int:
    """``--unit-memory``'s number for ``kind`` where it gives one, else the estimate."""
    if kind in overrides:
        return int(overrides[kind])
    return estimate_memory(kind, config, weights, record)
