"""One definition of a run's settings: every option of ``neuroscope run``.

Each field of :class:`RunConfig` (one model x task cell, written to ``config.json``) and
of :class:`PlanOptions` (what spans cells: the models, tasks and probes crossed, where
run directories go, the executor) carries its command-line spelling, help, default and
allowed values as an :class:`Option`. Everything else is derived from them:

* the ``run`` parser (:func:`add_run_arguments`), and so ``neuroscope run --help``;
* the validation (:meth:`RunConfig.validate`, :meth:`PlanOptions.validate`), which names
  the command-line option of a refused value;
* :func:`neuroscope.run`'s keyword arguments (:func:`request_from_kwargs`: the options'
  names with ``_`` for ``-``, converted as the command line converts them);
* the option table of docs/cli.md (:func:`options_markdown`; :func:`write_options_table`
  rewrites it, and a test checks they agree).

Adding an option is one field here. A setting whose default older versions of neuroscope
did not have is marked ``omit_default`` so that a run made without it keeps the
``config.json`` (and so its resumability) it always had.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping

import attrs
import numpy as np

from neuroscope.choices import (AGGREGATIONS, BASELINES, CAUSAL_MODES, CAUSAL_POSITIONS, DEFAULT_KS, DEFAULT_MEMORY,
                                KEEP, L2_FORMS, PAPER_VALUES, PRECISION_NAMES, SCAN_STARTS, SEARCH_CHOICES,
                                UNSEEN_RULES, auto_search, parse_layers)
from neuroscope.errors import NeuroscopeError, ValidationError
from neuroscope.validation import check_choice, check_number, describe_range
from neuroscope.screening import parse_bytes, parse_screen

#: the largest lambda accepted: the paper's grid tops out at 0.1, and at 1 the penalty
#: on a few thousand weights already dwarfs the mean cross-entropy
MAX_LAMBDA = 1.0

DTYPES = ("float32", "bfloat16", "float16")


def default_cache_dir() -> Path:
    """``$NEUROSCOPE_CACHE``, else ``$XDG_CACHE_HOME/neuroscope`` (``~/.cache/neuroscope``)."""
    env = os.environ.get("NEUROSCOPE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "neuroscope"


def default_data_dir() -> Path:
    """``$NEUROSCOPE_DATA``, else ``data`` under :func:`default_cache_dir`."""
    env = os.environ.get("NEUROSCOPE_DATA")
    return Path(env) if env else default_cache_dir() / "data"


# ---- how a value is spelled on the command line and given from Python

def split_names(value: str) -> tuple[str, ...]:
    """``a,b`` -> ("a", "b"): comma-separated names."""
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if not items:
        raise argparse.ArgumentTypeError("expected one or more comma-separated names")
    return items


def split_floats(value: str) -> tuple[float, ...]:
    """``0.5,2`` -> (0.5, 2.0)."""
    try:
        values = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {value!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected one or more numbers")
    return values


def sentence_limits(value: str) -> tuple[int | None, int | None, int | None]:
    """``N`` or ``TRAIN,DEV,TEST`` (``all`` or empty: no limit) -> a count per split."""
    parts = value.split(",")
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("expected N or TRAIN,DEV,TEST sentence counts")
    try:
        return tuple(int(p) if p.strip() not in ("", "all") else None for p in parts)  # type: ignore[return-value]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a sentence count: {value!r}") from None


def layer_list(value: str) -> tuple[int, ...]:
    """``0,8-12`` -> (0, 8, 9, 10, 11, 12); empty: every layer."""
    try:
        return parse_layers(value) or ()
    except NeuroscopeError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--layers: ")) from None


def epochs_value(value: str) -> int | str:
    """A number of epochs, or ``auto``."""
    if value.strip() == "auto":
        return "auto"
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of epochs or auto, got {value!r}") from None


def screen_value(value: str) -> str:
    """``--screen``'s text, normalised (:func:`neuroscope.screening.parse_screen`)."""
    try:
        return parse_screen(value)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[1]) from None


def size_value(value: str) -> str:
    """``--store-budget``'s text, checked (:func:`neuroscope.screening.parse_bytes`)."""
    try:
        parse_bytes(value)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[1]) from None
    return value.strip()


def _number(kind: type) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, str):
            return kind(value)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"expected a number, got {type(value).__name__}")
        if kind is int:
            if not math.isfinite(float(value)) or float(value) != int(value):
                return value  # the range check names it: "expected an integer"
            return int(value)
        return float(value)
    return convert


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return split_names(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) and v.strip() for v in value):
        return tuple(v.strip() for v in value)
    raise TypeError("expected a name, a comma-separated string of names or a list of names")


def _floats(value: Any) -> tuple[float, ...]:
    if isinstance(value, str):
        return split_floats(value)
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return (float(value),)
    if isinstance(value, (list, tuple)) and value:
        return tuple(_number(float)(v) for v in value)
    raise TypeError("expected a number or a list of numbers")


def _limits(value: Any) -> tuple[int | None, int | None, int | None]:
    if isinstance(value, str):
        return sentence_limits(value)
    if value is None:
        return (None, None, None)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return (int(value),) * 3  # type: ignore[return-value]
    if isinstance(value, (list, tuple)) and len(value) == 3:
        return tuple(None if v is None else _number(int)(v) for v in value)  # type: ignore[return-value]
    raise TypeError("expected N, (TRAIN, DEV, TEST) or 'TRAIN,DEV,TEST'")


