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
