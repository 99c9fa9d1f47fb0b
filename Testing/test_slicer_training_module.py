"""The BrainAgeTraining module's Logic (Slicer stand-in base classes, real subprocess): its own test, cancel."""

import os
import time

import pytest

pytest.importorskip("slicer_core", reason="slicer-core is installed by `make test` (scripts/setup.sh)")

import slicer_env  # noqa: E402  (must come before `import slicer`)

from BrainAgeTrainingLib.training_process import child_env, library_paths  # noqa: E402


@pytest.fixture()
def module():
    slicer_env.new_scene()
    import BrainAgeTraining

    return BrainAgeTraining


def test_the_modules_own_test_trains_and_exports_through_the_logic(module):
    """BrainAgeTrainingTest.runTest (what `Slicer --testing` runs): a tiny 2-fold run through the Logic."""
    test = module.BrainAgeTrainingTest("test_BrainAgeTraining_tiny_run")
    test.runTest()


def test_logic_streams_the_log_and_cancels(module, tmp_path):
    from BrainAgeLib.io import Volume, save_nifti
    import numpy as np

    rows = ["participant_id\tage"]
    for index in range(4):
        data = np.zeros((75, 90, 65), np.float32)
        data[8:67, 10:80, 6:60] = 80.0 + index
        save_nifti(Volume(data, np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / f"sub-{index}" / "anat" / f"sub-{index}_T1w.nii.gz")
        rows.append(f"sub-{index}\t{30 + 10 * index}")
    (tmp_path / "participants.tsv").write_text("\n".join(rows) + "\n")
    logic = module.BrainAgeTrainingLogic()
    lines = []
    logic.logCallback = lines.append
    config = tmp_path / "config.json"
    config.write_text('{"epochs": 50, "n_folds": 2, "skull_strip": "none", "max_offsets": 1}')  # the paper's network: long on CPU
    logic.train([tmp_path], tmp_path / "run", configPath=config)
    with pytest.raises(RuntimeError, match="already in progress"):
        logic.train([tmp_path], tmp_path / "run2")
    deadline = time.monotonic() + 240
    while logic.isRunning() and not any("fold 0:" in line for line in lines) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert logic.isRunning(), "\n".join(lines)
    logic.cancel()
    assert not logic.isRunning()
    assert any("cancelled" in line for line in lines)
    assert (tmp_path / "run" / "config.json").is_file() and not (tmp_path / "run" / "model").exists()


def test_child_gets_the_library_folders_on_pythonpath(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    paths = child_env()["PYTHONPATH"].split(os.pathsep)
    assert paths[: len(library_paths())] == library_paths() and paths[-1] == "/elsewhere"
    assert {os.path.basename(p) for p in library_paths()} == {"BrainAge", "BrainAgeTraining"}
