"""Synthetic clinical slicing (step 3 of the method, training only).

A 3D research scan is cut into thick axial "clinical" scans: keep every k-th
axial slice, with k the smallest integer such that k x axial spacing >= the
gap (7 mm). Every starting offset gives one synthetic scan.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from .io import Volume, to_canonical


def slice_step(axial_spacing_mm: float, gap_mm: float = 7.0) -> int:
    """Smallest integer k with k * spacing >= gap (tolerant to float rounding)."""
    if axial_spacing_mm <= 0:
        raise ValueError(f"axial spacing must be positive, got {axial_spacing_mm}")
    return max(1, math.ceil(gap_mm / axial_spacing_mm - 1e-6))


def axial_subsample(volume: Volume, step: int, offset: int = 0) -> Volume:
    """Keep every ``step``-th slice along the voxel axis closest to inferior-superior, from ``offset``.

    Works in the volume's own voxel order; the affine's axial column is ``step``
    times longer and the origin moves by ``offset`` slices, so every kept slice
    stays at its world position.
    """
    axis = int(np.argmax(np.abs(np.asarray(volume.affine)[2, :3])))
    index = [slice(None)] * 3
    index[axis] = slice(offset, None, step)
    affine = np.array(volume.affine, dtype=float)
    affine[:3, 3] = affine[:3, 3] + affine[:3, axis] * offset
    affine[:3, axis] *= step
    return Volume(data=np.ascontiguousarray(volume.data[tuple(index)]), affine=affine, source=volume.source)


def synthetic_clinical_scans(volume: Volume, gap_mm: float = 7.0) -> list[Volume]:
    """All synthetic thick-slice axial scans of one 3D scan, one per offset.

    The scan is first brought to RAS+ voxel order, so voxel axis 2 is the
    inferior-superior axis. Each result keeps the world position of its slices:
    its affine's axial column is k times the original and its origin moves by
    ``offset`` slices.
    """
    canonical = to_canonical(volume)
    k = slice_step(canonical.spacing[2], gap_mm)
    scans = []
    for offset in range(k):
        scan = axial_subsample(canonical, k, offset)
        if scan.shape[2] >= 2:
            scans.append(replace(scan, source=f"{volume.source}#offset{offset}"))
    return scans
