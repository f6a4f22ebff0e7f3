"""A finished run directory, read: its results, settings and manifest, and its neurons
through the run's activation store (out of core: one column at a time in row chunks,
never the whole matrix in memory).

The one reader of run directories: the Python API (:func:`neuroscope.open`), the
report's top-neurons section and ``neuroscope neurons`` / ``show`` all use :class:`Run`.
docs/python.md is the tour.
"""

from __future__ import annotations

import functools
import logging
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import attrs
import numpy as np

from neuroscope.errors import RunDirectoryError, StoreError, ValidationError
from neuroscope.heatmap import HeatMap, heat_map
from neuroscope.types import NeuronIndex, TaskData

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")


class Records(list):
    """A list of records (:class:`TopNeuron`, :class:`WordActivation`) that also converts to
    rows: ``to_dicts()`` (plain dicts, one key per field) and ``to_pandas()`` (a DataFrame
    with one column per field; pandas is not a dependency of neuroscope)."""

    def to_dicts(self) -> list[dict[str, Any]]:
        return [record.to_dict() for record in self]

    def to_pandas(self) -> Any:
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_pandas() needs pandas (pip install pandas); to_dicts() gives the same rows as "
                              "plain dicts") from None
        return pd.DataFrame(self.to_dicts())


@attrs.frozen
class TopNeuron:
    """One neuron of a ranking: where it is, its rank and the oracle probe's weights."""

    neuron: int
    layer: int
    layer_name: str
    unit: int
    rank: int
    weight: float | None
    weights: dict[str, float] = attrs.field(repr=False)
    label: str | None = None
    score: float | None = None

    def __str__(self) -> str:
        return f"{self.layer}:{self.unit}"

    def to_dict(self) -> dict[str, Any]:
        """The fields as a flat dict: ``layer:unit`` as ``id``, each label's weight as ``weight_LABEL``."""
        row = {"id": str(self), **attrs.asdict(self, filter=lambda a, _: a.name != "weights")}
        row.update({f"weight_{label}": value for label, value in self.weights.items()})
        return row


@attrs.frozen
class WordActivation:
    """One token's activation of a neuron, with the sentence it occurs in."""

    value: float
    word: str
    label: str
    split: str
    sentence: int
    position: int
    words: tuple[str, ...] = attrs.field(repr=False)
    #: a gated MLP neuron's gate and up projections at this word (:meth:`Neuron.top_words` with ``glu``)
    gate: float | None = None
    up: float | None = None

    @property
    def context(self) -> str:
        """The sentence with the word in [brackets]."""
        return " ".join(f"[{w}]" if i == self.position else w for i, w in enumerate(self.words))

    @property
    def glu_case(self) -> str | None:
        """GLUScope's case of a gated neuron at this word: the signs of its gate and up
        projections, ``"gate+ up-"`` etc. (None without them)."""
        if self.gate is None or self.up is None:
            return None
        return f"gate{'+' if self.gate > 0 else '-'} up{'+' if self.up > 0 else '-'}"

    def to_dict(self) -> dict[str, Any]:
        """The fields as a flat dict, the sentence as ``context`` (the word in [brackets]);
        ``gate``, ``up`` and ``glu_case`` where they were computed."""
        row = {**attrs.asdict(self, filter=lambda a, _: a.name not in ("words", "gate", "up")), "context": self.context}
        if self.glu_case is not None:
            row.update(gate=self.gate, up=self.up, glu_case=self.glu_case)
        return row


