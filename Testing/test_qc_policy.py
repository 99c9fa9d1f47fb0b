"""Issue 13: a scan failing a hard QC rule gets no age, in every entry point, unless the caller opts in."""

import csv
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from BrainAgeLib import qc_policy
from BrainAgeLib.io import Volume, load_volume, save_nifti, to_canonical
from BrainAgeLib.predict import Predictor
from BrainAgeLib.skullstrip.qc import mask_qc

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def top_slices_path(tmp_path_factory, colin_brain_path):
    """A real brain of which only the top 3 axial 1 mm slices hold anything (the issue's 66-year case)."""
    brain = to_canonical(load_volume(colin_brain_path))
    data = np.array(brain.data)
    top = int(np.flatnonzero(data.any(axis=(0, 1)))[-1])
    data[:, :, : top - 2] = 0
    path = tmp_path_factory.mktemp("qc") / "top3.nii.gz"
    save_nifti(Volume(data, brain.affine), path)
    return path


def test_every_flag_the_pipeline_writes_has_a_rule():
    for code in ("background", "mask-empty", "mask-tiny", "field-of-view"):
        assert qc_policy.QC_RULES[code].severity == qc_policy.FAIL
    assert qc_policy.hard_failures(["mask-edge: x", "background: y", "no code here: z"]) == ["background: y"]
    with pytest.raises(KeyError):
        qc_policy.qc_flag("not-a-rule", "text")
    table = qc_policy.markdown_table()
    assert all(f"`{code}`" in table for code in qc_policy.QC_RULES)
    readme = (ROOT / "README.md").read_text()
    assert table in readme, "README's QC table is qc_policy.markdown_table(); paste it again"


def test_a_tiny_mask_is_a_hard_failure_and_an_odd_volume_a_warning(colin_brain):
    mask = colin_brain.with_data((colin_brain.data > 0).astype(np.uint8))
    assert mask_qc(mask).passed
    small = np.zeros_like(mask.data)
    small[80:100, 100:120, 100:110] = 1  # 4 mL
    flags = mask_qc(mask.with_data(small)).flags
    assert [qc_policy.flag_code(f) for f in flags] == ["mask-tiny"] and qc_policy.hard_failures(flags) == list(flags)
    big = mask.data.copy()
    big[:, :, :] = 0
    big[20:160, 20:200, 20:140] = 1  # 3 L, touching nothing
    flags = mask_qc(mask.with_data(big)).flags
    assert [qc_policy.flag_code(f) for f in flags] == ["mask-volume"] and qc_policy.hard_failures(flags) == []


def test_failed_qc_gives_no_age_and_keep_gives_marked_ages(two_fold_package, top_slices_path, colin_brain_path):
    refused = Predictor(two_fold_package, skull_strip="none").predict_path(top_slices_path, age=60.0)
    assert refused.error.startswith("failed QC: background: ") and not refused.passed_qc
    assert refused.fold_ages == [] and math.isnan(refused.predicted_age) and refused.raw_gap is None
    assert refused.age_flag == "" and refused.background_fraction > 0.92
    kept = Predictor(two_fold_package, skull_strip="none", keep_failed_qc=True).predict_path(top_slices_path, age=60.0)
    assert kept.error is None and not kept.passed_qc and kept.age_flag == qc_policy.KEPT_MARK
    assert len(kept.fold_ages) == 2 and math.isfinite(kept.predicted_age) and kept.raw_gap is not None
    # the batch path refuses the same way, and a good scan next to it is unaffected
    rows = Predictor(two_fold_package, skull_strip="none").predict_many([top_slices_path, colin_brain_path])
    assert rows[0].error == refused.error and rows[1].error is None and rows[1].passed_qc


def test_cli_and_batch_script_refuse_by_default(two_fold_package, top_slices_path, colin_brain_path, tmp_path):
    def predict(*extra):
        out = tmp_path / f"out{len(extra)}.csv"
        cmd = [sys.executable, "-m", "BrainAgeLib.cli", "predict", str(top_slices_path), str(colin_brain_path),
               "--model", str(two_fold_package), "--skull-strip", "none", "--out", str(out), *extra]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        return done, list(csv.DictReader(out.open()))

    done, rows = predict()
    assert done.returncode == 1, done.stderr  # some case failed
    assert rows[0]["error"].startswith("failed QC: background") and rows[0]["predicted_age"] in ("", "nan")
    assert rows[1]["error"] == "" and float(rows[1]["predicted_age"]) > 0
    done, rows = predict("--keep-failed-qc")
    assert rows[0]["age_flag"] == qc_policy.KEPT_MARK and float(rows[0]["predicted_age"]) > 0
    out = tmp_path / "batch.csv"
    batch = subprocess.run([sys.executable, str(ROOT / "BrainAge" / "Scripts" / "batch.py"), "--input", str(top_slices_path),
                            "--model", str(two_fold_package), "--skull-strip", "none", "--out", str(out)],
                           capture_output=True, text=True, timeout=600)
    assert batch.returncode == 1, batch.stderr
    assert next(csv.DictReader(out.open()))["error"].startswith("failed QC: background")


def test_slicer_logic_refuses_too(two_fold_package, top_slices_path):
    pytest.importorskip("slicer_core", reason="slicer-core is installed by `make test` (scripts/setup.sh)")
    import slicer_env

    slicer_env.new_scene()
    import BrainAge

    node = slicer_env.load_volume_node(top_slices_path, "top3")
    logic = BrainAge.BrainAgeLogic()
    outputs = logic.process(node, str(two_fold_package), skullStrip="none", saliencyMethod="guided-backprop")
    assert outputs.result.error.startswith("failed QC: background") and outputs.result.fold_ages == []
    assert outputs.saliency is None and outputs.segmentation is not None  # the mask shows why
    assert outputs.summary.startswith("Failed: failed QC")
    kept = logic.process(node, str(two_fold_package), skullStrip="none", saliencyMethod=None, keepFailedQC=True)
    assert kept.result.age_flag == qc_policy.KEPT_MARK and kept.summary.startswith("WARNING: failed QC")
