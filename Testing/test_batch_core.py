"""BrainAge/Scripts/batch.py with the core engine (plain Python, no Slicer): --saliency writes the maps."""

from __future__ import annotations

import runpy
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from BrainAgeLib.io import save_nifti
from BrainAgeLib.model import ARCHITECTURE, build_model
from BrainAgeLib.package import ModelCard, save_package
from conftest import make_volume

BATCH = Path(__file__).resolve().parents[1] / "BrainAge" / "Scripts" / "batch.py"


def test_core_engine_writes_saliency_maps_on_each_scans_grid(tmp_path):
    config = {"init_features": 4, "growth_rate": 4, "block_config": [1, 1, 1, 1]}  # tiny: quick on a CPU
    card = ModelCard(name="tiny", version="0", skull_strip={"backend": "none"},
                     architecture={"name": ARCHITECTURE, "config": config})
    package = save_package(tmp_path / "pkg", [build_model(config, seed=0)], card)
    scan = tmp_path / "scans" / "sub-01_T1w.nii.gz"
    save_nifti(make_volume(), scan)
    out, maps = tmp_path / "results.csv", tmp_path / "saliency"
    batch = runpy.run_path(str(BATCH), run_name="batch")
    status = batch["run"](["--input", str(scan.parent), "--model", str(package), "--out", str(out),
                           "--skull-strip", "none", "--engine", "core", "--saliency", str(maps)])
    assert status == 0
    row = pd.read_csv(out).iloc[0]
    written = maps / "sub-01_T1w_saliency.nii.gz"
    assert row["saliency_path"] == str(written) and 0 < row["saliency_inside_brain"] <= 1
    saved, source = nib.load(str(written)), nib.load(str(scan))
    assert saved.shape == source.shape and np.allclose(saved.affine, source.affine)
    assert np.abs(np.asarray(saved.dataobj)).max() > 0
