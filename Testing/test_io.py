"""IO: real heads keep their geometry; each kind of bad input gets its own clear error."""

import gzip

import nibabel as nib
import numpy as np
import pytest

from BrainAgeLib import errors
from BrainAgeLib.io import (
    Volume,
    load_nifti,
    load_volume,
    save_nifti,
    thick_axis,
    to_canonical,
    validate_volume,
    world_extent,
)
from conftest import make_volume


def test_real_heads_load_with_their_affine(colin_head_path, mni_head_path, robex_head_path):
    for path in (colin_head_path, mni_head_path, robex_head_path):
        image = nib.load(str(path))
        volume = load_volume(path)
        np.testing.assert_array_equal(volume.affine, image.affine)
        assert volume.data.ndim == 3 and volume.data.dtype == np.float32
    # ROBEX atlas is stored 4D with a trailing singleton axis and 1.5 mm voxels
    robex = load_volume(robex_head_path)
    assert robex.shape == (116, 150, 155)
    assert robex.spacing == pytest.approx((1.5, 1.5, 1.5))


def test_canonical_reorients_las_to_ras_without_resampling(mni_head_path):
    las = load_volume(mni_head_path)
    assert nib.aff2axcodes(las.affine) == ("L", "A", "S")
    ras = to_canonical(las)
    assert nib.aff2axcodes(ras.affine) == ("R", "A", "S")
    np.testing.assert_array_equal(ras.data, las.data[::-1])
    # the same voxel sits at the same world position
    ijk = np.array([30, 40, 50, 1.0])
    flipped = np.array([las.shape[0] - 1 - 30, 40, 50, 1.0])
    np.testing.assert_allclose(las.affine @ ijk, ras.affine @ flipped)


def test_thick_axis_found_on_a_thick_slice_scan(colin_brain):
    thick = colin_brain.data[:, :, ::6]
    affine = colin_brain.affine.copy()
    affine[:3, 2] *= 6
    axis = thick_axis(affine)
    assert (axis.index, axis.world_axis, axis.spacing, axis.is_thick) == (2, 2, 6.0, True)
    assert validate_volume(Volume(thick, affine)).index == 2


def test_save_is_atomic_and_round_trips(tmp_path, colin_brain):
    path = save_nifti(colin_brain, tmp_path / "out.nii.gz")
    again = load_nifti(path)
    np.testing.assert_array_equal(again.data, colin_brain.data)
    np.testing.assert_allclose(again.affine, colin_brain.affine)
    assert [p.name for p in tmp_path.iterdir()] == ["out.nii.gz"]  # no temp files left
    with pytest.raises(FileExistsError):
        save_nifti(colin_brain, path, overwrite=False)


def _nifti(tmp_path, data, affine=None, name="x.nii.gz"):
    path = tmp_path / name
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), str(path))
    return path


def test_4d_and_2d_images_are_refused(tmp_path):
    with pytest.raises(errors.DimensionalityError, match="4 dimensions"):
        load_volume(_nifti(tmp_path, np.ones((10, 10, 10, 3), np.float32), name="a.nii.gz"))
    with pytest.raises(errors.DimensionalityError, match="2D slice"):
        load_volume(_nifti(tmp_path, np.random.rand(200, 200, 1).astype(np.float32), name="b.nii.gz"))
    with pytest.raises(errors.DimensionalityError, match="2 dimensions"):
        validate_volume(Volume(np.random.rand(200, 200).astype(np.float32), np.eye(4)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_voxels_are_refused(bad):
    volume = make_volume()
    volume.data[5, 5, 5] = bad
    with pytest.raises(errors.NonFiniteVoxelsError, match="1 voxels"):
        validate_volume(volume)


def test_constant_image_is_refused():
    with pytest.raises(errors.ConstantImageError):
        validate_volume(make_volume(value=7.0))


def test_corrupt_and_truncated_files_are_refused(tmp_path, colin_brain_path):
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(colin_brain_path.read_bytes()[:50_000])
    garbage = tmp_path / "garbage.nii.gz"
    garbage.write_bytes(gzip.compress(b"not an image at all" * 100))
    for path in (truncated, garbage, tmp_path / "missing.nii.gz"):
        with pytest.raises(errors.CorruptFileError):
            load_volume(path)


@pytest.mark.parametrize("spacing", [(0.0, 1.0, 1.0), (1.0, 1.0, 50.0), (0.001, 1.0, 1.0)])
def test_absurd_voxel_sizes_are_refused(spacing):
    volume = make_volume()
    affine = np.diag([*spacing, 1.0])
    with pytest.raises(errors.VoxelSizeError):
        validate_volume(Volume(volume.data, affine))


def test_sagittal_thick_acquisition_needs_an_override(colin_brain):
    ras = to_canonical(colin_brain)
    data = ras.data[::6]  # thick along R-L: a sagittal acquisition
    affine = ras.affine.copy()
    affine[:3, 0] *= 6
    volume = Volume(data, affine)
    with pytest.raises(errors.OrientationError, match="R-L"):
        validate_volume(volume)
    assert validate_volume(volume, allow_non_axial=True).world_axis == 0
    coronal_affine = ras.affine.copy()
    coronal_affine[:3, 1] *= 6
    with pytest.raises(errors.OrientationError, match="A-P"):
        validate_volume(Volume(ras.data[:, ::6], coronal_affine))


def test_small_field_of_view_is_refused(colin_brain):
    cropped = colin_brain.data[40:120, 50:150, 40:140]  # 80 mm wide: half a brain
    with pytest.raises(errors.FieldOfViewError, match="field of view"):
        validate_volume(Volume(cropped, colin_brain.affine))
    assert world_extent(colin_brain).tolist() == [181.0, 217.0, 181.0]


def test_all_input_errors_are_value_errors_for_batch_handling():
    for cls in (errors.DimensionalityError, errors.CorruptFileError, errors.OrientationError, errors.QualityGateError):
        assert issubclass(cls, errors.BrainAgeInputError) and issubclass(cls, ValueError)
