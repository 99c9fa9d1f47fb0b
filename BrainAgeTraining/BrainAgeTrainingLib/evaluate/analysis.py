"""The whole evaluation of one predictions table: calibration, accuracy, group statistics (numbers only)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from BrainAgeLib.calibration import METHODS

from .accuracy import breakdown, decade, summary
from .columns import Columns
from .crossfit import CrossFit, coverage_warnings, crossfit
from .groups import MIN_GROUP_SIZE, check_sizes, group_statistics, subject_table
from .tables import working_frame


@dataclass(frozen=True)
class Options:
    """How to evaluate: control group, calibration method (the other is reported beside), resampling."""

    controls: str = "CU"
    method: str = "extremes"
    fraction: float = 0.05
    folds: int = 5
    n_resamples: int = 2000
    min_group_size: int = MIN_GROUP_SIZE
    drop_small_groups: bool = False
    site: str = ""
    model: str = ""


@dataclass
class Evaluation:
    """Numbers for JSON/HTML, the scored scans, one row per subject, and the calibration fits."""

    numbers: dict
    scans: pd.DataFrame
    subjects: pd.DataFrame
    fits: dict[str, CrossFit] = field(default_factory=dict)


def evaluate(table: pd.DataFrame, columns: Columns = Columns(), options: Options = Options(),
             warnings: list[str] | None = None) -> Evaluation:
    """Evaluate ``table`` (predictions, already joined with participants) as ``options`` say."""
    resolved = columns.resolve(table)
    scans, notes = working_frame(table, resolved, options.controls)
    notes = list(warnings or []) + notes + coverage_warnings(scans)
    methods = [options.method] + [m for m in METHODS if m != options.method]
    fits = {m: crossfit(scans, m, folds=options.folds, fraction=options.fraction, site=options.site,
                        model=options.model) for m in methods}
    for m, fit in fits.items():
        scans[f"corrected_{m}"] = fit.corrected
    primary = fits[options.method]
    scans["corrected_age"] = primary.corrected
    scans["calibration_fold"] = primary.fold
    scans["raw_gap"] = scans["predicted_age"] - scans["age"]
    scans["gap"] = scans["corrected_age"] - scans["age"]
    scans["decade"] = decade(scans["age"])
    scored = {"raw": "predicted_age", **{f"corrected ({m})": f"corrected_{m}" for m in methods}}
    controls = scans[scans["is_control"]]
    accuracy = {"controls": {label: summary(controls, col, n_resamples=options.n_resamples)
                             for label, col in scored.items()},
                "by_group": breakdown(scans, "group", scored, n_resamples=options.n_resamples)}
    for role in ("site", "sex", "acquisition", "decade"):
        if resolved.get(role) or role == "decade":
            accuracy[f"by_{role}"] = breakdown(controls, role, scored, n_resamples=options.n_resamples)
    subjects = subject_table(scans)
    tested, dropped = check_sizes(subjects, options.min_group_size, options.drop_small_groups,
                                  resolved.get("group") or "group")
    numbers = {
        "inputs": {"columns": resolved, "controls": options.controls, "n_scans": int(len(scans)),
                   "n_subjects": int(scans["subject"].nunique()),
                   "subjects_per_group": {str(k): int(v) for k, v in subjects.groupby("group").size().items()},
                   "bootstrap_resamples": options.n_resamples},
        "warnings": notes + dropped,
        "calibration": {"method": options.method, "fraction": options.fraction,
                        "crossfit_folds": int(primary.fold.max()) + 1,
                        "saved": primary.final.to_dict(),
                        "lines": {m: {"all_controls": f.final.to_dict(), "folds": [c.to_dict() for c in f.fold_lines]}
                                  for m, f in fits.items()}},
        "accuracy": accuracy,
        "groups": group_statistics(tested, options.controls),
    }
    return Evaluation(numbers, scans, subjects, fits)
