"""Reading, checking, re-orienting and writing 3D scans (nibabel)."""

from __future__ import annotations

import contextlib
import errno
import math
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import nibabel as nib
import numpy as np

from .errors import (
    ConstantImageError,
    CorruptFileError,
    DataTypeError,
    DimensionalityError,
    FieldOfViewError,
    NonFiniteVoxelsError,
    OrientationError,
    VoxelSizeError,
)

#: Voxel sizes outside this range (mm) are treated as a broken header.
VOXEL_SIZE_RANGE_MM = (0.05, 20.0)
#: Smallest field of view (mm, along R, A, S after re-orientation) that can hold an adult brain.
MIN_FOV_MM = (110.0, 130.0, 80.0)
#: Deflate cannot compress more than about 1032:1, so a .nii.gz whose header needs more data than this
#: many times its size is truncated (checked before any voxel is read or memory is reserved).
MAX_GZIP_RATIO = 1100
#: A voxel axis is "thick" when its spacing is this many times the finest one.
THICK_RATIO = 1.5

_WORLD_AXES = ("R-L (sagittal)", "A-P (coronal)", "S-I (axial)")


@dataclass(frozen=True)
class Volume:
    """A 3D scalar image and its voxel-to-world (RAS, mm) affine."""

    data: np.ndarray
    affine: np.ndarray
    source: str = ""

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel sizes (mm) along the three voxel axes."""
        return tuple(float(s) for s in voxel_sizes(self.affine))  # type: ignore[return-value]

    def with_data(self, data: np.ndarray) -> "Volume":
        """Same geometry, new voxels."""
        return replace(self, data=data)


@dataclass(frozen=True)
class ThickAxis:
    """The through-plane axis of a scan: voxel index, spacing, and world direction."""

    index: int  # voxel axis 0, 1 or 2
    spacing: float  # mm
    world_axis: int  # 0 = R-L, 1 = A-P, 2 = S-I
    anisotropy: float  # thick spacing / finest spacing

    @property
    def is_thick(self) -> bool:
        return self.anisotropy >= THICK_RATIO

    @property
    def world_name(self) -> str:
        return _WORLD_AXES[self.world_axis]


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """Voxel sizes (mm) from the columns of a 4x4 affine."""
    return np.sqrt((np.asarray(affine, dtype=float)[:3, :3] ** 2).sum(axis=0))


def thick_axis(affine: np.ndarray) -> ThickAxis:
    """Find the voxel axis with the largest spacing and the world axis it runs along."""
    sizes = voxel_sizes(affine)
    index = int(np.argmax(sizes))
    column = np.abs(np.asarray(affine, dtype=float)[:3, index])
    return ThickAxis(
        index=index,
        spacing=float(sizes[index]),
        world_axis=int(np.argmax(column)),
        anisotropy=float(sizes[index] / max(sizes.min(), 1e-12)),
    )


def load_nifti(path: str | os.PathLike) -> Volume:
    """Read a .nii / .nii.gz file into float32 voxels and its affine (no re-orientation).

    A trailing singleton 4th dimension is dropped; other shapes are checked by
    :func:`validate_volume`. Any failure to parse the file is a :class:`CorruptFileError`;
    colour or complex voxels are a :class:`DataTypeError`, a zero voxel size the header
    leaves unknown a :class:`VoxelSizeError`.
    """
    path = Path(path)
    if not path.is_file():
        raise CorruptFileError(f"{path}: file not found. Check the path and that the file was copied completely.")
    image = None
    try:
        image = nib.load(str(path))
        _check_header(image, path)
        data = np.asarray(image.dataobj, dtype=np.float32)
        affine = np.asarray(image.affine, dtype=float)
    except (CorruptFileError, DataTypeError, VoxelSizeError):
        raise
    except MemoryError as exc:
        raise CorruptFileError(
            f"{path}: the header's dimensions {getattr(image, 'shape', '')} do not fit in memory; the header is broken. "
            "Re-export the scan (e.g. with dcm2niix) and try again."
        ) from exc
    except Exception as exc:  # nibabel and numpy raise many types (HeaderDataError, EOFError, zlib.error, ...)
        raise CorruptFileError(
            f"{path}: cannot be read as a NIfTI image ({type(exc).__name__}: {exc}). "
            "The file may be truncated or not NIfTI; re-export it (e.g. with dcm2niix) and try again."
        ) from exc
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    return Volume(data=data, affine=affine, source=str(path))


def _check_header(image, path: Path) -> None:
    """Refuse, before reading voxels: colour/complex voxels, more data than the file can hold, and a zero
    voxel size the affine would take from the header's pixdim.

    nibabel replaces a zero pixdim by 1 mm (and a negative one by its absolute value); without an
    sform that invented 1 mm would become the scan's spacing, so a zero is refused here.
    """
    dtype = np.dtype(image.get_data_dtype())
    if dtype.fields is not None or dtype.kind in "cVO":
        kind = "complex numbers" if dtype.kind == "c" else "colour (RGB) or compound values"
        raise DataTypeError(
            f"{path}: the voxels are {kind} ({dtype}), not grayscale intensities. "
            "Export the T1 scan as a single-channel (magnitude) image and try again."
        )
    header = image.header
    size = path.stat().st_size
    needed = math.prod(int(n) for n in image.shape) * dtype.itemsize
    compressed = path.name.endswith(".gz")
    if needed > size * (MAX_GZIP_RATIO if compressed else 1):
        raise CorruptFileError(
            f"{path}: the header describes {tuple(image.shape)} voxels of {dtype} ({needed / 1e6:.1f} MB), more than "
            f"this {size}-byte{' compressed' if compressed else ''} file can hold: it is truncated or its header is wrong. "
            "Re-export the scan (e.g. with dcm2niix) and try again."
        )
    if not isinstance(header, nib.Nifti1Header) or int(header["sform_code"]) > 0:
        return
    with nib.openers.ImageOpener(str(path)) as stream:
        raw = type(header).from_fileobj(stream, check=False)
    stored = np.asarray(raw["pixdim"][1 : 1 + min(3, len(image.shape))], dtype=float)
    zero = [axis for axis, value in enumerate(stored) if value == 0]
    if zero:
        raise VoxelSizeError(
            f"{path}: the header gives voxel size 0 along axis {zero} (pixdim) and no sform, so the spacing is unknown. "
            "Re-convert the DICOM series (dcm2niix) so the spacing is stored."
        )


def validate_volume(volume: Volume, *, allow_non_axial: bool = False, check_fov: bool = True) -> ThickAxis:
    """Check that a volume is a usable 3D T1 scan; raise a specific error if not.

    Returns the scan's thick axis. ``allow_non_axial`` accepts scans whose thick
    axis is not inferior-superior (sagittal/coronal acquisitions), which the
    method was not validated on.
    """
    name = volume.source or "the input image"
    data = volume.data
    if data.ndim != 3:
        raise DimensionalityError(
            f"{name}: has {data.ndim} dimensions {tuple(data.shape)}; a single 3D volume is needed. "
            "Select one volume of a 4D series, or load the whole 3D scan instead of one slice."
        )
    if min(data.shape) < 2:
        raise DimensionalityError(
            f"{name}: shape {tuple(data.shape)} is a single 2D slice; load the whole series as one 3D volume."
        )
    sizes = voxel_sizes(volume.affine)
    lo, hi = VOXEL_SIZE_RANGE_MM
    if not np.all(np.isfinite(volume.affine)) or np.any(sizes < lo) or np.any(sizes > hi):
        raise VoxelSizeError(
            f"{name}: voxel sizes {np.round(sizes, 4).tolist()} mm are outside {lo}-{hi} mm; the header is broken. "
            "Re-convert the DICOM series (dcm2niix) so the spacing is stored."
        )
    if abs(np.linalg.det(volume.affine[:3, :3])) < 1e-9:
        raise VoxelSizeError(f"{name}: the voxel-to-world matrix is singular; re-convert the scan.")
    lowest, highest = float(np.min(data)), float(np.max(data))  # NaN or inf shows up in one of them
    if not (np.isfinite(lowest) and np.isfinite(highest)):
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise NonFiniteVoxelsError(f"{name}: {bad} voxels are NaN or infinite; re-export the scan without them.")
    if highest == lowest:
        raise ConstantImageError(
            f"{name}: every voxel equals {highest}; the image holds no anatomy. Check the export."
        )
    thick = thick_axis(volume.affine)
    if thick.is_thick and thick.world_axis != 2 and not allow_non_axial:
        raise OrientationError(
            f"{name}: slices are {thick.spacing:.1f} mm thick along {thick.world_name}, so this is not an axial "
            "acquisition. The method is validated on axial T1 only; use an axial series, or override "
            "(allow_non_axial / --allow-non-axial) at your own risk."
        )
    if check_fov:
        extent = world_extent(volume)
        if np.any(extent < np.asarray(MIN_FOV_MM)):
            raise FieldOfViewError(
                f"failed QC: field-of-view: {name}: field of view {np.round(extent).astype(int).tolist()} mm (R-L, A-P, S-I) is smaller than "
                f"{list(MIN_FOV_MM)} mm and cannot hold a whole adult brain. Use a series that covers the whole head."
            )
    return thick


def world_extent(volume: Volume) -> np.ndarray:
    """Field of view (mm) along the world R-L, A-P and S-I axes."""
    corners = np.array([[i, j, k, 1.0] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    corners[:, :3] *= np.asarray(volume.shape, dtype=float)
    corners[:, :3] -= 0.5
    world = corners @ np.asarray(volume.affine, dtype=float).T
    return world[:, :3].max(axis=0) - world[:, :3].min(axis=0)


def to_canonical(volume: Volume) -> Volume:
    """Re-orient to the closest RAS+ voxel order (flips and axis swaps only, no resampling)."""
    image = nib.Nifti1Image(volume.data, volume.affine)
    canonical = nib.as_closest_canonical(image)
    return Volume(data=np.asarray(canonical.dataobj), affine=canonical.affine, source=volume.source)


def load_volume(path: str | os.PathLike, *, allow_non_axial: bool = False) -> Volume:
    """Read and check a scan; returns it in its original voxel order."""
    volume = load_nifti(path)
    validate_volume(volume, allow_non_axial=allow_non_axial)
    return volume


#: What a user reads for the usual reasons a file cannot be written.
_WRITE_ERRORS = {
    errno.ENOSPC: "the disk is full (no space left on device)",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied (the folder is not writable)",
    errno.EPERM: "permission denied (the folder is not writable)",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EEXIST: "a part of the path is a file, not a folder",  # mkdir where a file has the folder's name
}


def os_error_reason(exc: OSError) -> str:
    """A short reason for a failed write, e.g. 'the disk is full (no space left on device)'."""
    reason = _WRITE_ERRORS.get(exc.errno, exc.strerror or str(exc))
    return f"{reason} [{exc.filename}]" if exc.filename else reason


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; choose another name or allow overwriting.")
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def save_nifti(
    volume: Volume, path: str | os.PathLike, *, overwrite: bool = True, dtype=np.float32, description: str = ""
) -> Path:
    """Write a volume as NIfTI atomically; the affine is stored as both qform and sform.

    ``description`` goes into the header's 80-character ``descrip`` field (provenance).
    """
    image = nib.Nifti1Image(np.asarray(volume.data, dtype=dtype), np.asarray(volume.affine, dtype=float))
    if description:
        image.header["descrip"] = description.encode("ascii", "replace")[:79]
    image.set_qform(volume.affine, code=1)
    image.set_sform(volume.affine, code=1)
    with atomic_path(path, overwrite=overwrite) as tmp:
        nib.save(image, str(tmp))
    return Path(path)


def volume_from_kji(array_kji: np.ndarray, ijk_to_ras: np.ndarray, source: str = "") -> Volume:
    """A Volume from a Slicer-style array (indexed [k, j, i]) and its IJK-to-RAS matrix."""
    data = np.ascontiguousarray(np.asarray(array_kji, dtype=np.float32).transpose(2, 1, 0))
    return Volume(data=data, affine=np.asarray(ijk_to_ras, dtype=float), source=source)


def kji_from_volume(volume: Volume) -> np.ndarray:
    """The voxels of a Volume in Slicer's [k, j, i] array order."""
    return np.ascontiguousarray(np.asarray(volume.data).transpose(2, 1, 0))
