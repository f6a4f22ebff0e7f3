"""The run directory: who may write it, whether it holds a run, and reading its files.

A run directory is claimed with an exclusive lock (``.lock``, ``flock``) while
a unit of its run writes it, so two runs started together with the same
``--out`` never both write: the second is refused at once. It is created only after the
settings are validated and the data read, and a directory with no finished
step (e.g. left by a run that failed while loading its model) counts as
free. A directory holding other files is never used: neither a new run nor
``--resume`` writes beside files that are not a run's.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import json
import os
import re
from pathlib import Path
from typing import Any, Iterator

from neuroscope.errors import RunDirectoryError

LOCK_NAME = ".lock"
#: files a run writes at its start, before any protocol step finishes
START_FILES = ("config.json", "steps", "timings", LOCK_NAME)
#: files in steps/ a run writes at its start: the data's summary and the activations' store handles
START_STEPS = ("data.json", "activations.json")


class State(enum.Enum):
    FREE = "free"  # absent, empty, or a run that finished no step
    RUN = "run"  # a run with finished steps
    FOREIGN = "foreign"  # other files: not a neuroscope run


#: the date a run directory's default name starts with (planning.default_run_dir)
DATED = re.compile(r"\d{4}-\d{2}-\d{2}-")


def find_run(path: str | Path) -> Path:
    """``path`` itself when it exists; else, for a name without its date
    (``runs/minilm-pos``), the newest ``runs/<date>-minilm-pos`` (docs/cli.md), so a
    command written down once keeps working on the next day's runs. Otherwise ``path``
    unchanged: the reader then says what is missing."""
    path = Path(path)
    if path.exists() or DATED.match(path.name):
        return path
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        return path
    dated = sorted(p for p in parent.iterdir() if p.is_dir() and DATED.match(p.name)
                   and p.name[len("0000-00-00-"):] == path.name)
    return dated[-1] if dated else path


def finished_steps(run_dir: Path) -> list[Path]:
    """Step files of the protocol that a run finished (:data:`START_STEPS` are written at the start)."""
    steps = Path(run_dir) / "steps"
    if not steps.is_dir():
        return []
    return sorted(p for p in steps.iterdir() if p.name not in START_STEPS and not p.name.endswith(".tmp"))


def state_of(run_dir: Path) -> State:
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirectoryError(f"{run_dir} is a file; --out must name a directory")
    if not run_dir.exists():
        return State.FREE
    names = {p.name for p in run_dir.iterdir()}
    if "config.json" in names and finished_steps(run_dir):
        return State.RUN
    if names <= set(START_FILES):
        return State.FREE
    return State.FOREIGN


def check_usable(run_dir: Path, resume: bool) -> State:
    """Refuse a directory that a run (with ``resume``) or a new run (without) may not use."""
    state = state_of(run_dir)
    if state is State.FOREIGN:
        raise RunDirectoryError(f"{run_dir} holds files that are not a neuroscope run; pass --out with a new or "
                                "empty directory")
    if state is State.RUN and not resume:
        raise RunDirectoryError(f"{run_dir} already holds a run; add --resume to continue it (same settings), or "
                                f"pass --out {free_name(run_dir)} for a new one")
    return state


def settings_difference(saved: dict[str, Any], wanted: dict[str, Any]) -> str:
    """The settings in which a run directory's config.json (``saved``) and a new request
    (``wanted``) differ, each with both values ("" when none differs)."""
    keys = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))

    def shown(value: Any) -> str:
        text = json.dumps(value)
        return text if len(text) <= 40 else text[:37] + "..."

    return "; ".join(f"{k}: {shown(saved.get(k))} in the run, {shown(wanted.get(k))} now" for k in keys)


def free_name(run_dir: Path) -> Path:
    """``RUN_DIR-2``, ``RUN_DIR-3``, ...: the first that holds nothing, for a message's advice."""
    run_dir = Path(run_dir)
    n = 2
    while run_dir.with_name(f"{run_dir.name}-{n}").exists():
        n += 1
    return run_dir.with_name(f"{run_dir.name}-{n}")


@contextlib.contextmanager
def claim(run_dir: Path) -> Iterator[None]:
    """Create ``run_dir`` and hold its lock while the body runs."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fh = open(run_dir / LOCK_NAME, "a")
    except (FileExistsError, NotADirectoryError):
        raise RunDirectoryError(f"{run_dir}: a file is in the way; --out must name a directory") from None
    except OSError as exc:
        raise RunDirectoryError(f"{run_dir}: cannot create or write it ({exc.strerror})") from None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirectoryError(f"{run_dir}: another neuroscope run is writing into it now; wait for it, or "
                                    "pass --out elsewhere") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_json(path: Path, what: str = "file") -> Any:
    """A JSON file of a run directory, or an error naming it and what to do."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirectoryError(f"{path}: no such {what}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDirectoryError(f"{path}: damaged {what}, not valid JSON ({exc}); "
                                + ("delete it and continue with --resume, which recomputes it"
                                   if path.parent.name == "steps" else "re-create it")) from None


def read_arrays(path: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """Arrays saved by a step (``.npz``), or an error naming the file and what to do."""
    import numpy as np

    path = Path(path)
    try:
        with np.load(path) as saved:
            return {k: saved[k] for k in keys}
    except FileNotFoundError:
        raise RunDirectoryError(f"{path}: missing; delete the step's .json beside it and continue with --resume, "
                                "which recomputes both") from None
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise RunDirectoryError(f"{path}: damaged ({type(exc).__name__}: {exc}); delete it and the step's .json "
                                "beside it and continue with --resume, which recomputes both") from None


@contextlib.contextmanager
def naming(path: Path) -> Iterator[None]:
    """Give an error of the block that names no file (a write on a full disk: ``write()``
    knows only a descriptor) ``path`` as its file, so the one line the user sees says where."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None or exc.errno is None:
            raise
        raise OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path)) from exc


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary name beside ``path`` to write to: renamed to ``path`` when the block ends,
    removed when it fails (a full disk, named by :func:`naming`), so a reader never finds a
    half-written file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with naming(path):
            yield tmp
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> None:
    """Write JSON through :func:`atomic_path`: never a half-written file."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")


def node_name() -> str:
    """The name of the machine a unit runs on, for timings.json and errors from a node:
    ``NEUROSCOPE_NODE_NAME`` where it is set (a lab's own node names, e.g. through
    ``ray start`` or ``--runtime-env``), else the host name."""
    import socket

    return os.environ.get("NEUROSCOPE_NODE_NAME") or socket.gethostname()
