"""Fetching model files from URLs with a cache and checksums (ELMo, Transformer-ELMo).

A local path is used as it is. A URL is downloaded once into
``<cache>/models/<sha256 of the URL>/<file name>`` (under a temporary name,
renamed when complete); when the registry gives the file's sha256 it is
verified, otherwise the digest of the first download is recorded beside the
file and every later use re-checks the cached bytes against it. Offline, a URL
that is not cached fails at once with a message that says to pass a local path.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from neuroscope.plugin import ModelLoadError, sha256_of


def _cache_root() -> Path:
    env = os.environ.get("NEUROSCOPE_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "neuroscope"
    return base / "models"


def is_url(location: str) -> bool:
    return urlparse(location).scheme in ("http", "https")


def fetch_file(location: str, sha256: str | None = None, what: str = "model file",
               offline_hint: str = "pass a local path instead") -> Path:
    """A local file for ``location`` (a path or an http(s) URL), verified when a digest is known.

    ``offline_hint`` ends the error when the download fails: how to use a local copy."""
    if not is_url(location):
        path = Path(location).expanduser()
        if not path.is_file():
            raise ModelLoadError(f"{path}: {what} not found")
        if sha256 and sha256_of(path) != sha256:
            raise ModelLoadError(f"{path}: sha256 does not match the expected {sha256}")
        return path
    folder = _cache_root() / hashlib.sha256(location.encode("utf-8")).hexdigest()[:24]
    target = folder / (Path(urlparse(location).path).name or "download")
    recorded = target.with_name(target.name + ".sha256")
    if target.is_file():
        digest = sha256_of(target)
        expected = sha256 or (recorded.read_text().strip() if recorded.is_file() else None)
        if expected and digest != expected:
            raise ModelLoadError(f"{target}: cached {what} is corrupt (sha256 {digest}, expected {expected}); "
                                 "delete it to download again")
        return target
    folder.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(location, timeout=60) as response, open(part, "wb") as out:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
    except OSError as exc:
        if part.exists():
            part.unlink()
        raise ModelLoadError(f"cannot download {what} {location}: {exc}; {offline_hint}") from exc
    digest = sha256_of(part)
    if sha256 and digest != sha256:
        part.unlink()
        raise ModelLoadError(f"{location}: sha256 {digest} does not match the expected {sha256}")
    os.replace(part, target)
    recorded.write_text(digest + "\n")
    return target
