"""Test-set evaluation of each fold and export of all folds as one model package.

Writes ``RUN_DIR/fold<k>/test_predictions.csv`` (one row per synthetic scan),
``RUN_DIR/test_predictions.csv`` (all folds) and ``RUN_DIR/model/`` (safetensors
per fold + model card with the PreprocessSpec, the data summary, per-fold
validation/test metrics and an age-bias calibration fitted on the pooled
out-of-fold test predictions of the cognitively unimpaired subjects).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from torch import nn

from BrainAgeLib.calibration import fit_calibration
from BrainAgeLib.errors import CalibrationError
from BrainAgeLib.io import atomic_path
from BrainAgeLib.model import ARCHITECTURE
from BrainAgeLib.package import ModelCard, save_package
from BrainAgeLib.spec import PreprocessSpec

from .cache import CachedSample
from .config import TrainConfig


def regression_metrics(predicted, age) -> dict:
    """MAE, RMSE, Pearson r and bias (mean predicted - age)."""
    predicted, age = np.asarray(predicted, float), np.asarray(age, float)
    if len(age) == 0:
        return {"n": 0}
    err = predicted - age
    r = float(stats.pearsonr(predicted, age)[0]) if len(age) > 2 and np.ptp(age) > 0 and np.ptp(predicted) > 0 else math.nan
    return {"n": int(len(age)), "mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err ** 2))),
            "r": r, "bias": float(np.mean(err))}


def prediction_rows(fold: int, samples: list[CachedSample], predictions: dict[int, float]) -> pd.DataFrame:
    return pd.DataFrame([{"fold": fold, "subject": s.subject, "scan": s.scan, "offset": s.offset, "age": s.age,
                          "predicted_age": predictions[i], "source": s.source, "cohort": s.cohort,
                          "acquisition": s.acquisition} for i, s in enumerate(samples)])


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path


def per_scan(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean prediction over the slicing offsets of each source scan."""
    return frame.groupby(["fold", "subject", "scan", "cohort"], as_index=False, dropna=False).agg(
        age=("age", "first"), predicted_age=("predicted_age", "mean"))


def fit_cv_calibration(frame: pd.DataFrame, method: str):
    """Bias line on the pooled out-of-fold test predictions (CU subjects when cohorts are known)."""
    scans = per_scan(frame)
    if (scans["cohort"] == "CU").any():
        scans = scans[scans["cohort"] == "CU"]
    try:
        return fit_calibration(scans["predicted_age"], scans["age"], method=method, site="cross-validation test sets")
    except CalibrationError:
        return None


@dataclass
class ExportResult:
    package: Path
    fold_metrics: list[dict]
    predictions: pd.DataFrame


def export_package(
    out_dir: Path,
    models: list[nn.Module],
    fold_entries: list[dict],
    predictions: pd.DataFrame,
    config: TrainConfig,
    spec: PreprocessSpec,
    data_summary: dict,
    skull_strip: str,
) -> ExportResult:
    """Save every fold model as one package at ``out_dir`` (replacing an older export of this run)."""
    calibration = fit_cv_calibration(predictions, config.calibration_method) if len(predictions) else None
    card = ModelCard(
        name=config.name,
        version=config.version,
        description=config.description or f"{len(models)}-fold DenseNet brain-age model trained with brainage train",
        architecture={"name": ARCHITECTURE, "config": dict(config.model)},
        preprocess=spec.to_dict(),
        skull_strip={"backend": skull_strip},
        calibration=calibration.to_dict() if calibration else None,
        training_data=data_summary,
        folds=[{"file": f"fold{i}.safetensors", "metrics": entry} for i, entry in enumerate(fold_entries)],
        synthetic_demo=config.synthetic_demo,
    )
    if config.synthetic_demo:
        card.intended_use = "demonstration only: trained on SYNTHETIC data, not for clinical or research use"
    if config.weights_dtype == "float16":
        models = [copy.deepcopy(m).half() for m in models]  # floating tensors only; counters stay integers
    path = save_package(out_dir, models, card, overwrite=True)
    return ExportResult(path, fold_entries, predictions)
