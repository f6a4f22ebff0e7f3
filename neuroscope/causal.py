"""Live-model ablation: does the model itself use the neurons the probe ranks highest?

The paper ablates neurons in the probe's input only (section 4.1, Table 1: zero the
columns of the other neurons and evaluate the trained probe) and names the effect of an
ablation on the layers above it as open (Discussion). This step removes neurons inside
the model's forward pass, so the removal propagates through every later layer, and
measures on the test split (docs/protocol.md, "Causal ablation"):

* the oracle probe's accuracy on activations re-extracted from the ablated model, beside
  its accuracy when the same neurons are removed from the unablated activations only
  (the paper's kind of ablation: the difference is what propagation adds);
* the model's own objective where the checkpoint has one (masked-LM loss for an encoder
  with its MLM head, next-token loss for a decoder), else a one-line reason.

Conditions (per seed and ranker), each removing M % of the neurons (``--fraction``):
``top`` (the ranking's first M %), ``random`` (as many neurons in every layer as ``top``
has there, drawn with the seed: a control matched layer by layer) and ``bottom`` (the
last M %); plus one ``none`` condition (nothing removed) that must reproduce the
stored activations' accuracy, a check that re-extraction is faithful.

``mode`` "zero" sets a removed neuron to 0; "mean" to its mean over the train tokens.
``positions`` "words": at every sub-token of every word (special tokens keep their
values); "all": at every position. All conditions run in one forward pass per batch
(the batch repeated once per condition, condition-major), so the step costs about
``conditions / 3`` passes over the test split, not conditions x seeds of them.

An adapter provides the intervention as :meth:`neuroscope.model.ModelAdapter.intervene`
(docs/plugins.md).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Sequence

import attrs
import numpy as np
import torch

from neuroscope.choices import CAUSAL_MODES, CAUSAL_POSITIONS
from neuroscope.errors import NeuroscopeError
from neuroscope.results import mean_std
from neuroscope.types import NeuronIndex

log = logging.getLogger(__name__)

MODES, POSITIONS = CAUSAL_MODES, CAUSAL_POSITIONS
CONDITIONS = ("top", "random", "bottom")


class InterventionUnsupported(NeuroscopeError):
    """The model adapter cannot remove neurons inside its forward pass."""


@attrs.frozen
class Ablation:
    """Which neurons each of ``n_conditions`` conditions removes, and how.

    ``masks`` (conditions, neurons) bool: True where the neuron is removed; ``values``
    (neurons,) float32 replacement values ("mean" mode), None to zero them."""

    masks: np.ndarray
    values: np.ndarray | None = None
    positions: str = "words"
    objective: bool = True

    def __attrs_post_init__(self) -> None:
        if self.masks.ndim != 2 or self.masks.dtype != bool:
            raise ValueError("Ablation.masks: expected a (conditions, neurons) bool array")
        if self.positions not in POSITIONS:
            raise ValueError(f"Ablation.positions: expected one of {', '.join(POSITIONS)}, got {self.positions!r}")

    @property
    def n_conditions(self) -> int:
        return int(self.masks.shape[0])

    def layer(self, index: NeuronIndex, layer: int, device: torch.device, dtype: torch.dtype
              ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(conditions, hidden) bool mask and (hidden,) replacement values for one layer;
        None when no condition removes anything there."""
        cols = slice(layer * index.hidden_size, (layer + 1) * index.hidden_size)
        mask = self.masks[:, cols]
        if not mask.any():
            return None
        values = np.zeros(index.hidden_size, np.float32) if self.values is None else self.values[cols]
        return (torch.from_numpy(np.ascontiguousarray(mask)).to(device),
                torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).to(device=device, dtype=dtype))


@attrs.define
class InterventionRecord:
    """What an intervention measured besides activations: the model's own objective,
    summed over the tokens it scored, per condition."""

    n_conditions: int
    objective: str | None = None
    unavailable: str | None = None
    loss: np.ndarray = attrs.field(default=None)
    tokens: int = 0

    def __attrs_post_init__(self) -> None:
        if self.loss is None:
            self.loss = np.zeros(self.n_conditions, dtype=np.float64)

    def add(self, per_condition: torch.Tensor, tokens: int) -> None:
        self.loss += per_condition.detach().double().cpu().numpy()
        self.tokens += int(tokens)


