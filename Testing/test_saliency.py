"""Saliency maps land on the input's exact grid."""

import numpy as np
import pytest
import torch

from BrainAgeLib.io import Volume, load_volume, save_nifti, load_nifti
from BrainAgeLib.predict import Predictor
from BrainAgeLib.saliency import compute_saliency, fraction_inside, to_reference_grid


@pytest.fixture(scope="module")
def predictor(two_fold_package):
    return Predictor(two_fold_package, device="cpu", skull_strip="none")


def test_guided_backprop_map_on_input_grid_and_saved(predictor, mni_brain_path, tmp_path):
    volume = load_volume(mni_brain_path)  # LAS order: the map must come back in LAS too
    case = predictor.prepare_volume(volume)
    sal = predictor.saliency(case, "guided-backprop")
    assert sal.model_grid.shape == (80, 120, 40) and sal.model_grid.min() >= 0 and sal.model_grid.max() > 0
    assert sal.on_input.shape == volume.shape
    np.testing.assert_array_equal(sal.on_input.affine, volume.affine)
    path = save_nifti(sal.on_input, tmp_path / "sal.nii.gz")
    again = load_nifti(path)
    np.testing.assert_allclose(again.affine, volume.affine, atol=1e-5)
    assert 0.5 < sal.inside_brain <= 1.0
    # activations are restored after the guided pass
    assert all(m.inplace for m in predictor.models[0].modules() if isinstance(m, torch.nn.LeakyReLU))


def test_integrated_gradients_runs_through_captum(predictor, colin_brain_path):
    case = predictor.prepare_volume(load_volume(colin_brain_path))
    sal = predictor.saliency(case, "integrated-gradients", steps=2)
    assert sal.on_input.shape == case.volume.shape and sal.model_grid.max() > 0
    with pytest.raises(ValueError, match="unknown saliency"):
        compute_saliency(predictor.models, torch.zeros(1, 1, 80, 120, 40), "lime")


def test_resampling_back_puts_a_point_at_the_same_world_position(colin_brain):
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-80, -120, -40]
    blob = np.zeros((80, 120, 40), np.float32)
    world = np.array([10.0, -20.0, 30.0])
    ijk = np.round((world - affine[:3, 3]) / 2).astype(int)
    blob[ijk[0] - 2 : ijk[0] + 3, ijk[1] - 2 : ijk[1] + 3, ijk[2] - 2 : ijk[2] + 3] = 1.0  # 1 cm cube
    # an oblique, thick-slice reference grid
    theta = np.deg2rad(10)
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    ref_affine = np.eye(4)
    ref_affine[:3, :3] = rot @ np.diag([1.0, 1.0, 6.0])
    ref_affine[:3, 3] = [-90, -110, -70]
    reference = Volume(np.zeros((181, 217, 30), np.float32), ref_affine)
    out = to_reference_grid(blob, affine, reference)
    assert out.shape == reference.shape
    np.testing.assert_array_equal(out.affine, ref_affine)
    assert out.data.sum() > 0
    idx = np.argwhere(out.data > 0)
    w = out.data[out.data > 0]
    centroid = (idx * w[:, None]).sum(axis=0) / w.sum()
    assert np.linalg.norm((ref_affine @ np.r_[centroid, 1])[:3] - world) < 1.5


def test_fraction_inside():
    sal = np.array([1.0, 3.0, 0.0, 4.0])
    mask = np.array([1, 0, 1, 1])
    assert fraction_inside(sal, mask) == pytest.approx(5 / 8)


def test_every_method_lands_on_the_inputs_exact_grid(predictor, mni_brain_path):
    from BrainAgeLib.saliency import METHODS

    volume = load_volume(mni_brain_path)
    case = predictor.prepare_volume(volume)
    for method in METHODS:
        kwargs = {"steps": 2} if method == "integrated-gradients" else ({"samples": 2} if method == "smoothgrad" else {})
        sal = predictor.saliency(case, method, **kwargs)
        assert sal.on_input.shape == volume.shape, method
        np.testing.assert_array_equal(sal.on_input.affine, volume.affine)
        assert np.isfinite(sal.on_input.data).all() and sal.model_grid.max() > 0, method


