"""Age-bias calibration on the controls, cross-fitted so that no control is scored with a line fitted on itself.

Control subjects are dealt into ``folds`` age-stratified folds (sorted by age, dealt in turn); each fold's
controls are corrected with the line fitted on the other folds' controls. Patients are corrected with the
line fitted on every control, which is also the calibration saved for ``brainage predict --calibration``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from BrainAgeLib.calibration import Calibration, fit_calibration

from .errors import EvaluationError

#: Below this many control subjects the paper's 5 % rule uses only the 2 youngest and 2 oldest.
FEW_CONTROLS = 40
MIN_CONTROLS = 6


@dataclass
class CrossFit:
    """Corrected ages of every scan under one calibration method, and the lines behind them."""

    method: str
    corrected: np.ndarray  # per row of the working frame
    fold: np.ndarray  # cross-fitting fold of a control's subject; -1 for patients (all-controls line)
    final: Calibration  # fitted on every control: the saved site calibration
    fold_lines: list[Calibration] = field(default_factory=list)


def control_folds(frame: pd.DataFrame, folds: int = 5) -> pd.Series:
    """Fold number per control subject: subjects sorted by mean age (then id) and dealt in turn."""
    ages = frame[frame["is_control"]].groupby("subject")["age"].mean()
    order = ages.reset_index().sort_values(["age", "subject"], kind="stable")["subject"]
    k = min(folds, len(order))
    return pd.Series(np.arange(len(order)) % k, index=order.to_numpy(), name="fold")


def crossfit(frame: pd.DataFrame, method: str = "extremes", *, folds: int = 5, fraction: float = 0.05,
             site: str = "", model: str = "") -> CrossFit:
    """Cross-fitted corrected ages (controls) and all-controls-line corrected ages (patients)."""
    controls = frame[frame["is_control"]]
    n_subjects = controls["subject"].nunique()
    if n_subjects < MIN_CONTROLS:
        raise EvaluationError(f"{n_subjects} control subject(s) with a prediction: calibration needs at least "
                              f"{MIN_CONTROLS} (each cross-fitting fold leaves the others to fit a line); "
                              "add controls or name the control group with --controls")
    fold_of = control_folds(frame, folds)
    final = fit_calibration(controls["predicted_age"], controls["age"], method=method, fraction=fraction,
                            site=site, model=model)
    corrected = np.asarray(final.correct(frame["predicted_age"], frame["age"]), dtype=float)
    fold = np.where(frame["is_control"], frame["subject"].map(fold_of).fillna(-1), -1).astype(int)
    lines = []
    for k in range(int(fold_of.max()) + 1):
        rest = controls[controls["subject"].map(fold_of) != k]
        line = fit_calibration(rest["predicted_age"], rest["age"], method=method, fraction=fraction)
        rows = fold == k
        corrected[rows] = line.correct(frame.loc[rows, "predicted_age"], frame.loc[rows, "age"])
        lines.append(line)
    return CrossFit(method, corrected, fold, final, lines)


def coverage_warnings(frame: pd.DataFrame) -> list[str]:
    """Warnings when the controls are few or do not span the patients' ages."""
    out = []
    controls, patients = frame[frame["is_control"]], frame[~frame["is_control"]]
    n = controls["subject"].nunique()
    if n < FEW_CONTROLS:
        out.append(f"only {n} control subjects: the bias line is uncertain (with fewer than {FEW_CONTROLS} the "
                   "paper's youngest/oldest 5 % are just 2 subjects at each end); calibrate on more controls")
    if len(patients):
        lo, hi = controls["age"].min(), controls["age"].max()
        outside = patients[(patients["age"] < lo) | (patients["age"] > hi)]
        if len(outside):
            out.append(f"{outside['subject'].nunique()} of {patients['subject'].nunique()} patients are younger or "
                       f"older than every control (controls {lo:.1f}-{hi:.1f} y, patients {patients['age'].min():.1f}-"
                       f"{patients['age'].max():.1f} y): their correction extrapolates the line")
    return out