def _layers(value: Any) -> tuple[int, ...]:
    if isinstance(value, str):
        return layer_list(value)
    if isinstance(value, (list, tuple)):
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
            raise TypeError("expected layer indices (integers)")
        return layer_list(",".join(str(int(v)) for v in value)) if value else ()
    raise TypeError("expected layer indices, e.g. [0, 8, 9] or '0,8-12'")


def _epochs(value: Any) -> int | str:
    if isinstance(value, str):
        return epochs_value(value)
    return _number(int)(value)


def _flag(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError("expected True or False")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise TypeError("expected a string")


def _path(value: Any) -> Path | None:
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        return Path(value)
    raise TypeError("expected a path")


def _size_text(text: str) -> str:
    """A size as given (``auto``, ``500GB``), checked by :func:`neuroscope.screening.parse_bytes`."""
    parse_bytes(text)
    return text.strip()


def _optional(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else convert(value)


#: per kind of option: (argparse's ``type``, the conversion of a Python value, metavar)
KINDS: dict[str, tuple[Callable[[str], Any] | None, Callable[[Any], Any], str | None]] = {
    "int": (int, _number(int), None),
    "float": (float, _number(float), None),
    "names": (split_names, _names, "NAME[,NAME...]"),
    "floats": (split_floats, _floats, "V,V,..."),
    "limits": (sentence_limits, _limits, "N|TRAIN,DEV,TEST"),
    "layers": (layer_list, _layers, "L[,L|FIRST-LAST...]"),
    "epochs": (epochs_value, _epochs, "N|auto"),
    "flag": (None, _flag, None),
    "text": (None, _text, None),
    "path": (Path, _path, None),
    "screen": (screen_value, lambda value: parse_screen(str(value) if isinstance(value, (int, np.integer)) and
                                                          not isinstance(value, bool) else _text(value)),
               "off|auto|K|P%"),
    "size": (size_value, lambda value: _size_text(_text(value)), "auto|SIZE"),
}

#: the kinds whose values are numbers (every one range-checked)
NUMERIC_KINDS = ("int", "float", "floats", "limits", "epochs")


#: an :class:`Option`'s ``cli_default`` when the command line's default is the field's
AS_FIELD: Any = type("AsField", (), {"__repr__": lambda self: "AS_FIELD"})()


@attrs.frozen
class Option:
    """How a setting is spelled and checked.

    ``flag`` is its command-line spelling (``--scan-step``; the Python keyword is the
    same with ``_``); ``kind`` one of :data:`KINDS`; ``cli_default`` the command line's
    default where it differs from the field's (``--seeds 3`` for seeds (0, 1, 2));
    ``to_field`` turns the command line's value into the field's (None: the same);
    ``low`` .. ``high`` (``low_open``/``high_open`` exclude the bound) and ``integer``
    the allowed numbers, checked for every element of a list; ``choices`` the allowed
    strings; ``doc_default`` and ``allowed_doc`` how docs/cli.md shows the default and
    the allowed values where the generated words would not do; ``omit_default``: left
    out of config.json at its default, ``omit_unless``: unless that other field is set
    (settings older runs did not have, so that their config.json stays as it was)."""

    flag: str
    help: str
    kind: str = "text"
    choices: tuple[str, ...] | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    optional: bool = False
    cli_default: Any = AS_FIELD
    to_field: Callable[[Any], Any] | None = None
    doc_default: str | None = None
    metavar: str | None = None
    omit_default: bool = False
    omit_unless: str | None = None
    allowed_doc: str | None = None

    @property
    def dest(self) -> str:
        """The keyword argument of :func:`neuroscope.run` (and argparse's dest)."""
        return self.flag.lstrip("-").replace("-", "_")

    def parse(self) -> Callable[[str], Any] | None:
        """The command line's conversion of the option's text (argparse's ``type``)."""
        return KINDS[self.kind][0]

    def convert(self, value: Any) -> Any:
        """A Python value as the command line's parser would have produced it."""
        convert = KINDS[self.kind][1]
        value = _optional(convert)(value) if self.optional else convert(value)
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"expected one of {', '.join(self.choices)}")
        return value

    def check(self, value: Any, name: str | None = None) -> None:
        """Refuse a value out of range (every element of a list), naming the option."""
        name = name or self.flag
        if value is None and self.optional:
            return
        if self.choices is not None:
            check_choice(name, value, self.choices)
        if self.kind not in NUMERIC_KINDS or (self.kind == "epochs" and value == "auto"):
            return
        values = value if isinstance(value, tuple) else (value,)
        for item in values:
            if item is not None:
                check_number(name, item, low=self.low, high=self.high, low_open=self.low_open,
                             high_open=self.high_open, integer=self.integer)

    def check_value(self, value: Any, name: str | None = None) -> None:
        """:meth:`check`, and a list option may not be empty."""
        if self.kind in ("floats", "names") and not value:
            raise ValidationError(f"{name or self.flag}: expected one or more values")
        self.check(tuple(value) if isinstance(value, (list, np.ndarray)) else value, name)

    def allowed(self) -> str:
        """The allowed values in words, for docs/cli.md."""
        if self.allowed_doc is not None:
            return self.allowed_doc
        if self.choices is not None:
            return ", ".join(f"`{c}`" for c in self.choices)
        if self.kind not in NUMERIC_KINDS:
            return ""
        text = describe_range(self.low, self.high, self.low_open, self.high_open, self.integer)
        return text + ("; or `auto`" if self.kind == "epochs" else "; or `all`" if self.kind == "limits" else "")


def option(flag: str, help: str, default: Any = attrs.NOTHING, *, converter: Any = None, **spec: Any) -> Any:
    """An attrs field (with ``default`` where given) that carries its :class:`Option`
    (``spec``: the option's other fields)."""
    if spec.get("kind") in KINDS and spec.get("metavar") is None:
        spec["metavar"] = KINDS[spec["kind"]][2]
    kwargs: dict[str, Any] = {"metadata": {"option": Option(flag, help, **spec)}}
    if converter is not None:
        kwargs["converter"] = converter
    return attrs.field(default=default, **kwargs)


def options_of(cls: type) -> list[tuple[str, Option]]:
    """(field name, option) of every field of ``cls`` that has a command-line spelling."""
    return [(f.name, f.metadata["option"]) for f in attrs.fields(cls) if "option" in f.metadata]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _as_bytes(value: Any) -> Any:
    """Byte counts may arrive as floats (GiB x 2**30); non-finite values pass through to validation."""
    return int(value) if _is_number(value) else value


def _gib_to_bytes(gib: Any) -> Any:
    return gib * 2**30 if _is_number(gib) else gib


def _integral(values: Any) -> Any:
    """A list of sizes as ints where they are whole numbers (the range check names any other)."""
    if isinstance(values, (list, tuple)):
        return tuple(int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                     and float(v).is_integer() else v for v in values)
    return values


def _seeds(count: Any) -> Any:
    return tuple(range(count)) if isinstance(count, int) and count >= 1 else ()


@attrs.frozen
class RunConfig:
    """The fully resolved settings of one model x task cell (written to config.json).

    Defaults are the paper's: lambdas chosen by the 8 x 8 grid search with
    alpha = beta = 0.5 and M = 20 %, deltas 0.5 and 2, 3 seeds, 1 % scan steps.
    ``l1``/``l2`` set both fix the lambdas and skip the search. ``model``, ``task`` and
    ``probe`` are the cell's (the command line crosses lists of them: :class:`PlanOptions`).
    """

    model: str
    task: str
    data_dir: str = option("--data-dir", "the directory the task files are relative to",
                           kind="path", optional=True, cli_default=None,
                           to_field=lambda p: str(Path(p or default_data_dir()).resolve()),
                           doc_default="`$NEUROSCOPE_DATA`, else `data` in the cache directory (`$NEUROSCOPE_CACHE`, else "
                           "`~/.cache/neuroscope`)")
    seeds: tuple[int, ...] = option("--seeds", "number of seeds, 0 .. N-1 (paper: 3); tables show mean ± std",
                                    (0, 1, 2), kind="int", low=1, integer=True, cli_default=3, to_field=_seeds)
    l1: float | None = option("--l1", "fix the L1 lambda (with --l2) and skip the search", None, kind="float",
                              optional=True, low=0, high=MAX_LAMBDA, doc_default="searched")
    l2: float | None = option("--l2", "fix the L2 lambda (with --l1) and skip the search", None, kind="float",
                              optional=True, low=0, high=MAX_LAMBDA, doc_default="searched")
    grid: tuple[float, ...] = option("--grid", "lambda values; the search tries every (l1, l2) pair "
                                     "(paper: 0,1e-1,...,1e-7)", PAPER_VALUES, kind="floats", low=0,
                                     high=MAX_LAMBDA, doc_default="`0,1e-1,...,1e-7`")
    alpha: float = option("--alpha", "weight of At - Ab in the search score S = alpha (At - Ab) - beta (Az - Al) "
                          "(paper)", 0.5, kind="float", low=0)
    beta: float = option("--beta", "weight of Az - Al in the search score S (paper)", 0.5, kind="float", low=0)
    search_method: str = option("--search", "how the lambda search visits the grid: grid, every pair trained "
                                "fully (paper); halving, successive halving; path, a warm-started path; auto: "
                                "halving where it applies (the elastic-net probe, a number of --epochs), else grid "
                                "(docs/protocol.md, \"Faster lambda searches\")", "grid", choices=SEARCH_CHOICES,
                                omit_default=True, cli_default="auto")
    fraction: float = option("--fraction", "M, the share of neurons kept by the top / random / bottom ablations "
                             "and in S (paper)", 0.2, kind="float", low=0, high=1, low_open=True, high_open=True)
    deltas: tuple[float, ...] = option("--deltas", "accuracy margins (points) to the oracle for the minimal neuron "
                                       "set (paper; the first: Table 2, selectivity, analyses)", (0.5, 2.0),
                                       kind="floats", low=0, high=100, doc_default="`0.5,2`")
    scan_step: float = option("--scan-step", "minimal-set scan step, share of the network (paper)", 0.01,
                              kind="float", low=0, high=1, low_open=True)
    scan_block: int = option("--scan-block", "scan sizes trained together over one data read", 8, kind="int", low=1,
                             integer=True)
    scan_start: str = option("--scan-start", "how the minimal-set scan's probes start: cold, from zero (paper); "
                             "oracle, from the oracle probe's weights on their neurons; previous, each block after "
                             "the first from the previous block's largest probe; warm starts train --scan-epochs "
                             "(docs/protocol.md, \"Minimal neuron set\")", "cold", choices=SCAN_STARTS,
                             omit_default=True)
    scan_epochs: int = option("--scan-epochs", "epochs of each warm-started scan probe (--scan-start oracle or "
                              "previous)", 3, kind="int", low=1, integer=True, omit_default=True)
    control: bool = option("--no-control", "skip the control task and selectivity", True, kind="flag",
                           cli_default=False, to_field=lambda off: not off, doc_default="off")
    aggregation: str = option("--aggregation", "sub-words to word (paper: last)", "last", choices=AGGREGATIONS)
    device: str = option("--device", "auto (CUDA if available), cpu or cuda[:N]", "auto")
    epochs: int | str = option("--epochs", "probe training epochs (paper: 10), or auto: until the loss stops "
                               "falling (docs/probe.md)", 10, kind="epochs", low=1, integer=True)
    lr: float = option("--lr", "probe learning rate, Adam (paper)", 1e-3, kind="float", low=0, high=1,
                       low_open=True)
    batch_size: int = option("--batch-size", "probe mini-batch size (paper)", 512, kind="int", low=1, integer=True)
    extract_batch_size: int = option("--extract-batch-size", "sentences per forward pass", 32, kind="int", low=1,
                                     integer=True)
    extract_batch_tokens: int = option("--extract-batch-tokens", "instead of --extract-batch-size sentences, as many "
                                       "sentences per forward pass as keep (sentences x the longest's sub-tokens, "
                                       "padding included) within this many tokens, so that long sentences cannot "
                                       "take a batch's memory (large models); 0: batches of sentences", 0,
                                       kind="int", low=0, integer=True, omit_default=True)
    probe: str = "elastic-net"
    #: where the units are read (docs/models.md, "Sites"): the paper's hidden states, or an
    #: adapter's other sites (MLP neurons); the command line crosses a list of them
    site: str = "hidden"
    rankers: tuple[str, ...] = option("--ranker", "neuron rankers, comma-separated, each judged on the same oracle "
                                      "probe and data (`neuroscope rankers` lists them: weight-mass, probeless, iou, "
                                      "gaussian, random, ...; docs/ranking.md)", ("weight-mass",), kind="names",
                                      doc_default="`weight-mass`")
    stride: int = option("--stride", "weight-mass steps of the ranking (NeuroX's search_stride)", 100, kind="int",
                         low=1, integer=True)
    unseen_labels: str = option("--unseen-labels", "dev/test tokens whose label is not in train: count as errors, "
                                "or exclude", "error", choices=UNSEEN_RULES)
    max_sentences: tuple[int | None, int | None, int | None] = option(
        "--max-sentences", "use only the first sentences of each split (quick runs)", (None, None, None),
        kind="limits", low=1, integer=True, doc_default="all")
    grid_memory: int = option("--grid-memory", "GiB for the weights (and Adam state) of lambda settings trained "
                              "together", DEFAULT_MEMORY, converter=_as_bytes, kind="float", low=1 / 1024,
                              allowed_doc="a finite number >= 1/1024 (1 MiB)", cli_default=2.0, to_field=_gib_to_bytes)
    shuffle: bool = option("--no-shuffle", "visit training rows in corpus order (NeuroX) instead of shuffled "
                           "mini-batches (paper)", True, kind="flag", cli_default=False, to_field=lambda off: not off,
                           doc_default="off")
    l2_form: str = option("--l2-form", "L2 penalty: squared norm (DESIGN.md), or the norm itself (NeuroX)",
                          "squared", choices=L2_FORMS)
    precision: str = option("--precision", "probe matrix products in float32, or bfloat16 with float32 weights "
                            "(faster on CPUs with AVX512-BF16/AMX and recent GPUs; docs/probe.md)", "float32",
                            choices=PRECISION_NAMES)
    cache_dir: str = option("--cache-dir", "the activation store's directory",
                            "", kind="path", optional=True, cli_default=None,
                            to_field=lambda p: str(Path(p or default_cache_dir()).resolve()),
                            doc_default="`$NEUROSCOPE_CACHE`, else `~/.cache/neuroscope`")
    causal: bool = option("--causal", "also remove each ranking's top / random / bottom --fraction inside the model's "
                          "forward pass and measure the probe on re-extracted test activations and the model's own "
                          "loss (docs/protocol.md, \"Causal ablation\")", False, kind="flag", doc_default="off",
                          omit_default=True)
    causal_mode: str = option("--causal-mode", "--causal: set removed neurons to 0, or to their mean over the train "
                              "tokens", "zero", choices=CAUSAL_MODES, omit_unless="causal")
    causal_positions: str = option("--causal-positions", "--causal: edit every sub-token of every word (special "
                                   "tokens untouched), or every position", "words", choices=CAUSAL_POSITIONS,
                                   omit_unless="causal")
    layers: tuple[int, ...] = option("--layers", "keep only these layers (0: the embedding / token layer), e.g. "
                                     "0,8-12: a smaller store and probe for a large model (docs/models.md)", (),
                                     kind="layers", doc_default="every layer", omit_default=True,
                                     allowed_doc="different indices >= 0, within the model's layers")
    dtype: str = option("--dtype", "the model's weights in this precision (transformers models; the store is "
                        "float16 either way)", "float32", choices=DTYPES, omit_default=True)
    keep: str = option("--keep", "where the activations are kept: disk (the activation store, reused by later runs), "
                       "memory (this process's memory only: nothing written, for runs that fit; the explorer then "
                       "has no activations to read), or auto (memory where they take at most half the memory "
                       "available, else disk)", "disk", choices=KEEP, omit_default=True)
    screen: str = option("--screen", "keep only K candidate neurons, chosen from statistics streamed during one "
                         "forward pass before anything is stored, and run the protocol on them: K, a share P%, or "
                         "auto (only when the full store would exceed --store-budget, then as many as it holds); "
                         "docs/protocol.md, \"Screening\"", "off", kind="screen", omit_default=True,
                         allowed_doc="`off`, `auto`, an integer >= 1, or `P%` with 0 < P < 100")
    baseline: str = option("--baseline", "rotation: also rank and ablate (Table 1) in a seeded random orthonormal "
                           "basis of each layer, per seed, and report each ranker's gap between neurons and random "
                           "directions (docs/ranking.md, \"Rotation baseline\")", "none", choices=BASELINES,
                           omit_default=True)
    ksparse: bool = option("--ksparse", "also k-sparse probing on every ranking (Gurnee et al. 2023): per label a "
                           "one-vs-rest probe on its k best neurons, test F1 and accuracy for each k of --ksparse-k, "
                           "and an exhaustive small-k ceiling (docs/ranking.md, \"k-sparse probing\")", False,
                           kind="flag", doc_default="off", omit_default=True)
    ksparse_k: tuple[int, ...] = option("--ksparse-k", "--ksparse: the probes' sizes k (those up to the network's "
                                        "size are used)", DEFAULT_KS, converter=_integral, kind="floats", low=1,
                                        integer=True, doc_default="`1,2,4,...,256`", omit_unless="ksparse")
    ksparse_rows: int = option("--ksparse-rows", "--ksparse: train words the probes fit on (a seeded uniform sample)",
                               10000, kind="int", low=2, integer=True, omit_unless="ksparse")
    ksparse_l2: float = option("--ksparse-l2", "--ksparse: the probes' L2 penalty on standardised neurons", 1e-4,
                               kind="float", low=0, low_open=True, high=MAX_LAMBDA, omit_unless="ksparse")
    ksparse_ceiling: int = option("--ksparse-ceiling", "--ksparse: the ceiling's largest k, an exhaustive search over "
                                  "subsets of the --ksparse-pool best neurons by mean difference (0: no ceiling)", 3,
                                  kind="int", low=0, high=4, integer=True, omit_unless="ksparse")
    ksparse_pool: int = option("--ksparse-pool", "--ksparse: neurons per label the ceiling searches", 50, kind="int",
                               low=1, high=200, integer=True, omit_unless="ksparse")
    store_budget: str = option("--store-budget", "the most the run's activation store may take (e.g. 500GB, 20GiB): "
                               "--screen auto screens a larger one, --screen K must fit; auto: half the free space "
                               "on the cache's disk", "auto", kind="size", omit_default=True,
                               allowed_doc="`auto`, or a size with an optional unit (B, kB, MB, GB, TB, KiB, MiB, "
                                           "GiB, TiB)")

    def __attrs_post_init__(self) -> None:
        if self.search_method == "auto":  # what it stands for is recorded, so config.json says it
            object.__setattr__(self, "search_method", auto_search(self.search, self.probe, self.epochs))
        self.validate()

    def validate(self) -> None:
        """Refuse every value the protocol cannot use, naming the command-line option,
        before anything is loaded (docs/cli.md, "Allowed values"): each field's range
        from its :class:`Option`, then the rules that tie fields together."""
        if not self.seeds:
            raise ValidationError("--seeds: expected an integer >= 1 (the number of seeds)")
        for seed in self.seeds:
            check_number("seed", seed, low=0, integer=True)
        for name, opt in options_of(RunConfig):
            value = getattr(self, name)
            if name == "seeds" or opt.kind in ("path", "flag"):
                continue
            if name == "grid_memory":
                value = value / 2**30 if _is_number(value) else value
            if name == "max_sentences" and (not isinstance(value, tuple) or len(value) != 3):
                raise ValidationError("--max-sentences: expected N or TRAIN,DEV,TEST")
            if name == "max_sentences":
                for split, count in zip(("train", "dev", "test"), value):
                    opt.check(count, f"--max-sentences ({split})")
                continue
            opt.check_value(value)
        try:
            parse_layers(self.layers)
        except NeuroscopeError as exc:
            raise ValidationError(str(exc)) from None
        if not isinstance(self.screen, str) or parse_screen(self.screen) != self.screen:
            raise ValidationError(f"--screen {self.screen!r}: expected off, auto, a number of neurons >= 1 or a share "
                                  "such as 25% (as the command line writes it)")
        if self.baseline == "rotation" and self.screen != "off":
            raise ValidationError("--baseline rotation rotates whole layers; --screen keeps some neurons of each layer "
                                  "only: use one or the other")
        if self.ksparse and list(self.ksparse_k) != sorted(set(self.ksparse_k)):
            raise ValidationError(f"--ksparse-k: expected increasing different sizes, got {list(self.ksparse_k)}")
        if not isinstance(self.store_budget, str):
            raise ValidationError(f"--store-budget {self.store_budget!r}: expected auto or a size such as 500GB")
        parse_bytes(self.store_budget)
        try:
            from neuroscope.model import resolve_device  # torch: only once a run is validated

            resolve_device(self.device)
        except NeuroscopeError as exc:
            raise ValidationError(f"--device: {exc}") from None
        if len(set(self.rankers)) != len(self.rankers):
            raise ValidationError(f"--ranker: expected one or more different ranker names, got {list(self.rankers)}")
        if (self.l1 is None) != (self.l2 is None):
            raise ValidationError("give both --l1 and --l2 to fix the lambdas, or neither to search them")
        if self.search_method != "grid":
            if not self.search:
                raise ValidationError(f"--search {self.search_method}: the lambdas are fixed by --l1 and --l2, so "
                                      "there is no search; drop one or the other")
            if self.probe != "elastic-net":
                raise ValidationError(f"--search {self.search_method}: only the elastic-net probe continues its "
                                      f"trainings epoch by epoch; probe {self.probe!r} takes --search grid")
            if self.search_method == "halving" and self.epochs == "auto":
                raise ValidationError("--search halving: needs a number of --epochs (its rounds train the "
                                      "survivors shares of them), not auto")
        if self.scan_start != "cold" and self.probe != "elastic-net":
            raise ValidationError(f"--scan-start {self.scan_start}: only the elastic-net probe continues given "
                                  f"weights; probe {self.probe!r} takes --scan-start cold")
        if self.scan_start == "cold" and self.scan_epochs != attrs.fields(RunConfig).scan_epochs.default:
            raise ValidationError("--scan-epochs: applies to --scan-start oracle or previous (the cold scan trains "
                                  "--epochs)")
        if self.alpha == 0 and self.beta == 0:
            raise ValidationError("--alpha and --beta are both 0, so the lambda search's score S is always 0; "
                                  "give at least one of them a positive weight")

    @property
    def search(self) -> bool:
        return self.l1 is None

    def sparse_settings(self) -> Any:
        """--ksparse's settings (:class:`neuroscope.sparse_probing.SparseSettings`)."""
        from neuroscope.sparse_probing import SparseSettings  # torch: only when a run probes

        return SparseSettings(ks=tuple(self.ksparse_k), rows=self.ksparse_rows, l2=self.ksparse_l2,
                              ceiling=self.ksparse_ceiling, pool=self.ksparse_pool)

    def rows_trained(self, n_train: int, trainings: int = 1) -> int | None:
        """Rows a progress bar counts for ``trainings`` probe trainings (unknown with --epochs auto)."""
        return None if self.epochs == "auto" else self.epochs * n_train * trainings

    def to_json(self) -> dict[str, Any]:
        data = {key: list(value) if isinstance(value, tuple) else value for key, value in attrs.asdict(self).items()}
        for field in attrs.fields(RunConfig):
            opt = field.metadata.get("option")
            if opt is None:
                continue
            if (opt.omit_default and getattr(self, field.name) == field.default) or \
                    (opt.omit_unless and not getattr(self, opt.omit_unless)):
                del data[field.name]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "RunConfig":
        """The settings :meth:`to_json` wrote (settings it leaves out take their defaults)."""
        data = dict(data)
        for key in ("seeds", "max_sentences", "grid", "deltas", "rankers", "layers", "ksparse_k"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)

    def probe_params(self, l1: float, l2: float) -> dict[str, Any]:
        return {"l1": l1, "l2": l2, "lr": self.lr, "batch_size": self.batch_size, "epochs": self.epochs,
                "device": self.device, "shuffle": self.shuffle, "l2_form": self.l2_form, "precision": self.precision}

    def settings(self, seed: int) -> Any:
        """The probe's :class:`~neuroscope.probe.TrainSettings` for ``seed``."""
        from neuroscope.probe import TrainSettings

        return TrainSettings(self.lr, self.batch_size, self.epochs, seed, self.device, self.shuffle, self.l2_form,
                             self.precision)


@attrs.frozen
class PlanOptions:
    """The options of ``neuroscope run`` that span cells: the models, tasks and probes
    crossed into cells, where their run directories go, and what executes them."""

    model: tuple[str, ...] = option("--model", "models, comma-separated: names from `neuroscope plugins` "
                                    "(registry.toml aliases, registered adapters), hf:<name-or-path> for any "
                                    "transformers model, elmo:DIR, telmo:PATH", ("minilm",), kind="names",
                                    doc_default="`minilm`")
    task: tuple[str, ...] = option("--task", "tasks, comma-separated: names from `neuroscope plugins` (pos, chunk, "
                                   "sem, ccg, ...)", ("pos",), kind="names", doc_default="`pos`")
    probe: tuple[str, ...] = option("--probe", "probe types, comma-separated, one run directory each "
                                    "(RUNS_DIR/<date>-<model>-<task>-<probe> when several; `neuroscope rankers` "
                                    "lists them: elastic-net, lbfgs; docs/probe.md)", ("elastic-net",), kind="names",
                                    doc_default="`elastic-net`")
    site: tuple[str, ...] = option("--site", "where units are read, comma-separated, one run directory each: hidden "
                                   "(the paper's hidden states between blocks), mlp (each feed-forward block's "
                                   "post-nonlinearity neurons, the input of its output projection) or attn (the "
                                   "heads' outputs before the attention output projection); docs/models.md",
                                   ("hidden",), kind="names", doc_default="`hidden`")
    out: Path | None = option("--out", "run directory (one model x task x probe only)", None, kind="path", optional=True,
                              doc_default="`RUNS_DIR/<date>-<model>-<task>[-<settings>]`")
    runs_dir: Path = option("--runs-dir", "parent of run directories", Path("runs"), kind="path",
                            doc_default="`runs`")
    resume: bool = option("--resume", "continue interrupted runs: the one in --out, or each cell's run directory "
                          "under --runs-dir (named by today's date); finished steps are reused; changed settings or "
                          "data are refused", False, kind="flag", doc_default="off")
    executor: str = option("--executor", "what runs the plan's units (extraction per model and corpus, then per run "
                           "directory the lambda search, one unit per seed and the report): local (here; in order, "
                           "or several at once with --cpus) or ray (in parallel on a Ray cluster; "
                           "docs/distributed.md)", "local")
    address: str | None = option("--address", "--executor ray: a running cluster (ray://HEAD:10001 or HOST:6379)",
                                 None, optional=True, doc_default="a local Ray started for the run")
    cpus: int | None = option("--cpus", "--executor local: run up to CPUS / --cpus-per-unit independent units at "
                              "once in worker processes; --executor ray without --address: CPUs of the local Ray", None,
                              kind="int", optional=True, low=1, integer=True,
                              doc_default="local: one unit at a time, here; ray: all")
    cpus_per_unit: int = option("--cpus-per-unit", "CPUs each unit declares; torch and BLAS threads in the unit are "
                                "limited to them", 0, kind="int", low=0, integer=True,
                                doc_default="0: local, all of the machine's; ray, 1")
    extract_shards: int = option("--extract-shards", "split each model's extraction of a corpus into this many "
                                 "units (contiguous runs of the same batches, e.g. one per GPU with --executor ray), "
                                 "written into one store entry, byte for byte the unsplit extraction's; the shards "
                                 "need a --cache-dir they all share (docs/distributed.md)", 1, kind="int", low=1,
                                 integer=True, doc_default="1: one extract unit")
    model_gpus: float = option("--model-gpus", "GPUs each unit that runs the model (extraction and its shards, "
                               "--causal's finish unit) declares with a CUDA --device: more than 1 for a model placed "
                               "over several GPUs by its device_map option (docs/models.md)", 1.0, kind="float",
                               low=0, low_open=True, doc_default="1")
    unit_memory: str = option("--unit-memory", "memory each kind of unit declares to the executor: auto (estimated "
                              "from the model's weight files and the store's sizes) or KIND=SIZE pairs, e.g. "
                              "extract=40GB,seed=8GB (KIND extract, search, seed or finish; 0: none; the kinds not "
                              "named are estimated); docs/distributed.md", "auto", kind="text")
    placement: str = option("--placement", "--executor ray: data (a cell's units prefer the node that extracted its "
                            "activations, so node-local caches are not extracted into again; elsewhere only when "
                            "that node is gone) or spread (Ray places every unit where it has room; with a shared "
                            "cache); docs/distributed.md", "data", choices=("data", "spread"))
    runtime_env: str | None = option("--runtime-env", "--executor ray: the units' Ray runtime environment, as JSON "
                                     "or a JSON file (env_vars, pip, working_dir, ...; docs/distributed.md)", None,
                                     optional=True, doc_default="none")
    quiet: bool = option("--quiet", "no progress bars or summaries", False, kind="flag", doc_default="off")

    def __attrs_post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name, opt in options_of(PlanOptions):
            opt.check(getattr(self, name))
        if self.address is not None and not self.address.strip():
            raise ValidationError("--address: empty; expected HOST:PORT, ray://HOST:PORT or auto (or leave it out "
                                  "for a local Ray started for the run)")
        if self.placement != "data" and self.executor != "ray":
            raise ValidationError(f"--placement {self.placement}: the placement of units on a Ray cluster's nodes; it "
                                  "needs --executor ray")
        from neuroscope.resources import parse_unit_memory

        parse_unit_memory(self.unit_memory)
        if self.runtime_env is not None:
            if self.executor != "ray":
                raise ValidationError("--runtime-env is Ray's runtime environment: it needs --executor ray")
            runtime_env_of(self.runtime_env)
        if self.out is not None and len(self.model) * len(self.task) * len(self.probe) * len(self.site) > 1:
            raise NeuroscopeError("--out names one run directory; with several models, tasks, probes or sites use "
                                  "--runs-dir")


def runtime_env_of(value: str) -> dict[str, Any]:
    """``--runtime-env``: a JSON object, given inline or as the path of a file holding one."""
    import json

    text, where = value, "--runtime-env"
    if not value.lstrip().startswith(("{", "[")):
        path = Path(value).expanduser()
        if not path.is_file():
            raise ValidationError(f"--runtime-env {value!r}: neither a JSON object nor a file (expected e.g. "
                                  "'{\"env_vars\": {\"HF_HOME\": \"/data/hf\"}}' or runtime_env.json)")
        try:
            text, where = path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise ValidationError(f"--runtime-env: cannot read {path}: {exc}") from None
    try:
        env = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{where}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(env, dict):
        raise ValidationError(f"{where}: expected a JSON object (Ray's runtime_env), got {type(env).__name__}")
    return env


def check_setting(name: str, value: Any, label: str | None = None) -> None:
    """Refuse a value of the run setting ``name`` (a :class:`RunConfig` field) that the
    command line would refuse, naming it ``label`` (default: ``name``): the Python API's
    functions check their keyword arguments with the same definitions as ``neuroscope run``."""
    dict(options_of(RunConfig))[name].check_value(value, label or name)


def run_options() -> list[tuple[type, str, Option]]:
    """(class, field name, option) of every option of ``neuroscope run``, in --help order:
    what is run, then how each cell runs, then where it is written and what executes it."""
    plan = options_of(PlanOptions)
    head = [(PlanOptions, n, o) for n, o in plan if n in ("model", "task", "probe", "site")]
    tail = [(PlanOptions, n, o) for n, o in plan if n not in ("model", "task", "probe", "site")]
    return head + [(RunConfig, n, o) for n, o in options_of(RunConfig)] + tail


def _cli_default(cls: type, name: str, opt: Option) -> Any:
    if opt.cli_default is not AS_FIELD:
        return opt.cli_default
    return attrs.fields_dict(cls)[name].default


def default_text(cls: type, name: str, opt: Option) -> str:
    """An option's default as docs/cli.md shows it (markdown)."""
    if opt.doc_default is not None:
        return opt.doc_default
    default = _cli_default(cls, name, opt)
    if isinstance(default, tuple):
        return "`" + ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default) + "`"
    if isinstance(default, str):
        return f"`{default}`"
    return f"{default:g}" if isinstance(default, float) else str(default)


