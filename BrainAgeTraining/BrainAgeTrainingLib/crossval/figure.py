"""The cross-validation figure, after the paper's: predicted vs chronological age, gap vs age before and
after bias correction (clinical-style input), and MAE per age decade next to the baselines."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from BrainAgeLib.io import atomic_path

from .metrics import mae_by_decade, regression_summary


def _scatter_with_fit(ax, x, y, colour: str) -> None:
    ax.scatter(x, y, s=9, alpha=0.5, c=colour, edgecolors="none")
    fit = stats.linregress(x, y)
    grid = np.array([15, 90])
    ax.plot(grid, fit.intercept + fit.slope * grid, color=colour, lw=1.5, label=f"fit: slope {fit.slope:.2f}")


def plot_crossval(frame: pd.DataFrame, path: str | os.PathLike, title: str = "") -> Path:
    """Four panels from test rows with ``input`` clinical / 3d / ridge / mean and ``corrected_age``; PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    test = frame[frame["role"] == "test"]
    clinical = test[test["input"] == "clinical"]
    fig, axes = plt.subplots(1, 4, figsize=(21, 5))
    ax = axes[0]
    _scatter_with_fit(ax, clinical["age"], clinical["predicted_age"], "tab:blue")
    m = regression_summary(clinical["predicted_age"], clinical["age"])
    ax.plot([15, 90], [15, 90], "k--", lw=0.8, label="identity")
    ax.set(xlim=(15, 90), ylim=(15, 90), xlabel="chronological age (y)", ylabel="predicted age (y)",
           title=f"clinical-style input, raw (test, every offset)\nMAE {m['mae']:.2f} y, r = {m['r']:.3f}")
    ax.set_aspect("equal")
    ax.legend(loc="upper left", fontsize=8)
    for ax, column, name, colour in ((axes[1], "predicted_age", "before correction", "tab:blue"),
                                     (axes[2], "corrected_age", "after correction (line fitted on validation)", "tab:green")):
        gap = clinical[column] - clinical["age"]
        _scatter_with_fit(ax, clinical["age"], gap, colour)
        ax.axhline(0, color="k", lw=0.8, ls="--")
        ax.set(xlim=(15, 90), ylim=(-30, 30), xlabel="chronological age (y)", ylabel="brain age gap (y)",
               title=f"gap vs age, {name}\nmean {gap.mean():+.2f} y, MAE {np.abs(gap).mean():.2f} y")
        ax.legend(loc="upper right", fontsize=8)
    ax = axes[3]
    series = [("clinical raw", clinical, "predicted_age"), ("clinical corrected", clinical, "corrected_age"),
              ("3D raw", test[test["input"] == "3d"], "predicted_age"),
              ("ridge baseline", test[test["input"] == "ridge"], "predicted_age"),
              ("training mean", test[test["input"] == "mean"], "predicted_age")]
    series = [(n, f, c) for n, f, c in series if len(f)]
    width = 0.8 / len(series)
    decades = None
    for i, (name, part, column) in enumerate(series):
        table = mae_by_decade(part, column)
        decades = table["decade"] if decades is None else decades
        ax.bar(np.arange(len(table)) + i * width, table["mae"], width, label=name)
    if decades is not None:
        ax.set_xticks(np.arange(len(decades)) + 0.4 - width / 2, decades)
    ax.set(xlabel="age decade", ylabel="MAE (y)", title="MAE per decade (test subjects)")
    ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return Path(path)
