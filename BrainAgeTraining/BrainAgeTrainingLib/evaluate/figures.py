"""The evaluation's figures (matplotlib, no display): accuracy, calibration, groups; each returned as PNG bytes."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from scipy import stats

from BrainAgeLib.calibration import select_controls

from ..evaluation_figure import COLOURS
from .crossfit import CrossFit


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def ordered(groups) -> list[str]:
    """Known cohorts in their usual order (CU, MCI, AD, PD), then the others alphabetically."""
    known = list(COLOURS)
    return sorted(set(groups), key=lambda g: (known.index(g) if g in known else len(known), g))


def colours(groups) -> dict[str, str]:
    """The evaluation figure's group colours, then tab10 for other names."""
    spare = iter(c for c in (f"C{i}" for i in range(10)) if c not in ("C0", "C1", "C3"))
    return {g: COLOURS.get(g) or next(spare, "grey") for g in sorted(groups)}


def png(fig) -> bytes:
    """The figure as PNG bytes (and closed)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    _plt().close(fig)
    return buffer.getvalue()


def _limits(*series) -> tuple[float, float]:
    values = np.concatenate([np.asarray(s, float) for s in series])
    lo, hi = np.nanmin(values), np.nanmax(values)
    pad = 0.05 * (hi - lo) + 1
    return lo - pad, hi + pad


def _scatter_groups(ax, scans: pd.DataFrame, y: str, palette: dict) -> None:
    size, alpha = (8, 0.35) if len(scans) > 300 else (22, 0.8)
    for group in ordered(scans["group"]):
        part = scans[scans["group"] == group]
        ax.scatter(part["age"], part[y], s=size, alpha=alpha, c=palette[group], edgecolors="none",
                   label=f"{group} (n={part['subject'].nunique()})")


def _fit_line(ax, x, y, colour: str, label: str) -> None:
    fit = stats.linregress(x, y)
    grid = np.array([np.min(x), np.max(x)])
    ax.plot(grid, fit.intercept + fit.slope * grid, color=colour, lw=1.8, label=f"{label}: slope {fit.slope:.2f}")


def accuracy_figure(scans: pd.DataFrame) -> bytes:
    """Predicted vs chronological age (identity, controls' fitted line); gap vs age before and after correction."""
    plt = _plt()
    palette = colours(scans["group"].unique())
    controls = scans[scans["is_control"]]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.2), constrained_layout=True)
    ax = axes[0]
    _scatter_groups(ax, scans, "predicted_age", palette)
    lo, hi = _limits(scans["age"], scans["predicted_age"])
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.9, label="identity")
    _fit_line(ax, controls["age"], controls["predicted_age"], "black", "controls' fit")
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="chronological age (y)", ylabel="predicted brain age, raw (y)",
           title="predicted vs chronological age (raw)")
    ax.set_aspect("equal")
    gaps = pd.concat([scans["raw_gap"], scans["gap"]])
    glim = max(5.0, float(np.nanpercentile(np.abs(gaps), 99.5)) * 1.1)
    for ax, column, name in ((axes[1], "raw_gap", "before correction"), (axes[2], "gap", "after correction")):
        _scatter_groups(ax, scans, column, palette)
        _fit_line(ax, controls["age"], controls[column], "black", "controls' fit")
        ax.axhline(0, color="k", lw=0.9, ls="--")
        c = controls[column]
        ax.set(ylim=(-glim, glim), xlabel="chronological age (y)", ylabel="brain age gap (y)",
               title=f"gap vs age, {name}\ncontrols: mean {c.mean():+.2f} y, MAE {c.abs().mean():.2f} y")
    for ax in axes:
        ax.legend(fontsize=8, loc="upper left")
    return png(fig)


