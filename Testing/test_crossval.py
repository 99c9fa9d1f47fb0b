"""Cross-validated evaluation: metrics against textbook formulas, per-fold correction never fitted on
test subjects, subject bootstrap, brain measures on a phantom with known tissue, baselines on folds;
BIDS-derivative masks, training-only extra data and initial weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from BrainAgeLib.io import Volume, save_nifti
from BrainAgeLib.model import build_model
from BrainAgeTrainingLib.crossval.baselines import baseline_predictions, brain_measures
from BrainAgeTrainingLib.crossval.metrics import (add_fold_correction, average_runs, bootstrap_ci, mae_by_decade,
                                                  only_folds, regression_summary, score)
from BrainAgeTrainingLib.config import ConfigError, TrainConfig
from BrainAgeTrainingLib.datasets import discover_bids
from BrainAgeTrainingLib.train_loop import initial_weights


def test_regression_summary_matches_textbook_formulas():
    rng = np.random.default_rng(0)
    age = rng.uniform(20, 80, 200)
    pred = 0.7 * age + 15 + rng.normal(0, 4, 200)
    m = regression_summary(pred, age)
    err = pred - age
    assert m["mae"] == pytest.approx(np.abs(err).mean())
    assert m["rmse"] == pytest.approx(np.sqrt((err ** 2).mean()))
    assert m["r"] == pytest.approx(np.corrcoef(pred, age)[0, 1])
    assert m["r2"] == pytest.approx(1 - (err ** 2).sum() / ((age - age.mean()) ** 2).sum())
    assert m["bias_slope"] == pytest.approx(np.polyfit(age, err, 1)[0])  # -0.3 by construction
    assert m["bias_slope"] == pytest.approx(-0.3, abs=0.05)


def _frame(n_folds=3, per_fold=30, slope=0.6, seed=0):
    """Folds with a known bias (pred = slope * age + (1 - slope) * 50) and a role per subject."""
    rng = np.random.default_rng(seed)
    rows = []
    for fold in range(n_folds):
        for i in range(per_fold):
            role = "val" if i % 3 == 0 else "test" if i % 3 == 1 else "train"
            age = rng.uniform(20, 80)
            pred = slope * age + (1 - slope) * 50 + rng.normal(0, 1)
            rows.append({"fold": fold, "subject": f"s{fold}-{i}", "role": role, "input": "clinical", "offset": 0,
                         "age": age, "predicted_age": pred})
    return pd.DataFrame(rows)


def test_fold_correction_removes_a_known_bias_and_ignores_test_rows():
    frame = _frame()
    corrected = add_fold_correction(frame)
    test = corrected[corrected["role"] == "test"]
    raw, fixed = regression_summary(test["predicted_age"], test["age"]), regression_summary(test["corrected_age"], test["age"])
    assert raw["bias_slope"] == pytest.approx(-0.4, abs=0.05)
    assert abs(fixed["bias_slope"]) < 0.05 and fixed["mae"] < 1.5 < raw["mae"]
    # wrecking the test rows' predictions must not change any fold's line (it is fitted on validation only)
    wrecked = frame.copy()
    wrecked.loc[wrecked["role"] == "test", "predicted_age"] += 100
    again = add_fold_correction(wrecked)
    shift = again.loc[again["role"] == "test", "corrected_age"] - corrected.loc[corrected["role"] == "test", "corrected_age"]
    assert np.allclose(shift, 100)


def test_an_ensemble_of_runs_averages_matching_rows_only():
    base = _frame()
    a = base.assign(config="a")
    b = base.assign(config="b", predicted_age=base["predicted_age"] + 2.0).iloc[1:]  # one row not predicted by b
    both = average_runs(pd.concat([a, b], ignore_index=True), ["a", "b"], "a+b")
    assert len(both) == len(base) - 1 and set(both["config"]) == {"a+b"}
    merged = both.merge(a, on=["fold", "subject", "role", "input", "offset"], suffixes=("", "_a"))
    assert np.allclose(merged["predicted_age"], merged["predicted_age_a"] + 1.0)
    assert both["corrected_age"].notna().all()  # corrected again, fold by fold
    with pytest.raises(ValueError, match="c"):
        average_runs(a, ["a", "c"], "a+c")


def test_only_folds_keeps_a_packages_rows_of_those_folds_test_subjects():
    frame = _frame()
    package = frame.assign(fold=-1, role="test")  # a package scored on every subject, as real_cv.py does
    kept = only_folds(pd.concat([frame, package], ignore_index=True), [1])
    assert set(kept.loc[kept["fold"] != -1, "fold"]) == {1}
    fold1_tests = set(frame.loc[(frame["fold"] == 1) & (frame["role"] == "test"), "subject"])
    assert set(kept.loc[kept["fold"] == -1, "subject"]) == fold1_tests and len(fold1_tests) == 10


def test_subject_bootstrap_moves_all_rows_of_a_subject_together():
    frame = _frame(n_folds=1, per_fold=120)
    test = frame[frame["role"] == "test"]
    lo, hi = bootstrap_ci(test, "mae", n_resamples=500)
    assert lo < regression_summary(test["predicted_age"], test["age"])["mae"] < hi
    # four identical copies of every row (offsets) are one subject each: same interval as the single rows
    copies = pd.concat([test.assign(offset=k) for k in range(4)])
    assert bootstrap_ci(copies, "mae", n_resamples=500) == pytest.approx((lo, hi), abs=1e-9)
    summary = score(copies, n_resamples=200)
    assert summary["subjects"] == len(test) and summary["n"] == 4 * len(test)


def test_mae_by_decade_groups_test_rows():
    frame = pd.DataFrame({"role": ["test"] * 4 + ["val"], "subject": list("abcde"), "age": [21, 29, 35, 72, 40],
                          "predicted_age": [25, 27, 35, 62, 0]})
    table = mae_by_decade(frame).set_index("decade")
    assert table.loc["20-29", "mae"] == 3 and table.loc["30-39", "mae"] == 0 and table.loc["70-79", "mae"] == 10
    assert "40-49" not in table.index  # the validation row is not scored


def test_brain_measures_recover_a_phantoms_volume_and_csf():
    """A 2 mm phantom: a 'brain' ellipsoid (WM 100, GM 70) with a central CSF block (20) of known size."""
    shape = (80, 100, 80)
    grid = np.indices(shape).astype(float)
    centre = (np.asarray(shape) - 1) / 2
    r = sum(((grid[i] - centre[i]) / (0.45 * shape[i])) ** 2 for i in range(3))
    rng = np.random.default_rng(0)
    data = np.where(r < 1, np.where(r < 0.5, 100.0, 70.0), 0) + np.where(r < 1, rng.normal(0, 2, shape), 0)
    block = (slice(36, 44), slice(42, 58), slice(34, 46))
    data[block] = 20 + rng.normal(0, 2, data[block].shape)
    m = brain_measures(data.astype(np.float32), voxel_volume_mm3=8.0)
    brain = (r < 1).sum()
    assert m["brain_volume_ml"] == pytest.approx(brain * 8 / 1000, rel=1e-6)
    assert m["csf_fraction"] == pytest.approx(8 * 16 * 12 / brain, rel=0.02)
    assert m["ventricle_proxy"] > 5 * m["csf_fraction"]  # the block lies in the central box


def test_ridge_baseline_learns_a_measure_that_tracks_age_and_mean_is_the_training_mean():
    rng = np.random.default_rng(1)
    n = 100
    age = rng.uniform(20, 80, n)
    measures = pd.DataFrame({"subject": [f"s{i}" for i in range(n)], "age": age,
                             "brain_volume_ml": 1500 - 4 * age + rng.normal(0, 10, n),
                             "csf_fraction": rng.uniform(0.1, 0.2, n), "ventricle_proxy": rng.uniform(0.1, 0.3, n)})
    names = list(measures["subject"])
    splits = [{"fold": 0, "train": names[:70], "val": names[70:80], "test": names[80:]}]
    out = baseline_predictions(measures, splits)
    ridge, mean = out[out["input"] == "ridge"], out[out["input"] == "mean"]
    assert len(ridge) == 20 and set(ridge["subject"]) == set(names[80:])
    assert np.abs(ridge["predicted_age"] - ridge["age"]).mean() < 5
    assert np.allclose(mean["predicted_age"], age[:70].mean())


def test_bids_derivative_masks_are_found_with_their_tool(tmp_path):
    root = tmp_path / "bids"
    vol = Volume(np.ones((20, 20, 20), np.float32), np.diag([2.0, 2, 2, 1]))
    for sub in ("sub-01", "sub-02"):
        save_nifti(vol, root / sub / "anat" / f"{sub}_T1w.nii.gz")
    (root / "participants.tsv").write_text("participant_id\tage\nsub-01\t30\nsub-02\t40\n")
    deriv = root / "derivatives" / "hd-bet"
    save_nifti(vol, deriv / "sub-01" / "anat" / "sub-01_desc-brain_mask.nii.gz", dtype="uint8")
    (deriv / "dataset_description.json").write_text(json.dumps({"GeneratedBy": [{"Name": "HD-BET"}]}))
    records = {r.subject.split("/")[1]: r for r in discover_bids(root).records}
    assert records["sub-01"].mask.endswith("derivatives/hd-bet/sub-01/anat/sub-01_desc-brain_mask.nii.gz")
    assert records["sub-01"].mask_backend == "hd-bet"
    assert records["sub-02"].mask == "" and len(records) == 2  # derivatives/ holds no T1w of its own


def test_initial_weights_restate_the_output_for_standardised_targets(tmp_path):
    model = build_model({"init_features": 8, "growth_rate": 4, "block_config": [1, 1, 1, 1]}, seed=0).eval()
    path = tmp_path / "w.safetensors"
    save_file({k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, str(path))
    fresh = build_model({"init_features": 8, "growth_rate": 4, "block_config": [1, 1, 1, 1]}, seed=1).eval()
    fresh.load_state_dict(initial_weights(str(path), 0, shift=50.0, scale=10.0))
    assert fresh.class_layers.out.weight.dtype == torch.float32
    x = torch.randn(1, 1, 80, 120, 40)
    with torch.no_grad():
        years, standardised = model(x).item(), fresh(x).item()
    assert 50 + 10 * standardised == pytest.approx(years, abs=0.05)  # fp16 storage
    with pytest.raises(ConfigError, match="init_from"):
        TrainConfig.from_dict({"init_from": str(tmp_path / "missing.safetensors")})


def test_forward_arrays_mirror_is_the_mean_with_the_mirror_image():
    from BrainAgeTrainingLib.crossval.predictions import forward_arrays

    model = build_model({"init_features": 4, "growth_rate": 4, "block_config": [1, 1, 1, 1]}, seed=0).eval()
    rng = np.random.default_rng(0)
    arrays = [rng.random((80, 120, 40), dtype=np.float32) for _ in range(3)]
    plain = np.array(forward_arrays(model, arrays, batch=2))
    flipped = np.array(forward_arrays(model, [np.ascontiguousarray(a[::-1]) for a in arrays], batch=2))
    both = np.array(forward_arrays(model, arrays, batch=2, mirror=True))
    assert not np.allclose(plain, flipped)
    np.testing.assert_allclose(both, (plain + flipped) / 2, atol=1e-5)


def test_run_specs_name_the_folder_and_best_epochs_and_need_a_label_among_several():
    from BrainAgeTrainingLib.crossval.predictions import parse_run_spec

    assert parse_run_spec("rerun=runs/a=b:best") == ("rerun", Path("runs/a=b"), True)
    assert parse_run_spec("xxs=runs/ixi") == ("xxs", Path("runs/ixi"), False)
    assert parse_run_spec("runs/ixi", single=True) == ("", Path("runs/ixi"), False)
    with pytest.raises(ValueError, match="LABEL=RUN_DIR"):
        parse_run_spec("runs/ixi")
