"""Accuracy of predicted ages: the crossval metrics with subject-bootstrap CIs, overall and per subset."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..crossval.metrics import METRICS, regression_summary
from .bootstrap import bootstrap_cis

MIN_SUBJECTS_FOR_CI = 5


def summary(frame: pd.DataFrame, column: str, *, n_resamples: int = 2000, ci_metrics=METRICS) -> dict:
    """:func:`regression_summary` of ``column`` against ``age``, subjects, and percentile CIs (subjects resampled;
    none with fewer than :data:`MIN_SUBJECTS_FOR_CI` subjects)."""
    out = regression_summary(frame[column], frame["age"])
    out["subjects"] = int(frame["subject"].nunique())
    if n_resamples and out["subjects"] >= MIN_SUBJECTS_FOR_CI:
        with warnings.catch_warnings():  # degenerate resamples (one age) give NaN bounds, not noise on stderr
            warnings.simplefilter("ignore")
            cis = bootstrap_cis(frame, column, ci_metrics, n_resamples=n_resamples)
        out.update({f"{metric}_ci": list(ci) for metric, ci in cis.items()})
    return out


def decade(age: pd.Series) -> pd.Series:
    """'20-29', '30-39', ... for each age."""
    start = (np.floor(age.astype(float) / 10) * 10).astype(int)
    return start.astype(str) + "-" + (start + 9).astype(str)


def breakdown(frame: pd.DataFrame, by: str, columns: dict[str, str], *, n_resamples: int = 0) -> list[dict]:
    """One row per value of ``by``: n scans, subjects, mean age and each column's metrics with CIs."""
    rows = []
    for value, part in frame.groupby(by, sort=True):
        row = {by: str(value), "n": int(len(part)), "subjects": int(part["subject"].nunique()),
               "mean_age": float(part["age"].mean())}
        for label, column in columns.items():
            row[label] = summary(part, column, n_resamples=n_resamples)
        rows.append(row)
    return rows
