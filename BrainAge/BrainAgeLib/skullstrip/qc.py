"""Quality record of a brain mask: volume, bounding box, field-of-view use, flags."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import nibabel as nib
import numpy as np

from ..io import Volume
from ..qc_policy import qc_flag

#: Plausible adult brain (mask) volume, mL; outside it the mask is flagged.
BRAIN_VOLUME_RANGE_ML = (700.0, 2000.0)
#: Below this (mL) a mask cannot be an adult brain: a hard QC failure (qc_policy "mask-tiny").
MIN_BRAIN_ML = 400.0
#: A mask touching more than this many faces of the field of view is flagged.
MAX_EDGE_SIDES = 1

#: Names of the faces of a RAS+ voxel grid: (low end, high end) per axis.
_SIDE_NAMES = (("right", "left"), ("posterior", "anterior"), ("inferior", "superior"))


@dataclass(frozen=True)
class SkullStripQC:
    """Numbers that tell whether a brain mask is plausible.

    ``bbox_min`` / ``bbox_max`` are inclusive voxel indices in the input grid;
    ``edge_sides`` names the faces of the field of view (in patient terms) that
    the mask touches; ``flags`` lists every reason not to trust the mask.
    """

    brain_volume_ml: float
    voxel_count: int
    bbox_min: tuple[int, int, int]
    bbox_max: tuple[int, int, int]
    bbox_size_mm: tuple[float, float, float]
    fov_fraction: float
    edge_sides: tuple[str, ...]
    flags: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.flags

    def to_dict(self) -> dict:
        record = asdict(self)
        record["passed"] = self.passed
        return record


def mask_qc(mask: Volume, *, volume_range_ml: tuple[float, float] = BRAIN_VOLUME_RANGE_ML) -> SkullStripQC:
    """Measure a 0/1 mask on its own grid and flag implausible results."""
    data = np.asarray(mask.data) > 0
    spacing = np.asarray(mask.spacing, dtype=float)
    count = int(np.count_nonzero(data))
    volume_ml = float(count * np.prod(spacing) / 1000.0)
    flags: list[str] = []
    if count == 0:
        return SkullStripQC(
            brain_volume_ml=0.0,
            voxel_count=0,
            bbox_min=(0, 0, 0),
            bbox_max=(0, 0, 0),
            bbox_size_mm=(0.0, 0.0, 0.0),
            fov_fraction=0.0,
            edge_sides=(),
            flags=(qc_flag("mask-empty", "the mask is empty: no brain was found. Check that the input is a T1 head scan."),),
        )
    bbox_min, bbox_max = bounding_box(data)  # type: ignore[misc]
    bbox_size = tuple(float((hi - lo + 1) * s) for lo, hi, s in zip(bbox_min, bbox_max, spacing))
    sides = touched_sides(mask)
    lo, hi = volume_range_ml
    if volume_ml < MIN_BRAIN_ML:
        flags.append(qc_flag(
            "mask-tiny",
            f"brain volume {volume_ml:.0f} mL is under {MIN_BRAIN_ML:.0f} mL, far less than any adult brain: the scan "
            "holds only part of the brain, or skull stripping failed.",
        ))
    elif not lo <= volume_ml <= hi:
        flags.append(qc_flag(
            "mask-volume",
            f"brain volume {volume_ml:.0f} mL is outside the plausible adult range {lo:.0f}-{hi:.0f} mL: "
            "the mask probably includes skull/scalp or misses brain. Inspect the mask before using the result.",
        ))
    if len(sides) > MAX_EDGE_SIDES:
        flags.append(qc_flag(
            "mask-edge",
            f"the mask touches the edge of the field of view on {len(sides)} sides ({', '.join(sides)}): "
            "the brain may be cut off, or the mask leaks outside the head. Inspect the mask.",
        ))
    return SkullStripQC(
        brain_volume_ml=round(volume_ml, 2),
        voxel_count=count,
        bbox_min=bbox_min,  # type: ignore[arg-type]
        bbox_max=bbox_max,  # type: ignore[arg-type]
        bbox_size_mm=tuple(round(s, 2) for s in bbox_size),  # type: ignore[arg-type]
        fov_fraction=round(count / data.size, 5),
        edge_sides=sides,
        flags=tuple(flags),
    )


def bounding_box(mask: np.ndarray) -> tuple[tuple[int, int, int], tuple[int, int, int]] | None:
    """Inclusive (first, last) voxel indices of a 3D boolean mask's True voxels; None when it has none.

    One pass over the volume (projection onto the first two axes), then the third
    axis inside the box found.
    """
    plane = np.asarray(mask).any(axis=2)
    rows, cols = np.flatnonzero(plane.any(axis=1)), np.flatnonzero(plane.any(axis=0))
    if len(rows) == 0:
        return None
    depth = np.flatnonzero(mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].any(axis=(0, 1)))
    return (int(rows[0]), int(cols[0]), int(depth[0])), (int(rows[-1]), int(cols[-1]), int(depth[-1]))


def touched_sides(mask: Volume) -> tuple[str, ...]:
    """Faces of the field of view (right, left, posterior, ...) that the mask touches."""
    data = np.asarray(mask.data)
    ornt = nib.io_orientation(mask.affine)
    sides = []
    for axis in range(3):
        world_axis, flip = int(ornt[axis, 0]), int(ornt[axis, 1])
        low_name, high_name = _SIDE_NAMES[world_axis]
        if flip < 0:
            low_name, high_name = high_name, low_name
        if (np.take(data, 0, axis=axis) > 0).any():
            sides.append(low_name)
        if (np.take(data, -1, axis=axis) > 0).any():
            sides.append(high_name)
    order = [name for pair in _SIDE_NAMES for name in pair]
    return tuple(sorted(sides, key=order.index))
