"""Inference speed and memory on this machine: per stage, 1 model vs 5-fold ensemble, fp32 vs bf16.

Each configuration runs in a fresh subprocess (so model load and peak RSS are
its own), REPEATS times; the table shows medians. Weights are untrained (speed
does not depend on them); the bf16 column compares ages with fp32 on the same
untrained-but-age-scaled networks.

Run:  .venv/bin/python benchmarks/inference.py [--repeats 3] [--batch 8]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_package(path: Path, folds: int) -> Path:
    import torch

    from BrainAgeLib.model import build_model
    from BrainAgeLib.package import ModelCard, save_package

    models = []
    for seed in range(folds):
        model = build_model(seed=seed)
        with torch.no_grad():  # outputs in an age-like range so precision errors are in "years"
            model.class_layers.out.weight.mul_(10.0)
            model.class_layers.out.bias.fill_(50.0)
        models.append(model)
    return save_package(path, models, ModelCard(name=f"bench-{folds}fold", version="0", skull_strip={"backend": "none"}), overwrite=True)


def worker(package: str, scan: str, precision: str, saliency: bool, batch: int) -> dict:
    """One cold run: imports excluded, then load -> predict one scan -> (saliency) -> warm batch."""
    import torch  # noqa: F401  (imports are excluded from the timings)

    from BrainAgeLib.calibration import Calibration
    from BrainAgeLib.predict import Predictor

    cal = Calibration(slope=0.7, intercept=15.0, method="all", n_controls=10, age_min=20, age_max=80)
    t0 = time.perf_counter()
    predictor = Predictor(package, device="cpu", precision=precision, calibration=cal, skull_strip="none")
    load = time.perf_counter() - t0
    result = predictor.predict_path(scan, age=60.0)
    end_to_end = time.perf_counter() - t0
    out = {"load": load, "end_to_end": end_to_end, **result.timings, "ages": result.fold_ages, "corrected": result.corrected_age}
    if saliency:
        case = predictor.prepare_volume(predictor_volume(scan))
        t1 = time.perf_counter()
        predictor.saliency(case, "guided-backprop")
        out["saliency"] = time.perf_counter() - t1
    if batch:
        t2 = time.perf_counter()
        predictor.predict_many([scan] * batch, batch_size=batch)
        out["batch_scans_per_s"] = batch / (time.perf_counter() - t2)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def predictor_volume(scan: str):
    from BrainAgeLib.io import load_volume

    return load_volume(scan)


def run_config(package: Path, scan: Path, precision: str, saliency: bool, batch: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", str(package), str(scan), precision, str(int(saliency)), str(batch)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--skip-bf16", action="store_true", help="bf16 is emulated without AVX512-BF16: slow")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        package, scan, precision, saliency, batch = args.worker
        print(json.dumps(worker(package, scan, precision, bool(int(saliency)), int(batch))))
        return

    from BrainAgeLib.sample_data import sample_path

    import torch

    scan = sample_path("colin27_brain")
    tmp = Path(tempfile.mkdtemp(prefix="brainage-bench-"))
    configs = [("1 model", 1, "fp32", True, args.batch), ("5-fold ensemble", 5, "fp32", False, args.batch)]
    if not args.skip_bf16:
        configs += [("1 model bf16", 1, "bf16", False, 0)]
    packages = {n: make_package(tmp / f"pkg{n}", n) for n in sorted({c[1] for c in configs})}
    rows, ages = [], {}
    for label, folds, precision, saliency, batch in configs:
        runs = [run_config(packages[folds], scan, precision, saliency, batch) for _ in range(args.repeats)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0] if isinstance(runs[0][k], (int, float))}
        ages[label] = runs[0]["ages"]
        rows.append((label, med))
    keys = [("load", "model load s"), ("read", "read s"), ("skull_strip", "skull strip (none) s"), ("preprocess", "preprocess s"), ("forward", "forward s"),
            ("end_to_end", "file->corrected age s"), ("saliency", "saliency s"), ("batch_scans_per_s", f"warm batch of {args.batch} scans/s"),
            ("peak_rss_mb", "peak RSS MB")]
    print(f"\nInference on {os.cpu_count()} CPU cores, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"input {scan.name} (pre-stripped, skull strip 'none'); medians of {args.repeats} cold runs\n")
    print("| configuration | " + " | ".join(k[1] for k in keys) + " | end-to-end / forward |")
    print("|---|" + "---|" * (len(keys) + 1))
    for label, med in rows:
        cells = [f"{med[k]:.3f}" if k in med else "-" for k, _ in keys]
        print(f"| {label} | " + " | ".join(cells) + f" | {med['end_to_end'] / med['forward']:.2f} |")
    if "1 model bf16" in ages:
        diff = max(abs(a - b) for a, b in zip(ages["1 model bf16"], ages["1 model"]))
        print(f"\nbf16 vs fp32, same network and scan: |age difference| = {diff:.3f} y (untrained, age-scaled weights)")
    print(f"\nreproduce: .venv/bin/python benchmarks/inference.py --repeats {args.repeats} --batch {args.batch}")


if __name__ == "__main__":
    main()
