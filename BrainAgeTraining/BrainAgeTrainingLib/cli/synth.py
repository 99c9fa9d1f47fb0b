"""``brainage synth``: generate a synthetic ageing cohort (BIDS-style) from real heads."""

from __future__ import annotations

import argparse
import os

from ..synth.anatomy import HEAD_SOURCES
from ..synth.cohort import COHORTS, CohortSpec, write_cohort
from ..synth.scanner import STYLES


def _names(text: str, allowed, what: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown {what} {bad or text!r}; choose from {', '.join(allowed)}")
    return names


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "synth", help="generate synthetic subjects whose anatomy ages in a known way",
        description="Generate a BIDS-style folder of synthetic T1 scans built from real heads, with known "
        "chronological and biological ages, cohorts (CU/MCI/AD/PD-like), sites and acquisition styles.",
    )
    p.add_argument("--out", required=True, help="output folder (BIDS-style)")
    p.add_argument("--subjects", type=int, required=True, help="number of subjects")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files)")
    p.add_argument("--cohorts", type=lambda t: _names(t, tuple(COHORTS), "cohort"), default=("CU",),
                   help="comma-separated cohorts, assigned in turn (default CU): " + ",".join(COHORTS))
    p.add_argument("--style", type=lambda t: _names(t, STYLES, "style"), default=STYLES,
                   help="comma-separated acquisition styles, assigned in turn (default research3d,clinical2d)")
    p.add_argument("--heads", type=lambda t: _names(t, tuple(HEAD_SOURCES), "head"), default=tuple(HEAD_SOURCES),
                   help="real heads to build subjects from (default all: " + ",".join(HEAD_SOURCES) + ")")
    p.add_argument("--jobs", type=int, help="parallel processes (default: 2, or 1 on a one-core machine)")
    p.add_argument("--no-wmh", action="store_true", help="no white-matter hypointensities")
    p.add_argument("--overwrite", action="store_true", help="write into a folder that already holds a cohort")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spec = CohortSpec(subjects=args.subjects, seed=args.seed, cohorts=args.cohorts, styles=args.style,
                      heads=args.heads, wmh=not args.no_wmh)
    try:
        table = write_cohort(spec, args.out, jobs=args.jobs or min(2, os.cpu_count() or 1), overwrite=args.overwrite)
    except (FileExistsError, FileNotFoundError, ValueError) as exc:
        print(f"brainage synth: {exc}")
        return 1
    print(f"wrote {len(table)} subjects to {args.out}")
    print(table.groupby("cohort")[["age", "biological_age", "mmse"]].mean().round(1).to_string())
    return 0
