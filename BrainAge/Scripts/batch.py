"""Batch brain age over a folder or CSV list, inside Slicer or with plain Python.

In Slicer (the BrainAge module's Logic, volumes read by Slicer's storage nodes)::

    Slicer --no-main-window --python-script BrainAge/Scripts/batch.py \
        --input DIR_OR_CSV --model PKG --out results.csv [--saliency DIR] [--ages ages.csv]

With plain Python and the core only (same Predictor underneath)::

    python BrainAge/Scripts/batch.py --input DIR_OR_CSV --model PKG --out results.csv [--saliency DIR]

One bad case is recorded in its row (``error``) and the batch goes on; the results file is
saved after every case, so a stop loses none of the rows done. Exit status: 0 all cases done,
1 some case failed, 2 the batch could not run (bad arguments, missing PyTorch extension,
failed install, an output folder that cannot be written, ...), 3 packages were installed and
Slicer must restart, 4 the results could not all be saved (disk full, folder turned read-only;
the rows saved before are kept), 130 / 143 interrupted by SIGINT / SIGTERM (the rows done are
saved, the other scans have a 'not run' row).
``Slicer --python-script`` does not exit by itself (qSlicerCoreApplication only exits after
``--python-code`` / ``--testing``), so every path ends in ``sys.exit``; no dialog ever opens.
"""

import argparse
import sys
import traceback
from pathlib import Path

EXIT_OK, EXIT_CASES_FAILED, EXIT_ERROR, EXIT_RESTART = 0, 1, 2, 3  # 4, 130, 143: BrainAgeLib.tables.save_as_you_go
#: Every exit status, for docs/cli.md.
EXIT_CODES = {
    EXIT_OK: "all cases done",
    EXIT_CASES_FAILED: "some case failed (its row holds the error)",
    EXIT_ERROR: "the batch could not run (arguments, missing PyTorch extension, failed install, unwritable output)",
    EXIT_RESTART: "packages were installed: start Slicer again",
    4: "the results could not all be saved (the rows saved before are kept)",
    130: "interrupted by SIGINT (rows done saved, a 'not run' row for the others)",
    143: "interrupted by SIGTERM (as for 130)",
}

MODULE_DIR = Path(__file__).resolve().parents[1]
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))


def build_parser() -> argparse.ArgumentParser:
    from BrainAgeLib.cli.tables import exit_status_text

    parser = argparse.ArgumentParser(prog="batch.py", description="Batch brain age (BrainAge module)",
                                     epilog=exit_status_text(EXIT_CODES))
    parser.add_argument("--input", nargs="+", required=True, help="NIfTI files, folders or CSV lists (column 'path', optional 'age')")
    parser.add_argument("--model", required=True, help="model package folder")
    parser.add_argument("--out", required=True, help="results CSV")
    parser.add_argument("--ages", help="CSV with 'age' and 'path'/'file'/'participant_id'")
    parser.add_argument("--calibration", help="site calibration JSON")
    parser.add_argument("--skull-strip", default="hd-bet", choices=("hd-bet", "deepbet", "none"))
    parser.add_argument("--saliency", metavar="DIR", help="folder for saliency maps (NIfTI on each scan's grid), both engines")
    parser.add_argument("--keep-failed-qc", action="store_true", help="ages for scans with a hard QC failure too (marked in age_flag)")
    parser.add_argument("--engine", default="auto", choices=("auto", "slicer", "core"), help="auto: the Slicer Logic when run inside Slicer")
    return parser


def parse_args(argv):
    return build_parser().parse_args(argv)


def inside_slicer() -> bool:
    try:
        import slicer
    except ImportError:
        return False
    return hasattr(slicer, "app") or getattr(slicer, "mrmlScene", None) is not None


class RestartNeeded(RuntimeError):
    """Packages were installed that the running Slicer can only use after a restart."""