class Run:
    """A finished run directory: its results, configuration and manifest, and access to
    its neurons through the run's activation store."""

    def __init__(self, path: str | Path, task: TaskData | None = None):
        """``task``: the run's task data where the caller already holds it (checked against
        the run's checksums like a task read again)."""
        from neuroscope.results import load_results
        from neuroscope.rundir import read_json

        self.path = Path(path)
        self._task = task
        self.results: dict[str, Any] = load_results(self.path)
        self.config: dict[str, Any] = read_json(self.path / "config.json", "the run's settings")
        manifest = self.path / "manifest.json"
        self.manifest: dict[str, Any] = read_json(manifest, "the run's manifest") if manifest.is_file() else {}
        for name, value in (("config.json", self.config), ("manifest.json", self.manifest)):
            if not isinstance(value, dict):
                raise RunDirectoryError(f"{self.path / name}: damaged, expected a JSON object; run the same command "
                                        "again with --resume to rewrite it")
        self.settings = self._settings()
        screen = self.results.get("screen") or {}
        self.index = NeuronIndex(tuple(self.results["layers"]), int(self.results["hidden_size"]),
                                 screen.get("neurons"))  # a screened run numbers its kept neurons
        self.labels: tuple[str, ...] = tuple(self.results["labels"])

    def _settings(self) -> Any:
        """The run's settings (a RunConfig) from config.json, checked where the explorer reads
        them (the model, the task's slice)."""
        from neuroscope.settings import RunConfig

        try:
            config = RunConfig.from_json(self.config)
            if not all(isinstance(v, str) and v for v in (config.model, config.task, config.data_dir,
                                                          config.aggregation)):
                raise TypeError("model, task, data_dir and aggregation must be names")
            if len(config.max_sentences) != 3:
                raise TypeError("max_sentences must give train, dev and test")
        except (TypeError, ValueError, AttributeError) as exc:
            raise RunDirectoryError(f"{self.path / 'config.json'}: damaged run settings ({exc}); restore the file, "
                                    "or run again") from None
        return config

    def __repr__(self) -> str:
        return (f"Run({str(self.path)!r}: {self.results['model']} x {self.results['task']}, "
                f"{len(self.results['seeds'])} seed(s), rankers {', '.join(self.rankers)})")

    @property
    def site(self) -> str:
        """Where the run read its neurons (docs/models.md, "Sites"): hidden, mlp, attn or an
        adapter's own."""
        return str(self.results.get("site", "hidden"))

    def check_site(self, site: str | None) -> None:
        """Refuse ``site`` (None: any) when it is not the run's: a run holds one site's neurons."""
        if site is not None and site != self.site:
            raise ValidationError(f"site {site!r}: {self.path} read the {self.site} site (its layers "
                                  f"{', '.join(self.index.layer_names[:3])}, ...); a run holds one site, so open a "
                                  f"run of --site {site} for those neurons")

    @property
    def rankers(self) -> list[str]:
        return list(self.results.get("rankers") or [self.results["per_seed"][0]["ranking"]["method"]])

    # ---- what the run found

    def _per_seed(self, ranker: str | None, seed: int) -> dict[str, Any]:
        ranker = ranker or self.rankers[0]
        if ranker not in self.rankers:
            raise ValidationError(f"ranker {ranker!r} did not run in {self.path}; it ran: {', '.join(self.rankers)}")
        per_seed = self.results["per_ranker"][ranker]["per_seed"] if "per_ranker" in self.results \
            else self.results["per_seed"]
        for entry in per_seed:
            if entry["seed"] == seed:
                return entry
        raise ValidationError(f"seed {seed} is not in {self.path}; its seeds: {self.results['seeds']}")

    def ranking(self, ranker: str | None = None, seed: int = 0) -> np.ndarray:
        """Every neuron id, most important first, by ``ranker`` (default: the run's first)."""
        return np.asarray(self._per_seed(ranker, seed)["ranking"]["order"], dtype=np.int64)

    def minimal_set(self, ranker: str | None = None, seed: int = 0, delta: float | None = None) -> np.ndarray:
        """The minimal neuron set (paper Table 2) of ``ranker`` and ``seed`` for ``delta``
        (default: the run's first)."""
        sets = self._per_seed(ranker, seed)["minimal"]["sets"]
        delta = self.results["deltas"][0] if delta is None else delta
        for entry in sets:
            if entry["delta"] == delta:
                return np.asarray(entry["neurons"], dtype=np.int64)
        raise ValidationError(f"delta {delta} is not in {self.path}; its deltas: {self.results['deltas']}")

    @functools.lru_cache(maxsize=8)
    def probe_weights(self, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The oracle probe of ``seed``: coef (labels, neurons), intercept (labels,)."""
        from neuroscope.rundir import read_arrays

        path = self.path / "steps" / f"seed-{seed}-probe.npz"
        if not path.is_file():
            raise RunDirectoryError(f"{path}: the oracle probe of seed {seed} is missing (seeds of the run: "
                                    f"{self.results['seeds']})")
        saved = read_arrays(path, ("coef", "intercept"))
        return saved["coef"], saved["intercept"]

    def export(self, to: str, out: str | Path, features: str = "all") -> list[Path]:
        """The run in a format other tools read (:mod:`neuroscope.export`; ``to``:
        safetensors, parquet or neuronpedia, whose ``features`` are all neurons or the top
        set) into the new or empty directory ``out``; the files written."""
        from neuroscope.export import export_run

        return export_run(self, to, out, features=features)

    def label_id(self, label: str) -> int:
        if label not in self.labels:
            close = [lab for lab in self.labels if lab.lower() == str(label).lower()]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValidationError(f"unknown label {label!r}{hint}; the labels of {self.results['task']} in this run: "
                                  f"{', '.join(self.labels)}")
        return self.labels.index(label)

    @functools.lru_cache(maxsize=1)
    def train_label_ids(self) -> np.ndarray:
        """The class id of every train token (into :attr:`labels`; -1 for none)."""
        from neuroscope.store import labels_to_ids

        return labels_to_ids(self.task().train.labels(), self.labels)

    @functools.lru_cache(maxsize=1)
    def class_means(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(tokens per label, mean activation per label and neuron (labels, neurons), mean
        activation per neuron) on train: one pass over the run's store."""
        from neuroscope.rankers import RankerInputs

        inputs = RankerInputs(self.activations("train"), self.train_label_ids(), self.labels, self.index, 0, None, {})
        counts, means = inputs.class_means()
        return counts, means, inputs.overall_mean()

    @functools.lru_cache(maxsize=2)
    def extremes(self, k: int = 20, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """For every neuron the rows of ``split`` on which it is highest and lowest: two
        (neurons, ``k``) arrays of row ids, most extreme first, ties by row (the order of
        :meth:`Neuron.top_words`). One pass over the store, ``k`` rows per neuron kept."""
        return extreme_rows(self.activations(split), k)

    def precision_at(self, label: str, k: int = 20, seed: int = 0) -> np.ndarray:
        """Per neuron, the share of its ``k`` top words (train) that carry ``label``: its
        highest tokens where the oracle probe's weight for the label is >= 0, else its lowest."""
        column = self.label_id(label)
        coef, _ = self.probe_weights(seed)
        top, bottom = self.extremes(k)
        rows = np.where((coef[column] < 0)[:, None], bottom, top)
        return (self.train_label_ids()[rows] == column).mean(axis=1)

    def top_neurons(self, label: str | None = None, k: int = 10, ranker: str | None = None, seed: int = 0,
                    by: str = "contribution", pool: int = 50) -> Records:
        """The ``k`` top neurons of the run's ranking (``label`` None), or of one label.

        For a label, ``by`` "contribution" (default) orders neurons by how much they raise
        the label's score on the label's own tokens beyond an average token: the oracle
        probe's weight w times (mean activation on the label - mean activation overall).
        A neuron with a large weight but the same activation on every token scores low;
        a neuron that fires on the label and is weighted for it scores high. ``by``
        "weight" orders by |w| alone (the per-label view of the paper's Figures 2 and 4).
        ``by`` "precision" takes the ``pool`` neurons of largest contribution and orders
        them by :meth:`precision_at` (20 words; ties by contribution): the neurons the
        probe relies on whose extremes are most often the label's tokens, the ones worth
        looking at; ``score`` is then that precision. Each neuron carries its rank under
        ``ranker`` (default: the run's first)."""
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ValidationError(f"k: expected a number of neurons >= 1, got {k!r}")
        if by not in ("contribution", "weight", "precision"):
            raise ValidationError(f"by={by!r}: expected contribution, weight or precision")
        if not isinstance(pool, (int, np.integer)) or pool < 1:
            raise ValidationError(f"pool: expected a number of neurons >= 1, got {pool!r}")
        coef, _ = self.probe_weights(seed)
        order = self.ranking(ranker, seed)
        rank = np.empty_like(order)
        rank[order] = np.arange(1, len(order) + 1)
        scores: np.ndarray | None = None
        if label is None:
            chosen = order[:k]
            column = None
        else:
            column = self.label_id(label)
            if by == "weight":
                scores = np.abs(coef[column]).astype(np.float64)
            else:
                _, means, overall = self.class_means()
                scores = coef[column] * (means[column] - overall)
            chosen = np.argsort(-scores, kind="stable")[:k]
            if by == "precision":
                candidates = np.argsort(-scores, kind="stable")[:max(pool, k)]
                precision = self.precision_at(label, seed=seed)
                chosen = candidates[np.lexsort((-scores[candidates], -precision[candidates]))][:k]
                scores = precision
        out = Records()
        for j in chosen:
            layer, unit = self.index.locate(int(j))
            out.append(TopNeuron(int(j), layer, self.index.layer_names[layer], unit, int(rank[j]),
                                 None if column is None else float(coef[column, j]),
                                 {lab: float(coef[c, j]) for c, lab in enumerate(self.labels)}, label,
                                 None if scores is None else float(scores[j])))
        return out

    def neuron(self, layer: int | str | TopNeuron, unit: int | None = None, label: str | None = None,
               site: str | None = None) -> "Neuron":
        """Neuron ``unit`` of ``layer`` (an index, 0 the embedding layer at the hidden site,
        or a layer name such as ``"mlp3"``), or the neuron of a :class:`TopNeuron`. With a
        ``label`` (a top neuron brings its own), :meth:`Neuron.top_words` looks at the side
        of its activations the probe uses for that label: the highest where its weight is
        positive, the lowest where negative. ``site``, when given, must be the run's
        (:attr:`site`)."""
        self.check_site(site)
        if isinstance(layer, TopNeuron):
            return Neuron(self, layer.neuron, label or layer.label)
        if unit is None:
            raise ValidationError("neuron(layer, unit): the unit is missing")
        if label is not None:
            self.label_id(label)
        return Neuron(self, self.neuron_id(layer, unit), label)

    def neuron_id(self, layer: int | str, unit: int) -> int:
        names = self.index.layer_names
        if isinstance(layer, str) and not layer.lstrip("-").isdigit():
            if layer not in names:
                raise ValidationError(f"unknown layer {layer!r}; layers: {', '.join(names)}")
            layer = names.index(layer)
        layer, unit = index_argument("layer", layer), index_argument("unit", unit)
        if not 0 <= layer < len(names):
            raise ValidationError(f"layer {layer} is out of range: the model has layers 0 .. {len(names) - 1} "
                                  f"({names[0]} .. {names[-1]})")
        if not 0 <= unit < self.index.hidden_size:
            raise ValidationError(f"unit {unit} is out of range: layers have units 0 .. {self.index.hidden_size - 1}")
        local = int(self.index.local([layer * self.index.hidden_size + unit])[0])
        if local < 0:
            raise ValidationError(f"neuron {names[layer]}:{unit} was screened out of this run (it kept "
                                  f"{self.index.n_neurons:,} of the model's {self.index.full().n_neurons:,} "
                                  "neurons; results.json, screen)")
        return local

    # ---- the data behind the neurons

    @functools.lru_cache(maxsize=1)
    def task(self) -> TaskData:
        """The run's task data, read again through its reader (same data directory and slice)."""
        from neuroscope.registry import Registry
        from neuroscope.loading import load_task

        data_dir = Path(self.settings.data_dir)
        task = self._task if self._task is not None else \
            load_task(Registry(), self.settings.task, data_dir).head(*self.settings.max_sentences)
        for split in SPLITS:
            expected = self.results["data"][split]["sha256"]
            if task.splits[split].checksum() != expected:
                raise RunDirectoryError(f"the {split} split under {data_dir} is not the one this run used (its text "
                                        "checksum differs); neuron pages need the run's own corpus")
        return task

    @functools.lru_cache(maxsize=3)
    def activations(self, split: str = "train"):  # type: ignore[no-untyped-def]
        """The run's activation store entry of ``split`` (an out-of-core ActivationSet)."""
        from neuroscope.store import ActivationSet

        if split not in SPLITS:
            raise ValidationError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
        handles = self.manifest.get("activations", {})
        entry = handles.get(split) if isinstance(handles, dict) else None
        if entry is None:
            raise RunDirectoryError(f"{self.path}: manifest.json names no activation store for {split}")
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or not entry["path"]:
            raise RunDirectoryError(f"{self.path / 'manifest.json'}: damaged (activations.{split} has no store path); "
                                    "run the same command again with --resume to rewrite it")
        from neuroscope.store import IN_MEMORY

        if entry["path"].startswith("memory:"):  # --keep memory: only the process that ran it holds them
            if entry.get("key") not in IN_MEMORY:
                raise StoreError(f"{self.path}: the run kept its {split} activations in memory (--keep memory), so "
                                 "nothing is left to read them from; run it again with --keep disk for neuron "
                                 "pages, neurons and show")
            return self._checked(IN_MEMORY[entry["key"]], entry, split, entry["path"])
        path = Path(entry["path"])
        if not (path / "manifest.json").is_file():
            raise StoreError(f"{self.path}: its {split} activations ({path}) are no longer in the store (removed by "
                             "`neuroscope cache remove/prune`, or another --cache-dir); run the same command "
                             "again with --resume to extract them")
        return self._checked(ActivationSet(path), entry, split, path)

    def _checked(self, X: Any, entry: dict[str, Any], split: str, path: Any) -> Any:
        """``X`` when it is the entry the run's manifest names and has the run's shape."""
        expected = (self.results["data"][split]["tokens"], self.results["neurons"])
        if X.manifest.get("key") != entry.get("key") or tuple(X.shape) != expected:
            raise RunDirectoryError(f"{self.path / 'manifest.json'}: its {split} activations ({path}) are not this "
                                    f"run's: the entry {X.manifest.get('key')} holds {X.shape[0]} rows x {X.shape[1]} "
                                    f"neurons, the run {expected[0]} x {expected[1]} (key {entry.get('key')}); run "
                                    "the same command again with --resume to rewrite it")
        return X

    def token(self, split: str, row: int) -> tuple[int, int, Any]:
        """Where row ``row`` of ``split``'s activations is in the corpus: (sentence index,
        word position, the Sentence), from the store's sentence offsets."""
        X = self.activations(split)
        row = index_argument("row", row)
        if not 0 <= row < X.n_tokens:
            raise ValidationError(f"row {row} is out of range: {split} has rows 0 .. {X.n_tokens - 1}")
        offsets = X.offsets
        s = int(np.searchsorted(offsets, row, side="right") - 1)
        return s, int(row - offsets[s]), self.task().splits[split].sentences[s]

    def column(self, neuron: int, split: str = "train") -> np.ndarray:
        """One neuron's activation on every token of ``split`` (read in row chunks)."""
        X = self.activations(split)
        neuron = index_argument("neuron", neuron)
        if not 0 <= neuron < X.n_neurons:
            raise ValidationError(f"neuron {neuron} is out of range: the run has neurons 0 .. {X.n_neurons - 1}")
        return np.concatenate([block[:, 0] for _, block in X.chunks(np.array([neuron]))])

    @functools.lru_cache(maxsize=2)
    def model(self, device: str = "cpu") -> Any:
        """The run's model adapter (its model, aggregation, layers, dtype and site) on
        ``device``, loaded once per device; checked to have the run's neurons."""
        from neuroscope.registry import Registry
        from neuroscope.loading import load_model

        adapter = load_model(Registry(), self.settings.model, device, self.settings.aggregation, 1,
                             self.settings.layers, self.settings.dtype, self.settings.site)
        if adapter.neuron_index != self.index.full():  # a screened run: its neurons are some of the model's
            raise RunDirectoryError(f"model {self.settings.model!r} now has {adapter.neuron_index.n_neurons} "
                                    f"neurons, the run's network had {self.index.full().n_neurons}")
        return adapter

    def dashboards(self, neurons: Iterable[Any], split: str = "train", examples: int = 5,
                   per_quantile: int = 1) -> list[dict[str, Any]]:
        """Each neuron's dashboard (docs/results.md, "Neuron dashboards"), as plain data:
        :func:`neuroscope.dashboards.dashboard_record` over ``split`` (tags, share active,
        density, ``examples`` top and bottom words, ``per_quantile`` word per decile
        range, correlated neurons, position correlation) and, under ``output``, the tokens
        its output weights promote and suppress where the run has them (:meth:`output_tokens`;
        None elsewhere). Four passes over the split's store entry."""
        from neuroscope.dashboards import build_dashboards, dashboard_record, output_tokens_of
        from neuroscope.store import labels_to_ids

        ids = [self._as_neuron_id(n) for n in neurons]
        if not ids:
            return []
        corpus = self.task().splits[split]
        gold = [str(label) for label in corpus.labels()]
        sentences = corpus.words()
        unique = np.unique(ids)
        boards = build_dashboards(self.activations(split), labels_to_ids(gold, list(self.labels)), self.labels, sentences,
                                  neurons=unique, examples=examples, per_quantile=per_quantile)
        where = {int(j): k for k, j in enumerate(unique)}
        outputs = output_tokens_of(self, unique)
        return [{**dashboard_record(boards, where[j], sentences, gold), "name": self.index.name(j),
                 "output": outputs.get(j)} for j in ids]

    def output_tokens(self, neurons: Iterable[Any], k: int = 10, device: str = "cpu") -> dict[int, dict[str, Any]] | None:
        """Per neuron (run ids, "layer:unit" names or :class:`TopNeuron`) the tokens its
        output weights promote and suppress through the model's unembedding, with the
        histogram of that logit effect over the vocabulary (the adapter's
        ``output_tokens``; docs/results.md, "Neuron dashboards"). Runs of ``--site mlp``
        only, and only for models with an unembedding (decoder LMs); None otherwise. Loads
        the model's weights (no forward pass)."""
        if self.site != "mlp":
            return None
        ids = [self._as_neuron_id(n) for n in neurons]
        if not ids:
            return {}
        names = self.index.layer_names
        found = self.model(device).output_tokens([(names[layer], unit) for layer, unit in map(self.index.locate, ids)],
                                                 k)
        return None if found is None else dict(zip(ids, found))

    def show(self, sentence: str | Sequence[str], neurons: Iterable[Any], device: str = "cpu",
             subwords: bool = False, site: str | None = None) -> HeatMap:
        """Extract ``sentence`` (split on whitespace, or a list of words) with the run's model
        and aggregation at the run's site, and map the chosen ``neurons`` over its words (the
        values the probe saw), or with ``subwords`` over the model's sub-tokens (adapters
        that offer ``subwords()``: the transformers adapter). Neurons are
        :class:`TopNeuron` / :class:`Neuron` objects, (layer, unit) pairs, "layer:unit"
        strings (``"mlp3:17"`` by layer name) or flat ids; ``site``, when given, must be
        the run's."""
        self.check_site(site)
        words = sentence.split() if isinstance(sentence, str) else [str(w) for w in sentence]
        if not words:
            raise ValidationError("sentence: expected one or more words")
        ids = [self._as_neuron_id(n) for n in neurons]
        if not ids:
            raise ValidationError("neurons: expected one or more neurons to show")
        adapter = self.model(device)
        names = [f"{self.index.locate(j)[0]}:{self.index.locate(j)[1]}" for j in ids]
        network = self.index.network(ids)  # the model's ids of the run's neurons (the same unless screened)
        if subwords:
            if not hasattr(adapter, "subwords"):
                raise ValidationError(f"model adapter {adapter.name!r} cannot show sub-tokens (it has no subwords()); "
                                      "show words instead")
            tokens, _, layers = adapter.subwords(words)  # (layers, tokens, hidden)
            flat = layers.transpose(1, 0, 2).reshape(len(tokens), -1)
            return heat_map(tokens, names, flat[:, network].T,
                            f"{self.results['model']}, sub-tokens, neurons layer:unit")
        flat = adapter.embed_rows([words])[0]  # (words, neurons)
        return heat_map(words, names, flat[:, network].T, f"{self.results['model']}, neurons layer:unit")

    def _as_neuron_id(self, neuron: Any) -> int:
        if isinstance(neuron, (TopNeuron, Neuron)):
            return neuron.neuron
        if isinstance(neuron, str):
            match = re.fullmatch(r"\s*(\w+)\s*:\s*(\d+)\s*", neuron)
            if not match:
                raise ValidationError(f"neuron {neuron!r}: expected LAYER:UNIT, e.g. 5:412")
            return self.neuron_id(match.group(1), int(match.group(2)))
        if isinstance(neuron, (tuple, list)) and len(neuron) == 2:
            return self.neuron_id(neuron[0], int(neuron[1]))
        if isinstance(neuron, (int, np.integer)):
            if not 0 <= int(neuron) < self.index.n_neurons:
                raise ValidationError(f"neuron {neuron} is out of range: 0 .. {self.index.n_neurons - 1}")
            return int(neuron)
        raise ValidationError(f"neuron {neuron!r}: expected LAYER:UNIT, (layer, unit), a flat id or a top neuron")


class Neuron:
    """One neuron of a run: its weights, ranks and minimal-set membership, and what it fires
    on (read from the run's activation store)."""

    def __init__(self, run: Run, neuron: int, label: str | None = None):
        self.run = run
        self.neuron = int(neuron)
        self.layer, self.unit = run.index.locate(self.neuron)
        self.label = label

    def __repr__(self) -> str:
        about = f", for {self.label}" if self.label else ""
        return f"Neuron(layer {self.layer} ({self.run.index.layer_names[self.layer]}), unit {self.unit}{about})"

    @property
    def weights(self) -> dict[str, float]:
        """Its weight for every label in the oracle probe of seed 0."""
        coef, _ = self.run.probe_weights(self.run.results["seeds"][0])
        return {lab: float(coef[c, self.neuron]) for c, lab in enumerate(self.run.labels)}

    @property
    def ranks(self) -> dict[str, int]:
        """Its rank (1 = most important) under every ranker of the run, seed 0."""
        seed = self.run.results["seeds"][0]
        return {name: int(np.flatnonzero(self.run.ranking(name, seed) == self.neuron)[0]) + 1
                for name in self.run.rankers}

    @property
    def in_minimal_set(self) -> dict[str, bool]:
        """Whether it is in each ranker's minimal set (first delta, seed 0)."""
        seed = self.run.results["seeds"][0]
        return {name: bool(np.isin(self.neuron, self.run.minimal_set(name, seed))) for name in self.run.rankers}

    def activations(self, split: str = "train") -> np.ndarray:
        return self.run.column(self.neuron, split)

    def top_words(self, k: int = 20, split: str = "train", bottom: bool | None = None, glu: bool = False,
                  device: str = "cpu") -> Records:
        """The ``k`` tokens of ``split`` on which it is most (``bottom``: least) active, each
        with its label and sentence. ``bottom`` None: the lowest when the neuron was chosen
        for a label whose weight is negative, else the highest. With ``glu`` (a gated MLP
        neuron, ``--site mlp`` of Llama, Mistral, Qwen2, Gemma...), each also carries its
        gate and up projections and GLUScope's case (:meth:`glu`)."""
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ValidationError(f"k: expected a number of words >= 1, got {k!r}")
        if bottom is None:
            bottom = self.label is not None and self.weights[self.label] < 0
        values = self.activations(split)
        order = np.argsort(values if bottom else -values, kind="stable")[:k]
        out = Records()
        for row in order:
            s, position, sentence = self.run.token(split, int(row))
            out.append(WordActivation(float(values[row]), sentence.words[position], sentence.labels[position], split,
                                      s, position, sentence.words))
        return self.glu(out, device) if glu else out

    def glu(self, words: Sequence[WordActivation], device: str = "cpu") -> Records:
        """``words`` (this neuron's, e.g. its :meth:`top_words`) with the gate and up
        projections of this gated-MLP neuron at each (GLUScope, Gerstner & Schuetze 2026:
        each can be positive or negative, four cases; the neuron's value is
        act(gate) x up). Computed by running the run's model on those sentences only
        (:meth:`Run.model`), not stored for every token; a model whose MLP is not gated, or
        a run of another site, is refused in one line."""
        run = self.run
        if run.site != "mlp":
            raise ValidationError(f"gate and up projections belong to a gated MLP's neurons: {run.path} read the "
                                  f"{run.site} site; run with --site mlp")
        adapter = run.model(device)
        sentences = {(w.split, w.sentence): list(w.words) for w in words}  # each sentence once
        parts = adapter.glu_parts(list(sentences.values())) if hasattr(adapter, "glu_parts") else None
        if parts is None:
            raise ValidationError(f"model {run.settings.model!r} has no gated MLP (its feed-forward neurons are "
                                  "act(x W_in), not act(x W_gate) x (x W_up)), so its neurons have no gate and up "
                                  "projections")
        where = dict(zip(sentences, parts))
        return Records(attrs.evolve(w, gate=float(where[w.split, w.sentence][0][self.layer, w.position, self.unit]),
                                    up=float(where[w.split, w.sentence][1][self.layer, w.position, self.unit]))
                       for w in words)

    def label_stats(self, split: str = "train") -> dict[str, dict[str, float]]:
        """Per label: tokens, mean and standard deviation of its activation."""
        return label_statistics(self.activations(split), np.asarray(self.run.task().splits[split].labels()))

    def histogram(self, split: str = "train", labels: Sequence[str] | None = None, bins: int = 40):  # type: ignore[no-untyped-def]
        """A matplotlib figure: its activation distribution per label (``labels``, default the
        five with the highest mean activation, and all other tokens)."""
        from neuroscope.figures import subplots

        values = self.activations(split)
        gold = np.asarray(self.run.task().splits[split].labels())
        stats = label_statistics(values, gold)
        if labels is None:
            labels = sorted(stats, key=lambda lab: -stats[lab]["mean"])[:5]
        for lab in labels:
            if lab not in stats:
                raise ValidationError(f"unknown label {lab!r} in {split}; labels: {', '.join(sorted(stats))}")
        edges = np.histogram_bin_edges(values, bins=bins)
        fig, ax = subplots(figsize=(7, 3.5))
        rest = ~np.isin(gold, list(labels))
        ax.hist(values[rest], bins=edges, density=True, alpha=0.4, color="grey", label="other labels")
        for lab in labels:
            ax.hist(values[gold == lab], bins=edges, density=True, histtype="step", linewidth=1.5,
                    label=f"{lab} (n={stats[lab]['count']})")
        ax.set_xlabel("activation")
        ax.set_ylabel("density")
        ax.set_title(f"neuron {self.layer}:{self.unit} on {split} ({self.run.results['model']} x "
                     f"{self.run.results['task']})")
        ax.legend(fontsize="small")
        fig.tight_layout()
        return fig


def index_argument(name: str, value: Any) -> int:
    """``value`` as an index: an integer (numpy's too) or a string of digits, never a float
    (``neuron(1.7, 2.9)`` would silently name neuron 1:2) nor a bool."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise ValidationError(f"{name} {value!r}: expected an integer index")


def label_statistics(values: np.ndarray, gold: np.ndarray) -> dict[str, dict[str, float]]:
    """Per label of ``gold``: tokens, mean and standard deviation of ``values``."""
    out = {}
    for lab in sorted(set(gold.tolist())):
        v = values[gold == lab]
        out[lab] = {"count": int(len(v)), "mean": float(v.mean()), "std": float(v.std())}
    return out


def extreme_rows(X: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row ids of the ``k`` highest and ``k`` lowest values of every column of ``X`` (an
    activation store or anything with ``chunks()``, ``n_tokens`` and ``shape``), most
    extreme first, equal values by row (``np.argsort(..., kind="stable")``'s order): a
    running merge over row chunks, so memory is (neurons, 2 ``k``) whatever the number of
    rows. Per chunk a partition finds each column's ``k``-th value and only the entries up
    to it (ties included) are sorted. The ``k``-th value comes from ``torch.topk`` (about 4x
    numpy's partition down a column of a row-major block); which value is ``k``-th does not
    depend on how ties are ordered, so the rows found are those of the sort."""
    import torch

    k = min(int(k), int(X.n_tokens))
    n = int(X.shape[1])
    kept: dict[bool, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # flat (column, key, row)
    seen = 0
    for start, block in X.chunks():
        seen += len(block)
        for high in (True, False):
            keys = -block if high else block
            kth = torch.topk(torch.from_numpy(keys), min(k, len(keys)), dim=0, largest=False).values[-1].numpy()
            rows, cols = np.nonzero(keys <= kth)
            cols, values, rows = cols, keys[rows, cols], rows + start
            if high in kept:
                cols = np.concatenate([kept[high][0], cols])
                values = np.concatenate([kept[high][1], values])
                rows = np.concatenate([kept[high][2], rows])
            order = np.lexsort((rows, values, cols))
            cols, values, rows = cols[order], values[order], rows[order]
            take = (np.searchsorted(cols, np.arange(n))[:, None] + np.arange(min(k, seen))).ravel()
            kept[high] = (cols[take], values[take], rows[take])
    if not kept:
        empty = np.zeros((n, 0), dtype=np.int64)
        return empty, empty
    return kept[True][2].reshape(n, k).astype(np.int64), kept[False][2].reshape(n, k).astype(np.int64)
