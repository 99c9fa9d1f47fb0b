"""``brainage skullstrip``: skull-strip one scan, write the mask (and brain), print the QC record."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..errors import BrainAgeError
from ..io import atomic_path, load_nifti, save_nifti
from ..skullstrip import BACKENDS, DEFAULT_BACKEND, skull_strip

#: Exit status when the mask was written but its QC flagged it.
EXIT_QC_FLAGGED = 3


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "skullstrip",
        help="skull-strip a head scan (HD-BET, deepbet, or none for brain-only input)",
        description=(
            "Brain mask and skull-stripped brain of a T1 head scan, on the scan's own grid "
            "(same shape and affine). Prints a JSON QC record: brain volume, bounding box, flags."
        ),
    )
    parser.add_argument("input", metavar="INPUT", help="T1 scan (.nii / .nii.gz)")
    parser.add_argument("--backend", choices=list(BACKENDS), default=DEFAULT_BACKEND, help="default: %(default)s")
    parser.add_argument("--mask", required=True, metavar="OUT_MASK", help="output brain mask (.nii.gz, uint8 0/1)")
    parser.add_argument("--brain", metavar="OUT_BRAIN", help="output skull-stripped brain (.nii.gz)")
    parser.add_argument("--qc-json", metavar="OUT_QC", help="also write the QC record to this JSON file")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    parser.add_argument("--folds", type=int, default=1, help="HD-BET fold models to average, 1-5 (default 1)")
    parser.add_argument("--tta", action="store_true", help="HD-BET test-time mirroring (8x slower; for GPUs)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument(
        "--strict", action="store_true", help=f"exit with status {EXIT_QC_FLAGGED} when the QC flags the mask"
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    outputs = [Path(p) for p in (args.mask, args.brain, args.qc_json) if p]
    existing = [str(p) for p in outputs if p.exists()]
    if existing and not args.overwrite:
        print(f"error: {', '.join(existing)} already exist(s); choose other names or add --overwrite.", file=sys.stderr)
        return 1
    try:
        volume = load_nifti(args.input)
        result = skull_strip(volume, args.backend, device=args.device, folds=args.folds, tta=args.tta)
        save_nifti(result.mask, args.mask, dtype=np.uint8)
        if args.brain:
            save_nifti(result.brain, args.brain, dtype=np.float32)
    except BrainAgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    record = result.record()
    record["mask_path"] = str(args.mask)
    record["brain_path"] = str(args.brain) if args.brain else None
    text = json.dumps(record, indent=2)
    if args.qc_json:
        with atomic_path(args.qc_json) as tmp:
            tmp.write_text(text + "\n")
    print(text)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.strict and not result.qc.passed:
        return EXIT_QC_FLAGGED
    return 0
