"""``brainage evaluate``: a cohort's predictions -> accuracy, site calibration, group tests (HTML + JSON)."""

from __future__ import annotations

import argparse
import sys

from BrainAgeLib.calibration import METHODS
from BrainAgeLib.errors import BrainAgeError

from ..evaluate import Columns, EvaluationError, Options, evaluate, join_participants, read_table, write_outputs
from ..evaluate.columns import DEFAULTS, MEANING, OPTIONS


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="accuracy, site calibration and group statistics of predictions (HTML + JSON report)",
        description="Score a predictions table (e.g. from `brainage predict`) against chronological age, fit the "
        "site's age-bias calibration on the control group (cross-fitted), and compare the groups' brain age gaps.")
    p.add_argument("predictions", help="CSV/TSV with one row per scan: predicted age (and age, id, ... or join --participants)")
    p.add_argument("--participants", metavar="TABLE", help="CSV/TSV with one row per participant (age, group, site, sex, score)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for report.html, report.json, calibration.json, ...")
    for role, option in OPTIONS.items():
        p.add_argument(option, dest=f"{role}_column", metavar="NAME",
                       help=f"column of the {MEANING[role]} (default: the first of {', '.join(DEFAULTS[role])} present)")
    p.add_argument("--controls", default="CU", help="value of the group column that marks controls (default CU)")
    p.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE",
                   help="keep only rows with this value (repeatable), e.g. role=test")
    p.add_argument("--method", choices=METHODS, default="extremes",
                   help="calibration saved and used for the gaps: extremes (youngest/oldest 5 %%, the paper) or all")
    p.add_argument("--fraction", type=float, default=0.05, help="share of youngest and oldest controls for 'extremes'")
    p.add_argument("--folds", type=int, default=5, help="cross-fitting folds of the controls (default 5)")
    p.add_argument("--bootstrap", type=int, default=2000, metavar="N", help="bootstrap resamples of subjects (0: no CIs)")
    p.add_argument("--min-group-size", type=int, default=3, help="smallest group tested (default 3 subjects)")
    p.add_argument("--drop-small-groups", action="store_true", help="leave groups below --min-group-size out of the tests")
    p.add_argument("--site", default="", help="site name stored in calibration.json")
    p.add_argument("--title", default="Brain age evaluation", help="report title")
    p.add_argument("--overwrite", action="store_true", help="replace a report already in --out")
    p.set_defaults(func=run)


def _filter(table, conditions: list[str]):
    for condition in conditions:
        column, sep, value = condition.partition("=")
        if not sep:
            raise EvaluationError(f"--where {condition!r}: write COLUMN=VALUE")
        if column not in table.columns:
            raise EvaluationError(f"--where {condition!r}: no column {column!r} (columns: {', '.join(table.columns)})")
        table = table[table[column].astype(str) == value]
        if table.empty:
            raise EvaluationError(f"--where {condition!r}: no row left")
    return table


def run(args: argparse.Namespace) -> int:
    columns = Columns(**{role: getattr(args, f"{role}_column") for role in OPTIONS})
    try:
        table = read_table(args.predictions)
        notes: list[str] = []
        if args.participants:
            table, notes = join_participants(table, read_table(args.participants), args.id_column)
        table = _filter(table, args.where)
        model = str(table["model"].dropna().iloc[0]) if "model" in table and table["model"].nunique() == 1 else ""
        options = Options(controls=args.controls, method=args.method, fraction=args.fraction, folds=args.folds,
                          n_resamples=args.bootstrap, min_group_size=args.min_group_size,
                          drop_small_groups=args.drop_small_groups, site=args.site, model=model)
        result = evaluate(table, columns, options, notes)
        result.numbers["inputs"].update(predictions=args.predictions, participants=args.participants, where=args.where)
        paths = write_outputs(result, args.out, overwrite=args.overwrite, title=args.title)
    except (BrainAgeError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for warning in result.numbers["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(summary_text(result.numbers))
    print(f"report: {paths['report.html']}; numbers: {paths['report.json']}; calibration: {paths['calibration.json']}")
    return 0


def summary_text(numbers: dict) -> str:
    """A few lines for the terminal: controls' accuracy, the saved line, the group gaps."""
    lines = []
    for label, s in numbers["accuracy"]["controls"].items():
        ci = s.get("mae_ci")
        lines.append(f"controls {label}: MAE {s['mae']:.2f} y" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
                     + f", r {s['r']:.3f}, mean error {s['mean_error']:+.2f} y, bias slope {s['bias_slope']:+.3f}")
    c = numbers["calibration"]["saved"]
    lines.append(f"calibration ({c['method']}, {c['n_controls']} controls {c['age_min']:.0f}-{c['age_max']:.0f} y): "
                 f"predicted = {c['slope']:.4f} x age + {c['intercept']:.3f}")
    for g in numbers["groups"]["groups"]:
        lines.append(f"group {g['group']}: n {g['n']}, gap {g['gap_mean']:+.2f} y")
    for t in numbers["groups"].get("versus_controls", []):
        lines.append(f"{t['cohort']} vs {t['reference']}: Z {t['z']:.2f}, p {t['p_z']:.2g}; Hedges' g {t['hedges_g']:.2f}")
    return "\n".join(lines)
