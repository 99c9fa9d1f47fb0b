"""The one-page case report: reference placement against scipy, one PDF page with the expected text, --report."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from BrainAgeLib.calibration import Calibration
from BrainAgeLib.cli import main
from BrainAgeLib.io import load_nifti
from BrainAgeLib.package import read_card
from BrainAgeLib.predict import Predictor
from BrainAgeLib.reports import write_case_report
from BrainAgeLib.reports.case_page import ordinal
from BrainAgeLib.reports.reference import cv_error, reference_from_card
from report_tools import tiny_package, tool


def residual_rows(seed: int = 0, n: int = 120) -> list[dict]:
    rng = np.random.default_rng(seed)
    ages = rng.uniform(20, 82, n)
    return [{"subject": f"sub-{i:03d}", "age": float(a), "predicted_age": float(0.7 * a + 16 + rng.normal(0, 4)),
             "corrected_age": float(a + rng.normal(0, 4))} for i, a in enumerate(ages)]


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    training = {"cross_validation_residuals": residual_rows(),
                "cross_validation": [{"input": "3d", "raw": {"mae": 9.0}},
                                     {"input": "clinical", "raw": {"mae": 5.5, "rmse": 7.0}, "corrected": {"mae": 4.1, "rmse": 5.2}}]}
    return tiny_package(tmp_path_factory.mktemp("pkg") / "model", training_data=training,
                        intended_use="Research use only; not a medical device. Adults 20-82 y.")


@pytest.fixture(scope="module")
def predicted(package, colin_brain_path):
    calibration = Calibration(slope=0.8, intercept=11.0, method="extremes", n_controls=12, age_min=21, age_max=80, site="site A")
    predictor = Predictor(package, skull_strip="none", calibration=calibration, device="cpu")
    case = predictor.prepare_volume(load_nifti(colin_brain_path))
    result = predictor.predict_case(case, 64.0)
    return predictor, case, result


def test_reference_places_the_gap_among_neighbours_like_scipy():
    rows = residual_rows()
    reference = reference_from_card({"cross_validation_residuals": rows}, corrected=True)
    ages = np.array([r["age"] for r in rows])
    residuals = np.array([r["corrected_age"] - r["age"] for r in rows])
    assert reference.corrected and np.allclose(reference.residual, residuals)
    pct, n, lo, hi = reference.percentile(3.0, 60.0)
    near = np.abs(ages - 60.0) <= 10
    assert n == near.sum() >= 20
    assert pct == pytest.approx(stats.percentileofscore(residuals[near], 3.0, kind="mean"))
    assert (lo, hi) == (pytest.approx(ages[near].min()), pytest.approx(ages[near].max()))
    assert reference.mae == pytest.approx(np.mean(np.abs(residuals)))
    sparse = reference.percentile(0.0, 120.0)  # no one within 10 y: the 20 nearest
    assert sparse[1] == 20 and sparse[2] == pytest.approx(np.sort(ages)[-20])
    raw = reference_from_card({"cross_validation_residuals": rows}, corrected=False)
    assert not raw.corrected and np.allclose(raw.residual, [r["predicted_age"] - r["age"] for r in rows])
    assert reference_from_card({}, corrected=True) is None
    error = cv_error({"cross_validation": [{"input": "3d", "raw": {"mae": 9.0}},
                                           {"input": "clinical", "raw": {"mae": 5.5}, "corrected": {"mae": 4.1, "rmse": 5.2}}]}, True)
    assert error["mae"] == 4.1 and error["input"] == "clinical" and error["corrected"]


def pdf_text(path) -> str:
    return subprocess.run([tool("pdftotext"), "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


def test_case_report_is_one_page_with_the_expected_text(predicted, package, tmp_path):
    predictor, case, result = predicted
    saliency = np.zeros(case.volume.shape, np.float32)
    saliency[60:100, 80:120, 60:90] = 1.0
    paths = write_case_report(tmp_path / "out", result, case.volume, case.brain_mask, card=read_card(package),
                              saliency=case.volume.with_data(saliency), saliency_method="guided-backprop")
    assert paths["pdf"].name == "colin27_brain_report.pdf" and paths["png"].name == "colin27_brain_report.png"
    info = subprocess.run([tool("pdfinfo"), str(paths["pdf"])], capture_output=True, text=True, check=True).stdout
    assert re.search(r"^Pages:\s+1$", info, re.M)
    subprocess.run([tool("pdftoppm"), "-r", "40", "-png", str(paths["pdf"]), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page*.png"))
    assert len(pages) == 1
    import matplotlib.image as mpimg

    assert mpimg.imread(pages[0]).std() > 0.1  # not blank
    text = " ".join(pdf_text(paths["pdf"]).split())
    gap = result.brain_age_gap
    for expected in ("Brain age report", "scan: colin27_brain.nii.gz", "Chronological age: 64.0 y",
                     f"BRAIN AGE GAP: {gap:+.1f} y (bias-corrected)", f"± {result.predicted_age_sd:.1f} y",
                     "(SD over 2 networks)", "MAE", "among the model's cross-validation residuals",
                     "reference subjects aged", "Quality control: passed", "Skull strip: none", "Model: tiny-test 0.1",
                     "Intended use: Research use only; not a medical device. Adults 20-82 y.",
                     "saliency (guided-backprop)"):
        assert expected in text, expected
    reference = reference_from_card(read_card(package).training_data, corrected=True)
    assert f"MAE {reference.mae:.1f} y, RMSE {reference.rmse:.1f} y" in text
    pct = reference.percentile(gap, 64.0)[0]
    assert f"at the {ordinal(round(pct))} percentile" in text
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 60, 100)] == \
        ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "60th", "100th"]
    assert str(tmp_path) not in text and "/" not in text.split("scan: ")[1].split()[0]  # no folders on the page


def test_report_without_reference_says_so(predicted, tmp_path, two_fold_package):
    _, case, result = predicted
    paths = write_case_report(tmp_path, result, case.volume, case.brain_mask, card=read_card(two_fold_package))
    text = " ".join(pdf_text(paths["pdf"]).split())
    assert "Reference distribution: not available" in text and "holds no cross-validation residuals" in text
    assert "cross-validated error: not recorded" in text and "saliency not computed" in text
    with pytest.raises(FileExistsError):
        write_case_report(tmp_path, result, case.volume, case.brain_mask, overwrite=False)


def test_brainage_predict_report(package, colin_brain_path, tmp_path):
    out, reports = tmp_path / "ages.csv", tmp_path / "reports"
    assert main(["predict", str(colin_brain_path), "--model", str(package), "--skull-strip", "none", "--age", "64",
                 "--report", str(reports), "--out", str(out)]) == 0
    row = pd.read_csv(out).iloc[0]
    assert row["report_path"] == str(reports / "colin27_brain_report.pdf")
    assert (reports / "colin27_brain_report.png").stat().st_size > 50_000
    text = " ".join(pdf_text(reports / "colin27_brain_report.pdf").split())
    assert f"Predicted brain age (raw): {row['predicted_age']:.1f} y" in text and "saliency (integrated-gradients)" in text  # the default method
    assert "uncorrected: no site calibration" in text  # no --calibration and none in the card
