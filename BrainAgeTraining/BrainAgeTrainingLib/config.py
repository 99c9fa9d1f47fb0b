"""Training configuration: the paper's values (Kim et al. 2025) by default, every one overridable.

A YAML or JSON file holds any subset of the fields (nested ``augment`` and
``model`` blocks); unknown keys are an error, so a typo never silently falls
back to a default. The resolved configuration is saved with every run
(``RUN_DIR/config.json``) and a resumed run must use the same one.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from BrainAgeLib.io import atomic_path
from BrainAgeLib.model import DEFAULT_CONFIG as DEFAULT_MODEL_CONFIG


class ConfigError(ValueError):
    """A training configuration file is unreadable or holds unknown / invalid values."""


@dataclass(frozen=True)
class AugmentConfig:
    """Per-epoch augmentation (the paper's): shifts in voxels, mirror probability, gamma and intensity ranges."""

    enabled: bool = True
    shift_voxels: tuple[int, int, int] = (10, 10, 2)  # sagittal, coronal, axial
    mirror_probability: float = 0.5  # across the mid-sagittal plane (voxel axis 0)
    gamma_range: tuple[float, float] = (0.7, 1.3)
    intensity_range: tuple[float, float] = (0.7, 1.3)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; defaults follow Kim et al. 2025."""

    # optimisation (the paper's training settings)
    epochs: int = 70
    batch_size: int = 32  # global batch; divided among DDP processes
    learning_rate: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.9)
    weight_decay: float = 1e-4
    lr_factor: float = 0.5  # ReduceLROnPlateau: halve ...
    lr_patience: int = 5  # ... after this many epochs without validation improvement
    loss: str = "mse"
    # Stochastic weight averaging: export the mean of the weights at the end of every epoch from this one on
    # (BatchNorm statistics then recomputed on the training scans) instead of the best epoch by validation loss.
    # None: the paper's best epoch.
    average_from_epoch: int | None = None
    # From this epoch on, train with fixed BatchNorm statistics (recomputed at its start over the epoch's
    # augmented training scans), as the network predicts, instead of each batch's. None: the paper.
    freeze_batchnorm_from_epoch: int | None = None
    # The network learns (age - mean) / SD of the training ages; the exported weights are folded back to
    # years, so packages are unchanged. Off by default (the paper); it makes short runs (the demo) converge.
    standardize_targets: bool = False
    # cross-validation
    n_folds: int = 5
    folds: tuple[int, ...] | None = None  # train only these folds (default: all)
    split_by: str = "subject"
    stratify_by_age: bool = True
    seed: int = 0
    # data
    min_years_between_scans: float = 5.0  # one scan per subject unless scans are further apart
    max_offsets: int | None = None  # synthetic slicing offsets kept per 3D scan (None: all, as in the paper)
    # Scans used for training in every fold but never validated or tested on (e.g. a synthetic cohort mixed
    # with real data); the folds are made from --data alone, so they are the same with or without them.
    extra_train: tuple[str, ...] = ()
    # Start every fold from these weights (a model package folder or a .safetensors file of the same
    # architecture, e.g. a network pretrained on a synthetic cohort) instead of the Kaiming initialisation.
    init_from: str | None = None
    skull_strip: str = "auto"  # auto: the subject's brain mask when the data set has one, else hd-bet
    cache_dir: str | None = None  # default RUN_DIR/cache
    prepare_jobs: int = max(1, min(4, os.cpu_count() or 1))
    # loading and speed
    num_workers: int = 0
    device: str = "auto"
    amp: bool = True  # float16 autocast + GradScaler on CUDA (ignored on CPU)
    channels_last: bool = False
    threads: int | None = None  # torch CPU threads per process
    log_every: int = 1
    tensorboard: bool = True
    # network (BrainAgeLib.model.build_model config; the paper's DenseNet-169 by default)
    model: dict = field(default_factory=lambda: dict(DEFAULT_MODEL_CONFIG))
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # export
    name: str = "brainage-densenet169"
    version: str = "0.1.0"
    description: str = ""
    calibration_method: str = "extremes"
    # Storage precision of the exported fold weights: "float16" halves the files (loaded back as float32).
    weights_dtype: str = "float32"
    synthetic_demo: bool = False

    def to_dict(self) -> dict:
        data = asdict(self)
        return json.loads(json.dumps(data))  # tuples -> lists, plain JSON types

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Defaults overridden by ``data``; unknown keys raise :class:`ConfigError`."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown training setting(s) {unknown}; valid settings: {sorted(known)}")
        augment = data.pop("augment", None) or {}
        if isinstance(augment, AugmentConfig):
            augment = asdict(augment)
        aug_known = {f.name for f in fields(AugmentConfig)}
        bad = sorted(set(augment) - aug_known)
        if bad:
            raise ConfigError(f"unknown augmentation setting(s) {bad}; valid: {sorted(aug_known)}")
        for key in ("shift_voxels", "gamma_range", "intensity_range"):
            if key in augment:
                augment[key] = tuple(augment[key])
        model = {**DEFAULT_MODEL_CONFIG, **(data.pop("model", None) or {})}
        for key in ("betas", "folds", "extra_train"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        config = cls(**data, model=model, augment=AugmentConfig(**augment))
        config.validate()
        return config

    def validate(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append("epochs must be >= 1")
        if self.batch_size < 1:
            problems.append("batch_size must be >= 1")
        if self.n_folds < 2:
            problems.append("n_folds must be >= 2 (each fold needs its own validation and test subjects)")
        if self.folds is not None and any(not 0 <= f < self.n_folds for f in self.folds):
            problems.append(f"folds {list(self.folds)} must lie in 0..{self.n_folds - 1}")
        if self.average_from_epoch is not None and not 1 <= self.average_from_epoch <= self.epochs:
            problems.append(f"average_from_epoch must lie in 1..epochs ({self.epochs}) or be null")
        if self.freeze_batchnorm_from_epoch is not None and not 1 <= self.freeze_batchnorm_from_epoch <= self.epochs:
            problems.append(f"freeze_batchnorm_from_epoch must lie in 1..epochs ({self.epochs}) or be null")
        if self.loss != "mse":
            problems.append("loss must be 'mse' (the paper's loss)")
        if self.split_by != "subject":
            problems.append("split_by must be 'subject' (splitting by scan would leak subjects across splits)")
        if self.calibration_method not in ("extremes", "all"):
            problems.append("calibration_method must be 'extremes' or 'all'")
        if self.weights_dtype not in ("float32", "float16"):
            problems.append("weights_dtype must be 'float32' or 'float16'")
        if self.init_from and not os.path.exists(self.init_from):
            problems.append(f"init_from {self.init_from} does not exist (a model package folder or .safetensors file)")
        if problems:
            raise ConfigError("invalid training configuration: " + "; ".join(problems))

    def with_overrides(self, **changes) -> "TrainConfig":
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    @property
    def fold_list(self) -> list[int]:
        return list(self.folds) if self.folds is not None else list(range(self.n_folds))


#: One line per setting (docs/cli.md is generated from it; a test keeps it complete).
SETTING_HELP = {
    "epochs": "training epochs per fold",
    "batch_size": "global batch size, divided among DDP processes",
    "learning_rate": "Adam learning rate",
    "betas": "Adam betas",
    "weight_decay": "Adam weight decay",
    "lr_factor": "ReduceLROnPlateau: factor applied to the learning rate ...",
    "lr_patience": "... after this many epochs without validation improvement",
    "loss": "training loss: only 'mse' (the paper's)",
    "average_from_epoch": "export the average of the weights of every epoch from this one on (stochastic weight "
                          "averaging, BatchNorm statistics then recomputed on the training scans) instead of the best epoch by validation "
                          "loss (null: the best epoch, the paper)",
    "freeze_batchnorm_from_epoch": "from this epoch on, train with fixed BatchNorm statistics, recomputed at its start "
                                   "over its augmented training scans, as prediction uses them (null: each batch's, the paper)",
    "standardize_targets": "learn (age - mean) / SD of the training ages; the exported weights give years again "
                           "(makes short runs converge; the demo uses it)",
    "n_folds": "cross-validation folds (80/10/10 train/validation/test by subject with 5)",
    "folds": "train only these folds, e.g. [0] (null: all)",
    "split_by": "unit of the fold split: only 'subject' (no subject in two roles of a fold)",
    "stratify_by_age": "deal subjects into folds in age order, so every fold spans the age range",
    "seed": "seed of the splits, initialisation, shuffling and augmentation",
    "min_years_between_scans": "a later scan of a subject is used only this many years after the last one kept",
    "max_offsets": "synthetic slicing offsets kept per 3D scan (null: all, as in the paper)",
    "extra_train": "data used for training in every fold, never validated or tested on (--extra-train)",
    "init_from": "start every fold from these weights: a package folder or .safetensors file (--init-from)",
    "skull_strip": "auto (the data set's brain masks when present, else hd-bet), mask, hd-bet, deepbet or none",
    "cache_dir": "preparation cache folder (null: RUN_DIR/cache; --cache-dir)",
    "prepare_jobs": "parallel processes preparing the cache (--prepare-jobs)",
    "num_workers": "DataLoader worker processes (--num-workers)",
    "device": "auto (CUDA when available), cpu, cuda or cuda:N (--device)",
    "amp": "float16 autocast and gradient scaling on CUDA (ignored on CPU)",
    "channels_last": "channels-last 3D memory layout for the network",
    "threads": "torch CPU threads per process (null: torch's default)",
    "log_every": "write an epoch's log line every this many epochs",
    "tensorboard": "TensorBoard logs in the run folder (when tensorboard is installed)",
    "model": "network settings for BrainAgeLib.model.build_model (default: the paper's DenseNet-169); a file may "
             "set any subset",
    "name": "model package name",
    "version": "model package version",
    "description": "model card description (empty: generated)",
    "calibration_method": "age-bias calibration stored in the package, fitted on the pooled out-of-fold test "
                          "predictions (CU subjects when a cohort column exists): extremes (youngest and oldest 5 %, "
                          "the paper) or all",
    "weights_dtype": "storage precision of the exported fold weights: float32, or float16 (half the size, loaded "
                     "back as float32)",
    "synthetic_demo": "mark the package as a synthetic demonstration, not for clinical use",
}
AUGMENT_HELP = {
    "enabled": "augment the training samples every epoch",
    "shift_voxels": "largest random shift in voxels: sagittal, coronal, axial",
    "mirror_probability": "probability of mirroring across the mid-sagittal plane",
    "gamma_range": "range of the random gamma (contrast) change",
    "intensity_range": "range of the random intensity scaling",
}
#: Defaults that depend on the machine, as the reference states them.
MACHINE_DEFAULTS = {"prepare_jobs": "min(4, CPU cores)"}


def read_config_file(path: str | os.PathLike) -> dict:
    """Read a YAML (.yaml/.yml) or JSON file into a dict of overrides."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the training configuration ({exc})") from exc
    is_yaml = path.suffix.lower() in (".yaml", ".yml")
    if is_yaml:
        try:
            import yaml
        except ImportError as exc:
            raise ConfigError(
                f"{path}: YAML configurations need PyYAML, which is not installed (3D Slicer does not bundle it): "
                "pip install pyyaml (in Slicer: the BrainAgeTraining logic installs it), or write the settings as JSON"
            ) from exc
    try:
        if is_yaml:
            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text or "{}")
    except Exception as exc:  # yaml.YAMLError / json.JSONDecodeError
        raise ConfigError(f"{path}: not valid {'YAML' if is_yaml else 'JSON'} ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the configuration must be a mapping of setting: value")
    return data


def load_config(path: str | os.PathLike | None = None, **overrides) -> TrainConfig:
    """Defaults <- file <- keyword overrides."""
    data = read_config_file(path) if path else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(data)


def save_config(config: TrainConfig, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(config.to_dict(), indent=2))
    return Path(path)


# Settings that may change between a run and its resumption without changing the result. ``epochs`` may
# grow: every epoch's shuffling and augmentation depend on (seed, fold, epoch) only and the plateau scheduler
# does not look at the total, so a finished run resumed with more epochs equals a longer run from the start.
RESUME_SAFE = {"num_workers", "prepare_jobs", "device", "threads", "log_every", "tensorboard", "cache_dir", "folds",
               "epochs"}


def resume_differences(saved: TrainConfig, new: TrainConfig) -> list[str]:
    """Settings that differ between a saved run and a resume request (and would change the result)."""
    a, b = saved.to_dict(), new.to_dict()
    return sorted(k for k in a if k not in RESUME_SAFE and a[k] != b.get(k))


__all__ = [
    "AugmentConfig",
    "ConfigError",
    "TrainConfig",
    "load_config",
    "read_config_file",
    "resume_differences",
    "save_config",
    "replace",
]
