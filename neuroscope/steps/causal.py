"""Step 9, beyond the paper: live-model ablation (docs/protocol.md, "Causal ablation"):
every seed's and ranker's top / random / bottom ``fraction`` removed inside the model's
forward pass, all conditions in one pass over the test split; the oracle probes on the
re-extracted activations, and the model's own loss where it has one."""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from neuroscope.causal import causal_ablation, removal_sets, summarise_causal
from neuroscope.cell import CellContext
from neuroscope.model import ModelAdapter


def causal_step(c: CellContext, load_adapter: Callable[[], ModelAdapter],
                probes: Mapping[str, tuple[np.ndarray, np.ndarray]], seeds: Sequence[dict[str, dict[str, Any]]],
                reporter: Any) -> dict[str, Any]:
    """The causal ablation of ``seeds`` (each seed's per-ranker records) with ``probes``
    ("seed-N" -> the oracle's float32 coef and intercept)."""
    start = time.perf_counter()
    config = c.config
    adapter = load_adapter()
    conditions, stored = {}, {}
    for per_seed in seeds:
        first = next(iter(per_seed.values()))
        seed = first["seed"]
        stored[f"seed-{seed}"] = first["ablation"]["test"]["all"]
        for name, result in per_seed.items():
            order = np.asarray(result["ranking"]["order"], dtype=np.int64)
            for kind, neurons in removal_sets(order, c.index, config.fraction, seed).items():
                conditions[f"seed-{seed}/{name}/{kind}"] = neurons
    means = c.ranker_inputs(0).overall_mean() if config.causal_mode == "mean" else None
    sentences = c.task.test.words()
    with reporter.task(f"causal ablation ({len(conditions) + 1} conditions)", len(sentences), "sentences") as advance:
        found = causal_ablation(adapter, sentences, c.gold["test"], dict(probes), conditions, c.index,
                                config.causal_mode, config.causal_positions, means, advance=advance,
                                unseen=config.unseen_labels)
    return summarise_causal(found, config.fraction, list(config.rankers), stored,
                            round(time.perf_counter() - start, 3))
