"""Synthetic clinical slicing (METHOD.md step 3, training only).

A 3D research scan is cut into thick axial "clinical" scans: keep every k-th
axial slice, with k the smallest integer such that k x axial spacing >= the
gap (7 mm). Every starting offset gives one synthetic scan.
"""

from __future__ import annotations

import math

import numpy as np

from .io import Volume, to_canonical


def slice_step(axial_spacing_mm: float, gap_mm: float = 7.0) -> int:
    """Smallest integer k with k * spacing >= gap (tolerant to float rounding)."""
    if axial_spacing_mm <= 0:
        raise ValueError(f"axial spacing must be positive, got {axial_spacing_mm}")
    return max(1, math.ceil(gap_mm / axial_spacing_mm - 1e-6))


def synthetic_clinical_scans(volume: Volume, gap_mm: float = 7.0) -> list[Volume]:
    """All synthetic thick-slice axial scans of one 3D scan, one per offset.

    The scan is first brought to RAS+ voxel order, so voxel axis 2 is the
    inferior-superior axis. Each result keeps the world position of its slices:
    its affine's axial column is k times the original and its origin moves by
    ``offset`` slices.
    """
    canonical = to_canonical(volume)
    spacing = canonical.spacing[2]
    k = slice_step(spacing, gap_mm)
    scans = []
    for offset in range(k):
        data = canonical.data[:, :, offset::k]
        if data.shape[2] < 2:
            continue
        affine = canonical.affine.copy()
        affine[:3, 3] = affine[:3, :3] @ np.array([0.0, 0.0, float(offset)]) + affine[:3, 3]
        affine[:3, 2] *= k
        scans.append(Volume(data=np.ascontiguousarray(data), affine=affine, source=f"{volume.source}#offset{offset}"))
    return scans
