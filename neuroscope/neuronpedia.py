"""A finished run in Neuronpedia's export layout (``neuroscope export RUN OUT --to
neuronpedia``; docs/results.md, "Export").

The layout and record fields are those of Neuronpedia's own exports and bulk imports:
its ``utils/neuronpedia-utils/neuronpedia_utils/export-data.py`` writes, per model and
source, ``release.jsonl``, ``model.jsonl``, ``sourceset.jsonl``, ``source.jsonl`` and
``features/``, ``activations/``, ``explanations/`` as ``batch-N.jsonl.gz`` of 1,024
features each, one JSON object per line whose keys are the columns of its database tables
(the dataclasses of ``neuronpedia_utils.db_models``: SourceRelease, Model, SourceSet,
Source, Feature (table Neuron), Activation, Explanation; SAEDashboard's Neuronpedia
converter inlines the same dataclasses).

neuroscope's mapping:

* model id: the run's model name; a source per layer, ``<layer>-neuroscope-<site>`` (layer
  0 the embeddings where the model has them), in source set ``neuroscope-<site>``; a
  feature per neuron (``index`` its unit), every neuron or a ranker's top set;
* each feature's dashboard (:mod:`neuroscope.dashboards`, on the train split): the
  density histogram (``freq_hist_data_*``), share active (``frac_nonzero``), the largest
  value (``maxActApprox``), its most correlated units of the layer
  (``correlated_neurons_*``); at the mlp site of a decoder the tokens its output weights
  promote and suppress through the unembedding (``pos_str`` / ``pos_values``,
  ``neg_str`` / ``neg_values``, 10 each) and the histogram of that logit effect over the
  vocabulary (``logits_hist_data_*``); activation records for its top words and for words at ten
  quantile ranges (``binMin``, ``binMax``, ``binContains`` the range's share of tokens,
  ``qualifyingTokenIndex`` the word), each a whole sentence of words with the neuron's
  value on every word;
* an explanation per feature, type ``neuroscope``: its rank and the labels it serves in
  the oracle probe, and its tags;
* the probe's class directions: source set ``neuroscope-probe``, a source per layer, a
  feature per label whose ``vector`` is the label's weights over that layer's units (the
  direction the probe reads, for steering), ``vectorLabel`` the label.

Fields neuroscope has no value for keep the dataclasses' defaults (empty lists, null).
Every file is written under a temporary name and renamed.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from neuroscope.dashboards import Dashboards, build_dashboards, output_tokens_of
from neuroscope.errors import ValidationError
from neuroscope.rundir import atomic_path
from neuroscope.store import labels_to_ids

#: features per batch file (Neuronpedia's own exports: 1,024)
BATCH = 1024
#: the creator id written where Neuronpedia's records name one
CREATOR = "neuroscope"
#: what the export covers: every neuron, or the run's first ranker's top --fraction
FEATURES = ("all", "top")


def cuid(*parts: Any) -> str:
    """A fixed 25-character id in the form of Neuronpedia's cuids ("c" and 24 hex digits)."""
    return "c" + hashlib.sha256("\0".join(map(str, parts)).encode("utf-8")).hexdigest()[:24]


