"""The intrinsic Gaussian probe of Torroba Hennigen, Williams & Cotterell, "Intrinsic Probing
through Dimension Selection" (EMNLP 2020), as NeuroX's ``gaussian_probe`` fits it.

Each label's activations are a multivariate Gaussian with the maximum-a-posteriori mean
and covariance under a Normal-inverse-Wishart prior (NeuroX's hyperparameters: prior mean
the empirical mean, prior scale the diagonal of the empirical covariance, nu_0 = D + 2,
kappa_0 = 0.01, so Sigma_c = (diag(cov_c) + scatter_c) / (n_c + 2 D + 4)); the label prior
is its train frequency. Dimensions are selected greedily: at each step the neuron whose
addition gives the highest mutual information I(label; selected neurons), estimated as
H(label) - mean cross-entropy of the Gaussian classifier's posterior on train tokens.

What that estimate is (issue 25; docs/ranking.md): not the mutual information. With D the
whole network, every block's variances are shrunk by about n_c / (n_c + 2D), the
classifier is overconfident, and its cross-entropy can exceed H(label): the estimate is
then negative. ``prior="block"`` takes each modelled block's own marginal MAP (k for D),
which keeps the estimate near its in-sample value, and ``score="held-out"`` scores tokens
outside the fit sample, which makes it Barber & Agakov's lower bound; the default stays
NeuroX's (``prior="network"``, ``score="fit"``) because on MiniLM x PTB it ranks better
for Table 1 (docs/ranking.md has both measured).

It is incremental: per label, the conditional mean and variance of every candidate given
the selected set are kept and updated by a rank-one step when a neuron is added (the
new row of the Cholesky factor of the selected block), so step k costs O(labels x tokens
x neurons) instead of refactorising k x k covariances for every candidate.

It is bounded:
* ``max_neurons`` greedy steps, by default as many as the run's ablation keeps
  (``--fraction`` of the neurons: 538 of MiniLM's 2,688 at 20 %), so the top M % that
  Table 1 judges is the method's own selection; the neurons not selected follow in the
  order of their mutual information given every selected one (``tail`` "conditional",
  the default) or of their own ("marginal"). With fewer steps the tail decides most of
  the top 20 % and orders it badly (MiniLM x SEM, seed 0, test, oracle keeping 20 %: 50
  steps then the conditional tail 75.38, then the marginal 66.10, random 81.44;
  docs/ranking.md);
* every candidate is scored at every ``refresh``-th step (default 10) and, at the steps
  between, only the ``candidates`` (default 256) that scored highest then: a neuron's
  information given the selected ones rarely climbs from below the top 256 into first
  place within 10 steps. ``refresh = 1`` scores every candidate at every step (the exact
  greedy search, about 4x slower). On MiniLM x SEM seed 0, greedy to 538 neurons keeps
  83.39 with the defaults against 83.23 exact (random 81.44). Lazy greedy (re-scoring
  candidates only while their last gain could still win) is not used: the information
  gains are not diminishing here (neurons complement each other), so stale gains
  understate candidates, and it kept 67.66 there;
* the factor of the selected block takes steps x labels x neurons x 8 bytes; where that
  exceeds ``memory`` (default 1 GiB) the steps are cut to fit, with a warning;
* the Gaussians are fitted on ``fit_tokens`` (default 20,000) train tokens drawn with the
  seed, held in memory (tokens x neurons x 8 bytes);
* the mutual information is estimated on ``score_tokens`` of them (default 2,000), fewer
  if labels x score_tokens x neurons x 4 bytes exceeds ``memory``.
A label with a single sample token takes the pooled per-neuron variance as its prior scale
(np.cov of one token is undefined; NeuroX would produce NaN there).

Cost: one scattered read of ``fit_tokens`` rows, then ``max_neurons`` steps, each
O(fit_tokens x neurons + labels x score_tokens x neurons) for the updates, plus the
scoring of every candidate (O(labels x score_tokens x neurons), the bulk) at every
``refresh``-th step and of the shortlist between.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from neuroscope.features import read_rows
from neuroscope.rankers import RankerInputs, ranker, ranking_from_order
from neuroscope.ranking import Ranking
from neuroscope.validation import check_choice, check_number

log = logging.getLogger(__name__)


def sample_rows(n_rows: int, size: int, seed: int) -> np.ndarray:
    """Sorted row indices of a seeded uniform sample (all rows when ``size`` >= ``n_rows``)."""
    if size >= n_rows:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng([seed, 7]).choice(n_rows, size=size, replace=False))


def greedy_selection(X: torch.Tensor, y: torch.Tensor, n_score: int, max_neurons: int, n_features: int,
                     refresh: int = 1, candidates: int = 0, prior: str = "network",
                     score_rows: tuple[torch.Tensor, torch.Tensor] | None = None
                     ) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """The selected neurons in order, the first step's (each neuron alone) and the final
    (given every selected neuron) mutual information (bits) of every neuron.

    ``X`` (tokens, neurons) float64 fit sample with class ids ``y`` (every class present);
    the first ``n_score`` tokens score the candidates, or ``score_rows`` ((tokens, neurons)
    float64 and their class ids, held out of the fit) where given; ``n_features`` is the D
    of the prior. ``prior`` "network" (NeuroX's): every block a sub-block of the
    D-dimensional MAP; "block": the MAP of the modelled block's own marginal (its size k in
    place of D; docs/ranking.md).
    ``refresh`` 1: every candidate is scored at every step (exact greedy). ``refresh`` R > 1:
    every candidate is scored at every R-th step, and at the steps between only the
    ``candidates`` that scored highest then (docs/ranking.md)."""
    denormals = torch.set_flush_denormal(True)  # near-zero densities as denormals make exp/log ~100x slower
    try:
        return _greedy(X, y, n_score, max_neurons, n_features, max(1, refresh), candidates, prior, score_rows)
    finally:
        if denormals:
            torch.set_flush_denormal(False)


#: candidates scored together: (s, block, C) temporaries of a few MB stay in cache
BLOCK = 16


def _greedy(X: torch.Tensor, y: torch.Tensor, n_score: int, max_neurons: int, n_features: int, refresh: int,
            candidates: int, prior: str, score_rows: tuple[torch.Tensor, torch.Tensor] | None
            ) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    n, d = X.shape
    classes = int(y.max()) + 1
    steps = min(max_neurons, d)
    def by_class(values: torch.Tensor) -> torch.Tensor:
        """(C, d) sums of the rows of ``values`` per class: O(n d), not a one-hot product's O(C n d)."""
        return torch.zeros(classes, values.shape[1], dtype=values.dtype).index_add_(0, y, values)

    counts = torch.bincount(y, minlength=classes).to(X.dtype)
    means = by_class(X) / counts[:, None]  # (C, d)
    centered = X - means[y]  # each token minus its own class mean
    pooled = centered.pow(2).sum(0) / max(1, n - classes)
    squares = by_class(centered.pow(2))
    diag0 = squares / (counts - 1).clamp_min(1)[:, None]
    diag0 = torch.where((counts > 1)[:, None], diag0, pooled[None, :])
    denominator = counts + 2 * n_features + 4  # nu_n + D + 2 with nu_0 = D + 2
    variance = (diag0 + squares) / denominator[:, None]  # diag of Sigma_c, (C, d)

    def scale(block: int) -> torch.Tensor:
        """(C,) factor from the D-dimensional MAP to the MAP of a block of ``block``
        neurons' own marginal (the prior's nu_0 = block + 2): (n_c + 2D + 4) / (n_c + 2 block + 4)."""
        if prior == "network":
            return torch.ones_like(counts)
        return denominator / (counts + 2 * block + 4)

    log_prior = torch.log(counts / n)
    entropy = -(counts / n * log_prior).sum()
    if score_rows is None:
        Xs, ys = X[:n_score], y[:n_score]
    else:
        Xs, ys = score_rows
        n_score = len(ys)
    # token-major layout (s, d, C): the softmax over labels reduces the last, contiguous axis
    cond_mean = means.T[None, :, :].expand(n_score, d, classes).to(torch.float32).contiguous()  # (s, d, C)
    cond_var = variance.clone()  # (C, d)
    basis = torch.zeros(steps, classes, d, dtype=X.dtype)  # rows of the factor: W_c, filled step by step
    # the selected block's log-density, kept as its parts so that the block's scale can change:
    # sum of squared standardised residuals (C, s) and of log standard deviations (C,)
    quadratic = torch.zeros(classes, n_score, dtype=X.dtype)
    log_std = torch.zeros(classes, dtype=X.dtype)
    loglik = log_prior[:, None].expand(classes, n_score).clone()  # (C, s), prior "network": accumulated
    Xs32 = Xs.float()
    own = ys[:, None, None]

    def score(candidates: torch.Tensor) -> torch.Tensor:
        """I(label; selected + candidate) in nats for each candidate, on the scoring tokens."""
        if prior == "network":  # NeuroX's MAP: the selected block's log-density as accumulated, unscaled
            current, block_var = loglik, cond_var[:, candidates].clamp_min(1e-12)
        else:
            m = len(selected)
            f = scale(m + 1)
            current = (log_prior - 0.5 * m * torch.log(2 * math.pi * f) - log_std)[:, None] \
                - 0.5 * quadratic / f[:, None]
            block_var = cond_var[:, candidates].clamp_min(1e-12) * f[:, None]
        log_norm = (-0.5 * torch.log(2 * math.pi * block_var)).float().T
        neg_half_precision = (-0.5 / block_var).float().T  # (k, C)
        loglik32 = current.float().T.contiguous()[:, None, :]  # (s, 1, C)
        out = torch.empty(len(candidates), dtype=X.dtype)
        for first in range(0, len(candidates), BLOCK):
            cols = candidates[first : first + BLOCK]
            part = slice(first, first + len(cols))
            total = cond_mean.index_select(1, cols) - Xs32.index_select(1, cols)[:, :, None]  # (s, b, C)
            total.square_().mul_(neg_half_precision[None, part, :]).add_(log_norm[None, part, :])
            total.add_(loglik32)
            posterior = total.gather(2, own.expand(n_score, len(cols), 1))[:, :, 0] - torch.logsumexp(total, dim=2)
            out[part] = entropy + posterior.double().mean(0)
        return out

    selected: list[int] = []
    everyone = torch.arange(d)
    info = score(everyone)
    marginal = info.clone()
    shortlist = everyone
    for step in range(steps):
        if step and step % 50 == 0:
            log.info("gaussian ranker: %d of %d neurons selected", step, steps)
        if step % refresh:
            shortlist = shortlist[shortlist != selected[-1]]
        if step % refresh == 0 or not len(shortlist):  # every candidate scored (a used-up shortlist too)
            if step:
                info = score(everyone)
            info[selected] = -math.inf
            if refresh > 1 and candidates:
                shortlist = torch.argsort(info, descending=True, stable=True)[: min(candidates, d - len(selected))]
            j = int(torch.argmax(info))
        else:
            scores = score(shortlist)
            j = int(shortlist[int(torch.argmax(scores))])
        selected.append(j)
        # add j: the log-density of x_j given the selected set, then the rank-one updates
        std = cond_var[:, j].clamp_min(1e-12).sqrt()  # (C,)
        z = (Xs[None, :, j] - cond_mean[:, j, :].T.double()) / std[:, None]  # (C, s)
        if prior == "network":
            loglik += -0.5 * math.log(2 * math.pi) - torch.log(std)[:, None] - 0.5 * z.pow(2)
        else:
            quadratic += z.pow(2)
            log_std += torch.log(std)
        scatter_j = by_class(centered[:, j : j + 1] * centered)  # (C, d): row j of scatter_c
        sigma_j = scatter_j / denominator[:, None]
        sigma_j[:, j] += diag0[:, j] / denominator
        u = (sigma_j - torch.einsum("kc,kcd->cd", basis[:step, :, j], basis[:step])) / std[:, None]  # (C, d)
        basis[step] = u
        cond_var = cond_var - u.pow(2)
        cond_mean.addcmul_(z.float().T[:, None, :], u.float().T[None, :, :])
    final = score(everyone) if steps < d else info  # given every selected neuron: orders the rest
    return selected, marginal / math.log(2), final / math.log(2)


