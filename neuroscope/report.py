"""Reports of a run: ``tables.md`` in the paper's layout and figures as PNG.

Everything is rendered from ``results.json`` alone, so ``neuroscope report
RUN_DIR`` re-renders without touching activations or retraining.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np


def _fmt(stat: dict[str, float]) -> str:
    if len(stat.get("values", [])) > 1:
        return f"{stat['mean']:.2f} ± {stat['std']:.2f}"
    return f"{stat['mean']:.2f}"


def ablation_table(results: dict[str, Any], split: str) -> str:
    """Paper Table 1 (test) / Table 6 (dev): all, top, random, bottom M% accuracy."""
    pct = int(round(results["fraction"] * 100))
    rows = [f"| {results['task'].upper()} | {results['model']} |", "|---|---|"]
    names = {"all": "All", "top": f"Top {pct}%", "random": f"Random {pct}%", "bottom": f"Bottom {pct}%"}
    for key, label in names.items():
        rows.append(f"| {label} | {_fmt(results['summary']['ablation'][split][key])} |")
    return "\n".join(rows)


def layer_table(results: dict[str, Any]) -> str:
    dist = results["summary"]["top_layer_distribution"]
    total = sum(dist["mean"]) or 1.0
    rows = ["| layer | top neurons | share |", "|---|---|---|"]
    for name, mean in zip(results["layers"], dist["mean"]):
        rows.append(f"| {name} | {mean:.1f} | {100 * mean / total:.1f}% |")
    return "\n".join(rows)


def data_table(results: dict[str, Any]) -> str:
    rows = ["| split | sentences | tokens | labels unseen in train (tokens) | sentences also in train (verbatim) | source |",
            "|---|---|---|---|---|---|"]
    for name, stats in results["data"].items():
        unseen = stats["unseen_labels"]
        unseen_txt = ", ".join(f"{k} ({v})" for k, v in unseen.items()) or "none"
        rows.append(f"| {name} | {stats['sentences']:,} | {stats['tokens']:,} | {unseen_txt} | "
                    f"{stats['also_in_train'] if name != 'train' else '-'} | {stats['source']} |")
    return "\n".join(rows)


def tables_markdown(results: dict[str, Any]) -> str:
    base = results["majority_baseline"]
    seeds = results["seeds"]
    parts = [
        f"# {results['model']} x {results['task']}",
        "",
        f"{results['neurons']:,} neurons ({len(results['layers'])} layers x {results['hidden_size']}); "
        f"{len(results['labels'])} labels; lambdas l1={results['lambdas']['l1']:g}, l2={results['lambdas']['l2']:g}; "
        f"seeds {', '.join(str(s) for s in seeds)} (mean ± std over seeds).",
        "",
        "## Ablation, test (paper Table 1)",
        "",
        ablation_table(results, "test"),
        "",
        "## Ablation, dev (paper Table 6)",
        "",
        ablation_table(results, "dev"),
        "",
        f"Majority-label baseline ({base['label']}): dev {base['dev']:.2f}, test {base['test']:.2f}. "
        f"Train accuracy (all neurons): {_fmt(results['summary']['train_accuracy'])}. "
        f"Tokens with labels unseen in train count as errors"
        + (" (rule: error)." if results["unseen_label_rule"] == "error" else "; here they are excluded."),
        "",
        f"## Top {int(round(results['fraction'] * 100))}% neurons per layer (paper Figure 1)",
        "",
        layer_table(results),
        "",
        "![layer distribution](layers.png)",
        "",
        "## Data",
        "",
        data_table(results),
        "",
    ]
    return "\n".join(parts)


def layer_figure(results: dict[str, Any], path: Path) -> None:
    """Bar chart of the share of top neurons in each layer (paper Figure 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dist = results["summary"]["top_layer_distribution"]
    mean = np.asarray(dist["mean"], dtype=float)
    std = np.asarray(dist["std"], dtype=float)
    total = mean.sum() or 1.0
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=120)
    ax.bar(range(len(mean)), 100 * mean / total, yerr=100 * std / total, color="#3b6ea8", capsize=3)
    ax.set_xticks(range(len(mean)), results["layers"])
    ax.set_xlabel("layer")
    ax.set_ylabel(f"% of top {int(round(results['fraction'] * 100))}% neurons")
    ax.set_title(f"{results['model']} x {results['task']}: top neurons per layer")
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def render_report(results: dict[str, Any], run_dir: Path) -> list[Path]:
    """Write tables.md and layers.png into ``run_dir``; returns the paths written."""
    run_dir = Path(run_dir)
    tables = run_dir / "tables.md"
    tmp = tables.with_name("tables.md.tmp")
    tmp.write_text(tables_markdown(results), encoding="utf-8")
    os.replace(tmp, tables)
    figure = run_dir / "layers.png"
    layer_figure(results, figure)
    return [tables, figure]


def rerender(run_dir: Path) -> list[Path]:
    """``neuroscope report``: re-render from results.json."""
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        from neuroscope.errors import NeuroscopeError

        raise NeuroscopeError(f"{run_dir}: no results.json; is this a finished run directory?")
    return render_report(json.loads(path.read_text(encoding="utf-8")), Path(run_dir))
