"""The shape of the code (docs/architecture.md): the import graph of ``neuroscope/`` and
``plugins/`` has no circle, every arrow points down the layers, and no module imports
another's underscored names. The graph is read from the code's own import statements,
those inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: the layers, from the bottom up; a module may import modules of its own layer or below
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("version", "errors", "validation", "types", "hookspecs", "progress", "rundir", "figures",
                    "choices", "loaded")),
    ("methods and storage", ("store", "features", "statistics", "screening", "model", "probe", "lbfgs", "estimator",
                             "ranking", "rankers", "rankers.attribution", "rankers.contrast", "rankers.gaussian", "rankers.iou",
                             "rankers.lape", "rankers.mutual_information",
                             "rankers.probeless", "rankers.random_baseline", "ablation", "minimal", "control", "analyses", "comparison", "search", "halving",
                             "lambda_path", "search_methods", "causal",
                             "heatmap", "results", "readers", "neuron_pages", "planted", "rotation", "sparse_probing",
                             "parquet_store", "dashboards")),
    ("plugins and loading", ("registry_file", "registry", "loading", "datasets", "manifest", "resources")),
    ("settings and cells", ("settings", "cell")),
    ("steps and the run reader", ("steps", "steps.data", "steps.extraction", "steps.search", "steps.oracle",
                                  "steps.ablation", "steps.minimal", "steps.analyses", "steps.control",
                                  "steps.causal", "steps.rotation", "steps.sparse", "steps.summary", "steps.files",
                                  "runs", "export", "neuronpedia")),
    ("report", ("report", "compare", "neuronbench")),
    ("orchestrator", ("orchestrator",)),
    ("executors", ("executors",)),
    ("planning", ("planning",)),
    ("entry points", ("cli", "api", "plugin", "")),
]


def modules() -> dict[str, Path]:
    """Module name -> file, for neuroscope and the built-in plugins (neuroscope_plugins)."""
    found = {}
    for folder, package in (("neuroscope", "neuroscope"), ("plugins", "neuroscope_plugins")):
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = [package, *path.relative_to(REPO / folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def import_graph() -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """(module -> the modules it imports, [(importer, module, underscored name)])."""
    mods = modules()
    graph: dict[str, set[str]] = {name: set() for name in mods}
    underscored = []
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [(alias.name, None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [(f"{base}.{a.name}", None) if f"{base}.{a.name}" in mods else (base, a.name)
                           for a in node.names]
            else:
                continue
            for target, imported in targets:
                while target not in mods and "." in target:
                    target = target.rpartition(".")[0]
                if target in mods and target != name:
                    graph[name].add(target)
                    if imported and imported.startswith("_") and not imported.startswith("__"):
                        underscored.append((name, target, imported))
    return graph, underscored


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer_of() -> dict[str, int]:
    return {("neuroscope." + m).rstrip("."): k for k, (_, names) in enumerate(LAYERS) for m in names}


def test_the_import_graph_has_no_circle():
    graph, _ = import_graph()
    assert cycles(graph) == []


def test_cycles_are_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_another_modules_underscored_names():
    _, underscored = import_graph()
    assert underscored == []


def test_every_module_has_a_layer_and_imports_only_down():
    graph, _ = import_graph()
    layers = layer_of()
    ours = [m for m in graph if m == "neuroscope" or m.startswith("neuroscope.")]
    assert sorted(set(ours) - set(layers)) == [], "a new module needs its layer in LAYERS (docs/architecture.md)"
    assert sorted(set(layers) - set(ours)) == [], "LAYERS names a module that does not exist"
    upward = [(a, b) for a in ours for b in sorted(graph[a]) if b in layers and layers[b] > layers[a]]
    assert upward == [], "imports from a lower layer up to a higher one"


def test_the_layers_are_documented():
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    for title, _ in LAYERS:
        assert title in text, title
