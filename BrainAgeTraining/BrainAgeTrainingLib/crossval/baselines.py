"""Baselines a brain-age network must beat, on the same folds: the training mean, and a ridge
regression on simple brain measures (brain volume, CSF fraction, a ventricle proxy).

The measures come from each whole 3D scan and its brain mask: the brain volume in mL;
tissue classes from a 3-component Gaussian mixture of the brain's intensities
(scikit-learn), CSF being the darkest class on T1; the CSF fraction of the brain; and a
ventricle proxy, the CSF fraction inside the central box of the brain (middle 30 % of
its left-right extent, 40 % of its anterior-posterior and inferior-superior extent),
where the lateral ventricles lie.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import RidgeCV
from sklearn.mixture import GaussianMixture
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from BrainAgeLib.io import load_nifti, to_canonical

from ..cache import skull_strip_record

FEATURES = ("brain_volume_ml", "csf_fraction", "ventricle_proxy")


def brain_measures(brain_data: np.ndarray, voxel_volume_mm3: float, seed: int = 0) -> dict:
    """The three measures of a skull-stripped scan (RAS+ voxel order, background exactly 0)."""
    mask = brain_data > 0
    values = brain_data[mask].astype(np.float64)[:, None]
    rng = np.random.default_rng(seed)
    sample = values[rng.choice(len(values), size=min(len(values), 50_000), replace=False)]
    gmm = GaussianMixture(3, random_state=seed).fit(sample)
    csf_class = int(np.argmin(gmm.means_[:, 0]))
    csf = np.zeros(mask.shape, bool)
    csf[mask] = gmm.predict(values) == csf_class
    idx = np.argwhere(mask)
    lo, hi = idx.min(0), idx.max(0) + 1
    centre, extent = (lo + hi) / 2, hi - lo
    half = np.array([0.15, 0.20, 0.20]) * extent
    box = tuple(slice(int(c - h), int(c + h) + 1) for c, h in zip(centre, half))
    return {"brain_volume_ml": float(mask.sum() * voxel_volume_mm3 / 1000), "csf_fraction": float(csf[mask].mean()),
            "ventricle_proxy": float(csf[box][mask[box]].mean())}


def measure_records(records, skull_strip: str = "auto") -> pd.DataFrame:
    """One row of :data:`FEATURES` per record (``subject``, ``age``)."""
    rows = []
    for record in records:
        brain = to_canonical(skull_strip_record(load_nifti(record.path), record, skull_strip))
        voxel = float(np.prod(brain.spacing))
        rows.append({"subject": record.subject, "age": record.age, **brain_measures(brain.data, voxel)})
    return pd.DataFrame(rows)


def baseline_predictions(measures: pd.DataFrame, splits: list[dict]) -> pd.DataFrame:
    """Rows like :mod:`crossval.predictions` (input ``mean`` and ``ridge``) for every fold's test subjects;
    both fitted on the fold's train + validation subjects."""
    table = measures.set_index("subject")
    rows = []
    for split in splits:
        fit_subjects = [s for s in list(split["train"]) + list(split["val"]) if s in table.index]
        test = [s for s in split["test"] if s in table.index]
        fit = table.loc[fit_subjects]
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
        model.fit(fit[list(FEATURES)], fit["age"])
        ridge = model.predict(table.loc[test, list(FEATURES)])
        mean_age = float(table.loc[list(split["train"]), "age"].mean())
        for subject, value in zip(test, ridge):
            base = {"fold": split["fold"], "subject": subject, "role": "test", "offset": -1, "age": table.loc[subject, "age"]}
            rows.append({**base, "input": "ridge", "predicted_age": float(value)})
            rows.append({**base, "input": "mean", "predicted_age": mean_age})
    return pd.DataFrame(rows)
