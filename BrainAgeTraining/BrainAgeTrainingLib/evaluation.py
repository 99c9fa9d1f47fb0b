"""Evaluation of a model package on a held-out cohort, the way the paper evaluates clinical scans.

1. :func:`predict_cohort` predicts every subject of a BIDS-style cohort (``brainage synth``
   output, or any folder with ``participants.tsv`` and ``*_T1w`` + ``*_brainmask`` files).
2. :func:`site_evaluation` fits the age-bias line on one part of the site's cognitively
   unimpaired (CU) controls, applies it to the other CU subjects and to the patients, and
   reports MAE / r before and after correction, the brain age gap per cohort, the
   patient-vs-CU gap tests (two-sample Z-test as in the paper, Welch's t-test from pingouin),
   Welch's ANOVA with Games-Howell pairs and the gap's correlation with MMSE across cohorts
   (:func:`cohort_statistics`), and, when the cohort has a ground-truth ``biological_age``,
   how well the estimated gap follows the true one.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from tqdm import tqdm

from BrainAgeLib.calibration import fit_calibration
from BrainAgeLib.io import load_nifti

from .export import regression_metrics

CONTROLS = "CU"


def predict_cohort(package: str | os.PathLike, cohort: str | os.PathLike, *, use_masks: bool = True,
                   device: str = "cpu", progress: bool = True) -> pd.DataFrame:
    """Raw predicted age of every subject in ``cohort/participants.tsv`` (one row each, with its columns),
    and ``card_corrected_age`` when the package's model card holds a calibration.

    With ``use_masks`` the subject's ``*_brainmask`` is applied (skull strip ``none``), so skull
    stripping does not enter the numbers; a subject that fails gets its error in the ``error`` column.
    """
    from BrainAgeLib.predict import Predictor

    root = Path(cohort)
    table = pd.read_csv(root / "participants.tsv", sep="\t")
    predictor = Predictor(package, skull_strip="none" if use_masks else "hd-bet", device=device)
    rows = []
    for row in tqdm(table.to_dict("records"), desc="held-out", unit="subject", disable=not progress):
        stem = root / row["participant_id"] / "anat" / row["participant_id"]
        out = dict(row, predicted_age=np.nan, card_corrected_age=np.nan, error="")
        try:
            scan = load_nifti(f"{stem}_T1w.nii.gz")
            if use_masks:
                mask = load_nifti(f"{stem}_brainmask.nii.gz")
                scan = scan.with_data(np.where(mask.data > 0.5, scan.data, 0).astype(np.float32))
            result = predictor.predict_volume(scan, float(row["age"]))
            out["predicted_age"] = result.predicted_age
            if result.corrected_age is not None:  # the package's own calibration, when its card has one
                out["card_corrected_age"] = result.corrected_age
        except Exception as exc:  # recorded per subject; the rest go on
            out["error"] = f"{type(exc).__name__}: {exc}"
        rows.append(out)
    return pd.DataFrame(rows)


def split_controls(frame: pd.DataFrame, fraction: float = 0.5, seed: int = 0) -> np.ndarray:
    """Boolean mask of the CU subjects used to calibrate: ``fraction`` of them, spread evenly over age."""
    cu = frame.index[frame["cohort"] == CONTROLS]
    order = frame.loc[cu, "age"].sort_values(kind="stable").index
    n = int(round(fraction * len(order)))
    rng = np.random.default_rng(seed)
    chosen = []
    for block in np.array_split(np.asarray(order), max(n, 1)):  # one control from each age block
        if n and len(block):
            chosen.append(block[rng.integers(len(block))])
    return frame.index.isin(chosen[:n])


def gap_tests(gap: pd.Series, cohort: pd.Series, reference: str = CONTROLS) -> list[dict]:
    """Each other cohort's gap against the reference: two-sample Z-test (paper) and Welch's t-test (pingouin)."""
    import pingouin as pg
    from statsmodels.stats.weightstats import ztest

    ref = gap[cohort == reference].dropna().to_numpy(float)
    rows = []
    for name in sorted(set(cohort) - {reference}):
        other = gap[cohort == name].dropna().to_numpy(float)
        if len(other) < 2 or len(ref) < 2:
            continue
        z, p_z = ztest(other, ref, usevar="unequal")
        welch = pg.ttest(other, ref, correction=True)
        rows.append({"cohort": name, "reference": reference, "n": len(other), "n_reference": len(ref),
                     "mean_gap": float(other.mean()), "mean_gap_reference": float(ref.mean()),
                     "z": float(z), "p_z": float(p_z), "t_welch": float(welch["T"].iloc[0]),
                     "p_welch": float(welch["p_val"].iloc[0]),
                     "hedges_g": float(pg.compute_effsize(other, ref, eftype="hedges"))})
    return rows


def cohort_statistics(frame: pd.DataFrame, value: str = "gap", group: str = "cohort", score: str = "mmse") -> dict:
    """Across cohorts (the paper's analysis, with pingouin): Welch's ANOVA of the gap, Games-Howell post hoc
    pairs, and the gap's Pearson correlation with a cognitive score (MMSE) when the frame has one."""
    import pingouin as pg

    data = frame.dropna(subset=[value, group])
    result: dict = {}
    if data[group].nunique() >= 2 and data.groupby(group)[value].count().min() >= 2:
        welch = pg.welch_anova(data=data, dv=value, between=group).iloc[0]
        result["welch_anova"] = {"F": float(welch["F"]), "p": float(welch["p_unc"]), "ddof1": float(welch["ddof1"]),
                                 "ddof2": float(welch["ddof2"]), "np2": float(welch["np2"])}
        result["games_howell"] = [{"a": r.A, "b": r.B, "diff": float(r.diff), "se": float(r.se), "t": float(r.T),
                                   "df": float(r.df), "p": float(r.pval), "hedges_g": float(r.hedges)}
                                  for r in pg.pairwise_gameshowell(data=data, dv=value, between=group).itertuples()]
    if score in data and data[score].notna().sum() > 2:
        scored = data.dropna(subset=[score])
        corr = pg.corr(scored[value], scored[score]).iloc[0]
        result[f"{value}_vs_{score}"] = {"n": int(corr["n"]), "r": float(corr["r"]), "p": float(corr["p_val"])}
    return result


def site_evaluation(frame: pd.DataFrame, *, method: str = "extremes", calibration_fraction: float = 0.5,
                    seed: int = 0) -> dict:
    """Calibrate on part of the CU controls, evaluate on the rest and on the patients.

    Returns the calibration, MAE / r of the held-out CU subjects before and after correction,
    the predict-the-mean baseline, the gap per cohort, gap tests, cohort statistics, and (with ``biological_age``)
    the correlation and error of the estimated gap against the true gap. Adds columns
    ``role`` (calibration / evaluation), ``corrected_age``, ``gap`` and ``raw_gap`` to ``frame``.
    """
    ok = frame["predicted_age"].notna()
    frame["role"] = np.where(split_controls(frame.where(ok), calibration_fraction, seed), "calibration", "evaluation")
    calib = frame[(frame["role"] == "calibration") & ok]
    calibration = fit_calibration(calib["predicted_age"], calib["age"], method=method, site="held-out CU controls")
    frame["corrected_age"] = calibration.correct(frame["predicted_age"], frame["age"])
    frame["gap"] = frame["corrected_age"] - frame["age"]
    frame["raw_gap"] = frame["predicted_age"] - frame["age"]
    evaluation = frame[(frame["role"] == "evaluation") & ok]
    cu = evaluation[evaluation["cohort"] == CONTROLS]
    result = {
        "n_subjects": int(len(frame)), "n_failed": int((~ok).sum()),
        "calibration": calibration.to_dict(),
        "cu_raw": regression_metrics(cu["predicted_age"], cu["age"]),
        "cu_corrected": regression_metrics(cu["corrected_age"], cu["age"]),
        "cu_predict_the_mean_mae": float(np.mean(np.abs(cu["age"] - calib["age"].mean()))) if len(cu) else None,
        "gap_by_cohort": {name: {"n": int(len(g)), "mean": float(g["gap"].mean()), "sd": float(g["gap"].std(ddof=1))}
                          for name, g in evaluation.groupby("cohort")},
        "gap_tests": gap_tests(evaluation["gap"], evaluation["cohort"]),
        "cohort_statistics": cohort_statistics(evaluation),
    }
    if "biological_age" in frame:
        true_gap = evaluation["biological_age"] - evaluation["age"]
        result["true_gap_by_cohort"] = {name: float(g.mean()) for name, g in true_gap.groupby(evaluation["cohort"])}
        if len(evaluation) > 2 and true_gap.std() > 0:
            result["gap_vs_true_gap_r"] = float(stats.pearsonr(evaluation["gap"], true_gap)[0])
            result["biological_age_mae"] = float(np.mean(np.abs(evaluation["corrected_age"] - evaluation["biological_age"])))
    return result
