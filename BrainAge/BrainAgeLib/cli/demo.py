"""``brainage demo``: the README's main job, on a real sample head.

Makes a clinical-style thick-slice axial scan from the Colin27 head (7 mm,
the method's synthetic slicing), skull strips it, prepares the model-ready
volume, predicts the age with the model bundled with BrainAge (trained on real
IXI scans; or ``--model``) and writes a QC picture with the saliency map. With
``--synthetic-demo`` it trains (once, cached) and uses the synthetic demo model
(BrainAgeTrainingLib.demo_model) instead, saying plainly that it was trained on
synthetic data; with ``--no-model`` it stops at the model-ready volume.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..bundled_models import default_model_path
from ..io import Volume, load_volume, save_nifti
from ..predict import Predictor, prepare_case
from ..report import qc_figure
from ..saliency.occlusion import effects_text
from ..sample_data import sample_path
from ..skullstrip import available_backends
from ..slicing import synthetic_clinical_scans
from ..spec import PreprocessSpec
from ..tables import write_rows


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="run the whole pipeline on a real sample head and write a QC picture",
        description="Slice the Colin27 head (or --input) into a 7 mm axial scan, skull strip it, prepare the "
        "model-ready volume, predict its age with the bundled real-data model (or --model, or the synthetic demo "
        "model with --synthetic-demo) and draw the saliency map into OUT/qc.png; --no-model stops before the "
        "prediction. Exit status 0, or 1 when the model input fails its QC.")
    p.add_argument("--input", help="a NIfTI scan (default: Colin27 head, sliced into a 7 mm axial clinical-style scan)")
    p.add_argument("--model", help="model package folder (default: the bundled model)")
    p.add_argument("--age", type=float, help="chronological age of the input, if known")
    p.add_argument("--skull-strip", default="auto", choices=("auto", "hd-bet", "deepbet", "none"), help="auto: hd-bet when installed")
    p.add_argument("--out", default="outputs/demo", help="output folder (default outputs/demo)")
    models = p.add_mutually_exclusive_group()
    models.add_argument("--synthetic-demo", action="store_true",
                        help="use the synthetic demo model instead (trained once, about 6 min on 2 idle CPU cores, "
                             "then cached in $BRAINAGE_CACHE)")
    models.add_argument("--no-model", "--no-train", dest="no_model", action="store_true",
                        help="no prediction: stop at the model-ready volume (--no-train is the same)")
    p.set_defaults(func=run)


def _auto_backend() -> str:
    return "hd-bet" if "hd-bet" in available_backends() else "none"


def _default_input(out: Path, backend: str) -> Path:
    """Colin27 sliced into a 7 mm axial scan (its pre-stripped brain when no skull stripper is installed)."""
    source = sample_path("colin27_head" if backend != "none" else "colin27_brain")
    clinical = synthetic_clinical_scans(load_volume(source), gap_mm=7.0)[0]
    path = out / f"{source.name.split('.')[0]}_axial7mm.nii.gz"
    save_nifti(clinical, path)
    return path


def _demo_model() -> str:
    """The cached synthetic demo model, trained first when there is none (demo_model.TRAINING_TIME)."""
    from BrainAgeTrainingLib.demo_model import DEMO_NOTICE, demo_evaluation, ensure_demo_model, format_evaluation

    package = ensure_demo_model()
    evaluation = demo_evaluation()
    print(f"model        synthetic demo model {package}")
    if evaluation:
        print(f"evaluation   {format_evaluation(evaluation)}")
    print(f"NOTE         {DEMO_NOTICE}")
    return str(package)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    backend = _auto_backend() if args.skull_strip == "auto" else args.skull_strip
    input_path = Path(args.input) if args.input else _default_input(out, backend)
    if args.synthetic_demo:
        args.model = _demo_model()
    elif not args.model and not args.no_model:
        bundled = default_model_path()
        args.model = str(bundled) if bundled else None
        if bundled:
            print(f"model        {bundled} (bundled)")
    volume = load_volume(input_path)
    print(f"input        {input_path}  shape {volume.shape}  voxels {tuple(round(s, 2) for s in volume.spacing)} mm")
    print(f"skull strip  {backend}")
    lines: list[str] = []
    saliency = None
    if args.model:
        predictor = Predictor(args.model, skull_strip=backend)
        case = predictor.prepare_volume(volume)
        result = predictor.predict_case(case, args.age)
        sal = predictor.saliency(case)
        saliency = sal.model_grid
        effects = predictor.region_effects(case)
        save_nifti(sal.on_input, out / "saliency.nii.gz")
        write_rows([{**result.to_row(), "saliency_inside_brain": sal.inside_brain,
                     **{f"region_{name}_y": round(value, 3) for name, value in effects.items()}}], out / "results.csv")
        lines.append(f"predicted age {result.predicted_age:.1f} y (SD across folds {result.predicted_age_sd:.1f}), model {result.model}")
        if predictor.package.card.synthetic_demo:
            lines.append("model trained on SYNTHETIC data: a demonstration, not for clinical use")
        print(f"prediction   {lines[0]}")
        lines.append(f"saliency ({sal.method}): {sal.inside_brain:.0%} inside the brain; occlusion: {effects_text(effects)}")
        print(f"saliency     {sal.inside_brain:.1%} inside the brain mask -> {out / 'saliency.nii.gz'}")
        print(f"regions      {effects_text(effects)} (years each region moves the age)")
    else:
        case = prepare_case(volume, PreprocessSpec(), backend)
    prepared = case.prepared
    save_nifti(case.brain_mask, out / "brain_mask.nii.gz", dtype="uint8")
    save_nifti(Volume(prepared.data, prepared.affine), out / "model_input.nii.gz")
    qc = "passed" if prepared.passed_qc else "FAILED: " + "; ".join(prepared.qc_messages)
    lines.insert(0, f"skull strip {case.skull_strip}; background {prepared.background_fraction:.1%} of model input; QC {qc}")
    picture = qc_figure(volume, case.brain_mask, prepared.data, out / "qc.png", title=input_path.name, saliency=saliency,
                        saliency_affine=prepared.affine, lines=lines)
    print(f"model input  {prepared.data.shape} at 2 mm, background {prepared.background_fraction:.1%}, QC {qc}")
    for warning in case.warnings:
        print(f"warning      {warning}")
    print(f"QC picture   {picture}")
    if not args.model:
        print(
            "\nNo model was used: the pipeline stopped at the model-ready volume.\n"
            "Pass --model PACKAGE_FOLDER (or leave out --no-model to use the bundled one); train one with "
            "`brainage train` (docs/training.md)."
        )
    return 0 if prepared.passed_qc else 1
