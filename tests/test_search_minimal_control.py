"""The lambda search score, the minimal-set scan and the control task on small, hand-checkable inputs."""

import numpy as np
import pytest

from neuroscope import Corpus, Sentence, TaskData
from neuroscope.control import control_labels, selectivity
from neuroscope.errors import ValidationError
from neuroscope.minimal import first_within, minimal_neuron_scan, scan_sizes, train_from
from neuroscope.probe import ElasticNetProbe, TrainSettings, train_elastic_net
from neuroscope.ranking import weight_mass_ranking
from neuroscope.search import group_size, lambda_grid, lambda_search, selection_score
from neuroscope.ablation import accuracy


def test_selection_score_formula():
    # S = 0.5 (90 - 20) - 0.5 (95 - 93) = 35 - 1 = 34
    assert selection_score(90.0, 20.0, 95.0, 93.0) == pytest.approx(34.0)
    assert selection_score(90.0, 20.0, 95.0, 93.0, alpha=1.0, beta=2.0) == pytest.approx(66.0)


def test_paper_grid_has_64_pairs():
    grid = lambda_grid()
    assert len(grid) == 64 and grid[0] == (0.0, 0.0) and (1e-7, 1e-1) in grid


def test_group_size_respects_memory():
    assert group_size(1000, 10, 64, memory=16 * 1000 * 10 * 5) == 5
    assert group_size(1000, 10, 3, memory=10**12) == 3
    assert group_size(10**6, 10**3, 64, memory=1) == 1


def test_scan_sizes_and_stopping_rule():
    assert scan_sizes(250)[:4] == [3, 5, 8, 10] and scan_sizes(250)[-1] == 250
    assert scan_sizes(50) == list(range(1, 51))  # 0.5 rounds up to 1: every size once
    assert len(scan_sizes(9984)) == 100
    # oracle 96.0: delta 0.5 needs >= 95.5, delta 2 needs >= 94.0
    accs = [80.0, 93.9, 94.0, 95.4, 95.5, 97.0]
    assert first_within(accs, 96.0, 0.5) == 4
    assert first_within(accs, 96.0, 2.0) == 2
    assert first_within([1.0], 96.0, 0.5) is None


def planted(n=4000, d=60, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, size=n)
    X = rng.normal(size=(n, d)).astype(np.float32)
    for c in range(4):
        X[:, 2 * c] += 2.5 * (y == c)
        X[:, 2 * c + 1] += 1.5 * (y == c)
    return X, y


def test_lambda_search_records_every_point_and_picks_max_score():
    X, y = planted()
    grid = [(0.0, 0.0), (1e-2, 0.0), (1e-3, 1e-3)]
    result = lambda_search(X[:3000], y[:3000], X[3000:], y[3000:], 4, grid, TrainSettings(epochs=3),
                           weight_mass_ranking, {"stride": 100}, fraction=0.2)
    assert [(p.l1, p.l2) for p in result.points] == grid
    assert result.unregularised == result.points[0].all
    for p in result.points:
        assert p.score == pytest.approx(0.5 * (p.top - p.bottom) - 0.5 * (result.unregularised - p.all))
    best = max(result.points, key=lambda p: p.score)
    assert result.best == (best.l1, best.l2)
    # the search's probe for a pair is the probe trained alone
    alone = ElasticNetProbe(l1=1e-2, epochs=3).fit(X[:3000], y[:3000])
    assert accuracy(np.searchsorted(alone.classes_, alone.predict(X[3000:])), y[3000:]) == pytest.approx(
        result.points[1].all)
    # the winner's probe is kept: it is the probe the oracle would train again
    coef, intercept = result.best_probe
    winner = ElasticNetProbe(l1=result.best[0], l2=result.best[1], epochs=3).fit(X[:3000], y[:3000])
    np.testing.assert_allclose(coef, winner.coef_, atol=1e-5)
    np.testing.assert_allclose(intercept, winner.intercept_, atol=1e-5)


