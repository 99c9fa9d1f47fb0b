"""Preprocessing steps 4-7, each checked with numbers."""

import numpy as np
import pytest

from BrainAgeLib.errors import QualityGateError
from BrainAgeLib.io import Volume, to_canonical, voxel_sizes
from BrainAgeLib.preprocess import (
    background_fraction,
    crop_center_voxel,
    crop_or_pad,
    normalize_intensity,
    prepare,
    resample_to_spacing,
)
from BrainAgeLib.spec import PreprocessSpec
from conftest import make_volume

SPEC = PreprocessSpec()


def _world_centroid(volume: Volume) -> np.ndarray:
    ijk = np.argwhere(volume.data > 0).mean(axis=0)
    return (volume.affine @ np.r_[ijk, 1.0])[:3]


def test_resampling_gives_2mm_and_keeps_world_position(colin_brain):
    ras = to_canonical(colin_brain)
    out = resample_to_spacing(ras, SPEC)
    np.testing.assert_allclose(voxel_sizes(out.affine), [2, 2, 2])
    assert out.shape == (91, 109, 91)  # 181 x 217 x 181 mm / 2 mm, rounded up
    assert np.linalg.norm(_world_centroid(out) - _world_centroid(ras)) < 1.0


def test_resampling_a_thick_slice_scan_fills_between_slices(colin_brain):
    ras = to_canonical(colin_brain)
    affine = ras.affine.copy()
    affine[:3, 2] *= 7
    thick = Volume(ras.data[:, :, ::7], affine)
    out = resample_to_spacing(thick, SPEC)
    np.testing.assert_allclose(voxel_sizes(out.affine), [2, 2, 2])
    assert out.shape[2] == (26 - 1) * 7 // 2 + 1  # first to last slice centre, at 2 mm
    # every 2 mm slice inside the brain has tissue: interpolation, not empty gaps
    mid = out.data[:, :, 20:60]
    assert np.all((mid > 0).sum(axis=(0, 1)) > 1000)


def test_normalize_matches_a_hand_computation():
    rng = np.random.default_rng(3)
    data = np.zeros((20, 20, 20), np.float32)
    data[5:15, 5:15, 5:15] = rng.uniform(50, 150, (10, 10, 10))
    data[7, 7, 7] = 10_000  # an outlier
    out = normalize_intensity(data, SPEC)
    values = data[data != 0]
    lo, hi = np.percentile(values, [1, 99])
    core = values[(values >= lo) & (values <= hi)]
    expected = data / core.std()  # (x - mean)/sd minus the background's (0 - mean)/sd
    ceiling = np.percentile(expected[data != 0], 99.9)
    expected = np.minimum(expected, ceiling)
    expected[data == 0] = 0
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    assert out[0, 0, 0] == 0  # background is 0
    assert out[7, 7, 7] == pytest.approx(ceiling, rel=1e-5)  # outlier clipped
    assert out.max() == pytest.approx(ceiling, rel=1e-5)


def test_normalize_refuses_an_empty_brain():
    with pytest.raises(QualityGateError):
        normalize_intensity(np.zeros((5, 5, 5), np.float32), SPEC)


def test_crop_of_a_large_scan_is_80x120x40_and_keeps_geometry(colin_brain):
    out = resample_to_spacing(to_canonical(colin_brain), SPEC)
    cropped = crop_or_pad(out, SPEC)
    assert cropped.shape == (80, 120, 40)
    # a voxel of the crop maps to the same world point as the matching voxel of the source
    start = np.linalg.solve(out.affine, cropped.affine @ np.array([0, 0, 0, 1.0]))[:3]
    np.testing.assert_allclose(start, np.round(start), atol=1e-6)
    s = start.round().astype(int)
    np.testing.assert_array_equal(cropped.data[10, 20, 5], out.data[s[0] + 10, s[1] + 20, s[2] + 5])


def test_pad_of_a_small_scan_centres_the_content():
    small = make_volume(shape=(40, 50, 20))
    padded = crop_or_pad(small, SPEC)
    assert padded.shape == (80, 120, 40)
    assert padded.data.sum() == pytest.approx(small.data.sum())
    centre = (np.argwhere(padded.data > 0).min(0) + np.argwhere(padded.data > 0).max(0)) / 2
    np.testing.assert_allclose(centre, (np.array(SPEC.roi_size) - 1) / 2, atol=1.0)
    assert np.linalg.norm(_world_centroid(padded) - _world_centroid(small)) < 1e-3


def test_crop_centre_modes():
    data = np.zeros((10, 10, 10))
    data[0:4, 0:2, 6:10] = 1
    np.testing.assert_allclose(crop_center_voxel(data, "foreground"), [1.5, 0.5, 7.5])
    np.testing.assert_allclose(crop_center_voxel(data, "image"), [4.5, 4.5, 4.5])
    with pytest.raises(ValueError):
        crop_center_voxel(data, "middle")


