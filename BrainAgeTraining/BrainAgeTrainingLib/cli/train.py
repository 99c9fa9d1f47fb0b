"""``brainage train``: cross-validated training from BIDS roots / CSV manifests / folders to a model package.

Single process::

    brainage train --data /data/IXI_bids /data/site.csv --out runs/r1 [--config cfg.yaml] [--resume]

Many GPUs / nodes (the same command under torchrun)::

    torchrun --nproc_per_node 4 -m BrainAgeLib.cli train --data ... --out runs/r1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import ConfigError, load_config, read_config_file
from ..datasets import DatasetError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train and cross-validate the brain-age network; writes a model package to RUN_DIR/model",
        description="Train the DenseNet of Kim et al. 2025 on 3D T1 scans with known ages (BIDS roots, CSV manifests "
        "with path,age columns, or FOLDER=AGES.csv). Defaults follow the paper; override any setting with --config.",
    )
    p.add_argument("--data", nargs="+", required=True, metavar="ROOT_OR_CSV", help="BIDS root, CSV manifest or FOLDER=AGES.csv (several allowed)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (checkpoints, logs, RUN_DIR/model)")
    p.add_argument("--config", metavar="FILE", help="YAML or JSON file overriding training settings (saved with the run)")
    p.add_argument("--resume", action="store_true", help="continue a run that was stopped (same settings)")
    p.add_argument("--extra-train", nargs="+", metavar="ROOT_OR_CSV",
                   help="data used for training in every fold but never validated or tested on (e.g. a synthetic cohort)")
    p.add_argument("--init-from", metavar="PACKAGE",
                   help="start every fold from these weights (package folder or .safetensors), e.g. synthetic pretraining")
    p.add_argument("--epochs", type=int, help="override the number of epochs")
    p.add_argument("--folds", type=lambda t: tuple(int(x) for x in t.split(",")), help="train only these folds, e.g. 0 or 0,1")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--num-workers", type=int, help="DataLoader worker processes")
    p.add_argument("--prepare-jobs", type=int, help="parallel processes preparing the cache")
    p.add_argument("--cache-dir", help="preparation cache folder (default RUN_DIR/cache)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")
    p.add_argument("--print-config", action="store_true", help="print the resolved configuration and exit")
    p.set_defaults(func=run)


def resolve_config(args: argparse.Namespace):
    overrides = {"epochs": args.epochs, "folds": args.folds, "device": args.device, "num_workers": args.num_workers,
                 "prepare_jobs": args.prepare_jobs, "cache_dir": args.cache_dir, "init_from": args.init_from,
                 "extra_train": tuple(args.extra_train) if args.extra_train else None}
    saved = Path(args.out) / "config.json"
    if args.resume and not args.config and saved.is_file():
        return load_config(saved, **overrides)
    return load_config(args.config, **overrides)


def run(args: argparse.Namespace) -> int:
    from ..runner import run_training

    try:
        config = resolve_config(args)
    except ConfigError as exc:
        print(f"brainage train: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        import json

        print(json.dumps(config.to_dict(), indent=2))
        return 0
    try:
        result = run_training(args.data, args.out, config, resume=args.resume, progress=not args.no_progress,
                              log=lambda *a: print(*a, flush=True))
    except (ConfigError, DatasetError, FileExistsError, ValueError) as exc:
        print(f"brainage train: {exc}", file=sys.stderr)
        return 2
    if result.package is not None:
        print(f"done: brainage predict --model {result.package} ...", flush=True)
    return 0


__all__ = ["register", "run", "read_config_file"]
