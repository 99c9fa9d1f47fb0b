"""Brain age gap by group, with the paper's tests (pingouin / statsmodels through ``evaluation``).

Every subject counts once: a subject's gap is the mean over its scans, so repeated scans (e.g. every
slicing offset) do not multiply the sample size of a test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..evaluation import cohort_statistics, gap_tests
from .errors import EvaluationError

MIN_GROUP_SIZE = 3


def subject_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per subject: group, age, score and the mean ``gap`` / ``raw_gap`` of its scans."""
    return (frame.groupby("subject", sort=False)
            .agg(group=("group", "first"), age=("age", "mean"), score=("score", "mean"),
                 gap=("gap", "mean"), raw_gap=("raw_gap", "mean"))
            .reset_index())


def check_sizes(subjects: pd.DataFrame, min_size: int = MIN_GROUP_SIZE, drop_small: bool = False,
                column: str = "group") -> tuple[pd.DataFrame, list[str]]:
    """Subjects of groups with at least ``min_size`` members; a smaller group raises unless ``drop_small``."""
    sizes = subjects.groupby("group")["subject"].nunique()
    small = sizes[sizes < min_size]
    if small.empty:
        return subjects, []
    listing = ", ".join(f"{g!r} ({n})" for g, n in small.items())
    if not drop_small:
        raise EvaluationError(f"group(s) {listing} in column {column!r} have fewer than {min_size} subjects with a "
                              "prediction, too few to test; add subjects, merge groups, or pass --drop-small-groups "
                              "to leave them out of the group tests")
    return subjects[~subjects["group"].isin(small.index)], [f"left out of the group tests (fewer than {min_size} "
                                                           f"subjects): {listing}"]


def describe(subjects: pd.DataFrame) -> list[dict]:
    """n, mean/SD of the gap (corrected and raw), mean age and mean score per group."""
    rows = []
    for name, g in subjects.groupby("group", sort=True):
        rows.append({"group": name, "n": int(len(g)), "age_mean": float(g["age"].mean()),
                     "gap_mean": float(g["gap"].mean()), "gap_sd": float(g["gap"].std(ddof=1)) if len(g) > 1 else np.nan,
                     "raw_gap_mean": float(g["raw_gap"].mean()),
                     "score_mean": float(g["score"].mean()) if g["score"].notna().any() else None})
    return rows


def group_statistics(subjects: pd.DataFrame, controls: str) -> dict:
    """Per-group description; each group against the controls (two-sample Z-test as the paper, Welch's t,
    Hedges' g); Welch's ANOVA with Games-Howell pairs (partial eta squared, Hedges' g); gap vs score."""
    out = {"groups": describe(subjects)}
    if subjects["group"].nunique() < 2:
        out["note"] = "one group only: no group comparison"
    else:
        out["versus_controls"] = gap_tests(subjects["gap"], subjects["group"], reference=controls)
    out.update(cohort_statistics(subjects, value="gap", group="group", score="score"))
    if "gap_vs_score" in out:
        out["gap_vs_score"]["method"] = "Pearson (pingouin.corr), all subjects with a score"
    return out
