"""docs/python.md as a real Jupyter notebook, executed twice in one fresh checkout.

Builds a notebook from the page (prose as markdown cells, each ``python`` block as a code
cell), copies the committed tree (``git archive HEAD``) to a temporary directory with
``../shared`` beside it pointing at the real corpora, and executes the notebook with
nbclient and an IPython kernel, from the checkout's root, twice: the second execution is
what a user sees re-running the notebook the same day. Prints, per execution, the wall
time, the cells that raised, and how many cells displayed a figure (image/png) or HTML.
Exits 1 when a cell raised.

Needs ``pip install nbclient nbformat ipykernel`` (not dependencies of neuroscope).

    python bench/notebook.py [--data ../shared] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, committed_copy, write_results


def notebook_of(page: Path):  # type: ignore[no-untyped-def]
    import nbformat

    text = page.read_text(encoding="utf-8")
    cells = []
    for k, part in enumerate(re.split(r"```python\n(.*?)```", text, flags=re.S)):
        if not part.strip():
            continue
        cells.append(nbformat.v4.new_code_cell(part.rstrip()) if k % 2 else nbformat.v4.new_markdown_cell(part.strip()))
    return nbformat.v4.new_notebook(cells=cells)


def execute(notebook, cwd: Path, env: dict[str, str]) -> dict:  # type: ignore[no-untyped-def]
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.from_dict(json.loads(json.dumps(notebook)))
    began = time.perf_counter()
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(cwd)}},
                       allow_errors=True).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [(i, o.get("ename"), o.get("evalue", "")[:300]) for i, c in enumerate(code) for o in c.outputs
              if o.output_type == "error"]
    figures = sum(any("image/png" in o.get("data", {}) for o in c.outputs) for c in code)
    htmls = sum(any("text/html" in o.get("data", {}) for o in c.outputs) for c in code)
    return {"seconds": round(time.perf_counter() - began, 1), "code_cells": len(code), "errors": errors,
            "cells_with_figures": figures, "cells_with_html": htmls}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared", help="the folder ../shared stands for")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="neuroscope-notebook-"))
    checkout = root / "checkout"
    checkout.mkdir()
    committed_copy(checkout)
    (root / "shared").symlink_to(args.data.resolve())
    notebook = notebook_of(checkout / "docs" / "python.md")
    env = {"NEUROSCOPE_CACHE": str(root / "cache")}
    outcomes = []
    for attempt in (1, 2):
        outcome = execute(notebook, checkout, env)
        outcomes.append(outcome)
        print(f"execution {attempt}: {outcome['seconds']} s, {outcome['code_cells']} code cells, "
              f"{len(outcome['errors'])} raised, {outcome['cells_with_figures']} showed a figure, "
              f"{outcome['cells_with_html']} showed HTML", flush=True)
        for cell, name, value in outcome["errors"]:
            print(f"  cell {cell}: {name}: {value}", flush=True)
    write_results("notebook", {"executions": outcomes})
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if any(o["errors"] for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
