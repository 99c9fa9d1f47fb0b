"""PreprocessSpec: every preprocessing parameter in one place.

A copy is stored in every model package's card, so inference always prepares
a scan exactly as the model's training data were prepared (steps 3-7 of the method, Kim et al. 2025).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

SPEC_VERSION = 1


@dataclass(frozen=True)
class PreprocessSpec:
    """Parameters of Kim et al. 2025 preprocessing; defaults are the paper's.

    ``crop_center`` is the project's decision where the paper is silent on what
    "centre" means: ``"foreground"`` centres the crop on the bounding box of the
    skull-stripped brain (robust to where the head sits in the field of view);
    ``"image"`` centres it on the image grid.
    """

    target_spacing_mm: tuple[float, float, float] = (2.0, 2.0, 2.0)
    roi_size: tuple[int, int, int] = (80, 120, 40)  # sagittal x coronal x axial voxels
    interpolation: str = "bilinear"  # MONAI Spacing mode (trilinear in 3D)
    norm_lower_percentile: float = 1.0
    norm_upper_percentile: float = 99.0
    clip_percentile: float = 99.9
    max_background_fraction: float = 0.92
    crop_center: str = "foreground"
    slice_gap_mm: float = 7.0  # synthetic clinical slicing (training only)
    version: int = SPEC_VERSION

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PreprocessSpec":
        """Build from a card's dict; unknown keys are an error (a newer spec)."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(
                f"preprocessing spec has unknown fields {sorted(unknown)}; this model needs a newer SlicerBrainAge"
            )
        values = dict(data)
        for key in ("target_spacing_mm", "roi_size"):
            if key in values:
                values[key] = tuple(values[key])
        spec = cls(**values)
        if spec.version > SPEC_VERSION:
            raise ValueError(f"preprocessing spec version {spec.version} is newer than this SlicerBrainAge supports")
        return spec
