"""A case's saliency map written as NIfTI on its scan's own grid, with the columns a results row gets."""

from __future__ import annotations

import os
from pathlib import Path

from ..inputs import case_key
from ..io import save_nifti
from .gradients import DEFAULT_METHOD


def save_case_saliency(predictor, case, folder: str | os.PathLike, method: str = DEFAULT_METHOD):
    """Write ``<scan>_saliency.nii.gz`` into ``folder``; return the saliency and the row's saliency columns."""
    sal = predictor.saliency(case, method)
    return sal, write_saliency(sal, case, folder)


def write_saliency(sal, case, folder: str | os.PathLike) -> dict:
    """Write a computed saliency as ``<scan>_saliency.nii.gz`` into ``folder``; return the row's saliency columns."""
    path = Path(folder) / f"{case_key(case.volume.source)}_saliency.nii.gz"
    save_nifti(sal.on_input, path, description=f"brainage saliency {sal.method}; mask {case.skull_strip}")
    return {"saliency_path": str(path), "saliency_method": sal.method, "saliency_inside_brain": round(sal.inside_brain, 4)}