def help_text(cls: type, name: str, opt: Option) -> str:
    """An option's --help: its help, default and allowed values."""
    extra = [f"default: {default_text(cls, name, opt)}"]
    if opt.allowed():
        extra.append(f"allowed: {opt.allowed()}")
    return f"{opt.help} ({'; '.join(extra)})".replace("`", "").replace("%", "%%")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``run`` command's arguments, one per :class:`Option` (help with the default and
    the allowed values, so the parser's formatter need not add defaults)."""
    for cls, name, opt in run_options():
        default = _cli_default(cls, name, opt)
        if opt.kind == "flag":
            parser.add_argument(opt.flag, action="store_true", help=help_text(cls, name, opt))
            continue
        kwargs: dict[str, Any] = {"default": default, "help": help_text(cls, name, opt)}
        if opt.parse() is not None:
            kwargs["type"] = opt.parse()
        if opt.choices is not None:
            kwargs["choices"] = opt.choices
        if opt.metavar:
            kwargs["metavar"] = opt.metavar
        parser.add_argument(opt.flag, **kwargs)


@attrs.frozen
class RunRequest:
    """A ``neuroscope run`` as asked for: the options spanning cells, and every cell's
    settings but its model, task and probe (field name -> value)."""

    plan: PlanOptions
    cell: Mapping[str, Any]

    def configs(self) -> list[RunConfig]:
        """One validated :class:`RunConfig` per model x task x probe x site, in that order."""
        configs = [RunConfig(model=m, task=t, probe=p, site=s, **self.cell)
                   for m in self.plan.model for t in self.plan.task for p in self.plan.probe for s in self.plan.site]
        if self.plan.extract_shards > 1:
            check_shardable(configs[0])
        if self.plan.model_gpus != 1 and not str(configs[0].device).startswith("cuda"):
            raise ValidationError(f"--model-gpus {self.plan.model_gpus:g}: GPUs for the model, which needs a CUDA "
                                  f"--device (here {configs[0].device})")
        return configs


