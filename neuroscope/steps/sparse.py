"""k-sparse probing as part of a run (``--ksparse``; :mod:`neuroscope.sparse_probing`):
each ranking's curves where the ranking is made (the seed's ranking step, and the
rotation baseline's rankings in the random basis), the cell's ceiling once, in the last
unit, and their summary in results.json."""

from __future__ import annotations

from typing import Any, Sequence

from neuroscope.cell import CellContext
from neuroscope.rankers import every_label
from neuroscope.rankers.contrast import moments, one_vs_rest
from neuroscope.ranking import Ranking
from neuroscope.results import mean_std
from neuroscope.sparse_probing import SparseProber


def prober(c: CellContext, seed: int) -> SparseProber:
    """The seed's k-sparse prober over the cell's activations (its training sample read
    once and shared by the seed's rankers)."""
    key = ("ksparse", seed, id(c.acts["train"]))
    if key not in c.shared:
        c.shared[key] = SparseProber(c.acts["train"], c.gold["train"], c.acts["test"], c.gold["test"],
                                     len(c.task.labels), c.config.sparse_settings(), seed, c.config.unseen_labels)
    return c.shared[key]


def sparse_curves(c: CellContext, ranking: Ranking, seed: int, reporter: Any) -> dict[str, Any]:
    """k-sparse curves of one ranking (per label and k: test F1 and accuracy)."""
    probes = prober(c, seed)
    ks = probes.settings.sizes(ranking.n_neurons)
    with reporter.task(f"k-sparse probing {ranking.method} seed {seed}", len(ks), unit="sizes") as advance:
        return probes.curves(ranking, c.task.labels, advance)


def sparse_ceiling_step(c: CellContext, reporter: Any) -> dict[str, Any]:
    """The cell's exhaustive small-k ceiling, on the first seed's training sample, with what
    the probes were trained on."""
    seed = c.config.seeds[0]
    probes = prober(c, seed)
    counts, means, variances, present = moments(c.ranker_inputs(seed))
    scores = every_label(one_vs_rest(counts, means, variances, "mean-diff"), present)
    out = {"seed": seed, **probes.describe(c.task.labels)}
    if c.config.ksparse_ceiling:
        with reporter.task("k-sparse ceiling", None):
            out["ceiling"] = probes.ceiling(scores, c.task.labels)
    else:
        out["ceiling"] = None
    return out


def summarise_sparse(per_ranker: dict[str, Any], ceiling: dict[str, Any], rotated: bool) -> dict[str, Any]:
    """results.json's ``ksparse``: per ranker the mean over labels of test F1 and accuracy
    at each k (mean and std over seeds), the same in the random basis where the run has
    the rotation baseline, and the ceiling."""
    out: dict[str, Any] = {key: ceiling[key] for key in ("train_rows", "l2", "min_positives", "labels", "left_out")}
    out["ceiling"] = ceiling["ceiling"]
    out["per_ranker"] = {}
    for name, record in per_ranker.items():
        seeds = [s["ksparse"] for s in record["per_seed"]]
        out["per_ranker"][name] = {"ks": seeds[0]["ks"], "label_orders": seeds[0]["label_orders"],
                                   **_over_seeds(seeds)}
        turned = [(s.get("rotation") or {}).get("ksparse") for s in record["per_seed"]]
        if rotated and all(t is not None for t in turned):
            out["per_ranker"][name]["rotated"] = _over_seeds(turned)
    return out


def _over_seeds(seeds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {key: [mean_std([s[key][i] for s in seeds]) for i in range(len(seeds[0][key]))]
            for key in ("mean_f1", "mean_accuracy")}
