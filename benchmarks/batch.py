"""Batch throughput on this machine: the plain single-process loop vs the Dask engine (``brainage predict --dask``).

Rows (same model, same cases, skull strip 'none', fp32):

- plain loop, 1 process: ``Predictor.predict_many`` as ``brainage predict`` runs it (batch 8, the next
  cases read while the network runs), torch on 1 thread and on every core;
- Dask LocalCluster with 1 and with 2 one-thread worker processes (``--dask local:N``), each worker
  loading the model once (a worker plugin), each task a network batch of cases run by the same
  ``predict_many`` (at most ``--batch-size``, fewer when there are fewer than two per worker), rows
  streamed back.

Every row hashes each input (the ``source_sha256`` column), as ``brainage predict`` does. Start-up
(model load; for Dask also the cluster and the workers' model loads) is timed apart from the batch; the
batch is timed after one warm-up round (one case per worker), over ``--cases`` copies of the Colin27
brain. scans/s = cases / batch seconds; overhead per case = Dask's seconds per case over the plain
loop's at equal cores, minus 1 (target <= 10 %).

Run:  .venv/bin/python benchmarks/batch.py [--cases 32] [--model PKG] [--workers 1 2] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "BrainAge"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cpu_info import machine_line  # noqa: E402


def copies(folder: Path, n: int) -> list[str]:
    from BrainAgeLib.sample_data import sample_path

    source = sample_path("colin27_brain")
    paths = []
    for i in range(n):
        path = folder / f"sub-{i:03d}_T1w.nii.gz"
        shutil.copy(source, path)
        paths.append(str(path))
    return paths


def plain(model: str, paths: list[str], warmup: list[str], threads: int, batch_size: int) -> dict:
    import torch

    from BrainAgeLib.batch_resume import case_row, content_sha256
    from BrainAgeLib.predict import Predictor

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    predictor = Predictor(model, device="cpu", skull_strip="none")
    startup = time.perf_counter() - t0
    rows = []

    def keep(_index: int, result) -> None:
        rows.append(case_row(result.to_row(), content_sha256(result.source), result.source))

    predictor.predict_many(warmup, batch_size=batch_size, on_finished=keep)
    rows.clear()
    t0 = time.perf_counter()
    predictor.predict_many(paths, batch_size=batch_size, on_finished=keep)
    seconds = time.perf_counter() - t0
    return {"startup": startup, "seconds": seconds, "rows": rows}


def on_dask(model: str, paths: list[str], warmup: list[str], workers: int, batch_size: int) -> dict:
    from BrainAgeLib.batch_dask import connect, load_on_workers, predict_on_dask

    t0 = time.perf_counter()
    client, cluster = connect(f"local:{workers}")
    try:
        load_on_workers(client, {"package": model, "device": "cpu", "skull_strip": "none"})
        startup = time.perf_counter() - t0
        rows = []
        predict_on_dask(client, [(i, p, None) for i, p in enumerate(warmup)], lambda i, r: rows.append(r), batch_size=1)
        rows.clear()
        t0 = time.perf_counter()
        predict_on_dask(client, [(i, p, None) for i, p in enumerate(paths)], lambda i, r: rows.append(r),
                        batch_size=batch_size)
        seconds = time.perf_counter() - t0
    finally:
        client.close()
        cluster.close()
    return {"startup": startup, "seconds": seconds, "rows": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=32)
    parser.add_argument("--model", help="model package (default: the bundled model)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="LocalCluster sizes to run")
    parser.add_argument("--batch-size", type=int, default=8, help="the plain loop's network batch (brainage predict's default)")
    args = parser.parse_args()

    from BrainAgeLib.bundled_models import default_model_path

    model = str(args.model or default_model_path())
    cores = os.cpu_count() or 1
    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="brainage-batch-bench-") as tmp:
        paths = copies(Path(tmp), args.cases + max(args.workers))
        warmup, paths = paths[args.cases:], paths[: args.cases]
        runs = {}
        for threads in sorted({1, cores}):
            runs[("plain", threads)] = plain(model, paths, warmup[:1], threads, args.batch_size)
        for workers in args.workers:
            runs[("dask", workers)] = on_dask(model, paths, warmup[:workers], workers, args.batch_size)
        import torch

        torch.set_num_threads(cores)
    ages = {key: [r["predicted_age"] for r in run["rows"]] for key, run in runs.items()}
    print(f"\nmodel {Path(model).name}; {args.cases} cases (Colin27 brain copies), skull strip none, fp32; "
          f"plain loop batch {args.batch_size}\n")
    print("| engine | cores | start-up s | batch s | scans/s | s per case | overhead per case vs plain loop, equal cores |")
    print("|---|---|---|---|---|---|---|")
    for (engine, n), run in runs.items():
        per_case = run["seconds"] / args.cases
        name = "plain loop, 1 process" + (f", torch {n} thread{'s' if n > 1 else ''}") if engine == "plain" else \
            f"Dask LocalCluster, {n} worker{'s' if n > 1 else ''} x 1 thread"
        overhead = "-"
        if engine == "dask" and ("plain", n) in runs:
            overhead = f"{100 * (per_case / (runs[('plain', n)]['seconds'] / args.cases) - 1):+.1f} %"
        print(f"| {name} | {n} | {run['startup']:.1f} | {run['seconds']:.1f} | {args.cases / run['seconds']:.2f} | "
              f"{per_case:.2f} | {overhead} |")
    spread = max(abs(a - b) for key in ages for a, b in zip(sorted(ages[key]), sorted(ages[("plain", 1)])))
    print(f"\nlargest age difference between engines: {spread:.2e} y; every engine returned {args.cases} rows: "
          f"{all(len(v) == args.cases for v in ages.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
