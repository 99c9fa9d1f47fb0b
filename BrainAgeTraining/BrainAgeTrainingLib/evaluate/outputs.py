"""Writing an evaluation: report.html, report.json, calibration.json, scored tables and figure PNGs."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from BrainAgeLib.calibration import save_calibration
from BrainAgeLib.io import atomic_path

from . import figures
from .analysis import Evaluation
from .html import render

FILES = ("report.html", "report.json", "calibration.json", "scans.csv", "subjects.csv")


def plain(value):
    """JSON-safe copy: numpy scalars to Python, NaN/inf to None, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def make_figures(evaluation: Evaluation) -> dict[str, bytes]:
    """The three figures as PNG bytes."""
    n = evaluation.numbers
    return {"accuracy": figures.accuracy_figure(evaluation.scans),
            "calibration": figures.calibration_figure(evaluation.scans, evaluation.fits, n["calibration"]["method"],
                                                      n["calibration"]["fraction"]),
            "groups": figures.groups_figure(evaluation.subjects, n["groups"], n["inputs"]["columns"].get("score") or "score")}


def write_outputs(evaluation: Evaluation, out_dir: str | os.PathLike, *, overwrite: bool = False,
                  title: str = "Brain age evaluation") -> dict[str, Path]:
    """Write every output into ``out_dir``; an existing report there is replaced only with ``overwrite``."""
    out = Path(out_dir)
    if (out / "report.json").exists() and not overwrite:
        raise FileExistsError(f"{out} already holds an evaluation report; choose another --out or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    pictures = make_figures(evaluation)
    paths = {name: out / name for name in FILES}
    for name, data in pictures.items():
        paths[f"figures/{name}"] = out / "figures" / f"{name}.png"
        with atomic_path(paths[f"figures/{name}"]) as tmp:
            tmp.write_bytes(data)
    with atomic_path(paths["report.json"]) as tmp:
        tmp.write_text(json.dumps(plain(evaluation.numbers), indent=1))
    with atomic_path(paths["report.html"]) as tmp:
        tmp.write_text(render(evaluation.numbers, pictures, title), encoding="utf-8")
    primary = evaluation.fits[evaluation.numbers["calibration"]["method"]]
    save_calibration(primary.final, paths["calibration.json"])
    for name, frame in (("scans.csv", evaluation.scans), ("subjects.csv", evaluation.subjects)):
        with atomic_path(paths[name]) as tmp:
            frame.to_csv(tmp, index=False)
    return paths
