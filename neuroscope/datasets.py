"""The dataset registry: where each corpus lives, how to fetch and verify it.

``[datasets.NAME]`` tables of registry.toml list, per dataset, the files it puts
under the data directory with their sha256 and public source (a URL, or a member
of a zip at a URL), or, for licensed corpora, where to obtain them. Downloads and
copies land under a temporary name and are renamed only after the checksum
matches: a failed or corrupt transfer leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Callable

import attrs

from neuroscope.errors import NeuroscopeError, RegistryError
from neuroscope.rundir import naming
from neuroscope.registry import Registry

log = logging.getLogger(__name__)


@attrs.frozen
class DataFile:
    path: str
    sha256: str
    url: str | None = None
    member: str | None = None


@attrs.frozen
class Dataset:
    name: str
    description: str
    licence: str
    tasks: tuple[str, ...]
    files: tuple[DataFile, ...]
    path: str | None = None
    obtain: str | None = None

    @property
    def licensed(self) -> bool:
        return not self.files

    def expected(self) -> list[str]:
        return [f.path for f in self.files] if self.files else [self.path or ""]


def relative_file(dataset: str, path: Any) -> str:
    """A dataset's file name as a relative path that stays inside the data directory, or a
    :class:`RegistryError` naming the ``[datasets.NAME]`` entry: a name that is absolute or
    climbs out with ``..`` would make ``data fetch`` write (or ``--from`` read) anywhere."""
    if not isinstance(path, str) or not path.strip():
        raise RegistryError(f"[datasets.{dataset}]: a file's path must be a non-empty relative path, got {path!r}")
    pure = PurePosixPath(path)
    if pure.is_absolute() or PureWindowsPath(path).is_absolute() or ".." in pure.parts or "\\" in path:
        raise RegistryError(f"[datasets.{dataset}]: file path {path!r} must stay inside the data directory "
                            "(relative, without '..')")
    return path


def inside(root: Path, relative: str, what: str) -> Path:
    """``root / relative``, refused unless it resolves inside ``root`` (symbolic links included)."""
    target = Path(root) / relative
    if not target.resolve().is_relative_to(Path(root).resolve()):
        raise NeuroscopeError(f"{target}: resolves outside the {what} {root}; refused")
    return target


def datasets(registry: Registry) -> list[Dataset]:
    out = []
    for name, entry in sorted(registry.file.get("datasets", {}).items()):
        files = tuple(DataFile(relative_file(name, f["path"]), f["sha256"], f.get("url"), f.get("member"))
                      for f in entry.get("files", []))
        out.append(Dataset(name, entry["description"], entry["licence"], tuple(entry.get("tasks", [])), files,
                           entry.get("path"), entry.get("obtain")))
    return out


def get_dataset(registry: Registry, name: str) -> Dataset:
    known = {d.name: d for d in datasets(registry)}
    if name in known:
        return known[name]
    by_task = [d for d in known.values() if name in d.tasks]
    if by_task:
        return by_task[0]
    import difflib

    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise NeuroscopeError(f"unknown dataset {name!r}{hint} (known: {', '.join(sorted(known))})")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def status(dataset: Dataset, data_dir: Path, registry: Registry | None = None, verify: bool = False) -> dict[str, Any]:
    """Where a dataset is expected, whether it is there (and intact with ``verify``), its size and label counts."""
    paths = [Path(data_dir) / p for p in dataset.expected()]
    present = all(p.exists() for p in paths)
    out: dict[str, Any] = {"name": dataset.name, "expected": [str(p) for p in paths], "present": present,
                           "size": sum(_size(p) for p in paths) if present else 0, "licence": dataset.licence,
                           "licensed": dataset.licensed, "labels": {}}
    if verify and present and dataset.files:
        out["verified"] = all(sha256_of(Path(data_dir) / f.path) == f.sha256 for f in dataset.files)
    if present and registry is not None:
        from neuroscope.loading import load_task

        for task in dataset.tasks:
            try:
                out["labels"][task] = len(load_task(registry, task, Path(data_dir)).labels)
            except NeuroscopeError as exc:
                out["labels"][task] = f"error: {exc}"
    return out


def _download(url: str, target: Path, progress: Callable[[int, int | None], None] | None) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as response, naming(target), open(target, "wb") as out:
            total = response.headers.get("Content-Length")
            total_bytes = int(total) if total and total.isdigit() else None
            while True:
                block = response.read(1 << 16)
                if not block:
                    break
                out.write(block)
                if progress:
                    progress(len(block), total_bytes)
    except OSError as exc:
        if exc.filename == str(target):  # writing, not downloading, failed (a full disk)
            raise
        raise NeuroscopeError(f"cannot download {url}: {exc}; with no network, use --from DIR with a local copy") \
            from exc


def fetch(dataset: Dataset, data_dir: Path, source: Path | None = None,
          progress: Callable[[int, int | None], None] | None = None) -> list[Path]:
    """Fetch every file of ``dataset`` into ``data_dir`` (from ``source``, a local mirror with the same
    layout, when given); verify each sha256. Files already present and intact are kept."""
    if dataset.licensed:
        raise NeuroscopeError(f"{dataset.name} is licensed ({dataset.licence}) and cannot be fetched: "
                              f"{dataset.obtain}")
    written = []
    downloads: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="neuroscope-fetch-") as tmp:
        for f in dataset.files:
            target = inside(Path(data_dir), f.path, "data directory")
            if target.is_file() and sha256_of(target) == f.sha256:
                log.info("%s is present and intact", target)
                written.append(target)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            part = target.with_name(target.name + ".part")
            try:
                with naming(target):  # a full disk: name the file being written
                    if source is not None:
                        origin = inside(Path(source), f.path, "mirror")
                        if not origin.is_file():
                            raise NeuroscopeError(f"{origin}: not found in the mirror {source} (expected {f.path})")
                        shutil.copyfile(origin, part)
                        if progress:
                            progress(part.stat().st_size, None)
                    else:
                        if not f.url:
                            raise NeuroscopeError(f"{dataset.name}: no URL for {f.path}")
                        if f.url not in downloads:
                            downloads[f.url] = Path(tmp) / f"download-{len(downloads)}"
                            _download(f.url, downloads[f.url], progress)
                        if f.member:
                            try:
                                with zipfile.ZipFile(downloads[f.url]) as zf, zf.open(f.member) as src, \
                                        open(part, "wb") as dst:
                                    shutil.copyfileobj(src, dst)
                            except (zipfile.BadZipFile, KeyError) as exc:
                                raise NeuroscopeError(f"{f.url}: no member {f.member} in the downloaded zip "
                                                      f"({exc})") from exc
                        else:
                            shutil.copyfile(downloads[f.url], part)
                    digest = sha256_of(part)
                    if digest != f.sha256:
                        raise NeuroscopeError(f"{f.path}: sha256 {digest} does not match the expected {f.sha256} "
                                              f"(from {source or f.url}); nothing was written")
                    os.replace(part, target)
            finally:
                if part.exists():
                    part.unlink()
            written.append(target)
    return written