def check_shardable(config: RunConfig) -> None:
    """``--extract-shards`` writes one store entry from several units: refused where the
    activations are not the store's (``--keep memory``) or depend on a pass over train
    before anything is stored (``--screen``)."""
    if config.keep == "memory":
        raise ValidationError("--extract-shards: the shards write the activation store; --keep memory keeps the "
                              "activations in one process's memory (use --keep disk or auto)")
    if config.screen != "off":
        raise ValidationError(f"--extract-shards with --screen {config.screen}: a screened run chooses its neurons "
                              "from one streamed pass over train before anything is stored, which is not split "
                              "into shards; use one extract unit (--extract-shards 1)")


def request_from_values(values: Mapping[str, Any]) -> RunRequest:
    """The request of the command line's values (option dest -> the parser's value, every
    option present): each converted to its field (``to_field``) and validated, every cell's
    settings before anything is resolved or loaded."""
    plan: dict[str, Any] = {}
    cell: dict[str, Any] = {}
    for cls, name, opt in run_options():
        value = values[opt.dest]
        (plan if cls is PlanOptions else cell)[name] = value if opt.to_field is None else opt.to_field(value)
    request = RunRequest(PlanOptions(**plan), cell)
    request.configs()  # every cell's settings validated here
    return request


def run_defaults() -> dict[str, Any]:
    """Every option's command-line default, by dest."""
    return {opt.dest: _cli_default(cls, name, opt) for cls, name, opt in run_options()}