def sequential_scan(X_train, y_train, X_dev, y_dev, ranking, lambdas, settings, oracle, delta):
    """Reference: the paper's scan, one separately trained probe per size."""
    for n in scan_sizes(ranking.n_neurons):
        probe = ElasticNetProbe(l1=lambdas[0], l2=lambdas[1], epochs=settings.epochs, seed=settings.seed,
                                neurons=np.sort(ranking.order[:n])).fit(X_train, y_train)
        acc = accuracy(np.searchsorted(probe.classes_, probe.predict(X_dev)), y_dev)
        if acc >= oracle - delta:
            return n, acc
    raise AssertionError("no size reached the oracle")


@pytest.mark.parametrize("block", [1, 3, 8])
def test_block_scan_returns_the_sequential_scans_answer(block):
    X, y = planted()
    settings = TrainSettings(epochs=3, seed=2)
    oracle = ElasticNetProbe(l1=1e-3, l2=1e-3, epochs=3, seed=2).fit(X[:3000], y[:3000])
    ranking = weight_mass_ranking(oracle.coef_)
    oracle_dev = accuracy(np.searchsorted(oracle.classes_, oracle.predict(X[3000:3500])), y[3000:3500])
    scan = minimal_neuron_scan(X[:3000], y[:3000], X[3000:3500], y[3000:3500], X[3500:], y[3500:], 4, ranking,
                               (1e-3, 1e-3), settings, oracle_dev, deltas=(0.5, 2.0), block=block)
    for delta in (0.5, 2.0):
        n, acc = sequential_scan(X[:3000], y[:3000], X[3000:3500], y[3000:3500], ranking, (1e-3, 1e-3), settings,
                                 oracle_dev, delta)
        found = scan.for_delta(delta)
        assert found.n_neurons == n
        assert found.dev_accuracy == pytest.approx(acc, abs=0.21)
        assert found.dev_accuracy >= oracle_dev - delta
        assert len(found.neurons) == n and set(found.neurons) == set(ranking.order[:n].tolist())
    assert scan.for_delta(2.0).n_neurons <= scan.for_delta(0.5).n_neurons < 60


