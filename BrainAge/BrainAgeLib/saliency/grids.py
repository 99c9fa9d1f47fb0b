"""Saliency between grids and for the eye: back onto the scan's grid, smoothed, thresholded."""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import SpatialResample
from scipy import ndimage

from ..io import Volume


def to_reference_grid(data: np.ndarray, affine: np.ndarray, reference: Volume) -> Volume:
    """Resample a map from its grid onto ``reference``'s exact shape and affine (MONAI, trilinear)."""
    image = MetaTensor(torch.as_tensor(data, dtype=torch.float32)[None], affine=torch.as_tensor(affine, dtype=torch.float64))
    resample = SpatialResample(mode="bilinear", padding_mode="zeros", dtype=torch.float64)
    out = resample(image, dst_affine=torch.as_tensor(reference.affine, dtype=torch.float64), spatial_size=reference.shape)
    return Volume(data=np.asarray(out[0].numpy(), dtype=np.float32), affine=np.asarray(reference.affine, dtype=float), source=reference.source)


def fraction_inside(saliency: np.ndarray, mask: np.ndarray) -> float:
    """Share of the total saliency that falls inside the brain mask (same grid)."""
    total = float(saliency.sum())
    return float(saliency[mask > 0].sum() / total) if total > 0 else float("nan")


#: Smallest smoothing (FWHM, mm): two voxels of the model's 2 mm grid, where the gradient speckle lives.
MIN_DISPLAY_FWHM_MM = 4.0


def smooth_for_display(saliency: Volume, min_fwhm_mm: float = MIN_DISPLAY_FWHM_MM) -> Volume:
    """Gaussian smoothing at the scale of the scan's own voxels: FWHM along each axis = that axis's
    voxel size, at least ``min_fwhm_mm``. Raw gradient maps are voxel speckle; smoothed, a reader sees regions.
    """
    spacing = np.asarray(saliency.spacing, dtype=float)
    fwhm = np.maximum(spacing, min_fwhm_mm)
    sigma_voxels = fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0))) / spacing
    return saliency.with_data(ndimage.gaussian_filter(np.asarray(saliency.data, dtype=np.float32), sigma_voxels, mode="constant"))


def top_percent(saliency: np.ndarray, percent: float, inside: np.ndarray | None = None) -> np.ndarray:
    """Boolean map of the top ``percent`` % of the (positive, optionally in-mask) saliency voxels."""
    values = saliency[(saliency > 0) & (inside > 0 if inside is not None else True)]
    if values.size == 0 or percent <= 0:
        return np.zeros(saliency.shape, dtype=bool)
    threshold = np.percentile(values, 100.0 - min(percent, 100.0))
    keep = saliency >= threshold
    return keep & (inside > 0) if inside is not None else keep & (saliency > 0)
