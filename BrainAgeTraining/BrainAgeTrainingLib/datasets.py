"""Finding training scans: BIDS roots, CSV manifests, plain folders with an ages table.

Every source gives :class:`ScanRecord` rows; anything that cannot be used (file
missing or unreadable, age missing or implausible, duplicate scans of a subject
within the configured number of years) is listed in the :class:`DatasetReport`
with the reason, never dropped silently.

Accepted ``--data`` entries:

* a **BIDS root** (has ``participants.tsv`` with an ``age`` column; sessions
  ``ses-*`` and several runs are found; ``sub-X_sessions.tsv`` ages override the
  participant's age per session; a ``*_brainmask.nii.gz`` beside a T1w, or a BIDS
  derivative ``derivatives/<tool>/sub-X/[ses-Y/]anat/<name>_desc-brain_mask.nii.gz``,
  is used as its skull-strip mask when the config says ``skull_strip: auto``; the
  derivative's ``dataset_description.json`` names the tool that made it; masks of a
  ``brainage synth`` cohort are recorded as ``reference``, the subjects' true brains);
* a **CSV/TSV manifest** with columns ``path`` and ``age`` (optional ``subject``,
  ``session``, ``sex``, ``site``, ``cohort``, ``mask``, ``mask_backend`` naming the tool that made the
  masks, e.g. ``hd-bet``); relative paths are relative
  to the manifest's folder;
* a **plain folder** of NIfTI files plus an ages table: ``FOLDER=AGES.csv``, or a
  folder that holds ``ages.csv`` / ``ages.tsv``; the table has ``age`` and ``file``
  (file name, with or without ``.nii.gz``) or ``subject`` (file name stem).
"""

from __future__ import annotations

import csv
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nibabel as nib
import pandas as pd

from BrainAgeLib.io import atomic_path

NIFTI_SUFFIXES = (".nii.gz", ".nii")
AGE_RANGE = (0.0, 120.0)
_AGE_NAMES = ("age", "age_years", "ageatscan", "age_at_scan")


class DatasetError(ValueError):
    """A --data entry cannot be understood at all (not a BIDS root, manifest or folder with ages)."""


@dataclass(frozen=True)
class ScanRecord:
    """One usable 3D T1 scan with its chronological age."""

    path: str
    age: float
    subject: str  # unique across sources: "<source>/<subject id>"
    source: str
    session: str = ""
    run: str = ""
    sex: str = ""
    site: str = ""
    cohort: str = ""
    acquisition: str = ""
    mask: str = ""  # brain mask file, when the data set ships one
    mask_backend: str = ""  # the skull-strip tool that made ``mask`` (e.g. "hd-bet"), when known

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Problem:
    """A scan (or table row) that was not used, and why."""

    source: str
    path: str
    subject: str
    reason: str
    stage: str = "discovery"  # discovery | selection | preparation


