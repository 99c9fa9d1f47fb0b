"""The evaluation as one self-contained HTML page: tables of the numbers and the figures as base64 PNG."""

from __future__ import annotations

import base64
import html
import math

STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;max-width:1200px;margin:24px auto;
padding:0 16px;color:#222;line-height:1.4}
h1{font-size:1.6em;margin-bottom:0.2em} h2{border-bottom:1px solid #ccc;padding-bottom:3px;margin-top:1.6em}
table{border-collapse:collapse;margin:8px 0 16px;font-size:0.9em} th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f2f2f2} td:first-child,th:first-child{text-align:left}
.warn{background:#fff4e5;border-left:4px solid #f0a020;padding:6px 12px;margin:8px 0}
.note{color:#555;font-size:0.9em} img{max-width:100%;border:1px solid #eee}
"""
LABELS = {"mae": "MAE", "rmse": "RMSE", "r": "r", "r2": "R²", "mean_error": "mean error", "bias_slope": "bias slope"}


def num(value, digits: int = 2, signed: bool = False) -> str:
    """A number for a table cell ('-' for missing)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return str(value)
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def pvalue(p) -> str:
    if p is None or not math.isfinite(p):
        return "-"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def with_ci(summary: dict, metric: str) -> str:
    digits = 3 if metric in ("r", "r2", "bias_slope") else 2
    signed = metric in ("mean_error", "bias_slope")
    text = num(summary.get(metric), digits, signed)
    ci = summary.get(f"{metric}_ci")
    return f"{text} [{num(ci[0], digits, signed)}, {num(ci[1], digits, signed)}]" if ci else text


def table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def image(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def accuracy_section(accuracy: dict) -> str:
    metrics = list(LABELS)
    rows = [[label, s["n"], s["subjects"], *[with_ci(s, m) for m in metrics]]
            for label, s in accuracy["controls"].items()]
    out = [table(["controls", "scans", "subjects", *[f"{LABELS[m]} [95 % CI]" for m in metrics]], rows)]
    for key, rows in accuracy.items():
        if not key.startswith("by_"):
            continue
        by = key[3:]
        labels = [k for k in rows[0] if k not in (by, "n", "subjects", "mean_age")] if rows else []
        header = [by, "scans", "subjects", "mean age", *[f"MAE {k} [95 % CI]" for k in labels],
                  *[f"mean error {k}" for k in labels]]
        body = [[r[by], r["n"], r["subjects"], num(r["mean_age"], 1), *[with_ci(r[k], "mae") for k in labels],
                 *[num(r[k]["mean_error"], 2, True) for k in labels]] for r in rows]
        scope = "all scans" if by == "group" else "controls"
        out.append(f"<h3>by {html.escape(by)} ({scope})</h3>" + table(header, body))
    return "\n".join(out)


def calibration_section(calibration: dict) -> str:
    rows = []
    for method, lines in calibration["lines"].items():
        c = lines["all_controls"]
        rows.append([method + (" (saved)" if method == calibration["method"] else ""), num(c["slope"], 4),
                     num(c["intercept"], 3), c["n_controls"], f"{c['age_min']:.1f}-{c['age_max']:.1f}", len(lines["folds"])])
    return (table(["method", "slope a", "intercept b", "controls used", "their ages (y)", "cross-fitting folds"], rows)
            + f"<p class='note'>predicted = a × age + b on the controls; corrected age = predicted + (age − (a × age + b)). "
              f"Each control is corrected with a line fitted without its own fold ({calibration['crossfit_folds']} folds, "
              "age-stratified, by subject); patients with the line fitted on every control, which is the one saved "
              "in <code>calibration.json</code> for <code>brainage predict --calibration</code>.</p>")


def groups_section(groups: dict, score: str | None) -> str:
    out = [table(["group", "subjects", "mean age", "gap mean (y)", "gap SD", "raw gap mean", f"mean {score or 'score'}"],
                 [[g["group"], g["n"], num(g["age_mean"], 1), num(g["gap_mean"], 2, True), num(g["gap_sd"]),
                   num(g["raw_gap_mean"], 2, True), num(g["score_mean"], 1)] for g in groups["groups"]])]
    if groups.get("note"):
        out.append(f"<p class='note'>{html.escape(groups['note'])}</p>")
    if groups.get("versus_controls"):
        out.append("<h3>each group vs the controls</h3>" + table(
            ["group", "n", "vs", "n", "mean gap difference", "Z (paper)", "p (Z)", "Welch t", "p (Welch)", "Hedges' g"],
            [[r["cohort"], r["n"], r["reference"], r["n_reference"], num(r["mean_gap"] - r["mean_gap_reference"], 2, True),
              num(r["z"]), pvalue(r["p_z"]), num(r["t_welch"]), pvalue(r["p_welch"]), num(r["hedges_g"])]
             for r in groups["versus_controls"]]))
    if groups.get("welch_anova"):
        a = groups["welch_anova"]
        out.append(f"<h3>Welch's ANOVA</h3><p>F({a['ddof1']:.0f}, {a['ddof2']:.1f}) = {a['F']:.2f}, p {pvalue(a['p'])}, "
                   f"partial η² = {a['np2']:.3f}</p>")
        out.append("<h3>Games-Howell pairs</h3>" + table(
            ["A", "B", "mean gap A − B", "SE", "t", "df", "p", "Hedges' g"],
            [[r["a"], r["b"], num(r["diff"], 2, True), num(r["se"]), num(r["t"]), num(r["df"], 1), pvalue(r["p"]),
              num(r["hedges_g"])] for r in groups["games_howell"]]))
    if groups.get("gap_vs_score"):
        c = groups["gap_vs_score"]
        out.append(f"<h3>gap vs {html.escape(score or 'score')}</h3><p>Pearson r = {c['r']:.3f}, p {pvalue(c['p'])}, "
                   f"n = {c['n']} subjects</p>")
    return "\n".join(out)


def render(numbers: dict, figures: dict[str, bytes], title: str = "Brain age evaluation") -> str:
    """The page: inputs and warnings, accuracy, calibration, groups, each with its figure."""
    inputs = numbers["inputs"]
    cols = ", ".join(f"{k}: {v}" for k, v in inputs["columns"].items() if v)
    groups = ", ".join(f"{g} {n}" for g, n in inputs["subjects_per_group"].items())
    warnings = "".join(f"<div class='warn'>⚠ {html.escape(w)}</div>" for w in numbers["warnings"])
    sources = " + ".join(html.escape(str(s)) for s in (inputs.get("predictions"), inputs.get("participants")) if s)
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p class='note'>{sources}<br>{inputs['n_scans']} scans of {inputs['n_subjects']} "
        f"subjects (subjects per group: {html.escape(groups)}; controls: {html.escape(inputs['controls'])}). Columns: "
        f"{html.escape(cols)}. CIs: {inputs['bootstrap_resamples']} bootstrap resamples of subjects (percentile).</p>",
        warnings,
        "<h2>Accuracy</h2>", image(figures["accuracy"], "predicted vs chronological age and gap vs age") if "accuracy" in figures else "",
        accuracy_section(numbers["accuracy"]),
        "<h2>Calibration</h2>", image(figures["calibration"], "calibration on the controls") if "calibration" in figures else "",
        calibration_section(numbers["calibration"]),
        "<h2>Groups</h2>", image(figures["groups"], "gap per group and gap vs score") if "groups" in figures else "",
        groups_section(numbers["groups"], inputs["columns"].get("score")),
        "<p class='note'>Made by <code>brainage evaluate</code> (SlicerBrainAge). Research use only.</p></body></html>",
    ]
    return "\n".join(p for p in parts if p)
