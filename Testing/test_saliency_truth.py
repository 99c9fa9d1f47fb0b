"""Issue 15: the AUC of saliency against a ground-truth ageing map."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from BrainAgeTrainingLib.saliency_truth import voxel_auc


def test_voxel_auc_equals_sklearn_on_a_fixed_example_with_ties():
    rng = np.random.default_rng(4)
    score = np.round(rng.random((6, 7, 5)), 1)  # rounded: many ties
    truth = (rng.random((6, 7, 5)) < 0.3).astype(np.float32) * rng.random((6, 7, 5))
    inside = np.ones_like(score, dtype=bool)
    inside[0] = False  # only voxels inside the brain count
    expected = roc_auc_score((truth[inside] > 0).astype(int), score[inside])
    assert voxel_auc(score, truth, inside) == pytest.approx(expected, abs=1e-12)
    assert voxel_auc(truth, truth, inside) == pytest.approx(1.0)
    assert voxel_auc(-truth, truth, inside) == pytest.approx(0.0)
    assert np.isnan(voxel_auc(score, np.zeros_like(truth), inside))  # no aged voxel: undefined
    high = truth > 0.5
    assert voxel_auc(score, truth, inside, 0.5) == pytest.approx(roc_auc_score(high[inside].astype(int), score[inside]), abs=1e-12)


class _WorldMapPredictor:
    """Real preprocessing; the 'saliency' is a smooth function of world position (closeness to a point in the
    brain), so every slicing offset should give the same map once it is back on the 3D grid."""

    def __init__(self, centre):
        from BrainAgeLib.spec import PreprocessSpec

        self.spec, self.centre = PreprocessSpec(), np.asarray(centre, dtype=float)

    def prepare_volume(self, volume):
        from BrainAgeLib.predict import prepare_case

        return prepare_case(volume, self.spec, "none")

    def saliency(self, case, method):
        from types import SimpleNamespace

        grid = np.indices(case.prepared.data.shape).reshape(3, -1)
        world = case.prepared.affine[:3, :3] @ grid + case.prepared.affine[:3, 3:4]
        closeness = np.exp(-np.sum((world - self.centre[:, None]) ** 2, axis=0) / (2 * 25.0 ** 2))
        return SimpleNamespace(model_grid=closeness.reshape(case.prepared.data.shape).astype(np.float32))


def test_offset_consistency_brings_every_offsets_map_back_to_the_same_place(colin_brain):
    from BrainAgeTrainingLib.saliency_truth import offset_consistency

    mask = colin_brain.data > 0
    centre = colin_brain.affine[:3, :3] @ np.argwhere(mask).mean(axis=0) + colin_brain.affine[:3, 3]
    grid = np.indices(colin_brain.shape).reshape(3, -1)
    world = colin_brain.affine[:3, :3] @ grid + colin_brain.affine[:3, 3:4]
    near = (np.linalg.norm(world - centre[:, None], axis=0) < 30).reshape(colin_brain.shape)
    truth = colin_brain.with_data(near.astype(np.float32))  # "aged" = within 30 mm of the point
    result = offset_consistency(_WorldMapPredictor(centre), colin_brain, truth, mask, "world")
    spacing = abs(colin_brain.affine[2, 2])
    assert result["offsets"] == int(np.ceil(7.0 / spacing - 1e-6))
    assert result["pair_r_min"] > 0.99 and result["top_dice_min"] > 0.9
    assert result["auc_min"] > 0.95  # the map ranks the voxels near the point first, at every offset