def slicer_logic(args):
    """BrainAgeLogic, with its Python packages installed first (no questions asked, no dialogs)."""
    import slicer
    from BrainAge import BrainAgeLogic

    logic = BrainAgeLogic()
    if hasattr(slicer, "app") and not logic.setupPythonRequirements(skullStrip=args.skull_strip):
        raise RestartNeeded("BrainAge installed its Python packages; start Slicer again to run the batch.")
    return logic


def run_slicer(args, cases, ages, logic=None, table=None) -> list:
    """Each case through BrainAgeLogic on the MRML scene; nodes are removed after each case (saved to ``table`` at once)."""
    import slicer
    from BrainAgeLib.inputs import age_for, case_key
    from BrainAgeLib.saliency import DEFAULT_METHOD

    logic = logic or slicer_logic(args)
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
                skullStrip=args.skull_strip, saliencyMethod=DEFAULT_METHOD if args.saliency else None,
                keepFailedQC=args.keep_failed_qc,
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
        if table is not None:
            table.add(index - 1, rows[-1])
            table.save()
    return rows


def run_core(args, cases, ages, table=None) -> list:
    """Plain Python: the core Predictor over all cases, batched (each finished batch saved to ``table``)."""
    from BrainAgeLib.calibration import load_calibration
    from BrainAgeLib.inputs import age_for
    from BrainAgeLib.predict import Predictor

    calibration = load_calibration(args.calibration) if args.calibration else None
    predictor = Predictor(args.model, calibration=calibration, skull_strip=args.skull_strip, keep_failed_qc=args.keep_failed_qc)
    saliency: dict[str, dict] = {}  # source -> the row's saliency columns

    def write_saliency(case, result) -> None:
        from BrainAgeLib.errors import BrainAgeError
        from BrainAgeLib.saliency.files import save_case_saliency

        try:
            saliency[result.source] = save_case_saliency(predictor, case, args.saliency)[1]
        except (BrainAgeError, OSError, RuntimeError, ValueError) as exc:  # the age stands; the row says why there is no map
            result.qc_flags.append(f"saliency: failed: {exc}")

    def row(result) -> dict:
        return {**result.to_row(), **saliency.get(result.source, {})}

    results = predictor.predict_many(
        [c.path for c in cases], [age_for(c, ages, None) for c in cases],
        on_result=write_saliency if args.saliency else None,
        on_finished=(lambda index, r: table.add(index, row(r))) if table is not None else None,
        progress=(lambda n: table.save()) if table is not None else None,
    )
    return [row(r) for r in results]


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    engine = args.engine if args.engine != "auto" else ("slicer" if inside_slicer() else "core")
    logic = slicer_logic(args) if engine == "slicer" else None  # packages first: the readers below need them
    from BrainAgeLib.errors import OutputError
    from BrainAgeLib.inputs import expand_inputs, read_ages
    from BrainAgeLib.tables import ResultsTable, check_writable, save_as_you_go

    try:
        check_writable(args.out)  # before any case: results that cannot be saved would be lost work
    except OutputError as exc:
        print(f"brainage batch: {exc}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    cases = expand_inputs(args.input)
    ages = read_ages(args.ages) if args.ages else {}
    table = ResultsTable(args.out, [c.path for c in cases])
    rows = []

    def work() -> None:
        rows.extend(run_slicer(args, cases, ages, logic, table) if engine == "slicer" else run_core(args, cases, ages, table))

    stopped = save_as_you_go(table, work)
    if stopped is not None:
        return stopped
    failed = sum(1 for r in rows if r.get("error"))
    print(f"{len(rows) - failed} of {len(rows)} cases done ({engine} engine); results in {args.out}", flush=True)
    return EXIT_CASES_FAILED if failed else EXIT_OK


def run(argv=None) -> int:
    """main() with every way out turned into an exit status."""
    try:
        return main(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_ERROR)
    except RestartNeeded as exc:
        print(f"brainage batch: {exc}", file=sys.stderr, flush=True)
        return EXIT_RESTART
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - a window-less Slicer must never be left running
        traceback.print_exc()
        print(f"brainage batch: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(run())