def request_from_kwargs(**options: Any) -> RunRequest:
    """:func:`neuroscope.run`'s keyword arguments (the options' names with ``_`` for ``-``,
    values as Python values or as the command line spells them) as a request; an unknown
    name or a value of the wrong type is a :class:`ValidationError` naming it."""
    by_dest = {opt.dest: opt for _, _, opt in run_options()}
    values = run_defaults()
    for name, value in options.items():
        if name not in by_dest:
            raise ValidationError(f"neuroscope.run: unknown option {name!r}; the options are those of "
                                  f"`neuroscope run` with _ for -: {', '.join(sorted(by_dest))}")
        opt = by_dest[name]
        try:
            values[name] = opt.convert(value)
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            raise ValidationError(f"{name}={value!r}: {exc}") from None
    return request_from_values(values)


def options_markdown() -> str:
    """The option table of docs/cli.md: every option, its default, allowed values and help."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    rows = ["| option | default | allowed | meaning |", "|---|---|---|---|"]
    for cls, name, opt in run_options():
        rows.append(f"| `{opt.flag}` | {cell(default_text(cls, name, opt))} | {cell(opt.allowed())} | {cell(opt.help)} |")
    return "\n".join(rows) + "\n"


#: the markers around the generated table in docs/cli.md
TABLE_BEGIN = ("<!-- run options: generated by `python -c \"from neuroscope.settings import write_options_table; "
               "write_options_table('docs/cli.md')\"` -->\n")
TABLE_END = "<!-- end of run options -->\n"


def with_options_table(text: str) -> str:
    """``text`` (docs/cli.md) with the table between the markers replaced by :func:`options_markdown`."""
    pattern = re.compile(re.escape(TABLE_BEGIN) + ".*?" + re.escape(TABLE_END), re.S)
    if not pattern.search(text):
        raise ValueError("docs/cli.md has no run options markers")
    return pattern.sub(lambda _: TABLE_BEGIN + "\n" + options_markdown() + "\n" + TABLE_END, text)


def write_options_table(path: str | Path) -> None:
    """Rewrite the option table of docs/cli.md (``path``) from the options."""
    path = Path(path)
    path.write_text(with_options_table(path.read_text(encoding="utf-8")), encoding="utf-8")
