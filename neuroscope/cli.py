"""The ``neuroscope`` command: parses arguments, prints with rich, calls the orchestrator."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from neuroscope import __version__
from neuroscope.errors import NeuroscopeError
from neuroscope.model import AGGREGATIONS
from neuroscope.ablation import UNSEEN_RULES
from neuroscope.search import PAPER_VALUES

log = logging.getLogger("neuroscope")


def _split_list(value: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected one or more comma-separated names")
    return items


def _limits(value: str) -> tuple[int | None, int | None, int | None]:
    parts = value.split(",")
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("expected N or TRAIN,DEV,TEST sentence counts")
    try:
        return tuple(int(p) if p.strip() not in ("", "all") else None for p in parts)  # type: ignore[return-value]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a sentence count: {value!r}") from None


def _floats(value: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {value!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected one or more numbers")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neuroscope", description="Neuron-level analysis of pre-trained language models.")
    parser.add_argument("--version", action="version", version=f"neuroscope {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the paper's protocol for models x tasks")
    run.add_argument("--model", type=_split_list, default=["minilm"],
                     help="model names or aliases, comma-separated; hf:<name-or-path> for any transformers encoder")
    run.add_argument("--task", type=_split_list, default=["pos"], help="task names, comma-separated")
    run.add_argument("--data-dir", type=Path, default=None, help="data directory (default: $NEUROSCOPE_DATA, "
                     "then the user cache)")
    run.add_argument("--seeds", type=int, default=3, help="number of seeds (0 .. N-1); paper: 3")
    run.add_argument("--l1", type=float, default=None, help="fix the L1 lambda (with --l2) and skip the search")
    run.add_argument("--l2", type=float, default=None, help="fix the L2 lambda (with --l1) and skip the search")
    run.add_argument("--grid", type=_floats, default=PAPER_VALUES, metavar="V,V,...",
                     help="lambda values; the search tries every (l1, l2) pair (paper: 0,1e-1,...,1e-7)")
    run.add_argument("--alpha", type=float, default=0.5, help="weight of At - Ab in S (paper: 0.5)")
    run.add_argument("--beta", type=float, default=0.5, help="weight of Az - Al in S (paper: 0.5)")
    run.add_argument("--fraction", type=float, default=0.2, help="M, share of neurons kept in ablations (paper: 0.2)")
    run.add_argument("--deltas", type=_floats, default=(0.5, 2.0), metavar="D,D,...",
                     help="accuracy margins to the oracle for the minimal neuron set (paper: 0.5 and 2)")
    run.add_argument("--scan-step", type=float, default=0.01, help="minimal-set scan step, share of the network "
                     "(paper: 0.01)")
    run.add_argument("--scan-block", type=int, default=8, help="scan sizes trained together over one data read")
    run.add_argument("--no-control", action="store_true", help="skip the control task and selectivity")
    run.add_argument("--grid-memory", type=float, default=2.0, help="GiB for the weights of lambda settings "
                     "trained together")
    run.add_argument("--aggregation", choices=AGGREGATIONS, default="last", help="sub-word to word (paper: last)")
    run.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    run.add_argument("--epochs", type=int, default=10)
    run.add_argument("--lr", type=float, default=1e-3)
    run.add_argument("--batch-size", type=int, default=512, help="probe mini-batch size (paper: 512)")
    run.add_argument("--no-shuffle", action="store_true", help="visit training rows in corpus order (NeuroX); "
                     "default: shuffled mini-batches (paper)")
    run.add_argument("--l2-form", choices=("squared", "norm"), default="squared",
                     help="L2 penalty: squared norm (default) or the norm itself (NeuroX)")
    run.add_argument("--precision", choices=("float32", "bfloat16"), default="float32",
                     help="probe matrix products in float32 (default) or bfloat16 with float32 weights "
                          "(faster on CPUs with AVX512-BF16/AMX and recent GPUs; docs/probe.md)")
    run.add_argument("--extract-batch-size", type=int, default=32, help="sentences per forward pass")
    run.add_argument("--stride", type=int, default=100, help="weight-mass steps of the ranking (NeuroX: 100)")
    run.add_argument("--unseen-labels", choices=UNSEEN_RULES, default="error",
                     help="dev/test tokens whose label is not in train: count as errors, or exclude")
    run.add_argument("--max-sentences", type=_limits, default=(None, None, None), metavar="N|TRAIN,DEV,TEST",
                     help="use only the first sentences of each split (quick runs)")
    run.add_argument("--out", type=Path, default=None, help="run directory (one model x task only)")
    run.add_argument("--runs-dir", type=Path, default=Path("runs"), help="parent of run directories")
    run.add_argument("--cache-dir", type=Path, default=None, help="activation store (default: $NEUROSCOPE_CACHE "
                     "or ~/.cache/neuroscope)")
    run.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    run.add_argument("--quiet", action="store_true", help="no progress bars or summaries")

    sub.add_parser("plugins", help="list loaded plugins, their hooks and versions")

    report = sub.add_parser("report", help="re-render tables, figures and report.html of a run from results.json")
    report.add_argument("run_dir", type=Path)

    data = sub.add_parser("data", help="list, fetch and verify datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    data_list = data_sub.add_parser("list", help="every known dataset: where, present, size, labels, licence")
    data_list.add_argument("--data-dir", type=Path, default=None)
    data_list.add_argument("--verify", action="store_true", help="check every present file's sha256")
    data_fetch = data_sub.add_parser("fetch", help="download a public dataset (or copy it from --from), checksummed")
    data_fetch.add_argument("name", help="dataset name (or a task that uses it)")
    data_fetch.add_argument("--data-dir", type=Path, default=None)
    data_fetch.add_argument("--from", dest="source", type=Path, default=None,
                            help="copy from a local mirror with the same layout instead of downloading")

    comp = sub.add_parser("compare", help="put several runs (models, tasks) side by side")
    comp.add_argument("run_dirs", type=Path, nargs="+")
    comp.add_argument("--out", type=Path, default=None, help="output directory (default: runs/compare-<date>)")
    return parser


def _setup_logging(verbose: int, console: Console) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    handler = RichHandler(console=console, show_path=False, show_time=False)
    logging.basicConfig(level=level, handlers=[handler], format="%(message)s", force=True)


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from neuroscope.orchestrator import Orchestrator, RunConfig, default_cache_dir, default_data_dir, default_run_dir
    from neuroscope.progress import Reporter
    from neuroscope.registry import Registry

    registry = Registry()
    cells = [(m, t) for m in args.model for t in args.task]
    for model, task in cells:
        registry.resolve_model(model)
        registry.resolve_task(task)
    if args.out is not None and len(cells) > 1:
        raise NeuroscopeError("--out names one run directory; with several models or tasks use --runs-dir")
    reporter = Reporter(quiet=args.quiet, console=console)
    orchestrator = Orchestrator(registry, reporter, sys.argv)
    data_dir = args.data_dir or default_data_dir()
    cache_dir = args.cache_dir or default_cache_dir()
    for model, task in cells:
        config = RunConfig(
            model=model, task=task, data_dir=str(Path(data_dir).resolve()), seeds=tuple(range(args.seeds)),
            l1=args.l1, l2=args.l2, grid=args.grid, alpha=args.alpha, beta=args.beta, deltas=args.deltas,
            scan_step=args.scan_step, scan_block=args.scan_block, control=not args.no_control,
            grid_memory=int(args.grid_memory * 2**30), shuffle=not args.no_shuffle, l2_form=args.l2_form,
            precision=args.precision,
            fraction=args.fraction, aggregation=args.aggregation, device=args.device, epochs=args.epochs,
            lr=args.lr, batch_size=args.batch_size, extract_batch_size=args.extract_batch_size, stride=args.stride,
            unseen_labels=args.unseen_labels, max_sentences=args.max_sentences, cache_dir=str(Path(cache_dir).resolve()),
        )
        run_dir = args.out or default_run_dir(args.runs_dir, model, task)
        with reporter.running():
            results = orchestrator.run(config, run_dir, resume=args.resume)
        if not args.quiet:
            summary = results["summary"]
            test = summary["ablation"]["test"]
            lam = results["lambdas"]
            minimal = summary["minimal"][str(config.deltas[0])]
            console.print(f"[bold green]{model} x {task}[/]: lambdas {lam['l1']:g}, {lam['l2']:g} ({lam['chosen_by']}); "
                          f"test accuracy all {test['all']['mean']:.2f}, top {test['top']['mean']:.2f}, "
                          f"random {test['random']['mean']:.2f}, bottom {test['bottom']['mean']:.2f} "
                          f"(majority {results['majority_baseline']['test']:.2f})")
            line = (f"minimal set (delta {config.deltas[0]:g}): {minimal['n_neurons']['mean']:.0f} neurons "
                    f"({minimal['share']['mean']:.1f}%), test Acc_t {minimal['test']['selected']['mean']:.2f} "
                    f"vs Acc_a {minimal['test']['all']['mean']:.2f}")
            if summary["selectivity"]:
                sel = summary["selectivity"]["test"]
                line += f"; selectivity Sel_a {sel['all']['mean']:.2f}, Sel_t {sel['selected']['mean']:.2f}"
            console.print(line)
            console.print(f"run directory: {run_dir} (report.html, tables.md)")
    return 0


def cmd_plugins(args: argparse.Namespace, console: Console) -> int:
    from neuroscope.registry import Registry

    registry = Registry()
    table = Table(title="neuroscope plugins")
    for column in ("plugin", "origin", "distribution", "version", "hooks", "provides"):
        table.add_column(column)
    for p in registry.plugins:
        provides = "; ".join(f"{k}: {', '.join(v)}" for k, v in p.provides.items())
        table.add_row(p.name, p.origin, p.distribution, p.version, ", ".join(p.hooks), provides)
    console.print(table)
    for failure in registry.failures:
        console.print(f"[red]failed[/] {failure.name}: {failure.error}")
    aliases = Table(title="models and tasks (registry.toml)")
    for column in ("kind", "name", "uses", "description"):
        aliases.add_column(column)
    for kind, key in (("models", "adapter"), ("tasks", "reader")):
        for name, entry in sorted(registry.file[kind].items()):
            aliases.add_row(kind[:-1], name, entry[key], entry.get("description", ""))
    console.print(aliases)
    return 0


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from neuroscope.report import rerender

    for path in rerender(args.run_dir):
        console.print(f"wrote {path}")
    return 0


def cmd_compare(args: argparse.Namespace, console: Console) -> int:
    import datetime as dt

    from neuroscope.compare import compare

    out = args.out or Path("runs") / f"compare-{dt.date.today().isoformat()}"
    for path in compare(args.run_dirs, out):
        console.print(f"wrote {path}")
    return 0


def cmd_data(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    from neuroscope.datasets import datasets, fetch, get_dataset, status
    from neuroscope.orchestrator import default_data_dir
    from neuroscope.registry import Registry

    registry = Registry()
    data_dir = args.data_dir or default_data_dir()
    if args.data_command == "list":
        console.print(f"[bold]datasets under {data_dir}[/]")
        for ds in datasets(registry):
            st = status(ds, data_dir, registry, verify=args.verify)
            if st["present"]:
                state = "[green]present[/]"
                if "verified" in st:
                    state += ", sha256 ok" if st["verified"] else ", [red]SHA256 MISMATCH[/]"
                state += f", {st['size'] / 2**20:.1f} MiB"
            else:
                state = "[yellow]licensed: obtain it[/]" if ds.licensed else f"[yellow]missing[/]: neuroscope data fetch {ds.name}"
            labels = ", ".join(f"{t} ({n} labels)" if isinstance(n, int) else f"{t} ({n})" for t, n in st["labels"].items())
            console.print(f"\n[bold]{ds.name}[/]  {state}")
            console.print(f"  {ds.description}")
            console.print(f"  tasks: {labels or ', '.join(ds.tasks) or '-'}")
            for path in st["expected"]:
                console.print(f"  {path}", highlight=False)
            console.print(f"  licence: {ds.licence}")
            if ds.licensed and not st["present"]:
                console.print(f"  obtain: {ds.obtain}")
        return 0
    ds = get_dataset(registry, args.name)
    with Progress(TextColumn(f"[bold]{ds.name}"), BarColumn(), DownloadColumn(), console=console,
                  disable=not console.is_terminal) as bar:
        task = bar.add_task("fetch", total=None)

        def advance(n: int, total: int | None) -> None:
            bar.update(task, advance=n, total=total)

        paths = fetch(ds, data_dir, args.source, advance)
    for path in paths:
        console.print(f"{path}: sha256 verified")
    console.print(f"licence: {ds.licence}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=False, soft_wrap=True)
    _setup_logging(args.verbose, Console(stderr=True))
    handlers = {"run": cmd_run, "plugins": cmd_plugins, "report": cmd_report, "compare": cmd_compare,
                "data": cmd_data}
    try:
        return handlers[args.command](args, console)
    except NeuroscopeError as exc:
        Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
