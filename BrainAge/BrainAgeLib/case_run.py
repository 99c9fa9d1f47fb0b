"""One case from volume to outputs: skull strip, preprocess, ages, saliency — and its files on disk.

The Slicer Logic runs :func:`run_case` in its own process (scripts, batches) or in a worker
process (the panel, see :mod:`.case_job`); the worker hands the outputs back as files
(:func:`save_outputs` / :func:`load_outputs`): ``result.json`` and ``.npy`` voxels in
Slicer's [k, j, i] order next to the IJK-to-RAS matrix, so nothing is re-oriented on the way.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .io import Volume, kji_from_volume, volume_from_kji

#: Stage, fraction of the run done when it starts, and the text shown.
STAGES = {
    "load": (0.05, "Loading model"),
    "prepare": (0.15, "Skull stripping and preprocessing"),
    "predict": (0.6, "Predicting age"),
    "saliency": (0.75, "Computing saliency"),
    "outputs": (0.9, "Adding the results to the scene"),
}


@dataclass
class CaseOutputs:
    """What one case gives the panel: the ages and QC, the brain mask and the saliency map (input grid)."""

    result: object  # BrainAgeLib.predict.PredictionResult
    brain_mask: Volume
    saliency: Volume | None = None
    saliency_method: str = ""
    regions: dict | None = None  # years each brain region moves the age (occlusion)


def run_case(predictor, volume: Volume, age: float | None = None, saliency_method: str | None = None,
             progress: Callable[[float, str], None] | None = None) -> CaseOutputs:
    """Predict one scan with a loaded Predictor; ``progress(fraction, text)`` is called at each stage."""
    say = progress or (lambda fraction, text: None)
    say(*STAGES["prepare"])
    case = predictor.prepare_volume(volume)
    say(*STAGES["predict"])
    result = predictor.predict_case(case, age)
    saliency = regions = None
    if saliency_method and not result.error:  # a scan refused by QC gets no age, no map and no regions
        say(*STAGES["saliency"])
        sal = predictor.saliency(case, saliency_method)
        saliency = sal.on_input
        result.qc_flags.append(f"saliency: ({sal.method}) inside brain: {sal.inside_brain:.0%}")
        regions = predictor.region_effects(case)
    return CaseOutputs(result, case.brain_mask, saliency, saliency_method or "", regions)


def save_input(folder: str | os.PathLike, array_kji: np.ndarray, ijk_to_ras: np.ndarray) -> None:
    """The scan as the parent hands it to the worker."""
    folder = Path(folder)
    np.save(folder / "input_kji.npy", np.asarray(array_kji))
    np.save(folder / "ijk_to_ras.npy", np.asarray(ijk_to_ras, dtype=float))


def load_input(folder: str | os.PathLike, source: str = "") -> Volume:
    folder = Path(folder)
    return volume_from_kji(np.load(folder / "input_kji.npy"), np.load(folder / "ijk_to_ras.npy"), source)


def save_outputs(folder: str | os.PathLike, outputs: CaseOutputs) -> None:
    """result.json last, so its presence means the voxel files are complete."""
    folder = Path(folder)
    np.save(folder / "brain_mask_kji.npy", kji_from_volume(outputs.brain_mask).astype(np.uint8))
    if outputs.saliency is not None:
        np.save(folder / "saliency_kji.npy", kji_from_volume(outputs.saliency).astype(np.float32))
    record = {"result": asdict(outputs.result), "saliency_method": outputs.saliency_method, "regions": outputs.regions}
    tmp = folder / "result.json.tmp"
    tmp.write_text(json.dumps(record, default=_json_default))
    os.replace(tmp, folder / "result.json")


def load_outputs(folder: str | os.PathLike, ijk_to_ras: np.ndarray, source: str = "") -> CaseOutputs:
    """The worker's outputs, on the grid of the scan that was sent (its IJK-to-RAS matrix)."""
    from .predict import PredictionResult

    folder = Path(folder)
    record = json.loads((folder / "result.json").read_text())
    result = PredictionResult(**record["result"])  # json writes and reads NaN as Python does
    mask = volume_from_kji(np.load(folder / "brain_mask_kji.npy"), ijk_to_ras, source)
    saliency_file = folder / "saliency_kji.npy"
    saliency = volume_from_kji(np.load(saliency_file), ijk_to_ras, source) if saliency_file.is_file() else None
    return CaseOutputs(result, mask.with_data(mask.data.astype(np.uint8)), saliency, record.get("saliency_method", ""),
                       record.get("regions"))


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
