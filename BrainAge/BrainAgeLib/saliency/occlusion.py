"""Region occlusion: how many years each region moves the predicted age.

Each region is replaced and the ensemble predicts again; the effect is
``age(scan) - age(scan with the region replaced)``: positive when the region made the brain
look older. Unlike gradient maps this is in years and needs no reading. Two ways to replace it:

- ``"surround"`` (default): a tissue region takes the mean intensity of the brain tissue within
  ``SURROUND_VOXELS`` around it, i.e. "what if this region looked like its neighbourhood".
  Enlarged ventricles filled with the tissue around them is a brain without that enlargement.
  A half of the brain (``HALVES``) has no neighbourhood of its size: it takes the other half's
  mirror image instead, "what if this half looked like the other one", so its effect is the
  years the asymmetry between them adds (0 for a symmetric brain) and the image stays a brain.
- ``"background"``: the region is set to the background value (0 on the normalised model
  input). On T1 scans CSF is nearly as dark as the background, so this barely changes the
  CSF and ventricle regions: it cannot show what their enlargement contributes
  (docs/saliency.md has both measured on subjects with known atrophy).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy import ndimage

from .regions import brain_regions, mirrored

FILLS = ("surround", "background")
DEFAULT_FILL = "surround"
#: Regions replaced by the other half's mirror image under the "surround" fill.
HALVES = ("left", "right")
#: The surrounding tissue of a region: brain voxels this many model-grid voxels (2 mm each) around it.
SURROUND_VOXELS = 2


def replace_region(x: np.ndarray, region: np.ndarray, fill: str = DEFAULT_FILL) -> np.ndarray:
    """The model input with ``region`` replaced (see the module docstring for ``fill``; ``"mirror"``: by the
    input reflected across the brain's midline, what ``"surround"`` does to a half)."""
    if fill not in (*FILLS, "mirror"):
        raise ValueError(f"fill must be one of {FILLS} or 'mirror', not {fill!r}")
    if fill == "mirror":
        return np.where(region, mirrored(x), x).astype(np.float32)
    value = 0.0
    if fill == "surround" and region.any():
        shell = ndimage.binary_dilation(region, iterations=SURROUND_VOXELS) & ~region & (x != 0)
        value = float(x[shell].mean()) if shell.any() else 0.0
    return np.where(region, np.float32(value), x).astype(np.float32)


def occlusion_effects(forward: Callable[[Sequence[np.ndarray]], np.ndarray], x: np.ndarray,
                      regions: dict[str, np.ndarray] | None = None, fill: str = DEFAULT_FILL) -> dict[str, float]:
    """Years each region moves the ensemble age; ``forward`` maps model inputs to (n, folds) ages."""
    regions = brain_regions(x) if regions is None else regions
    names = list(regions)
    occluded = [replace_region(x, regions[name], "mirror" if fill == "surround" and name in HALVES else fill)
                for name in names]
    ages = np.asarray(forward([x, *occluded]), dtype=float).mean(axis=1)
    return {name: float(ages[0] - ages[i + 1]) for i, name in enumerate(names)}


def effects_text(effects: dict[str, float]) -> str:
    """'ventricles +3.1 y, grey matter +1.2 y, ...', largest effect first."""
    ordered = sorted(effects.items(), key=lambda item: -abs(item[1]))
    return ", ".join(f"{name.replace('_', ' ')} {value:+.1f} y" for name, value in ordered)
