"""Training benchmarks: model speed, data-pipeline speed, accuracy of a synthetic run.

    python benchmarks/training.py [--batch 2] [--repeats 3] [--accuracy] [--cache-dir DIR]

1. Samples/s of the paper's full DenseNet-169 (20.4 M parameters), forward + backward + Adam step,
   on CPU (and on CUDA with AMP when a GPU is present; the paper: ~280 samples/s on one L40S).
   Median of ``--repeats`` timed steps after one warm-up step.
2. Data pipeline: samples/s of the training DataLoader path (cached .npy read + MONAI augmentation)
   in one process, against the model's samples/s: the loader must not be the bottleneck.
3. Accuracy of a synthetic run (``--accuracy``): trains the synthetic demo model (or reads its cached
   evaluation): held-out clinical-2D MAE before/after bias correction, research-3D (sliced, cross-
   validation test sets) MAE and Pearson r. Synthetic data only: not a clinical accuracy.

Prints a Markdown table; never fails on timing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def model_speed(device: str, batch: int, repeats: int, amp: bool = False, channels_last: bool = False) -> dict:
    from BrainAgeLib.model import build_model, count_parameters

    model = build_model(seed=0).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.9), weight_decay=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    x = torch.randn(batch, 1, 80, 120, 40, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    y = torch.full((batch,), 50.0, device=device)
    times = []
    for step in range(repeats + 1):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device.split(":")[0], dtype=torch.float16, enabled=amp):
            loss = torch.nn.functional.mse_loss(model(x)[:, 0].float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if step:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"params": count_parameters(model), "seconds_per_step": med, "samples_per_s": batch / med}


def pipeline_speed(n: int = 48) -> dict:
    """Samples/s of CachedDataset (np.load + MONAI augmentation) on arrays prepared from the Colin27 brain."""
    from BrainAgeLib.io import load_nifti
    from BrainAgeLib.preprocess import prepare
    from BrainAgeLib.sample_data import sample_path
    from BrainAgeLib.slicing import synthetic_clinical_scans
    from BrainAgeTrainingLib.cache import CachedSample
    from BrainAgeTrainingLib.config import TrainConfig
    from BrainAgeTrainingLib.train_loop import CachedDataset

    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    t0 = time.perf_counter()
    scans = synthetic_clinical_scans(load_nifti(sample_path("colin27_brain")), 7.0)
    samples = []
    for i, scan in enumerate(scans):
        path = tmp / f"offset{i}.npy"
        np.save(path, prepare(scan).data)
        samples.append(CachedSample(str(path), 40.0, "colin", "colin27", i))
    prep_per_scan = (time.perf_counter() - t0) / len(scans)
    dataset = CachedDataset(samples, TrainConfig(), fold=0, train=True)
    dataset[0]
    t0 = time.perf_counter()
    for i in range(n):
        dataset[i % len(samples)]
    aug = n / (time.perf_counter() - t0)
    plain = CachedDataset(samples, TrainConfig(), fold=0, train=False)
    t0 = time.perf_counter()
    for i in range(n):
        plain[i % len(samples)]
    read = n / (time.perf_counter() - t0)
    return {"offsets": len(scans), "prepare_s_per_synthetic_scan": prep_per_scan, "augmented_samples_per_s": aug,
            "read_only_samples_per_s": read}


def accuracy(cache_dir: str | None) -> dict | None:
    from BrainAgeTrainingLib.demo_model import demo_dir, demo_evaluation, ensure_demo_model

    package = ensure_demo_model(cache_dir)
    evaluation = demo_evaluation(cache_dir)
    card = json.loads((Path(package) / "model_card.json").read_text())
    tests = [f["metrics"]["test"] for f in card["folds"]]
    import pandas as pd
    from BrainAgeTrainingLib.export import regression_metrics

    frame = pd.read_csv(demo_dir(cache_dir) / "run" / "test_predictions.csv")
    pooled = regression_metrics(frame["predicted_age"], frame["age"])
    return {"evaluation": evaluation, "research3d": pooled, "folds": tests, "card": card}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--accuracy", action="store_true", help="train (or read) the synthetic demo model and report accuracy")
    parser.add_argument("--cache-dir", help="demo model cache (default $BRAINAGE_CACHE or ~/.cache/slicer-brainage)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    rows = []
    cpu = model_speed("cpu", args.batch, args.repeats)
    rows.append(("full DenseNet-169 (%.1f M params) fwd+bwd+Adam, CPU, %d threads, batch %d"
                 % (cpu["params"] / 1e6, torch.get_num_threads(), args.batch),
                 f"{cpu['samples_per_s']:.2f} samples/s ({cpu['seconds_per_step']:.2f} s/step, median of {args.repeats})"))
    if torch.cuda.is_available():
        gpu = model_speed("cuda", 32, args.repeats, amp=True, channels_last=True)
        rows.append((f"full model, {torch.cuda.get_device_name()} AMP channels_last batch 32",
                     f"{gpu['samples_per_s']:.1f} samples/s (paper: ~280 on one L40S)"))
    else:
        rows.append(("full model on GPU (paper: ~280 samples/s on one L40S)", "not measured (no GPU here)"))
    pipe = pipeline_speed()
    rows.append(("preparation (slicing + resample + normalise + crop), per synthetic scan, once",
                 f"{pipe['prepare_s_per_synthetic_scan']:.2f} s"))
    rows.append(("data pipeline: cached .npy read, 1 process", f"{pipe['read_only_samples_per_s']:.0f} samples/s"))
    rows.append(("data pipeline: read + MONAI augmentation, 1 process", f"{pipe['augmented_samples_per_s']:.1f} samples/s"))
    ratio = pipe["augmented_samples_per_s"] / cpu["samples_per_s"]
    rows.append(("loader / model throughput (CPU, 1 loader process)", f"{ratio:.0f}x (loader is not the bottleneck)" if ratio > 1
                 else f"{ratio:.2f}x (use num_workers)"))
    rows.append(("workers needed to feed ~280 samples/s (paper GPU)", f"{280 / pipe['augmented_samples_per_s']:.1f} loader processes"))
    if args.accuracy:
        acc = accuracy(args.cache_dir)
        ev = acc["evaluation"]
        rows.append((f"synthetic demo: held-out clinical-2D MAE raw (n={ev['n']})", f"{ev['raw']['mae']:.2f} y"))
        rows.append(("synthetic demo: held-out clinical-2D MAE after bias correction", f"{ev['corrected']['mae']:.2f} y"))
        rows.append(("synthetic demo: held-out clinical-2D Pearson r", f"{ev['raw']['r']:.3f}"))
        rows.append(("synthetic demo: held-out clinical-2D predict-the-mean MAE", f"{ev['predict_the_mean_mae']:.2f} y"))
        r3 = acc["research3d"]
        rows.append((f"synthetic demo: research-3D sliced CV test MAE (n={r3['n']} synthetic scans)", f"{r3['mae']:.2f} y, r = {r3['r']:.3f}"))
        secs = ev.get("seconds", {})
        if secs:
            rows.append(("synthetic demo: wall time cohorts / training / evaluation",
                         " / ".join(f"{secs[k]:.0f} s" for k in ("cohorts", "training", "evaluation"))))
    print(f"\ncommand: python benchmarks/training.py {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip())
    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores visible\n")
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
