"""Axial, coronal and sagittal snapshots of the scan with the brain-mask outline and the saliency overlay."""

from __future__ import annotations

import numpy as np

from ..io import Volume, to_canonical
from ..report import _aspects, _brain_center, _views

VIEWS = ("axial", "coronal", "sagittal")
SALIENCY_FLOOR = 0.25  # share of the map's 99th percentile below which nothing is drawn


def scaled_saliency(data: np.ndarray) -> np.ndarray:
    """Saliency divided by its 99th percentile of non-zero voxels, clipped to 0..1."""
    positive = data[data > 0]
    scale = float(np.percentile(positive, 99)) if positive.size else 1.0
    return np.clip(data / (scale or 1.0), 0, 1)


def draw_views(axes, volume: Volume, mask: Volume | None, saliency: Volume | None = None) -> None:
    """Fill three axes with the views through the brain's centre, in neurological convention (the patient's
    left on the image's left; each view is labelled L/R or P/A at its lower corners)."""
    vol = to_canonical(volume)
    msk = to_canonical(mask) if mask is not None else None
    sal = to_canonical(saliency) if saliency is not None else None
    center = _brain_center(msk.data) if msk is not None else (np.asarray(vol.shape) - 1) / 2
    inside = vol.data[msk.data > 0] if msk is not None and np.any(msk.data > 0) else vol.data[vol.data > 0]
    lo, hi = np.percentile(inside, [1, 99]) if inside.size else (float(vol.data.min()), float(vol.data.max()))
    views = zip(axes, _views(vol.data, center), _aspects(vol.spacing), VIEWS)
    masks = _views(msk.data, center) if msk is not None else [None] * 3
    sals = _views(scaled_saliency(sal.data), center) if sal is not None else [None] * 3
    for (ax, img, aspect, name), m, s in zip(views, masks, sals):
        ax.imshow(img, cmap="gray", origin="lower", vmin=lo, vmax=hi, aspect=aspect, interpolation="nearest")
        if m is not None and np.any(m > 0.5):
            ax.contour(m, levels=[0.5], colors="lime", linewidths=0.7)
        if s is not None:
            ax.imshow(np.ma.masked_less(s, SALIENCY_FLOOR), cmap="hot", origin="lower", vmin=0, vmax=1, alpha=0.55,
                      aspect=aspect, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        left, right = ("L", "R") if name in ("axial", "coronal") else ("P", "A")
        ax.text(0.02, 0.02, left, transform=ax.transAxes, color="yellow", fontsize=8)
        ax.text(0.98, 0.02, right, transform=ax.transAxes, color="yellow", fontsize=8, ha="right")
