"""sha256 of weight files, remembered per file version so an unchanged file is hashed once.

Hashing the paper-sized 5-fold package (410 MB) takes longer than reading it. Like git's
index, a file's digest is kept with the file's identity (absolute path, size, inode,
modification and status-change times in ns); while all of them are unchanged the stored
digest is returned, anything else (a copy, a download, an edit, a ``touch``) hashes again.
The record lives in the user cache (``digests.json``); when that folder cannot be written
every load simply hashes.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
from pathlib import Path

from .io import atomic_path
from .user_cache import cache_dir

RECORD_NAME = "digests.json"


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, hashed from a read-only memory map (no copy into Python)."""
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            return hashlib.sha256(b"").hexdigest()
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return hashlib.sha256(mapped).hexdigest()


def file_identity(path: str | os.PathLike) -> list[int]:
    """What changes whenever the file's bytes can have changed: size, inode, mtime and ctime (ns)."""
    st = os.stat(path)
    return [st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns]


def _record_path() -> Path:
    return cache_dir() / RECORD_NAME


def _read_record() -> dict:
    try:
        record = json.loads(_record_path().read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def known_digests(identities: dict[Path, list[int]]) -> dict[Path, str]:
    """The remembered digests of those files whose identity (:func:`file_identity`) is unchanged since they were hashed."""
    record = _read_record()
    known = {}
    for path, identity in identities.items():
        entry = record.get(str(Path(path).resolve()))
        if isinstance(entry, dict) and entry.get("identity") == identity:
            known[path] = entry["sha256"]
    return known


def remember_digests(digests: dict[Path, str], identities: dict[Path, list[int]]) -> None:
    """Store freshly computed digests with the identities the files had before hashing; never raises."""
    if not digests:
        return
    record = {name: entry for name, entry in _read_record().items() if os.path.exists(name)}  # forget deleted files
    for path, digest in digests.items():
        record[str(Path(path).resolve())] = {"identity": identities[path], "sha256": digest}
    try:
        with atomic_path(_record_path()) as tmp:
            tmp.write_text(json.dumps(record, indent=0))
    except OSError:
        pass  # a read-only or full cache: the next load hashes again
