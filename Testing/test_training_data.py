"""Training data: discovery (BIDS, CSV manifest, folder + ages), the report of unusable scans,
the one-scan-per-subject rule, subject-level splits and the preparation cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

from BrainAgeLib.io import Volume, save_nifti
from BrainAgeLib.spec import PreprocessSpec
from BrainAgeTrainingLib.cache import PreparationCache
from BrainAgeTrainingLib.datasets import DatasetError, discover, load_datasets, select_scans
from BrainAgeTrainingLib.splits import check_no_leakage, make_splits


def small_head(seed: int, spacing=(2.0, 2.0, 2.0)) -> Volume:
    """A brain-like ellipsoid (background 0) big enough for the field-of-view check."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(round(e / s)) for e, s in zip((150, 180, 130), spacing))
    grid = np.indices(shape).astype(np.float32)
    c = (np.asarray(shape) - 1) / 2
    r = sum(((grid[i] - c[i]) / (0.42 * shape[i])) ** 2 for i in range(3))
    data = np.where(r < 1, 80 + 10 * rng.standard_normal(shape), 0).astype(np.float32)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -np.asarray(shape) * np.asarray(spacing) / 2
    return Volume(data, affine)


def write_bids(root, ages: dict[str, object], sessions: dict[str, list[str]] | None = None, broken=()):
    root.mkdir(parents=True, exist_ok=True)
    rows = ["participant_id\tage\tsex"]
    for i, (sub, age) in enumerate(ages.items()):
        rows.append(f"{sub}\t{age}\tF")
        for ses in (sessions or {}).get(sub, [""]):
            anat = root / sub / ses / "anat" if ses else root / sub / "anat"
            name = f"{sub}_{ses}_T1w.nii.gz" if ses else f"{sub}_T1w.nii.gz"
            if sub in broken:
                anat.mkdir(parents=True, exist_ok=True)
                (anat / name).write_bytes(b"this is not a NIfTI file at all" * 10)
            else:
                save_nifti(small_head(i), anat / name)
    (root / "participants.tsv").write_text("\n".join(rows) + "\n")
    return root


def test_bids_discovery_lists_a_broken_file_and_a_missing_age(tmp_path):
    root = write_bids(tmp_path / "bids", {"sub-01": 30, "sub-02": "n/a", "sub-03": 55.5, "sub-04": 70}, broken={"sub-03"})
    report = discover(root)
    assert [r.subject for r in report.records] == ["bids/sub-01", "bids/sub-04"]
    assert [r.age for r in report.records] == [30.0, 70.0]
    reasons = {p.subject: p.reason for p in report.problems}
    assert set(reasons) == {"bids/sub-02", "bids/sub-03"}
    assert "age is missing" in reasons["bids/sub-02"]
    assert "cannot be read as NIfTI" in reasons["bids/sub-03"]
    text = report.summary()
    assert "2 usable scans of 2 subjects; 2 not used" in text and "sub-03" in text
    out = report.write(tmp_path / "report.csv")
    assert out.read_text().count("\n") == 3  # header + 2 problems


def test_bids_sessions_runs_and_the_five_year_rule(tmp_path):
    root = write_bids(tmp_path / "longi", {"sub-01": 60, "sub-02": 40},
                      sessions={"sub-01": ["ses-1", "ses-2", "ses-3"], "sub-02": ["ses-1"]})
    (root / "sub-01" / "sub-01_sessions.tsv").write_text("session_id\tage\nses-1\t60\nses-2\t63\nses-3\t66.5\n")
    report = discover(root)
    assert sorted((r.session, r.age) for r in report.records if r.subject == "longi/sub-01") == [
        ("ses-1", 60.0), ("ses-2", 63.0), ("ses-3", 66.5)]
    kept = select_scans(report, 5.0)
    assert sorted((r.subject, r.age) for r in kept.records) == [("longi/sub-01", 60.0), ("longi/sub-01", 66.5),
                                                                 ("longi/sub-02", 40.0)]
    skipped = [p for p in kept.problems if p.stage == "selection"]
    assert len(skipped) == 1 and "within 5 years" in skipped[0].reason
    assert len(select_scans(report, 10.0).records) == 2  # configurable


