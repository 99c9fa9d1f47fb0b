"""Are a fold's erratic validation ages its BatchNorm running statistics? Its last checkpoint predicts the
validation and test subjects with the running statistics, then with statistics recomputed (train-mode passes,
no gradients) over the unaugmented and over augmented training scans.

    .venv/bin/python benchmarks/batchnorm_statistics.py --run RUNS/ixi_m --fold 0 --data ../shared/data/ixi-hh-2mm --cache-dir RUNS/ixi-cache
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import update_bn

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "BrainAge"), str(ROOT / "BrainAgeTraining")]

from BrainAgeLib.model import build_model  # noqa: E402
from BrainAgeTrainingLib.augment import augment, build_augmentation, sample_seed  # noqa: E402
from BrainAgeTrainingLib.config import load_config  # noqa: E402
from BrainAgeTrainingLib.crossval.predictions import cached_samples, forward_arrays  # noqa: E402
from BrainAgeTrainingLib.train_loop import target_scaling  # noqa: E402
from cpu_info import cpu_model_and_flags  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True)
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--data", nargs="+", required=True)
    p.add_argument("--cache-dir", required=True)
    args = p.parse_args(argv)
    run = Path(args.run)
    config = load_config(run / "config.json")
    samples, _ = cached_samples(run, args.data, args.cache_dir)
    split = json.loads((run / "splits.json").read_text())[args.fold]
    state = torch.load(run / f"fold{args.fold}" / "checkpoint.pt", map_location="cpu", weights_only=True)
    model = build_model(config.model)
    model.load_state_dict(state["model"])
    train = [s for s in samples if s.subject in set(split["train"])]
    shift, scale = target_scaling(train, config)
    pipeline = build_augmentation(config.augment)

    def errors(role: str) -> str:
        chosen = [s for s in samples if s.subject in set(split[role])]
        out = shift + scale * np.array(forward_arrays(model.eval(), [np.load(s.array) for s in chosen]))
        error = out - np.array([s.age for s in chosen])
        return f"{role} MAE {np.abs(error).mean():.2f} y, mean error {error.mean():+.2f} y"

    def batches(augmented: bool):
        for i in range(0, len(train), 8):
            xs = [torch.from_numpy(np.load(s.array).astype(np.float32))[None] for s in train[i:i + 8]]
            if augmented:
                xs = [augment(pipeline, x, sample_seed(config.seed, args.fold, 10_000, i + k)) for k, x in enumerate(xs)]
            yield torch.stack(xs)

    print(f"CPU: {cpu_model_and_flags()[0]}; run {run.name}, fold {args.fold}, checkpoint after epoch {state['epoch']}")
    print(f"running statistics:               {errors('val')}; {errors('test')}")
    for augmented in (False, True):
        update_bn(batches(augmented), model, torch.device("cpu"))
        label = "augmented" if augmented else "unaugmented"
        print(f"recomputed on {len(train)} {label + ' scans:':<19}{errors('val')}; {errors('test')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
