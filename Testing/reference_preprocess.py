"""The whole-grid preprocessing with MONAI transforms only, as a reference for the fast path in BrainAgeLib.preprocess."""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import BorderPad, Spacing, SpatialCrop

from BrainAgeLib.io import Volume, to_canonical
from BrainAgeLib.preprocess import crop_center_voxel, normalize_intensity
from BrainAgeLib.spec import PreprocessSpec


def _meta(volume: Volume) -> MetaTensor:
    return MetaTensor(torch.as_tensor(np.array(volume.data, dtype=np.float32))[None], affine=torch.as_tensor(volume.affine, dtype=torch.float64))


def reference_resample(volume: Volume, spec: PreprocessSpec) -> Volume:
    """MONAI Spacing on the whole volume (float64), values under 1e-6 set to 0."""
    out = Spacing(pixdim=spec.target_spacing_mm, mode=spec.interpolation, padding_mode="zeros")(_meta(volume))
    data = np.asarray(out.array[0], dtype=np.float32)
    return Volume(np.where(np.abs(data) < 1e-6, 0.0, data).astype(np.float32), np.asarray(out.affine, dtype=float), volume.source)


def reference_prepare(volume: Volume, spec: PreprocessSpec | None = None) -> Volume:
    """Canonical -> MONAI Spacing -> normalise -> MONAI BorderPad + SpatialCrop: the model input and its affine."""
    spec = spec or PreprocessSpec()
    resampled = reference_resample(to_canonical(volume), spec)
    normalized = resampled.with_data(normalize_intensity(resampled.data, spec))
    roi = np.asarray(spec.roi_size)
    start = np.floor(crop_center_voxel(normalized.data, spec.crop_center) - (roi - 1) / 2.0 + 1e-6).astype(int)
    padded = BorderPad(spatial_border=[int(m) for m in roi for _ in (0, 1)])(_meta(normalized))
    cropped = SpatialCrop(roi_start=(start + roi).tolist(), roi_end=(start + 2 * roi).tolist())(padded)
    return Volume(np.asarray(cropped.array[0], dtype=np.float32), np.asarray(cropped.affine, dtype=float), volume.source)
