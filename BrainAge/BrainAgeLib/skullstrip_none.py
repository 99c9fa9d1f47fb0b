"""The ``none`` backend: the input is already brain-only; its non-background voxels are the mask.

It also checks the claim: a head that still has skull and scalp shows far more
non-background tissue than any brain, and little exactly-uniform background.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from . import __version__

PACKAGE = "slicer-brainage"
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

    Same result as ``ndimage.binary_fill_holes`` (6-connected background), about
    twice as fast on a 1 mm head: one labelling pass instead of iterated dilation.
    """
    labels, _ = ndimage.label(~tissue)
    faces = (labels[0], labels[-1], labels[:, 0], labels[:, -1], labels[:, :, 0], labels[:, :, -1])
    outside = np.zeros(labels.max() + 1, dtype=bool)
    outside[np.concatenate([f.ravel() for f in faces])] = True
    outside[0] = False  # label 0 is tissue
    return ~outside[labels]


def skull_warnings(tissue: np.ndarray, spacing: tuple[float, float, float]) -> list[str]:
    """Warnings when a supposedly brain-only image clearly still contains the skull."""
    tissue_ml = float(tissue.sum() * np.prod(spacing) / 1000.0)
    background_fraction = 1.0 - float(tissue.mean())
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
        "skull-strip backend 'none' was chosen, but this image still seems to contain skull and scalp: "
        + "; ".join(reasons)
        + ". Choose the hd-bet or deepbet backend instead, or give a brain-only image."
    ]
