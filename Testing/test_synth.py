"""Synthetic ageing cohorts: determinism, ageing measured on the images, cohorts, geometry, QC.

Volumes are measured on the generated files: ventricles from the written label map
(``dseg`` label 4, the template's ventricles carried through the ageing warp and the
pose), CSF and grey matter by a 3-class intensity fit (k-means) of the T1w image inside
the written brain mask; all as fractions of the brain-mask volume (head size varies).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from BrainAgeLib.io import load_nifti, validate_volume
from BrainAgeTrainingLib.synth.anatomy import HEAD_SOURCES, sample_data_dir
from BrainAgeTrainingLib.synth.cohort import CohortSpec, ensure_cohort, write_cohort

pytestmark = pytest.mark.skipif(
    not all((sample_data_dir() / s.head_file).is_file() for s in HEAD_SOURCES.values()),
    reason="sample heads missing: run scripts/fetch_sample_data.sh",
)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _kmeans3(x: np.ndarray, iterations: int = 30) -> np.ndarray:
    """1D k-means with 3 centres (CSF < GM < WM); returns labels 0, 1, 2."""
    c = np.percentile(x, [10, 50, 90]).astype(float)
    for _ in range(iterations):
        lab = np.argmin(np.abs(x[:, None] - c[None]), axis=1)
        c = np.array([x[lab == k].mean() if np.any(lab == k) else c[k] for k in range(3)])
    return np.argmin(np.abs(x[:, None] - c[None]), axis=1)


def _measure(root: Path, pid: str) -> dict[str, float]:
    stem = root / pid / "anat" / pid
    t1 = nib.load(f"{stem}_T1w.nii.gz").get_fdata()
    mask = nib.load(f"{stem}_brainmask.nii.gz").get_fdata() > 0.5
    dseg = np.asarray(nib.load(f"{stem}_dseg.nii.gz").dataobj)
    lab = _kmeans3(t1[mask])
    n = mask.sum()
    return {"ventricles": float((dseg == 4).sum() / n), "csf": float((lab == 0).mean()),
            "gm": float((lab == 1).mean()), "gm_label": float((dseg == 2).sum() / n)}


AGEING_SPEC = CohortSpec(subjects=8, seed=11, cohorts=("CU",), styles=("research3d",), heads=("mni152",),
                         age_range=(20.0, 88.0), sites=("site-01",))


@pytest.fixture(scope="module")
def ageing_cohort(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("ageing")
    table = write_cohort(AGEING_SPEC, out, jobs=1, progress=False)
    return out, table


def test_ensure_cohort_reuses_the_same_spec_and_refuses_another(ageing_cohort):
    out, _ = ageing_cohort
    before = _files(out)
    assert ensure_cohort(AGEING_SPEC, out, jobs=1, progress=False) == out
    assert _files(out) == before  # nothing generated again
    with pytest.raises(FileExistsError, match="other settings"):
        ensure_cohort(replace(AGEING_SPEC, seed=12), out, jobs=1, progress=False)


def test_cohort_masks_are_recorded_as_reference_brains_that_hd_bet_matches(ageing_cohort):
    """A model trained on a cohort's own masks records them as 'reference', which HD-BET predictions match."""
    from BrainAgeLib.skullstrip import skull_strip_mismatch
    from BrainAgeTrainingLib.cache import skull_strip_label
    from BrainAgeTrainingLib.datasets import discover_bids

    out, table = ageing_cohort
    records = discover_bids(out).records
    assert len(records) == len(table) and all(r.mask.endswith("_brainmask.nii.gz") for r in records)
    assert {skull_strip_label(r, "auto") for r in records} == {"reference"}
    assert not skull_strip_mismatch("reference", "hd-bet") and skull_strip_mismatch("reference", "none")


def test_same_seed_gives_identical_files_serial_or_parallel(tmp_path):
    spec = CohortSpec(subjects=2, seed=5, cohorts=("CU", "AD"), styles=("clinical2d",), heads=("colin27",))
    write_cohort(spec, tmp_path / "a", jobs=2, progress=False)
    write_cohort(spec, tmp_path / "b", jobs=1, progress=False)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert len(a) == 2 * 5 + 4  # per subject: T1w, json, brainmask, dseg, ageingmap; plus 4 root files
    assert a.keys() == b.keys()
    assert all(a[k] == b[k] for k in a), [k for k in a if a[k] != b[k]]
    other = CohortSpec(subjects=1, seed=6, cohorts=("CU",), styles=("clinical2d",), heads=("colin27",))
    write_cohort(other, tmp_path / "c", jobs=1, progress=False)
    key = "sub-0001/anat/sub-0001_T1w.nii.gz"
    assert _files(tmp_path / "c")[key] != a[key]


