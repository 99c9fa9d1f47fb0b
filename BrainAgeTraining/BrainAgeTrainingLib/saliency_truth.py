"""Saliency checked against ground truth: synthetic subjects whose ageing maps say which voxels aged.

For each scan and method: the area under the ROC curve of voxel saliency against the ageing map
(voxels whose tissue changed vs unchanged, inside the brain), the share of saliency inside the
brain, the seconds it took, and the years each region moves the age (occlusion); and how much the
map of one 3D scan changes with the slicing offset of its thick-slice versions. Used by
``benchmarks/saliency_truth.py`` and ``benchmarks/saliency_offsets.py``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy.stats import mannwhitneyu

from BrainAgeLib.io import Volume
from BrainAgeLib.saliency import fraction_inside, smooth_for_display, to_reference_grid, top_percent
from BrainAgeLib.slicing import synthetic_clinical_scans

#: An ageing-map voxel counts as aged from this value: at least half its tissue relabelled, or moved >= 1.5 mm.
#: (The map is max(relabelled tissue fraction, ventricular displacement / 3 mm); the smooth displacement field
#: makes nearly every voxel > 0, so "> 0" would call the whole brain aged.)
AGED_FROM = 0.5


def voxel_auc(score: np.ndarray, truth: np.ndarray, inside: np.ndarray, aged_from: float = 0.0) -> float:
    """ROC AUC of ``score`` for ``truth > aged_from`` over the voxels ``inside`` (Mann-Whitney U / (n1 n0), ties 1/2)."""
    region, aged = inside > 0, truth > aged_from
    positive, negative = score[region & aged], score[region & ~aged]
    if positive.size == 0 or negative.size == 0:
        return float("nan")
    u = mannwhitneyu(positive, negative, alternative="two-sided", method="asymptotic").statistic
    return float(u / (positive.size * negative.size))


@dataclass
class MethodScore:
    method: str
    auc_raw: float  # the map as computed, on the scan's grid
    auc_display: float  # smoothed as it is shown (saliency.smooth_for_display)
    inside_brain: float
    seconds: float


def score_methods(predictor, case, truth: Volume, brain: np.ndarray, methods, **method_kwargs) -> list[MethodScore]:
    """Each method's map for one prepared case against its ageing map (all on the scan's grid)."""
    scores = []
    for method in methods:
        t0 = time.perf_counter()
        sal = predictor.saliency(case, method, **method_kwargs.get(method, {}))
        seconds = time.perf_counter() - t0
        shown = smooth_for_display(sal.on_input).data
        scores.append(MethodScore(method, voxel_auc(sal.on_input.data, truth.data, brain, AGED_FROM),
                                  voxel_auc(shown, truth.data, brain, AGED_FROM), fraction_inside(sal.on_input.data, brain),
                                  seconds))
    return scores


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return float(2 * np.logical_and(a, b).sum() / total) if total else float("nan")


def offset_consistency(predictor, brain: Volume, truth: Volume, mask: np.ndarray, method: str, gap_mm: float = 7.0,
                       top: float = 10.0, **method_kwargs) -> dict:
    """One 3D brain cut into thick axial scans at every slicing offset (the method's synthetic slicing):
    each offset's map, brought back to the 3D scan's grid and smoothed for display, against the others.

    Returns the number of offsets, the pairwise Pearson r of the maps inside the brain (median, min), the
    pairwise Dice of their top ``top`` % (median, min), and each offset's AUC against the ageing map
    (median, min, max).
    """
    inside = mask > 0
    maps = []
    for scan in synthetic_clinical_scans(brain, gap_mm):
        case = predictor.prepare_volume(scan)
        sal = predictor.saliency(case, method, **method_kwargs)
        maps.append(smooth_for_display(to_reference_grid(sal.model_grid, case.prepared.affine, brain)).data)
    pairs = np.triu_indices(len(maps), 1)
    r = np.corrcoef(np.stack([m[inside] for m in maps]))[pairs]
    tops = [top_percent(m, top, inside) for m in maps]
    dices = np.array([dice(tops[i], tops[j]) for i, j in zip(*pairs)])
    aucs = np.array([voxel_auc(m, truth.data, inside, AGED_FROM) for m in maps])
    return {"method": method, "offsets": len(maps), "pair_r_median": float(np.median(r)), "pair_r_min": float(r.min()),
            "top_dice_median": float(np.median(dices)), "top_dice_min": float(dices.min()),
            "auc_median": float(np.median(aucs)), "auc_min": float(aucs.min()), "auc_max": float(aucs.max())}