def test_integrated_gradients_attribute_only_what_differs_from_the_baseline(predictor, colin_brain_path):
    from BrainAgeLib.saliency.gradients import integrated_gradients

    x = predictor.prepare_volume(load_volume(colin_brain_path)).prepared.data
    tensor = torch.as_tensor(x[None, None])
    models = predictor.saliency_models
    assert not integrated_gradients(models, tensor, steps=2, baseline=x).any()  # the scan itself: nothing differs
    zero = integrated_gradients(models, tensor, steps=2)
    np.testing.assert_array_equal(zero, integrated_gradients(models, tensor, steps=2, baseline=np.zeros_like(x)))
    half = np.where(np.arange(x.shape[0])[:, None, None] < 40, x, 0).astype(np.float32)  # the scan's left side kept
    from_half = integrated_gradients(models, tensor, steps=2, baseline=half)
    assert not from_half[:40].any() and from_half[40:].any()  # only the right side differs


def test_smoothgrad_is_reproducible_and_leaves_the_global_rng_alone(predictor, colin_brain_path):
    case = predictor.prepare_volume(load_volume(colin_brain_path))
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = predictor.saliency(case, "smoothgrad", samples=2).model_grid
    after = torch.rand(1)
    b = predictor.saliency(case, "smoothgrad", samples=2).model_grid
    np.testing.assert_array_equal(a, b)
    assert after == before  # the noise drew from its own seed


def test_regions_split_the_brain_and_an_empty_region_moves_nothing(predictor, colin_brain_path):
    from BrainAgeLib.saliency.occlusion import occlusion_effects
    from BrainAgeLib.saliency.regions import REGIONS, brain_regions

    x = predictor.prepare_volume(load_volume(colin_brain_path)).prepared.data
    regions = brain_regions(x)
    assert list(regions) == list(REGIONS)
    brain = x != 0
    tissues = regions["csf"].astype(int) + regions["ventricles"] + regions["grey_matter"] + regions["white_matter"]
    assert (tissues[brain] == 1).all() and not tissues[~brain].any()  # a partition of the brain
    assert (regions["left"] ^ regions["right"])[brain].all()
    ventricle_ml = regions["ventricles"].sum() * 8 / 1000
    assert 5 < ventricle_ml < 80  # Colin27: an adult's lateral ventricles, not the sulci
    mean_t1 = {k: float(x[regions[k]].mean()) for k in ("csf", "grey_matter", "white_matter")}
    assert mean_t1["csf"] < mean_t1["grey_matter"] < mean_t1["white_matter"]  # T1 contrast
    effects = occlusion_effects(predictor.forward, x, {"nothing": np.zeros_like(brain), "ventricles": regions["ventricles"]})
    assert abs(effects["nothing"]) < 0.01 and abs(effects["ventricles"]) > 0
    background = occlusion_effects(predictor.forward, x, {"nothing": np.zeros_like(brain)}, fill="background")
    assert abs(background["nothing"]) < 0.01


def test_a_region_is_replaced_by_its_surrounding_tissue_or_the_background(predictor, colin_brain_path):
    from scipy import ndimage

    from BrainAgeLib.saliency.occlusion import SURROUND_VOXELS, replace_region
    from BrainAgeLib.saliency.regions import brain_regions

    x = predictor.prepare_volume(load_volume(colin_brain_path)).prepared.data
    regions = brain_regions(x)
    ventricles = regions["ventricles"]
    filled = replace_region(x, ventricles, "surround")
    assert np.array_equal(filled[~ventricles], x[~ventricles])  # nothing else changes
    shell = ndimage.binary_dilation(ventricles, iterations=SURROUND_VOXELS) & ~ventricles & (x != 0)
    assert np.allclose(filled[ventricles], x[shell].mean(), atol=1e-6)
    # the ventricles' neighbourhood is brain tissue: brighter than CSF, as a brain without enlarged ventricles
    assert filled[ventricles].mean() > x[regions["csf"]].mean() + 0.1 * (x[regions["white_matter"]].mean() - x[regions["csf"]].mean())
    assert not replace_region(x, ventricles, "background")[ventricles].any()
    assert np.array_equal(replace_region(x, np.zeros_like(ventricles), "surround"), x)
    with pytest.raises(ValueError, match="fill must be one of"):
        replace_region(x, ventricles, "zeros")


