"""Control tasks and selectivity (paper section 2, "Control Tasks"; Hewitt & Liang 2019).

Each word type gets a control label sampled from the empirical token
distribution of the task's training labels, so the control task has the same
label marginals but no linguistic structure; a probe can solve it only by
memorising word types. Types are the exact word forms. Train types are
sampled in order of first appearance; dev and test use the same map, and
types never seen in train get a fresh sample, in order of first appearance in
dev, then test. Everything is drawn from one generator seeded with the run's
seed.

Selectivity = task accuracy - control accuracy, for probes trained with the
same settings on the same neurons: all neurons (Sel_a) and the minimal set
(Sel_t).
"""

from __future__ import annotations

import numpy as np

from neuroscope.types import TaskData


def control_labels(task: TaskData, seed: int) -> dict[str, list[str]]:
    """Control label of every token of every split (same shape as the task labels)."""
    counts = task.train.label_counts()
    labels = sorted(counts)
    probs = np.array([counts[k] for k in labels], dtype=np.float64)
    probs /= probs.sum()
    rng = np.random.default_rng(seed)
    mapping: dict[str, str] = {}

    def assign(word: str) -> str:
        if word not in mapping:
            mapping[word] = labels[int(rng.choice(len(labels), p=probs))]
        return mapping[word]

    out: dict[str, list[str]] = {}
    for name in ("train", "dev", "test"):
        out[name] = [assign(w) for s in task.splits[name].sentences for w in s.words]
    return out


def selectivity(task_accuracy: float, control_accuracy: float) -> float:
    """Selectivity in accuracy points: task minus control."""
    return task_accuracy - control_accuracy