@dataclass
class DatasetReport:
    """Usable records, problems and per-source counts of one or more --data entries."""

    records: list[ScanRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def extend(self, other: "DatasetReport") -> None:
        self.records.extend(other.records)
        self.problems.extend(other.problems)

    def counts(self) -> dict[str, dict[str, int]]:
        """Per source: usable scans, subjects, problems."""
        out: dict[str, dict[str, int]] = {}
        for name in sorted({r.source for r in self.records} | {p.source for p in self.problems}):
            recs = [r for r in self.records if r.source == name]
            out[name] = {
                "scans": len(recs),
                "subjects": len({r.subject for r in recs}),
                "problems": sum(p.source == name for p in self.problems),
            }
        return out

    def summary(self) -> str:
        lines = [f"{len(self.records)} usable scans of {len({r.subject for r in self.records})} subjects; "
                 f"{len(self.problems)} not used"]
        for name, c in self.counts().items():
            lines.append(f"  {name}: {c['scans']} scans, {c['subjects']} subjects, {c['problems']} not used")
        for p in self.problems:
            lines.append(f"  not used [{p.stage}] {p.path or p.subject}: {p.reason}")
        return "\n".join(lines)

    def write(self, path: str | os.PathLike) -> Path:
        """Write the problems table (CSV) atomically."""
        with atomic_path(path) as tmp:
            with open(tmp, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=["source", "path", "subject", "stage", "reason"])
                writer.writeheader()
                for p in self.problems:
                    writer.writerow(asdict(p))
        return Path(path)


# --- helpers ----------------------------------------------------------------------------------------
def _stem(path: str | Path) -> str:
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _read_table(path: Path) -> pd.DataFrame:
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot be read as a {'TSV' if sep == chr(9) else 'CSV'} table ({exc})") from exc
    table.columns = [c.strip().lower() for c in table.columns]
    return table


def _age_column(table: pd.DataFrame, where: Path) -> str | None:
    for name in _AGE_NAMES:
        if name in table.columns:
            return name
    return None


def parse_age(text) -> float | None:
    """A finite age in years, or None ('n/a', '', NaN, non-numbers)."""
    try:
        value = float(str(text).strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def check_scan_file(path: Path) -> str | None:
    """Why a scan file cannot be used (None when its header reads as a 3D NIfTI)."""
    if not path.is_file():
        return "file not found"
    try:
        image = nib.load(str(path))
        shape = image.shape
    except Exception as exc:  # nibabel raises many kinds for broken files
        return f"cannot be read as NIfTI ({type(exc).__name__}: {exc}); re-export the scan"
    dims = [s for s in shape if s != 1] if len(shape) > 3 else list(shape)
    if len(dims) != 3:
        return f"not a single 3D volume (shape {tuple(shape)})"
    return None


def _check_age(age: float | None) -> str | None:
    if age is None:
        return "age is missing; add it to the ages table / participants.tsv"
    lo, hi = AGE_RANGE
    if not lo <= age <= hi:
        return f"age {age} is outside {lo:g}-{hi:g} years"
    return None


def _add(report: DatasetReport, record: ScanRecord) -> None:
    reason = _check_age(record.age if record.age == record.age else None) or check_scan_file(Path(record.path))
    if reason:
        report.problems.append(Problem(record.source, record.path, record.subject, reason))
    else:
        report.records.append(record)


def _sidecar_mask(t1: Path) -> str:
    stem = _stem(t1)
    base = re.sub(r"_T1w$", "", stem)
    for suffix in NIFTI_SUFFIXES:
        candidate = t1.with_name(f"{base}_brainmask{suffix}")
        if candidate.is_file():
            return str(candidate)
    return ""


#: Generators (dataset_description.json GeneratedBy) whose brain masks are no skull-strip tool's output, and the
#: label recorded for them: ``brainage synth`` writes each synthetic subject's true brain.
MASK_GENERATORS = {"brainage-synth": "reference"}


def generator_name(folder: Path) -> str:
    """GeneratedBy[0].Name of a data set's dataset_description.json, lower case with dashes, or ""."""
    import json

    try:
        generated = json.loads((folder / "dataset_description.json").read_text()).get("GeneratedBy") or [{}]
        name = str(generated[0].get("Name") or "")
    except (OSError, ValueError, AttributeError, IndexError):
        name = ""
    return name.strip().lower().replace(" ", "-")


def derivative_backend(folder: Path) -> str:
    """Skull-strip backend name of a BIDS derivative folder: GeneratedBy[0].Name (lower case) or the folder name."""
    name = generator_name(folder) or folder.name.strip().lower().replace(" ", "-")
    return MASK_GENERATORS.get(name, name)


def derivative_mask(root: Path, t1: Path) -> tuple[str, str]:
    """(mask path, backend) of a T1w's ``*_desc-brain_mask`` in the root's derivatives, or ("", "")."""
    rel = t1.relative_to(root)
    base = re.sub(r"_T1w$", "", _stem(t1))
    for folder in sorted(p for p in (root / "derivatives").glob("*") if p.is_dir()):
        for suffix in NIFTI_SUFFIXES:
            candidate = folder / rel.parent / f"{base}_desc-brain_mask{suffix}"
            if candidate.is_file():
                return str(candidate), derivative_backend(folder)
    return "", ""


# --- BIDS -------------------------------------------------------------------------------------------
def discover_bids(root: str | os.PathLike, name: str | None = None) -> DatasetReport:
    """All ``sub-*/[ses-*/]anat/*_T1w.nii[.gz]`` of a BIDS root with ages from participants.tsv / sessions.tsv."""
    root = Path(root)
    source = name or root.name
    table_path = root / "participants.tsv"
    table = _read_table(table_path)
    if "participant_id" not in table.columns:
        raise DatasetError(f"{table_path}: needs a participant_id column")
    age_col = _age_column(table, table_path)
    if age_col is None:
        raise DatasetError(f"{table_path}: needs an age column (one of {', '.join(_AGE_NAMES)})")
    participants = {row["participant_id"]: row for row in table.to_dict("records")}
    report = DatasetReport()
    t1_files = sorted(p for suffix in NIFTI_SUFFIXES for p in root.glob(f"sub-*/**/anat/*_T1w{suffix}"))  # not derivatives/
    seen_subjects = set()
    sidecar_label = MASK_GENERATORS.get(generator_name(root), "")  # what made the *_brainmask files, when known
    for t1 in t1_files:
        rel = t1.relative_to(root)
        subject_id = rel.parts[0]
        session = next((part for part in rel.parts[1:-2] if part.startswith("ses-")), "")
        run = (re.search(r"_run-([^_]+)", t1.name) or [None, ""])[1]
        seen_subjects.add(subject_id)
        row = participants.get(subject_id)
        age = parse_age(row[age_col]) if row else None
        sessions_tsv = root / subject_id / f"{subject_id}_sessions.tsv"
        if session and sessions_tsv.is_file():
            sessions = _read_table(sessions_tsv)
            col = _age_column(sessions, sessions_tsv)
            if col and "session_id" in sessions.columns:
                match = sessions[sessions["session_id"] == session]
                if len(match):
                    age = parse_age(match.iloc[0][col]) if parse_age(match.iloc[0][col]) is not None else age
        if row is None:
            report.problems.append(Problem(source, str(t1), f"{source}/{subject_id}",
                                           f"{subject_id} is not listed in participants.tsv"))
            continue
        mask, mask_backend = _sidecar_mask(t1), sidecar_label
        if not mask:
            mask, mask_backend = derivative_mask(root, t1)
        _add(report, ScanRecord(
            path=str(t1), age=age if age is not None else math.nan, subject=f"{source}/{subject_id}", source=source,
            session=session, run=run, sex=row.get("sex", ""), site=row.get("site", ""), cohort=row.get("cohort", ""),
            acquisition=row.get("acquisition", ""), mask=mask, mask_backend=mask_backend,
        ))
    for subject_id in sorted(set(participants) - seen_subjects):
        report.problems.append(Problem(source, "", f"{source}/{subject_id}", "listed in participants.tsv but no *_T1w scan found"))
    return report


# --- CSV manifest -----------------------------------------------------------------------------------
def read_manifest(path: str | os.PathLike, name: str | None = None) -> DatasetReport:
    """Rows of a CSV/TSV manifest with ``path`` and ``age`` columns."""
    path = Path(path)
    source = name or path.stem
    table = _read_table(path)
    age_col = _age_column(table, path)
    if "path" not in table.columns or age_col is None:
        raise DatasetError(f"{path}: a manifest needs 'path' and 'age' columns (found {list(table.columns)})")
    report = DatasetReport()
    for row in table.to_dict("records"):
        scan = Path(row["path"])
        scan = scan if scan.is_absolute() else (path.parent / scan)
        subject = row.get("subject") or row.get("participant_id") or _stem(scan)
        mask = row.get("mask", "")
        if mask and not Path(mask).is_absolute():
            mask = str(path.parent / mask)
        age = parse_age(row[age_col])
        _add(report, ScanRecord(
            path=str(scan), age=age if age is not None else math.nan, subject=f"{source}/{subject}", source=source,
            session=row.get("session", ""), run=row.get("run", ""), sex=row.get("sex", ""), site=row.get("site", ""),
            cohort=row.get("cohort", ""), acquisition=row.get("acquisition", ""), mask=mask,
            mask_backend=row.get("mask_backend", "").strip().lower(),
        ))
    return report


# --- folder + ages table ----------------------------------------------------------------------------
def read_folder(folder: str | os.PathLike, ages: str | os.PathLike, name: str | None = None) -> DatasetReport:
    """NIfTI files in ``folder`` matched to an ages table by file name or subject (= file stem)."""
    folder, ages = Path(folder), Path(ages)
    source = name or folder.name
    table = _read_table(ages)
    age_col = _age_column(table, ages)
    key = "file" if "file" in table.columns else "subject" if "subject" in table.columns else None
    if age_col is None or key is None:
        raise DatasetError(f"{ages}: an ages table needs 'age' and 'file' or 'subject' columns (found {list(table.columns)})")
    rows = {_stem(r[key]): r for r in table.to_dict("records")}
    files = sorted(p for p in folder.iterdir() if p.name.endswith(NIFTI_SUFFIXES) and "brainmask" not in p.name)
    report = DatasetReport()
    for scan in files:
        row = rows.pop(_stem(scan), None)
        if row is None:
            report.problems.append(Problem(source, str(scan), f"{source}/{_stem(scan)}", f"no row for it in {ages.name}"))
            continue
        subject = row.get("subject") or _stem(scan)
        age = parse_age(row[age_col])
        _add(report, ScanRecord(path=str(scan), age=age if age is not None else math.nan, subject=f"{source}/{subject}",
                                source=source, sex=row.get("sex", ""), site=row.get("site", ""),
                                cohort=row.get("cohort", ""), mask=_sidecar_mask(scan)))
    for stem in rows:
        report.problems.append(Problem(source, str(folder / stem), f"{source}/{stem}", f"listed in {ages.name} but no file found"))
    return report


# --- entry point ------------------------------------------------------------------------------------
def discover(entry: str | os.PathLike) -> DatasetReport:
    """One ``--data`` entry: BIDS root, manifest, ``FOLDER=AGES.csv`` or a folder holding ages.csv."""
    text = str(entry)
    if "=" in text and not Path(text).exists():
        folder, ages = text.split("=", 1)
        return read_folder(folder, ages)
    path = Path(text)
    if path.is_file():
        if path.suffix.lower() in (".csv", ".tsv"):
            return read_manifest(path)
        raise DatasetError(f"{path}: a --data file must be a .csv/.tsv manifest")
    if path.is_dir():
        if (path / "participants.tsv").is_file():
            return discover_bids(path)
        for candidate in ("ages.csv", "ages.tsv"):
            if (path / candidate).is_file():
                return read_folder(path, path / candidate)
        raise DatasetError(
            f"{path}: not a BIDS root (no participants.tsv) and no ages.csv inside; pass a BIDS root, "
            "a CSV manifest with path and age columns, or FOLDER=AGES.csv"
        )
    raise DatasetError(f"{path}: no such file or folder")


def select_scans(report: DatasetReport, min_years_apart: float = 5.0) -> DatasetReport:
    """The paper's rule: one scan per subject, more only when > ``min_years_apart`` years after the last kept one.

    Scans of a subject are taken in order of age, then path (so the first run of a
    session wins). Skipped scans are listed as problems at the ``selection`` stage.
    """
    out = DatasetReport(problems=list(report.problems))
    by_subject: dict[str, list[ScanRecord]] = {}
    for record in report.records:
        by_subject.setdefault(record.subject, []).append(record)
    for subject in sorted(by_subject):
        last = None
        for record in sorted(by_subject[subject], key=lambda r: (r.age, r.path)):
            if last is None or record.age - last > min_years_apart:
                out.records.append(record)
                last = record.age
            else:
                out.problems.append(Problem(record.source, record.path, subject,
                                            f"another scan of this subject was kept within {min_years_apart:g} years "
                                            f"(age {record.age:g} vs {last:g})", stage="selection"))
    return out


def load_datasets(entries: list[str | os.PathLike], min_years_apart: float = 5.0) -> DatasetReport:
    """Discover every entry, combine them and apply the one-scan-per-subject rule."""
    combined = DatasetReport()
    for entry in entries:
        part = discover(entry)
        combined.extend(part)
    return select_scans(combined, min_years_apart)
