"""``brainage info``: what a model package holds, with its checksums verified."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from ..errors import ModelPackageError
from ..package import load_package, read_card


def register(subparsers) -> None:
    p = subparsers.add_parser("info", help="show a model package's card and verify its weights")
    p.add_argument("package", help="model package folder")
    p.add_argument("--json", action="store_true", help="print the whole card as JSON")
    p.add_argument("--no-verify", action="store_true", help="read the card only; skip loading and checking weights")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        card = read_card(args.package)
        if not args.no_verify:
            load_package(args.package)
    except ModelPackageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(asdict(card), indent=2))
        return 0
    spec = card.preprocess_spec
    print(f"model        {card.name} {card.version}  ({card.architecture['name']}, {len(card.folds)} network(s))")
    if card.synthetic_demo:
        print("             TRAINED ON SYNTHETIC DATA: a demonstration, not for clinical or research use")
    print(f"intended use {card.intended_use}")
    print(f"preprocess   {spec.target_spacing_mm} mm, {spec.roi_size} voxels, crop centre {spec.crop_center}, skull strip {card.skull_strip}")
    for fold in card.folds:
        metrics = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in fold.get("metrics", {}).items())
        print(f"fold         {fold['file']}  sha256 {fold['sha256'][:16]}...  {metrics}")
    if card.calibration:
        c = card.calibration
        print(f"calibration  predicted = {c['slope']:.4f} x age + {c['intercept']:.3f} ({c['method']}, n={c['n_controls']})")
    else:
        print("calibration  none (pass --calibration to correct age bias)")
    if card.training_data:
        print(f"training     {json.dumps(card.training_data)}")
    print("weights      verified" if not args.no_verify else "weights      not checked (--no-verify)")
    return 0
