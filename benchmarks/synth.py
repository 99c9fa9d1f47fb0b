"""Synthetic-cohort generation speed: subjects per minute per acquisition style.

    python benchmarks/synth.py [--subjects 12] [--jobs 2]

Generates ``--subjects`` CU subjects per style with ``--jobs`` worker processes (the
``brainage synth`` path, files written, worker start-up included; the one-off head
preparation is cached beforehand) and prints a table. Never fails on timing.
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import sys
import tempfile
import time

from BrainAgeTrainingLib.synth.anatomy import HEAD_SOURCES, load_template
from BrainAgeTrainingLib.synth.cohort import CohortSpec, write_cohort
from BrainAgeTrainingLib.synth.scanner import STYLES


def _cpu() -> float:
    """CPU seconds used by this process and its finished children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subjects", type=int, default=12)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for name in HEAD_SOURCES:
        load_template(name)
    rows = []
    for style in STYLES:
        spec = CohortSpec(subjects=args.subjects, seed=args.seed, cohorts=("CU", "AD"), styles=(style,))
        with tempfile.TemporaryDirectory() as tmp:
            t0, c0 = time.perf_counter(), _cpu()
            write_cohort(spec, tmp, jobs=args.jobs, progress=False)
            dt, cpu = time.perf_counter() - t0, _cpu() - c0
            size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(tmp) for f in fs)
        rate = args.subjects / dt * 60
        per = cpu / args.subjects
        rows.append((style, args.subjects, args.jobs, dt, rate, 1000 / rate, per, 1000 * per / args.jobs / 60,
                     size / args.subjects / 1e6))
    print("$ python benchmarks/synth.py " + shlex.join(sys.argv[1:] if argv is None else argv))
    print(f"cpu cores {os.cpu_count()}, load average before/after {os.getloadavg()[0]:.1f}")
    head = (f"| {'style':<10} | subjects | jobs | seconds | subjects/min | 1000 subjects (min) | CPU s/subject "
            "| 1000 subjects on idle cores (min) | MB/subject |")
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for style, n, j, dt, rate, per1000, per, idle, mb in rows:
        print(f"| {style:<10} | {n:>8} | {j:>4} | {dt:>7.1f} | {rate:>12.1f} | {per1000:>19.1f} | {per:>13.2f} "
              f"| {idle:>33.1f} | {mb:>10.1f} |")
    print("CPU s/subject includes worker start-up; 'idle cores' = 1000 x CPU s / jobs (no other load).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
