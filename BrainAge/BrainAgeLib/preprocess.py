"""Model-input preparation, METHOD.md steps 4-7, one named function per step.

resample_to_spacing -> normalize_intensity -> crop_or_pad -> background_fraction / quality gate.
The input is a skull-stripped scan (background = 0). Geometry is carried as a
4x4 affine at every step, so the model grid can be mapped back to the scan.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import BorderPad, SpatialCrop, Spacing

from .errors import QualityGateError
from .io import Volume, to_canonical
from .spec import PreprocessSpec


@dataclass
class PreparedScan:
    """A scan ready for the network, with its geometry and QC."""

    data: np.ndarray  # float32, spec.roi_size
    affine: np.ndarray  # model grid voxel -> world (mm)
    background_fraction: float
    passed_qc: bool
    qc_messages: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def _meta(volume: Volume) -> MetaTensor:
    tensor = torch.as_tensor(np.ascontiguousarray(volume.data, dtype=np.float32))[None]
    return MetaTensor(tensor, affine=torch.as_tensor(volume.affine, dtype=torch.float64))


def _volume(meta: MetaTensor, source: str) -> Volume:
    return Volume(
        data=np.ascontiguousarray(meta.array[0], dtype=np.float32),
        affine=np.asarray(meta.affine, dtype=float),
        source=source,
    )


def resample_to_spacing(volume: Volume, spec: PreprocessSpec) -> Volume:
    """Step 4: interpolate onto a grid of ``spec.target_spacing_mm`` (MONAI Spacing)."""
    spacing = Spacing(pixdim=spec.target_spacing_mm, mode=spec.interpolation, padding_mode="zeros")
    out = _volume(spacing(_meta(volume)), volume.source)
    return out.with_data(np.where(np.abs(out.data) < 1e-6, 0.0, out.data).astype(np.float32))


def normalize_intensity(data: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Step 5: z-score, background to 0, clip the top outliers.

    Mean and SD come from the non-background (non-zero) voxels between the
    lower and upper percentiles; the background value is subtracted so the
    background is 0 again; voxels above the ``clip_percentile`` of the
    non-background voxels are set to that value.
    """
    foreground = data != 0
    values = data[foreground]
    if values.size < 2:
        raise QualityGateError("the scan has no brain voxels after skull stripping; check the skull-strip step")
    lo, hi = np.percentile(values, [spec.norm_lower_percentile, spec.norm_upper_percentile])
    core = values[(values >= lo) & (values <= hi)]
    mean, sd = float(core.mean()), float(core.std())
    if sd <= 0:
        raise QualityGateError("brain voxels all have the same intensity; the scan holds no usable contrast")
    z = (data - mean) / sd
    background_value = (0.0 - mean) / sd
    z = z - background_value
    z[~foreground] = 0.0
    ceiling = float(np.percentile(z[foreground], spec.clip_percentile))
    return np.minimum(z, ceiling).astype(np.float32)


def crop_center_voxel(data: np.ndarray, mode: str) -> np.ndarray:
    """Voxel around which to crop: the foreground bounding-box centre, or the image centre."""
    if mode == "foreground":
        nonzero = np.argwhere(data != 0)
        if len(nonzero):
            return (nonzero.min(axis=0) + nonzero.max(axis=0)) / 2.0
    elif mode != "image":
        raise ValueError(f"crop_center must be 'foreground' or 'image', not {mode!r}")
    return (np.asarray(data.shape) - 1) / 2.0


def crop_or_pad(volume: Volume, spec: PreprocessSpec) -> Volume:
    """Step 6: crop or zero-pad to ``spec.roi_size`` around the chosen centre (MONAI BorderPad + SpatialCrop)."""
    roi = np.asarray(spec.roi_size)
    center = crop_center_voxel(volume.data, spec.crop_center)
    start = np.floor(center - (roi - 1) / 2.0 + 1e-6).astype(int)
    margin = roi  # enough padding that the window always fits
    padded = BorderPad(spatial_border=[int(m) for m in margin for _ in (0, 1)])(_meta(volume))
    cropped = SpatialCrop(roi_start=(start + margin).tolist(), roi_end=(start + margin + roi).tolist())(padded)
    return _volume(cropped, volume.source)


def background_fraction(data: np.ndarray) -> float:
    """Step 7: fraction of voxels that are background (exactly 0)."""
    return float(np.mean(data == 0))


def prepare(volume: Volume, spec: PreprocessSpec | None = None, *, enforce_qc: bool = False) -> PreparedScan:
    """Steps 4-7 on a skull-stripped scan: canonical RAS, 2 mm, normalised, 80x120x40, QC.

    With ``enforce_qc`` a scan failing the gate raises :class:`QualityGateError`;
    otherwise it is returned with ``passed_qc=False`` and the reason.
    """
    spec = spec or PreprocessSpec()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    resampled = resample_to_spacing(to_canonical(volume), spec)
    t1 = time.perf_counter()
    normalized = resampled.with_data(normalize_intensity(resampled.data, spec))
    t2 = time.perf_counter()
    cropped = crop_or_pad(normalized, spec)
    t3 = time.perf_counter()
    timings.update(resample=t1 - t0, normalize=t2 - t1, crop=t3 - t2)
    fraction = background_fraction(cropped.data)
    messages = []
    if fraction > spec.max_background_fraction:
        messages.append(
            f"{fraction:.1%} of the model input is background (limit {spec.max_background_fraction:.0%}): "
            "the scan probably holds only part of the brain, or skull stripping failed"
        )
    if messages and enforce_qc:
        raise QualityGateError(f"{volume.source or 'scan'}: " + "; ".join(messages))
    return PreparedScan(
        data=cropped.data,
        affine=cropped.affine,
        background_fraction=fraction,
        passed_qc=not messages,
        qc_messages=messages,
        timings=timings,
    )
