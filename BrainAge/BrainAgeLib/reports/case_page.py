"""The one-page case report of one scan (A4, PDF and PNG): ages, gap with its uncertainty, where the gap falls
among the model's cross-validation residuals, snapshots with brain mask and saliency, QC, model, intended use.

Nothing identifying is added: the page names the scan by its file name only (no folders), as the input did.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from ..inputs import case_key
from ..io import Volume, atomic_path
from ..qc_policy import qc_status
from .reference import Reference, cv_error, reference_from_card
from .snapshots import draw_views

if TYPE_CHECKING:  # the page needs no torch: only the result's fields
    from ..predict import PredictionResult

A4 = (8.27, 11.69)
PNG_DPI = 110


def _y(value: float | None, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:+.1f} y" if signed else f"{value:.1f} y"


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 21st ..."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def scan_name(result: PredictionResult) -> str:
    """The scan's file name without folders (what the input itself carries)."""
    return Path(str(result.source)).name or "scan"


def age_lines(result: PredictionResult, error: dict | None) -> list[str]:
    """The ages block: chronological, predicted (fold spread), corrected, gap with its uncertainty."""
    n = len(result.fold_ages)
    spread = (f"± {result.predicted_age_sd:.1f} y (SD over {n} networks)" if n > 1
              else "(one model: no fold spread)")
    lines = [f"NOT A VALID RESULT: {result.age_flag}"] if result.age_flag else []
    lines += [f"Chronological age:  {_y(result.chronological_age) if result.chronological_age is not None else 'not given'}",
             f"Predicted brain age (raw):  {_y(result.predicted_age)}  {spread}"]
    if result.corrected_age is not None:
        lines.append(f"Bias-corrected brain age:  {_y(result.corrected_age)}  (calibration: {result.calibration})")
    gap = result.brain_age_gap if result.brain_age_gap is not None else result.raw_gap
    kind = "bias-corrected" if result.brain_age_gap is not None else "uncorrected: no site calibration"
    if gap is None:
        lines.append("Brain age gap:  - (give the chronological age to get the gap)")
        return lines
    lines.append(f"BRAIN AGE GAP:  {_y(gap, True)}  ({kind})")
    if n > 1:
        lines.append(f"   model spread: ± {result.predicted_age_sd:.1f} y (SD of the {n} networks' ages)")
    if error:
        kind = "corrected" if error["corrected"] else "raw"
        rmse = f", RMSE {error['rmse']:.1f} y" if error.get("rmse") and math.isfinite(error["rmse"]) else ""
        lines.append(f"   model's cross-validated error ({kind}): MAE {error['mae']:.1f} y{rmse}")
        if error.get("rmse") and math.isfinite(error["rmse"]):
            lines.append(f"   approx. 95 % range of the gap: {gap - 1.96 * error['rmse']:+.1f} to "
                         f"{gap + 1.96 * error['rmse']:+.1f} y (gap ± 1.96 × CV RMSE)")
    else:
        lines.append("   model's cross-validated error: not recorded in its model card")
    return lines


def _error_from(reference: Reference | None, card_error: dict | None) -> dict | None:
    if reference is not None:
        return {"mae": reference.mae, "rmse": reference.rmse, "corrected": reference.corrected,
                "subjects": len(reference.age)}
    return card_error


def reference_panel(ax, reference: Reference | None, result: PredictionResult) -> str:
    """Residuals by age with this scan marked; returns the sentence placing it."""
    gap = result.brain_age_gap if reference is not None and reference.corrected else result.raw_gap
    if reference is None:
        ax.axis("off")
        ax.text(0.5, 0.5, "Reference distribution: not available.\nThis model's card holds no cross-validation "
                "residuals,\nso the gap cannot be placed among the model's test subjects.", ha="center", va="center",
                fontsize=9, transform=ax.transAxes, bbox={"boxstyle": "round", "facecolor": "#f2f2f2", "edgecolor": "grey"})
        return ""
    ax.scatter(reference.age, reference.residual, s=9, c="grey", alpha=0.55, edgecolors="none",
               label=f"CV test subjects (n={len(reference.age)})")
    ax.axhline(0, color="k", lw=0.7, ls="--")
    for sign in (-1, 1):
        ax.axhline(sign * 1.96 * reference.rmse, color="tab:blue", lw=0.7, ls=":")
    kind = "bias-corrected" if reference.corrected else "raw"
    ax.set(xlabel="chronological age (y)", ylabel=f"{kind} gap (y)")
    ax.set_title("this scan among the model's cross-validation residuals", fontsize=9)
    age = result.chronological_age
    if gap is None or age is None:
        ax.legend(fontsize=7, loc="upper left")
        return "Reference distribution shown; without a chronological age the scan cannot be placed on it."
    ax.scatter([age], [gap], marker="*", s=220, c="red", edgecolors="black", zorder=5, label="this scan")
    ax.legend(fontsize=7, loc="best")
    pct, n, lo, hi = reference.percentile(gap, age)
    return (f"Its {kind} gap {gap:+.1f} y is at the {ordinal(round(pct))} percentile of the {n} reference subjects aged "
            f"{lo:.0f}-{hi:.0f} y (dotted: ± 1.96 × RMSE).")


