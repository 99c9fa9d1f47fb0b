"""Held-out evaluation: site calibration on CU controls, gap statistics against scipy, cohort prediction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from BrainAgeLib.io import load_nifti, save_nifti
from BrainAgeLib.predict import Predictor
from BrainAgeTrainingLib.evaluation import cohort_statistics, gap_tests, predict_cohort, site_evaluation, split_controls
from BrainAgeTrainingLib.evaluation_figure import plot_evaluation


def biased_cohort(seed: int = 0, n_cu: int = 120, n_ad: int = 40, slope: float = 0.6) -> pd.DataFrame:
    """Predictions that regress to the mean (predicted = slope x biological age + c + noise); AD true gap 5 y."""
    rng = np.random.default_rng(seed)
    age = np.concatenate([rng.uniform(20, 88, n_cu), rng.uniform(60, 88, n_ad)])
    true_gap = np.concatenate([rng.normal(0, 1, n_cu), rng.normal(5, 1, n_ad)])
    bio = age + true_gap
    predicted = slope * bio + (1 - slope) * 54 + rng.normal(0, 1.0, len(age))
    return pd.DataFrame({"participant_id": [f"sub-{i:03d}" for i in range(len(age))], "age": age,
                         "biological_age": bio, "cohort": ["CU"] * n_cu + ["AD"] * n_ad, "predicted_age": predicted})


def test_site_calibration_removes_the_age_bias_and_recovers_the_gap():
    frame = biased_cohort()
    ev = site_evaluation(frame, method="all")
    assert ev["calibration"]["slope"] == pytest.approx(0.6, abs=0.05)
    assert ev["calibration"]["n_controls"] == 60  # half of the 120 CU subjects
    assert ev["cu_raw"]["mae"] > 5.0 and ev["cu_corrected"]["mae"] < 1.5
    assert abs(ev["cu_corrected"]["bias"]) < 0.5
    # y' - x = slope x true gap: the corrected gap is the true gap shrunk by the slope
    assert ev["gap_by_cohort"]["AD"]["mean"] == pytest.approx(0.6 * 5, abs=0.5)
    assert ev["gap_by_cohort"]["CU"]["mean"] == pytest.approx(0.0, abs=0.4)
    assert ev["gap_by_cohort"]["CU"]["n"] == 60 and ev["gap_by_cohort"]["AD"]["n"] == 40
    assert ev["gap_vs_true_gap_r"] > 0.8
    (ad_vs_cu,) = ev["gap_tests"]
    assert ad_vs_cu["cohort"] == "AD" and ad_vs_cu["p_z"] < 1e-6
    assert set(frame["role"]) == {"calibration", "evaluation"}
    assert (frame.loc[frame["cohort"] == "AD", "role"] == "evaluation").all()


def test_extremes_calibration_uses_the_youngest_and_oldest_controls():
    frame = biased_cohort(seed=1)
    ev = site_evaluation(frame, method="extremes")
    calib_ages = np.sort(frame.loc[frame["role"] == "calibration", "age"].to_numpy())
    assert ev["calibration"]["n_controls"] == 6  # ceil(5 % of 60) = 3 at each end
    assert ev["calibration"]["age_min"] == pytest.approx(calib_ages[0])
    assert ev["calibration"]["age_max"] == pytest.approx(calib_ages[-1])


def test_gap_tests_match_the_textbook_z_test_and_scipys_welch_test():
    rng = np.random.default_rng(3)
    ad, cu = rng.normal(3.0, 2.5, 25), rng.normal(0.2, 1.5, 70)
    gap = pd.Series(np.concatenate([ad, cu]))
    cohort = pd.Series(["AD"] * 25 + ["CU"] * 70)
    (row,) = gap_tests(gap, cohort)
    z = (ad.mean() - cu.mean()) / np.sqrt(ad.var(ddof=1) / 25 + cu.var(ddof=1) / 70)
    assert row["z"] == pytest.approx(z, rel=1e-9)
    assert row["p_z"] == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)
    welch = stats.ttest_ind(ad, cu, equal_var=False)
    assert row["t_welch"] == pytest.approx(welch.statistic, rel=1e-9)
    assert row["p_welch"] == pytest.approx(welch.pvalue, rel=1e-6)


def test_cohort_statistics_match_statsmodels_and_scipy():
    """Welch's ANOVA vs statsmodels, Games-Howell vs the studentized range by hand, gap-MMSE r vs scipy."""
    from statsmodels.stats.oneway import anova_oneway

    rng = np.random.default_rng(5)
    groups = {"CU": rng.normal(0.0, 1.5, 40), "MCI": rng.normal(1.5, 2.5, 25), "AD": rng.normal(3.0, 3.0, 20)}
    frame = pd.DataFrame({"gap": np.concatenate(list(groups.values())),
                          "cohort": np.repeat(list(groups), [len(v) for v in groups.values()])})
    frame["mmse"] = np.clip(np.round(29 - 0.8 * frame["gap"] + rng.normal(0, 1, len(frame))), 0, 30)
    result = cohort_statistics(frame)
    reference = anova_oneway([groups[k] for k in ("AD", "CU", "MCI")], use_var="unequal", welch_correction=True)
    assert result["welch_anova"]["F"] == pytest.approx(reference.statistic, rel=1e-6)
    assert result["welch_anova"]["p"] == pytest.approx(reference.pvalue, rel=1e-6)
    pairs = {(r["a"], r["b"]): r for r in result["games_howell"]}
    assert len(pairs) == 3
    a, b = groups["AD"], groups["CU"]
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    t = (a.mean() - b.mean()) / np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    assert pairs[("AD", "CU")]["diff"] == pytest.approx(a.mean() - b.mean(), rel=1e-9)
    assert pairs[("AD", "CU")]["p"] == pytest.approx(stats.studentized_range.sf(abs(t) * np.sqrt(2), 3, df), rel=1e-3)
    r, p = stats.pearsonr(frame["gap"], frame["mmse"])
    assert result["gap_vs_mmse"]["r"] == pytest.approx(r, rel=1e-9) and result["gap_vs_mmse"]["r"] < -0.5
    assert result["gap_vs_mmse"]["p"] == pytest.approx(p, rel=1e-6) and result["gap_vs_mmse"]["n"] == len(frame)


