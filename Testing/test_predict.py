"""Prediction: single, array, batch, ensemble statistics, calibration, precision."""

import math

import numpy as np
import pytest

from BrainAgeLib.calibration import Calibration
from BrainAgeLib.errors import OrientationError
from BrainAgeLib.io import Volume, load_volume, save_nifti
from BrainAgeLib.predict import Predictor


@pytest.fixture(scope="module")
def predictor(two_fold_package):
    return Predictor(two_fold_package, device="cpu", skull_strip="none")


def test_single_scan_result_is_consistent(predictor, colin_brain_path):
    r = predictor.predict_path(colin_brain_path, age=40.0)
    assert r.error is None and r.passed_qc
    assert len(r.fold_ages) == 2 and all(math.isfinite(a) for a in r.fold_ages)
    assert r.predicted_age == pytest.approx(np.mean(r.fold_ages))
    assert r.predicted_age_sd == pytest.approx(np.std(r.fold_ages, ddof=1))
    assert r.raw_gap == pytest.approx(r.predicted_age - 40.0)
    assert r.corrected_age is None and r.brain_age_gap is None  # no calibration in the card
    assert {"read", "skull_strip", "preprocess", "forward"} <= set(r.timings)
    again = predictor.predict_path(colin_brain_path, age=40.0)
    assert again.fold_ages == r.fold_ages  # deterministic


def test_array_input_equals_file_input(predictor, colin_brain_path):
    volume = load_volume(colin_brain_path)
    a = predictor.predict_array(volume.data, volume.affine)
    b = predictor.predict_path(colin_brain_path)
    assert a.fold_ages == pytest.approx(b.fold_ages, abs=1e-6)


def test_calibration_is_applied(two_fold_package, colin_brain_path):
    cal = Calibration(slope=0.6, intercept=20.0, method="all", n_controls=10, age_min=20, age_max=80)
    p = Predictor(two_fold_package, skull_strip="none", calibration=cal)
    r = p.predict_path(colin_brain_path, age=70.0)
    assert r.corrected_age == pytest.approx(r.predicted_age + 70.0 - (0.6 * 70.0 + 20.0))
    assert r.brain_age_gap == pytest.approx(r.corrected_age - 70.0)


def test_batch_equals_single_and_bad_cases_are_recorded(predictor, colin_brain_path, mni_brain_path, tmp_path):
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(b"\x1f\x8b garbage")
    colin = load_volume(colin_brain_path)
    affine = colin.affine.copy()
    affine[:3, 0] *= 6
    sagittal = tmp_path / "sagittal.nii.gz"
    save_nifti(Volume(colin.data[::6], affine), sagittal)
    results = predictor.predict_many(
        [colin_brain_path, corrupt, mni_brain_path, sagittal], [30.0, 40.0, None, 50.0], batch_size=2
    )
    assert [r.source for r in results] == [str(colin_brain_path), str(corrupt), str(mni_brain_path), str(sagittal)]
    assert results[1].error.startswith("CorruptFileError") and math.isnan(results[1].predicted_age)
    assert results[3].error.startswith("OrientationError")
    single = predictor.predict_path(mni_brain_path)
    assert results[2].fold_ages == pytest.approx(single.fold_ages, abs=1e-3)
    assert results[0].chronological_age == 30.0 and results[2].chronological_age is None
    with pytest.raises(OrientationError):
        predictor.predict_path(sagittal)


def test_channels_last_matches_fp32(two_fold_package, colin_brain_path):
    fp32 = Predictor(two_fold_package, skull_strip="none").predict_path(colin_brain_path)
    cl = Predictor(two_fold_package, skull_strip="none", channels_last=True).predict_path(colin_brain_path)
    assert np.max(np.abs(np.subtract(cl.fold_ages, fp32.fold_ages))) < 0.01
    with pytest.raises(ValueError, match="CUDA"):
        Predictor(two_fold_package, skull_strip="none", precision="amp", device="cpu")


def test_model_trained_with_other_skull_strip_is_flagged(two_fold_package, colin_brain_path):
    import json
    import shutil

    from BrainAgeLib.package import CARD_NAME

    copy = shutil.copytree(two_fold_package, two_fold_package.parent / "hdbet_trained")
    card = json.loads((copy / CARD_NAME).read_text())
    (copy / CARD_NAME).write_text(json.dumps({**card, "skull_strip": {"backend": "hd-bet"}}))
    r = Predictor(copy, skull_strip="none").predict_path(colin_brain_path)
    assert any("skull stripped with 'hd-bet'" in f for f in r.qc_flags)


@pytest.mark.slow  # bf16 is emulated on CPUs without AVX512-BF16/AMX: minutes on 2 cores
def test_bf16_stays_close_to_fp32(two_fold_package, colin_brain_path):
    fp32 = Predictor(two_fold_package, skull_strip="none").predict_path(colin_brain_path)
    bf16 = Predictor(two_fold_package, skull_strip="none", precision="bf16").predict_path(colin_brain_path)
    assert np.max(np.abs(np.subtract(bf16.fold_ages, fp32.fold_ages))) < 0.5
