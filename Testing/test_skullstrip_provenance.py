"""Which brains a model was trained on is recorded (tool, or the data set's true masks), and only a real
mismatch with the prediction's skull stripper is flagged."""

from __future__ import annotations

import json

import numpy as np
import pytest

from BrainAgeLib.io import Volume, save_nifti
from BrainAgeLib.model import ARCHITECTURE, build_model
from BrainAgeLib.package import ModelCard, save_package
from BrainAgeLib.predict import Predictor
from BrainAgeLib.skullstrip import skull_strip_mismatch
from BrainAgeTrainingLib.cache import skull_strip_label
from BrainAgeTrainingLib.datasets import discover_bids, read_manifest
from conftest import make_volume


@pytest.mark.parametrize("trained, used, flagged", [
    ("hd-bet", "hd-bet", False), ("hd-bet", "none", True), ("hd-bet", "deepbet", True),
    ("reference", "hd-bet", False), ("reference", "deepbet", False), ("reference", "none", True),
    ("mask", "none", False), ("", "deepbet", False), (None, "none", False),
    ("hd-bet,reference", "deepbet", False), ("hd-bet,none", "deepbet", True),
])
def test_mismatch_rule(trained, used, flagged):
    assert skull_strip_mismatch(trained, used) is flagged


def _bids(root, generated_by: str | None):
    vol = Volume(np.ones((12, 12, 12), np.float32), np.diag([2.0, 2, 2, 1]))
    save_nifti(vol, root / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    save_nifti(vol, root / "sub-01" / "anat" / "sub-01_brainmask.nii.gz", dtype="uint8")
    (root / "participants.tsv").write_text("participant_id\tage\nsub-01\t30\n")
    if generated_by:
        (root / "dataset_description.json").write_text(json.dumps({"GeneratedBy": [{"Name": generated_by}]}))
    return discover_bids(root).records[0]


def test_masks_of_a_synthetic_cohort_are_recorded_as_reference_others_as_unknown(tmp_path):
    synth = _bids(tmp_path / "synth", "brainage synth")  # the name brainage synth writes
    assert synth.mask and synth.mask_backend == "reference"
    assert skull_strip_label(synth, "auto") == skull_strip_label(synth, "mask") == "reference"
    assert skull_strip_label(synth, "hd-bet") == "hd-bet"  # the data set's masks not used
    plain = _bids(tmp_path / "plain", None)
    assert plain.mask and plain.mask_backend == "" and skull_strip_label(plain, "auto") == "mask"
    converted = _bids(tmp_path / "converted", "dcm2niix")  # a converter made the data set, not its masks
    assert skull_strip_label(converted, "auto") == "mask"


def test_a_manifest_names_the_tool_of_its_masks(tmp_path):
    vol = Volume(np.ones((12, 12, 12), np.float32), np.diag([2.0, 2, 2, 1]))
    save_nifti(vol, tmp_path / "a.nii.gz")
    save_nifti(vol, tmp_path / "a_mask.nii.gz", dtype="uint8")
    (tmp_path / "list.csv").write_text("path,age,mask,mask_backend\na.nii.gz,40,a_mask.nii.gz,HD-BET\n")
    record = read_manifest(tmp_path / "list.csv").records[0]
    assert skull_strip_label(record, "auto") == "hd-bet"


def test_predictor_flags_only_a_real_mismatch(tmp_path):
    config = {"init_features": 4, "growth_rate": 4, "block_config": [1, 1, 1, 1]}  # tiny: loads in a blink
    card = ModelCard(name="tiny", version="0", architecture={"name": ARCHITECTURE, "config": config})
    predictor = Predictor(save_package(tmp_path / "pkg", [build_model(config, seed=0)], card), skull_strip="none")
    volume = make_volume()
    for trained, flagged in (("reference", True), ("mask", False)):
        predictor.package.card.skull_strip = {"backend": trained}
        case = predictor.prepare_volume(volume)
        assert any(f"skull stripped with '{trained}'" in w for w in case.warnings) is flagged, (trained, case.warnings)
