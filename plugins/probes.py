"""Built-in probe and rankers: the paper's elastic-net probe and weight-mass ranking, and the
field's other ranking methods (docs/ranking.md)."""

from __future__ import annotations

from neuroscope.plugin import RankerInputs, Ranking, hookimpl, iou, probeless, random_order, ranker, weight_mass_ranking


@ranker(needs=("probe",), cite="Durrani et al., EMNLP 2020, section 2 (Dalvi et al. 2019; NeuroX "
        "linear_probe.get_neuron_ordering)", cost="none beyond the probe: a sort per label", stride=100)
def weight_mass(inputs: RankerInputs, stride: int = 100) -> Ranking:
    """The paper's ranking of the oracle probe's weights (neuroscope.ranking)."""
    return weight_mass_ranking(inputs.coef, stride)


@hookimpl
def register_probes(register):
    # deferred references (docs/plugins.md): the probes' torch is imported when a run uses one
    register("elastic-net", "neuroscope.plugin:ElasticNetProbe", aliases=["elasticnet", "logreg"])
    register("lbfgs", "neuroscope.plugin:LbfgsProbe", aliases=["converged", "logreg-lbfgs"])


@hookimpl
def register_rankers(register):
    register("weight-mass", weight_mass, aliases=["dalvi2019"])
    register("probeless", probeless, aliases=["antverg2022"])
    register("iou", iou, aliases=["average-precision", "mu2020"])
    register("gaussian", "neuroscope.plugin:gaussian", aliases=["intrinsic", "torroba2020"])
    register("mean-diff", "neuroscope.plugin:mean_diff", aliases=["gurnee2023"])
    register("f-stat", "neuroscope.plugin:f_stat", aliases=["anova"])
    register("mi", "neuroscope.plugin:mutual_information", aliases=["mutual-information"])
    register("lape", "neuroscope.plugin:lape", aliases=["tang2024"])
    register("attribution", "neuroscope.plugin:attribution", aliases=["attribution-patching", "syed2023"])
    register("random", random_order)
