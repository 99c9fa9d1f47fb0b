"""Model-input preparation, steps 4-7 of the method (Kim et al. 2025: resample, normalise, crop/pad, QC), one named function per step.

resample_to_spacing -> normalize_intensity -> crop_or_pad -> background_fraction / quality gate.
The input is a skull-stripped scan (background = 0). Geometry is carried as a
4x4 affine at every step, so the model grid can be mapped back to the scan.
The grid and the interpolated values are MONAI's (``Spacing``); :func:`prepare` only
skips work whose result is known (voxels that fall on input voxels, the empty background).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Spacing, SpatialResample

from .errors import QualityGateError
from .io import Volume, to_canonical
from .qc_policy import qc_flag
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


def output_grid(volume: Volume, spec: PreprocessSpec) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Affine and shape of the ``spec.target_spacing_mm`` grid MONAI ``Spacing`` puts ``volume`` on (nothing resampled)."""
    shape_only = MetaTensor(torch.empty((1, *volume.shape)), affine=torch.as_tensor(volume.affine, dtype=torch.float64))
    pending = Spacing(pixdim=spec.target_spacing_mm, mode=spec.interpolation, padding_mode="zeros", lazy=True)(shape_only)
    affine = np.asarray(pending.peek_pending_affine(), dtype=float)
    return affine, tuple(int(n) for n in pending.peek_pending_shape())  # type: ignore[return-value]


def _sample_positions(volume: Volume, affine: np.ndarray, shape: tuple[int, ...]) -> list[np.ndarray] | None:
    """Per axis, the input voxel coordinate of every output voxel; None if the grids are not axis-aligned."""
    mapping = np.linalg.solve(np.asarray(volume.affine, dtype=float), affine)
    if np.abs(mapping[:3, :3] - np.diag(np.diag(mapping[:3, :3]))).max() > 1e-9:
        return None
    return [mapping[a, a] * np.arange(shape[a]) + mapping[a, 3] for a in range(3)]


def _support(positions: np.ndarray, exact: bool, lo: int, hi: int) -> np.ndarray:
    """Output voxels whose interpolation support meets the input voxels lo..hi."""
    if exact:
        return (positions >= lo - 1e-6) & (positions <= hi + 1e-6)
    return (positions > lo - 1) & (positions < hi + 1)


def resample_to_grid(
    volume: Volume, affine: np.ndarray, shape: tuple[int, int, int], spec: PreprocessSpec, *, crop_to_content: bool = False
) -> tuple[Volume, tuple[int, int, int]]:
    """Interpolate ``volume`` onto the grid (``affine``, ``shape``); returns (volume, its offset in that grid).

    The values are MONAI ``SpatialResample``'s (trilinear, zero padding), computed with
    less work: along an axis where every sample falls on an input voxel (1 mm -> 2 mm,
    0.5 mm -> 2 mm) the voxels are selected, not interpolated, and only the remaining axes
    go through MONAI. With ``crop_to_content`` only the part of the grid that the non-zero
    input can reach is computed (every other voxel of the grid is 0), and its offset returned.
    """
    positions = _sample_positions(volume, affine, shape)
    data = np.asarray(volume.data)
    if positions is None:  # not axis-aligned to rounding (oblique thick-slice scans): MONAI on the whole grid
        full = SpatialResample(mode=spec.interpolation, padding_mode="zeros")(
            _meta(volume), dst_affine=torch.as_tensor(affine, dtype=torch.float64), spatial_size=shape
        )
        out = np.ascontiguousarray(full.array[0], dtype=np.float32)
        out[np.abs(out) < 1e-6] = 0.0
        return Volume(out, np.asarray(affine, dtype=float), volume.source), (0, 0, 0)
    exact = [len(p) < 2 or bool(p[1] > p[0] and np.all(np.abs(p - np.round(p)) < 1e-6)) for p in positions]
    if crop_to_content:
        nonzero = data != 0
        if not nonzero.any():
            raise QualityGateError("the scan has no brain voxels after skull stripping; check the skull-strip step")
        keep = []
        for axis in range(3):
            hits = np.flatnonzero(nonzero.any(axis=tuple(a for a in range(3) if a != axis)))
            keep.append(np.flatnonzero(_support(positions[axis], exact[axis], int(hits[0]), int(hits[-1]))))
    else:
        keep = [np.arange(n) for n in shape]
    offset = tuple(int(k[0]) if len(k) else 0 for k in keep)
    box = tuple(int(k[-1] - k[0] + 1) if len(k) else 0 for k in keep)
    box_affine = np.asarray(affine, dtype=float) @ _shift(offset)
    out = np.zeros(box, dtype=np.float32)
    # exact axes: select the input voxels that the box's samples fall on (zero padding outside the input)
    picks, out_index, voxel_map = [], [], np.eye(4)
    for axis in range(3):
        if not exact[axis]:
            picks.append(slice(None))
            out_index.append(slice(None))
            continue
        index = np.round(positions[axis][offset[axis]:offset[axis] + box[axis]]).astype(int)
        inside = np.flatnonzero((index >= 0) & (index < data.shape[axis]))
        if len(inside) == 0:
            return Volume(out, box_affine, volume.source), offset
        first, last = int(inside[0]), int(inside[-1])
        step = int(index[first + 1] - index[first]) if last > first else 1
        picks.append(slice(int(index[first]), int(index[last]) + 1, step))
        out_index.append(slice(first, last + 1))
        voxel_map[axis, axis], voxel_map[axis, 3] = step, index[first]
    picked = data[tuple(picks)]
    if all(exact):
        out[tuple(out_index)] = picked
    else:  # MONAI for the axes that need interpolation; the selected axes map one sample per voxel
        sub = Volume(picked, np.asarray(volume.affine, dtype=float) @ voxel_map, volume.source)
        part = SpatialResample(mode=spec.interpolation, padding_mode="zeros")(
            _meta(sub), dst_affine=torch.as_tensor(box_affine, dtype=torch.float64), spatial_size=box
        )
        out = np.ascontiguousarray(part.array[0], dtype=np.float32)
    out[np.abs(out) < 1e-6] = 0.0
    return Volume(out, box_affine, volume.source), offset


