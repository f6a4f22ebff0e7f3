"""Built-in probe and ranker: the paper's elastic-net probe and weight-mass ranking."""

from __future__ import annotations

from neuroscope.plugin import ElasticNetProbe, hookimpl, weight_mass_ranking


@hookimpl
def register_probes(register):
    register("elastic-net", ElasticNetProbe, aliases=["elasticnet", "logreg"])


@hookimpl
def register_rankers(register):
    register("weight-mass", weight_mass_ranking, aliases=["dalvi2019"])
