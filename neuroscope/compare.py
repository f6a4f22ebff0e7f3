"""``neuroscope compare``: several runs side by side (paper Tables 1-3 and 5-7
with one column per model, Figures 1, 3 and 4 across models).

Runs are grouped by task: each table has one block per task and one column per
model, as the paper lays out BERT / XLNet / T-ELMo / ELMo. A run that holds several
rankers gives one column per ranker ("model / ranker"), and its ranking-agreement
table is added. Any runs can be compared: two runs of the same model and task (float32
vs bfloat16, two aggregations, two probes, a sliced vs a full corpus) get columns named
by the settings that differ between them (from each run's config.json), and runs whose
protocol settings differ (seeds, data size, lambda grid, epochs, M, deltas) are
compared with a warning that says how.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import attrs
import numpy as np

from neuroscope.errors import NeuroscopeError
from neuroscope.figures import subplots
from neuroscope.report import (Table, ablation_rows, fmt, html_page, minimal_rows, ranker_tables, save_figure,
                               with_ranker, write_text)
from neuroscope.results import load_results
from neuroscope.rundir import read_json


log = logging.getLogger(__name__)

#: config.json keys that never name a column (paths, and what the column name already says)
_NOT_DIFFERENCES = ("model", "task", "data_dir", "cache_dir")
#: settings under which two runs' numbers are not directly comparable
PROTOCOL_SETTINGS = ("seeds", "max_sentences", "grid", "epochs", "fraction", "deltas", "lr", "batch_size")


def _short(value: Any) -> str:
    if isinstance(value, list):
        if len(value) > 4:
            return f"{len(value)} values"
        return ",".join("all" if v is None else f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    if value is None:
        return "search"
    return f"{value:g}" if isinstance(value, float) else str(value)


def name_columns(loaded: Sequence[dict[str, Any]], configs: Sequence[dict[str, Any]]) -> list[str]:
    """A column name per run: its model, plus the settings in which it differs from the other
    runs of the same model and task (``minilm (precision=bfloat16)``)."""
    names = []
    for r, c in zip(loaded, configs):
        same = [c2 for r2, c2 in zip(loaded, configs) if (r2["model"], r2["task"]) == (r["model"], r["task"])]
        if len(same) < 2:
            names.append(r["model"])
            continue
        keys = sorted({k for other in same for k in set(other) | set(c)} - set(_NOT_DIFFERENCES))
        differing = [k for k in keys if len({repr(o.get(k)) for o in same}) > 1]
        names.append(f"{r['model']} ({', '.join(f'{k}={_short(c.get(k))}' for k in differing) or 'same settings'})")
    # identical settings of one model and task: number them (a column is unique within its
    # task's block; one model's runs of two tasks share its column, as the paper lays out)
    keyed = [(r["task"], name) for r, name in zip(loaded, names)]
    seen: dict[tuple[str, str], int] = {}
    for i, key in enumerate(keyed):
        seen[key] = seen.get(key, 0) + 1
        if keyed.count(key) > 1:
            names[i] = f"{key[1]} #{seen[key]}"
    return names


def protocol_differences(loaded: Sequence[dict[str, Any]], configs: Sequence[dict[str, Any]]) -> list[str]:
    """One line per protocol setting (or data size) that differs between the runs."""
    lines = []
    for key in PROTOCOL_SETTINGS:
        values = [c.get(key) for c in configs if c]
        if len({repr(v) for v in values}) > 1:
            lines.append(f"{key}: " + " vs ".join(_short(v) for v in values))
    by_task: dict[str, list[int]] = {}
    for r in loaded:
        by_task.setdefault(r["task"], []).append(r["data"]["train"]["tokens"])
    for task, sizes in by_task.items():
        if len(set(sizes)) > 1:
            lines.append(f"{task} train tokens: " + " vs ".join(f"{n:,}" for n in sizes))
    return lines


def _grouped(runs: Sequence[dict[str, Any]]) -> tuple[list[str], list[str], dict[tuple[str, str], dict[str, Any]]]:
    tasks, models, cells = [], [], {}
    for r in runs:
        key = (r["task"], r["model"])
        if key in cells:
            raise NeuroscopeError(f"two runs of {r['model']} x {r['task']}; compare one run per model and task")
        cells[key] = r
        if r["task"] not in tasks:
            tasks.append(r["task"])
        if r["model"] not in models:
            models.append(r["model"])
    return tasks, models, cells


def _block_table(title: str, runs, rows_for) -> Table:
    tasks, models, cells = _grouped(runs)
    rows = []
    for task in tasks:
        columns = [dict(rows_for(cells[(task, m)])) if (task, m) in cells else {} for m in models]
        labels: list[str] = []  # every row any run has (a run without a control task has no Sel rows)
        for c in columns:
            labels += [label for label in c if label not in labels]
        rows.append((task.upper(),) + ("",) * len(models))
        for label in labels:
            rows.append((label,) + tuple(c.get(label, "-") for c in columns))
    return Table(title, ("",) + tuple(models), tuple(rows))


def compare_tables(runs: Sequence[dict[str, Any]]) -> list[Table]:
    first_delta = {r["deltas"][0] for r in runs}
    if len(first_delta) != 1:
        raise NeuroscopeError("the runs use different first deltas; compare runs made with the same --deltas")
    delta = first_delta.pop()
    tables = [
        _block_table("Ablation, test (paper Table 1)", runs, lambda r: ablation_rows(r, "test")),
        _block_table(f"Minimal neuron set and selectivity, test, delta = {delta:g} (paper Table 2)", runs,
                     lambda r: minimal_rows(r, delta, "test", True)),
    ]
    later = sorted(set.intersection(*(set(r["deltas"][1:]) for r in runs)))
    for d in later:
        tables.append(_block_table(f"Minimal neuron set, test, delta = {d:g} (paper Table 3)", runs,
                                   lambda r, d=d: minimal_rows(r, d, "test", False)))
    tables.append(_block_table("Lambdas L1, L2 (paper Table 5)", runs,
                               lambda r: [("L1, L2", f"{r['lambdas']['l1']:g}, {r['lambdas']['l2']:g}")]))
    tables.append(_block_table("Ablation, dev (paper Table 6)", runs, lambda r: ablation_rows(r, "dev")))
    tables.append(_block_table(f"Minimal neuron set and selectivity, dev, delta = {delta:g} (paper Table 7)", runs,
                               lambda r: minimal_rows(r, delta, "dev", True)))
    tables.append(_block_table("Localized vs distributed: labels per top neuron (1 = disjoint)", runs,
                               lambda r: [("labels per neuron", fmt(r["summary"]["exclusivity"]["mean_labels_per_neuron"])),
                                          ("serving one label", fmt(r["summary"]["exclusivity"]["exclusive_percent"], 1) + "%")]))
    return tables


def compare_figures(runs: Sequence[dict[str, Any]], out: Path) -> dict[str, Path]:
    tasks, models, cells = _grouped(runs)
    figures: dict[str, Path] = {}
    fig, axes = subplots(len(tasks), len(models), figsize=(3.2 * len(models), 2.6 * len(tasks)), dpi=100,
                             squeeze=False, sharey=True)
    for i, task in enumerate(tasks):
        for j, model in enumerate(models):
            ax = axes[i][j]
            r = cells.get((task, model))
            if r is None:
                ax.axis("off")
                continue
            mean = r["summary"]["layer_distribution"]["mean"]
            spread = r["summary"]["layer_distribution"]["std"] if len(r["seeds"]) > 1 else None  # one seed: no bars
            ax.bar(range(len(mean)), mean, yerr=spread, capsize=2, color="#3b6ea8")
            ax.set_xticks(range(len(mean)), r["layers"], fontsize=6)
            ax.set_xlabel("layer", fontsize=7)
            ax.set_ylabel("neurons", fontsize=7)
            ax.set_title(f"({chr(97 + i * len(models) + j)}) {task.upper()} - {model}", fontsize=8)
    over = "mean ± std over seeds" if any(len(r["seeds"]) > 1 for r in runs) else "one seed each"
    fig.suptitle(f"Minimal-set neurons per layer, {over}, one y scale (paper Figure 1)", fontsize=10)
    save_figure(fig, out / "compare_layers.png")
    figures["compare_layers"] = out / "compare_layers.png"

    for task in tasks:
        present = [m for m in models if (task, m) in cells]
        labels = sorted(set.intersection(*(set(cells[(task, m)]["labels"]) for m in present)))
        if not labels:
            continue
        width = 0.8 / len(present)
        fig, ax = subplots(figsize=(max(6, 0.3 * len(labels)), 3.4), dpi=100)
        for k, model in enumerate(present):
            counts = [cells[(task, model)]["summary"]["neurons_per_label"][lab]["mean"] for lab in labels]
            ax.bar(np.arange(len(labels)) + k * width, counts, width=width, label=model)
        ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, rotation=90, fontsize=7)
        ax.set_ylabel("neurons")
        ax.set_title(f"{task.upper()}: neurons per label across models (paper Figures 3, 4)", fontsize=9)
        ax.legend(fontsize=7)
        path = out / f"compare_labels_{task}.png"
        save_figure(fig, path)
        figures[f"compare_labels_{task}"] = path
    return figures


def by_ranker(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One column per ranker of a run that holds several (named "model / ranker"), else the run."""
    names = results.get("rankers", [])
    if len(names) < 2:
        return [results]
    return [{**with_ranker(results, name), "model": f"{results['model']} / {name}"} for name in names]


