"""The ``none`` backend: the input is already brain-only; its non-background voxels are the mask.

It also checks the claim: a head that still has skull and scalp shows far more
non-background tissue than any brain, and little exactly-uniform background.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .. import __version__
from .qc import bounding_box

PACKAGE = "slicer-brainage"
#: Every voxel outside this backend's mask holds the image minimum (the mask is all voxels above it, holes filled).
OUTSIDE_MASK_IS_MINIMUM = True
#: Non-background tissue above this volume (mL) cannot be a brain alone.
MAX_BRAIN_ONLY_ML = 2500.0
#: Brain-only images have at least this fraction of voxels at the background value.
MIN_BACKGROUND_FRACTION = 0.25


def version() -> str:
    return __version__


def background_value(data: np.ndarray) -> float:
    """The background value of a skull-stripped image: its minimum (usually 0)."""
    return float(np.min(data))


def predict_mask(
    data: np.ndarray,
    spacing: tuple[float, float, float],
    *,
    device: str = "cpu",
    folds: int = 1,
    tta: bool = False,
) -> tuple[np.ndarray, list[str]]:
    """Mask = non-background voxels with enclosed holes filled; returns (mask, warnings)."""
    data = np.asarray(data)
    background = background_value(data)
    tissue = data > background
    return fill_holes(tissue), skull_warnings(tissue, spacing)


def fill_holes(tissue: np.ndarray) -> np.ndarray:
    """Tissue plus every background pocket that does not reach the image border.

    Same result as ``ndimage.binary_fill_holes`` (6-connected background): one
    labelling pass over the tissue's bounding box plus a one-voxel frame (pockets
    that reach the frame reach the border), not the whole field of view.
    """
    tissue = np.asarray(tissue, dtype=bool)
    box = bounding_box(tissue)
    if box is None:
        return np.zeros(tissue.shape, dtype=bool)
    lo = [max(int(a) - 1, 0) for a in box[0]]
    hi = [min(int(b) + 2, n) for b, n in zip(box[1], tissue.shape)]
    window = tuple(slice(a, b) for a, b in zip(lo, hi))
    inner = np.zeros([b - a + 2 for a, b in zip(lo, hi)], dtype=bool)  # background frame around the window
    inner[1:-1, 1:-1, 1:-1] = ~tissue[window]
    inner[0], inner[-1], inner[:, 0], inner[:, -1], inner[:, :, 0], inner[:, :, -1] = (True,) * 6
    labels, _ = ndimage.label(inner)
    outside = np.zeros(labels.max() + 1, dtype=bool)
    outside[labels[0, 0, 0]] = True  # the frame is one connected background component
    filled = np.zeros(tissue.shape, dtype=bool)
    filled[window] = ~outside[labels[1:-1, 1:-1, 1:-1]]
    return filled


def skull_warnings(tissue: np.ndarray, spacing: tuple[float, float, float]) -> list[str]:
    """Warnings when a supposedly brain-only image clearly still contains the skull."""
    count = np.count_nonzero(tissue)
    tissue_ml = float(count * np.prod(spacing) / 1000.0)
    background_fraction = 1.0 - count / tissue.size
    reasons = []
    if tissue_ml > MAX_BRAIN_ONLY_ML:
        reasons.append(f"{tissue_ml:.0f} mL of non-background tissue (a brain is under {MAX_BRAIN_ONLY_ML:.0f} mL)")
    if background_fraction < MIN_BACKGROUND_FRACTION:
        reasons.append(
            f"only {100 * background_fraction:.0f}% of voxels are background "
            f"(a skull-stripped image has at least {100 * MIN_BACKGROUND_FRACTION:.0f}%)"
        )
    if not reasons:
        return []
    return [
        "skull-residue: skull-strip backend 'none' was chosen, but this image still seems to contain skull and scalp: "
        + "; ".join(reasons)
        + ". Choose the hd-bet or deepbet backend instead, or give a brain-only image."
    ]