def test_ventricles_and_csf_grow_and_grey_matter_falls_with_biological_age(ageing_cohort):
    root, table = ageing_cohort
    m = pd.DataFrame([_measure(root, pid) for pid in table.participant_id])
    bio = table.biological_age.to_numpy()
    rho = {k: spearmanr(bio, m[k]).statistic for k in m.columns}
    print("Spearman rho vs biological age:", {k: round(v, 3) for k, v in rho.items()})
    assert bio.max() - bio.min() > 40
    assert rho["ventricles"] > 0.9
    assert rho["csf"] > 0.9
    assert rho["gm"] < -0.9
    assert rho["gm_label"] < -0.9
    # the oldest subject's ventricles are at least twice the youngest's (the model: ~3x from 25 to 80)
    assert m.ventricles[np.argmax(bio)] > 2 * m.ventricles[np.argmin(bio)]


def test_ad_like_subjects_have_larger_ventricles_than_age_matched_cu(tmp_path):
    spec = CohortSpec(subjects=6, seed=21, cohorts=("CU", "AD"), styles=("research3d",), heads=("mni152",),
                      age_range=(72.0, 76.0), sites=("site-01",))
    table = write_cohort(spec, tmp_path, jobs=1, progress=False)
    vent = np.array([_measure(tmp_path, pid)["ventricles"] for pid in table.participant_id])
    ad, cu = vent[table.cohort == "AD"], vent[table.cohort == "CU"]
    assert abs(table[table.cohort == "AD"].age.mean() - table[table.cohort == "CU"].age.mean()) < 4
    assert ad.mean() > 1.15 * cu.mean()
    assert ad.min() > cu.min()
    assert table[table.cohort == "AD"].mmse.max() < table[table.cohort == "CU"].mmse.min()


def test_clinical2d_has_requested_slices_and_valid_affine(tmp_path):
    spec = CohortSpec(subjects=1, seed=3, styles=("clinical2d",), heads=("colin27",), thickness_mm=(6.0, 6.0),
                      gap_probability=0.0)
    write_cohort(spec, tmp_path, jobs=1, progress=False)
    stem = tmp_path / "sub-0001" / "anat" / "sub-0001"
    vol = load_nifti(f"{stem}_T1w.nii.gz")
    thick = validate_volume(vol)
    assert thick.is_thick and thick.world_axis == 2  # axial
    assert thick.spacing == pytest.approx(6.0, abs=1e-4)
    in_plane = sorted(vol.spacing)[:2]
    assert 0.4 - 1e-6 <= in_plane[0] <= in_plane[1] <= 1.0 + 1e-6
    side = json.loads(Path(f"{stem}_T1w.json").read_text())
    assert side["SliceThickness"] == 6.0 and side["SpacingBetweenSlices"] == 6.0
    img = nib.load(f"{stem}_T1w.nii.gz")
    assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
    assert np.allclose(img.get_qform(), img.affine, atol=1e-4)
    # the brain sits where the head was put: mask centroid within 25 mm of the source brain's centre
    mask = np.asarray(nib.load(f"{stem}_brainmask.nii.gz").dataobj) > 0
    centroid = img.affine @ np.r_[np.argwhere(mask).mean(axis=0), 1.0]
    colin_brain = nib.load(sample_data_dir() / "colin27_brain.nii.gz")
    ref = colin_brain.affine @ np.r_[np.argwhere(np.asarray(colin_brain.dataobj) > 0).mean(axis=0), 1.0]
    assert np.linalg.norm(centroid[:3] - ref[:3]) < 25.0


def test_generated_images_pass_core_preprocessing_and_qc(ageing_cohort):
    from BrainAgeLib.preprocess import prepare

    root, table = ageing_cohort
    for pid in table.participant_id[:3]:
        stem = root / pid / "anat" / pid
        head = load_nifti(f"{stem}_T1w.nii.gz")
        validate_volume(head)
        mask = load_nifti(f"{stem}_brainmask.nii.gz")
        brain = head.with_data(head.data * (mask.data > 0))
        prepared = prepare(brain, enforce_qc=True)
        assert prepared.passed_qc
        assert prepared.data.shape == (80, 120, 40)
        assert 0.2 < prepared.background_fraction < 0.92
