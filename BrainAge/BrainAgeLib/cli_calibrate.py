"""``brainage calibrate``: fit a site's age-bias correction from predictions on its controls."""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from .calibration import METHODS, fit_calibration, save_calibration
from .errors import CalibrationError, ModelPackageError
from .package import read_card, write_card


def register(subparsers) -> None:
    p = subparsers.add_parser("calibrate", help="fit age-bias correction on cognitively unimpaired controls")
    p.add_argument("predictions", help="CSV from `brainage predict` (columns predicted_age, chronological_age)")
    p.add_argument("--out", required=True, help="calibration JSON to write")
    p.add_argument("--method", choices=METHODS, default="extremes", help="extremes: youngest+oldest 5%% (the paper); all: every control")
    p.add_argument("--fraction", type=float, default=0.05, help="share of youngest and of oldest controls for 'extremes'")
    p.add_argument("--controls-column", help="column naming the group (e.g. cohort); only rows equal to --controls-value are used")
    p.add_argument("--controls-value", default="CU")
    p.add_argument("--site", default="", help="site name stored in the calibration")
    p.add_argument("--package", help="also store the calibration in this model package's card (used by default at prediction)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    table = pd.read_csv(args.predictions)
    missing = {"predicted_age", "chronological_age"} - set(table.columns)
    if missing:
        print(f"error: {args.predictions} lacks columns {sorted(missing)}", file=sys.stderr)
        return 2
    if "error" in table.columns:
        table = table[table["error"].isna()]
    if args.controls_column:
        table = table[table[args.controls_column].astype(str) == args.controls_value]
    try:
        calibration = fit_calibration(
            table["predicted_age"], table["chronological_age"], method=args.method, fraction=args.fraction, site=args.site
        )
    except CalibrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    save_calibration(calibration, args.out)
    if args.package:
        try:
            card = read_card(args.package)
            card.calibration = calibration.to_dict()
            write_card(args.package, card)
        except ModelPackageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"calibration stored in {args.package}")
    print(
        f"predicted = {calibration.slope:.4f} x age + {calibration.intercept:.3f} "
        f"({calibration.method}, {calibration.n_controls} controls aged {calibration.age_min:.0f}-{calibration.age_max:.0f}); "
        f"written to {args.out}"
    )
    return 0
