"""Human-readable summaries of a prediction (panel text, table rows)."""

from __future__ import annotations

import math

from .predict import PredictionResult
from .qc_policy import qc_status


def _fmt(value: float | None, unit: str = " y") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f}{unit}"


def summary_rows(result: PredictionResult) -> list[tuple[str, str]]:
    """(measure, value) pairs in reading order, for a two-column table."""
    rows = [("Age flag", result.age_flag)] if result.age_flag else []
    if result.error:
        rows.append(("Error", result.error))
    rows += [("Predicted brain age", f"{_fmt(result.predicted_age)} ± {_fmt(result.predicted_age_sd, '')} (SD over {len(result.fold_ages)} models)")]
    rows += [(f"  fold {i} age", _fmt(a)) for i, a in enumerate(result.fold_ages)]
    rows += [
        ("Chronological age", _fmt(result.chronological_age)),
        ("Bias-corrected age", _fmt(result.corrected_age)),
        ("Brain age gap", _fmt(result.brain_age_gap)),
        ("Uncorrected gap", _fmt(result.raw_gap)),
        ("Calibration", result.calibration or "none"),
        ("QC", qc_status(result.passed_qc, result.qc_flags)),
    ]
    rows += [("  QC flag", flag) for flag in result.qc_flags]
    rows += [
        ("Background fraction", f"{result.background_fraction:.1%}"),
        ("Skull strip", result.skull_strip),
        ("Model", result.model),
    ]
    return rows


def summary_text(result: PredictionResult) -> str:
    """A short multi-line text for the panel."""
    if result.error:
        return f"Failed: {result.error}"
    lines = [f"WARNING: {result.age_flag}"] if result.age_flag else []
    lines.append(f"Predicted brain age: {_fmt(result.predicted_age)} (± {_fmt(result.predicted_age_sd)} across models)")
    if result.corrected_age is not None:
        lines.append(f"Bias-corrected age: {_fmt(result.corrected_age)}   Brain age gap: {result.brain_age_gap:+.1f} y")
    elif result.raw_gap is not None:
        lines.append(f"Uncorrected gap: {result.raw_gap:+.1f} y (no calibration: load a site calibration to correct age bias)")
    else:
        lines.append("Enter the chronological age to get the brain age gap.")
    for flag in result.qc_flags:
        lines.append(f"Warning: {flag}")
    return "\n".join(lines)
