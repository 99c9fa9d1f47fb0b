"""Accuracy of cross-validated predictions: metrics, per-fold bias correction, subject bootstrap CIs.

Works on the frame of :func:`crossval.predictions.run_predictions` (one row per
fold x subject x input x offset, with the subject's role in that fold). Only
``role == "test"`` rows are scored. The bias line of a fold is fitted on that
fold's own validation (or train + validation) predictions, never on its test
subjects, and applied to its test rows.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from BrainAgeLib.calibration import fit_calibration

METRICS = ("mae", "rmse", "r", "r2", "mean_error", "bias_slope")
DECADES = (20, 30, 40, 50, 60, 70, 80)


def regression_summary(predicted, age) -> dict:
    """n, MAE, RMSE, Pearson r, R² (1 - SSE/SST), mean error and age-bias slope (gap regressed on age)."""
    predicted, age = np.asarray(predicted, float), np.asarray(age, float)
    err = predicted - age
    n = len(age)
    out = {"n": n, "mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err ** 2))),
           "mean_error": float(np.mean(err)), "r": math.nan, "r2": math.nan, "bias_slope": math.nan}
    if n > 2 and np.ptp(age) > 0:
        out["r2"] = float(1 - np.sum(err ** 2) / np.sum((age - age.mean()) ** 2))
        out["bias_slope"] = float(stats.linregress(age, err).slope)
        if np.ptp(predicted) > 0:
            out["r"] = float(stats.pearsonr(predicted, age)[0])
    return out


def add_fold_correction(frame: pd.DataFrame, *, fit_roles: tuple[str, ...] = ("val",), method: str = "all",
                        column: str = "predicted_age") -> pd.DataFrame:
    """``corrected_age`` for every row: y + (x - (a x + b)) with (a, b) fitted per fold and input on ``fit_roles``."""
    out = frame.copy()
    out["corrected_age"] = np.nan
    for (fold, kind), part in out.groupby(["fold", "input"]):
        fit = part[part["role"].isin(fit_roles)]
        if len(fit) < 4:
            continue
        calibration = fit_calibration(fit[column], fit["age"], method=method)
        out.loc[part.index, "corrected_age"] = calibration.correct(part[column], part["age"])
    return out


def average_runs(frame: pd.DataFrame, configs: list[str], name: str) -> pd.DataFrame:
    """Rows of a new configuration ``name`` whose predicted age is the mean of ``configs``' predictions of the same
    (fold, subject, role, input, offset): an ensemble of runs trained on the same folds, so every member of a fold
    left that fold's test subjects out. Only rows that every member predicted; corrected as :func:`add_fold_correction`."""
    keys = ["fold", "subject", "role", "input", "offset", "age"]
    members = frame[frame["config"].isin(configs)]
    missing = sorted(set(configs) - set(members["config"]))
    if missing:
        raise ValueError(f"no predictions of {missing} to average")
    grouped = members.groupby(keys, as_index=False).agg(predicted_age=("predicted_age", "mean"), n=("config", "nunique"))
    complete = grouped[grouped["n"] == len(configs)].drop(columns="n")
    return add_fold_correction(complete).assign(config=name)


def only_folds(frame: pd.DataFrame, folds: list[int]) -> pd.DataFrame:
    """The rows of ``folds``; a package scored on every subject (fold -1) keeps its rows of those folds' test subjects."""
    chosen = frame["fold"].isin(folds)
    tested = set(frame.loc[chosen & (frame["role"] == "test"), "subject"])
    return frame[chosen | ((frame["fold"] == -1) & frame["subject"].isin(tested))]


def bootstrap_ci(frame: pd.DataFrame, metric: str, column: str = "predicted_age", *, n_resamples: int = 2000,
                 seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile CI of ``metric`` with **subjects** resampled (all rows of a subject move together)."""
    codes, _ = pd.factorize(frame["subject"])
    groups = [np.flatnonzero(codes == k) for k in range(codes.max() + 1)]
    pred, age = frame[column].to_numpy(float), frame["age"].to_numpy(float)

    def statistic(subjects):
        rows = np.concatenate([groups[int(s)] for s in subjects])
        return regression_summary(pred[rows], age[rows])[metric]

    result = stats.bootstrap((np.arange(len(groups)),), statistic, n_resamples=n_resamples, vectorized=False,
                             confidence_level=level, method="percentile", random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def score(frame: pd.DataFrame, column: str = "predicted_age", *, ci_metrics: tuple[str, ...] = ("mae", "r"),
          n_resamples: int = 2000) -> dict:
    """Metrics of the test rows of ``frame`` (one input kind), with bootstrap CIs for ``ci_metrics``."""
    test = frame[(frame["role"] == "test") & frame[column].notna()]
    out = regression_summary(test[column], test["age"])
    out["subjects"] = int(test["subject"].nunique())
    for metric in ci_metrics:
        out[f"{metric}_ci"] = bootstrap_ci(test, metric, column, n_resamples=n_resamples)
    return out


def mae_by_decade(frame: pd.DataFrame, column: str = "predicted_age") -> pd.DataFrame:
    """MAE and n of the test rows per age decade (20-29, 30-39, ...)."""
    test = frame[frame["role"] == "test"].copy()
    test["decade"] = (np.floor(test["age"] / 10) * 10).astype(int)
    rows = []
    for decade, part in test.groupby("decade"):
        rows.append({"decade": f"{decade}-{decade + 9}", "n_subjects": part["subject"].nunique(), "n_rows": len(part),
                     "mae": float(np.mean(np.abs(part[column] - part["age"])))})
    return pd.DataFrame(rows)
