"""The report's "Top neurons" section: for every label its top neurons (among the 50 of
largest probe contribution, those whose 20 most extreme train tokens most often carry the
label: :meth:`neuroscope.api.Run.top_neurons` with ``by="precision"``), each with its top
words in context and an activation histogram (the label's tokens against the rest), plus
a filter box. Plain HTML, inline SVG and a few lines of JavaScript: offline, no CDN.

The store is read twice in row chunks (every neuron's extreme rows, then the chosen
neurons' columns); the corpus is read again through the task's reader.
"""

from __future__ import annotations

import html
import logging
from typing import Any

import numpy as np

from neuroscope.choices import RARE_TOKENS
from neuroscope.errors import NeuroscopeError

log = logging.getLogger(__name__)

FILTER_JS = """<script>
function nsFilter(q){q=(q||'').trim().toLowerCase();var rows=document.querySelectorAll('tr[data-filter]'),n=0;
for(var i=0;i<rows.length;i++){var hit=!q||rows[i].getAttribute('data-filter').toLowerCase().split(' ').indexOf(q)>=0;
rows[i].style.display=hit?'':'none';if(hit){n++;var fold=rows[i].closest('details');if(fold&&q){fold.open=true;}}}
document.body.setAttribute('data-neuron-rows-shown',n);}
window.addEventListener('load',function(){var box=document.getElementById('ns-filter');
var q=decodeURIComponent((location.hash.match(/filter=([^&]*)/)||[,''])[1]);box.value=q;nsFilter(q);
var only=/(^#|&)only(&|$)/.test(location.hash),section=document.getElementById('top-neurons-section');
if(only){var kids=document.body.children;for(var i=0;i<kids.length;i++){if(kids[i]!==section&&kids[i].tagName!=='SCRIPT'){kids[i].style.display='none';}}}
else if(q){section.scrollIntoView();}
box.addEventListener('input',function(){nsFilter(box.value);});});
</script>"""


def histogram_svg(values: np.ndarray, mask: np.ndarray, bins: int = 30, width: int = 180, height: int = 44) -> str:
    """Two overlaid density histograms: the label's tokens (red) and all other tokens (grey)."""
    edges = np.histogram_bin_edges(values, bins=bins)
    inside = np.histogram(values[mask], bins=edges, density=True)[0] if mask.any() else np.zeros(bins)
    outside = np.histogram(values[~mask], bins=edges, density=True)[0] if (~mask).any() else np.zeros(bins)
    top = max(float(inside.max()), float(outside.max()), 1e-12)
    step = width / bins
    parts = [f"<svg width='{width}' height='{height + 12}' class='hist'>"]  # inline in HTML: no namespace needed
    for density, colour in ((outside, "#999"), (inside, "#d62728")):
        points = " ".join(f"{k * step:.1f},{height - height * d / top:.1f} {(k + 1) * step:.1f},"
                          f"{height - height * d / top:.1f}" for k, d in enumerate(density))
        parts.append(f"<polyline fill='none' stroke='{colour}' stroke-width='1.5' points='{points}'/>")
    parts.append(f"<text x='0' y='{height + 11}' font-size='9' fill='#555'>{edges[0]:.2g}</text>")
    parts.append(f"<text x='{width}' y='{height + 11}' font-size='9' fill='#555' text-anchor='end'>"
                 f"{edges[-1]:.2g}</text></svg>")
    return "".join(parts)


