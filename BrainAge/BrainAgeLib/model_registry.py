"""Model registry: named, versioned packages downloaded on demand into a per-user cache.

The registry is a JSON file (``BrainAge/Resources/Models.json``)::

    {"models": [{"name": ..., "version": ..., "url": ..., "sha256": ..., "description": ...,
                 "synthetic_demo": false}]}

``url`` points at a .zip of a package folder. Downloads are verified against
``sha256`` before unpacking; imported local packages are verified by loading them.
Entries with ``"bundled": true`` and a ``path`` ship inside the extension instead
(:mod:`bundled_models`).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import ChecksumError, ModelPackageError
from .io import os_error_reason
from .package import load_package, read_card
from .user_cache import cache_dir


@dataclass(frozen=True)
class RegistryEntry:
    name: str
    version: str
    url: str = ""
    sha256: str = ""
    description: str = ""
    synthetic_demo: bool = False

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}"


def models_dir() -> Path:
    return cache_dir() / "models"


def read_registry(path: str | os.PathLike) -> list[RegistryEntry]:
    """Downloadable entries (with a ``url``); bundled ones are read by :mod:`bundled_models`."""
    data = json.loads(Path(path).read_text())
    fields = RegistryEntry.__dataclass_fields__
    return [RegistryEntry(**{k: v for k, v in item.items() if k in fields}) for item in data.get("models", [])
            if item.get("url")]


def installed_models() -> list[Path]:
    """Package folders in the cache (each holds a model card)."""
    root = models_dir()
    return sorted(p for p in root.iterdir() if (p / "model_card.json").is_file()) if root.is_dir() else []


def _safe_extract(archive: zipfile.ZipFile, target: Path) -> None:
    for member in archive.namelist():
        resolved = (target / member).resolve()
        if not str(resolved).startswith(str(target.resolve())):
            raise ModelPackageError(f"archive member {member!r} would be written outside the model folder; refused")
    archive.extractall(target)


def _package_root(folder: Path) -> Path:
    if (folder / "model_card.json").is_file():
        return folder
    cards = list(folder.rglob("model_card.json"))
    if len(cards) != 1:
        raise ModelPackageError(f"the archive holds {len(cards)} model cards; expected exactly one package")
    return cards[0].parent


def _cache_error(exc: OSError) -> ModelPackageError:
    return ModelPackageError(
        f"the model cache {models_dir()} cannot be written: {os_error_reason(exc)}. Nothing was installed; set "
        "BRAINAGE_CACHE to a folder you can write to, on a disk with free space, and try again."
    )


def download_model(entry: RegistryEntry, *, progress: Callable[[int, int], None] | None = None) -> Path:
    """Download (once), verify and unpack a registry model; returns its package folder.

    The download goes into a temporary folder inside the cache that is removed whatever happens, so an
    interrupted or corrupted download leaves nothing behind (run it again to start over); only a file of
    the full length and the registry's sha256 is unpacked, and only a package whose weights verify is installed.
    """
    target = models_dir() / entry.key
    if (target / "model_card.json").is_file():
        return target
    try:
        models_dir().mkdir(parents=True, exist_ok=True)
        workspace = tempfile.TemporaryDirectory(prefix=f".{entry.key}.", dir=models_dir())
    except OSError as exc:
        raise _cache_error(exc) from exc
    with workspace as tmp:
        archive = Path(tmp) / "package.zip"
        _fetch(entry, archive, progress)
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(archive) as zf:
            _safe_extract(zf, unpacked)
        root = _package_root(unpacked)
        load_package(root)  # verifies every weight checksum before it is installed
        try:
            os.replace(root, target)
        except OSError as exc:
            raise _cache_error(exc) from exc
    return target


def _fetch(entry: RegistryEntry, archive: Path, progress: Callable[[int, int], None] | None) -> None:
    """Download ``entry.url`` into ``archive``; a short or altered download raises (the caller removes it)."""
    digest, done, total = hashlib.sha256(), 0, 0

    def interrupted(why: str) -> ModelPackageError:
        return ModelPackageError(
            f"{entry.key}: the download from {entry.url} was interrupted after {done} of {total or 'unknown'} bytes "
            f"({why}); the partial file was removed and nothing was installed. Check the connection and try again."
        )

    try:
        out = open(archive, "wb")
    except OSError as exc:
        raise _cache_error(exc) from exc
    with out:
        try:
            response = urllib.request.urlopen(entry.url)  # noqa: S310 (registry URLs)
        except (OSError, http.client.HTTPException) as exc:
            raise ModelPackageError(f"{entry.key}: cannot download {entry.url} ({exc}); check the connection and try again.") from exc
        with response:
            total = int(response.headers.get("Content-Length") or 0)
            while True:
                try:
                    chunk = response.read(1 << 20)
                except (OSError, http.client.HTTPException) as exc:
                    raise interrupted(f"{type(exc).__name__}: {exc}") from exc
                if not chunk:
                    break
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise _cache_error(exc) from exc
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
    if total and done != total:
        raise interrupted("the connection closed early")
    if digest.hexdigest() != entry.sha256:
        raise ChecksumError(
            f"{entry.key}: the downloaded file's sha256 does not match the registry (a partial or altered download); "
            "it was removed and nothing was installed. Try again; if this persists the file on the server has changed."
        )


def import_package(source: str | os.PathLike) -> Path:
    """Verify a local package folder (or .zip) and copy it into the cache; returns the cached folder."""
    source = Path(source)
    with tempfile.TemporaryDirectory() as tmp:
        if source.is_file() and source.suffix == ".zip":
            with zipfile.ZipFile(source) as zf:
                _safe_extract(zf, Path(tmp))
            source = _package_root(Path(tmp))
        card = read_card(source)
        load_package(source)
        target = models_dir() / f"{card.name}-{card.version}"
        try:
            if target.exists():
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(source, target)
        except OSError as exc:
            shutil.rmtree(target, ignore_errors=True)  # no half-copied package in the cache
            raise _cache_error(exc) from exc
    return target
