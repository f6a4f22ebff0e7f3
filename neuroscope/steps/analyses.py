"""Step 7: where a seed's chosen neurons are (paper section 5): per ranker, the layers
and labels of the minimal set of the first delta and of the top ``fraction``, recorded
with the seed's ablations, curves and minimal sets as its entry of results.json."""

from __future__ import annotations

from typing import Any

import numpy as np

from neuroscope.analyses import analyse
from neuroscope.cell import CellContext
from neuroscope.minimal import MinimalScan
from neuroscope.steps.ablation import SeedResult


def task_accuracies(ranked: SeedResult, scan: MinimalScan, delta: float) -> dict[str, dict[str, float]]:
    """Acc_a (all neurons) and Acc_t (the minimal set of ``delta``) on dev and test, as the
    control task's selectivity compares them."""
    chosen = scan.for_delta(delta)
    return {"dev": {"all": ranked.ablation["dev"]["all"], "selected": chosen.dev_accuracy},
            "test": {"all": ranked.ablation["test"]["all"], "selected": chosen.test_accuracy}}


def seed_record(c: CellContext, oracle: dict[str, Any], probe: Any, ranked: SeedResult, scan: MinimalScan
                ) -> dict[str, Any]:
    """One ranker's entry of a seed in results.json (``control`` filled in by the control step)."""
    selected = np.asarray(scan.for_delta(c.config.deltas[0]).neurons, dtype=np.int64)
    minimal_json = scan.to_json()
    for entry in minimal_json["sets"]:  # one unit per quantity in results.json: percent
        entry["share"] = 100 * entry["share"]
    top = np.asarray(ranked.kept["top"])
    labels = list(c.task.labels)
    return {
        "seed": oracle["seed"],
        "train_accuracy": oracle["train_accuracy"],
        "oracle_training": oracle.get("training"),
        "ablation": ranked.ablation,
        "ranking": {"method": ranked.ranking.method, "order": ranked.ranking.order.tolist()},
        "curves": ranked.curves,
        "minimal": minimal_json,
        "control": None,
        "analyses": analyse(probe.coef_, selected, c.index, labels),
        "top_fraction_layer_distribution": analyse(probe.coef_, top, c.index, labels)["layer_distribution"],
        **({"ksparse": ranked.ksparse} if ranked.ksparse is not None else {}),
    }
