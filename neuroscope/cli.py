"""The ``neuroscope`` command: parses arguments, prints with rich, and calls the layer below
(:mod:`neuroscope.planning` for ``run``, :mod:`neuroscope.runs` for a finished run's neurons,
:mod:`neuroscope.report` and :mod:`neuroscope.compare`, the store, the registry). It is the
one error boundary of the command line: no logic of its own."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

from rich.console import Console
from rich.markup import escape as escape_markup
from rich.text import Text
from rich.logging import RichHandler
from rich.table import Table

from neuroscope.choices import EXPORT_FORMATS
from neuroscope.errors import NeuroscopeError, StoreError, ValidationError
from neuroscope.rundir import find_run
from neuroscope.settings import add_run_arguments, split_names
from neuroscope.version import __version__

log = logging.getLogger("neuroscope")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks and shows a default as "(default: ...)" where the
    help does not already say it and there is one to show (not None, not an off switch)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "default" in text or default is None or action.nargs == 0 or default == argparse.SUPPRESS or \
                not action.option_strings:
            return text
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        return f"{text} (default: {shown})"


RUN_EXAMPLES = """examples:
  neuroscope run --model minilm --task pos --data-dir ../shared/data
  neuroscope run --model minilm --task pos,chunk --seeds 1 --max-sentences 600,200,200
  neuroscope run --model elmo:/models/elmo --task sem --l1 1e-5 --l2 1e-5
  neuroscope run --model minilm --task pos --ranker weight-mass,probeless,iou,gaussian,random
  neuroscope run --out runs/my-run --resume          # continue an interrupted run

