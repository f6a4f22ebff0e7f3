"""Step 6: the minimal neuron set (paper section 4.2, Tables 2 and 3): probes retrained
on growing top shares of a ranking until one is within delta of the oracle on dev."""

from __future__ import annotations

from typing import Any

from neuroscope.cell import CellContext, Lambdas
from neuroscope.minimal import MinimalScan, minimal_neuron_scan
from neuroscope.steps.ablation import SeedResult


def minimal_step(c: CellContext, lambdas: Lambdas, seed: int, name: str, ranked: SeedResult, reporter: Any,
                 probe: Any = None) -> MinimalScan:
    """The scan of ranker ``name``'s ranking for ``seed``, every delta's set chosen from it;
    with ``--scan-start oracle`` its probes start from ``probe``'s (the seed's oracle) weights."""
    config = c.config
    params = c.params(lambdas)
    oracle = (probe.coef_, probe.intercept_) if config.scan_start == "oracle" else None
    with reporter.task(f"minimal set {name} seed {seed}", None) as advance:
        return minimal_neuron_scan(
            c.acts["train"], c.gold["train"], c.acts["dev"], c.gold["dev"], c.acts["test"], c.gold["test"],
            len(c.task.labels), ranked.ranking, (params["l1"], params["l2"]), config.settings(seed),
            ranked.ablation["dev"]["all"], config.deltas, config.scan_step, config.scan_block, config.unseen_labels,
            advance, c.trainer, config.scan_start, oracle, config.scan_epochs)
