"""Age-bias correction (Kim et al. 2025; after Beheshti et al.).

Fit ``y = a x + b`` (y predicted, x chronological age) on cognitively
unimpaired controls, then correct ``y' = y + (x - (a x + b))``; the brain age
gap is ``y' - x``. Two ways to choose the controls for the fit: the paper's
youngest and oldest 5 % ("extremes"), or all of them ("all").
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from .errors import CalibrationError
from .io import atomic_path

METHODS = ("extremes", "all")


@dataclass(frozen=True)
class Calibration:
    """Linear age-bias model of one site (and one model)."""

    slope: float
    intercept: float
    method: str
    n_controls: int
    age_min: float
    age_max: float
    site: str = ""
    model: str = ""
    created: str = ""

    def expected_prediction(self, age):
        return self.slope * np.asarray(age, dtype=float) + self.intercept

    def correct(self, predicted, age):
        """Bias-corrected brain age ``y + (x - (a x + b))``."""
        age = np.asarray(age, dtype=float)
        corrected = np.asarray(predicted, dtype=float) + (age - self.expected_prediction(age))
        return corrected.item() if corrected.ndim == 0 else corrected

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Calibration":
        try:
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except TypeError as exc:
            raise CalibrationError(f"calibration is missing fields: {exc}") from exc


def select_controls(ages: np.ndarray, method: str, fraction: float = 0.05) -> np.ndarray:
    """Indices of the controls used for the fit."""
    if method == "all":
        return np.arange(len(ages))
    if method != "extremes":
        raise CalibrationError(f"unknown calibration method {method!r}; use one of {METHODS}")
    n_each = max(2, math.ceil(fraction * len(ages)))
    order = np.argsort(ages, kind="stable")
    if 2 * n_each > len(ages):
        return order
    return np.concatenate([order[:n_each], order[-n_each:]])


def fit_calibration(
    predicted, chronological, *, method: str = "extremes", fraction: float = 0.05, site: str = "", model: str = ""
) -> Calibration:
    """Fit the bias line on controls (least squares, scipy.stats.linregress)."""
    predicted = np.asarray(predicted, dtype=float)
    chronological = np.asarray(chronological, dtype=float)
    keep = np.isfinite(predicted) & np.isfinite(chronological)
    predicted, chronological = predicted[keep], chronological[keep]
    if len(predicted) < 4:
        raise CalibrationError(f"need at least 4 controls with age and prediction to calibrate, got {len(predicted)}")
    chosen = select_controls(chronological, method, fraction)
    x, y = chronological[chosen], predicted[chosen]
    if np.ptp(x) < 1.0:
        raise CalibrationError("the controls' ages span less than a year; calibrate on controls of varied ages")
    fit = stats.linregress(x, y)
    return Calibration(
        slope=float(fit.slope),
        intercept=float(fit.intercept),
        method=method,
        n_controls=int(len(x)),
        age_min=float(x.min()),
        age_max=float(x.max()),
        site=site,
        model=model,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )


def save_calibration(calibration: Calibration, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"calibration": calibration.to_dict()}, indent=2))
    return Path(path)


def load_calibration(path: str | os.PathLike) -> Calibration:
    """Read a calibration JSON file, or the calibration inside a model card."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CalibrationError(f"{path}: cannot read calibration ({exc})") from exc
    block = data.get("calibration")
    if not isinstance(block, dict):
        raise CalibrationError(f"{path}: holds no 'calibration' object; run `brainage calibrate` to make one")
    return Calibration.from_dict(block)
