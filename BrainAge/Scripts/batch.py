"""Batch brain age over a folder or CSV list, inside Slicer or with plain Python.

In Slicer (the BrainAge module's Logic, volumes read by Slicer's storage nodes)::

    Slicer --no-main-window --python-script BrainAge/Scripts/batch.py \
        --input DIR_OR_CSV --model PKG --out results.csv [--saliency DIR] [--age-csv ages.csv]

With plain Python and the core only (same Predictor underneath)::

    python BrainAge/Scripts/batch.py --input DIR_OR_CSV --model PKG --out results.csv

One bad case is recorded in its row (``error``) and the batch goes on; the exit
status is 1 when any case failed.
"""

import argparse
import sys
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[1]
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Batch brain age (BrainAge module)")
    parser.add_argument("--input", nargs="+", required=True, help="NIfTI files, folders or CSV lists (column 'path', optional 'age')")
    parser.add_argument("--model", required=True, help="model package folder")
    parser.add_argument("--out", required=True, help="results CSV")
    parser.add_argument("--ages", help="CSV with 'age' and 'path'/'file'/'participant_id'")
    parser.add_argument("--calibration", help="site calibration JSON")
    parser.add_argument("--skull-strip", default="hd-bet", choices=("hd-bet", "deepbet", "none"))
    parser.add_argument("--saliency", help="folder for saliency maps (NIfTI on each scan's grid)")
    parser.add_argument("--engine", default="auto", choices=("auto", "slicer", "core"), help="auto: the Slicer Logic when run inside Slicer")
    return parser.parse_args(argv)


def inside_slicer() -> bool:
    try:
        import slicer
    except ImportError:
        return False
    return hasattr(slicer, "app") or getattr(slicer, "mrmlScene", None) is not None


def run_slicer(args, cases, ages) -> list:
    """Each case through BrainAgeLogic on the MRML scene; nodes are removed after each case."""
    import slicer
    from BrainAge import BrainAgeLogic
    from BrainAgeLib.inputs import age_for, case_key

    logic = BrainAgeLogic()
    if hasattr(slicer, "app"):  # the real application: install missing packages without asking
        logic.setupPythonRequirements(askConfirmation=False)
    rows = []
    for index, case in enumerate(cases, 1):
        print(f"[{index}/{len(cases)}] {case.path}", flush=True)
        before = {slicer.mrmlScene.GetNthNode(i).GetID() for i in range(slicer.mrmlScene.GetNumberOfNodes())}
        try:
            node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", case_key(case.path))
            storage = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
            storage.SetFileName(case.path)
            if not storage.ReadData(node):
                raise OSError(f"{case.path}: Slicer could not read this file (missing, truncated or not an image)")
            outputs = logic.process(
                node, args.model, chronologicalAge=age_for(case, ages, None), calibrationPath=args.calibration,
                skullStrip=args.skull_strip, saliencyMethod="guided-backprop" if args.saliency else None,
            )
            row = outputs.result.to_row()
            row["source"] = case.path
            if outputs.saliency is not None:
                path = Path(args.saliency) / f"{case_key(case.path)}_saliency.nii.gz"
                path.parent.mkdir(parents=True, exist_ok=True)
                writer = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
                writer.SetFileName(str(path))
                writer.WriteData(outputs.saliency)
                row["saliency_path"] = str(path)
            rows.append(row)
        except Exception as exc:  # noqa: BLE001 - a batch records every failure and goes on
            rows.append({"source": case.path, "error": f"{type(exc).__name__}: {exc}"})
        finally:
            for i in reversed(range(slicer.mrmlScene.GetNumberOfNodes())):
                node = slicer.mrmlScene.GetNthNode(i)
                if node is not None and node.GetID() not in before and not node.IsA("vtkMRMLScriptedModuleNode"):
                    slicer.mrmlScene.RemoveNode(node)
    return rows


def run_core(args, cases, ages) -> list:
    """Plain Python: the core Predictor over all cases, batched."""
    from BrainAgeLib.calibration import load_calibration
    from BrainAgeLib.inputs import age_for
    from BrainAgeLib.predict import Predictor

    calibration = load_calibration(args.calibration) if args.calibration else None
    predictor = Predictor(args.model, calibration=calibration, skull_strip=args.skull_strip)
    results = predictor.predict_many([c.path for c in cases], [age_for(c, ages, None) for c in cases])
    return [r.to_row() for r in results]


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from BrainAgeLib.inputs import expand_inputs, read_ages
    from BrainAgeLib.tables import write_rows

    cases = expand_inputs(args.input)
    ages = read_ages(args.ages) if args.ages else {}
    engine = args.engine if args.engine != "auto" else ("slicer" if inside_slicer() else "core")
    rows = run_slicer(args, cases, ages) if engine == "slicer" else run_core(args, cases, ages)
    write_rows(rows, args.out)
    failed = sum(1 for r in rows if r.get("error"))
    print(f"{len(rows) - failed} of {len(rows)} cases done ({engine} engine); results in {args.out}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    status = main()
    try:
        import slicer

        if hasattr(slicer, "app"):
            slicer.util.exit(status)
    except ImportError:
        pass
    sys.exit(status)
