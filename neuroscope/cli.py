"""The ``neuroscope`` command: parses arguments, prints with rich, calls the orchestrator."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.text import Text
from rich.logging import RichHandler
from rich.table import Table

from neuroscope import __version__
from neuroscope.errors import NeuroscopeError, StoreError, ValidationError
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


def _layers(value: str) -> tuple[int, ...]:
    from neuroscope.model import parse_layers

    try:
        return parse_layers(value) or ()
    except NeuroscopeError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--layers: ")) from None


def _epochs(value: str) -> int | str:
    if value.strip() == "auto":
        return "auto"
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of epochs or auto, got {value!r}") from None


def _floats(value: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {value!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected one or more numbers")
    return values


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every default as "(default: ...)" and keeps the examples' line breaks."""


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
               "  neuroscope report runs/2026-11-24-minilm-pos\n  neuroscope plugins\n\n"
               "`neuroscope COMMAND --help` describes each command.")
    parser.add_argument("--version", action="version", version=f"neuroscope {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-vv for debug); shows the traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the paper's protocol for models x tasks", epilog=RUN_EXAMPLES,
                         description="Run the paper's protocol (lambda search, oracle probe, ranking, ablation, "
                                     "minimal neuron set, control task) for every model x task.",
                         formatter_class=_HelpFormatter)
    run.add_argument("--model", type=_split_list, default=["minilm"], metavar="NAME[,NAME...]",
                     help="models, comma-separated: names from `neuroscope plugins`, hf:<name-or-path> for any "
                          "transformers encoder, elmo:DIR, telmo:PATH")
    run.add_argument("--task", type=_split_list, default=["pos"], metavar="NAME[,NAME...]",
                     help="tasks, comma-separated: names from `neuroscope plugins` (pos, chunk, sem, ccg, ...)")
    run.add_argument("--ranker", type=_split_list, default=["weight-mass"], metavar="NAME[,NAME...]",
                     help="neuron rankers, comma-separated, each judged on the same oracle probe and data "
                          "(`neuroscope rankers` lists them: weight-mass, probeless, iou, gaussian, random, ...)")
    run.add_argument("--probe", type=_split_list, default=["elastic-net"], metavar="NAME[,NAME...]",
                     help="probe types, comma-separated: one run directory each (`neuroscope rankers` lists them: "
                          "elastic-net, lbfgs)")
    run.add_argument("--data-dir", type=Path, default=None, help="data directory (default: $NEUROSCOPE_DATA, "
                     "then ~/.cache/neuroscope/data)")
    run.add_argument("--seeds", type=int, default=3, help="number of seeds, 0 .. N-1 (paper: 3)")
    run.add_argument("--l1", type=float, default=None, help="fix the L1 lambda (with --l2) and skip the search; "
                     "0 .. 1")
    run.add_argument("--l2", type=float, default=None, help="fix the L2 lambda (with --l1) and skip the search; "
                     "0 .. 1")
    run.add_argument("--grid", type=_floats, default=PAPER_VALUES, metavar="V,V,...",
                     help="lambda values, 0 .. 1; the search tries every (l1, l2) pair (paper: 0,1e-1,...,1e-7)")
    run.add_argument("--alpha", type=float, default=0.5, help="weight of At - Ab in the search score S (paper)")
    run.add_argument("--beta", type=float, default=0.5, help="weight of Az - Al in the search score S (paper)")
    run.add_argument("--fraction", type=float, default=0.2, help="M, share of neurons kept in ablations, "
                     "between 0 and 1 (paper)")
    run.add_argument("--deltas", type=_floats, default=(0.5, 2.0), metavar="D,D,...",
                     help="accuracy margins (points) to the oracle for the minimal neuron set (paper)")
    run.add_argument("--scan-step", type=float, default=0.01, help="minimal-set scan step, share of the network "
                     "(paper)")
    run.add_argument("--scan-block", type=int, default=8, help="scan sizes trained together over one data read")
    run.add_argument("--no-control", action="store_true", help="skip the control task and selectivity")
    run.add_argument("--grid-memory", type=float, default=2.0, help="GiB for the weights of lambda settings "
                     "trained together")
    run.add_argument("--aggregation", choices=AGGREGATIONS, default="last", help="sub-words to word (paper: last)")
    run.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    run.add_argument("--epochs", type=_epochs, default=10, metavar="N|auto",
                     help="probe training epochs (paper: 10), or auto: until the loss stops falling (docs/probe.md)")
    run.add_argument("--lr", type=float, default=1e-3, help="probe learning rate, Adam (paper)")
    run.add_argument("--batch-size", type=int, default=512, help="probe mini-batch size (paper)")
    run.add_argument("--no-shuffle", action="store_true", help="visit training rows in corpus order (NeuroX) "
                     "instead of shuffled mini-batches (paper)")
    run.add_argument("--l2-form", choices=("squared", "norm"), default="squared",
                     help="L2 penalty: squared norm, or the norm itself (NeuroX)")
    run.add_argument("--precision", choices=("float32", "bfloat16"), default="float32",
                     help="probe matrix products in float32, or bfloat16 with float32 weights "
                          "(faster on CPUs with AVX512-BF16/AMX and recent GPUs; docs/probe.md)")
    run.add_argument("--causal", action="store_true",
                     help="also remove each ranking's top / random / bottom --fraction inside the model's forward "
                          "pass and measure the probe on re-extracted test activations and the model's own loss "
                          "(docs/protocol.md, \"Causal ablation\")")
    run.add_argument("--causal-mode", choices=("zero", "mean"), default="zero",
                     help="--causal: set removed neurons to 0, or to their mean over the train tokens")
    run.add_argument("--causal-positions", choices=("words", "all"), default="words",
                     help="--causal: edit every sub-token of every word (special tokens untouched), or every position")
    run.add_argument("--layers", type=_layers, default=(), metavar="L[,L|FIRST-LAST...]",
                     help="keep only these layers (0: the embedding / token layer), e.g. 0,8-12: a smaller store for "
                          "a large model (default: every layer)")
    run.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                     help="the model's weights in this precision (transformers models; default float32)")
    run.add_argument("--extract-batch-size", type=int, default=32, help="sentences per forward pass")
    run.add_argument("--stride", type=int, default=100, help="weight-mass steps of the ranking (NeuroX)")
    run.add_argument("--unseen-labels", choices=UNSEEN_RULES, default="error",
                     help="dev/test tokens whose label is not in train: count as errors, or exclude")
    run.add_argument("--max-sentences", type=_limits, default=(None, None, None), metavar="N|TRAIN,DEV,TEST",
                     help="use only the first sentences of each split (quick runs; default: all)")
    run.add_argument("--out", type=Path, default=None, help="run directory (one model x task only; default: "
                     "RUNS_DIR/<date>-<model>-<task>)")
    run.add_argument("--runs-dir", type=Path, default=Path("runs"), help="parent of run directories")
    run.add_argument("--cache-dir", type=Path, default=None, help="activation store (default: $NEUROSCOPE_CACHE "
                     "or ~/.cache/neuroscope)")
    run.add_argument("--resume", action="store_true",
                     help="continue interrupted runs: the one in --out, or each cell's run directory under --runs-dir "
                          "(named by today's date); finished steps are reused")
    run.add_argument("--executor", default="local",
                     help="what runs the plan's units (extraction per model and corpus, then per run directory the "
                          "lambda search, one unit per seed and the report): local (here; in order, or several at once "
                          "with --cpus) or ray (in parallel on a Ray cluster; docs/distributed.md)")
    run.add_argument("--address", default=None,
                     help="--executor ray: a running cluster (ray://HEAD:10001 or HOST:6379); default: a local Ray "
                          "started for the run")
    run.add_argument("--cpus", type=int, default=None,
                     help="--executor local: run up to CPUS / --cpus-per-unit independent units at once in worker "
                          "processes (default: one at a time, here); --executor ray without --address: CPUs of the "
                          "local Ray (default: all)")
    run.add_argument("--cpus-per-unit", type=int, default=0,
                     help="CPUs each unit declares; torch and BLAS threads in the unit are limited to them (default: "
                          "local, all of the machine's; ray, 1)")
    run.add_argument("--quiet", action="store_true", help="no progress bars or summaries")

    _sub(sub, "plugins", "list loaded plugins, their hooks and versions, conflicts, and every model and task name",
         "  neuroscope plugins")

    _sub(sub, "rankers", "list the neuron rankers and probes: what each needs, its cost and the paper it implements",
         "  neuroscope rankers")

    report = _sub(sub, "report", "re-render tables, figures and report.html of a run from its results.json",
                  "  neuroscope report runs/2026-11-24-minilm-pos")
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a finished run directory (holds results.json)")

    data = _sub(sub, "data", "list, fetch and verify datasets",
                "  neuroscope data list --data-dir ../shared/data --verify\n"
                "  neuroscope data fetch chunk --data-dir data --from ../shared/data")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    data_list = _sub(data_sub, "list", "every known dataset: where, present, size, labels, licence",
                     "  neuroscope data list --data-dir ../shared/data")
    data_list.add_argument("--data-dir", type=Path, default=None, help="data directory (default: $NEUROSCOPE_DATA, "
                           "then ~/.cache/neuroscope/data)")
    data_list.add_argument("--verify", action="store_true", help="check every present file's sha256; exit 2 on a "
                           "mismatch")
    data_fetch = _sub(data_sub, "fetch", "download a public dataset (or copy it from --from), checksummed",
                      "  neuroscope data fetch chunk --data-dir data")
    data_fetch.add_argument("name", help="dataset name (or a task that uses it)")
    data_fetch.add_argument("--data-dir", type=Path, default=None, help="data directory (default: "
                            "$NEUROSCOPE_DATA, then ~/.cache/neuroscope/data)")
    data_fetch.add_argument("--from", dest="source", type=Path, default=None,
                            help="copy from a local mirror with the same layout instead of downloading")

    cache = _sub(sub, "cache", "list, verify and remove entries of the activation store",
                 "  neuroscope cache list\n  neuroscope cache verify\n  neuroscope cache remove 3f2a9c\n"
                 "  neuroscope cache prune")
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
    for p in (cache_list, cache_verify, cache_remove, cache_prune):
        p.add_argument("--cache-dir", type=Path, default=None, help=cache_help)

    neurons = _sub(sub, "neurons", "a run's top neurons: overall or for one label, with layer, unit, rank, weight "
                   "and top words", "  neuroscope neurons runs/2026-11-24-minilm-pos --label NN -k 10\n"
                   "  neuroscope neurons runs/2026-11-24-minilm-pos -k 20 --ranker probeless")
    neurons.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a finished run directory")
    neurons.add_argument("--label", default=None, help="a label of the task (default: the ranking's top neurons)")
    neurons.add_argument("-k", type=int, default=10, help="how many neurons")
    neurons.add_argument("--ranker", default=None, help="whose ranking (default: the run's first ranker)")
    neurons.add_argument("--seed", type=int, default=0, help="whose oracle probe and ranking")
    neurons.add_argument("--words", type=int, default=5, help="top words shown per neuron (0: none)")
    neurons.add_argument("--by", choices=("contribution", "weight", "precision"), default="contribution",
                         help="how a label's neurons are ordered (docs/python.md): the probe's contribution, |weight|, "
                              "or, of the 50 largest contributions, the precision at 20 of their top words")

    show = _sub(sub, "show", "colour a sentence's words by chosen neurons' activations (the run's model)",
                "  neuroscope show runs/2026-11-24-minilm-pos --sentence \"The old man the boats .\" "
                "--neurons 5:112,3:77\n  neuroscope show runs/2026-11-24-minilm-pos --sentence \"...\" --label NN "
                "--out nn.svg")
    show.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a finished run directory")
    show.add_argument("--sentence", required=True, help="the sentence, words separated by spaces")
    show.add_argument("--neurons", type=_split_list, default=None, metavar="L:U[,L:U...]",
                      help="neurons as layer:unit (default: the top 5 of --label, or of the ranking)")
    show.add_argument("--label", default=None, help="show the top neurons of this label")
    show.add_argument("-k", type=int, default=5, help="how many top neurons when --neurons is not given")
    show.add_argument("--out", type=Path, default=None, help="write .html, .svg or .png instead of the terminal")
    show.add_argument("--device", default="cpu", help="where the model runs: cpu or cuda[:N]")
    show.add_argument("--subwords", action="store_true", help="colour the model's sub-tokens instead of words "
                      "(transformers models)")

    comp = _sub(sub, "compare", "put several runs (models, tasks) side by side",
                "  neuroscope compare runs/2026-11-24-minilm-pos runs/2026-11-24-minilm-chunk")
    comp.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR", help="finished run directories")
    comp.add_argument("--out", type=Path, default=None, help="output directory (default: runs/compare-<date>)")
    return parser