def calibration_figure(scans: pd.DataFrame, fits: dict[str, CrossFit], method: str, fraction: float = 0.05) -> bytes:
    """The controls with the lines fitted on them (extremes marked), cross-fitting lines, the patients' age span."""
    plt = _plt()
    controls = scans[scans["is_control"]]
    patients = scans[~scans["is_control"]]
    fig, ax = plt.subplots(figsize=(7.5, 5.6), constrained_layout=True)
    ax.scatter(controls["age"], controls["predicted_age"], s=14, c="tab:blue", alpha=0.5, edgecolors="none",
               label=f"controls ({controls['subject'].nunique()} subjects)")
    final = fits["extremes"].final if "extremes" in fits else None
    if final is not None:
        chosen = controls.iloc[select_controls(controls["age"].to_numpy(float), "extremes", fraction)]
        ax.scatter(chosen["age"], chosen["predicted_age"], s=46, facecolors="none", edgecolors="black",
                   label=f"youngest/oldest {fraction:.0%} ({len(chosen)} scans)")
    if len(patients):
        ax.axvspan(patients["age"].min(), patients["age"].max(), color="tab:red", alpha=0.07,
                   label="patients' age span")
    grid = np.array([scans["age"].min(), scans["age"].max()])
    styles = {"extremes": ("black", "-"), "all": ("tab:green", "-.")}
    for name, fit in fits.items():
        colour, ls = styles.get(name, ("grey", ":"))
        line = fit.final
        used = " (used, saved)" if name == method else ""
        ax.plot(grid, line.slope * grid + line.intercept, color=colour, ls=ls, lw=2,
                label=f"{name}{used}: predicted = {line.slope:.3f} x age + {line.intercept:.2f}")
        for fold_line in fit.fold_lines:
            ax.plot(grid, fold_line.slope * grid + fold_line.intercept, color=colour, ls=ls, lw=0.6, alpha=0.4)
    lo, hi = _limits(scans["age"], controls["predicted_age"])
    ax.plot([lo, hi], [lo, hi], color="grey", ls="--", lw=0.8, label="identity")
    ax.set(xlabel="chronological age (y)", ylabel="predicted brain age, raw (y)",
           title="site calibration on the controls\n(thin lines: cross-fitting folds, each fitted without one fold)")
    ax.legend(fontsize=8, loc="upper left")
    return png(fig)


def groups_figure(subjects: pd.DataFrame, group_stats: dict, score_name: str = "score") -> bytes:
    """Gap per group (box + subjects, Games-Howell p of each pair) and, with a score, gap vs score."""
    plt = _plt()
    palette = colours(subjects["group"].unique())
    has_score = subjects["score"].notna().sum() > 2
    fig, axes = plt.subplots(1, 2 if has_score else 1, figsize=(13 if has_score else 7, 5.4), constrained_layout=True)
    axes = np.atleast_1d(axes)
    ax = axes[0]
    names = ordered(subjects["group"])
    data = [subjects.loc[subjects["group"] == g, "gap"].to_numpy(float) for g in names]
    ax.boxplot(data, showfliers=False, widths=0.5)
    ax.set_xticks(range(1, len(names) + 1), [f"{g}\n(n={len(d)})" for g, d in zip(names, data)])
    rng = np.random.default_rng(0)
    for i, (g, d) in enumerate(zip(names, data), start=1):
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(d)), d, s=14, c=palette[g], alpha=0.8, edgecolors="none")
    ax.axhline(0, color="k", lw=0.8, ls="--")
    top = max(float(np.nanmax(np.concatenate(data))), 0.0)
    span = np.ptp(np.concatenate(data)) or 1.0
    for k, pair in enumerate(group_stats.get("games_howell", [])):
        i, j = names.index(pair["a"]) + 1, names.index(pair["b"]) + 1
        y = top + span * (0.08 + 0.09 * k)
        ax.plot([i, i, j, j], [y - span * 0.02, y, y, y - span * 0.02], color="k", lw=0.8)
        ax.text((i + j) / 2, y, f"p = {pair['p']:.2g}", ha="center", va="bottom", fontsize=8)
    anova = group_stats.get("welch_anova")
    title = "bias-corrected brain age gap per group"
    if anova:
        title += f"\nWelch's ANOVA F = {anova['F']:.2f}, p = {anova['p']:.2g}; pairs: Games-Howell"
    ax.set(ylabel="brain age gap (y)", title=title)
    if has_score:
        ax = axes[1]
        for g in names:
            part = subjects[(subjects["group"] == g) & subjects["score"].notna()]
            ax.scatter(part["score"], part["gap"], s=18, c=palette[g], alpha=0.8, edgecolors="none", label=g)
        scored = subjects.dropna(subset=["score", "gap"])
        _fit_line(ax, scored["score"], scored["gap"], "black", "fit")
        corr = group_stats.get("gap_vs_score", {})
        ax.axhline(0, color="k", lw=0.8, ls="--")
        ax.set(xlabel=score_name, ylabel="brain age gap (y)",
               title=f"gap vs {score_name}: r = {corr.get('r', np.nan):.2f}, p = {corr.get('p', np.nan):.2g} "
                     f"(n = {corr.get('n', len(scored))})")
        ax.legend(fontsize=8)
    return png(fig)
