"""Slicer-free helpers behind the module: DICOM age, model registry and cache, panel summary."""

import hashlib
import shutil
import zipfile

import pytest

from BrainAgeLib.dicom_age import age_from_dates, dicom_age, parse_patient_age
from BrainAgeLib.errors import ChecksumError, ModelPackageError
from BrainAgeLib.model_registry import RegistryEntry, download_model, import_package, installed_models, read_registry
from BrainAgeLib.predict import PredictionResult
from BrainAgeLib.summary import summary_rows, summary_text


@pytest.mark.parametrize("value, years", [("064Y", 64.0), ("006M", 0.5), ("052W", 52 * 7 / 365.25), ("003D", 3 / 365.25), (" 71Y", 71.0)])
def test_patient_age_strings(value, years):
    assert parse_patient_age(value) == pytest.approx(years)


def test_age_from_dates_wins_and_bad_values_are_none():
    assert age_from_dates("19600301", "20240301") == pytest.approx(64.0, abs=0.01)
    assert dicom_age("070Y", "19600301", "20240301") == pytest.approx(64.0, abs=0.01)
    assert dicom_age("070Y", None, None) == 70.0
    assert parse_patient_age("seventy") is None and parse_patient_age("") is None
    assert age_from_dates("20240301", "19600301") is None


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINAGE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _zip(folder, target):
    with zipfile.ZipFile(target, "w") as zf:
        for path in folder.iterdir():
            zf.write(path, f"pkg/{path.name}")
    return target


def test_download_verifies_and_caches(cache, two_fold_package, tmp_path):
    archive = _zip(two_fold_package, tmp_path / "model.zip")
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    entry = RegistryEntry(name="untrained-test", version="0.0", url=archive.as_uri(), sha256=sha)
    seen = []
    path = download_model(entry, progress=lambda done, total: seen.append(done))
    assert (path / "model_card.json").is_file() and seen[-1] == archive.stat().st_size
    assert installed_models() == [path]
    assert download_model(entry) == path  # cached: no second download
    bad = RegistryEntry(name="other", version="1", url=archive.as_uri(), sha256="0" * 64)
    with pytest.raises(ChecksumError):
        download_model(bad)
    assert installed_models() == [path]


def test_import_refuses_a_tampered_package(cache, two_fold_package, tmp_path):
    path = import_package(two_fold_package)
    assert path.parent == cache / "models" and (path / "fold1.safetensors").is_file()
    copy = shutil.copytree(two_fold_package, tmp_path / "tampered")
    (copy / "fold0.safetensors").write_bytes(b"\x80\x04 pickle")
    with pytest.raises(ModelPackageError):
        import_package(copy)


def test_shipped_registry_parses():
    from pathlib import Path

    entries = read_registry(Path(__file__).resolve().parents[1] / "BrainAge" / "Resources" / "Models.json")
    assert all(len(e.sha256) == 64 and e.url for e in entries)


def test_summary_of_a_result():
    result = PredictionResult(source="x", fold_ages=[70.0, 72.0], predicted_age=71.0, predicted_age_sd=1.41, chronological_age=65.0,
                              corrected_age=68.5, brain_age_gap=3.5, raw_gap=6.0, passed_qc=True, qc_flags=["check"],
                              background_fraction=0.6, skull_strip="hd-bet 1.1", model="m 1 (2 folds)")
    rows = dict(summary_rows(result))
    assert rows["Brain age gap"] == "3.5 y" and rows["Bias-corrected age"] == "68.5 y"
    assert rows["QC"] == "passed with warnings"
    text = summary_text(result)
    assert "+3.5 y" in text and "Warning: check" in text
    assert summary_text(PredictionResult(source="y", error="CorruptFileError: bad")).startswith("Failed")