def _setup_logging(verbose: int, console: Console) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    handler = RichHandler(console=console, show_path=False, show_time=False)
    logging.basicConfig(level=level, handlers=[handler], format="%(message)s", force=True)


def run_parser() -> argparse.ArgumentParser:
    """The ``run`` command's parser: the one definition of a run's options, their types and
    defaults, shared by the command line and :func:`neuroscope.run`."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["run"]


def plan_runs(args: argparse.Namespace) -> tuple[Any, list[tuple[Any, Path]]]:
    """The registry, and (RunConfig, run directory) per model x task x probe of ``args``;
    every setting is validated and every name resolved before a model or a corpus is loaded."""
    from neuroscope.orchestrator import RunConfig, default_cache_dir, default_data_dir, default_run_dir
    from neuroscope.registry import Registry

    data_dir = args.data_dir or default_data_dir()
    cache_dir = args.cache_dir or default_cache_dir()
    cells = [(m, t, p) for m in args.model for t in args.task for p in args.probe]
    configs = [RunConfig(
        model=model, task=task, data_dir=str(Path(data_dir).resolve()), seeds=tuple(range(max(args.seeds, 0))),
        l1=args.l1, l2=args.l2, grid=args.grid, alpha=args.alpha, beta=args.beta, deltas=args.deltas,
        scan_step=args.scan_step, scan_block=args.scan_block, control=not args.no_control,
        grid_memory=args.grid_memory * 2**30, shuffle=not args.no_shuffle, l2_form=args.l2_form,
        precision=args.precision, fraction=args.fraction, aggregation=args.aggregation, device=args.device,
        epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, extract_batch_size=args.extract_batch_size,
        stride=args.stride, unseen_labels=args.unseen_labels, max_sentences=args.max_sentences,
        cache_dir=str(Path(cache_dir).resolve()), rankers=tuple(args.ranker), probe=probe, causal=args.causal,
        causal_mode=args.causal_mode, causal_positions=args.causal_positions, layers=args.layers, dtype=args.dtype,
    ) for model, task, probe in cells]
    if args.out is not None and len(cells) > 1:
        raise NeuroscopeError("--out names one run directory; with several models, tasks or probes use --runs-dir")
    if args.cpus_per_unit < 0 or (args.cpus is not None and args.cpus < 1):
        raise ValidationError("--cpus and --cpus-per-unit: expected integers >= 1")
    registry = Registry()
    for model, task, probe in cells:
        registry.resolve_model(model)
        registry.resolve_task(task)
        registry.resolve_probe(probe)
    for name in args.ranker:
        registry.resolve_ranker(name)
    registry.get("executors", args.executor)
    return registry, [(config, Path(args.out) if args.out else default_run_dir(
        args.runs_dir, config.model, config.task, None if len(args.probe) == 1 else config.probe))
        for config in configs]


def execute_runs(args: argparse.Namespace, console: Console, argv: list[str] | None = None
                 ) -> list[tuple[Path, dict[str, Any]]]:
    """Plan the run's units and hand them to ``--executor``; (run directory, results) per
    finished cell. The driver writes every run directory. With several cells, a failed
    one does not stop the others; the error at the end counts them. ``argv`` is the
    command recorded in each manifest (default: this process's)."""
    from neuroscope.executors import Unit, UnitOutcome, plan_units, write_files
    from neuroscope.progress import Reporter
    from neuroscope.results import load_results
    from neuroscope.rundir import check_usable, claim

    registry, plan = plan_runs(args)
    executor_cls = registry.get("executors", args.executor).obj
    executor = executor_cls(address=args.address, cpus=args.cpus)
    reporter = Reporter(quiet=args.quiet, console=console)
    for _, run_dir in plan:  # a directory that may not be used fails before anything runs
        check_usable(run_dir, args.resume)
    units = plan_units(plan, args.resume, args.cpus_per_unit, sys.argv if argv is None else argv)
    by_dir = {str(run_dir): config for config, run_dir in plan}
    failures: list[tuple[Unit, UnitOutcome]] = []
    done = []
    extracted: dict[str, float] = {}  # extract unit -> its seconds, for its cells' timings.json
    extract_of = {u.run_dir: u.after[0] for u in units if u.kind == "search"}  # run directory -> its extract unit

    def report(unit: Unit, outcome: UnitOutcome) -> None:
        if outcome.ok and unit.kind != "extract" and outcome.files is not None:
            with claim(Path(unit.run_dir)):  # computed elsewhere: the driver writes the run directory
                write_files(Path(unit.run_dir), outcome.files)
        if outcome.ok and unit.kind == "extract":
            extracted[unit.id] = round(outcome.seconds, 3)
        if outcome.ok and unit.kind == "finish":
            run_dir = Path(unit.run_dir)
            if extract_of[unit.run_dir] in extracted:
                with claim(run_dir):
                    record_extraction(run_dir, extracted[extract_of[unit.run_dir]])
            results = load_results(run_dir)
            if not args.quiet and immediate:
                _print_summary(console, by_dir[unit.run_dir], results, run_dir)
            done.append((run_dir, results))
        elif not outcome.ok and not outcome.skipped:  # the units after a failed one are not run: one cause
            failures.append((unit, outcome))
            if len(plan) > 1:
                log.error("%s: %s failed: %s", unit.cell, unit.id, outcome.message)

    # units in parallel drive a live progress display: summaries after it
    immediate = args.executor == "local" and (args.cpus or 1) // max(1, args.cpus_per_unit) <= 1
    executor.run(units, report, reporter)
    if not args.quiet and not immediate:
        for run_dir, results in done:
            _print_summary(console, by_dir[str(run_dir)], results, run_dir)
    if failures:
        unit, first = failures[0]  # the first failure is the cause of those that were not run after it
        if len(plan) == 1:  # one cell: its error, as it always was
            raise first.error if isinstance(first.error, NeuroscopeError) else NeuroscopeError(first.message)
        raise NeuroscopeError(f"{len(failures)} of {len(units)} units failed ({', '.join(u.id for u, _ in failures)}; "
                              f"the units after them were not run); {len(done)} of {len(plan)} run directories "
                              "finished")
    return done


def record_extraction(run_dir: Path, seconds: float) -> None:
    """Put the seconds of the extract unit a cell waited for into its timings.json (the cell's
    own units found the activations in the store): ``extraction`` and ``units.extract``,
    added to ``total``. Cells sharing one extraction each show it."""
    from neuroscope.orchestrator import write_json
    from neuroscope.rundir import read_json

    path = run_dir / "timings.json"
    timings = read_json(path, "timings")
    timings["extraction"] = seconds
    timings["units"] = {"extract": seconds, **timings["units"]}
    timings["total"] = round(sum(timings["units"].values()), 3)
    write_json(path, timings)


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    execute_runs(args, console)
    return 0


def _print_summary(console: Console, config: Any, results: dict[str, Any], run_dir: Path) -> None:
    summary = results["summary"]
    test = summary["ablation"]["test"]
    lam = results["lambdas"]
    minimal = summary["minimal"][str(config.deltas[0])]
    console.print(Text.assemble((f"{config.model} x {config.task}", "bold green"),
                                f": lambdas {lam['l1']:g}, {lam['l2']:g} ({lam['chosen_by']}); "
                                f"test accuracy all {test['all']['mean']:.2f}, top {test['top']['mean']:.2f}, "
                                f"random {test['random']['mean']:.2f}, bottom {test['bottom']['mean']:.2f} "
                                f"(majority {results['majority_baseline']['test']:.2f})"))
    line = (f"minimal set (delta {config.deltas[0]:g}): {minimal['n_neurons']['mean']:.0f} neurons "
            f"({minimal['share']['mean']:.1f}%), test Acc_t {minimal['test']['selected']['mean']:.2f} "
            f"vs Acc_a {minimal['test']['all']['mean']:.2f}")
    if summary["selectivity"]:
        sel = summary["selectivity"]["test"]
        line += f"; selectivity Sel_a {sel['all']['mean']:.2f}, Sel_t {sel['selected']['mean']:.2f}"
    console.print(line, markup=False, highlight=False)
    if len(results.get("rankers", [])) > 1:
        for name, ranker in results["per_ranker"].items():
            s = ranker["summary"]
            console.print(f"  {name}: test top {s['ablation']['test']['top']['mean']:.2f}, random "
                          f"{s['ablation']['test']['random']['mean']:.2f}, bottom "
                          f"{s['ablation']['test']['bottom']['mean']:.2f}; minimal set "
                          f"{s['minimal'][str(config.deltas[0])]['n_neurons']['mean']:.0f} neurons",
                          markup=False, highlight=False)
    console.print(f"run directory: {run_dir} (report.html, tables.md)", markup=False, highlight=False)


def _table(title: str, columns: tuple[str, ...]) -> Table:
    """A table whose cells wrap instead of being cut (pipes and narrow terminals included)."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def cmd_plugins(args: argparse.Namespace, console: Console) -> int:
    from neuroscope.registry import Registry

    registry = Registry()
    table = _table("neuroscope plugins", ("plugin", "origin", "distribution", "version", "hooks", "provides"))
    for p in registry.plugins:
        provides = "; ".join(f"{k}: {', '.join(v)}" for k, v in p.provides.items())
        table.add_row(*(escape(c) for c in (p.name, p.origin, p.distribution, p.version, ", ".join(p.hooks),
                                            provides)))
    console.print(table)
    for failure in registry.failures:
        console.print(Text.assemble(("failed ", "red"), f"{failure.name}: {failure.error}"))
    for problem in registry.problems():
        console.print(Text.assemble(("conflict ", "red"), problem))
    aliases = _table("models and tasks (registry.toml)", ("kind", "name", "uses", "description"))
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


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from neuroscope.report import rerender

    for path in rerender(args.run_dir):
        console.print(f"wrote {path}", markup=False, highlight=False)
    return 0


def cmd_neurons(args: argparse.Namespace, console: Console) -> int:
    from neuroscope.api import Run

    run = Run(args.run_dir)
    tops = run.top_neurons(label=args.label, k=args.k, ranker=args.ranker, seed=args.seed, by=args.by)
    title = f"top neurons of {args.label}" if args.label else f"top neurons of the {args.ranker or run.rankers[0]} ranking"
    columns = ["layer:unit", "rank", "weight" if args.label else "largest weight"]
    precision = bool(args.label) and args.by == "precision"
    if precision:
        columns.append("top 20 of the label")
    if args.words:
        columns.append("top words (label)")
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
            words = run.neuron(top).top_words(args.words)
            row.append(", ".join(f"{w.word} ({w.label})" for w in words))
        table.add_row(*(escape(c) for c in row))
    console.print(table)
    return 0


def cmd_show(args: argparse.Namespace, console: Console) -> int:
    from neuroscope.api import Run

    run = Run(args.run_dir)
    neurons = args.neurons if args.neurons else run.top_neurons(label=args.label, k=args.k)
    heat = run.show(args.sentence, neurons, device=args.device, subwords=args.subwords)
    if args.out is not None:
        console.print(f"wrote {heat.save(args.out)}", markup=False, highlight=False)
    else:
        console.print(heat.to_text())
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
    from neuroscope.orchestrator import default_data_dir
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
    from neuroscope.orchestrator import default_cache_dir
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
        damaged = []
        for key in store.match(args.keys) if args.keys else [e.key for e in store.entries() if e.state == "complete"]:
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
    keys = store.match(args.keys) if args.cache_command == "remove" else store.prunable()
    for key in keys:
        freed = store.remove(key)
        console.print(f"removed {key} ({freed / 2**20:.1f} MiB)", markup=False)
    if not keys:
        console.print("nothing to remove", markup=False)
    return 0


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
                "show": cmd_show}
    try:
        return handlers[args.command](args, console)
    except NeuroscopeError as exc:
        _print_error(str(exc))
        return 2
    except OSError as exc:  # the environment: a missing, unreadable or unwritable file or directory
        _print_error(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
        return 2
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
