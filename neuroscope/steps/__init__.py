"""The steps of the paper's protocol, one module each, as plain functions over typed
inputs (a cell's :class:`~neuroscope.cell.CellContext`, the seed, the chosen lambdas)
returning JSON-serialisable results, so a run can resume from any finished step:

1. :mod:`~neuroscope.steps.data` - the task's splits, checksums, label statistics and
   the majority baseline;
2. :mod:`~neuroscope.steps.extraction` - word-level activations of every layer (section 2);
3. :mod:`~neuroscope.steps.search` - the (l1, l2) grid scored by S (section 2, "Search");
4. :mod:`~neuroscope.steps.oracle` - the oracle probe on all neurons (section 2);
5. :mod:`~neuroscope.steps.ablation` - ranking, and top / random / bottom ablation
   (section 4.1, Table 1);
6. :mod:`~neuroscope.steps.minimal` - the minimal neuron set (section 4.2, Tables 2, 3);
7. :mod:`~neuroscope.steps.analyses` - layers and labels of the chosen neurons (section 5);
8. :mod:`~neuroscope.steps.control` - control task and selectivity (section 2,
   "Control Tasks");
9. :mod:`~neuroscope.steps.causal` - live-model ablation (beyond the paper; protocol.md);
10. :mod:`~neuroscope.steps.summary` - mean and std over seeds, and results.json.

The numerical work lives in the modules named after the paper's methods
(:mod:`neuroscope.probe`, :mod:`neuroscope.search`, :mod:`neuroscope.ranking`, ...);
the orchestrator (:mod:`neuroscope.orchestrator`) calls the steps in order and stores
what they return.
"""
