"""``brainage calibrate``: fit a site's age-bias correction from predictions on its controls."""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from ..calibration import METHODS, fit_calibration, save_calibration
from ..errors import BrainAgeError, CalibrationError, ModelPackageError
from ..package import read_card, write_card


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "calibrate", help="fit age-bias correction on cognitively unimpaired controls",
        description="Fit the age-bias line predicted = a x age + b on a site's controls from a `brainage predict` "
        "table. A predictions table has no group column: join one from a participants table with --participants.")
    p.add_argument("predictions", help="CSV from `brainage predict` (columns predicted_age, chronological_age)")
    p.add_argument("--out", required=True, help="calibration JSON to write")
    p.add_argument("--method", choices=METHODS, default="extremes", help="extremes: youngest+oldest 5%% (the paper); all: every control")
    p.add_argument("--fraction", type=float, default=0.05, help="share of youngest and of oldest controls for 'extremes'")
    p.add_argument("--participants", metavar="TABLE",
                   help="CSV/TSV with one row per participant (participant_id, and e.g. cohort, age) joined to the "
                        "predictions by the id found in each scan's path; its 'age' fills missing chronological ages")
    p.add_argument("--id-column", metavar="NAME",
                   help="participant id column of --participants (default: participant_id, subject or subject_id)")
    p.add_argument("--controls-column", help="column naming the group (e.g. cohort); only rows equal to --controls-value are used")
    p.add_argument("--controls-value", default="CU", help="value of --controls-column that marks a control (default CU)")
    p.add_argument("--site", default="", help="site name stored in the calibration")
    p.add_argument("--package", help="also store the calibration in this model package's card (used by default at prediction)")
    p.set_defaults(func=run)


def with_participants(table: pd.DataFrame, participants: str, id_column: str | None) -> pd.DataFrame:
    """The predictions joined with a participants table; its ``age`` fills missing chronological ages."""
    try:
        from BrainAgeTrainingLib.evaluate import join_participants, read_table
    except ImportError as exc:
        raise CalibrationError(f"--participants needs BrainAgeTrainingLib, which is not installed ({exc})") from exc
    joined, notes = join_participants(table, read_table(participants), id_column)
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    age = next((c for c in ("age_participants", "age") if c in joined.columns), None)
    if age:
        known = joined.get("chronological_age", pd.Series(float("nan"), index=joined.index))
        joined["chronological_age"] = known.fillna(pd.to_numeric(joined[age], errors="coerce"))
    return joined


def controls(table: pd.DataFrame, column: str, value: str, source: str) -> pd.DataFrame:
    """Rows whose ``column`` equals ``value``; a missing column is a CalibrationError saying how to add it."""
    if column not in table.columns:
        raise CalibrationError(
            f"--controls-column {column!r}: {source} has no such column (columns: {', '.join(map(str, table.columns))}). "
            "A `brainage predict` table has none: add the group with --participants participants.tsv "
            f"(columns participant_id and {column}), or leave out --controls-column to use every row")
    chosen = table[table[column].astype(str) == value]
    if chosen.empty:
        raise CalibrationError(f"no row has {column} = {value!r} (values: {sorted(table[column].astype(str).unique())}); "
                               "set --controls-value")
    return chosen


def run(args: argparse.Namespace) -> int:
    try:
        table = pd.read_csv(args.predictions)
        if args.participants:
            table = with_participants(table, args.participants, args.id_column)
        missing = {"predicted_age", "chronological_age"} - set(table.columns)
        if missing:
            raise CalibrationError(f"{args.predictions} lacks columns {sorted(missing)}")
        if "error" in table.columns:
            table = table[table["error"].isna()]
        if args.controls_column:
            source = f"{args.predictions} joined with {args.participants}" if args.participants else args.predictions
            table = controls(table, args.controls_column, args.controls_value, source)
        calibration = fit_calibration(
            table["predicted_age"], table["chronological_age"], method=args.method, fraction=args.fraction, site=args.site
        )
    except (BrainAgeError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
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
