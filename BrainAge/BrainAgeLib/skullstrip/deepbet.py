"""deepbet (Fisch et al. 2024) backend, via PyPI ``deepbet`` (MIT, TorchScript weights inside).

deepbet installs its weights as a top-level ``data/models`` folder beside its
package in site-packages; nothing of ours is named ``data``, so nothing collides.
Its GUI (customtkinter) is only imported by ``deepbet.ui``, never here.
"""

from __future__ import annotations

import warnings as _warnings
from pathlib import Path

import numpy as np

from ..errors import SkullStripError
from . import install_hint, installed_version

PACKAGE = "deepbet"
#: Probability above which a voxel is brain (deepbet's default).
THRESHOLD = 0.5

_INSTALL_HINT = install_hint("deepbet==1.0.2", "hd-bet, none")


def version() -> str:
    return installed_version(PACKAGE, "deepbet", _INSTALL_HINT)


def weight_files() -> tuple[Path, Path]:
    """The two TorchScript files (brain model, bounding-box model) installed with deepbet."""
    try:
        from deepbet.utils import DATA_PATH
    except ImportError as exc:
        raise SkullStripError(f"the deepbet backend cannot be imported ({exc}). {_INSTALL_HINT}") from exc
    paths = (Path(DATA_PATH) / "models" / "model.pt", Path(DATA_PATH) / "models" / "bbox_model.pt")
    for path in paths:
        if not path.is_file():
            raise SkullStripError(
                f"deepbet weights {path} are missing; weights are never downloaded. "
                "Reinstall the package: pip install --force-reinstall --no-deps deepbet==1.0.2"
            )
    return paths


def predict_mask(
    data: np.ndarray,
    spacing: tuple[float, float, float],
    *,
    device: str = "cpu",
    folds: int = 1,
    tta: bool = False,
) -> tuple[np.ndarray, list[str]]:
    """Brain mask (bool, same shape) of a RAS+ ordered head; returns (mask, warnings).

    deepbet works on the RAS+ array at any spacing (it resizes internally), so
    ``spacing`` is unused; it has one model and no test-time augmentation.
    """
    warnings = []
    if folds != 1 or tta:
        warnings.append("backend-option: deepbet has a single model and no test-time augmentation; folds/TTA were ignored.")
    import torch

    model_path, bbox_path = weight_files()
    from deepbet import BrainExtraction

    with _warnings.catch_warnings():  # torch.jit.load deprecation notice, not ours to fix
        _warnings.simplefilter("ignore", DeprecationWarning)
        extractor = BrainExtraction(no_gpu=True, model_path=str(model_path), bbox_model_path=str(bbox_path))
    extractor.model.to(torch.device(device))
    extractor.bbox_model.to(torch.device(device))
    image = np.ascontiguousarray(np.asarray(data, dtype=np.float32))
    try:
        probability = extractor.run_model(image)
        mask = extractor.postprocess(probability > THRESHOLD)
    except (AssertionError, ValueError) as exc:  # empty foreground / empty mask
        raise SkullStripError(
            f"deepbet found no brain in this image ({exc}). Check that it is a T1-weighted head MRI "
            "with the brain inside the field of view."
        ) from exc
    return np.asarray(mask, dtype=bool), warnings