def compare(run_dirs: Sequence[Path], out: Path) -> list[Path]:
    """Write compare.md, figures and compare.html for the given run directories into ``out``."""
    if len(run_dirs) < 1:
        raise NeuroscopeError("name at least one run directory")
    loaded = [load_results(Path(d)) for d in run_dirs]
    configs = [read_json(Path(d) / "config.json", "the run's settings") if (Path(d) / "config.json").is_file()
               else {} for d in run_dirs]
    names = name_columns(loaded, configs)
    differences = protocol_differences(loaded, configs)
    for line in differences:
        log.warning("the runs differ in %s: their numbers are not directly comparable", line)
    loaded = [{**r, "model": name} for r, name in zip(loaded, names)]
    runs = [column for r in loaded for column in by_ranker(r)]
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NeuroscopeError(f"{out} is a file; --out must name a directory")
    out.mkdir(parents=True, exist_ok=True)
    tables = compare_tables(runs)
    for r in loaded:
        tables += [attrs.evolve(t, title=f"{r['model']} x {r['task']}: {t.title}") for t in ranker_tables(r)[2:3]]
    figures = compare_figures(runs, out)
    title = "neuroscope: " + ", ".join(f"{r['model']} x {r['task']}" for r in runs)
    intro = "Runs: " + "; ".join(str(d) for d in run_dirs) + (
        ". Values are mean ± std over each run's seeds." if any(len(r["seeds"]) > 1 for r in loaded)
        else ". One seed each, so no spread is shown.")
    if differences:
        intro += " Warning: the runs differ in protocol settings, so their numbers are not directly comparable: " \
                 + "; ".join(differences) + "."
    md = [f"# {title}", "", intro, ""] + [t.markdown() for t in tables]
    md += [f"![{name}]({path.name})\n" for name, path in figures.items()]
    write_text(out / "compare.md", "\n".join(md))
    write_text(out / "compare.html", html_page(title, intro, tables, figures))
    return [out / "compare.md", *figures.values(), out / "compare.html"]
