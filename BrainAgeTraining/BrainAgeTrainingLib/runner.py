"""A whole training run: data -> preparation cache -> splits -> folds -> evaluation -> model package.

Run folder::

    RUN_DIR/config.json            the resolved configuration (a resumed run must match it)
    RUN_DIR/data_report.csv        every scan not used, with the reason
    RUN_DIR/data_summary.json      per-source counts, ages, samples
    RUN_DIR/splits.json            subjects of each fold's train/val/test
    RUN_DIR/cache/                 preparation cache (unless cache_dir is set)
    RUN_DIR/fold<k>/               checkpoint.pt, best.safetensors (average.safetensors), metrics.csv, tb/, test_predictions.csv
    RUN_DIR/test_predictions.csv   all folds' test predictions
    RUN_DIR/model/                 the model package (brainage predict --model RUN_DIR/model)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from BrainAgeLib.cpu_runtime import flush_denormals
from BrainAgeLib.io import atomic_path
from BrainAgeLib.spec import PreprocessSpec

from .cache import CachedSample, PreparationCache, skull_strip_label
from .config import ConfigError, TrainConfig, load_config, resume_differences, save_config
from .datasets import DatasetReport, load_datasets
from .ddp import DistContext, barrier, init_distributed, resolve_device, shutdown
from .export import ExportResult, export_package, per_scan, prediction_rows, regression_metrics, write_table
from .splits import check_no_leakage, make_splits
from .train_loop import CachedDataset, load_fold_model, predict_samples, train_fold


@dataclass
class RunResult:
    run_dir: Path
    package: Path | None
    fold_metrics: list[dict]
    report: DatasetReport
    n_samples: int


def _write_json(path: Path, data) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, default=str))


def resolve_run_config(run_dir: Path, config: TrainConfig, resume: bool, log=print) -> TrainConfig:
    """New run: save the config. Resume: use the saved one (only resume-safe settings may differ)."""
    saved_path = run_dir / "config.json"
    if saved_path.is_file():
        if not resume:
            raise FileExistsError(
                f"{run_dir} already holds a training run; pass --resume to continue it or choose another --out"
            )
        saved = load_config(saved_path)
        if config.epochs < saved.epochs:
            raise ConfigError(f"cannot resume {run_dir} with fewer epochs ({config.epochs}) than it was started with "
                              f"({saved.epochs}); epochs may only grow")
        diff = resume_differences(saved, config)
        if diff:
            raise ConfigError(
                f"cannot resume {run_dir}: settings {diff} differ from the saved run; resume with the same "
                "configuration (or omit --config to reuse the saved one)"
            )
        return TrainConfig.from_dict({**saved.to_dict(), **{k: v for k, v in config.to_dict().items()
                                                             if k in ("num_workers", "prepare_jobs", "device", "threads",
                                                                      "log_every", "tensorboard", "folds", "epochs")}})
    if resume:
        log(f"{run_dir}: nothing to resume yet, starting a new run")
    return config


def data_summary(report: DatasetReport, samples: list[CachedSample], skull_strip: str) -> dict:
    ages = np.array([r.age for r in report.records], dtype=float)
    return {
        "sources": report.counts(),
        "subjects": len({r.subject for r in report.records}),
        "scans": len(report.records),
        "synthetic_scans": len(samples),
        "not_used": len(report.problems),
        "age_min": float(ages.min()) if len(ages) else None,
        "age_max": float(ages.max()) if len(ages) else None,
        "age_mean": float(ages.mean()) if len(ages) else None,
        "skull_strip": skull_strip,
    }


def _extra_samples(config: TrainConfig, cache: PreparationCache, ctx: DistContext, progress: bool, log) -> list[CachedSample]:
    """Training-only scans (``extra_train``), prepared in the same cache; their subjects never enter the folds."""
    if not config.extra_train:
        return []
    report = load_datasets(list(config.extra_train), config.min_years_between_scans)
    if ctx.is_main:
        samples, report = cache.build(report, jobs=config.prepare_jobs, progress=progress)
    barrier(ctx)
    if not ctx.is_main:
        samples, report = cache.collect(report)
    if ctx.is_main:
        log(f"extra training data: {len(samples)} synthetic scans of {len(report.records)} scans "
            f"({len(report.problems)} not used), added to every fold's training set")
    return [replace(s, subject=f"extra:{s.subject}") for s in samples]


@flush_denormals()  # denormals flushed on every torch thread while training runs
def run_training(
    data: list[str | os.PathLike],
    run_dir: str | os.PathLike,
    config: TrainConfig | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    log=print,
) -> RunResult:
    """Train every configured fold and export the package; one process or one torchrun rank."""
    config = config or TrainConfig()
    run_dir = Path(run_dir)
    ctx = init_distributed(config.device)
    try:
        return _run(data, run_dir, config, ctx, resume, progress, log)
    finally:
        shutdown(ctx)


def _run(data, run_dir: Path, config: TrainConfig, ctx: DistContext, resume: bool, progress: bool, log) -> RunResult:
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        config = resolve_run_config(run_dir, config, resume, log)
        save_config(config, run_dir / "config.json")
    barrier(ctx)
    if not ctx.is_main:
        config = resolve_run_config(run_dir, config, True, lambda *_: None)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device, ctx)
    spec = PreprocessSpec()
    report = load_datasets(list(data), config.min_years_between_scans)
    cache = PreparationCache(config.cache_dir or run_dir / "cache", spec, config.skull_strip, config.max_offsets)
    if ctx.is_main:
        samples, report = cache.build(report, jobs=config.prepare_jobs, progress=progress)
        if cache.invalidated:
            log("preparation cache was made with other settings: emptied and prepared again")
    barrier(ctx)
    if not ctx.is_main:
        samples, report = cache.collect(report)
    extra_samples = _extra_samples(config, cache, ctx, progress, log)
    methods = sorted({skull_strip_label(r, config.skull_strip) for r in report.records})
    skull_strip = ",".join(methods) or config.skull_strip
    summary = data_summary(report, samples, skull_strip)
    if ctx.is_main:
        report.write(run_dir / "data_report.csv")
        _write_json(run_dir / "data_summary.json", summary)
        log(report.summary())
        log(f"{len(samples)} model-ready synthetic scans on {device} (world size {ctx.world_size})")
    subject_age: dict[str, float] = {}
    for r in report.records:
        subject_age[r.subject] = min(r.age, subject_age.get(r.subject, r.age))
    splits = make_splits(subject_age, config.n_folds, config.seed, config.stratify_by_age)
    for split in splits:
        check_no_leakage(split)
    if ctx.is_main:
        _write_json(run_dir / "splits.json", [{"fold": s.fold, "train": s.train, "val": s.val, "test": s.test} for s in splits])
    folds = config.fold_list
    models, entries, frames = [], [], []
    for position, fold in enumerate(folds):
        split = splits[fold]
        roles = {s: "train" for s in split.train} | {s: "val" for s in split.val} | {s: "test" for s in split.test}
        train = [s for s in samples if roles.get(s.subject) == "train"] + extra_samples
        val = [s for s in samples if roles.get(s.subject) == "val"]
        test = [s for s in samples if roles.get(s.subject) == "test"]
        if ctx.is_main:
            log(f"fold {fold}: {len(split.train)}/{len(split.val)}/{len(split.test)} subjects, "
                f"{len(train)}/{len(val)}/{len(test)} synthetic scans (train/val/test)")
        fold_dir = run_dir / f"fold{fold}"
        result = train_fold(fold, train, val, config, fold_dir, ctx, device, resume=resume, progress=progress,
                            log=log, run_position=(position, len(folds)))
        barrier(ctx)
        if ctx.is_main:
            model = load_fold_model(fold_dir, config).to(device)
            preds = predict_samples(model, CachedDataset(test, config, fold, train=False), config, DistContext(), device,
                                    max(1, config.batch_size))
            frame = prediction_rows(fold, test, preds)
            write_table(frame, fold_dir / "test_predictions.csv")
            best_row = next((h for h in result.history if h["epoch"] == result.best_epoch), {})
            scans = per_scan(frame) if len(frame) else frame
            entry = {"cv_fold": fold, "best_epoch": result.best_epoch, "val_loss": result.best_val_loss,
                     "val_mae": best_row.get("val_mae"),
                     "weights": (f"average of epochs {config.average_from_epoch}-{config.epochs}"
                                 if config.average_from_epoch else "best epoch"),
                     "average_val_mae": result.average_val_mae,
                     "test": regression_metrics(frame["predicted_age"], frame["age"]) if len(frame) else {"n": 0},
                     "test_per_scan": regression_metrics(scans["predicted_age"], scans["age"]) if len(frame) else {"n": 0},
                     "subjects": {"train": len(split.train), "val": len(split.val), "test": len(split.test)}}
            t = entry["test"]
            log(f"fold {fold}: best epoch {result.best_epoch}, val MAE {entry['val_mae']:.2f} y, "
                f"test MAE {t.get('mae', float('nan')):.2f} y (n={t.get('n')})")
            models.append(model.cpu())
            entries.append(entry)
            frames.append(frame)
    package = None
    if ctx.is_main:
        predictions = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        write_table(predictions, run_dir / "test_predictions.csv")
        exported: ExportResult = export_package(run_dir / "model", models, entries, predictions, config, spec,
                                                summary, skull_strip)
        package = exported.package
        log(f"model package: {package}")
    barrier(ctx)
    return RunResult(run_dir, package, entries, report, len(samples))
