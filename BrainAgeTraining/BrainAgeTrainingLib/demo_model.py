"""The synthetic demo model: what ``brainage demo`` uses when no trained package is installed.

Generates a small synthetic ageing cohort (``brainage synth``: research-3D scans
built from real heads), trains it with ``brainage train``'s code path (a
narrower DenseNet, fewer subjects, offsets and epochs: :data:`TRAINING_TIME`),
evaluates it on held-out synthetic **clinical-2D**
subjects, and caches the package under ``$BRAINAGE_CACHE`` (default
``~/.cache/slicer-brainage``). It was trained on SYNTHETIC data only: a
demonstration of the pipeline, not for clinical or research use.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from BrainAgeLib.user_cache import cache_dir as user_cache_dir
from BrainAgeLib.io import atomic_path

from .config import ConfigError, TrainConfig

DEMO_VERSION = "2"
#: Measured: ``make demo`` with an empty cache took 6 min 10 s in all on 2 idle CPU cores (docs/training.md).
TRAINING_TIME = "about 6 min on 2 idle CPU cores, longer on a busy machine"
DEMO_NOTICE = ("This model was trained on SYNTHETIC data (generated subjects with known ages). "
               "It demonstrates the pipeline and is NOT for clinical use; on a real scan it is out of its "
               "training distribution, and its age can be far off. Its training subjects are all derived from the "
               "Colin27 and MNI152 heads, so its age for those heads is no independent test.")


def cache_root() -> Path:
    """Per-user cache folder (``$BRAINAGE_CACHE`` or ``~/.cache/slicer-brainage``)."""
    return user_cache_dir()


@dataclass(frozen=True)
class DemoSettings:
    """Size of the demo: cohort, held-out set and the training overrides."""

    train_subjects: int = 80
    heldout_subjects: int = 20
    seed: int = 2025
    jobs: int = 2
    # Both real heads. Version 1 (one head, 40 subjects, a 6.5 x 10^4-parameter DenseNet, batch 4) reached a
    # held-out clinical-2D MAE of 12.0 y; this one (1.1 x 10^6 parameters, batch 8) 7.6 y in about 6 min.
    heads: tuple[str, ...] = ("colin27", "mni152")
    train: dict = field(default_factory=lambda: {
        "epochs": 30, "batch_size": 8, "learning_rate": 1e-3, "n_folds": 4, "folds": [0], "max_offsets": 3,
        "standardize_targets": True, "skull_strip": "mask", "threads": 2, "prepare_jobs": 2,
        "augment": {"shift_voxels": [2, 2, 1]},
        "model": {"init_features": 16, "growth_rate": 16, "block_config": [3, 6, 12, 8]},
        "name": "synthetic-demo", "version": "demo-" + DEMO_VERSION, "synthetic_demo": True,
        "description": "Narrow DenseNet trained on a small SYNTHETIC cohort by brainage demo; not for clinical use.",
    })

    def config(self, cache_dir: Path | None = None) -> TrainConfig:
        return TrainConfig.from_dict({**self.train, "seed": self.seed,
                                      "cache_dir": str(cache_dir) if cache_dir else None})


def demo_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    return Path(cache_dir or cache_root()) / f"demo-model-v{DEMO_VERSION}"


def installed_demo_model(cache_dir: str | os.PathLike | None = None) -> Path | None:
    """The cached demo package, if it was trained already."""
    package = demo_dir(cache_dir) / "run" / "model"
    return package if (package / "model_card.json").is_file() else None


def _cohort(out: Path, subjects: int, seed: int, style: str, heads: tuple[str, ...], jobs: int, progress: bool) -> Path:
    from .synth.cohort import CohortSpec, ensure_cohort

    return ensure_cohort(CohortSpec(subjects=subjects, seed=seed, styles=(style,), heads=heads), out, jobs=jobs,
                         progress=progress)


def evaluate_heldout(package: Path, cohort: Path) -> dict:
    """MAE (raw and bias-corrected with the package's calibration) and r on held-out clinical-2D subjects.

    The cohort's ground-truth brain masks are applied, so skull stripping does not enter the numbers.
    """
    from .evaluation import predict_cohort
    from .export import regression_metrics

    frame = predict_cohort(package, cohort, progress=False)
    frame["corrected"] = frame["card_corrected_age"].fillna(frame["predicted_age"])
    frame = frame.rename(columns={"participant_id": "subject", "predicted_age": "predicted"})
    baseline = float(np.mean(np.abs(frame["age"] - frame["age"].mean())))
    return {"n": len(frame), "raw": regression_metrics(frame["predicted"], frame["age"]),
            "corrected": regression_metrics(frame["corrected"], frame["age"]),
            "predict_the_mean_mae": baseline,
            "rows": frame[["subject", "age", "predicted", "corrected"]].to_dict("records")}


def ensure_demo_model(cache_dir: str | os.PathLike | None = None, *, settings: DemoSettings | None = None,
                      progress: bool = True, log=print) -> Path:
    """Return the cached demo package, training it first when needed (resumable if interrupted)."""
    existing = installed_demo_model(cache_dir)
    if existing is not None:
        return existing
    from .runner import run_training

    settings = settings or DemoSettings()
    root = demo_dir(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    log(f"Training the synthetic demo model once into {root} ({TRAINING_TIME}).")
    log(DEMO_NOTICE)
    t0 = time.perf_counter()
    train = _cohort(root / "cohort-train", settings.train_subjects, settings.seed, "research3d", settings.heads,
                    settings.jobs, progress)
    heldout = _cohort(root / "cohort-heldout", settings.heldout_subjects, settings.seed + 1, "clinical2d", settings.heads,
                      settings.jobs, progress)
    t1 = time.perf_counter()
    config = settings.config(root / "cache")
    try:
        result = run_training([train], root / "run", config, resume=True, progress=progress, log=log)
    except ConfigError:  # an interrupted run of other demo settings: start the training again
        shutil.rmtree(root / "run")
        result = run_training([train], root / "run", config, resume=True, progress=progress, log=log)
    t2 = time.perf_counter()
    evaluation = evaluate_heldout(result.package, heldout)
    evaluation.update(settings=asdict(settings), seconds={"cohorts": t1 - t0, "training": t2 - t1,
                                                          "evaluation": time.perf_counter() - t2})
    with atomic_path(root / "evaluation.json") as tmp:
        tmp.write_text(json.dumps(evaluation, indent=1))
    log(format_evaluation(evaluation))
    return result.package


def format_evaluation(evaluation: dict) -> str:
    raw, cor = evaluation["raw"], evaluation["corrected"]
    return (f"demo model on {evaluation['n']} held-out synthetic clinical-2D subjects: MAE {raw['mae']:.1f} y raw, "
            f"{cor['mae']:.1f} y after bias correction (r = {raw['r']:.2f}; predicting the mean age: "
            f"MAE {evaluation['predict_the_mean_mae']:.1f} y)")


def demo_evaluation(cache_dir: str | os.PathLike | None = None) -> dict | None:
    path = demo_dir(cache_dir) / "evaluation.json"
    return json.loads(path.read_text()) if path.is_file() else None
