"""Resumable batches: a durable journal of the rows done, and the rows of an earlier run that still hold.

While ``brainage predict`` runs, every finished row is appended to the run's journal
``<out>.partial-<run>.jsonl`` (one JSON object a line, flushed and fsync'ed per row), whatever else
happens to ``--out``; the final CSV is rewritten atomically in input order, fsync'ed, and only then is
the journal removed. A run killed outright (SIGKILL, out of memory, power loss) thus keeps every row
it finished: ``--resume`` reads the rows in ``--out`` and in the journals and runs only the other
inputs. (A run that ends in-process, even on SIGTERM or a full disk, has saved or printed every row
and removes its journal.)

A row counts as done for an input when its ``source`` is the input's path (as given) and its
``source_sha256`` is the sha256 of the file's bytes now, so a file replaced or re-exported since is
run again. The whole file is hashed rather than trusting size and mtime: ``cp -p``, ``rsync -t`` and
``tar`` give a replaced file its source's mtime, and scans of one protocol often have equal sizes, so
a changed scan could pass for done; a partial hash (first and last MB) misses changes in the middle
of the voxels. A T1 scan is 1-30 MB, so hashing costs tens of milliseconds against seconds (minutes
with HD-BET) of prediction; ``--resume`` hashes only the inputs that have a row, 4 files at a time.
Rows without a hash (a missing file, the 'not run' rows of an interrupted run, a case whose Dask
workers died) are always run again; a scan's other error rows (corrupt file, failed QC) are kept,
since the same bytes give the same error.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from .errors import OutputError
from .file_digests import sha256_of
from .io import os_error_reason

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, so a second run on the same --out is not detected
    fcntl = None

HASH_COLUMN = "source_sha256"
#: Error prefix of a row whose case was not (completely) run; such a row is always run again by --resume.
NOT_RUN = "not run"


def journal_paths(out: str | os.PathLike) -> list[Path]:
    """The journals of runs writing ``out`` (``<out>.partial-<run>.jsonl``), oldest first."""
    out = Path(out)
    found = out.parent.glob(glob.escape(out.name) + ".partial-*.jsonl") if out.parent.is_dir() else []
    return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name))


def _in_use(path: Path) -> bool:
    """True while a running brainage holds the journal's lock."""
    if fcntl is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing releases a lock taken here
    return False


def content_sha256(path: str | os.PathLike) -> str:
    """sha256 of the file's bytes; '' when it cannot be read (that case's row says why)."""
    try:
        return sha256_of(path)
    except (OSError, ValueError):
        return ""


def case_row(row: dict, sha256: str, source: str) -> dict:
    """A result row whose ``source`` is the input's path as given, followed by the file's content hash."""
    return {"source": source, HASH_COLUMN: sha256, **{k: v for k, v in row.items() if k != "source"}}


def counts_as_done(row: dict) -> bool:
    """True for a row an earlier run finished (it has a hash and is not a 'not run' row)."""
    error = row.get("error")
    error = "" if error is None or (isinstance(error, float) and math.isnan(error)) else str(error)
    return bool(row.get(HASH_COLUMN)) and not error.startswith(NOT_RUN)


def _json_value(value):
    return value.item() if hasattr(value, "item") else str(value)


