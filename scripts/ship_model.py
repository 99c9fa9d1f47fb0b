"""Put finished real-data training runs into the extension as its bundled default model.

    .venv/bin/python scripts/ship_model.py --run RUNS/ixi_xs --cache-dir RUNS/ixi-cache \\
        --cv docs/results/ixi/summary.json --oof docs/results/ixi/oof_predictions.csv --config-name xxs

Several runs on the same folds make one package with several networks per fold (``--run LABEL=RUN[:best]``,
repeated; files ``fold<k>-<LABEL>.safetensors``); ``--mirror-average`` turns on mirror averaging in its card.
With ``--oof`` the card's calibration is refitted on the cross-validated test predictions of ``--config-name``
(so it matches the networks and test-time setting shipped).

Writes ``BrainAge/Resources/Models/<name>-<version>/`` (float16 fold files, checked against the
float32 ages on every cached model input, or ``--dtype float32``), and the bundled entry in ``BrainAge/Resources/Models.json``
(the only default). List the new files in BrainAge/CMakeLists.txt (the script prints the lines).
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "BrainAge"), str(ROOT / "BrainAgeTraining")]

from BrainAgeLib.calibration import fit_calibration  # noqa: E402
from BrainAgeLib.package import read_card, save_package  # noqa: E402
from BrainAgeTrainingLib.config import load_config  # noqa: E402
from BrainAgeTrainingLib.crossval.predictions import cached_samples, parse_run_spec  # noqa: E402
from BrainAgeTrainingLib.train_loop import load_fold_model  # noqa: E402
from BrainAgeTrainingLib.release import release_package  # noqa: E402

CREDIT = ("IXI dataset, Information eXtraction from Images (EPSRC GR/S21533/02), brain-development.org; "
          "2 mm version from the NiChart project's test data (CBICA, University of Pennsylvania)")
INTENDED_USE = (
    "Research use only; not a medical device. Brain age of adults (trained on ages 20-82) from a T1-weighted "
    "axial scan, thick-slice clinical (5-8 mm) or 3D, skull stripped with HD-BET. Trained on healthy volunteers "
    "of ONE site (IXI Hammersmith Hospital, Philips 3T): on other scanners and sites expect a shift; calibrate "
    "on your own site's healthy controls (brainage calibrate) before reading brain age gaps. Ages outside "
    "20-82 y, children, and scans with large lesions or after surgery are outside its training data.")


def _cv_summary(path: Path | None, name: str) -> list[dict]:
    if not path:
        return []
    keep = []
    for row in json.loads(path.read_text()):
        if row["config"] != name or row["input"] not in ("clinical", "3d"):
            continue
        entry = {"input": row["input"], "n_scans": row["raw"]["n"], "subjects": row["raw"]["subjects"]}
        for kind in ("raw", "corrected"):
            if row.get(kind):
                entry[kind] = {k: row[kind][k] for k in ("mae", "mae_ci", "rmse", "r", "r2", "mean_error", "bias_slope")
                               if k in row[kind]}
        keep.append(entry)
    return keep


def _test_subjects(path: Path, name: str):
    """Per test subject: age, predicted and corrected age (clinical-style input, mean over slicing offsets)."""
    import pandas as pd

    frame = pd.read_csv(path)
    test = frame[(frame["config"] == name) & (frame["input"] == "clinical") & (frame["role"] == "test")]
    if test.empty:
        raise SystemExit(f"{path}: no clinical test rows of configuration {name!r}")
    return test.groupby("subject", as_index=False)[["age", "predicted_age", "corrected_age"]].mean()


def _residuals(subjects) -> list[dict]:
    if subjects is None:
        return []
    return [{k: (round(float(v), 3) if k != "subject" else v) for k, v in row.items()}
            for row in subjects.to_dict("records")]


def _networks(runs: list[tuple[str, Path, bool]], card):
    """The runs' fold networks in fold order (float32), and the card's entries for them."""
    models, entries = [], []
    configs = {run: load_config(run / "config.json") for _, run, _ in runs}
    fold_metrics = {run: {f["metrics"]["cv_fold"]: f["metrics"] for f in read_card(run / "model").folds} for _, run, _ in runs}
    for fold in card.folds:
        index = fold["metrics"]["cv_fold"]
        for label, run, best in runs:
            config, metrics = configs[run], fold_metrics[run][index]
            models.append(load_fold_model(run / f"fold{index}", config, best_epoch=best))
            name = f"fold{index}-{label}.safetensors" if label else fold["file"]
            entries.append({"file": name, "metrics": metrics, **({"config": dict(config.model), "network": label,
                                                                  "run": run.name + (":best" if best else "")}
                                                                 if label else {})})
    return models, entries


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, action="append",
                   help="brainage train run folder (holds model/); repeat as LABEL=RUN[:best] for several networks per fold")
    p.add_argument("--cache-dir", required=True, help="its preparation cache (model inputs for the float16 check)")
    p.add_argument("--data", nargs="+", default=[str(ROOT.parent / "shared" / "data" / "ixi-hh-2mm")],
                   help="the training data (its scans' cached model inputs are the float16 check's inputs)")
    p.add_argument("--cv", type=Path, help="summary.json of benchmarks/real_cv.py")
    p.add_argument("--config-name", default="xxs", help="the run's name in summary.json")
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16",
                   help="storage of the fold files (float16 is refused when it moves an age by > 0.05 y)")
    p.add_argument("--oof", type=Path, help="oof_predictions.csv of benchmarks/real_cv.py (reference residuals for case "
                                           "reports; the calibration is refitted on its test predictions)")
    p.add_argument("--mirror-average", action="store_true", help="the card turns on mirror averaging (test_time)")
    p.add_argument("--name", help="model name (default: the first run's)")
    p.add_argument("--version", help="model version (default: the first run's)")
    p.add_argument("--description", help="model description (default: the first run's)")
    args = p.parse_args(argv)
    try:
        runs = [parse_run_spec(text, single=len(args.run) == 1) for text in args.run]
    except ValueError as error:
        raise SystemExit(f"--run {error}") from None
    run = runs[0][1]
    card = read_card(run / "model")
    card.name, card.version = args.name or card.name, args.version or card.version
    card.description = args.description or card.description
    card.test_time = {"mirror_average": True} if args.mirror_average else {}
    subjects = _test_subjects(args.oof, args.config_name) if args.oof else None
    if subjects is not None:
        method = load_config(run / "config.json").calibration_method
        card.calibration = fit_calibration(subjects["predicted_age"], subjects["age"], method=method,
                                           site="cross-validation test sets").to_dict()
    # the float16 check's inputs: the training data's current scan files (a cache may also hold older versions)
    inputs = [np.load(s.array) for s in cached_samples(run, args.data, args.cache_dir)[0]] if args.dtype == "float16" else []
    dest = ROOT / "BrainAge" / "Resources" / "Models" / f"{card.name}-{card.version}"
    updates = {"credit": CREDIT, "licence": "CC BY-SA 3.0 (the training data's licence)",
               "population": "181 healthy adults, 20.2-81.9 y, one site (IXI Hammersmith Hospital, Philips 3T)",
               "cross_validation": _cv_summary(args.cv, args.config_name),
               "cross_validation_note": "5 folds by subject (80/10/10, age-stratified); test subjects only; "
                                        "corrected = bias line fitted per fold on its validation subjects",
               "training_config": (json.loads((run / "config.json").read_text()) if len(runs) == 1 else
                                   {label: json.loads((path / "config.json").read_text()) for label, path, _ in runs}),
               "cross_validation_residuals": _residuals(subjects)}
    with tempfile.TemporaryDirectory() as tmp:  # the float32 reference: each fold's exported weights
        models, card.folds = _networks(runs, card)
        reference = save_package(Path(tmp) / "float32", models, copy.deepcopy(card))
        result = release_package(reference, dest, inputs, card_updates={"intended_use": INTENDED_USE},
                                 training_data_updates=updates, dtype=args.dtype)
    print(f"{dest}: largest fold file {result.largest_file_mib:.2f} MiB ({args.dtype}); float16 vs float32 ages differ "
          f"by at most {result.max_age_difference:.4f} y on {result.n_inputs} model inputs (0 inputs: not checked)")
    registry = ROOT / "BrainAge" / "Resources" / "Models.json"
    data = json.loads(registry.read_text())
    entry = {"name": card.name, "version": card.version, "path": f"Models/{dest.name}", "bundled": True, "default": True,
             "description": card.description, "synthetic_demo": False}
    data["models"] = [{**m, "default": False} for m in data.get("models", []) if m.get("path") != entry["path"]] + [entry]
    registry.write_text(json.dumps(data, indent=2) + "\n")
    for f in sorted(dest.iterdir()):
        print(f"  Resources/Models/{dest.name}/{f.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
