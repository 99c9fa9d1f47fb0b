"""One picture of an evaluation: learning curve, research-3D test, clinical-2D before/after correction, gaps."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from BrainAgeLib.io import atomic_path

from .export import regression_metrics

COLOURS = {"CU": "tab:blue", "MCI": "tab:orange", "AD": "tab:red", "PD": "tab:purple"}


def plot_evaluation(frame: pd.DataFrame, history: pd.DataFrame, path: str | os.PathLike,
                    research: pd.DataFrame | None = None, title: str = "") -> Path:
    """Five panels from :func:`evaluation.site_evaluation`'s frame and a fold's ``metrics.csv``; PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 5, figsize=(23, 4.6))
    ax = axes[0]
    ax.plot(history["epoch"], np.sqrt(history["train_loss"]), label="train RMSE (augmented)")
    ax.plot(history["epoch"], history["val_mae"], label="validation MAE")
    ax.set(xlabel="epoch", ylabel="years", title="learning curve")
    ax.legend()
    ok = frame[frame["predicted_age"].notna()]
    lo, hi = 10, 100
    axes[1].set_title("research-3D, sliced (test subjects)")
    if research is not None and len(research):
        axes[1].scatter(research["age"], research["predicted_age"], s=14, c="tab:green")
        axes[1].set_title(f"research-3D, sliced (test subjects): MAE {_mae(research, 'predicted_age'):.2f} y")
    for ax, column, name in ((axes[2], "predicted_age", "clinical-2D held-out, raw"),
                             (axes[3], "corrected_age", "clinical-2D held-out, bias-corrected")):
        for (cohort, role), part in ok.groupby(["cohort", "role"]):
            ax.scatter(part["age"], part[column], s=16, marker="o" if role == "evaluation" else "x",
                       c=COLOURS.get(cohort, "grey"), label=f"{cohort} ({role})")
        cu = ok[(ok["cohort"] == "CU") & (ok["role"] == "evaluation")]
        ax.set_title(f"{name}\nCU evaluation MAE {_mae(cu, column):.2f} y")
        ax.legend(fontsize=7, loc="upper left")
    evaluation = ok[ok["role"] == "evaluation"]
    names = [c for c in COLOURS if c in set(evaluation["cohort"])]
    gaps = [evaluation.loc[evaluation["cohort"] == c, "gap"] for c in names]
    axes[4].boxplot(gaps, tick_labels=names, showfliers=False)
    for i, (name, gap) in enumerate(zip(names, gaps), start=1):
        axes[4].scatter(np.full(len(gap), i) + np.linspace(-0.15, 0.15, len(gap)), gap, s=10, c=COLOURS[name])
    axes[4].axhline(0, color="k", lw=0.8, ls="--")
    axes[4].set(title="brain age gap, evaluation subjects", ylabel="bias-corrected gap (y)")
    for ax in axes[1:4]:
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="chronological age (y)", ylabel="predicted age (y)")
        ax.set_aspect("equal")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path


def _mae(frame: pd.DataFrame, column: str) -> float:
    return regression_metrics(frame[column], frame["age"])["mae"]
