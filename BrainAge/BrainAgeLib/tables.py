"""Writing result tables atomically, and a batch's results saved as its cases finish.

A batch (``brainage predict``, ``BrainAge/Scripts/batch.py``) checks that it can write its
results before any work (:func:`check_writable`), then keeps them in a :class:`ResultsTable`
saved after every finished case or batch: the file is always one whole table (temp file and
rename), so a full disk, a folder turned read-only, SIGINT or SIGTERM never lose the rows
already done (:func:`save_as_you_go`).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Callable

import pandas as pd

from .errors import Interrupted, OutputError
from .interrupt import stop_on_signals
from .io import atomic_path, os_error_reason

#: Exit status of a batch whose results could not all be saved (the rows saved before are kept).
EXIT_NOT_SAVED = 4


def write_rows(rows: list[dict], path: str | os.PathLike, *, overwrite: bool = True) -> Path:
    """Write dict rows as CSV (or TSV by suffix) through a temp file and rename."""
    path = Path(path)
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    with atomic_path(path, overwrite=overwrite) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False, sep=sep)
    return path


def check_writable(path: str | os.PathLike) -> None:
    """Refuse before any work when ``path`` cannot be written: make its folder, create and remove a file there."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(
            f"cannot write the results to {path}: {os_error_reason(exc)}. Nothing was run; choose an output "
            "in a folder you can write to, on a disk with free space (or fix this one), and run again."
        ) from exc


class ResultsTable:
    """One row per input, in input order; saved (atomically) with the rows finished so far."""

    def __init__(self, path: str | os.PathLike, sources: list[str]) -> None:
        self.path = Path(path)
        self.sources = [str(s) for s in sources]
        self.rows: dict[int, dict] = {}
        self.saved: set[int] = set()
        self.written = False

    def add(self, index: int, row: dict) -> None:
        self.rows[index] = row

    def save(self, interrupted: str = "") -> None:
        """Write the finished rows; after an interruption (``interrupted`` = the signal) also a row per scan not run."""
        if self.written and set(self.rows) == self.saved and not interrupted:
            return
        not_run = (f"not run: the batch was interrupted by {interrupted} before this scan was done; "
                   "run it again for the scans marked 'not run'")
        rows = [self.rows[i] if i in self.rows else {"source": source, "error": not_run}
                for i, source in enumerate(self.sources) if i in self.rows or interrupted]
        try:
            write_rows(rows, self.path)
        except OSError as exc:
            n = len(self.saved)
            kept = (f"the {n} row{'s were' if n != 1 else ' was'} saved before and {'are' if n != 1 else 'is'} kept there"
                    if n and self.path.exists() else "nothing was saved")
            raise OutputError(
                f"could not save the results to {self.path}: {os_error_reason(exc)}; {kept}. The batch stopped: "
                "free space or make the folder writable, then run again on the scans without a row."
            ) from exc
        self.saved = set(self.rows)
        self.written = True

    def report_unsaved(self, stream=None) -> None:
        """Print the finished rows that could not be saved, so their ages are not lost."""
        for index in sorted(set(self.rows) - self.saved):
            row = self.rows[index]
            result = f"error {row['error']}" if row.get("error") else f"predicted_age {row.get('predicted_age')}"
            print(f"NOT SAVED {row.get('source', self.sources[index])}: {result}", file=stream or sys.stderr)


def save_as_you_go(table: ResultsTable, work: Callable[[], None]) -> int | None:
    """Run ``work`` (which adds rows to ``table`` and saves it as cases finish) so that a stop loses nothing done.

    Returns None when the work finished and every row is saved. Else the exit status, with the reason printed:
    128 + the signal (130 SIGINT, 143 SIGTERM) after an interruption, the rows done and a 'not run' row per
    other scan saved; :data:`EXIT_NOT_SAVED` when the results could not be written.
    """
    with stop_on_signals():
        try:
            work()
            table.save()
        except Interrupted as stop:
            try:
                table.save(interrupted=stop.name)
            except OutputError as exc:
                print(f"error: {exc}", file=sys.stderr)
                table.report_unsaved()
            else:
                print(f"{stop}: {len(table.rows)} of {len(table.sources)} scans done; their rows are saved in "
                      f"{table.path}, the other {len(table.sources) - len(table.rows)} say 'not run'", file=sys.stderr)
            return stop.exit_code
        except OutputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            table.report_unsaved()
            return EXIT_NOT_SAVED
    return None