def write_jsonl(path: Path, records: Iterable[dict[str, Any]], compress: bool) -> Path:
    """JSON lines, gzip-compressed (level 5, as Neuronpedia's) when ``compress``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in records).encode("utf-8")
    with atomic_path(path) as tmp:
        tmp.write_bytes(gzip.compress(text, compresslevel=5, mtime=0) if compress else text)
    return path


def export_neuronpedia(run: Any, out: Path, features: str = "all", creator: str = CREATOR) -> list[Path]:
    """Write ``run`` in Neuronpedia's layout under ``out``; the files written."""
    if features not in FEATURES:
        raise ValidationError(f"features={features!r}: expected one of {', '.join(FEATURES)}")
    results = run.results
    index = run.index
    site = results.get("site", "hidden")
    model_id = "".join(c if c.isalnum() or c in "-_." else "-" for c in str(results["model"]).lower())
    created = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    X = run.activations("train")
    corpus = run.task().train
    labels = list(run.labels)
    ids = labels_to_ids([str(label) for label in corpus.labels()], labels)
    order = run.ranking()
    chosen = np.sort(order[:max(1, int(round(results["fraction"] * len(order))))]) if features == "top" \
        else np.arange(index.n_neurons)
    words = corpus.words()
    d = build_dashboards(X, ids, labels, words, neurons=chosen)
    outputs = output_tokens_of(run, chosen)
    coef, _ = run.probe_weights(0)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(1, len(order) + 1)
    release = f"neuroscope-{run.path.name}"
    written: list[Path] = []
    network = index.network(np.arange(index.n_neurons))
    for set_name, rows in ((f"neuroscope-{site}", None), ("neuroscope-probe", labels)):
        for layer in sorted({int(v) for v in d.layers}):
            source = f"{layer}-{set_name}"
            folder = out / model_id / source
            meta = [("release.jsonl", release_record(release, run, creator, created)),
                    ("model.jsonl", model_record(model_id, results, index, creator, created, set_name, source)),
                    ("sourceset.jsonl", sourceset_record(model_id, set_name, release, site, creator, created)),
                    ("source.jsonl", source_record(model_id, source, set_name, results, X, creator, created))]
            for name, record in meta:
                written.append(write_jsonl(folder / name, [record], compress=False))
            if rows is None:
                members = np.flatnonzero(d.layers == layer)
                feats = [feature_record(d, j, model_id, source, set_name, index.hidden_size, creator, created,
                                        network, outputs.get(int(d.neurons[j]))) for j in members]
                acts = [a for j in members
                        for a in activation_records(d, j, model_id, source, words, creator, created,
                                                    index.hidden_size)]
                expl = [explanation_record(d, j, model_id, source, labels, coef, rank, creator, created,
                                           index.hidden_size) for j in members]
            else:
                in_layer = np.flatnonzero(network // index.hidden_size == layer)
                feats = [probe_record(label, c, coef[c, in_layer], network[in_layer] % index.hidden_size,
                                      index.hidden_size, model_id, source, set_name, site, layer, creator, created)
                         for c, label in enumerate(labels)]
                acts = []
                expl = [{"id": cuid(model_id, source, c, "explanation"), "modelId": model_id, "layer": source,
                         "index": str(c), "authorId": creator,
                         "description": f"the oracle probe's direction for {label} in layer {layer}",
                         "embedding": None, "typeName": "neuroscope", "explanationModelName": "neuroscope",
                         "umap_x": None, "umap_y": None, "umap_cluster": None, "umap_log_feature_sparsity": None}
                        for c, label in enumerate(labels)]
            for kind, records, per_feature in (("features", feats, 1), ("activations", acts, None),
                                               ("explanations", expl, 1)):
                batches = batched(records, per_feature)
                for k, batch in enumerate(batches):
                    written.append(write_jsonl(folder / kind / f"batch-{k}.jsonl.gz", batch, compress=True))
    return written


def batched(records: list[dict[str, Any]], per_feature: int | None) -> list[list[dict[str, Any]]]:
    """Records in batches of :data:`BATCH` features (activation records: of BATCH features'
    records, as Neuronpedia batches them by feature index)."""
    if per_feature is not None:
        return [records[i:i + BATCH] for i in range(0, len(records), BATCH)]
    groups: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(int(record["index"]) // BATCH, []).append(record)
    return [groups[k] for k in sorted(groups)]


def release_record(name: str, run: Any, creator: str, created: str) -> dict[str, Any]:
    results = run.results
    return {"name": name, "description": f"neuroscope run {run.path.name}: {results['model']} x {results['task']}",
            "creatorName": creator, "creatorId": creator, "visibility": "PUBLIC", "isNewUi": False, "featured": False,
            "descriptionShort": f"{results['model']} x {results['task']} (neuroscope)", "urls": [],
            "creatorEmail": None, "creatorNameShort": creator, "defaultSourceSetName": None, "defaultSourceId": None,
            "defaultUmapSourceIds": [], "createdAt": created}


def model_record(model_id: str, results: dict[str, Any], index: Any, creator: str, created: str, set_name: str,
                 source: str) -> dict[str, Any]:
    return {"id": model_id, "instruct": False, "creatorId": creator, "displayNameShort": model_id,
            "displayName": str(results["model"]), "tlensId": None, "dimension": int(index.hidden_size),
            "visibility": "PUBLIC", "defaultSourceSetName": set_name, "defaultSourceId": source,
            "inferenceEnabled": False, "layers": int(index.n_layers), "neuronsPerLayer": int(index.hidden_size),
            "createdAt": created, "owner": creator, "updatedAt": created, "website": None}


def sourceset_record(model_id: str, name: str, release: str, site: str, creator: str, created: str) -> dict[str, Any]:
    what = "the oracle probe's class directions" if name.endswith("probe") else f"{site} neurons"
    return {"modelId": model_id, "name": name, "creatorId": creator, "hasDashboards": True, "visibility": "PUBLIC",
            "description": f"neuroscope: {what}", "type": "neurons", "creatorName": creator, "urls": [],
            "creatorEmail": None, "releaseName": release, "defaultOfModelId": None, "defaultRange": 1,
            "defaultShowBreaks": True, "showDfa": False, "showCorrelated": True, "showHeadAttribution": False,
            "showUmap": False, "createdAt": created}


def source_record(model_id: str, source: str, set_name: str, results: dict[str, Any], X: Any, creator: str,
                  created: str) -> dict[str, Any]:
    return {"id": source, "modelId": model_id, "setName": set_name, "creatorId": creator, "hasDashboards": True,
            "inferenceEnabled": False, "inferenceHosts": [], "saelensConfig": None, "saelensRelease": None,
            "saelensSaeId": None, "hfRepoId": None, "hfFolderId": None, "visibility": "PUBLIC",
            "defaultOfModelId": None, "hasUmap": False, "hasUmapLogSparsity": False, "hasUmapClusters": False,
            "num_prompts": int(len(X.offsets) - 1), "num_tokens_in_prompt": None, "dataset": str(results["task"]),
            "notes": f"words of the {results['task']} train split; a word's value is its last sub-token's",
            "createdAt": created}


def feature_record(d: Dashboards, j: int, model_id: str, source: str, set_name: str, hidden: int, creator: str,
                   created: str, network_of: np.ndarray, output: dict[str, Any] | None = None) -> dict[str, Any]:
    """One neuron as a Neuronpedia feature; ``output`` its promoted and suppressed tokens
    (pos_str / neg_str and the logits histogram) where the run has them."""
    high = float(d.stats.top_values[j][0])
    output = output or {"promoted": [], "suppressed": [], "histogram": {"centres": [], "tokens": []}}
    near = [(int(network_of[c]), float(r)) for c, r in zip(d.correlated[j], d.correlated_r[j]) if c >= 0]
    return {"modelId": model_id, "layer": source, "index": str(int(d.network[j]) % hidden),
            "creatorId": creator, "createdAt": created, "maxActApprox": high, "hasVector": False, "vector": [],
            "vectorLabel": None, "vectorDefaultSteerStrength": 10, "hookName": None, "topkCosSimIndices": [],
            "topkCosSimValues": [], "neuron_alignment_indices": [], "neuron_alignment_values": [],
            "neuron_alignment_l1": [], "correlated_neurons_indices": [c % hidden for c, _ in near],
            "correlated_neurons_pearson": [round(r, 5) for _, r in near], "correlated_neurons_l1": [],
            "correlated_features_indices": [], "correlated_features_pearson": [], "correlated_features_l1": [],
            "neg_str": [t for t, _ in output["suppressed"]], "neg_values": [round(v, 5) for _, v in output["suppressed"]],
            "pos_str": [t for t, _ in output["promoted"]], "pos_values": [round(v, 5) for _, v in output["promoted"]],
            "frac_nonzero": float(d.stats.active_share()[j]),
            "freq_hist_data_bar_heights": [float(v) for v in d.density[j]],
            "freq_hist_data_bar_values": d.histogram_centres(j),
            "logits_hist_data_bar_heights": [float(v) for v in output["histogram"]["tokens"]],
            "logits_hist_data_bar_values": [float(v) for v in output["histogram"]["centres"]],
            "decoder_weights_dist": [],
            "sourceSetName": set_name}


def activation_records(d: Dashboards, j: int, model_id: str, source: str, words: list, creator: str, created: str,
                       hidden: int) -> list[dict[str, Any]]:
    """The neuron's top words and its quantile ranges' words, each with its sentence."""
    offsets, sentence_of = d.offsets, d.sentence_of
    unit = str(int(d.network[j]) % hidden)
    total = int(d.quantile_counts[j].sum())
    chosen = [(int(r), None) for r in d.stats.top_rows[j]]
    chosen += [(int(r), i) for i in range(d.quantile_rows.shape[1]) for r in d.quantile_rows[j, i] if r >= 0]
    out = []
    for k, (row, bin_index) in enumerate(chosen):
        s = int(sentence_of[row])
        values = [round(float(v), 4) for v in d.sentences[(j, s)]]
        top = int(np.argmax(values))
        record = {"id": cuid(model_id, source, unit, k, row), "tokens": list(words[s]), "index": unit,
                  "layer": source, "modelId": model_id, "maxValue": values[top], "maxValueTokenIndex": top,
                  "minValue": min(values), "values": values, "creatorId": creator, "dataSource": None,
                  "dataIndex": str(s), "dfaValues": [], "dfaTargetIndex": None, "dfaMaxValue": None,
                  "createdAt": created, "lossValues": [], "logitContributions": None, "binMin": None,
                  "binMax": None, "binContains": None, "qualifyingTokenIndex": int(row - offsets[s]),
                  "zIndices": None, "zValues": None}
        if bin_index is not None:
            record.update(binMin=float(d.quantile_edges[j, bin_index]), binMax=float(d.quantile_edges[j, bin_index + 1]),
                          binContains=float(d.quantile_counts[j, bin_index]) / max(total, 1))
        out.append(record)
    return out


def explanation_record(d: Dashboards, j: int, model_id: str, source: str, labels: list[str], coef: np.ndarray,
                       rank: np.ndarray, creator: str, created: str, hidden: int) -> dict[str, Any]:
    column = int(d.neurons[j])
    unit = str(int(d.network[j]) % hidden)
    strongest = np.argsort(-np.abs(coef[:, column]), kind="stable")[:3]
    served = ", ".join(f"{labels[c]} ({coef[c, column]:+.3f})" for c in strongest)
    tags = f"; tags: {', '.join(d.tags[j])}" if d.tags[j] else ""
    return {"id": cuid(model_id, source, unit, "explanation"), "modelId": model_id, "layer": source, "index": unit,
            "authorId": creator, "description": f"rank {int(rank[column])} of {len(rank)}; probe weights: "
                                                f"{served}{tags}",
            "embedding": None, "typeName": "neuroscope", "explanationModelName": "neuroscope", "umap_x": None,
            "umap_y": None, "umap_cluster": None, "umap_log_feature_sparsity": None}


def probe_record(label: str, c: int, weights: np.ndarray, units: np.ndarray, hidden: int, model_id: str, source: str,
                 set_name: str, site: str, layer: int, creator: str, created: str) -> dict[str, Any]:
    vector = np.zeros(hidden)
    vector[units] = weights
    return {"modelId": model_id, "layer": source, "index": str(c), "creatorId": creator, "createdAt": created,
            "maxActApprox": 0, "hasVector": True, "vector": [round(float(v), 6) for v in vector],
            "vectorLabel": label, "vectorDefaultSteerStrength": 10, "hookName": f"{site}.{layer}",
            "topkCosSimIndices": [], "topkCosSimValues": [], "neuron_alignment_indices": [int(u) for u in
                                                                                          np.argsort(-np.abs(vector))[:5]],
            "neuron_alignment_values": [round(float(vector[u]), 6) for u in np.argsort(-np.abs(vector))[:5]],
            "neuron_alignment_l1": [], "correlated_neurons_indices": [], "correlated_neurons_pearson": [],
            "correlated_neurons_l1": [], "correlated_features_indices": [], "correlated_features_pearson": [],
            "correlated_features_l1": [], "neg_str": [], "neg_values": [], "pos_str": [], "pos_values": [],
            "frac_nonzero": 0, "freq_hist_data_bar_heights": [], "freq_hist_data_bar_values": [],
            "logits_hist_data_bar_heights": [], "logits_hist_data_bar_values": [], "decoder_weights_dist": [],
            "sourceSetName": set_name}
