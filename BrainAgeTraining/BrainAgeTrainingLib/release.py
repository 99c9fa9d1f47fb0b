"""Release a trained package for shipping: half-precision fold files, checked against float32, and a
model card that carries the data credit, the cross-validation results, the intended use and limits.

The ages of the half-precision package are compared with the float32 package on real model inputs;
the largest difference is written into the card, and a difference above ``tolerance`` refuses the release.
"""

from __future__ import annotations

import copy
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from BrainAgeLib.package import load_package, save_package

from .crossval.predictions import forward_arrays


@dataclass
class ReleaseResult:
    package: Path
    max_age_difference: float
    n_inputs: int
    largest_file_mib: float


def ensemble_ages(models: list[torch.nn.Module], arrays: list[np.ndarray], batch: int = 16) -> np.ndarray:
    """Fold-by-input ages (float64) of model-ready arrays."""
    return np.array([forward_arrays(model.eval(), arrays, batch) for model in models], dtype=np.float64)


def release_package(source: str | os.PathLike, dest: str | os.PathLike, check_inputs: list[np.ndarray], *,
                    card_updates: dict | None = None, training_data_updates: dict | None = None,
                    tolerance: float = 0.05, dtype: str = "float16") -> ReleaseResult:
    """Write ``source`` (float32 package) to ``dest`` in ``dtype`` with an updated card; verify float16 ages."""
    loaded = load_package(source)
    card = copy.deepcopy(loaded.card)
    for key, value in (card_updates or {}).items():
        setattr(card, key, value)
    card.training_data = {**card.training_data, **(training_data_updates or {})}
    if dtype == "float32":  # the weights as trained: nothing to check
        card.training_data["weights_storage"] = {"dtype": "float32"}
        save_package(dest, loaded.models, card, overwrite=True)
        largest = max(Path(dest, f["file"]).stat().st_size for f in card.folds) / 2 ** 20
        return ReleaseResult(Path(dest), 0.0, 0, largest)
    reference = ensemble_ages(loaded.models, check_inputs)
    halves = [copy.deepcopy(m).half() for m in loaded.models]
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=Path(dest).parent) as tmp:  # checked before dest is touched
        released = load_package(save_package(Path(tmp) / "float16", halves, copy.deepcopy(card)))
        difference = float(np.max(np.abs(ensemble_ages(released.models, check_inputs) - reference)))
    if difference > tolerance:
        raise ValueError(f"float16 weights move an age by {difference:.3f} y (> {tolerance} y); release in float32")
    card.training_data["weights_storage"] = {"dtype": "float16", "max_age_difference_vs_float32_y": round(difference, 5),
                                             "checked_on_model_inputs": len(check_inputs)}
    save_package(dest, halves, card, overwrite=True)
    largest = max(Path(dest, f["file"]).stat().st_size for f in card.folds) / 2 ** 20
    return ReleaseResult(Path(dest), difference, len(check_inputs), largest)
