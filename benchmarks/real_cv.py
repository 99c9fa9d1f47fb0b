"""Cross-validated accuracy of real-data training runs (the bundled real-data model), with baselines.

For every run (``NAME=RUN_DIR``, made by ``brainage train`` on the same data and folds), each fold's
best network predicts its test subjects as clinical-style thick axial scans (every slicing offset)
and as the whole 3D scan; the bias line of a fold is fitted on its validation subjects only. Next to
them: the training mean and a ridge regression on brain volume / CSF fraction / ventricle proxy, on
the same folds, and optionally any model package scored on every subject (e.g. the synthetic demo).

    .venv/bin/python benchmarks/real_cv.py --data ../shared/data/ixi-hh-2mm --cache-dir RUNS/ixi-cache \\
        --run xs=RUNS/ixi_xs --run xxs=RUNS/ixi_xxs --package demo=~/.cache/slicer-brainage/demo-model-v2/run/model \\
        --out docs/results/ixi --figure Resources/ixi_crossval.png

``--run NAME=RUN_DIR:best`` scores a weight-averaging run's best epochs; ``--ensemble NAME=RUN1+RUN2`` also scores the mean prediction of runs trained on the same folds.
Recompute the table from the committed out-of-fold predictions alone (no data, no training):

    .venv/bin/python benchmarks/real_cv.py --from-csv docs/results/ixi/oof_predictions.csv
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "BrainAge"), str(ROOT / "BrainAgeTraining")]

from BrainAgeTrainingLib.crossval.metrics import add_fold_correction, average_runs, mae_by_decade, only_folds, score  # noqa: E402
from cpu_info import cpu_model_and_flags  # noqa: E402  (benchmarks/, the script's own folder)


def run_stats(run_dir: Path) -> dict:
    """Training seconds per fold (median) and the largest fold file of the exported package."""
    seconds = [pd.read_csv(p)["seconds"].sum() for p in sorted(run_dir.glob("fold*/metrics.csv"))]
    files = sorted((run_dir / "model").glob("fold*.safetensors"))
    card = json.loads((run_dir / "model" / "model_card.json").read_text()) if files else {}
    from BrainAgeLib.model import build_model, count_parameters

    params = count_parameters(build_model(card["architecture"]["config"])) if card else None
    return {"train_min_per_fold": float(np.median(seconds)) / 60 if seconds else float("nan"),
            "fold_file_mib": max(f.stat().st_size for f in files) / 2 ** 20 if files else float("nan"),
            "parameters": params, "folds_trained": len(seconds)}


def package_predictions(name: str, package: str, data: list[str], cache_dir: str) -> pd.DataFrame:
    """Every subject's clinical-style arrays (from the cache) and 3D scan through a package's fold ensemble."""
    from BrainAgeLib.package import load_package
    from BrainAgeLib.spec import PreprocessSpec
    from BrainAgeTrainingLib.cache import PreparationCache
    from BrainAgeTrainingLib.crossval.predictions import prepare_3d
    from BrainAgeTrainingLib.datasets import load_datasets
    from BrainAgeTrainingLib.release import ensemble_ages

    loaded = load_package(package)
    report = load_datasets(data)
    samples, report = PreparationCache(cache_dir, PreprocessSpec(), "auto").collect(report)
    records = {r.subject: r for r in report.records}
    inputs = [("clinical", s.subject, s.offset, s.age, np.load(s.array)) for s in samples]
    inputs += [("3d", r.subject, -1, r.age, prepare_3d(r, PreprocessSpec(), "auto")) for r in records.values()]
    ages = ensemble_ages(loaded.models, [array for *_, array in inputs]).mean(axis=0)
    rows = [{"fold": -1, "subject": subject, "role": "test", "input": kind, "offset": offset, "age": age,
             "predicted_age": float(predicted)} for (kind, subject, offset, age, _), predicted in zip(inputs, ages)]
    return pd.DataFrame(rows).assign(config=name)


def fmt_ci(summary: dict, metric: str) -> str:
    lo, hi = summary.get(f"{metric}_ci", (np.nan, np.nan))
    return f"{summary[metric]:.2f} [{lo:.2f}, {hi:.2f}]" if metric == "mae" else f"{summary[metric]:.3f} [{lo:.3f}, {hi:.3f}]"


def table(frame: pd.DataFrame, stats: dict[str, dict], n_resamples: int) -> tuple[str, list[dict]]:
    lines = ["| configuration | input | n scans (subjects) | MAE raw [95 % CI] | MAE corrected [95 % CI] | r raw [95 % CI] "
             "| R² raw | RMSE raw | mean error raw | bias slope raw -> corrected | train min/fold | fold file MiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    records = []
    for name, part in frame.groupby("config", sort=False):
        for kind in ("clinical", "3d", "ridge", "mean"):
            rows = part[part["input"] == kind]
            if not len(rows):
                continue
            raw = score(rows, "predicted_age", n_resamples=n_resamples)
            corr = score(rows, "corrected_age", ci_metrics=("mae",), n_resamples=n_resamples) \
                if rows["corrected_age"].notna().any() else None
            st = stats.get(name, {})
            corrected = fmt_ci(corr, "mae") if corr else "-"
            slope = f"{raw['bias_slope']:.2f} -> {corr['bias_slope']:.2f}" if corr else f"{raw['bias_slope']:.2f}"
            lines.append(f"| {name} | {kind} | {raw['n']} ({raw['subjects']}) | {fmt_ci(raw, 'mae')} | {corrected} | "
                         f"{fmt_ci(raw, 'r')} | {raw['r2']:.3f} | {raw['rmse']:.2f} | {raw['mean_error']:+.2f} | {slope} | "
                         f"{st.get('train_min_per_fold', float('nan')):.1f} | {st.get('fold_file_mib', float('nan')):.2f} |")
            records.append({"config": name, "input": kind, "raw": raw, "corrected": corr, **st})
    return "\n".join(lines), records


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", nargs="+", help="the runs' --data entries")
    p.add_argument("--cache-dir", help="the runs' preparation cache")
    p.add_argument("--run", action="append", default=[], metavar="NAME=RUN_DIR",
                   help="a run folder; RUN_DIR:best scores its best epochs where it exports averaged weights")
    p.add_argument("--package", action="append", default=[], metavar="NAME=PACKAGE", help="a package scored on every subject")
    p.add_argument("--measures", help="CSV of brain measures saved by an earlier run (skips measuring the scans)")
    p.add_argument("--baselines-from", help="run folder whose splits.json the baselines use (default: the first run)")
    p.add_argument("--from-csv", help="recompute from an out-of-fold predictions CSV written by this script")
    p.add_argument("--ensemble", action="append", default=[], metavar="NAME=RUN1+RUN2",
                   help="also score the mean prediction of these runs (trained on the same folds) as NAME")
    p.add_argument("--out", help="folder for oof_predictions.csv, summary.json, table.md")
    p.add_argument("--figure", help="PNG of the first run's cross-validation")
    p.add_argument("--folds", type=int, nargs="+", help="score only these folds (e.g. a run that trained fold 0 only)")
    p.add_argument("--mirror", action="store_true",
                   help="average every --run network's age with the left-right mirror image's (Predictor(mirror_average=True)); "
                        "--package models are scored without it")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (subjects)")
    args = p.parse_args(argv)

    stats: dict[str, dict] = {}
    if args.from_csv:
        frame = pd.read_csv(args.from_csv)
    else:
        from BrainAgeTrainingLib.crossval.baselines import baseline_predictions, measure_records
        from BrainAgeTrainingLib.crossval.predictions import parse_run_spec, run_predictions
        from BrainAgeTrainingLib.datasets import load_datasets

        frames = []
        for item in args.run:
            name, run_dir, best = parse_run_spec(item)
            oof = run_predictions(run_dir, args.data, cache_dir=args.cache_dir, best_epoch=best, folds=args.folds,
                                  mirror=args.mirror, roles=("val", "test"))  # only these are scored and kept
            frames.append(add_fold_correction(oof).assign(config=name))
            stats[name] = run_stats(run_dir)
        first = Path(args.baselines_from) if args.baselines_from else parse_run_spec(args.run[0])[1]
        splits = json.loads((first / "splits.json").read_text())
        measures = pd.read_csv(args.measures) if args.measures else measure_records(load_datasets(args.data).records)
        frames.append(baseline_predictions(measures, splits).assign(config="baselines", corrected_age=np.nan))
        for item in args.package:
            name, package = item.split("=", 1)
            frames.append(package_predictions(name, str(Path(package).expanduser()), args.data, args.cache_dir)
                          .assign(corrected_age=np.nan))
        frame = pd.concat(frames, ignore_index=True)
    if args.folds:
        frame = only_folds(frame, args.folds)
    for item in args.ensemble:
        name, members = item.split("=", 1)
        frame = pd.concat([frame, average_runs(frame, members.split("+"), name)], ignore_index=True)
    text, records = table(frame, stats, args.bootstrap)
    which = f"fold{'s' if len(args.folds or []) > 1 else ''} {', '.join(map(str, args.folds))} only" if args.folds else "each fold"
    header = (f"CPU: {cpu_model_and_flags()[0]}; test subjects of {which}; CIs: {args.bootstrap} bootstrap resamples of subjects; "
              "corrected: bias line fitted per fold on its validation subjects"
              + ("; every network's age averaged over the scan and its mirror image" if args.mirror else ""))
    print(header)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        keep = frame[frame["role"].isin(["test", "val"])]
        keep.to_csv(out / "oof_predictions.csv", index=False, float_format="%.4f")
        if not args.from_csv:
            measures.to_csv(out / "brain_measures.csv", index=False, float_format="%.5f")
        (out / "table.md").write_text(header + "\n\n" + text + "\n")
        (out / "summary.json").write_text(json.dumps(records, indent=1, default=float))
        decades = [mae_by_decade(part[part["input"] == kind], col).assign(config=name, input=kind, column=col)
                   for name, part in frame.groupby("config", sort=False) for kind in ("clinical", "3d", "ridge", "mean")
                   for col in ("predicted_age", "corrected_age") if part.loc[part["input"] == kind, col].notna().any()]
        pd.concat(decades).to_csv(out / "mae_by_decade.csv", index=False, float_format="%.3f")
    if args.figure:
        from BrainAgeTrainingLib.crossval.figure import plot_crossval

        first_name = frame["config"].iloc[0]
        plot_crossval(pd.concat([frame[frame["config"] == first_name], frame[frame["config"] == "baselines"]]),
                      args.figure, title=f"{first_name}: 5-fold cross-validation on IXI HH (181 adults)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
