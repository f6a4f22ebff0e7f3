"""A finished run in formats other tools read (``neuroscope export RUN --to FORMAT OUT``,
:meth:`neuroscope.runs.Run.export`; docs/results.md, "Export").

* ``safetensors``: each seed's oracle probe as ``OUT/probe-seed-N.safetensors`` (the
  probe's ``save``: tensors ``coef`` (labels, neurons), ``intercept``, ``neurons``; its
  class, parameters and classes in the file's metadata), readable by any safetensors
  reader (``safetensors.numpy.load_file``, ``safe_open``, Hugging Face tools) and loaded
  back by the probe class's ``load`` with identical predictions; ``OUT/config.json`` says
  what the weights apply to: the model, task, site, layers, hidden size, how a neuron id
  maps to (layer, unit) (and a screened run's network ids), the lambdas, labels and seeds.

* ``parquet``: each split's activation store entry as a word table ``OUT/<split>.parquet``
  (:mod:`neuroscope.parquet_store`: the word, its label and one float16 list column per
  layer, the store's checksums in the metadata), with ``OUT/config.json``;
  ``neuroscope cache import`` reads it back as the same store entry.

* ``neuronpedia``: Neuronpedia's export layout (:mod:`neuroscope.neuronpedia`): per layer
  a source with a feature, activation records and an explanation per neuron, and the
  probe's class directions as vectors.

A format is written into a new or empty directory only, each file under a temporary name
and renamed: an export that stops leaves no half-written file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neuroscope.choices import EXPORT_FORMATS
from neuroscope.errors import ValidationError
from neuroscope.registry import Registry
from neuroscope.rundir import write_json
from neuroscope.validation import check_choice

def export_run(run: Any, to: str, out: str | Path, features: str = "all") -> list[Path]:
    """Write ``run`` (a :class:`~neuroscope.runs.Run`) as ``to`` into ``out``; the files
    written. ``features`` (neuronpedia): every neuron, or the run's first ranking's top
    ``--fraction``."""
    check_choice("--to", to, EXPORT_FORMATS)
    check_choice("--features", features, ("all", "top"))
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValidationError(f"{out}: the export's directory must be new or empty")
    out.mkdir(parents=True, exist_ok=True)
    if to == "neuronpedia":
        from neuroscope.neuronpedia import export_neuronpedia

        return export_neuronpedia(run, out, features=features)
    return export_parquet(run, out) if to == "parquet" else export_safetensors(run, out)


def describe(run: Any) -> dict[str, Any]:
    """What a run's exported weights and activations apply to (``config.json``)."""
    results = run.results
    screen = results.get("screen") or {}
    return {"format": "neuroscope-export/1", "model": results["model"], "task": results["task"],
            "site": results.get("site", "hidden"), "layers": list(results["layers"]),
            "hidden_size": results["hidden_size"], "neurons": results["neurons"],
            "neuron_ids": results["neuron_ids"], "network_neurons": screen.get("neurons"),
            "aggregation": run.config.get("aggregation"), "probe": results["probe"], "lambdas": results["lambdas"],
            "labels": list(results["labels"]), "seeds": list(results["seeds"]), "run": str(run.path)}


def export_safetensors(run: Any, out: Path) -> list[Path]:
    """Each seed's oracle probe as a safetensors file, and config.json."""
    probe_cls = Registry().resolve_probe(run.settings.probe).entry.obj
    if not hasattr(probe_cls, "save"):
        raise ValidationError(f"probe {run.settings.probe!r} has no save(): it cannot be exported as safetensors")
    lambdas = run.results["lambdas"]
    meta = describe(run)
    written = []
    for seed in run.results["seeds"]:
        coef, intercept = run.probe_weights(seed)
        probe = probe_cls(seed=seed, **run.settings.probe_params(lambdas["l1"], lambdas["l2"]))
        probe.set_fitted(run.labels, coef, intercept)
        written.append(probe.save(out / f"probe-seed-{seed}.safetensors",
                                  {k: meta[k] for k in ("model", "task", "site", "layers", "hidden_size",
                                                        "neuron_ids", "network_neurons")} | {"seed": seed}))
    meta["files"] = {f"seed-{seed}": path.name for seed, path in zip(run.results["seeds"], written)}
    write_json(out / "config.json", meta)
    return [*written, out / "config.json"]


def export_parquet(run: Any, out: Path) -> list[Path]:
    """Each split's activations as ``OUT/<split>.parquet`` and config.json."""
    from neuroscope.parquet_store import SPLITS, export_split

    task = run.task()
    meta = describe(run)
    written = []
    for split in SPLITS:
        corpus = task.splits[split]
        written.append(export_split(run.activations(split), split, corpus.words(), corpus.labels(),
                                    out / f"{split}.parquet", {"model": meta["model"], "task": meta["task"]}))
    meta["files"] = {split: path.name for split, path in zip(SPLITS, written)}
    write_json(out / "config.json", meta)
    return [*written, out / "config.json"]