def _shift(offset) -> np.ndarray:
    """Voxel translation matrix."""
    matrix = np.eye(4)
    matrix[:3, 3] = offset
    return matrix


def resample_to_spacing(volume: Volume, spec: PreprocessSpec) -> Volume:
    """Step 4: interpolate onto a grid of ``spec.target_spacing_mm`` (the grid and values of MONAI Spacing)."""
    affine, shape = output_grid(volume, spec)
    return resample_to_grid(volume, affine, shape, spec)[0]


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


def _window(data: np.ndarray, start: np.ndarray, roi: np.ndarray) -> np.ndarray:
    """The ``roi``-sized block of ``data`` starting at voxel ``start``, zero where it leaves ``data``."""
    out = np.zeros(tuple(int(n) for n in roi), dtype=np.float32)
    lo = np.maximum(start, 0)
    hi = np.minimum(start + roi, data.shape)
    if np.all(hi > lo):
        source = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        target = tuple(slice(int(a - s), int(b - s)) for a, b, s in zip(lo, hi, start))
        out[target] = data[source]
    return out


def _window_start(center: np.ndarray, roi: np.ndarray) -> np.ndarray:
    return np.floor(center - (roi - 1) / 2.0 + 1e-6).astype(int)


def crop_or_pad(volume: Volume, spec: PreprocessSpec) -> Volume:
    """Step 6: crop or zero-pad to ``spec.roi_size`` around the chosen centre; the affine follows the window."""
    roi = np.asarray(spec.roi_size)
    start = _window_start(crop_center_voxel(volume.data, spec.crop_center), roi)
    return Volume(_window(volume.data, start, roi), np.asarray(volume.affine, dtype=float) @ _shift(start), volume.source)


def background_fraction(data: np.ndarray) -> float:
    """Step 7: fraction of voxels that are background (exactly 0)."""
    return float(np.mean(data == 0))


def prepare(volume: Volume, spec: PreprocessSpec | None = None, *, enforce_qc: bool = False) -> PreparedScan:
    """Steps 4-7 on a skull-stripped scan: canonical RAS, 2 mm, normalised, 80x120x40, QC.

    Only the part of the 2 mm grid that the brain can reach is interpolated and
    normalised (the rest of that grid is 0 by definition); the window is then cut
    from it in the whole grid's coordinates, so the result is that of the whole-grid steps.
    With ``enforce_qc`` a scan failing the gate raises :class:`QualityGateError`;
    otherwise it is returned with ``passed_qc=False`` and the reason.
    """
    spec = spec or PreprocessSpec()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    canonical = to_canonical(volume)
    grid_affine, grid_shape = output_grid(canonical, spec)
    content, offset = resample_to_grid(canonical, grid_affine, grid_shape, spec, crop_to_content=True)
    t1 = time.perf_counter()
    normalized = normalize_intensity(content.data, spec)
    t2 = time.perf_counter()
    roi = np.asarray(spec.roi_size)
    if spec.crop_center == "foreground":
        center = crop_center_voxel(normalized, "foreground") + np.asarray(offset)
    elif spec.crop_center == "image":
        center = (np.asarray(grid_shape) - 1) / 2.0
    else:
        raise ValueError(f"crop_center must be 'foreground' or 'image', not {spec.crop_center!r}")
    start = _window_start(center, roi)
    data = _window(normalized, start - np.asarray(offset), roi)
    affine = grid_affine @ _shift(start)
    t3 = time.perf_counter()
    timings.update(resample=t1 - t0, normalize=t2 - t1, crop=t3 - t2)
    fraction = background_fraction(data)
    messages = []
    if fraction > spec.max_background_fraction:
        messages.append(qc_flag(
            "background",
            f"{fraction:.1%} of the model input is background (limit {spec.max_background_fraction:.0%}): "
            "the scan probably holds only part of the brain, or skull stripping failed",
        ))
    if messages and enforce_qc:
        raise QualityGateError(f"{volume.source or 'scan'}: " + "; ".join(messages))
    return PreparedScan(
        data=data,
        affine=affine,
        background_fraction=fraction,
        passed_qc=not messages,
        qc_messages=messages,
        timings=timings,
    )