def test_a_half_is_replaced_by_the_other_halfs_mirror_image_across_the_brains_midline():
    from BrainAgeLib.saliency.occlusion import occlusion_effects, replace_region
    from BrainAgeLib.saliency.regions import brain_regions, midline, mirrored

    grid = np.indices((80, 120, 40), dtype=np.float32)
    rl = grid[0] - 33.5  # a brain off the grid's centre, symmetric about R-L index 33.5, brighter at the back
    x = np.where(rl**2 / 25**2 + (grid[1] - 60) ** 2 / 45**2 + (grid[2] - 20) ** 2 / 15**2 <= 1, 1 + grid[1] / 120, 0)
    x = x.astype(np.float32)
    assert midline(x != 0) == pytest.approx(33.5)
    np.testing.assert_allclose(mirrored(x), x, atol=1e-6)  # symmetric: its own mirror image
    asymmetric = np.where(rl > 10, 0.5 * x, x).astype(np.float32)  # darker on the right
    regions = brain_regions(asymmetric)
    left = replace_region(asymmetric, regions["left"], "mirror")
    np.testing.assert_allclose(left[regions["left"]], mirrored(asymmetric)[regions["left"]])
    assert np.array_equal(left[regions["right"]], asymmetric[regions["right"]])
    assert left[grid[0] == 33 - 20].max() < asymmetric[grid[0] == 33 - 20].max()  # now as dark as its mirror

    def forward(arrays):  # an "age": the summed intensity of the grid's right part
        return np.array([[float(a[34:].sum())] for a in arrays])

    effects = occlusion_effects(forward, x, {"left": regions["left"], "right": regions["right"]})
    assert max(abs(v) for v in effects.values()) < 1e-3  # a symmetric brain: no half adds years
    background = occlusion_effects(forward, x, {"right": regions["right"]}, fill="background")
    assert background["right"] > 100  # the background fill empties the half instead


def test_display_smoothing_and_top_percent(colin_brain):
    from BrainAgeLib.saliency import smooth_for_display, top_percent

    speckle = np.zeros(colin_brain.shape, np.float32)
    speckle[90, 108, 90] = 1.0
    smooth = smooth_for_display(colin_brain.with_data(speckle))
    assert smooth.shape == colin_brain.shape and np.array_equal(smooth.affine, colin_brain.affine)
    assert smooth.data.sum() == pytest.approx(1.0, rel=1e-3) and smooth.data.max() < 0.1  # spread, not lost
    values = np.arange(100, dtype=np.float32).reshape(10, 10, 1)
    top = top_percent(values, 10.0)
    assert top.sum() == 10 and top[values >= 90].all()


@pytest.mark.parametrize("method,kwargs", [("integrated-gradients", {"steps": 4}), ("smoothgrad", {"samples": 4})])
def test_several_copies_per_pass_give_the_map_of_one_per_pass(small_package, colin_brain_path, method, kwargs, monkeypatch):
    from BrainAgeLib.saliency import gradients

    predictor = Predictor(small_package, device="cpu", skull_strip="none")
    case = predictor.prepare_volume(load_volume(colin_brain_path))
    x = torch.as_tensor(case.prepared.data[None, None])
    assert gradients._copies_per_pass(predictor.models, x) >= 4  # the compact stem: all copies in one pass
    batched = compute_saliency(predictor.models, x, method, **kwargs)
    monkeypatch.setattr(gradients, "_copies_per_pass", lambda models, x: 1)
    single = compute_saliency(predictor.models, x, method, **kwargs)
    if method == "integrated-gradients":
        np.testing.assert_allclose(batched, single, atol=1e-4)
    else:  # the noise is drawn per pass: same seed, other draws; the maps must still agree closely
        assert np.corrcoef(batched.ravel(), single.ravel())[0, 1] > 0.8
