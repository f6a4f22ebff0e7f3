"""``attribution``: attribution patching (Syed, Rager & Conmy, "Attribution Patching
Outperforms Automated Circuit Discovery", 2023; Nanda 2023; as the Transluce
neuron-circuits work scores neurons): a first-order estimate of what zeroing a neuron at
a word does to the model's own objective.

For word w and neuron j, with a_j the activation at each of w's sub-tokens and L the
model's objective (the one ``--causal`` measures: the next-token loss for decoders, the
masked-LM loss where an encoder checkpoint has its head), zeroing j at w changes L by
about ``-sum over w's sub-tokens of a_j x dL/da_j`` (a Taylor step from a to 0). One
forward and one backward pass per batch give it for every neuron and word at once
(:meth:`neuroscope.model.ModelAdapter.attribution`). Per label c the score of j is the
mean over c's train words of ``|a_j x dL/da_j|``, how much the model leans on j at the
label's words (``signed=True``: the mean of ``-a_j x dL/da_j``, the estimated rise of the
loss when j is zeroed, negative where zeroing it would help). ``aggregate`` as the contrast rankers': ``cover`` (default), ``max``,
``overall`` (the mean over every word).

The estimate is checkable against the causal step's real removal: removing a set S at
every word changes the objective by about ``-sum over S and the words of a x dL/da``
(tests/test_rankers_model.py compares it with finite differences and with the removal).

Choices: the objective is summed over each batch's sentences, not restricted to the word
(a neuron at w reaches every later position through attention; the sum is what zeroing
it there changes); the masked-LM objective masks 15 % of the sub-tokens, seeded per
batch as ``--causal`` does, and the activations are those of that masked input. The
words scored are ``sentences`` train sentences spread evenly over the split (all when
there are fewer): the backward pass costs about two forward passes, so the full split
would cost three extractions.
"""

from __future__ import annotations

import logging

import numpy as np

from neuroscope.errors import NeuroscopeError, ValidationError
from neuroscope.rankers import RankerInputs, order_by_score, ranker, with_label_scores
from neuroscope.rankers.contrast import AGGREGATES, by_labels
from neuroscope.ranking import Ranking
from neuroscope.validation import check_choice, check_number

log = logging.getLogger(__name__)


def chosen_sentences(n_sentences: int, limit: int) -> np.ndarray:
    """``limit`` sentence ids spread evenly over ``n_sentences`` (all when fewer), ascending."""
    if limit >= n_sentences:
        return np.arange(n_sentences)
    return np.unique(np.linspace(0, n_sentences - 1, limit).round().astype(np.int64))


def label_attributions(inputs: RankerInputs, sentences: int, signed: bool) -> tuple[np.ndarray, np.ndarray]:
    """(counts, sums): per label the scored words, and (labels, neurons) float64 sums of
    their attributions (absolute unless ``signed``); computed once per process and shared."""
    key = ("attribution", sentences, signed)
    if key in inputs.shared:
        return inputs.shared[key]
    corpus = inputs.sentences
    if corpus is None:
        raise ValidationError("the attribution ranker needs the train sentences (RankerInputs.sentences)")
    adapter = inputs.adapter()
    objective = adapter.attribution_objective()
    lengths = np.array([len(s) for s in corpus], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    if starts[-1] != len(inputs.labels):
        raise ValidationError(f"the attribution ranker was given {starts[-1]} train words but {len(inputs.labels)} "
                              "labels")
    ids = chosen_sentences(len(corpus), sentences)
    n_labels = len(inputs.label_names)
    sums = np.zeros((n_labels, inputs.n_neurons), dtype=np.float64)
    counts = np.zeros(n_labels, dtype=np.int64)
    step = max(1, int(getattr(adapter, "batch_size", 32)))
    log.info("attribution ranker: %s gradients over %d train sentences", objective, len(ids))
    for first in range(0, len(ids), step):
        batch = ids[first : first + step]
        effects = adapter.attribution([list(corpus[i]) for i in batch])
        for i, effect in zip(batch, effects):
            y = inputs.labels[starts[i] : starts[i + 1]]
            if effect.shape != (len(y), inputs.n_neurons):
                raise NeuroscopeError(f"adapter {adapter.name}: attribution gave shape {effect.shape} for a sentence of "
                                 f"{len(y)} words, expected ({len(y)}, {inputs.n_neurons})")
            keep = y >= 0
            values = effect[keep].astype(np.float64)
            np.add.at(sums, y[keep], -values if signed else np.abs(values))
            counts += np.bincount(y[keep], minlength=n_labels)
    inputs.shared[key] = (counts, sums)
    return counts, sums


@ranker(needs=("model",), cite="attribution patching (Syed, Rager & Conmy 2023): mean |activation x d loss / "
        "d activation| over the label's words, the model's own objective", cost="one forward and backward pass over "
        "`sentences` train sentences (about three extractions of them); no probe", sentences=2000, aggregate="cover",
        signed=False)
def attribution(inputs: RankerInputs, sentences: int = 2000, aggregate: str = "cover", signed: bool = False) -> Ranking:
    check_number("attribution sentences", sentences, low=1, integer=True)
    check_choice("attribution aggregate", aggregate, AGGREGATES)
    if not isinstance(signed, bool):
        raise ValidationError(f"attribution signed: expected true or false, got {signed!r}")
    counts, sums = label_attributions(inputs, int(sentences), signed)
    present = counts > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = sums[present] / counts[present, None]
    if aggregate == "overall":
        ranking = order_by_score(sums.sum(axis=0) / max(int(counts.sum()), 1), "attribution")
    else:
        ranking = by_labels(scores, counts[present], aggregate, "attribution")
    return with_label_scores(ranking, scores, present)
