"""Reports of a run: ``tables.md`` in the paper's layout, figures as PNG and a
self-contained ``report.html`` (figures embedded, no external assets).

Everything is rendered from ``results.json`` alone, so ``neuroscope report
RUN_DIR`` re-renders without touching activations or retraining. Tables are
built once as :class:`Table` values and written both as Markdown and HTML.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from typing import Any, Sequence

import attrs
import numpy as np

from neuroscope.choices import RARE_TOKENS
from neuroscope.figures import subplots
from neuroscope.neuron_pages import top_neurons_section
from neuroscope.results import load_results
from neuroscope.rundir import atomic_path, naming, read_json
from neuroscope.runs import Run
from neuroscope.types import TaskData


def markdown_text(text: str) -> str:
    """Text of tables.md with ``<`` and ``>`` as entities: a label such as ``<script>`` (from
    a corpus or a crafted results.json) stays text in a Markdown viewer."""
    return str(text).replace("<", "&lt;").replace(">", "&gt;")


def markdown_cell(text: str) -> str:
    """A table cell of tables.md: :func:`markdown_text`, and ``|`` escaped (it would split the cell)."""
    return markdown_text(text).replace("|", "\\|")


@attrs.frozen
class Table:
    """A table of the report; ``figures`` are the keys of the figures shown beside it in
    report.html, ``sortable`` adds click-to-sort headers and a filter box."""

    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str = ""
    figures: tuple[str, ...] = ()
    sortable: bool = False

    def markdown(self) -> str:
        lines = [f"## {markdown_text(self.title)}", "", "| " + " | ".join(map(markdown_cell, self.header)) + " |",
                 "|" + "|".join("---" for _ in self.header) + "|"]
        lines += ["| " + " | ".join(map(markdown_cell, r)) + " |" for r in self.rows]
        if self.note:
            lines += ["", markdown_text(self.note)]
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in self.rows)
        note = f"<p class='note'>{html.escape(self.note)}</p>" if self.note else ""
        if self.sortable:
            return (f"<h2>{html.escape(self.title)}</h2><p><input class='table-filter' placeholder='filter rows' "
                    f"size='24'> <span class='note'>click a column header to sort</span></p><table class='sortable'>"
                    f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}")
        return f"<h2>{html.escape(self.title)}</h2><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"


def fmt(stat: dict[str, Any] | None, digits: int = 2) -> str:
    """mean ± std over seeds (just the mean for one seed)."""
    if stat is None:
        return "-"
    if len(stat.get("values", [])) > 1:
        return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"
    return f"{stat['mean']:.{digits}f}"


def pct(results: dict[str, Any]) -> int:
    return int(round(results["fraction"] * 100))


def ablation_rows(results: dict[str, Any], split: str) -> list[tuple[str, str]]:
    p = pct(results)
    names = {"all": "All", "top": f"Top {p}%", "random": f"Random {p}%", "bottom": f"Bottom {p}%"}
    return [(label, fmt(results["summary"]["ablation"][split][key])) for key, label in names.items()]


def minimal_rows(results: dict[str, Any], delta: float, split: str, with_selectivity: bool) -> list[tuple[str, str]]:
    m = results["summary"]["minimal"][str(delta)]
    rows = [("Neu_a", f"{results['neurons']:,}"),
            ("Neu_t", f"{fmt(m['n_neurons'], 0)} / {fmt(m['share'], 1)}%"),
            ("Acc_a", fmt(m[split]["all"])), ("Acc_t", fmt(m[split]["selected"]))]
    sel = results["summary"].get("selectivity", {}).get(split)
    if with_selectivity and sel:
        rows += [("Sel_a", fmt(sel["all"])), ("Sel_t", fmt(sel["selected"]))]
    return rows


def column_table(title: str, header: Sequence[str], columns: Sequence[list[tuple[str, str]]], note: str = "") -> Table:
    """Rows named by the first column's labels, one value column per run (the paper's layout)."""
    rows = tuple((label,) + tuple(col[i][1] for col in columns) for i, (label, _) in enumerate(columns[0]))
    return Table(title, tuple(header), rows, note)


def with_ranker(results: dict[str, Any], name: str) -> dict[str, Any]:
    """``results`` seen through one of its rankers (top-level per_seed and summary are the first's)."""
    ranker = results["per_ranker"][name]
    return {**results, "per_seed": ranker["per_seed"], "summary": ranker["summary"]}


def ranker_tables(results: dict[str, Any]) -> list[Table]:
    """With several rankers: Tables 1 and 2 with one column per ranker, and how the rankings agree."""
    names = results.get("rankers", [])
    if len(names) < 2:
        return []
    views = [with_ranker(results, n) for n in names]
    header = (results["task"].upper(),) + tuple(names)
    delta = results["deltas"][0]
    tables = [
        column_table(f"Rankers: ablation, test (paper Table 1 per ranker): keep {pct(results)}% by each ranking",
                     header, [ablation_rows(v, "test") for v in views],
                     "Every ranker is judged with the same oracle probe and data; Random keeps the same random "
                     "set for every ranker."),
        column_table(f"Rankers: minimal neuron set and selectivity, test, delta = {delta:g} (paper Table 2 per "
                     "ranker)", header, [minimal_rows(v, delta, "test", True) for v in views]),
    ]
    comparison = results["ranking_comparison"]
    shares = comparison["shares"]
    rows = tuple((p["a"], p["b"], *(fmt(p["jaccard"][str(k)], 1) for k in shares), fmt(p["spearman"], 3))
                 for p in comparison["pairs"])
    tables.append(Table("Do the rankings agree? Overlap of top sets (Jaccard, %) and rank correlation",
                        ("ranker", "ranker", *(f"top {k}%" for k in shares), "Spearman rho"), rows,
                        "Jaccard = |A and B| / |A or B| of the two top-k% sets; rho over the orderings of all "
                        "neurons; " + ("mean ± std over seeds." if len(results["seeds"]) > 1 else "one seed.")))
    curve_shares = results["summary"]["curves"]["shares"]
    curve_rows = []
    for name, view in zip(names, views):
        curves = view["summary"]["curves"]
        curve_rows.append((name, "keep top", *(fmt(v, 1) if v else "-" for v in curves["keep_top"])))
        curve_rows.append((name, "remove top", *(fmt(v, 1) if v else "-" for v in curves["remove_top"])))
    tables.append(Table("Rankers: test accuracy of the oracle probe keeping only, or removing, the top k% of each "
                        "ranking", ("ranker", "", *(f"{k}%" for k in curve_shares)), tuple(curve_rows),
                        "The probe is not retrained (paper section 4.1); figure rankers.png."))
    return tables


def causal_objective_note(causal: dict[str, Any]) -> str:
    if causal["objective"]:
        return (f"Loss: the model's {causal['objective']} (nats per token, over {causal['objective_tokens']:,} "
                "scored test tokens).")
    return f"The model's own objective is not measured: {causal['objective_unavailable']}."


def causal_tables(results: dict[str, Any]) -> list[Table]:
    """With --causal: the paper's Table 1 turned around (remove instead of keep), the
    neurons removed from the probe's input only (in-probe) beside removed inside the
    model's forward pass (in-model)."""
    causal = results.get("causal")
    if not causal:
        return []
    p = int(round(causal["fraction"] * 100))
    none = causal["none"]
    rows = [("-", "nothing removed", "0", fmt(results["summary"]["ablation"]["test"]["all"]), fmt(none["in_model"]),
             "-" if none["loss"] is None else f"{none['loss']:.3f}")]
    names = {"top": f"top {p}%", "random": f"random {p}% (per layer as top)", "bottom": f"bottom {p}%"}
    for ranker, conditions in causal["per_ranker"].items():
        for kind, label in names.items():
            c = conditions[kind]
            rows.append((ranker, label, f"{c['removed']:,}", fmt(c["in_probe"]), fmt(c["in_model"]),
                         fmt(c["loss"], 3)))
    note = (f"Test accuracy of each seed's oracle probe (not retrained) with the neurons removed: in-probe, removed "
            f"from the unablated activations only (the paper's kind of ablation); in-model, "
            f"{'set to 0' if causal['mode'] == 'zero' else 'set to their train mean'} inside the forward pass at "
            f"{'every sub-token of every word' if causal['positions'] == 'words' else 'every position'}, so later "
            f"layers see the change, and the activations re-extracted. " + causal_objective_note(causal)
            + f" {causal['seconds']:.0f} s for {1 + 3 * len(causal['per_ranker']) * len(results['seeds'])} "
            "conditions. docs/protocol.md, \"Causal ablation\".")
    return [Table(f"Causal ablation, test: remove {p}% of neurons from the probe's input or inside the model",
                  ("ranker", "removed", "neurons", "in-probe acc", "in-model acc", "loss"), tuple(rows), note,
                  figures=("causal",))]


def rotation_tables(results: dict[str, Any]) -> list[Table]:
    """With --baseline rotation: Table 1 per ranker in the neuron basis beside a random
    orthonormal basis of each layer, and the gap of the top set (docs/ranking.md,
    "Rotation baseline")."""
    rotation = results.get("rotation")
    if not rotation:
        return []
    p = pct(results)
    rows = []
    for ranker, table in rotation["per_ranker"].items():
        for basis, label in (("neuron", "neurons"), ("rotated", "random directions")):
            test = table[basis]["test"]
            rows.append((ranker, label, *(fmt(test[k]) for k in ("all", "top", "random", "bottom")),
                         fmt(table["gap"]) if basis == "neuron" else ""))
    skipped = "".join(f" {name}: not rotated ({why})." for name, why in rotation["not_rotated"].items())
    note = (f"The same analysis with each layer's activations in a random orthonormal basis drawn from each seed "
            f"(oracle retrained there with the run's lambdas, each ranker ranking the directions): the gap is test "
            f"accuracy keeping the top {p}% of neurons minus the top {p}% of directions, in points. A gap near 0 "
            f"says the ranker would find as much in random directions: the neuron basis is not special for this "
            f"task.{skipped}")
    return [Table(f"Rotation baseline, test: keep {p}% of neurons or of random directions",
                  ("ranker", "basis", "all", "top", "random", "bottom", "gap (top)"), tuple(rows), note)]


def sparse_tables(results: dict[str, Any]) -> list[Table]:
    """With --ksparse: per ranker (and in the random basis with --baseline rotation) the mean
    over labels of test F1 of the one-vs-rest probes on each label's k best neurons, and
    the exhaustive ceiling (docs/ranking.md, "k-sparse probing")."""
    sparse = results.get("ksparse")
    if not sparse:
        return []
    ks = max((r["ks"] for r in sparse["per_ranker"].values()), key=len)
    rows = []
    for ranker, record in sparse["per_ranker"].items():
        for label, stats in ((ranker, record["mean_f1"]), (f"{ranker}, random directions",
                                                           (record.get("rotated") or {}).get("mean_f1"))):
            if stats is not None:
                rows.append((label, *(fmt(v) for v in stats), *([""] * (len(ks) - len(stats)))))
    ceiling = sparse["ceiling"]
    if ceiling is not None:
        rows.append((f"ceiling (best of {ceiling['pool']} by mean-diff)",
                     *(f"{v:.2f}" for v in ceiling["mean_f1"]), *([""] * (len(ks) - len(ceiling["mean_f1"])))))
    left = len(sparse["left_out"])
    note = (f"Per label, a one-vs-rest logistic probe on the label's k best neurons of each ranking (its own order "
            f"for the label where the ranker scores labels), trained on {sparse['train_rows']:,} train words (L2 "
            f"{sparse['l2']:g} on standardised neurons, solved exactly); test F1 of the label, averaged over the "
            f"{len(sparse['labels'])} labels with at least {sparse['min_positives']} words in that sample"
            + (f" ({left} left out, listed in results.json)" if left else "") + ". The ceiling: of every subset of "
            "size k of the label's best neurons by mean difference, the one whose probe reaches the lowest training "
            "loss (Gurnee et al. 2023's optimal sparse probe, by exhaustive search).")
    return [Table("k-sparse probing, test: mean F1 over labels of a probe on each label's k best neurons",
                  ("ranking", *(f"k={k}" for k in ks)), tuple(rows), note, figures=("ksparse",))]


def run_tables(results: dict[str, Any], data_dir: str | None = None) -> list[Table]:
    """The paper's Tables 1, 2, 3, 5, 6 and 7 for one run (its first ranker), the rankers side
    by side when there are several, plus lambda grid, labels and data. Data sources under
    ``data_dir`` are shown relative to it (``$DATA/...``), not as this machine's paths."""
    task, model = results["task"].upper(), results["model"]
    header = (task, model)
    deltas = results["deltas"]
    ranked_by = f" (ranker {results['rankers'][0]})" if len(results.get("rankers", [])) > 1 else ""
    tables = [attrs.evolve(column_table(f"Ablation, test (paper Table 1): keep {pct(results)}% of neurons, zero the "
                                        "rest" + ranked_by, header, [ablation_rows(results, "test")]),
                           figures=("rankers",))]
    first = deltas[0]
    tables.append(attrs.evolve(column_table(f"Minimal neuron set, test, delta = {first:g} (paper Table 2)", header,
                                            [minimal_rows(results, first, "test", True)]), figures=("minimal_scan",)))
    for delta in deltas[1:]:
        tables.append(column_table(f"Minimal neuron set, test, delta = {delta:g} (paper Table 3)", header,
                                   [minimal_rows(results, delta, "test", False)]))
    lam = results["lambdas"]
    tables.append(Table("Lambdas (paper Table 5)", ("", model),
                        (("L1, L2", f"{lam['l1']:g}, {lam['l2']:g}"), ("chosen by", lam["chosen_by"]))))
    tables.append(column_table("Ablation, dev (paper Table 6)", header, [ablation_rows(results, "dev")]))
    tables.append(column_table(f"Minimal neuron set, dev, delta = {first:g} (paper Table 7)", header,
                               [minimal_rows(results, first, "dev", True)]))
    tables += ranker_tables(results)
    tables += causal_tables(results)
    tables += rotation_tables(results)
    tables += sparse_tables(results)
    search = results.get("lambda_search")
    if search:
        method = search.get("method", "grid")
        epochs = method != "grid"
        rows = tuple((f"{p['l1']:g}", f"{p['l2']:g}", f"{p['top']:.2f}", f"{p['bottom']:.2f}", f"{p['all']:.2f}",
                      f"{p['score']:.2f}") + ((str(p.get("epochs", "")),) if epochs else ())
                     for p in sorted(search["points"], key=lambda p: -p["score"])[:10])
        how = "" if not epochs else (f"; --search {method}: each setting's S after the epochs it got"
                                     + (", the choice among the last round's" if search.get("finalists") else ""))
        tables.append(Table(f"Lambda search on dev: the 10 best of the grid (S = a(At - Ab) - b(Az - Al)){how}",
                            ("L1", "L2", "At", "Ab", "Al", "S") + (("epochs",) if epochs else ()), rows,
                            f"Az (unregularised) = {search['unregularised']:.2f}; alpha = {search['alpha']}, "
                            f"beta = {search['beta']}, M = {int(round(search['fraction'] * 100))}%, "
                            f"seed {search['seed']}; all {len(search['points'])} points are in results.json.",
                            figures=("lambda_grid",)))
    s = results["summary"]
    layer_rows = tuple((name, f"{m:.1f}", f"{100 * m / (sum(s['layer_distribution']['mean']) or 1):.1f}%")
                       for name, m in zip(results["layers"], s["layer_distribution"]["mean"]))
    tables.append(Table(f"Minimal set (delta = {first:g}) per layer (paper Figure 1)", ("layer", "neurons", "share"),
                        layer_rows, figures=("layers",)))
    ex = s["exclusivity"]
    counts = results["label_counts"]
    rare = [lab for lab in results["labels"] if counts.get("train", {}).get(lab, 0) < RARE_TOKENS]
    label_rows = tuple(
        (lab + (" (rare)" if lab in rare else ""), fmt(s["neurons_per_label"][lab], 1),
         s["dominant_layer"][lab]["layer"] or "-", f"{s['dominant_layer'][lab]['share']:.0f}%",
         *(str(counts.get(split, {}).get(lab, 0)) for split in ("train", "dev", "test")))
        for lab in results["labels"])
    rare_note = (f" (rare): fewer than {RARE_TOKENS} train tokens; the probe's weights for such a label rest on "
                 f"few examples, so its neuron count and layer are noisy ({len(rare)} of {len(results['labels'])} "
                 "labels)." if rare else "")
    tables.append(Table("Labels: neurons per label (Figures 2, 4), dominant layer (Figure 5), tokens per split",
                        ("label", "neurons", "dominant layer", "share there", "train", "dev", "test"), label_rows,
                        f"Labels per top neuron: {fmt(ex['mean_labels_per_neuron'])} on average; "
                        f"{fmt(ex['exclusive_percent'], 1)}% "
                        "of top neurons serve one label only (Figure 3)." + rare_note,
                        figures=("neurons_per_label", "label_layers", "exclusivity"), sortable=True))
    data_rows = []
    for name, stats in results["data"].items():
        unseen = ", ".join(f"{k} ({v})" for k, v in stats["unseen_labels"].items()) or "none"
        source = stats["source"]
        if data_dir and source.startswith(data_dir.rstrip("/") + "/"):
            source = "$DATA/" + source[len(data_dir.rstrip("/")) + 1 :]
        data_rows.append((name, f"{stats['sentences']:,}", f"{stats['tokens']:,}", unseen,
                          "-" if name == "train" else str(stats["also_in_train"]), source))
    base = results["majority_baseline"]
    tables.append(Table("Data", ("split", "sentences", "tokens", "labels unseen in train (tokens)",
                                 "sentences also in train (verbatim)", "source"), tuple(data_rows),
                        f"Majority-label baseline ({base['label']}): dev {base['dev']:.2f}, test {base['test']:.2f}. "
                        f"Tokens with labels unseen in train: rule '{results['unseen_label_rule']}'."
                        + (" $DATA is the run's --data-dir." if data_dir else "")))
    return tables


def save_figure(fig: Any, path: Path) -> None:
    """Lay out and write a figure (:mod:`neuroscope.figures`; temp name + rename)."""
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")  # the suffix tells savefig the format
    try:
        with naming(path):
            fig.savefig(tmp)
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def run_figures(results: dict[str, Any], run_dir: Path) -> dict[str, Path]:
    """Figures of one run: Figure 1 (layers), 2/4 (neurons per label), 3 (labels per neuron),
    5 (dominant layer per label), the lambda grid and the minimal-set scan."""
    s = results["summary"]
    name = f"{results['model']} x {results['task']}"
    out: dict[str, Path] = {}

    def finish(fig: Any, key: str) -> None:
        out[key] = run_dir / f"{key}.png"
        save_figure(fig, out[key])

    n_seeds = len(results["seeds"])
    over = f"mean ± std over {n_seeds} seeds" if n_seeds > 1 else "one seed"
    mean = np.asarray(s["layer_distribution"]["mean"])
    std = np.asarray(s["layer_distribution"]["std"])
    fig, ax = subplots(figsize=(6, 3.2), dpi=110)
    ax.bar(range(len(mean)), mean, yerr=std if n_seeds > 1 else None, color="#3b6ea8", capsize=3)
    ax.set_xticks(range(len(mean)), results["layers"])
    ax.set_xlabel("layer")
    ax.set_ylabel("neurons")
    ax.set_title(f"{name}: minimal set (delta {results['deltas'][0]:g}) per layer\n({over})", fontsize=9)
    finish(fig, "layers")

    labels = results["labels"]
    counts = [s["neurons_per_label"][lab]["mean"] for lab in labels]
    spread = [s["neurons_per_label"][lab]["std"] for lab in labels]
    train = results["label_counts"]["train"]
    rare = [train.get(lab, 0) < RARE_TOKENS for lab in labels]
    fig, ax = subplots(figsize=(max(6, 0.22 * len(labels)), 3.6), dpi=110)
    ax.bar(range(len(labels)), counts, yerr=spread if n_seeds > 1 else None, capsize=1.5,
           error_kw={"linewidth": 0.6},
           color=["#d9d9d9" if r else "#c0504d" for r in rare], hatch=None)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    for tick, r in zip(ax.get_xticklabels(), rare):
        if r:
            tick.set_color("#888")
    ax.set_ylabel("neurons")
    ax.set_title(f"{name}: top neurons per label ({over}); grey: fewer than {RARE_TOKENS} train tokens", fontsize=9)
    finish(fig, "neurons_per_label")

    hist: dict[int, float] = {}
    for seed in results["per_seed"]:
        for k, v in seed["analyses"]["exclusivity"]["histogram"].items():
            hist[int(k)] = hist.get(int(k), 0) + v / len(results["per_seed"])
    fig, ax = subplots(figsize=(5, 3), dpi=110)
    keys = sorted(hist)
    ax.bar(keys, [hist[k] for k in keys], color="#9bbb59")
    ax.set_xlabel("labels a top neuron serves")
    ax.set_ylabel("neurons (mean per seed)")
    ax.set_title(f"{name}: exclusivity of top neurons\n(per-seed counts averaged over {n_seeds} seed"
                 f"{'s' if n_seeds > 1 else ''})", fontsize=9)
    finish(fig, "exclusivity")

    matrix = np.array([s["dominant_layer"][lab]["per_layer"] for lab in labels], dtype=float)
    totals = matrix.sum(axis=1, keepdims=True)
    matrix = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    fig, ax = subplots(figsize=(1.2 + 0.45 * len(results["layers"]), max(3, 0.2 * len(labels))), dpi=110)
    image = ax.imshow(100 * matrix, aspect="auto", cmap="Blues", vmin=0, vmax=100)
    ax.set_xticks(range(len(results["layers"])), results["layers"])
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("layer")
    ax.set_title(f"{name}: where each label's neurons are\n(seeds pooled)", fontsize=9)
    fig.colorbar(image, ax=ax, label="% of the label's top neurons")
    finish(fig, "label_layers")

    search = results.get("lambda_search")
    if search:
        from matplotlib.patches import Rectangle

        l1s = sorted({p["l1"] for p in search["points"]})
        l2s = sorted({p["l2"] for p in search["points"]})
        grid = np.full((len(l1s), len(l2s)), np.nan)
        for p in search["points"]:
            grid[l1s.index(p["l1"]), l2s.index(p["l2"])] = p["score"]
        fig, ax = subplots(figsize=(5, 4), dpi=110)
        im = ax.imshow(grid, cmap="viridis")
        ax.set_xticks(range(len(l2s)), [f"{v:g}" for v in l2s], rotation=45, fontsize=7)
        ax.set_yticks(range(len(l1s)), [f"{v:g}" for v in l1s], fontsize=7)
        ax.set_xlabel("L2")
        ax.set_ylabel("L1")
        best = search["best"]
        ax.add_patch(Rectangle((l2s.index(best[1]) - 0.5, l1s.index(best[0]) - 0.5), 1, 1, fill=False,
                                   edgecolor="red", linewidth=2))
        for p in search["points"]:  # --search path / halving: the epochs each setting got
            if "epochs" in p:
                ax.text(l2s.index(p["l2"]), l1s.index(p["l1"]), str(p["epochs"]), ha="center", va="center",
                        fontsize=6, color="white")
        method = search.get("method", "grid")
        ax.set_title(f"{name}: selection score S on dev (seed {search['seed']}, {method})\nred: chosen "
                     f"L1 = {best[0]:g}, L2 = {best[1]:g}" + ("" if method == "grid" else "; numbers: epochs"),
                     fontsize=9)
        fig.colorbar(im, ax=ax, label="S")
        finish(fig, "lambda_grid")

    fig, ax = subplots(figsize=(6, 3.4), dpi=110)
    oracle = float(np.mean([seed["minimal"]["oracle_dev"] for seed in results["per_seed"]]))
    for seed in results["per_seed"]:
        scan = seed["minimal"]
        line, = ax.plot(100 * np.asarray(scan["sizes"]) / results["neurons"], scan["dev_accuracies"], marker=".",
                        label=f"seed {seed['seed']}")
        chosen = next((x for x in scan["sets"] if x["delta"] == results["deltas"][0]), None)
        if chosen is not None:
            ax.plot([chosen["share"]], [chosen["dev_accuracy"]], marker="o", markersize=9, fillstyle="none",
                    color=line.get_color())
    for d, style in zip(results["deltas"], (":", "--", "-.", ":")):
        ax.axhline(oracle - d, color="grey", linestyle=style, linewidth=0.9,
                   label=f"oracle - {d:g} (oracle mean {oracle:.2f})")
    ax.set_xlabel("% of neurons (top of the ranking), retrained")
    ax.set_ylabel("dev accuracy (%)")
    ax.set_title(f"{name}: minimal-set scan; circles: the chosen set (delta {results['deltas'][0]:g})", fontsize=9)
    ax.legend(fontsize=7)
    finish(fig, "minimal_scan")

    if len(results.get("rankers", [])) > 1:
        fig, axes = subplots(1, 2, figsize=(10, 3.6), dpi=110, sharey=True)
        for ranker in results["rankers"]:
            curves = results["per_ranker"][ranker]["summary"]["curves"]
            for ax, key in zip(axes, ("keep_top", "remove_top")):
                points = [(x, v) for x, v in zip(curves["shares"], curves[key]) if v]
                ax.errorbar([x for x, _ in points], [v["mean"] for _, v in points],
                            yerr=[v["std"] for _, v in points] if n_seeds > 1 else None, marker=".", capsize=2,
                            label=ranker)
        for ax, title in zip(axes, ("keeping only the top k% of neurons", "removing the top k% of neurons")):
            ax.set_xscale("log")
            ax.set_xlabel("k, % of neurons by each ranking")
            ax.set_title(title, fontsize=9)
        axes[0].set_ylabel("test accuracy (oracle probe, %)")
        axes[0].legend(fontsize=7)
        fig.suptitle(f"{name}: rankers compared ({over})", fontsize=10)
        finish(fig, "rankers")
    causal = results.get("causal")
    if causal:
        with_loss = causal["objective"] is not None
        fig, axes = subplots(1, 2 if with_loss else 1, figsize=(10 if with_loss else 6, 3.6), dpi=110,
                                 squeeze=False)
        rankers = list(causal["per_ranker"])
        kinds = ("top", "random", "bottom")
        width = 0.8 / (2 * len(rankers))
        ax = axes[0][0]
        for r, ranker in enumerate(rankers):
            for j, where in enumerate(("in_probe", "in_model")):
                stats = [causal["per_ranker"][ranker][k][where] for k in kinds]
                offset = (2 * r + j) * width - 0.4 + width / 2
                ax.bar(np.arange(3) + offset, [v["mean"] for v in stats], width,
                       yerr=[v["std"] for v in stats] if n_seeds > 1 else None,
                       capsize=2, label=f"{ranker}, {where.replace('_', '-')}", hatch="" if j else "//",
                       color=f"C{r}", alpha=1.0 if j else 0.45)
        ax.axhline(causal["none"]["in_model"]["mean"], color="k", linestyle=":", linewidth=1, label="nothing removed")
        ax.set_xticks(range(3), [f"{k} {int(round(causal['fraction'] * 100))}%" for k in kinds])
        ax.set_ylabel("test accuracy (oracle probe, %)")
        ax.set_title("probe accuracy with the neurons removed", fontsize=9)
        ax.legend(fontsize=7)
        if with_loss:
            ax = axes[0][1]
            for r, ranker in enumerate(rankers):
                stats = [causal["per_ranker"][ranker][k]["loss"] for k in kinds]
                ax.bar(np.arange(3) + r * 0.8 / len(rankers) - 0.4 + 0.4 / len(rankers), [v["mean"] for v in stats],
                       0.8 / len(rankers), yerr=[v["std"] for v in stats] if n_seeds > 1 else None, capsize=2,
                       color=f"C{r}", label=ranker)
            ax.axhline(causal["none"]["loss"], color="k", linestyle=":", linewidth=1, label="nothing removed")
            ax.set_xticks(range(3), [f"{k} {int(round(causal['fraction'] * 100))}%" for k in kinds])
            ax.set_ylabel(f"{causal['objective']} (nats/token)")
            ax.set_title("the model's own objective", fontsize=9)
            ax.legend(fontsize=7)
        fig.suptitle(f"{name}: causal ablation, test ({over})", fontsize=10)
        finish(fig, "causal")
    sparse = results.get("ksparse")
    if sparse:
        fig, ax = subplots(figsize=(6.4, 3.8), dpi=110)
        for r, (ranker, record) in enumerate(sparse["per_ranker"].items()):
            for stats, style, label in ((record["mean_f1"], "-", ranker),
                                        ((record.get("rotated") or {}).get("mean_f1"), ":", f"{ranker}, rotated")):
                if stats:
                    ax.errorbar(record["ks"][: len(stats)], [v["mean"] for v in stats],
                                yerr=[v["std"] for v in stats] if n_seeds > 1 else None, marker=".", capsize=2,
                                linestyle=style, color=f"C{r}", label=label)
        if sparse["ceiling"] is not None:
            ax.plot(sparse["ceiling"]["ks"], sparse["ceiling"]["mean_f1"], "k*", markersize=9, label="ceiling")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("k, neurons per label")
        ax.set_ylabel("test F1, mean over labels (%)")
        ax.legend(fontsize=7)
        ax.set_title(f"{name}: k-sparse probing ({over})", fontsize=9)
        finish(fig, "ksparse")
    return out


CSS = """body{font-family:sans-serif;max-width:1300px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #bbb;padding:3px 8px;text-align:left}
th{background:#eef}img{max-width:100%;border:1px solid #ddd;margin:.5em 0}.note{color:#555;font-size:90%}
ul.words{margin:0;padding-left:1.2em;font-size:85%}li.hit b{color:#b00}li.miss{color:#777}
.pair{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}.pair>div{flex:1 1 420px;min-width:0}
figure{margin:.5em 0}figcaption{font-size:85%;color:#444}
.card{border:1px solid #99b;background:#f6f7ff;padding:.6em 1em;margin:1em 0;border-radius:4px}"""

LOAD_CHECK = """<script>window.addEventListener('load',function(){var imgs=document.images,ok=0;
for(var i=0;i<imgs.length;i++){if(imgs[i].complete&&imgs[i].naturalWidth>0){ok++;}}
document.body.setAttribute('data-figures',imgs.length);document.body.setAttribute('data-figures-rendered',ok);});
</script>"""


SORT_JS = """<script>
document.querySelectorAll('table.sortable').forEach(function(table){
  var body=table.tBodies[0];
  table.querySelectorAll('th').forEach(function(th,col){th.style.cursor='pointer';th.addEventListener('click',function(){
    var rows=Array.from(body.rows),asc=th.getAttribute('data-sort')!=='asc';
    var key=function(r){var t=r.cells[col].textContent.trim(),n=parseFloat(t.replace(/,/g,''));return isNaN(n)?t:n;};
    rows.sort(function(a,b){var x=key(a),y=key(b);var c=(typeof x==='number'&&typeof y==='number')?x-y:String(x).localeCompare(String(y));return asc?c:-c;});
    rows.forEach(function(r){body.appendChild(r);});th.setAttribute('data-sort',asc?'asc':'desc');});});
  var box=table.previousElementSibling&&table.previousElementSibling.querySelector('.table-filter');
  if(box){box.addEventListener('input',function(){var q=box.value.trim().toLowerCase();
    Array.from(body.rows).forEach(function(r){r.style.display=!q||r.cells[0].textContent.toLowerCase().indexOf(q)>=0?'':'none';});});}
});
</script>"""


def _figure_html(key: str, path: Path, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f"<figure><img alt='{html.escape(key)}' src='data:image/png;base64,{data}'>"
            f"<figcaption><b>{html.escape(key)}.png</b> {html.escape(caption)}</figcaption></figure>")


#: a figure at least this many pixels wide is shown across the page under its table, not
#: beside it, where it would be scaled to half its width (neurons per label, rankers)
WIDE_PIXELS = 760


def png_width(path: Path) -> int:
    """A PNG's width in pixels, from its IHDR header."""
    with open(path, "rb") as fh:
        head = fh.read(24)
    return int.from_bytes(head[16:20], "big") if head[:8] == b"\x89PNG\r\n\x1a\n" else 0


def html_page(title: str, intro: str, tables: Sequence[Table], figures: dict[str, Path], extra: str = "",
              captions: dict[str, str] | None = None, summary: str = "") -> str:
    """The report page: a summary card, each table with its figures beside it (captioned;
    one too wide for half the page, :data:`WIDE_PIXELS`, across the page below it), the
    remaining figures, then ``extra`` HTML (the top-neurons section)."""
    captions = captions or {}
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>", summary]
    shown: set[str] = set()
    for table in tables:
        own = [k for k in table.figures if k in figures]
        wide = [k for k in own if png_width(figures[k]) >= WIDE_PIXELS]
        beside = [k for k in own if k not in wide]
        if beside:
            parts.append("<div class='pair'><div>" + table.html() + "</div><div>"
                         + "".join(_figure_html(k, figures[k], captions.get(k, "")) for k in beside) + "</div></div>")
        else:
            parts.append(table.html())
        parts.extend("<div class='wide'>" + _figure_html(k, figures[k], captions.get(k, "")) + "</div>" for k in wide)
        shown.update(own)
    rest = [k for k in figures if k not in shown]
    if rest:
        parts.append("<h2>Figures</h2>" + "".join(_figure_html(k, figures[k], captions.get(k, "")) for k in rest))
    parts.append(extra)
    parts.append(SORT_JS + LOAD_CHECK + "</body></html>")
    return "".join(parts)


GLOSSARY = (
    ("Oracle", "the probe trained on all neurons with the chosen lambdas (paper section 2)"),
    ("Acc_a", "accuracy of the oracle probe, all neurons"),
    ("Top / Random / Bottom M%", "the oracle probe keeping only the top, a random or the bottom M% of neurons of "
                                 "the ranking, the rest zeroed (no retraining; paper Table 1)"),
    ("Neu_t", "size of the minimal neuron set: the fewest top neurons (1% steps) whose retrained probe is within "
              "delta of the oracle on dev (paper Tables 2, 3)"),
    ("Acc_t", "accuracy of the probe retrained on the minimal set"),
    ("Sel_a / Sel_t", "selectivity: task accuracy minus control-task accuracy (random label per word type), with "
                      "all neurons / the minimal set (Hewitt & Liang 2019; paper section 2)"),
    ("At, Ab, Al, Az", "lambda search on dev: accuracy keeping the top / bottom M% (At, Ab), with all neurons (Al), "
                       "and of the unregularised probe (Az); S = alpha (At - Ab) - beta (Az - Al)"),
    ("In-probe / in-model", "--causal: accuracy with neurons removed from the probe's input only, or inside the "
                            "model's forward pass so that later layers see the change (docs/protocol.md)"),
    ("mean ± std", "over the run's seeds; one number when there is one seed"),
)


def glossary_html() -> str:
    rows = "".join(f"<tr><td><b>{html.escape(k)}</b></td><td>{html.escape(v)}</td></tr>" for k, v in GLOSSARY)
    return f"<h2>Glossary</h2><table>{rows}</table>"


def summary_html(results: dict[str, Any]) -> str:
    """The card at the top of report.html: what the console prints after a run, and more."""
    s = results["summary"]
    test = s["ablation"]["test"]
    first = str(results["deltas"][0])
    minimal = s["minimal"][first]
    lines = [f"Test accuracy, all neurons: <b>{fmt(test['all'])}</b> (majority-label baseline "
             f"{results['majority_baseline']['test']:.2f})",
             f"Keeping {pct(results)}% of neurons: top {fmt(test['top'])}, random {fmt(test['random'])}, bottom "
             f"{fmt(test['bottom'])}",
             f"Minimal set (delta {results['deltas'][0]:g}): <b>{fmt(minimal['n_neurons'], 0)}</b> neurons "
             f"({fmt(minimal['share'], 1)}% of {results['neurons']:,}), test Acc_t {fmt(minimal['test']['selected'])}"]
    if s.get("selectivity"):
        sel = s["selectivity"]["test"]
        lines.append(f"Selectivity (test): Sel_a {fmt(sel['all'])}, Sel_t {fmt(sel['selected'])}")
    dist = np.asarray(s["layer_distribution"]["mean"])
    if dist.sum():
        top_layer = results["layers"][int(np.argmax(dist))]
        lines.append(f"Most minimal-set neurons in layer {html.escape(top_layer)} "
                     f"({100 * dist.max() / dist.sum():.0f}%)")
    trainings = [seed.get("oracle_training") for seed in results["per_seed"]]
    if any(t is not None and not t["converged"] for t in trainings):
        unconverged = [t for t in trainings if t is not None and not t["converged"]]
        lines.append(f"The oracle probe stopped after {unconverged[0]['epochs']} epochs with its loss still falling "
                     f"({len(unconverged)} of {len(trainings)} seeds), as the paper's fixed 10 epochs do on a corpus "
                     "of this size: the numbers are those of its protocol, and probes trained to convergence may "
                     "score higher; --epochs auto trains until the loss stops falling (docs/probe.md)")
    causal = results.get("causal")
    if causal:
        first_ranker = next(iter(causal["per_ranker"].values()))
        lines.append(f"Causal (removed inside the model, {html.escape(str(causal['mode']))}): test accuracy with the top "
                     f"{int(round(causal['fraction'] * 100))}% removed {fmt(first_ranker['top']['in_model'])}, a random "
                     f"set {fmt(first_ranker['random']['in_model'])}, nothing {fmt(causal['none']['in_model'])}"
                     + (f"; {html.escape(causal['objective'])} {fmt(first_ranker['top']['loss'], 3)} vs "
                        f"{fmt(first_ranker['random']['loss'], 3)} (nothing removed {causal['none']['loss']:.3f})"
                        if causal["objective"] else ""))
    if len(results.get("rankers", [])) > 1:
        lines.append("Rankers: " + "; ".join(
            f"{html.escape(n)} top {fmt(r['summary']['ablation']['test']['top'])}"
            for n, r in results["per_ranker"].items()))
    items = "".join(f"<li>{line}</li>" for line in lines)
    return (f"<div class='card'><b>Summary</b> ({html.escape(results['model'])} x {html.escape(results['task'])}, "
            f"ranker {html.escape(results.get('rankers', ['weight-mass'])[0])}, {len(results['seeds'])} seed(s))"
            f"<ul>{items}</ul><span class='note'>Terms: see the glossary at the end.</span></div>")


def figure_captions(results: dict[str, Any]) -> dict[str, str]:
    """What each figure plots, over which seeds, and what of the paper it reproduces."""
    n = len(results["seeds"])
    over = f"mean ± std over {n} seeds" if n > 1 else "one seed"
    first = results["deltas"][0]
    return {
        "layers": f"Neurons of the minimal set (delta {first:g}) in each layer; bars {over}, error bars the std. "
                  "Reproduces the paper's Figure 1.",
        "neurons_per_label": f"Top neurons per label (weight mass of the label's probe weights within the minimal "
                             f"set); {over}. Grey: labels with fewer than {RARE_TOKENS} train tokens, whose counts "
                             "rest on a handful of examples. Paper Figures 2 and 4.",
        "exclusivity": f"How many labels each minimal-set neuron serves; per-seed counts averaged over {n} seed(s). "
                       "Paper Figure 3.",
        "label_layers": "For each label, the share of its top neurons in each layer, seeds pooled; the colour bar is "
                        "the percentage. Paper Figure 5.",
        "lambda_grid": "Selection score S of every (L1, L2) pair of the lambda search on dev (seed of the search); "
                       "the red square is the chosen pair. Paper section 2, Table 5.",
        "minimal_scan": f"Dev accuracy of the probe retrained on the top k% of the ranking, one line per seed; "
                        f"grey lines: the oracle's dev accuracy (mean over seeds) minus each delta; circles: the "
                        f"minimal set chosen for delta {first:g}. Paper Tables 2, 3.",
        "rankers": f"Test accuracy of the oracle probe keeping only (left) or removing (right) the top k% of each "
                   f"ranking; {over}. Antverg & Belinkov's comparison of rankings.",
        "ksparse": f"k-sparse probing: per label a one-vs-rest probe on the label's k best neurons of each ranking; "
                   f"test F1 averaged over the labels, {over}; dotted: the same in a random orthonormal basis of each "
                   "layer (--baseline rotation); stars: the exhaustive ceiling. Gurnee et al. 2023.",
        "causal": f"Removing the top, a layer-matched random or the bottom share of neurons: the oracle probe's test "
                  f"accuracy when they are removed from its input only (hatched, in-probe) or inside the model's "
                  f"forward pass (solid, in-model), and, where the checkpoint has one, the model's own loss; {over}. "
                  "The dotted line: nothing removed. The paper's Discussion names this as open.",
    }


def write_text(path: Path, text: str) -> None:
    """Write text through :func:`~neuroscope.rundir.atomic_path`: never a half-written file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def screen_note(results: dict[str, Any]) -> str:
    """How a --screen run was screened, in words ("" without --screen)."""
    screen = results.get("screen")
    if screen is None:
        return ""
    if not screen["screened"]:
        return f"--screen {screen['requested']}: the full store fits --store-budget, so not screened"
    return (f"screened by {screen['rule']} (--screen {screen['requested']}): {screen['k']:,} of the network's "
            f"{screen['network_neurons']:,} neurons, chosen from statistics streamed over train before anything "
            "was stored; every number is of those")


def intro(results: dict[str, Any]) -> str:
    lam = results["lambdas"]
    shape = f"{len(results['layers'])} layers x {results['hidden_size']}"
    screen = results.get("screen")
    if screen is not None and screen["screened"]:
        layout = f"{results['neurons']:,} neurons of {screen['network_neurons']:,} ({shape}), {screen_note(results)}"
    else:
        layout = f"{results['neurons']:,} neurons ({shape}{'; ' + screen_note(results) if screen else ''})"
    return (f"{layout}; "
            f"{len(results['labels'])} labels; lambdas l1 = {lam['l1']:g}, l2 = {lam['l2']:g} ({lam['chosen_by']}); "
            + (f"seeds {', '.join(str(s) for s in results['seeds'])} (mean ± std over seeds)."
               if len(results["seeds"]) > 1 else f"one seed ({results['seeds'][0]}), so no spread is shown."))


def neurons_section(run_dir: Path, task: TaskData | None = None) -> str:
    """The "Top neurons" section of a run directory that has its settings and manifest
    (empty for one that has not, e.g. a bare results.json); ``task``: the run's task data
    where the caller has it (the run that just finished), else read again."""

    if not (Path(run_dir) / "manifest.json").is_file() or not (Path(run_dir) / "config.json").is_file():
        return ""
    return top_neurons_section(Run(run_dir, task=task))


def render_report(results: dict[str, Any], run_dir: Path, task: TaskData | None = None) -> list[Path]:
    """Write tables.md, the figures and report.html into ``run_dir``; returns the paths
    written. ``task``: the run's task data, when the caller holds it (else the neuron
    pages read the corpus again)."""
    run_dir = Path(run_dir)
    config = run_dir / "config.json"
    data_dir = read_json(config, "the run's settings").get("data_dir") if config.is_file() else None
    tables = run_tables(results, data_dir)
    figures = run_figures(results, run_dir)
    captions = figure_captions(results)
    title = f"{results['model']} x {results['task']}"
    md = [f"# {markdown_text(title)}", "", markdown_text(intro(results)), ""] + [t.markdown() for t in tables]
    md += [f"![{name}]({path.name})\n\n{markdown_text(captions.get(name, ''))}\n" for name, path in figures.items()]
    md += ["## Glossary", ""] + [f"* **{k}**: {v}" for k, v in GLOSSARY] + [""]
    write_text(run_dir / "tables.md", "\n".join(md))
    page = html_page(title, intro(results), tables, figures, neurons_section(run_dir, task) + glossary_html(), captions,
                     summary_html(results))
    write_text(run_dir / "report.html", page)
    return [run_dir / "tables.md", *figures.values(), run_dir / "report.html"]


def rerender(run_dir: Path) -> list[Path]:
    """``neuroscope report``: re-render from results.json."""
    return render_report(load_results(run_dir), Path(run_dir))