def top_neurons_section(run: Any, per_label: int = 3, words: int = 6) -> str:
    """The HTML section for a finished run (an :class:`neuroscope.api.Run`); one line saying
    why, instead, when its activations or corpus are not available."""
    try:
        task = run.task()
        X = run.activations("train")
        picks = {lab: run.top_neurons(label=lab, k=per_label, by="precision") for lab in run.labels}
    except NeuroscopeError as exc:
        log.warning("report: no top-neurons section: %s", exc)
        return f"<h2>Top neurons</h2><p class='note'>Not available: {html.escape(str(exc))}</p>"
    ids = np.unique([t.neuron for tops in picks.values() for t in tops])
    columns = np.concatenate([block for _, block in X.chunks(ids)])  # (tokens, chosen neurons), one pass
    where = {int(j): k for k, j in enumerate(ids)}
    gold = np.asarray(task.train.labels())
    sentences = task.train.words()
    boards = {board["neuron"]: board for board in run.dashboards(ids, examples=words)}
    counts = {lab: int((gold == lab).sum()) for lab in run.labels}
    rows: list[str] = []
    rare_rows: list[str] = []
    rare = sorted((lab for lab in run.labels if counts[lab] < RARE_TOKENS), key=lambda lab: (-counts[lab], lab))
    for lab in sorted(run.labels, key=lambda lab: (-counts[lab], lab)):
        mask = gold == lab
        for t in picks[lab]:
            values = columns[:, where[t.neuron]]
            bottom = t.weight is not None and t.weight < 0
            order = np.argsort(values if bottom else -values, kind="stable")[:words]
            hits = []
            for row in order:
                _, p, sentence = run.token("train", int(row))
                left = " ".join(sentence.words[max(0, p - 4):p])
                right = " ".join(sentence.words[p + 1:p + 5])
                cls = "hit" if sentence.labels[p] == lab else "miss"
                hits.append(f"<li class='{cls}'>{html.escape(left)} <b>{html.escape(sentence.words[p])}</b> "
                            f"{html.escape(right)} <span class='note'>({html.escape(sentence.labels[p])}, "
                            f"{values[row]:.2f})</span></li>")
            name = f"{t.layer}:{t.unit}"
            board = boards[t.neuron]
            found = " ".join(sorted({html.escape(sentences[e["sentence"]][e["word"]].lower())
                                     for e in board["top"]} | {html.escape(tag) for tag in board["tags"]}))
            (rare_rows if lab in rare else rows).append(
                f"<tr data-filter='{html.escape(lab)} {name} layer{t.layer} {found}'><td>{html.escape(lab)}<br>"
                f"<span class='note'>{counts[lab]:,} tokens</span></td><td>{name}</td><td>{t.rank}</td>"
                f"<td>{t.weight:+.3f}</td><td>{'lowest' if bottom else 'highest'} 20: {100 * t.score:.0f} %</td>"
                f"<td><ul class='words'>{''.join(hits)}</ul></td>"
                f"<td>{histogram_svg(values, mask)}</td><td>{dashboard_html(board, run.index)}</td></tr>")
    return (
        "<section id='top-neurons-section'><h2 id='top-neurons'>Top neurons</h2>"
        f"<p class='note'>For every label (most frequent first) {per_label} of its top neurons: of the 50 with the "
        "largest contribution (the oracle probe's weight, seed 0, times the neuron's mean activation on the label "
        "minus its mean over all train tokens), those whose 20 most extreme train tokens (highest for a positive "
        "weight, lowest for a negative one) most often carry the label; the percentage is that precision at 20. "
        "Rank: position in the run's first ranking. Words: the first of those tokens, in context, with their gold "
        "label and activation. Histogram: activation density of the "
        "label's tokens (red) and of all other tokens (grey), train split. Dashboard (click to open): the "
        "neuron's tags (Voita et al. 2024: dead, token or n-gram detector, positional), share of tokens on which it "
        "is active (&gt; 0), its activation density over all train tokens, a word at each decile range of its "
        "activation (SAEDashboard's quantile view), its most correlated neurons of the layer and, at the mlp site "
        "of a decoder, the tokens its output weights promote and suppress through the unembedding "
        "(docs/results.md, \"Neuron dashboards\"). Filter by a label, a neuron (layer:unit), a word among its top words or a tag; "
        "report.html#filter=NN links to one label, #filter=NN&amp;only shows this section alone.</p>"
        "<p><input id='ns-filter' placeholder='filter: label, layer:unit, word or tag' size='36'></p>"
        f"<table class='neurons'>{HEADER}{''.join(rows)}</table>{rare_fold(rare, counts, rare_rows)}</section>"
        + FILTER_JS)


#: the header row of a top-neurons table
HEADER = ("<tr><th>label</th><th>neuron</th><th>rank</th><th>weight</th><th>words of the label</th><th>top words</th>"
          "<th>activation</th><th>dashboard</th></tr>")


def density_svg(centres: list[float], tokens: list[int], width: int = 180, height: int = 40) -> str:
    """Bars of a neuron's activation density (tokens per bin), zero marked."""
    top = max(max(tokens), 1)
    step = width / len(tokens)
    bars = "".join(f"<rect x='{k * step:.1f}' y='{height - height * n / top:.1f}' width='{max(step - 0.5, 0.5):.1f}' "
                   f"height='{height * n / top:.1f}' fill='#1f77b4'/>" for k, n in enumerate(tokens) if n)
    low, high = centres[0] - (centres[1] - centres[0]) / 2, centres[-1] + (centres[1] - centres[0]) / 2
    zero = (f"<line x1='{width * (0 - low) / (high - low):.1f}' x2='{width * (0 - low) / (high - low):.1f}' y1='0' "
            f"y2='{height}' stroke='#d62728' stroke-width='0.8'/>") if low < 0 < high else ""
    return (f"<svg width='{width}' height='{height + 12}' class='hist'>{bars}{zero}"
            f"<text x='0' y='{height + 11}' font-size='9' fill='#555'>{low:.2g}</text><text x='{width}' "
            f"y='{height + 11}' font-size='9' fill='#555' text-anchor='end'>{high:.2g}</text></svg>")