def edit_hidden(hidden: torch.Tensor, layer_edit: tuple[torch.Tensor, torch.Tensor], positions: torch.Tensor,
                seq_first: bool = False) -> torch.Tensor:
    """``hidden`` with the removed units replaced at the chosen positions.

    ``hidden`` (conditions x batch, tokens, hidden) (``seq_first``: tokens first), rows
    condition-major; ``layer_edit`` from :meth:`Ablation.layer`; ``positions``
    (conditions x batch, tokens) bool."""
    mask, values = layer_edit
    if seq_first:
        hidden = hidden.transpose(0, 1)
    rows = hidden.shape[0]
    per_row = mask.repeat_interleave(rows // mask.shape[0], dim=0)  # (rows, hidden)
    where = positions[:, :, None] & per_row[:, None, :]
    edited = torch.where(where, values.to(hidden.dtype), hidden)
    return edited.transpose(0, 1) if seq_first else edited


def removal_sets(order: np.ndarray, index: NeuronIndex, fraction: float, seed: int) -> dict[str, np.ndarray]:
    """The neurons each condition removes: the ranking's top and bottom ``fraction``, and a
    random set with as many neurons in every layer as the top set (seeded)."""
    n = len(order)
    k = max(1, int(round(fraction * n)))
    top = np.sort(order[:k])
    rng = np.random.default_rng([seed, 15])
    layers = index.layer_of(top)
    every = index.layer_of(np.arange(n))  # a screened index: only the layer's screened neurons are drawn
    random = []
    for layer in range(index.n_layers):
        count = int((layers == layer).sum())
        if count:
            candidates = np.flatnonzero(every == layer)
            random.append(candidates[np.sort(rng.choice(len(candidates), size=count, replace=False))])
    return {"top": top, "random": np.sort(np.concatenate(random)), "bottom": np.sort(order[n - k:])}


def as_probe_input(vectors: np.ndarray) -> np.ndarray:
    """Re-extracted activations as the probe saw them: rounded to the store's float16."""
    return vectors.astype(np.float16).astype(np.float32)


def causal_ablation(adapter: Any, sentences: Sequence[Sequence[str]], gold: np.ndarray,
                    probes: Mapping[str, tuple[np.ndarray, np.ndarray]], conditions: Mapping[str, np.ndarray],
                    index: NeuronIndex, mode: str = "zero", positions: str = "words",
                    train_means: np.ndarray | None = None, batch_size: int | None = None,
                    advance: Callable[[int], None] | None = None, unseen: str = "error") -> dict[str, Any]:
    """Run every condition through the model over ``sentences`` and score it.

    ``probes``: name -> (coef, intercept) of the oracle probe each condition is scored
    with, named by the condition's prefix up to "/" (e.g. "seed-0"); ``conditions``: name
    ("seed-0/weight-mass/top") -> neuron ids removed. A condition "none" (nothing removed)
    is added and scored with every probe. Returns per condition: the in-model accuracy
    (%; a gold -1, a label unseen in train, counts wrong, or is left out with ``unseen``
    "exclude", as in the run's other accuracies), the in-probe accuracy (the same neurons
    zeroed or mean-replaced in the unablated activations, which reproduce the stored
    ones), the objective's mean loss per token."""
    if mode not in MODES:
        raise NeuroscopeError(f"causal mode: expected one of {', '.join(MODES)}, got {mode!r}")
    if mode == "mean" and train_means is None:
        raise NeuroscopeError("causal mode mean needs the neurons' train means")
    names = ["none", *conditions]
    masks = np.zeros((len(names), index.n_neurons), dtype=bool)
    for k, name in enumerate(names[1:], start=1):
        masks[k, conditions[name]] = True
    values = None if mode == "zero" else np.asarray(train_means, dtype=np.float32)
    ablation = Ablation(masks, values, positions)
    scored = {name: (name.split("/")[0] if name != "none" else None) for name in names}
    correct = {(name, p): 0 for name in names for p in probes if scored[name] in (None, p)}
    correct_probe = dict.fromkeys(correct, 0)
    n_tokens = scored_rows = 0
    step = int(batch_size or getattr(adapter, "batch_size", 32))
    with adapter.intervene(ablation) as record:
        for start in range(0, len(sentences), step):
            batch = [list(s) for s in sentences[start:start + step]]
            out = adapter.embed_rows(batch)  # condition-major: len(names) x len(batch), (words, neurons) each
            if len(out) != len(names) * len(batch):
                raise NeuroscopeError(f"adapter {adapter.name}: intervene() gave {len(out)} arrays for "
                                      f"{len(names)} conditions x {len(batch)} sentences")
            rows = sum(len(s) for s in batch)
            labels = gold[n_tokens:n_tokens + rows]
            scored_rows += int((labels >= 0).sum()) if unseen == "exclude" else rows
            per = [as_probe_input(np.concatenate(out[k * len(batch):(k + 1) * len(batch)])) for k in range(len(names))]
            for (name, p), _ in list(correct.items()):
                coef, intercept = probes[p]
                k = names.index(name)
                correct[(name, p)] += int(((per[k] @ coef.T + intercept).argmax(1) == labels).sum())
                kept = per[0].copy()
                kept[:, masks[k]] = 0.0 if values is None else values[masks[k]]
                correct_probe[(name, p)] += int(((kept @ coef.T + intercept).argmax(1) == labels).sum())
            n_tokens += rows
            if advance is not None:
                advance(len(batch))
    if n_tokens != len(gold):
        raise NeuroscopeError(f"causal ablation scored {n_tokens} tokens, the split has {len(gold)}")
    if scored_rows == 0:
        raise NeuroscopeError("causal ablation: no test token has a label seen in train (rule exclude)")
    out: dict[str, Any] = {"conditions": {}, "objective": record.objective, "objective_unavailable": record.unavailable,
                           "objective_tokens": record.tokens,
                           "mode": mode, "positions": positions, "tokens": n_tokens}
    for k, name in enumerate(names):
        entry: dict[str, Any] = {"removed": int(masks[k].sum()),
                                 "loss": float(record.loss[k] / record.tokens) if record.tokens else None}
        entry["in_model"] = {p: 100.0 * correct[(name, p)] / scored_rows for p in probes if (name, p) in correct}
        entry["in_probe"] = {p: 100.0 * correct_probe[(name, p)] / scored_rows for p in probes
                             if (name, p) in correct}
        out["conditions"][name] = entry
    return out


def summarise_causal(found: Mapping[str, Any], fraction: float, rankers: Sequence[str],
                     stored: Mapping[str, float], seconds: float) -> dict[str, Any]:
    """results.json's ``causal`` from :func:`causal_ablation`'s per-condition numbers:
    per ranker and condition the mean and std over seeds. ``stored``: each seed's test
    accuracy on the stored activations, which the unablated re-extraction should match
    (a difference beyond rounding is logged)."""
    conditions = found["conditions"]
    none = conditions["none"]
    for probe, accuracy in none["in_model"].items():
        if abs(accuracy - stored[probe]) > 0.1:
            log.warning("causal ablation: %s's accuracy on re-extracted, unablated test activations is %.2f, on the "
                        "stored ones %.2f; the re-extraction does not reproduce the store", probe, accuracy,
                        stored[probe])
    out: dict[str, Any] = {key: found[key] for key in ("mode", "positions", "objective", "objective_unavailable",
                                                        "tokens", "objective_tokens")}
    out.update({"fraction": fraction, "seconds": seconds,
                "none": {"in_model": mean_std(list(none["in_model"].values())), "loss": none["loss"]},
                "per_ranker": {}})
    seeds = list(stored)
    for ranker in rankers:
        out["per_ranker"][ranker] = {}
        for kind in CONDITIONS:
            entries = [conditions[f"{seed}/{ranker}/{kind}"] for seed in seeds]
            out["per_ranker"][ranker][kind] = {
                "removed": entries[0]["removed"],
                "in_probe": mean_std([e["in_probe"][seed] for e, seed in zip(entries, seeds)]),
                "in_model": mean_std([e["in_model"][seed] for e, seed in zip(entries, seeds)]),
                "loss": None if entries[0]["loss"] is None else mean_std([e["loss"] for e in entries]),
            }
    return out