def test_csv_manifest_and_folder_with_ages_combined(tmp_path):
    scans = tmp_path / "scans"
    for i in range(3):
        save_nifti(small_head(i), scans / f"case{i}.nii.gz")
    (scans / "case9.nii.gz").write_bytes(b"\x1f\x8b truncated")
    manifest = tmp_path / "site.csv"
    manifest.write_text("path,age,subject,site\nscans/case0.nii.gz,33,p0,A\nscans/case1.nii.gz,,p1,A\n"
                        "scans/missing.nii.gz,50,p2,A\nscans/case9.nii.gz,61,p9,A\n")
    (scans / "ages.csv").write_text("file,age\ncase0.nii.gz,33\ncase1,44\ncase2,200\ncase9,61\n")
    report = load_datasets([manifest, scans])
    counts = report.counts()
    assert counts == {"scans": {"scans": 2, "subjects": 2, "problems": 2}, "site": {"scans": 1, "subjects": 1, "problems": 3}}
    reasons = sorted(p.reason.split(" (")[0] for p in report.problems)
    assert reasons == ["age 200.0 is outside 0-120 years", "age is missing; add it to the ages table / participants.tsv",
                       "cannot be read as NIfTI", "cannot be read as NIfTI", "file not found"]
    explicit = discover(f"{scans}={scans / 'ages.csv'}")
    assert len(explicit.records) == 2
    with pytest.raises(DatasetError, match="not a BIDS root"):
        discover(tmp_path)


def test_splits_are_by_subject_80_10_10_and_never_leak():
    rng = np.random.default_rng(3)
    subjects = {f"ds/sub-{i:03d}": float(rng.uniform(20, 90)) for i in range(57)}
    splits = make_splits(subjects, n_folds=5, seed=1)
    tests, vals = [], []
    for split in splits:
        check_no_leakage(split)
        assert set(split.train) | set(split.val) | set(split.test) == set(subjects)
        n = len(subjects)
        assert abs(len(split.train) - 0.8 * n) <= 2 and abs(len(split.val) - 0.1 * n) <= 1
        tests += split.test
        vals += split.val
        # age stratification: every test group spans most of the age range
        test_ages = [subjects[s] for s in split.test]
        assert min(test_ages) < 35 and max(test_ages) > 65
    assert sorted(tests) == sorted(set(tests)) and sorted(vals) == sorted(set(vals))  # each subject tested once at most
    assert set(tests) | set(vals) == set(subjects)
    assert make_splits(subjects, 5, seed=1) == splits and make_splits(subjects, 5, seed=2) != splits
    with pytest.raises(ValueError, match="too few"):
        make_splits({"a": 1.0, "b": 2.0}, 5)


def test_preparation_cache_slices_every_offset_resumes_and_invalidates(tmp_path):
    root = write_bids(tmp_path / "bids", {"sub-01": 30, "sub-02": 50})
    # sub-02: a thick-slice (6 mm) scan is used as acquired, not sliced again
    save_nifti(small_head(5, spacing=(1.0, 1.0, 6.0)), root / "sub-02" / "anat" / "sub-02_T1w.nii.gz")
    report = discover(root)
    cache = PreparationCache(tmp_path / "cache", PreprocessSpec(), skull_strip="none")
    samples, out = cache.build(report, jobs=1, progress=False)
    offsets = sorted((s.subject, s.offset) for s in samples)
    assert offsets == [("bids/sub-01", 0), ("bids/sub-01", 1), ("bids/sub-01", 2), ("bids/sub-01", 3), ("bids/sub-02", -1)]
    first = np.load(samples[0].array)
    assert first.shape == (80, 120, 40) and first.dtype == np.float32 and first.max() > 0
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache" / "scans").rglob("*.npy")}
    again, _ = PreparationCache(tmp_path / "cache", PreprocessSpec(), skull_strip="none").build(report, progress=False)
    assert again == samples and {p: p.stat().st_mtime_ns for p in stamp} == stamp  # nothing re-done
    changed = PreparationCache(tmp_path / "cache", PreprocessSpec(slice_gap_mm=5.0), skull_strip="none")
    samples5, _ = changed.build(report, progress=False)
    assert changed.invalidated
    assert sum(s.subject == "bids/sub-01" for s in samples5) == 3  # 2 mm slices, gap 6 mm -> k = 3
    assert json.loads((tmp_path / "cache" / "cache.json").read_text())["preprocess"]["slice_gap_mm"] == 5.0