def qc_lines(result: PredictionResult, model_text: str) -> list[str]:
    lines = [f"Quality control: {qc_status(result.passed_qc, result.qc_flags)}   (background {result.background_fraction:.1%} of the model input)"]
    lines += [f" - {flag}" for flag in result.qc_flags]
    lines += [f"Skull strip: {result.skull_strip or '-'}", f"Model: {model_text}",
              f"Software: SlicerBrainAge {__version__}; report made {_dt.date.today().isoformat()}"]
    return lines


def case_figure(result: PredictionResult, volume: Volume, brain_mask: Volume | None, *, card=None,
                saliency: Volume | None = None, saliency_method: str = ""):
    """The page as a matplotlib figure (A4 portrait)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    training = getattr(card, "training_data", None) or {}
    corrected = result.brain_age_gap is not None
    reference = reference_from_card(training, corrected)
    error = _error_from(reference, cv_error(training, corrected))
    n = len(result.fold_ages)
    model_text = result.model or (f"{card.name} {card.version} ({n} network{'s' if n != 1 else ''})" if card is not None else "-")
    fig = plt.figure(figsize=A4)
    grid = fig.add_gridspec(4, 3, height_ratios=[1.2, 2.6 if reference is not None else 0.8, 2.5, 1.7], left=0.08, right=0.96, top=0.935, bottom=0.03,
                            hspace=0.32, wspace=0.12)
    fig.text(0.08, 0.962, "Brain age report", fontsize=17, weight="bold")
    fig.text(0.96, 0.968, f"scan: {scan_name(result)}", fontsize=9, ha="right")
    fig.text(0.96, 0.952, "research use only, not a medical device", fontsize=8, ha="right", color="darkred")
    for i, line in enumerate(age_lines(result, error)):  # rows of 15 pt from the top of the first grid row
        strong = line.startswith("BRAIN AGE GAP")
        fig.text(0.08, 0.925 - i * 0.0178, line, fontsize=10.5 if strong else 9.2, va="top", family="monospace",
                 weight="bold" if strong else "normal", color="darkblue" if strong else "black")
    ax = fig.add_subplot(grid[1, :2])
    sentence = reference_panel(ax, reference, result)
    note = fig.add_subplot(grid[1, 2])
    note.axis("off")
    note.text(0.06, 0.98, "\n".join(textwrap.wrap(sentence, 32)), va="top", fontsize=8.5)
    views = [fig.add_subplot(grid[2, i]) for i in range(3)]
    draw_views(views, volume, brain_mask, saliency)
    overlay = f"saliency ({saliency_method})" if saliency is not None else "saliency not computed"
    views[0].text(0.0, -0.09, f"green: brain mask; red-yellow: {overlay}", transform=views[0].transAxes, fontsize=8,
                  va="top")
    info = fig.add_subplot(grid[3, :])
    info.axis("off")
    text = [textwrap.fill(line, 110, subsequent_indent="   ") for line in qc_lines(result, model_text)]
    intended = getattr(card, "intended_use", "") or "not stated in the model card"
    text += ["", textwrap.fill(f"Intended use: {intended}", 110)]
    info.text(0.0, 1.0, "\n".join(text), va="top", fontsize=8.3, linespacing=1.4)
    return fig


def write_case_report(out_dir: str | os.PathLike, result: PredictionResult, volume: Volume,
                      brain_mask: Volume | None = None, *, card=None, saliency: Volume | None = None,
                      saliency_method: str = "", overwrite: bool = True) -> dict[str, Path]:
    """Write ``<scan>_report.pdf`` and ``<scan>_report.png`` (one page each) into ``out_dir``; returns their paths."""
    import matplotlib.pyplot as plt

    if result.error:
        raise ValueError(f"no report for a failed case: {result.error}")
    out = Path(out_dir)
    stem = case_key(scan_name(result))
    paths = {"pdf": out / f"{stem}_report.pdf", "png": out / f"{stem}_report.png"}
    with plt.rc_context({"pdf.fonttype": 42}):
        fig = case_figure(result, volume, brain_mask, card=card, saliency=saliency, saliency_method=saliency_method)
        with atomic_path(paths["pdf"], overwrite=overwrite) as tmp:
            fig.savefig(tmp, format="pdf", metadata={"Title": "Brain age report", "Author": None, "Creator": "SlicerBrainAge"})
        with atomic_path(paths["png"], overwrite=overwrite) as tmp:
            fig.savefig(tmp, format="png", dpi=PNG_DPI)
    plt.close(fig)
    return paths