model and task names: `neuroscope plugins` lists them (registry.toml aliases and
registered adapters and readers); docs/cli.md describes every option."""


def _sub(sub: Any, name: str, help: str, examples: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                          epilog="examples:\n" + examples, formatter_class=_HelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neuroscope", formatter_class=_HelpFormatter,
        description="Neuron-level analysis of pre-trained language models (Durrani et al., EMNLP 2020).",
        epilog="examples:\n  neuroscope run --model minilm --task pos --data-dir ../shared/data\n"
               "  neuroscope report runs/minilm-pos\n  neuroscope plugins\n\n"
               "`neuroscope COMMAND --help` describes each command.")
    parser.add_argument("--version", action="version", version=f"neuroscope {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-vv for debug); shows the traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the paper's protocol for models x tasks", epilog=RUN_EXAMPLES,
                         description="Run the paper's protocol (lambda search, oracle probe, ranking, ablation, "
                                     "minimal neuron set, control task) for every model x task.",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(run)

    _sub(sub, "plugins", "list loaded plugins, their hooks and versions, conflicts, and every model and task name",
         "  neuroscope plugins")

    _sub(sub, "rankers", "list the neuron rankers and probes: what each needs, its cost and the paper it implements",
         "  neuroscope rankers")

    report = _sub(sub, "report", "re-render tables, figures and report.html of a run from its results.json",
                  "  neuroscope report runs/minilm-pos")
    report.add_argument("run_dir", type=find_run, metavar="RUN_DIR", help="a finished run directory (holds results.json)")

    export = _sub(sub, "export", "write a finished run in a format other tools read (safetensors: each seed's "
                  "oracle probe; parquet: each split's activations as a word table; docs/results.md, \"Export\")",
                  "  neuroscope export runs/minilm-pos --to safetensors probes/\n"
                  "  neuroscope export runs/minilm-pos --to parquet activations/")
    export.add_argument("run_dir", type=find_run, metavar="RUN_DIR", help="a finished run directory")
    export.add_argument("out", type=Path, metavar="OUT", help="a new or empty directory for the files")
    export.add_argument("--to", required=True, choices=EXPORT_FORMATS, help="the format")
    export.add_argument("--features", default="all", choices=("all", "top"),
                        help="neuronpedia: a feature for every neuron, or for the run's first ranking's top --fraction")

    data = _sub(sub, "data", "list, fetch and verify datasets",
                "  neuroscope data list --data-dir ../shared/data --verify\n"
                "  neuroscope data fetch chunk --data-dir data --from ../shared/data")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    data_list = _sub(data_sub, "list", "every known dataset: where, present, size, labels, licence",
                     "  neuroscope data list --data-dir ../shared/data")
    data_list.add_argument("--data-dir", type=Path, default=None, help="data directory (default: $NEUROSCOPE_DATA, "
                           "else data in the cache directory, $NEUROSCOPE_CACHE or ~/.cache/neuroscope)")
    data_list.add_argument("--verify", action="store_true", help="check every present file's sha256; exit 2 on a "
                           "mismatch")
    data_fetch = _sub(data_sub, "fetch", "download a public dataset (or copy it from --from), checksummed",
                      "  neuroscope data fetch chunk --data-dir data")
    data_fetch.add_argument("name", help="dataset name (or a task that uses it)")
    data_fetch.add_argument("--data-dir", type=Path, default=None, help="data directory (default: "
                            "$NEUROSCOPE_DATA, else data in the cache directory, $NEUROSCOPE_CACHE or "
                            "~/.cache/neuroscope)")
    data_fetch.add_argument("--from", dest="source", type=Path, default=None,
                            help="copy from a local mirror with the same layout instead of downloading")

    cache = _sub(sub, "cache", "list, verify and remove entries of the activation store",
                 "  neuroscope cache list\n  neuroscope cache verify\n  neuroscope cache remove 3f2a9c\n"
                 "  neuroscope cache prune\n  neuroscope cache import activations/*.parquet")
    cache_sub = cache.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    cache_help = "activation store (default: $NEUROSCOPE_CACHE or ~/.cache/neuroscope)"
    cache_list = _sub(cache_sub, "list", "every entry: key, model, corpus, size, state", "  neuroscope cache list")
    cache_verify = _sub(cache_sub, "verify", "check every chunk checksum of complete entries; exit 2 if any is "
                        "damaged", "  neuroscope cache verify\n  neuroscope cache verify 3f2a9c")
    cache_verify.add_argument("keys", nargs="*", metavar="KEY", help="entries to verify (a key or its prefix; "
                              "default: all)")
    cache_remove = _sub(cache_sub, "remove", "delete entries (they are re-extracted when a run needs them)",
                        "  neuroscope cache remove 3f2a9c")
    cache_remove.add_argument("keys", nargs="+", metavar="KEY", help="entries to delete (a key or its prefix)")
    cache_prune = _sub(cache_sub, "prune", "delete interrupted extractions no run is continuing, and entries that "
                       "fail verification", "  neuroscope cache prune")
    cache_import = _sub(cache_sub, "import", "store the activations of parquet files written by `neuroscope export "
                        "--to parquet` as the entries they were exported from, every checksum checked",
                        "  neuroscope cache import activations/train.parquet activations/dev.parquet")
    cache_import.add_argument("files", nargs="+", type=Path, metavar="FILE", help="exported parquet files")
    for p in (cache_list, cache_verify, cache_remove, cache_prune, cache_import):
        p.add_argument("--cache-dir", type=Path, default=None, help=cache_help)

    neurons = _sub(sub, "neurons", "a run's top neurons: overall or for one label, with layer, unit, rank, weight "
                   "and top words", "  neuroscope neurons runs/minilm-pos --label NN -k 10\n"
                   "  neuroscope neurons runs/minilm-pos -k 20 --ranker probeless\n"
                   "  neuroscope neurons runs/minilm-pos-site-mlp -k 3 --dashboard")
    neurons.add_argument("run_dir", type=find_run, metavar="RUN_DIR", help="a finished run directory")
    neurons.add_argument("--label", default=None, help="a label of the task (default: the ranking's top neurons)")
    neurons.add_argument("-k", type=int, default=10, help="how many neurons")
    neurons.add_argument("--ranker", default=None, help="whose ranking (default: the run's first ranker)")
    neurons.add_argument("--seed", type=int, default=0, help="whose oracle probe and ranking")
    neurons.add_argument("--words", type=int, default=5, help="top words shown per neuron (0: none)")
    neurons.add_argument("--by", choices=("contribution", "weight", "precision"), default="contribution",
                         help="how a label's neurons are ordered (docs/python.md): the probe's contribution, |weight|, "
                              "or, of the 50 largest contributions, the precision at 20 of their top words")
    neurons.add_argument("--glu", action="store_true", help="with each top word, the signs of a gated MLP "
                         "neuron's gate and up projections (GLUScope's four cases; runs of --site mlp of Llama-style "
                         "models; runs the model on those sentences)")
    neurons.add_argument("--dashboard", action="store_true", help="after the table, each neuron's dashboard "
                         "(docs/results.md, \"Neuron dashboards\"): tags, share active, range, a word at each decile "
                         "range, correlated neurons and, at the mlp site of a decoder, the tokens it promotes and "
                         "suppresses")
    neurons.add_argument("--device", default="cpu", help="where the model runs for --glu: cpu or cuda[:N]")

    show = _sub(sub, "show", "colour a sentence's words by chosen neurons' activations (the run's model)",
                "  neuroscope show runs/minilm-pos --sentence \"The old man the boats .\" "
                "--neurons 5:112,3:77\n  neuroscope show runs/minilm-pos --sentence \"...\" --label NN "
                "--out nn.svg")
    show.add_argument("run_dir", type=find_run, metavar="RUN_DIR", help="a finished run directory")
    show.add_argument("--sentence", required=True, help="the sentence, words separated by spaces")
    show.add_argument("--neurons", type=split_names, default=None, metavar="L:U[,L:U...]",
                      help="neurons as layer:unit (default: the top 5 of --label, or of the ranking)")
    show.add_argument("--label", default=None, help="show the top neurons of this label")
    show.add_argument("-k", type=int, default=5, help="how many top neurons when --neurons is not given")
    show.add_argument("--out", type=Path, default=None, help="write .html, .svg or .png instead of the terminal")
    show.add_argument("--device", default="cpu", help="where the model runs: cpu or cuda[:N]")
    show.add_argument("--subwords", action="store_true", help="colour the model's sub-tokens instead of words "
                      "(transformers models)")
    for p in (neurons, show):
        p.add_argument("--site", default=None, help="the site the run read (hidden, mlp, attn...): checked, since a "
                       "run holds one site's neurons (default: the run's)")

    bench = _sub(sub, "bench-rankers", "NeuronBench: score every ranker against planted ground truth and on "
                 "finished runs; leaderboard.json and leaderboard.html", "  neuroscope bench-rankers\n"
                 "  neuroscope bench-rankers --ranker f-stat,weight-mass,random --setting clean,noisy --seeds 3\n"
                 "  neuroscope bench-rankers --runs runs/minilm-pos --no-planted")
    bench.add_argument("--ranker", type=split_names, default=None, metavar="NAME[,NAME...]",
                       help="rankers to score (default: every registered ranker, third-party ones included)")
    bench.add_argument("--setting", type=split_names, default=None, metavar="NAME[,NAME...]",
                       help="planted settings (default: all; docs/ranking.md lists them)")
    bench.add_argument("--seeds", type=int, default=5, help="planted data sets drawn per setting")
    bench.add_argument("--l1", type=float, default=1e-3, help="the probe's L1 lambda for rankers that read a probe")
    bench.add_argument("--l2", type=float, default=1e-5, help="the probe's L2 lambda")
    bench.add_argument("--runs", type=find_run, nargs="*", default=[], metavar="RUN_DIR",
                       help="finished runs to score each of their rankers on (keep-top area, top - random, "
                            "selectivity, in-model effect, seed stability)")
    bench.add_argument("--no-planted", action="store_true", help="only the real runs' board")
    bench.add_argument("--out", type=Path, default=Path("neuronbench"), help="output directory")

    comp = _sub(sub, "compare", "put several runs (models, tasks) side by side",
                "  neuroscope compare runs/minilm-pos runs/minilm-chunk")
    comp.add_argument("run_dirs", type=find_run, nargs="+", metavar="RUN_DIR", help="finished run directories")
    comp.add_argument("--out", type=Path, default=None, help="output directory (default: runs/compare-<date>)")
    return parser


def _setup_logging(verbose: int, console: Console) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    handler = RichHandler(console=console, show_path=False, show_time=False)
    logging.basicConfig(level=level, handlers=[handler], format="%(message)s", force=True)


def run_parser() -> argparse.ArgumentParser:
    """The ``run`` command's parser alone (its options: :mod:`neuroscope.settings`)."""
    parser = argparse.ArgumentParser(prog="neuroscope run", formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    return parser


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from neuroscope.planning import execute, plan_runs
    from neuroscope.progress import Reporter
    from neuroscope.settings import request_from_values

    request = request_from_values(vars(args))
    execute(plan_runs(request), Reporter(quiet=request.plan.quiet, console=console))
    return 0


def escape(text: str) -> str:
    """Text from files (corpus words, labels, registry entries) as a table cell: rich markup
    escaped and control characters (a terminal's escape sequences among them) shown as
    ``\\xNN`` instead of reaching the terminal."""
    shown = "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in str(text))
    return escape_markup(shown)


def _table(title: str, columns: tuple[str, ...], whole: tuple[str, ...] = ()) -> Table:
    """A table whose cells wrap instead of being cut (pipes and narrow terminals included);
    the ``whole`` columns (names people type) never break, the others wrap between words."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold", no_wrap=column in whole)
    return table


def cmd_plugins(args: argparse.Namespace, console: Console) -> int:
    from neuroscope.registry import Registry

    registry = Registry()
    table = _table("neuroscope plugins", ("plugin", "from", "provides (by hook)"), whole=("plugin",))
    for p in registry.plugins:
        provides = "; ".join(f"{k}: {', '.join(v)}" for k, v in p.provides.items())
        table.add_row(*(escape(c) for c in (p.name, f"{p.distribution} {p.version} ({p.origin})", provides)))
    console.print(table)
    for failure in registry.failures:
        console.print(Text.assemble(("failed ", "red"), f"{failure.name}: {failure.error}"))
    for problem in registry.problems():
        console.print(Text.assemble(("conflict ", "red"), problem))
    aliases = _table("models and tasks (registry.toml)", ("kind", "name", "uses", "description"),
                     whole=("kind", "name", "uses"))
    for kind, key in (("models", "adapter"), ("tasks", "reader")):
        for name, entry in sorted(registry.file[kind].items()):
            aliases.add_row(*(escape(c) for c in (kind[:-1], name, entry[key], entry.get("description", ""))))
    console.print(aliases)
    return 0


def cmd_rankers(args: argparse.Namespace, console: Console) -> int:
    from neuroscope.rankers import info_of
    from neuroscope.registry import Registry

    registry = Registry()
    table = _table("neuron rankers (--ranker)", ("name", "aliases", "needs", "options", "cost", "implements",
                                                   "plugin"))
    for entry in registry.entries("rankers"):
        info = info_of(entry.obj)
        options = ", ".join(f"{k}={v}" for k, v in info.options.items())
        table.add_row(*(escape(c) for c in (entry.name, ", ".join(entry.aliases), " and ".join(info.needs) or
                                              "nothing", options or "-", info.cost or "-", info.cite or "-",
                                              entry.plugin)))
    console.print(table)
    probes = _table("probes (--probe)", ("name", "aliases", "class", "plugin"))
    for entry in registry.entries("probes"):
        probes.add_row(*(escape(c) for c in (entry.name, ", ".join(entry.aliases),
                                             f"{entry.obj.__module__}.{entry.obj.__name__}", entry.plugin)))
    console.print(probes)
    console.print("Options come from [rankers.NAME] / [probes.NAME] tables of a registry.toml (docs/ranking.md).",
                  markup=False, highlight=False)
    return 0


def cmd_bench_rankers(args: argparse.Namespace, console: Console) -> int:
    from neuroscope.cell import resolve_ranker
    from neuroscope.neuronbench import planted_board, run_board, write_board
    from neuroscope.planted import SETTINGS, setting_of
    from neuroscope.registry import Registry
    from neuroscope.validation import check_number

    check_number("--seeds", args.seeds, low=1, integer=True)
    for name in ("l1", "l2"):
        check_number(f"--{name}", getattr(args, name), low=0)
    settings = args.setting or list(SETTINGS)
    for name in settings:
        setting_of(name)
    if args.no_planted and not args.runs:
        raise ValidationError("--no-planted with no --runs: nothing to score")
    registry = Registry()
    names = args.ranker or [entry.name for entry in registry.entries("rankers")]
    rankers = {name: resolve_ranker(registry, name) for name in names}
    planted = None
    if not args.no_planted:
        planted = planted_board(rankers, settings, args.seeds, args.l1, args.l2,
                                progress=lambda line: console.print(line, markup=False, highlight=False))
        table = _table(f"NeuronBench, planted: {len(settings)} settings x {args.seeds} seeds (mean, 95 % bootstrap "
                       "interval)", ("ranker", "average precision", "recall at k", "worst setting"), whole=("ranker",))
        for row in planted["leaderboard"]:
            table.add_row(escape(row["ranker"]), *(f"{row[m]['mean']:.3f} [{row[m]['low']:.3f}, {row[m]['high']:.3f}]"
                                                   for m in ("ap", "recall_at_k")), escape(row["worst_setting"] or "-"))
        console.print(table)
        for name, reason in planted["skipped"].items():
            console.print(f"not run on planted data: {name} ({reason})", markup=False, highlight=False)
    runs = run_board(args.runs) if args.runs else None
    for entry in (runs or {}).get("runs", []):
        table = _table(f"{entry['model']} x {entry['task']} ({entry['site']}), {len(entry['seeds'])} seed(s)",
                       ("ranker", "keep-top area", "top - random", "selectivity", "in-model effect", "seed Jaccard",
                        "rotation gap"), whole=("ranker",))
        for name, row in entry["rankers"].items():
            cells = [f"{row[k]['mean']:.2f}" if row.get(k) else "-" for k in
                     ("keep_top_area", "top_minus_random", "selectivity", "causal_effect")]
            table.add_row(escape(name), *cells, "-" if row["seed_jaccard"] is None else f"{row['seed_jaccard']:.3f}",
                          f"{row['rotation_gap']['mean']:.2f}" if row.get("rotation_gap") else "-")
        console.print(table)
    for path in write_board(args.out, planted, runs):
        console.print(f"wrote {path}", markup=False, highlight=False)
    return 0


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from neuroscope.report import rerender

    for path in rerender(args.run_dir):
        console.print(f"wrote {path}", markup=False, highlight=False)
    return 0


def cmd_export(args: argparse.Namespace, console: Console) -> int:
    from neuroscope.runs import Run

    written = Run(args.run_dir).export(args.to, args.out, features=args.features)
    for path in written[:20]:
        console.print(f"wrote {path}", markup=False, highlight=False)
    if len(written) > 20:
        console.print(f"... and {len(written) - 20} more files under {args.out}", markup=False, highlight=False)
    return 0


def cmd_neurons(args: argparse.Namespace, console: Console) -> int:
    from neuroscope.runs import Run

    if args.glu and args.words < 1:
        raise ValidationError("--glu shows the gate and up signs at each top word: give --words N (N >= 1)")
    run = Run(args.run_dir)
    run.check_site(args.site)
    tops = run.top_neurons(label=args.label, k=args.k, ranker=args.ranker, seed=args.seed, by=args.by)
    title = f"top neurons of {args.label}" if args.label else f"top neurons of the {args.ranker or run.rankers[0]} ranking"
    columns = ["layer:unit", "rank", "weight" if args.label else "largest weight"]
    precision = bool(args.label) and args.by == "precision"
    if precision:
        columns.append("top 20 of the label")
    if args.words:
        columns.append("top words (label, gate and up signs)" if args.glu else "top words (label)")
    table = _table(f"{title} ({run.results['model']} x {run.results['task']}, seed {args.seed})", tuple(columns))
    for top in tops:
        if args.label:
            weight = f"{top.weight:+.3f}"
        else:
            best = max(top.weights, key=lambda lab: abs(top.weights[lab]))
            weight = f"{top.weights[best]:+.3f} ({best})"
        row = [f"{top.layer}:{top.unit}", str(top.rank), weight]
        if precision:
            row.append(f"{100 * top.score:.0f} %")
        if args.words:
            words = run.neuron(top).top_words(args.words, glu=args.glu, device=args.device)
            row.append(", ".join(f"{w.word} ({w.label}{', ' + w.glu_case if w.glu_case else ''})" for w in words))
        table.add_row(*(escape(c) for c in row))
    console.print(table)
    if args.dashboard:
        from neuroscope.neuron_pages import dashboard_lines

        for board in run.dashboards(tops):
            console.print("\n".join(dashboard_lines(board, run.index)), markup=False, highlight=False, soft_wrap=True)
    return 0


def cmd_show(args: argparse.Namespace, console: Console) -> int:
    from neuroscope.runs import Run

    run = Run(args.run_dir)
    run.check_site(args.site)
    neurons = args.neurons if args.neurons else run.top_neurons(label=args.label, k=args.k)
    heat = run.show(args.sentence, neurons, device=args.device, subwords=args.subwords, site=args.site)
    if args.out is not None:
        console.print(f"wrote {heat.save(args.out)}", markup=False, highlight=False)
    elif console.is_terminal:
        console.print(heat.to_text())
    else:  # a pipe or a file: the numbers the colours stand for
        console.print(heat.to_plain(), markup=False, highlight=False, soft_wrap=True)
    return 0


def cmd_compare(args: argparse.Namespace, console: Console) -> int:
    import datetime as dt

    from neuroscope.compare import compare

    out = args.out or Path("runs") / f"compare-{dt.date.today().isoformat()}"
    for path in compare(args.run_dirs, out):
        console.print(f"wrote {path}", markup=False, highlight=False)
    return 0


def cmd_data(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    from neuroscope.datasets import datasets, fetch, get_dataset, status
    from neuroscope.settings import default_data_dir
    from neuroscope.registry import Registry

    registry = Registry()
    data_dir = args.data_dir or default_data_dir()
    if args.data_command == "list":
        mismatched = []
        console.print(Text(f"datasets under {data_dir}", style="bold"))
        for ds in datasets(registry):
            st = status(ds, data_dir, registry, verify=args.verify)
            if st["present"]:
                state = "[green]present[/]"
                if "verified" in st:
                    state += ", sha256 ok" if st["verified"] else ", [red]SHA256 MISMATCH[/]"
                    if not st["verified"]:
                        mismatched.append(ds.name)
                state += f", {st['size'] / 2**20:.1f} MiB"
            else:
                state = ("[yellow]licensed: obtain it[/]" if ds.licensed
                         else f"[yellow]missing[/]: neuroscope data fetch {escape(ds.name)}")
            labels = ", ".join(f"{t} ({n} labels)" if isinstance(n, int) else f"{t} ({n})" for t, n in st["labels"].items())
            console.print(f"\n[bold]{escape(ds.name)}[/]  {state}")
            plain = [f"  {ds.description}", f"  tasks: {labels or ', '.join(ds.tasks) or '-'}"]
            plain += [f"  {path}" for path in st["expected"]] + [f"  licence: {ds.licence}"]
            if ds.licensed and not st["present"]:
                plain.append(f"  obtain: {ds.obtain}")
            for line in plain:
                console.print(line, markup=False, highlight=False)
        if mismatched:
            raise NeuroscopeError(f"sha256 mismatch in {', '.join(mismatched)}: the files differ from the published "
                                  f"ones; fetch them again with `neuroscope data fetch NAME`")
        return 0
    ds = get_dataset(registry, args.name)
    with Progress(TextColumn(f"[bold]{escape(ds.name)}"), BarColumn(), DownloadColumn(), console=console,
                  disable=not console.is_terminal) as bar:
        task = bar.add_task("fetch", total=None)

        def advance(n: int, total: int | None) -> None:
            bar.update(task, advance=n, total=total)

        paths = fetch(ds, data_dir, args.source, advance)
    for path in paths:
        console.print(f"{path}: sha256 verified", markup=False, highlight=False)
    console.print(f"licence: {ds.licence}", markup=False, highlight=False)
    return 0


def cmd_cache(args: argparse.Namespace, console: Console) -> int:
    from neuroscope.settings import default_cache_dir
    from neuroscope.store import ActivationStore

    store = ActivationStore(Path(args.cache_dir or default_cache_dir()) / "activations")
    if args.cache_command == "list":
        entries = store.entries()
        table = _table(f"activation store {store.root}", ("key", "state", "model", "corpus", "sentences", "tokens",
                                                         "neurons", "size"))
        for e in entries:
            table.add_row(*(escape(str(c)) for c in (e.key, e.state, e.model, e.corpus, e.sentences, e.tokens,
                                                     e.neurons, f"{e.size / 2**20:.1f} MiB")))
        console.print(table)
        console.print(f"{len(entries)} entries, {sum(e.size for e in entries) / 2**30:.2f} GiB", markup=False)
        return 0
    if args.cache_command == "verify":
        if not store.root.is_dir():
            raise StoreError(f"{store.root}: no activation store here (--cache-dir, or $NEUROSCOPE_CACHE)")
        damaged = []
        states = {e.key: e.state for e in store.entries()}
        for key in store.match(args.keys) if args.keys else sorted(states):
            if states[key] in ("extracting", "interrupted"):
                console.print(Text.assemble((key, "bold"), f": {states[key]} extraction, not verified"))
                continue
            if states[key] != "complete":
                damaged.append(key)
                console.print(Text.assemble((key, "bold red"), f": {states[key]}"))
                continue
            try:
                store.open(key).verify()
                console.print(Text.assemble((key, "bold"), ": ok"))
            except StoreError as exc:
                damaged.append(key)
                console.print(Text.assemble((key, "bold red"), f": {exc}"))
        if damaged:
            raise StoreError(f"{len(damaged)} damaged entr{'y' if len(damaged) == 1 else 'ies'}: "
                             f"{', '.join(damaged)}; `neuroscope cache remove KEY` (or `prune`) deletes them and "
                             "the next run re-extracts")
        return 0
    if args.cache_command == "import":
        from neuroscope.parquet_store import import_parquet

        for path in args.files:
            entry = import_parquet(path, store)
            console.print(f"{path}: entry {entry.key} ({entry.shape[0]:,} words x {entry.shape[1]:,} neurons)",
                          markup=False)
        return 0
    keys = store.match(args.keys) if args.cache_command == "remove" else store.prunable()
    for key in keys:
        freed = store.remove(key)
        console.print(f"removed {key} ({freed / 2**20:.1f} MiB)", markup=False)
    if not keys:
        console.print("nothing to remove", markup=False)
    return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it unwinds as Ctrl-C does (locks released,
    temporary files removed, Ray tasks cancelled) and ends with one line."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """While the command runs, SIGTERM ends it as SIGINT does (one line, exit 143); the
    previous handler is restored after (main() may be called from a program)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _print_error(message: str) -> None:
    Console(stderr=True, soft_wrap=True).print(Text.assemble(("error: ", "bold red"), message))


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 success, 2 an error the user can fix (one line on stderr), 1 a bug
    in neuroscope (the traceback with -v), 130 interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    console = Console(stderr=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
    _setup_logging(args.verbose, Console(stderr=True))
    handlers = {"run": cmd_run, "plugins": cmd_plugins, "rankers": cmd_rankers, "report": cmd_report,
                "compare": cmd_compare, "data": cmd_data, "cache": cmd_cache, "neurons": cmd_neurons,
                "show": cmd_show, "bench-rankers": cmd_bench_rankers, "export": cmd_export}
    try:
        with _terminate_as_interrupt():
            return handlers[args.command](args, console)
    except NeuroscopeError as exc:
        _print_error(str(exc))
        return 2
    except OSError as exc:  # the environment: a missing, unreadable or unwritable file or directory
        _print_error(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
        return 2
    except Terminated:
        _print_error("terminated; `neuroscope run --out RUN_DIR --resume` continues a run where it stopped")
        return 143
    except KeyboardInterrupt:
        _print_error("interrupted; `neuroscope run --out RUN_DIR --resume` continues a run where it stopped")
        return 130
    except Exception as exc:
        if args.verbose:
            Console(stderr=True).print_exception()
        _print_error(f"unexpected {type(exc).__name__}: {exc}")
        Console(stderr=True, soft_wrap=True).print(
            "This is a bug in neuroscope. Please report it with the command you ran and the traceback "
            "(run again with -v to see it).", markup=False, highlight=False)
        return 1


if __name__ == "__main__":
    sys.exit(main())
