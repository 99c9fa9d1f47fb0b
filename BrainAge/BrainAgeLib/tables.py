"""Writing result tables atomically."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .io import atomic_path


def write_rows(rows: list[dict], path: str | os.PathLike, *, overwrite: bool = True) -> Path:
    """Write dict rows as CSV (or TSV by suffix) through a temp file and rename."""
    path = Path(path)
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    with atomic_path(path, overwrite=overwrite) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False, sep=sep)
    return path
