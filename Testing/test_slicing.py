"""Synthetic clinical slicing (METHOD.md step 3) on real heads."""

import numpy as np
import pytest

from BrainAgeLib.io import load_volume, to_canonical, voxel_sizes
from BrainAgeLib.slicing import slice_step, synthetic_clinical_scans


@pytest.mark.parametrize(
    "spacing, k", [(1.0, 7), (0.9, 8), (1.2, 6), (1.5, 5), (0.8, 9), (7.0, 1), (3.5, 2), (1.0 + 1e-9, 7)]
)
def test_step_is_smallest_multiple_reaching_7mm(spacing, k):
    assert slice_step(spacing) == k
    assert k * spacing >= 7.0 - 1e-6 and (k - 1) * spacing < 7.0


def test_colin_head_gives_seven_7mm_scans_covering_every_slice_once(colin_head_path):
    head = load_volume(colin_head_path)
    scans = synthetic_clinical_scans(head)
    assert len(scans) == 7
    ras = to_canonical(head)
    seen = np.zeros(ras.shape[2], int)
    for offset, scan in enumerate(scans):
        np.testing.assert_allclose(voxel_sizes(scan.affine), [1.0, 1.0, 7.0])
        assert scan.shape[:2] == ras.shape[:2]
        for j in range(scan.shape[2]):
            # slice j of this scan is original slice offset + 7 j, at the same world position
            original = offset + 7 * j
            seen[original] += 1
            np.testing.assert_array_equal(scan.data[:, :, j], ras.data[:, :, original])
            np.testing.assert_allclose(scan.affine @ [5, 6, j, 1], ras.affine @ [5, 6, original, 1])
    assert np.all(seen == 1)


def test_las_1p5mm_head_gives_five_scans(robex_head_path):
    scans = synthetic_clinical_scans(load_volume(robex_head_path))
    assert len(scans) == 5
    assert all(s.spacing == pytest.approx((1.5, 1.5, 7.5)) for s in scans)
    assert sum(s.shape[2] for s in scans) == 155
