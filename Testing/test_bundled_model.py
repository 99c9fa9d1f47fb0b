"""The model bundled with the extension: found without torch, used when no model is named, small
enough to ship, and carrying its data credit, cross-validation results and limits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from BrainAgeLib.bundled_models import REGISTRY, bundled_entries, default_model_path
from conftest import IXI, needs_ixi

ROOT = Path(__file__).resolve().parents[1]


def _registry(tmp_path, models):
    path = tmp_path / "Models.json"
    path.write_text(json.dumps({"models": models}))
    return path


def test_default_is_the_bundled_entry_marked_default_and_needs_its_folder(tmp_path, two_fold_package, monkeypatch):
    monkeypatch.delenv("BRAINAGE_DEFAULT_MODEL", raising=False)
    registry = _registry(tmp_path, [
        {"name": "gone", "version": "1", "path": "missing-folder", "bundled": True, "default": True},
        {"name": "dl", "version": "1", "url": "https://example.org/m.zip", "sha256": "0" * 64},
        {"name": "real", "version": "1", "path": str(two_fold_package), "bundled": True},
    ])
    entries = bundled_entries(registry)
    assert [e["name"] for e in entries] == ["real"]  # the missing folder and the download are not bundled models
    assert default_model_path(registry) == two_fold_package.resolve()
    monkeypatch.setenv("BRAINAGE_DEFAULT_MODEL", str(tmp_path / "site-model"))
    assert default_model_path(registry) == tmp_path / "site-model"


def test_bundled_models_reads_json_only():
    """The Slicer panel lists models before torch is installed: this module must not import it."""
    code = ("import sys; sys.modules['torch'] = None; sys.modules['monai'] = None; "
            "import BrainAgeLib.bundled_models as b; print(len(b.bundled_entries()))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_download_registry_skips_bundled_entries(tmp_path):
    from BrainAgeLib.model_registry import read_registry

    registry = _registry(tmp_path, [{"name": "b", "version": "1", "path": "x", "bundled": True},
                                    {"name": "dl", "version": "1", "url": "https://example.org/m.zip", "sha256": "0" * 64}])
    assert [e.name for e in read_registry(registry)] == ["dl"]
    assert REGISTRY.name == "Models.json" and REGISTRY.is_file()


def test_the_bundled_model_is_small_credited_and_used_when_no_model_is_named(tmp_path):
    import pandas as pd

    from BrainAgeLib.package import load_package

    package = default_model_path()
    assert package is not None and package.parent.name == "Models"
    loaded = load_package(package)  # every checksum verified
    assert len(loaded.models) == 15  # three networks for each of the 5 folds
    assert sorted({f["metrics"]["cv_fold"] for f in loaded.card.folds}) == [0, 1, 2, 3, 4]
    assert loaded.card.test_time == {"mirror_average": True}
    assert all((package / f["file"]).stat().st_size <= 4 * 2 ** 20 for f in loaded.card.folds)
    data = loaded.card.training_data
    assert data["subjects"] == 181 and "CC BY-SA 3.0" in data["licence"] and "IXI" in data["credit"]
    assert loaded.card.skull_strip == {"backend": "hd-bet"} and not loaded.card.synthetic_demo
    assert {row["input"] for row in data["cross_validation"]} == {"clinical", "3d"}
    assert len(data["cross_validation_residuals"]) == 91 and "not a medical device" in loaded.card.intended_use
    brain = tmp_path / "brain.nii.gz"
    from BrainAgeLib.golden_inputs import golden_input
    from BrainAgeLib.io import save_nifti

    save_nifti(golden_input("colin27_brain_axial7mm"), brain)
    out = tmp_path / "r.csv"
    proc = subprocess.run([sys.executable, "-m", "BrainAgeLib.cli", "predict", str(brain), "--skull-strip", "none",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    row = pd.read_csv(out).iloc[0]
    assert "ixi-hh-densenet-ensemble" in row["model"] and "mirror-averaged" in row["model"]
    assert 18 <= row["predicted_age"] <= 95 and len(row["fold_ages"].split(";")) == 15


@needs_ixi
def test_the_bundled_package_reproduces_its_published_cross_validation_ages(tmp_path):
    """Two test subjects (folds 1 and 3) prepared from the real scans and their HD-BET masks: each slicing
    offset's age from the package's networks of that fold, mirror-averaged as its card says, is the age in
    the out-of-fold table the README and model card quote (docs/results/ixi/mirror/oof_predictions.csv)."""
    import numpy as np
    import pandas as pd
    import torch

    from BrainAgeLib.model import network_ages
    from BrainAgeLib.package import load_package
    from BrainAgeTrainingLib.cache import prepare_record
    from BrainAgeTrainingLib.datasets import load_datasets

    package = load_package(default_model_path())
    table = pd.read_csv(ROOT / "docs" / "results" / "ixi" / "mirror" / "oof_predictions.csv")
    table = table[(table["config"] == "xxs16+rerun+s16") & (table["input"] == "clinical") & (table["role"] == "test")]
    picked = {fold: table[table["fold"] == fold]["subject"].iloc[0] for fold in (1, 3)}
    records = {r.subject: r for r in load_datasets([IXI]).records}
    for fold, subject in picked.items():
        entry = prepare_record(records[subject], package.card.preprocess_spec, "auto", None, tmp_path / str(fold))
        assert entry["error"] is None and len(entry["samples"]) == 4
        networks = [m for m, f in zip(package.models, package.card.folds) if f["metrics"]["cv_fold"] == fold]
        assert len(networks) == 3
        for sample in entry["samples"]:
            x = torch.from_numpy(np.load(tmp_path / str(fold) / sample["file"]))[None, None]
            with torch.inference_mode():
                age = float(np.mean([network_ages(m, x, mirror=True).item() for m in networks]))
            published = table[(table["subject"] == subject) & (table["offset"] == sample["offset"])]["predicted_age"]
            assert len(published) == 1 and abs(age - float(published.iloc[0])) < 0.01, (subject, sample["offset"])