#: how the neurons after the greedy ``max_neurons`` are ordered (docs/ranking.md)
TAILS = ("marginal", "conditional")
#: the covariance prior (docs/ranking.md): the modelled block's own MAP, or NeuroX's
PRIORS = ("network", "block")
#: which tokens the information is estimated on
SCORING = ("fit", "held-out")


@ranker(needs=("activations",), cite="Torroba Hennigen, Williams & Cotterell, EMNLP 2020 (NeuroX "
        "gaussian_probe.get_neuron_ordering)", cost="one read of fit_tokens + score_tokens rows; max_neurons greedy "
        "steps, each O(labels x tokens x neurons), all candidates scored every refresh steps",
        max_neurons="--fraction of the neurons", fit_tokens=20000, score_tokens=2000, memory=2**30, tail="conditional",
        refresh=10, candidates=256, prior="network", score="fit")
def gaussian(inputs: RankerInputs, max_neurons: int | None = None, fit_tokens: int = 20000,
             score_tokens: int = 2000, memory: int = 2**30, tail: str = "conditional", refresh: int = 10,
             candidates: int = 256, prior: str = "network", score: str = "fit") -> Ranking:
    check_choice("gaussian tail", tail, TAILS)
    check_choice("gaussian prior", prior, PRIORS)
    check_choice("gaussian score", score, SCORING)
    for name, value in (("max_neurons", 1 if max_neurons is None else max_neurons), ("fit_tokens", fit_tokens),
                        ("score_tokens", score_tokens), ("memory", memory), ("refresh", refresh),
                        ("candidates", candidates)):
        check_number(f"gaussian {name}", value, low=1, integer=True)
    labels = np.asarray(inputs.labels)
    known = np.flatnonzero(labels >= 0)
    d = inputs.n_neurons
    held: np.ndarray | None = None
    if score == "held-out":
        # the scoring tokens first (a seeded sample), the fit sample from the other rows
        held = known[sample_rows(len(known), min(score_tokens, max(1, len(known) // 2)), inputs.seed + 1)]
        known = np.setdiff1d(known, held)
    rows = known[sample_rows(len(known), fit_tokens, inputs.seed)]
    X = torch.from_numpy(read_rows(inputs.train, rows, None)).double()
    present, y = np.unique(labels[rows], return_inverse=True)
    n_score = int(min(score_tokens, len(rows), max(1, memory // (4 * len(present) * d))))
    score_rows = None
    if held is not None:
        held = held[np.isin(labels[held], present)][:n_score]  # a label the fit never saw cannot be scored
        score_rows = (torch.from_numpy(read_rows(inputs.train, held, None)).double(),
                      torch.from_numpy(np.searchsorted(present, labels[held]).astype(np.int64)))
    steps = math.ceil(inputs.fraction * d) if max_neurons is None else int(max_neurons)
    fits = max(1, memory // (8 * len(present) * d))  # the factor W: steps x labels x neurons float64
    if steps > fits:
        log.warning("gaussian ranker: %d greedy steps need %.1f GiB for the factor, over its memory of %.1f GiB: "
                    "%d steps, the rest ordered by %s information (raise [rankers.gaussian] memory to select "
                    "more)", steps, steps * 8 * len(present) * d / 2**30, memory / 2**30, fits, tail)
        steps = fits
    selected, marginal, last = greedy_selection(X, torch.from_numpy(y.astype(np.int64)), n_score, steps, d,
                                                refresh, candidates, prior, score_rows)
    info = marginal if tail == "marginal" else last
    chosen = set(selected)
    rest = [int(i) for i in np.lexsort((np.arange(d), -info.numpy())) if int(i) not in chosen]
    return ranking_from_order(selected + rest, "gaussian")