def test_background_fraction():
    data = np.zeros((10, 10, 10))
    data[:5] = 1.0
    assert background_fraction(data) == 0.5


def test_whole_brain_passes_the_gate_partial_brain_fails(colin_brain):
    full = prepare(colin_brain)
    assert full.passed_qc and 0.4 < full.background_fraction < 0.8
    assert full.data.shape == (80, 120, 40) and full.data.dtype == np.float32
    partial = colin_brain.with_data(colin_brain.data.copy())
    partial.data[:, :, :150] = 0  # only the top 3 cm of the brain left
    gated = prepare(partial)
    assert not gated.passed_qc and gated.background_fraction > 0.92
    assert "part of the brain" in gated.qc_messages[0]
    with pytest.raises(QualityGateError):
        prepare(partial, enforce_qc=True)


def test_prepare_is_deterministic_and_orientation_independent(mni_brain_path):
    from BrainAgeLib.io import load_volume

    las = load_volume(mni_brain_path)
    ras = to_canonical(las)
    a, b = prepare(las), prepare(ras)
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_allclose(a.affine, b.affine)


def test_spec_round_trip_and_refuses_unknown_fields():
    spec = PreprocessSpec(crop_center="image")
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="unknown fields"):
        PreprocessSpec.from_dict({**spec.to_dict(), "new_step": 1})
    with pytest.raises(ValueError, match="newer"):
        PreprocessSpec.from_dict({**spec.to_dict(), "version": 99})


# --- the fast path gives MONAI's whole-grid result (issue 12) ------------------------------------


def _oblique(volume: Volume, degrees: float = 12.0) -> Volume:
    a = np.radians(degrees)
    rotation = np.array([[np.cos(a), -np.sin(a), 0, 0], [np.sin(a), np.cos(a), 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    return Volume(volume.data, rotation @ volume.affine, volume.source)


def _in_plane(volume: Volume, mm: float) -> Volume:
    affine = volume.affine.copy()
    affine[:3, :2] *= mm
    return Volume(volume.data, affine, volume.source)


def _variants(colin: Volume) -> dict:
    from BrainAgeLib.slicing import axial_subsample

    las = Volume(np.ascontiguousarray(colin.data[::-1]), colin.affine @ np.array([[-1, 0, 0, 180], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]))
    return {
        "1 mm": colin,
        "7 mm axial": axial_subsample(colin, 7),
        "6 mm axial, offset 3": axial_subsample(colin, 6, 3),
        "0.9375 mm in-plane": _in_plane(colin, 0.9375),
        "0.5 mm in-plane, 5 mm axial": axial_subsample(_in_plane(colin, 0.5), 5),
        "oblique": _oblique(colin),
        "LAS voxel order": las,
        "negative intensities": colin.with_data(np.where(colin.data > 0, colin.data - 30, 0).astype(np.float32)),
        "small, padded": make_volume(shape=(40, 50, 20)),
    }


@pytest.mark.parametrize("crop_center", ["foreground", "image"])
def test_prepare_gives_the_whole_grid_monai_result(colin_brain, crop_center):
    from reference_preprocess import reference_prepare

    spec = PreprocessSpec(crop_center=crop_center)
    for name, volume in _variants(colin_brain).items():
        fast, reference = prepare(volume, spec), reference_prepare(volume, spec)
        assert fast.data.shape == reference.shape == (80, 120, 40), name
        assert np.abs(fast.data - reference.data).max() <= 1e-4, name
        np.testing.assert_allclose(fast.affine, reference.affine, atol=1e-9, err_msg=name)
        assert fast.background_fraction == pytest.approx(background_fraction(reference.data)), name


def test_resample_to_spacing_gives_monai_spacing(colin_brain):
    from reference_preprocess import reference_resample

    for name, volume in _variants(colin_brain).items():
        canonical = to_canonical(volume)
        fast, reference = resample_to_spacing(canonical, SPEC), reference_resample(canonical, SPEC)
        assert fast.shape == reference.shape, name
        assert np.abs(fast.data - reference.data).max() <= 1e-4, name
        np.testing.assert_allclose(fast.affine, reference.affine, atol=1e-9, err_msg=name)


def test_model_input_through_skull_strip_none_is_unchanged(colin_brain_path):
    """The 'none' backend hands the input itself on as the brain; the model input is the reference one."""
    from reference_preprocess import reference_prepare

    from BrainAgeLib.io import load_volume
    from BrainAgeLib.predict import prepare_case

    volume = load_volume(colin_brain_path)
    case = prepare_case(volume, SPEC, "none")
    reference = reference_prepare(volume.with_data(np.where(case.brain_mask.data > 0, volume.data, 0).astype(np.float32)))
    assert np.abs(case.prepared.data - reference.data).max() <= 1e-4
    np.testing.assert_allclose(case.prepared.affine, reference.affine, atol=1e-9)
