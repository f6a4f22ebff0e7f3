"""The rotation baseline (``--baseline rotation``; :mod:`neuroscope.rotation`): per seed,
the oracle probe, every ranker's ranking and Table 1's ablations (with the keep-top and
remove-top curves, and with --ksparse the k-sparse curves) recomputed on each layer's activations in a seeded random orthonormal
basis, with the cell's lambdas. A ranker that needs the live model has no rotated
counterpart (its gradients are of the neurons, not of directions) and is recorded as
not run."""

from __future__ import annotations

from typing import Any

import attrs

from neuroscope.cell import CellContext, Lambdas
from neuroscope.rankers import call_ranker, info_of
from neuroscope.rotation import rotated
from neuroscope.steps.ablation import rank_and_ablate
from neuroscope.steps.oracle import oracle_step
from neuroscope.steps.sparse import sparse_curves

NOT_ROTATED = "needs the live model: its gradients are of the model's neurons, there is no rotated counterpart"


def rotation_step(c: CellContext, lambdas: Lambdas, seed: int, reporter: Any) -> dict[str, Any]:
    """Seed ``seed``'s analysis in the random basis drawn from the seed: the rotated
    oracle's train accuracy and, per ranker, its ablations and curves (None and a reason
    for a ranker that needs the model)."""
    with reporter.task(f"rotation baseline seed {seed}: rotating", None):
        acts = {split: rotated(X, seed) for split, X in c.acts.items()}
    turned = attrs.evolve(c, acts=acts, shared={})
    record, probe = oracle_step(turned, lambdas, seed, reporter)
    out: dict[str, Any] = {"seed": seed, "train_accuracy": record["train_accuracy"], "per_ranker": {},
                           "not_rotated": {}}
    for name, (fn, options) in c.rankers.items():
        needs = info_of(fn).needs
        if "model" in needs:
            out["per_ranker"][name] = None
            out["not_rotated"][name] = NOT_ROTATED
            continue
        with reporter.task(f"rotation baseline seed {seed}: {name}", None):
            ranking = call_ranker(fn, turned.ranker_inputs(seed, probe if "probe" in needs else None), **options)
            result = rank_and_ablate(probe, ranking, record["train_accuracy"], acts, c.task, c.config.fraction,
                                     c.config.unseen_labels)
        out["per_ranker"][name] = {"ablation": result.ablation, "curves": result.curves}
        if c.config.ksparse:
            out["per_ranker"][name]["ksparse"] = sparse_curves(turned, ranking, seed, reporter)
    return out