class RowJournal:
    """This run's append-only, fsync'ed record of its finished rows (``<out>.partial-<run>.jsonl``), locked while open.

    Journals of earlier runs writing ``out`` that were killed (unlocked ones) are read by ``resume``
    (:attr:`earlier`, removed with this run's when every row is saved), removed by ``overwrite``, and
    otherwise refused, since their rows would be lost. A journal still locked belongs to a run going on now:
    ``resume`` refuses to run beside it; ``overwrite`` leaves it to that run.
    """

    def __init__(self, out: str | os.PathLike, *, resume: bool = False, overwrite: bool = False) -> None:
        self.out = Path(out)
        found = journal_paths(out)
        live = [p for p in found if _in_use(p)]
        stale = [p for p in found if p not in live]
        if resume and live:
            raise OutputError(f"another brainage run is writing {self.out} now (its journal {live[0]} is in use); "
                              "let it finish, then --resume")
        if not (resume or overwrite) and any(p.stat().st_size for p in stale):
            raise OutputError(
                f"{stale[0]} holds the rows of an unfinished run writing {self.out}; pass --resume to finish that "
                "run, or --overwrite to start over"
            )
        if overwrite:
            for path in stale:
                path.unlink(missing_ok=True)
        self.earlier = stale if resume else []
        self.path = self.out.with_name(f"{self.out.name}.partial-{os.getpid()}-{secrets.token_hex(4)}.jsonl")
        try:
            self._file = open(self.path, "x", encoding="utf-8")
            if fcntl is not None:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {os_error_reason(exc)}") from exc

    def append(self, row: dict) -> None:
        """Write one row and make it durable (flush + fsync) before returning."""
        try:
            self._file.write(json.dumps(row, default=_json_value) + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            raise OutputError(
                f"could not record a finished row in {self.path}: {os_error_reason(exc)}. The batch stopped: free "
                "space or make the folder writable, then run again with --resume"
            ) from exc

    def finish(self) -> None:
        """The results file holds every row: make it durable, then remove this run's journal and those it resumed."""
        _fsync(self.out)
        self.discard()
        for path in self.earlier:
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # the folder's entries too, where the OS lets a folder be fsync'ed
            _fsync(self.out.parent)

    def discard(self) -> None:
        """Close and remove this run's journal (a run that ends in-process has saved or printed every row)."""
        if not self._file.closed:
            self._file.close()
            self.path.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _journal_rows(path: Path) -> list[dict]:
    """The journal's rows; a line torn by a kill (not JSON, or not a row) is skipped."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "source" in row:
            rows.append(row)
    return rows


def _table_rows(out: Path) -> list[dict]:
    """The rows of a results file, every value as the text written (so they are written back unchanged)."""
    if not out.exists():
        return []
    sep = "\t" if out.suffix.lower() == ".tsv" else ","
    try:
        table = pd.read_csv(out, sep=sep, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        return []
    if "source" not in table.columns:
        raise ValueError(f"{out} is not a brainage results table (no 'source' column); choose another --out")
    return table.to_dict("records")


def earlier_rows(out: str | os.PathLike, sources: list[str], journals: list[Path]) -> dict[int, dict]:
    """Rows of an earlier run of this batch that still hold, by index in ``sources``.

    Candidates come from ``out`` and then the ``journals`` of killed runs (later ones win); one holds when it counts as
    done (:func:`counts_as_done`) and its hash is the file's hash now. Rows for a path not among
    ``sources`` are refused with ValueError rather than dropped.
    """
    out = Path(out)
    candidates: dict[str, list[dict]] = {}
    for row in _table_rows(out) + [row for path in journals for row in _journal_rows(path)]:
        candidates.setdefault(str(row["source"]), []).append(row)
    foreign = sorted(set(candidates) - set(sources))
    if foreign:
        raise ValueError(
            f"{out} has rows for {len(foreign)} scan(s) that are not among the inputs now (e.g. {foreign[0]}); "
            "--resume needs the same inputs as the run it continues (paths as given). Pass them, or choose another --out"
        )
    to_check = sorted({s for s in sources if any(counts_as_done(r) for r in candidates.get(s, []))})
    with ThreadPoolExecutor(max_workers=4) as pool:  # hashlib releases the GIL on large reads
        now = dict(zip(to_check, pool.map(content_sha256, to_check)))
    done = {}
    for index, source in enumerate(sources):
        held = [r for r in candidates.get(source, []) if counts_as_done(r) and r[HASH_COLUMN] == now.get(source)]
        if held:
            done[index] = held[-1]
    return done
