"""The allowed values of the run's options, in a module that imports nothing heavy.

The settings (:mod:`neuroscope.settings`) build the command line from these, and
``neuroscope --help``, ``plugins``, ``data list`` and ``cache list`` must answer without
importing torch or transformers (seconds on a busy machine). The modules that use each
value (the probe, the causal ablation, the model adapters, the search) import it from
here under the names they always had.
"""

from __future__ import annotations

from typing import Sequence

from neuroscope.errors import NeuroscopeError

#: dev/test tokens whose label train never saw: refused, or left out of the accuracies
UNSEEN_RULES = ("error", "exclude")
#: --causal-mode and --causal-positions (docs/protocol.md, "Causal ablation")
CAUSAL_MODES = ("zero", "mean")
#: where a run keeps its activations (--keep)
KEEP = ("disk", "memory", "auto")
#: --baseline: the analysis also in a random basis of each layer (docs/ranking.md, "Rotation baseline")
BASELINES = ("none", "rotation")
CAUSAL_POSITIONS = ("words", "all")
#: sub-word to word (paper: the last sub-token)
AGGREGATIONS = ("last", "first", "mean")
#: the L2 penalty's form (docs/probe.md)
L2_FORMS = ("squared", "norm")
#: the probe's arithmetic (:data:`neuroscope.probe.PRECISIONS` maps them to torch dtypes)
PRECISION_NAMES = ("float32", "bfloat16")
#: the paper's lambda values (section 2, "Search")
PAPER_VALUES = (0.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7)
#: how the lambda search visits the grid (docs/protocol.md, "Faster lambda searches"): every
#: setting fully trained; a warm-started path; successive halving
SEARCH_METHODS = ("grid", "path", "halving")
#: ``--search``'s values: a method, or auto (the default): halving where it applies (the
#: elastic-net probe, a number of epochs, lambdas searched), the grid elsewhere
SEARCH_CHOICES = ("auto", *SEARCH_METHODS)
#: how the minimal-set scan's probes start (``--scan-start``; :mod:`neuroscope.minimal`):
#: from zero as the paper trains them, from the oracle probe's weights, or each block from
#: the previous block's largest probe
SCAN_STARTS = ("cold", "oracle", "previous")
#: bytes of weights, gradients and Adam state of the settings trained together in the search
DEFAULT_MEMORY = 2 * 2**30


def auto_search(searched: bool, probe: str, epochs: int | str) -> str:
    """The method ``--search auto`` stands for: successive halving, which chose the grid's
    lambdas, or a pair within the grid's seed spread of S, on MiniLM x POS (also on the
    whole PTB sample), chunking, SEM and CCG over 3 seeds (docs/protocol.md), wherever it
    can run; else the paper's grid."""
    return "halving" if searched and probe == "elastic-net" and epochs != "auto" else "grid"


def parse_layers(spec: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``--layers``: "0,6,12", "8-12" or a mix ("0,8-12"), or a sequence of indices; None
    or "" for every layer. Indices count from 0, the embedding / token layer."""
    if spec is None or spec == "" or spec == ():
        return None
    if isinstance(spec, str):
        out: list[int] = []
        for part in spec.split(","):
            part = part.strip()
            try:
                if "-" in part:
                    first, last = (int(x) for x in part.split("-", 1))
                    if last < first:
                        raise ValueError
                    out.extend(range(first, last + 1))
                else:
                    out.append(int(part))
            except ValueError:
                raise NeuroscopeError(f"--layers: {part!r} is not a layer index or a range FIRST-LAST "
                                      "(e.g. --layers 0,8-12)") from None
    else:
        out = [int(x) for x in spec]
    if any(x < 0 for x in out) or len(set(out)) != len(out):
        raise NeuroscopeError(f"--layers: expected different layer indices >= 0, got {out}")
    return tuple(sorted(out))

#: labels with fewer train tokens than this are rare: flagged in the report's label table and
#: figures, and their top neurons folded away (the probe's weights rest on few examples)
RARE_TOKENS = 100

#: --ksparse-k: the k-sparse probes' sizes, 1, 2, 4, ..., 256 (Gurnee et al. 2023; docs/ranking.md)
DEFAULT_KS = tuple(2 ** i for i in range(9))

#: neuroscope export --to (docs/results.md, "Export")
EXPORT_FORMATS = ("safetensors", "parquet", "neuronpedia")