def output_tokens_html(output: dict[str, Any] | None) -> str:
    """The promoted and suppressed tokens of one neuron, one line each; "" without them."""
    if not output:
        return ""

    def listed(pairs: list) -> str:
        return ", ".join(f"<code>{html.escape(repr(token)[1:-1])}</code> {value:+.2f}" for token, value in pairs[:6])

    return (f"<p class='note'>output weights x unembedding, promotes: {listed(output['promoted'])}</p>"
            f"<p class='note'>suppresses: {listed(output['suppressed'])}</p>")


def dashboard_html(board: dict[str, Any], index: Any) -> str:
    """One neuron's dashboard (:meth:`neuroscope.runs.Run.dashboards`) folded in a
    ``details`` element: opened on a click, so the page stays short; its promoted and
    suppressed tokens (``board["output"]``) where the run has them."""
    tags = ", ".join(board["tags"]) or "no tag"
    lines = []
    share = 100 / len(board["quantiles"])
    for q, rng in enumerate(board["quantiles"]):
        for e in rng["examples"]:
            p, ws = e["word"], e["words"]
            lines.append(f"<li><span class='note'>{share * q:.0f}-{share * (q + 1):.0f} % [{rng['low']:.2f}, {rng['high']:.2f}]"
                         f"</span> {html.escape(' '.join(ws[max(0, p - 3):p]))} <b>{html.escape(ws[p])}</b> "
                         f"{html.escape(' '.join(ws[p + 1:p + 4]))} <span class='note'>({html.escape(e['label'])}, "
                         f"{e['values'][p]:.2f})</span></li>")
    near = ", ".join("{}:{} ({:+.2f})".format(*index.locate(c["neuron"]), c["r"]) for c in board["correlated"])
    return (f"<details class='dashboard'><summary>{html.escape(tags)}; active {100 * board['active_share']:.0f} %"
            f"</summary>{density_svg(board['histogram']['centres'], board['histogram']['tokens'])}"
            f"<p class='note'>position r {board['position_correlation']:+.2f}; most correlated: {near or 'none'}</p>"
            f"{output_tokens_html(board.get('output'))}"
            f"<ul class='words'>{''.join(lines)}</ul></details>")


def rare_fold(rare: list[str], counts: dict[str, int], rows: list[str]) -> str:
    """The rare labels' rows, folded away under one line that names them: a label with few
    train tokens has near-zero weights and top words that are mostly other labels'
    (opened by the filter when it matches one of them)."""
    if not rare:
        return ""
    names = ", ".join(f"{html.escape(lab)} ({counts[lab]})" for lab in rare)
    return (f"<details id='rare-labels'><summary>{len(rare)} rare label{'s' if len(rare) > 1 else ''}, fewer than "
            f"{RARE_TOKENS} train tokens each, folded away: their neurons rest on few examples. {names}</summary>"
            f"<table class='neurons'>{HEADER}{''.join(rows)}</table></details>")


def dashboard_lines(board: dict[str, Any], index: Any) -> list[str]:
    """One neuron's dashboard (:meth:`neuroscope.runs.Run.dashboards`) as plain text lines,
    for ``neuroscope neurons --dashboard``: what report.html's folded dashboard shows."""
    def context(e: dict[str, Any]) -> str:
        p, ws = e["word"], e["words"]
        return (f"{' '.join(ws[max(0, p - 3):p])} [{ws[p]}] {' '.join(ws[p + 1:p + 4])} ({e['label']}, "
                f"{e['values'][p]:.2f})").strip()

    near = ", ".join("{}:{} ({:+.2f})".format(*index.locate(c["neuron"]), c["r"]) for c in board["correlated"])
    lines = [f"{board['name']}: {', '.join(board['tags']) or 'no tag'}; active {100 * board['active_share']:.1f} % of "
             f"tokens; range [{board['min']:.3g}, {board['max']:.3g}]; position r {board['position_correlation']:+.2f}",
             f"  most correlated: {near or 'none'}"]
    share = 100 / len(board["quantiles"])
    for q, rng in enumerate(board["quantiles"]):
        for e in rng["examples"]:
            lines.append(f"  {share * q:3.0f}-{share * (q + 1):3.0f} % [{rng['low']:+.2f}, {rng['high']:+.2f}]: {context(e)}")
    output = board.get("output")
    if output:
        for what in ("promoted", "suppressed"):
            tokens = ", ".join(f"{token!r} {value:+.2f}" for token, value in output[what])
            lines.append(f"  {what} tokens (output weights x unembedding): {tokens}")
    return lines
