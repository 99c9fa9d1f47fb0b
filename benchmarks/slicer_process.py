"""Click-to-result in the Slicer module: ``BrainAgeLogic.process`` on a real MRML scene (PyPI slicer-core).

Input: a clinical-style head, the Colin27 head with skull (1 mm) cut to every 7th axial
slice (7 mm), read by Slicer's own storage node; skull strip deepbet; the Logic's default
saliency (``BrainAgeLib.saliency.DEFAULT_METHOD``) and region occlusion; result table, brain segmentation and saliency volume
added to the scene. Every run is a fresh process: the first click includes the model
load (the Logic keeps the predictor for later clicks), the second click is warm; the
imports a first click triggers in a fresh Slicer (torch, MONAI, ...) are timed on their own.
The Slicer application itself is not installed here, so GUI painting is not included.

Run:  .venv/bin/python benchmarks/slicer_process.py [--repeats 3] [--network compact --folds 5 | --package PKG]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference import NETWORKS, make_package  # noqa: E402


def worker(package: str, scan: str, precision: str) -> dict:
    """Two clicks on one scene in this (fresh) process; seconds and the stages of each."""
    sys.path.insert(0, str(ROOT / "Testing"))
    import slicer_env

    slicer_env.new_scene()
    import BrainAge

    node = slicer_env.load_volume_node(scan, "clinical head")
    logic = BrainAge.BrainAgeLogic()
    start = time.perf_counter()
    import BrainAgeLib.predict as predict  # what the first click imports (torch, MONAI, ...), timed on its own

    out = {"imports": time.perf_counter() - start}
    if precision != "fp32":  # the Logic's predictor() does not pass a precision; emulate one that does
        import functools

        predict.Predictor = functools.partial(predict.Predictor, precision=precision)
    for click in ("first", "second"):
        start = time.perf_counter()
        outputs = logic.process(node, package, chronologicalAge=60.0, skullStrip="deepbet")
        out[click] = time.perf_counter() - start
        out[f"{click}_stages"] = {k: round(v, 3) for k, v in outputs.result.timings.items()}
    out["used"] = f"{logic.predictor(package, None, 'deepbet', None).precision}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--network", choices=sorted(NETWORKS), default="compact")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--package", help="a trained model package (e.g. the bundled default) instead of untrained networks")
    parser.add_argument("--precisions", nargs="+", default=["fp32"], help="fp32 (what the Logic uses today), auto")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return

    from BrainAgeLib.io import load_nifti, save_nifti
    from BrainAgeLib.saliency import DEFAULT_METHOD
    from BrainAgeLib.sample_data import sample_path
    from BrainAgeLib.slicing import axial_subsample
    from cpu_info import machine_line

    tmp = Path(tempfile.mkdtemp(prefix="brainage-slicer-bench-"))
    scan = save_nifti(axial_subsample(load_nifti(sample_path("colin27_head")), 7), tmp / "colin27_head_7mm.nii.gz")
    package = Path(args.package).resolve() if args.package else make_package(tmp / "model", args.folds, NETWORKS[args.network])
    env = {**os.environ, "BRAINAGE_CACHE": str(tmp / "cache")}
    rows = []
    for precision in args.precisions:
        if precision == "auto":  # the one-time bf16 check, outside the timed runs
            subprocess.run([sys.executable, __file__, "--worker", str(package), str(scan), precision], capture_output=True, cwd=ROOT, env=env, check=True)
        runs = []
        for _ in range(args.repeats):
            proc = subprocess.run([sys.executable, __file__, "--worker", str(package), str(scan), precision], capture_output=True, text=True, cwd=ROOT, env=env)
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr[-3000:])
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        rows.append((precision, runs))
    network = "paper's DenseNet-169" if NETWORKS[args.network] is None else f"compact DenseNet {NETWORKS[args.network]}"
    network = f"{network}, {args.folds} fold(s), untrained weights"
    if args.package:
        from BrainAgeLib.package import read_card

        card = read_card(package)
        network = f"package {card.name} {card.version} ({len(card.folds)} networks, test time {card.test_time or 'plain'})"
    print(f"\n{machine_line()}")
    print(f"BrainAgeLogic.process on a slicer-core MRML scene; {network}; "
          f"input {scan.name} {load_nifti(scan).shape}; skull strip deepbet; {DEFAULT_METHOD} saliency and region occlusion; "
          f"medians of {args.repeats} fresh processes; load average at the end {os.getloadavg()[0]:.1f}\n")
    print("| precision | imports on first use (s) | first click (s) | second click (s) | stages of the second click (s) |")
    print("|---|---:|---:|---:|---|")
    for precision, runs in rows:
        imports = statistics.median(r["imports"] for r in runs)
        first = statistics.median(r["first"] for r in runs)
        second = statistics.median(r["second"] for r in runs)
        for r in runs:
            r["second_stages"]["saliency + scene"] = r["second"] - sum(r["second_stages"].values())
        stages = ", ".join(f"{k} {statistics.median(r['second_stages'][k] for r in runs):.2f}" for k in runs[0]["second_stages"])
        print(f"| {precision} ({runs[0]['used']}) | {imports:.2f} | {first:.2f} | {second:.2f} | {stages} |")
    source = f"--package {args.package}" if args.package else f"--network {args.network} --folds {args.folds}"
    print(f"\nreproduce: .venv/bin/python benchmarks/slicer_process.py --repeats {args.repeats} {source} "
          f"--precisions {' '.join(args.precisions)}")


if __name__ == "__main__":
    main()
