"""Out-of-fold predictions of a finished ``brainage train`` run, for clinical-style and 3D input.

Every fold's best network predicts **every** subject of the run, and each row says
the subject's role in that fold (train / val / test), so evaluation can fit a bias
line on a fold's train/validation predictions and score only its test subjects:

* ``input = "clinical"``: each synthetic thick-slice axial scan (every slicing
  offset) from the run's preparation cache, exactly the arrays the fold saw;
* ``input = "3d"``: the whole 3D scan (skull stripped with the same mask, 2 mm,
  no slicing), prepared on the fly; validation and test subjects (their bias line is fitted on
  validation) unless ``all_3d``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from BrainAgeLib.io import load_nifti
from BrainAgeLib.model import network_ages
from BrainAgeLib.preprocess import prepare
from BrainAgeLib.spec import PreprocessSpec

from ..cache import PreparationCache, skull_strip_record
from ..config import load_config
from ..datasets import load_datasets
from ..train_loop import fold_weights, load_fold_model

COLUMNS = ("fold", "subject", "role", "input", "offset", "age", "predicted_age")


def parse_run_spec(text: str, single: bool = False) -> tuple[str, Path, bool]:
    """``LABEL=RUN_DIR[:best]`` (or a bare RUN_DIR when ``single``) -> (label, run folder, best epochs).

    ``:best`` names a weight-averaging run's best epochs instead of its exported averaged weights.
    """
    label, where = text.split("=", 1) if "=" in text else ("", text)
    if not label and not single:
        raise ValueError(f"{text!r}: name each run: LABEL=RUN_DIR[:best]")
    best = where.endswith(":best")
    return label, Path(where.removesuffix(":best")), best


def forward_arrays(model: torch.nn.Module, arrays: list[np.ndarray], batch: int = 16, mirror: bool = False) -> list[float]:
    """Ages of model-ready arrays through one network (eval mode, batched, no autograd); ``mirror``: each the mean
    with its mirror image's (``BrainAgeLib.model.network_ages``, as ``Predictor(mirror_average=True)``)."""
    out: list[float] = []
    with torch.inference_mode():
        for start in range(0, len(arrays), batch):
            x = torch.from_numpy(np.stack(arrays[start:start + batch]).astype(np.float32))[:, None]
            out.extend(network_ages(model, x, mirror).double().tolist())
    return out


def prepare_3d(record, spec: PreprocessSpec, skull_strip: str) -> np.ndarray:
    """The model-ready array of a whole 3D scan (no synthetic slicing)."""
    brain = skull_strip_record(load_nifti(record.path), record, skull_strip)
    return prepare(brain, spec).data.astype(np.float32)


def cached_samples(run_dir: str | os.PathLike, data: list[str], cache_dir: str | os.PathLike | None = None):
    """The cached model inputs of ``data``'s current scan files as the run prepared them (its preprocessing,
    skull strip and offsets), and the data report; a cache may also hold older file versions, which are left out."""
    config = load_config(Path(run_dir) / "config.json")
    report = load_datasets(list(data), config.min_years_between_scans)
    cache = PreparationCache(cache_dir or config.cache_dir or Path(run_dir) / "cache", PreprocessSpec(),
                             config.skull_strip, config.max_offsets)
    return cache.collect(report)


def run_predictions(run_dir: str | os.PathLike, data: list[str] | None = None, *, cache_dir: str | None = None,
                    all_3d: bool = False, progress: bool = True, best_epoch: bool = False,
                    folds: list[int] | None = None, mirror: bool = False,
                    roles: tuple[str, ...] = ("train", "val", "test")) -> pd.DataFrame:
    """Rows of :data:`COLUMNS` for every fold of ``run_dir`` that has its exported weights (``best.safetensors``, or ``average.safetensors``).

    ``data`` defaults to the data the run recorded (``data_summary.json`` does not keep paths,
    so pass the same ``--data`` entries as the run). ``best_epoch``: the best epoch's weights even where the run
    exports averaged ones. ``folds``: only these folds (default: all). ``mirror``: every age averaged with the
    mirror image's (``forward_arrays``). ``roles``: only the subjects with these roles in a fold.
    """
    run_dir = Path(run_dir)
    wanted = set(roles)
    config = load_config(run_dir / "config.json")
    spec = PreprocessSpec()
    samples, report = cached_samples(run_dir, data, cache_dir)
    splits = json.loads((run_dir / "splits.json").read_text())
    records = {r.subject: r for r in report.records}
    arrays_3d: dict[str, np.ndarray] = {}
    torch.set_num_threads(max(1, config.threads or torch.get_num_threads()))
    rows: list[dict] = []
    for split in splits:
        fold = split["fold"]
        if folds is not None and fold not in folds:
            continue
        if not fold_weights(run_dir / f"fold{fold}", config, best_epoch).is_file():
            continue
        everyone = {s: "train" for s in split["train"]} | {s: "val" for s in split["val"]} | {s: "test" for s in split["test"]}
        role_of = {s: role for s, role in everyone.items() if role in wanted}
        model = load_fold_model(run_dir / f"fold{fold}", config, best_epoch)
        chosen = [s for s in samples if s.subject in role_of]
        preds = forward_arrays(model, [np.load(s.array) for s in tqdm(chosen, desc=f"fold {fold} clinical", disable=not progress)],
                               mirror=mirror)
        rows += [{"fold": fold, "subject": s.subject, "role": role_of[s.subject], "input": "clinical", "offset": s.offset,
                  "age": s.age, "predicted_age": p} for s, p in zip(chosen, preds)]
        subjects = [s for s in role_of if s in records and (all_3d or role_of[s] != "train")]
        for subject in tqdm(subjects, desc=f"fold {fold} 3d", disable=not progress):
            if subject not in arrays_3d:
                arrays_3d[subject] = prepare_3d(records[subject], spec, config.skull_strip)
        preds = forward_arrays(model, [arrays_3d[s] for s in subjects], mirror=mirror)
        rows += [{"fold": fold, "subject": s, "role": role_of[s], "input": "3d", "offset": -1, "age": records[s].age,
                  "predicted_age": p} for s, p in zip(subjects, preds)]
    return pd.DataFrame(rows, columns=list(COLUMNS))