@pytest.mark.parametrize("start", ["oracle", "previous"])
def test_warm_started_scans_train_less_and_find_the_cold_scans_sets(start):
    """--scan-start oracle|previous: warm-started sizes trained 1 epoch instead of 3; on
    planted data they find the cold scan's sets (within one step) for fewer rows trained
    (oracle: a third; previous: its first block as the cold scan's), and the record says how
    the scan was made."""
    X, y = planted()
    settings = TrainSettings(epochs=3, seed=2, batch_size=128)  # 24 optimiser steps an epoch
    oracle = ElasticNetProbe(l1=1e-3, l2=1e-3, epochs=3, seed=2, batch_size=128).fit(X[:3000], y[:3000])
    ranking = weight_mass_ranking(oracle.coef_)
    oracle_dev = accuracy(np.searchsorted(oracle.classes_, oracle.predict(X[3000:3500])), y[3000:3500])
    rows = {"cold": 0, start: 0}

    def scan(how):
        def count(n):
            rows[how] += n
        return minimal_neuron_scan(X[:3000], y[:3000], X[3000:3500], y[3000:3500], X[3500:], y[3500:], 4, ranking,
                                   (1e-3, 1e-3), settings, oracle_dev, block=2, progress=count, start=how,
                                   oracle=(oracle.coef_, oracle.intercept_), epochs=1)

    cold, warm = scan("cold"), scan(start)
    blocks, warm_blocks = -(-len(cold.sizes) // 2), -(-len(warm.sizes) // 2)
    assert rows["cold"] == 3000 * 3 * blocks  # every block 3 epochs
    # warm blocks 1 epoch each (previous: its first block the cold scan's 3)
    assert rows[start] == 3000 * (warm_blocks if start == "oracle" else 3 + warm_blocks - 1) < rows["cold"]
    step = scan_sizes(ranking.n_neurons)[0]
    for delta in (0.5, 2.0):
        assert abs(warm.for_delta(delta).n_neurons - cold.for_delta(delta).n_neurons) <= step
        assert warm.for_delta(delta).dev_accuracy >= oracle_dev - delta
    first_block_as_cold = warm.dev_accuracies[:2] == cold.dev_accuracies[:2]
    assert first_block_as_cold == (start == "previous")  # previous: the first block is the cold one
    assert "start" not in cold.to_json() and (warm.to_json()["start"], warm.to_json()["epochs"]) == (start, 1)
    assert type(warm).from_json(warm.to_json()) == warm


def test_the_scan_start_options_are_validated_before_anything_loads():
    from neuroscope.settings import RunConfig

    base = dict(model="m", task="t", data_dir="/d")
    assert not {"scan_start", "scan_epochs"} & set(RunConfig(**base).to_json())  # config.json as it was
    assert RunConfig(**base, scan_start="previous", scan_epochs=2).to_json()["scan_start"] == "previous"
    with pytest.raises(ValidationError, match="--scan-epochs: applies to --scan-start oracle or previous"):
        RunConfig(**base, scan_epochs=2).validate()
    with pytest.raises(ValidationError, match="--scan-start oracle: only the elastic-net probe"):
        RunConfig(**base, scan_start="oracle", probe="lbfgs").validate()
    with pytest.raises(ValidationError, match="--scan-epochs"):
        RunConfig(**base, scan_start="oracle", scan_epochs=0).validate()


def test_a_warm_scan_is_refused_without_what_it_starts_from():
    X, y = planted()
    ranking = weight_mass_ranking(ElasticNetProbe(l1=1e-3, l2=1e-3, epochs=1).fit(X[:3000], y[:3000]).coef_)
    args = (X[:3000], y[:3000], X[3000:3500], y[3000:3500], X[3500:], y[3500:], 4, ranking, (1e-3, 1e-3),
            TrainSettings(epochs=1), 90.0)
    with pytest.raises(ValidationError, match="oracle probe's weights"):
        minimal_neuron_scan(*args, start="oracle", epochs=1)
    with pytest.raises(ValidationError, match="elastic-net probe's trainer"):
        minimal_neuron_scan(*args, start="previous", epochs=1, trainer=lambda *a, **k: None)
    with pytest.raises(ValidationError, match="scan start 'warm'"):
        minimal_neuron_scan(*args, start="warm", epochs=1)


def test_oracle_start_keeps_each_size_to_its_neurons():
    X, y = planted()
    oracle = ElasticNetProbe(l1=1e-3, l2=1e-3, epochs=2, seed=0).fit(X[:3000], y[:3000])
    columns = weight_mass_ranking(oracle.coef_).order[:10]
    masks = np.zeros((3, 10), dtype=bool)
    for g, n in enumerate((2, 5, 10)):
        masks[g, :n] = True
    coef, _ = train_from(X[:3000], y[:3000], 4, (1e-3, 1e-3), TrainSettings(epochs=1), columns, masks,
                         (oracle.coef_[:, columns], oracle.intercept_), 1, None)
    assert (coef[~np.broadcast_to(masks[:, None, :], coef.shape)] == 0).all()
    assert not np.allclose(coef[2], oracle.coef_[:, columns])  # trained on, not the oracle's weights as they were


def toy_task():
    s = lambda words, labels: Sentence(words.split(), labels.split())  # noqa: E731
    train = Corpus("train", [s("the cat sat", "D N V"), s("the dog ran", "D N V"), s("a cat", "D N")])
    dev = Corpus("dev", [s("the bird sat", "D N V")])
    test = Corpus("test", [s("a fish", "D N")])
    return TaskData("toy", train, dev, test)


def test_control_labels_map_types_consistently_and_are_seeded():
    task = toy_task()
    control = control_labels(task, seed=0)
    assert [len(v) for v in control.values()] == [8, 3, 2]
    words = {split: [w for s in task.splits[split].sentences for w in s.words] for split in task.splits}
    mapping = {}
    for split in ("train", "dev", "test"):
        for w, c in zip(words[split], control[split]):
            assert mapping.setdefault(w, c) == c  # one label per type, across splits
    assert set(mapping.values()) <= {"D", "N", "V"}
    assert control_labels(task, seed=0) == control
    assert any(control_labels(task, seed=s) != control for s in range(1, 5))


def test_control_labels_follow_the_empirical_distribution():
    rng = np.random.default_rng(0)
    sentences = [Sentence([f"w{rng.integers(5000)}" for _ in range(10)], ["A"] * 7 + ["B"] * 2 + ["C"])
                 for _ in range(2000)]
    task = TaskData("big", Corpus("train", sentences), Corpus("dev", sentences[:1]), Corpus("test", sentences[:1]))
    control = control_labels(task, seed=1)
    types = {}
    for s in sentences:
        for w in s.words:
            types.setdefault(w, None)
    mapping = dict(zip([w for s in sentences for w in s.words], control["train"]))
    share_a = np.mean([mapping[w] == "A" for w in types])
    assert share_a == pytest.approx(0.7, abs=0.03)


def test_selectivity_is_task_minus_control():
    assert selectivity(96.0, 70.5) == pytest.approx(25.5)


def test_search_keeps_the_winners_probe_across_groups():
    """One setting per group (tiny memory budget), (0, 0) not in the grid: trained last,
    so S is unknown until the end and the leader must still be the winner."""
    X, y = planted()
    grid = [(1e-3, 1e-3), (1e-2, 0.0), (0.0, 1e-2)]
    result = lambda_search(X[:3000], y[:3000], X[3000:], y[3000:], 4, grid, TrainSettings(epochs=2),
                           weight_mass_ranking, {"stride": 100}, fraction=0.2, memory=1)
    assert [(p.l1, p.l2) for p in result.points] == grid
    winner = ElasticNetProbe(l1=result.best[0], l2=result.best[1], epochs=2).fit(X[:3000], y[:3000])
    np.testing.assert_allclose(result.best_probe[0], winner.coef_, atol=1e-5)


class _TypeAdapter:
    """Word vectors seeded by the word form (so control labels, a function of the type, are learnable)."""

    def __new__(cls):
        import zlib

        from neuroscope import ModelAdapter, NeuronIndex

        class Adapter(ModelAdapter):
            name = "type-hash"
            neuron_index = NeuronIndex(("l0", "l1"), 8)

            def identity(self):
                return {"adapter": self.name}

            def batches(self, sentences):
                return [list(range(len(sentences)))]

            def embed(self, sentences):
                return [np.stack([np.random.default_rng(zlib.crc32(w.encode())).normal(size=(2, 8))
                                  for w in words], axis=1).astype(np.float32) for words in sentences]

        return Adapter()


def test_control_step_pair_or_separate_trainings_agree(tmp_path, monkeypatch):
    """The masked pair (one read) and the two separate trainings are the same control probes."""
    import neuroscope.steps.control as steps
    from neuroscope.store import ActivationStore

    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(30)]
    def corpus(name, n):
        sents = [Sentence(list(rng.choice(vocab, size=6)), list(rng.choice(["A", "B", "C"], size=6))) for _ in range(n)]
        return Corpus(name, sents)
    task = TaskData("toy", corpus("train", 300), corpus("dev", 60), corpus("test", 60))
    store = ActivationStore(tmp_path)
    acts = {name: store.get_or_extract(_TypeAdapter(), c) for name, c in task.splits.items()}
    params = {"l1": 1e-4, "l2": 0.0, "lr": 1e-2, "batch_size": 64, "epochs": 3, "device": "cpu"}
    accs = {split: {"all": 50.0, "selected": 45.0} for split in ("dev", "test")}
    selected = {"a": np.array([1, 4, 9, 12]), "b": np.array([0, 2, 3])}  # two rankers' minimal sets
    results = {}
    for choice in (True, False):
        monkeypatch.setattr(steps, "reads_are_costly", lambda X, device, c=choice: c)
        results[choice] = steps.control_step(train_elastic_net, params, acts, task, 0, selected,
                                             {"a": accs, "b": accs}, "error")
    for name in selected:
        for split in ("dev", "test"):
            for k in ("all", "selected"):
                assert results[True][name][split]["control"][k] == pytest.approx(
                    results[False][name][split]["control"][k], abs=1e-9)
    assert results[True]["a"]["dev"]["control"]["all"] > 60  # control labels of seen types are learnable
    assert results[True]["a"]["dev"]["control"]["all"] == results[True]["b"]["dev"]["control"]["all"]
    assert results[True]["a"]["selected"] == 4 and results[True]["b"]["selected"] == 3