def test_split_controls_spreads_over_age_and_takes_only_controls():
    frame = biased_cohort(seed=2, n_cu=40, n_ad=10)
    chosen = split_controls(frame, fraction=0.5, seed=0)
    assert chosen.sum() == 20
    assert (frame.loc[chosen, "cohort"] == "CU").all()
    ages = np.sort(frame.loc[frame["cohort"] == "CU", "age"].to_numpy())
    picked = np.sort(frame.loc[chosen, "age"].to_numpy())
    assert picked[0] <= ages[1] and picked[-1] >= ages[-2]  # one from each end's age block


@pytest.fixture(scope="module")
def masked_cohort(tmp_path_factory, colin_brain_path):
    """A BIDS folder of 3 subjects (real Colin27 head region + brain mask on a 2 mm grid), one without its mask."""
    from BrainAgeLib.preprocess import resample_to_spacing
    from BrainAgeLib.spec import PreprocessSpec

    brain = resample_to_spacing(load_nifti(colin_brain_path), PreprocessSpec())
    root = tmp_path_factory.mktemp("heldout")
    rows = []
    for i, gain in enumerate((1.0, 1.3, 0.8)):
        sub = f"sub-{i:02d}"
        anat = root / sub / "anat"
        head = brain.with_data((brain.data * gain + 40 * (brain.data <= 0)).astype(np.float32))  # bright 'outside'
        save_nifti(head, anat / f"{sub}_T1w.nii.gz")
        if i != 2:
            save_nifti(brain.with_data((brain.data > 0).astype(np.uint8)), anat / f"{sub}_brainmask.nii.gz")
        rows.append(f"{sub}\t{40 + 10 * i}\tCU")
    (root / "participants.tsv").write_text("participant_id\tage\tcohort\n" + "\n".join(rows) + "\n")
    return root, brain


def test_predict_cohort_applies_masks_and_records_failures(masked_cohort, two_fold_package):
    root, brain = masked_cohort
    frame = predict_cohort(two_fold_package, root, progress=False)
    assert list(frame["participant_id"]) == ["sub-00", "sub-01", "sub-02"]
    assert frame.loc[2, "error"].startswith("CorruptFileError") and "sub-02_brainmask" in frame.loc[2, "error"]
    assert np.isnan(frame.loc[2, "predicted_age"])
    # the masked scan gives the same age as predicting the brain itself (gain 1.0)
    expected = Predictor(two_fold_package, skull_strip="none").predict_volume(brain, 40.0).predicted_age
    assert frame.loc[0, "predicted_age"] == pytest.approx(expected, abs=1e-3)
    assert np.isfinite(frame.loc[1, "predicted_age"])
    assert frame["card_corrected_age"].isna().all()  # this package's card holds no calibration


def test_evaluation_figure_is_written(tmp_path):
    frame = biased_cohort(seed=4, n_cu=30, n_ad=10)
    site_evaluation(frame, method="all")
    history = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [400.0, 100.0, 50.0], "val_mae": [15.0, 8.0, 6.0]})
    research = frame[["age", "predicted_age"]]
    path = plot_evaluation(frame, history, tmp_path / "fig.png", research, title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
