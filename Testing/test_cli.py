"""The brainage command line, run as a user would."""

import json
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from BrainAgeLib.calibration import load_calibration
from BrainAgeLib.cli import main


def brainage(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "BrainAgeLib.cli", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def scans(tmp_path_factory, colin_brain_path, mni_brain_path):
    folder = tmp_path_factory.mktemp("scans")
    shutil.copy(colin_brain_path, folder / "sub-01_T1w.nii.gz")
    shutil.copy(mni_brain_path, folder / "sub-02_T1w.nii.gz")
    (folder / "sub-03_T1w.nii.gz").write_bytes(b"\x1f\x8b\x08 truncated")
    return folder


def test_predict_folder_records_the_bad_case_and_goes_on(scans, two_fold_package, tmp_path):
    ages = tmp_path / "ages.csv"
    pd.DataFrame({"participant_id": ["sub-01", "sub-02", "sub-03"], "age": [30, 60, 50]}).to_csv(ages, index=False)
    out = tmp_path / "results.csv"
    sal = tmp_path / "saliency"
    proc = brainage("predict", scans, "--model", two_fold_package, "--ages", ages, "--skull-strip", "none", "--out", out, "--saliency", sal)
    assert proc.returncode == 1, proc.stderr  # one case failed
    assert "FAILED" in proc.stderr and "sub-03" in proc.stderr
    table = pd.read_csv(out)
    assert len(table) == 3
    assert table["chronological_age"].tolist()[:2] == [30, 60]
    assert table["error"].isna().tolist() == [True, True, False]
    assert table.loc[2, "error"].startswith("CorruptFileError")
    for i, name in enumerate(["sub-01_T1w", "sub-02_T1w"]):
        saved = nib.load(str(sal / f"{name}_saliency.nii.gz"))
        source = nib.load(str(scans / f"{name}.nii.gz"))
        assert saved.shape == source.shape
        np.testing.assert_allclose(saved.affine, source.affine, atol=1e-5)
        assert 0 < table.loc[i, "saliency_inside_brain"] <= 1
        assert saved.header["descrip"].tobytes().startswith(b"brainage saliency integrated-gradients; mask none")  # the default
    # refuses to overwrite silently
    again = brainage("predict", scans / "sub-01_T1w.nii.gz", "--model", two_fold_package, "--skull-strip", "none", "--out", out)
    assert again.returncode == 2 and "exists" in again.stderr


def test_calibrate_from_a_predictions_table(tmp_path, two_fold_package):
    rng = np.random.default_rng(1)
    age = rng.uniform(20, 85, 60)
    table = pd.DataFrame({"chronological_age": age, "predicted_age": 0.7 * age + 14 + rng.normal(0, 2, 60), "cohort": "CU"})
    table.loc[:9, "cohort"] = "AD"
    table.to_csv(tmp_path / "pred.csv", index=False)
    out = tmp_path / "cal.json"
    assert main(["calibrate", str(tmp_path / "pred.csv"), "--out", str(out), "--method", "all", "--controls-column", "cohort", "--site", "X"]) == 0
    cal = load_calibration(out)
    assert cal.n_controls == 50 and cal.site == "X"
    assert cal.slope == pytest.approx(0.7, abs=0.05)
    package = shutil.copytree(two_fold_package, tmp_path / "pkg")
    assert main(["calibrate", str(tmp_path / "pred.csv"), "--out", str(tmp_path / "c2.json"), "--package", str(package)]) == 0
    from BrainAgeLib.package import load_package
    from BrainAgeLib.predict import Predictor

    stored = load_package(package).card.calibration  # checksums still verify
    assert stored["slope"] == pytest.approx(load_calibration(tmp_path / "c2.json").slope)
    assert Predictor(package, skull_strip="none").calibration.intercept == pytest.approx(stored["intercept"])


def test_calibrate_joins_a_participants_table_and_names_a_missing_group_column(tmp_path, capsys):
    """A `brainage predict` table has no cohort: --participants adds it (and the ages); without it, a clear error."""
    rng = np.random.default_rng(2)
    ids = [f"sub-{i:02d}" for i in range(40)]
    age = rng.uniform(20, 85, 40)
    predictions = pd.DataFrame({"source": [f"/data/{s}/anat/{s}_T1w.nii.gz" for s in ids],
                                "predicted_age": 0.6 * age + 20, "chronological_age": np.nan, "error": np.nan})
    predictions.to_csv(tmp_path / "results.csv", index=False)
    participants = pd.DataFrame({"participant_id": ids, "age": age, "cohort": ["AD"] * 8 + ["CU"] * 32})
    participants.to_csv(tmp_path / "participants.tsv", sep="\t", index=False)
    out = tmp_path / "site.json"
    args = ["calibrate", str(tmp_path / "results.csv"), "--out", str(out), "--method", "all", "--controls-column", "cohort"]
    assert main(args) == 2 and not out.exists()
    err = capsys.readouterr().err
    assert "--controls-column 'cohort'" in err and "no such column" in err and "--participants" in err
    assert main([*args, "--participants", str(tmp_path / "participants.tsv")]) == 0
    cal = load_calibration(out)
    assert cal.n_controls == 32 and cal.slope == pytest.approx(0.6) and cal.intercept == pytest.approx(20)
    assert main([*args, "--participants", str(tmp_path / "participants.tsv"), "--controls-value", "HC"]) == 2
    assert "no row has cohort = 'HC'" in capsys.readouterr().err


def test_info_verifies_and_reports_tampering(two_fold_package, tmp_path):
    proc = brainage("info", two_fold_package)
    assert proc.returncode == 0 and "untrained-test" in proc.stdout and "verified" in proc.stdout
    card = json.loads(brainage("info", two_fold_package, "--json").stdout)
    assert card["architecture"]["name"] == "densenet169-3d-no-last-transition"
    copy = shutil.copytree(two_fold_package, tmp_path / "tampered")
    (copy / "fold0.safetensors").write_bytes((copy / "fold0.safetensors").read_bytes()[:-4] + b"abcd")
    bad = brainage("info", copy)
    assert bad.returncode == 2 and "sha256" in bad.stderr


def test_demo_writes_the_model_ready_volume_and_a_picture(tmp_path):
    proc = brainage("demo", "--out", tmp_path, "--skull-strip", "none", "--no-model")
    assert proc.returncode == 0, proc.stderr
    assert "No model was used" in proc.stdout
    model_input = nib.load(str(tmp_path / "model_input.nii.gz"))
    assert model_input.shape == (80, 120, 40)
    np.testing.assert_allclose(np.abs(np.diag(model_input.affine))[:3], [2, 2, 2])
    png = (tmp_path / "qc.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000
