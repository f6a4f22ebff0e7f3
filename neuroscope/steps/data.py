"""Step 1: the task's data as the run records it (``steps/data.json``): every split's
size, checksum and label statistics, and the majority baseline the probes must beat."""

from __future__ import annotations

import logging
from typing import Any

from neuroscope.types import TaskData

log = logging.getLogger(__name__)


def split_checksums(summary: Any) -> dict[str, str] | None:
    """Each split's sha256 from a data summary (steps/data.json), or None where it is not
    one (a damaged file)."""
    if not isinstance(summary, dict) or not isinstance(summary.get("splits"), dict) or \
            not all(isinstance(v, dict) and "sha256" in v for v in summary["splits"].values()):
        return None
    return {name: split["sha256"] for name, split in summary["splits"].items()}


def data_summary(task: TaskData) -> dict[str, Any]:
    """Sizes, checksums and label statistics of every split (reported in results)."""
    known = set(task.labels)
    train_texts = {s.words for s in task.train.sentences}
    out: dict[str, Any] = {"task": task.name, "description": task.description, "labels": list(task.labels),
                           "splits": {}}
    for name, corpus in task.splits.items():
        counts = corpus.label_counts()
        out["splits"][name] = {
            "source": corpus.source,
            "sentences": len(corpus),
            "tokens": corpus.n_tokens,
            "sha256": corpus.checksum(),
            "label_counts": counts,
            "unseen_labels": {k: v for k, v in counts.items() if k not in known},
            "also_in_train": 0 if name == "train" else sum(s.words in train_texts for s in corpus.sentences),
        }
    return out


def warn_unseen_labels(task_name: str, data: dict[str, Any], rule: str) -> None:
    """One warning per split whose tokens carry labels that train never has (``--unseen-labels``)."""
    for split, stats in data["splits"].items():
        if stats["unseen_labels"]:
            log.warning("%s: %d %s tokens carry labels unseen in train %s (rule: %s)", task_name,
                        sum(stats["unseen_labels"].values()), split, sorted(stats["unseen_labels"]), rule)


def majority_baseline(task: TaskData) -> dict[str, Any]:
    """Accuracy (%) of always predicting the most frequent training label."""
    counts = task.train.label_counts()
    label = max(counts, key=lambda k: (counts[k], k))
    out: dict[str, Any] = {"label": label}
    for name in ("dev", "test"):
        labels = task.splits[name].labels()
        out[name] = 100.0 * sum(1 for x in labels if x == label) / len(labels)
    return out
