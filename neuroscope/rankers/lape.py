"""``lape``: language activation probability entropy (Tang et al., "Language-Specific
Neurons: The Key to Multilingual Capabilities in Large Language Models", ACL 2024,
section 2), with the task's labels in place of languages.

Per neuron j and label c, ``p_c(j)`` is the share of c's train tokens on which j is
active (value > 0). Normalised over the labels, ``q_c = p_c / sum_c p_c``, its entropy
``LAPE(j) = -sum_c q_c log q_c`` is low when j fires for few labels: Tang et al. take the
neurons of lowest entropy as language-specific, after dropping the neurons whose
activation probability is low for every language (below the 95th percentile of all the
``p_c(j)``), and assign a kept neuron to the languages whose ``p_c`` passes that
threshold too.

Here, for a ranking of every neuron:

* a label's score of neuron j is ``q_c(j) x (log L - LAPE(j))``: how far j's
  distribution over the L labels is from uniform (in nats), times c's share of it, so a
  neuron active only on c scores ``log L`` for c and 0 for the others, and a neuron
  active alike on every label scores 0;
* ``aggregate`` as the contrast rankers (:mod:`neuroscope.rankers.contrast`): ``cover``
  (default: labels take turns, most frequent first), ``max`` (a neuron's best label), or
  ``overall`` (Tang et al.'s own order: lowest entropy first);
* ``keep``: the percentile of all ``p_c(j)`` that a neuron must pass for at least one
  label to be ranked by its score (Tang et al.'s filter, 95 by default; 0 keeps every
  neuron). The neurons filtered out follow the kept ones, in the same order; a neuron
  never active on a labelled token comes last.

"Active" is value > 0, as Tang et al. use for the SiLU/GELU outputs of an MLP (``--site
mlp``). Hidden states (``--site hidden``) are positive on about half the tokens whatever
they encode, so there the probability of being active says less; docs/ranking.md
compares. Labels without train tokens take no part; a label with few tokens has a noisy
``p_c``, and the entropy weighs every label alike, however rare.
"""

from __future__ import annotations

import numpy as np

from neuroscope.rankers import RankerInputs, ranker, ranking_from_order, with_label_scores
from neuroscope.rankers.contrast import AGGREGATES, covering_order
from neuroscope.ranking import Ranking
from neuroscope.validation import check_choice, check_number


def activation_probabilities(inputs: RankerInputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(counts, p, present): token counts of the labels with train tokens, (labels, neurons)
    the share of each label's tokens on which each neuron is > 0, and the mask of those
    labels among all."""
    counts, _ = inputs.class_means()
    active = inputs.class_active()
    present = counts > 0
    return counts[present], active[present] / counts[present, None], present


def entropies(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(q, entropy): ``p`` normalised over the labels per neuron, and its entropy in nats
    (NaN for a neuron with p = 0 for every label)."""
    total = p.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = p / total
        terms = np.where(q > 0, -q * np.log(np.where(q > 0, q, 1.0)), 0.0)
    entropy = np.where(total > 0, terms.sum(axis=0), np.nan)
    return q, entropy


@ranker(needs=("activations",), cite="Tang et al., ACL 2024, Language-Specific Neurons (LAPE: entropy of the "
        "activation probabilities over languages), labels for languages", cost="one pass over the train "
        "activations (active counts per label), or the streamed statistics; no probe", aggregate="cover", keep=95.0)
def lape(inputs: RankerInputs, aggregate: str = "cover", keep: float = 95.0) -> Ranking:
    check_choice("lape aggregate", aggregate, AGGREGATES)
    check_number("lape keep (a percentile)", keep, low=0, high=100)
    counts, p, present = activation_probabilities(inputs)
    q, entropy = entropies(p)
    threshold = np.percentile(p, keep) if keep > 0 else -np.inf
    kept = (p >= threshold).any(axis=0) if keep > 0 else np.ones(p.shape[1], dtype=bool)
    never = np.isnan(entropy)
    # three tiers: kept, filtered out, never active; inside a tier the method's order
    tier = np.where(never, 2, np.where(kept, 0, 1))
    ids = np.arange(p.shape[1])
    scores = np.nan_to_num(q * (np.log(len(counts)) - entropy[None, :]), nan=-np.inf)
    # a label's own order keeps the tiers: scores lie in [0, log L], filtered neurons below every kept one
    own = np.where(tier == 0, scores, np.where(tier == 1, scores - np.log(len(counts)) - 1, np.nan))
    if aggregate == "overall":
        ranking = ranking_from_order(np.lexsort((ids, np.nan_to_num(entropy, nan=0.0), tier)), "lape")
    elif aggregate == "max":
        ranking = ranking_from_order(np.lexsort((ids, -scores.max(axis=0), tier)), "lape")
    else:
        parts = [ids[tier == t][covering_order(scores[:, tier == t], counts)] for t in range(3) if (tier == t).any()]
        ranking = ranking_from_order(np.concatenate(parts), "lape")
    return with_label_scores(ranking, own, present)
