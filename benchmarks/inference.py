"""Inference speed and memory on this machine, per stage: 1 model vs 5-fold ensemble, per precision.

Each configuration runs ``--repeats`` times, each in a fresh subprocess (so model load,
first-call overheads and peak RSS are its own); the table shows medians. Weights are
untrained (speed does not depend on them) but scaled to an age-like output, so the
'auto' precision check compares ages in years. Input: the pre-stripped Colin27 brain
(1 mm), skull strip 'none'. Columns:

- file -> corrected age: Predictor construction (model load) + read + skull strip +
  preprocess + forward + calibration, one scan, cold process; e2e / forward = that / forward.
  The package was loaded once before (its weights' sha256 are then remembered); the first
  load's time, with the hashing, is printed below the table
- warm batch: ``predict_many`` on one batch of ``--batch`` scans (second call, model warm);
  steady batch: ``predict_many`` on ``--batches`` batches (reading and preprocessing of the
  next batch overlap the network); forward-only: the batched forward alone on the same
  prepared inputs; steady / forward-only in %
- 'auto': bf16 + channels_last where the CPU has native bf16 and ages stay within 0.1 y of
  fp32 (the check is made once, before the timed runs, and its result printed), else fp32

Run:  .venv/bin/python benchmarks/inference.py [--repeats 3] [--batch 8] [--batches 3] [--network paper|compact|xs] [--precisions fp32 auto]
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
#: The paper's network, the shipped compact model's (benchmarks/configs/ixi_xxs.yaml) and the larger compact size
#: measured beside it (benchmarks/configs/ixi_xs.yaml).
NETWORKS = {"paper": None, "compact": {"init_features": 8, "growth_rate": 8, "block_config": [3, 6, 12, 8]},
            "xs": {"init_features": 16, "growth_rate": 16, "block_config": [3, 6, 12, 8]}}


def make_package(path: Path, folds: int, config: dict | None) -> Path:
    import torch

    from BrainAgeLib.model import ARCHITECTURE, DEFAULT_CONFIG, build_model
    from BrainAgeLib.package import ModelCard, save_package

    models = []
    for seed in range(folds):
        model = build_model(config, seed=seed)
        with torch.no_grad():  # outputs in an age-like range so precision errors are in "years"
            model.class_layers.out.weight.mul_(10.0)
            model.class_layers.out.bias.fill_(50.0)
        models.append(model)
    card = ModelCard(name=f"bench-{folds}fold", version="0", skull_strip={"backend": "none"},
                     architecture={"name": ARCHITECTURE, "config": {**DEFAULT_CONFIG, **(config or {})}})
    return save_package(path, models, card, overwrite=True)


def first_fold(loaded, path: Path) -> Path:
    """A copy of a loaded package that holds only its first network."""
    from dataclasses import replace

    from BrainAgeLib.package import save_package

    return save_package(path, loaded.models[:1], replace(loaded.card, folds=loaded.card.folds[:1]), overwrite=True)


def worker(package: str, scan: str, precision: str, saliency: bool, batch: int, batches: int = 3) -> dict:
    """One cold run (imports excluded): load -> predict one scan -> saliency -> warm batch -> forward only."""
    import torch  # noqa: F401  (imports are excluded from the timings)

    from BrainAgeLib.calibration import Calibration
    from BrainAgeLib.io import load_volume
    from BrainAgeLib.predict import Predictor

    cal = Calibration(slope=0.7, intercept=15.0, method="all", n_controls=10, age_min=20, age_max=80)
    t0 = time.perf_counter()
    predictor = Predictor(package, device="cpu", precision=precision, calibration=cal, skull_strip="none")
    load = time.perf_counter() - t0
    result = predictor.predict_path(scan, age=60.0)
    end_to_end = time.perf_counter() - t0
    out = {"load": load, "end_to_end": end_to_end, **result.timings, "ages": result.fold_ages,
           "used": f"{predictor.precision}{' channels_last' if predictor.channels_last else ''}"}
    if saliency:
        case = predictor.prepare_volume(load_volume(scan))
        t1 = time.perf_counter()
        predictor.saliency(case, "guided-backprop")
        out["saliency"] = time.perf_counter() - t1
    if batch:
        predictor.predict_many([scan] * batch, batch_size=batch)  # first batch-sized forward: kernel set-up
        t2 = time.perf_counter()
        predictor.predict_many([scan] * batch, batch_size=batch)
        out["batch_scans_per_s"] = batch / (time.perf_counter() - t2)
        t3 = time.perf_counter()
        predictor.predict_many([scan] * (batch * batches), batch_size=batch)
        out["steady_scans_per_s"] = batch * batches / (time.perf_counter() - t3)
        arrays = [predictor.prepare_volume(load_volume(scan)).prepared.data] * batch
        t4 = time.perf_counter()
        for _ in range(batches):
            predictor.forward(arrays)
        out["forward_scans_per_s"] = batch * batches / (time.perf_counter() - t4)
        out["batch_vs_forward_pct"] = 100.0 * out["steady_scans_per_s"] / out["forward_scans_per_s"]
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_config(package: Path, scan: Path, precision: str, saliency: bool, batch: int, env: dict, batches: int = 3) -> dict:
    cmd = [sys.executable, __file__, "--worker", str(package), str(scan), precision, str(int(saliency)), str(batch), str(batches)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cell(key: str, value: float | None) -> str:
    if value is None:
        return "-"
    if key in ("batch_vs_forward_pct", "peak_rss_mb"):
        return f"{value:.0f}"
    return f"{value:.2f}" if key.endswith("per_s") else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--network", choices=sorted(NETWORKS), default="paper", help="paper: DenseNet-169 (20.4 M); compact: the shipped ixi-hh-densenet-xxs network; xs: the larger compact size")
    parser.add_argument("--package", help="a trained model package instead (its first fold is the '1 model' row, all folds the ensemble row)")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "auto"], help="fp32, bf16, auto")
    parser.add_argument("--batches", type=int, default=3, help="batches in the steady-state batch measurement")
    parser.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        package, scan, precision, saliency, batch, batches = args.worker
        print(json.dumps(worker(package, scan, precision, bool(int(saliency)), int(batch), int(batches))))
        return

    import torch

    from BrainAgeLib.sample_data import sample_path
    from cpu_info import machine_line

    scan = sample_path("colin27_brain")
    tmp = Path(tempfile.mkdtemp(prefix="brainage-bench-"))
    env = {**os.environ, "BRAINAGE_CACHE": str(tmp / "cache")}  # the 'auto' choice is recorded here, not in ~/.cache
    config = NETWORKS[args.network]
    if args.package:
        from BrainAgeLib.package import load_package

        loaded = load_package(args.package)
        packages = {1: first_fold(loaded, tmp / "pkg1"), 5: Path(args.package)}
    else:
        packages = {n: make_package(tmp / f"pkg{n}", n, config) for n in (1, 5)}
    notes = []
    # one untimed first run per package: it hashes the weights (later loads find them verified, see
    # BrainAgeLib.file_digests) and, for 'auto', makes (and records) the one-time bf16-vs-fp32 check
    for folds, package in packages.items():
        first = run_config(package, scan, "auto" if "auto" in args.precisions else "fp32", False, 0, env)
        which = ("its first network" if folds == 1 else "the whole package") if args.package else f"the {folds}-fold package"
        notes.append(f"first load of {which} on this machine (sha256 of its weights computed): "
                     f"{first['load']:.3f} s; the timed runs load it verified")
    if "auto" in args.precisions:
        decisions = json.loads((tmp / "cache" / "cpu_precision.json").read_text()) if (tmp / "cache" / "cpu_precision.json").is_file() else {}
        for decision in decisions.values():
            notes.append(f"'auto' check: {decision['precision']} chosen, largest |bf16 - fp32| fold age {decision['max_difference_y']:.3f} y")
        if not decisions:
            notes.append("'auto' check: this CPU has no native bf16, so 'auto' is fp32 without a check")
    rows = []
    whole = "5-fold ensemble"
    if args.package:
        from BrainAgeLib.model import count_parameters

        whole = f"whole package ({len(loaded.models)} networks)"
    for precision in args.precisions:
        for label, folds, saliency, batch in (("1 model", 1, True, args.batch), (whole, 5, False, 0)):
            runs = [run_config(packages[folds], scan, precision, saliency, batch, env, args.batches) for _ in range(args.repeats)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0] if isinstance(runs[0][k], (int, float))}
            rows.append((f"{label}, {precision} ({runs[0]['used']})", med))
    keys = [("load", "model load s"), ("read", "read s"), ("skull_strip", "skull strip (none) s"), ("preprocess", "preprocess s"),
            ("forward", "forward s"), ("end_to_end", "file->corrected age s"), ("saliency", "saliency s"),
            ("batch_scans_per_s", f"warm batch of {args.batch} scans/s"), ("steady_scans_per_s", f"steady, {args.batches} batches scans/s"),
            ("forward_scans_per_s", "forward-only scans/s"), ("batch_vs_forward_pct", "steady / forward-only %"), ("peak_rss_mb", "peak RSS MB")]
    network = "paper's DenseNet-169 (20.4 M parameters)" if config is None else f"compact DenseNet {config}"
    if args.package:
        sizes = sorted({count_parameters(m) for m in loaded.models})
        mirrored = ", each age mirror-averaged as its card says" if (loaded.card.test_time or {}).get("mirror_average") else ""
        network = (f"trained package {loaded.card.name} {loaded.card.version} ({len(loaded.models)} networks of "
                   f"{' or '.join(f'{n:,}' for n in sizes)} parameters{mirrored}; '1 model' is its first)")
    print(f"\n{machine_line()}")
    print(f"Network: {network}; input {scan.name} (pre-stripped, skull strip 'none'); medians of {args.repeats} cold runs; "
          f"load average at the end {os.getloadavg()[0]:.1f}\n")
    print("| configuration | " + " | ".join(k[1] for k in keys) + " | end-to-end / forward |")
    print("|---|" + "---:|" * (len(keys) + 1))
    for label, med in rows:
        cells = [_cell(k, med.get(k)) for k, _ in keys]
        print(f"| {label} | " + " | ".join(cells) + f" | {med['end_to_end'] / med['forward']:.2f} |")
    for note in notes:
        print(f"\n{note}")
    source = f"--package {args.package}" if args.package else f"--network {args.network}"
    command = (f".venv/bin/python benchmarks/inference.py --repeats {args.repeats} --batch {args.batch} --batches {args.batches} "
               f"{source} --precisions {' '.join(args.precisions)}")
    print(f"\nreproduce: {command}")


if __name__ == "__main__":
    main()
