"""Step 5: ranking and ablation (paper section 4.1, Table 1): each ranker orders the
neurons; the oracle probe is then evaluated on dev and test keeping only the top, a
random and the bottom ``fraction`` of them (the others zeroed), and along the keep-top /
remove-top curves; with --ksparse, the ranking's k-sparse curves."""

from __future__ import annotations

from typing import Any, Callable

import attrs
import numpy as np

from neuroscope.ablation import ablation_sets, evaluate_ablations
from neuroscope.cell import CellContext
from neuroscope.probe import ElasticNetProbe
from neuroscope.rankers import call_ranker, info_of
from neuroscope.ranking import Ranking
from neuroscope.steps.sparse import sparse_curves
from neuroscope.store import ActivationSet, labels_to_ids
from neuroscope.types import TaskData

#: shares of the network (percent) of the keep-top and remove-top curves
CURVE_SHARES = (1, 2, 5, 10, 20, 30, 50, 75, 100)


@attrs.frozen
class SeedResult:
    """One ranker's result on one seed's oracle probe: its ranking and the paper's
    ablations (Table 1), plus the keep-top / remove-top curves."""

    seed: int
    train_accuracy: float
    ablation: dict[str, dict[str, float]]
    ranking: Ranking
    kept: dict[str, list[int]]
    curves: dict[str, Any] = attrs.field(factory=dict)
    #: with --ksparse: the ranking's k-sparse curves (:mod:`neuroscope.steps.sparse`)
    ksparse: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"seed": self.seed, "train_accuracy": self.train_accuracy, "ablation": self.ablation,
                "ranking": self.ranking.to_json(), "kept": self.kept, "curves": self.curves,
                **({"ksparse": self.ksparse} if self.ksparse is not None else {})}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SeedResult":
        return cls(int(data["seed"]), float(data["train_accuracy"]), data["ablation"],
                   Ranking.from_json(data["ranking"]), data["kept"], data.get("curves", {}), data.get("ksparse"))



def rank_and_ablate(
    probe: ElasticNetProbe,
    ranking: Ranking,
    train_accuracy: float,
    acts: dict[str, ActivationSet],
    task: TaskData,
    fraction: float,
    unseen: str,
) -> SeedResult:
    """Ablate the top / random / bottom ``fraction`` of ``ranking`` on dev and test with the
    oracle probe (paper section 4.1, Table 1), and trace test accuracy keeping only the
    top k % and removing the top k % (k in :data:`CURVE_SHARES`)."""
    sets = ablation_sets(ranking, fraction, probe.seed)
    results: dict[str, dict[str, float]] = {}
    for split in ("dev", "test"):
        gold = labels_to_ids(task.splits[split].labels(), probe.classes_)
        results[split] = evaluate_ablations(probe, {"all": None, **sets}, acts[split], gold, unseen)
    n = ranking.n_neurons
    curve_sets: dict[str, np.ndarray | None] = {}
    for share in CURVE_SHARES:
        k = max(1, int(round(share / 100 * n)))
        curve_sets[f"keep-{share}"] = None if k == n else np.sort(ranking.order[:k])
        if k < n:
            curve_sets[f"remove-{share}"] = np.sort(ranking.order[k:])
    gold = labels_to_ids(task.test.labels(), probe.classes_)
    curve = evaluate_ablations(probe, curve_sets, acts["test"], gold, unseen)
    curves = {"shares": list(CURVE_SHARES),
              "keep_top": [curve[f"keep-{s}"] for s in CURVE_SHARES],
              "remove_top": [curve.get(f"remove-{s}", float("nan")) for s in CURVE_SHARES]}
    curves["remove_top"] = [None if v != v else v for v in curves["remove_top"]]
    kept = {k: v.tolist() for k, v in sets.items()}
    return SeedResult(probe.seed, train_accuracy, results, ranking, kept, curves)


def ranking_step(c: CellContext, name: str, probe: Any, seed: int, train_accuracy: float, reporter: Any,
                 load_adapter: Callable[[], Any] | None = None) -> SeedResult:
    """Ranker ``name``'s ranking for ``seed`` (the oracle ``probe`` for rankers that read
    one, ``load_adapter`` for those that need the live model), and its ablations."""
    fn, options = c.rankers[name]
    needs = info_of(fn).needs
    inputs = c.ranker_inputs(seed, probe if "probe" in needs else None, load_adapter if "model" in needs else None)
    with reporter.task(f"{name} ranking seed {seed}", None):
        ranking = call_ranker(fn, inputs, **options)
    result = rank_and_ablate(probe, ranking, train_accuracy, c.acts, c.task, c.config.fraction,
                             c.config.unseen_labels)
    if c.config.ksparse:
        result = attrs.evolve(result, ksparse=sparse_curves(c, ranking, seed, reporter))
    return result
