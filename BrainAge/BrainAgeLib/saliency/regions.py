"""Regions inside the brain without registration: tissue classes by intensity, ventricles, hemispheres.

Worked out on the model input (canonical RAS+, 2 mm, background exactly 0): the brain's voxels
are split into three T1 intensity classes by k-means (SciPy; darkest = CSF, then grey matter,
then white matter); the ventricles are the CSF in a central box of the brain; the left
and right halves split the brain at its centroid along the R-L axis.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.cluster.vq import kmeans2

REGIONS = ("csf", "ventricles", "grey_matter", "white_matter", "left", "right")
#: The ventricles lie within this share of the brain's R-L and A-P extent from its centre.
CENTRAL_SHARE = 0.2


def tissue_classes(x: np.ndarray) -> np.ndarray:
    """0 background, 1 CSF, 2 grey matter, 3 white matter (3-class k-means on the brain's intensities)."""
    brain = x != 0
    labels = np.zeros(x.shape, dtype=np.uint8)
    values = x[brain].astype(np.float64)
    if values.size < 3:
        return labels
    start = np.percentile(values, [10, 50, 90])
    centres, assigned = kmeans2(values, start, minit="matrix", iter=20, seed=0)
    rank = np.empty(3, dtype=np.uint8)
    rank[np.argsort(centres)] = (1, 2, 3)
    labels[brain] = rank[assigned]
    return labels


def ventricles(csf: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """CSF in the central box of the brain (R-L and A-P within CENTRAL_SHARE of the extent from the centre,
    S-I within the middle half), in components of at least 8 voxels: the lateral and third ventricles."""
    out = np.zeros(csf.shape, dtype=bool)
    coords = np.argwhere(brain)
    if not csf.any() or len(coords) == 0:
        return out
    middle, extent = coords.mean(axis=0), coords.max(axis=0) - coords.min(axis=0) + 1
    share = np.array([CENTRAL_SHARE, CENTRAL_SHARE, 0.25])
    box = tuple(slice(max(0, int(np.floor(m - s * e))), int(np.ceil(m + s * e)) + 1) for m, s, e in zip(middle, share, extent))
    central = np.zeros(csf.shape, dtype=bool)
    central[box] = csf[box]
    components, count = ndimage.label(central)
    sizes = ndimage.sum(central, components, range(1, count + 1))
    keep = np.zeros(count + 1, dtype=bool)
    keep[1:] = sizes >= 8
    return keep[components]


def midline(brain: np.ndarray) -> float:
    """The R-L index of the brain's centroid (the model grid's first axis), where the halves meet."""
    coords = np.argwhere(brain)
    return float(coords[:, 0].mean()) if len(coords) else brain.shape[0] / 2


def mirrored(x: np.ndarray) -> np.ndarray:
    """``x`` reflected left-right across the brain's :func:`midline` (linear interpolation; background stays 0)."""
    flipped = x[::-1]
    return ndimage.shift(flipped, (2 * midline(x != 0) - (x.shape[0] - 1), 0, 0), order=1, mode="constant", cval=0.0)


def brain_regions(x: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks of :data:`REGIONS` on the model input ``x`` (3D, background 0)."""
    brain = x != 0
    classes = tissue_classes(x)
    csf = classes == 1
    vent = ventricles(csf, brain)
    centre_rl = midline(brain)
    rl = np.arange(x.shape[0])[:, None, None]
    return {
        "csf": csf & ~vent,
        "ventricles": vent,
        "grey_matter": classes == 2,
        "white_matter": classes == 3,
        "left": brain & (rl < centre_rl),  # RAS+: the first axis grows towards the right
        "right": brain & (rl >= centre_rl),
    }
