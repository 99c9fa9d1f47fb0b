"""The model's reference distribution: its cross-validation residuals by age, read from the model card.

``training_data.cross_validation_residuals`` holds one ``{"subject", "age", "predicted_age", "corrected_age"}``
per cross-validation test subject; a scan's gap is placed among the residuals of subjects of similar age.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

WINDOW_YEARS = 10.0
MIN_NEIGHBOURS = 20


@dataclass(frozen=True)
class Reference:
    """Ages and residuals (predicted - age) of the model's cross-validation test subjects."""

    age: np.ndarray
    residual: np.ndarray
    corrected: bool  # residuals of bias-corrected ages (else raw)

    @property
    def mae(self) -> float:
        return float(np.mean(np.abs(self.residual)))

    @property
    def rmse(self) -> float:
        return float(np.sqrt(np.mean(self.residual ** 2)))

    def neighbours(self, age: float) -> np.ndarray:
        """Indices of subjects within ``WINDOW_YEARS`` of ``age``, or the ``MIN_NEIGHBOURS`` nearest if fewer."""
        distance = np.abs(self.age - age)
        inside = np.flatnonzero(distance <= WINDOW_YEARS)
        if len(inside) >= MIN_NEIGHBOURS:
            return inside
        return np.argsort(distance, kind="stable")[:MIN_NEIGHBOURS]

    def percentile(self, gap: float, age: float) -> tuple[float, int, float, float]:
        """Percentile of ``gap`` among the neighbours' residuals (scipy ``percentileofscore``, kind 'mean'),
        their number and age span."""
        idx = self.neighbours(age)
        return (float(stats.percentileofscore(self.residual[idx], gap, kind="mean")), int(len(idx)),
                float(self.age[idx].min()), float(self.age[idx].max()))


def reference_from_card(training_data: dict | None, corrected: bool) -> Reference | None:
    """Residuals from the card (corrected ones when asked and recorded, else raw); None when absent."""
    rows = (training_data or {}).get("cross_validation_residuals") or []
    age = np.array([_number(r.get("age")) for r in rows], float)
    raw = np.array([_number(r.get("predicted_age")) for r in rows], float) - age
    fixed = np.array([_number(r.get("corrected_age")) for r in rows], float) - age
    use_corrected = corrected and np.isfinite(fixed).sum() >= 3
    residual = fixed if use_corrected else raw
    keep = np.isfinite(age) & np.isfinite(residual)
    if keep.sum() < 3:
        return None
    return Reference(age[keep], residual[keep], bool(use_corrected))


def cv_error(training_data: dict | None, corrected: bool) -> dict | None:
    """The model's cross-validated MAE/RMSE from the card's summary (clinical-style input first), or None."""
    entries = (training_data or {}).get("cross_validation") or []
    entries = sorted(entries, key=lambda e: e.get("input") != "clinical")
    for entry in entries:
        block = entry.get("corrected" if corrected else "raw") or entry.get("raw")
        if block and block.get("mae") is not None:
            return {"mae": float(block["mae"]), "rmse": _number(block.get("rmse")), "input": entry.get("input", ""),
                    "subjects": entry.get("subjects"), "corrected": block is entry.get("corrected")}
    return None


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
