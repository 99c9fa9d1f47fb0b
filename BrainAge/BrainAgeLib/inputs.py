"""Turn command-line inputs (files, folders, CSV lists) and age tables into cases."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclass(frozen=True)
class Case:
    path: str
    age: float | None = None


def is_nifti(path: Path) -> bool:
    return path.name.endswith(NIFTI_SUFFIXES)


def case_key(path: str | os.PathLike) -> str:
    """File name without .nii/.nii.gz, used to match ages to scans."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES[::-1]:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _read_table(path: Path) -> pd.DataFrame:
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    return pd.read_csv(path, sep=sep)


def _cases_from_csv(path: Path) -> list[Case]:
    table = _read_table(path)
    if "path" not in table.columns:
        raise ValueError(f"{path}: a CSV list of inputs needs a 'path' column (and optionally 'age')")
    cases = []
    for _, row in table.iterrows():
        scan = Path(str(row["path"]))
        if not scan.is_absolute():
            scan = path.parent / scan
        age = row.get("age")
        cases.append(Case(str(scan), None if age is None or pd.isna(age) else float(age)))
    return cases


def expand_inputs(inputs: list[str]) -> list[Case]:
    """Files as given, folders searched recursively for NIfTI, CSV/TSV lists read (column 'path', optional 'age')."""
    cases: list[Case] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            cases.extend(Case(str(p)) for p in sorted(path.rglob("*")) if p.is_file() and is_nifti(p))
        elif path.suffix.lower() in (".csv", ".tsv"):
            cases.extend(_cases_from_csv(path))
        else:
            cases.append(Case(str(path)))  # a missing file is reported per case, not here
    return cases


def read_ages(path: str | os.PathLike) -> dict[str, float]:
    """Ages table: columns 'age' and one of 'path', 'file', 'subject' / 'participant_id' (matched to file names)."""
    table = _read_table(Path(path))
    if "age" not in table.columns:
        raise ValueError(f"{path}: the ages table needs an 'age' column")
    key_column = next((c for c in ("path", "file", "participant_id", "subject") if c in table.columns), None)
    if key_column is None:
        raise ValueError(f"{path}: the ages table needs a 'path', 'file', 'participant_id' or 'subject' column")
    return {case_key(str(k)): float(a) for k, a in zip(table[key_column], table["age"]) if pd.notna(a)}


def age_for(case: Case, ages: dict[str, float], default: float | None) -> float | None:
    """The case's own age, else a match in the ages table (by file name or subject prefix), else ``default``."""
    if case.age is not None:
        return case.age
    key = case_key(case.path)
    if key in ages:
        return ages[key]
    for subject, age in ages.items():
        if key.startswith(subject + "_"):
            return age
    return default
