"""``brainage predict``: ages for one or many scans, one row per scan."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

from tqdm import tqdm

from ..batch_resume import RowJournal, case_row, content_sha256, earlier_rows
from ..bundled_models import default_model_path
from ..calibration import load_calibration
from ..errors import BrainAgeError
from ..inputs import age_for, expand_inputs, read_ages
from ..package import read_card
from ..predict import PRECISIONS, Predictor
from ..reports import write_case_report
from ..saliency import DEFAULT_METHOD as DEFAULT_SALIENCY
from ..saliency import METHODS as SALIENCY_METHODS
from ..saliency.files import write_saliency
from ..tables import ResultsTable, check_writable, save_as_you_go

SKULL_STRIP_CHOICES = ("hd-bet", "deepbet", "none")
#: With --dask, rows are journaled as they come; the results file itself is rewritten at most this often.
DASK_SAVE_EVERY_S = 30.0


def register(subparsers) -> None:
    p = subparsers.add_parser("predict", help="predict brain age for scans, folders or a CSV list")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="NIfTI files, folders (searched recursively) or CSV lists (column 'path', optional 'age')")
    p.add_argument("--model", help="model package folder (default: the model bundled with BrainAge, "
                                    "or $BRAINAGE_DEFAULT_MODEL)")
    ages = p.add_mutually_exclusive_group()
    ages.add_argument("--age", type=float, help="chronological age (years) of every input")
    ages.add_argument("--ages", help="CSV/TSV with 'age' and 'path', 'file', 'participant_id' or 'subject'")
    p.add_argument("--calibration", help="site calibration JSON (default: the one in the model card, if any)")
    p.add_argument("--skull-strip", choices=SKULL_STRIP_CHOICES, default="hd-bet", help="brain extraction (default hd-bet, the paper's)")
    p.add_argument("--saliency", metavar="DIR", help="write a saliency map per scan into DIR (on the scan's own grid)")
    p.add_argument("--saliency-method", choices=SALIENCY_METHODS, default=DEFAULT_SALIENCY,
                   help=f"default {DEFAULT_SALIENCY} (see docs/saliency.md); guided-backprop is the paper's")
    p.add_argument("--regions", action="store_true",
                   help="occlusion: the years each brain region (CSF, ventricles, grey and white matter, left and "
                        "right halves) moves the age when filled with the tissue around it (a half: with the other "
                        "half's mirror image), one column region_<name>_y each")
    p.add_argument("--report", metavar="DIR", help="write a one-page case report per scan into DIR (PDF + PNG, with saliency)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--mirror-average", action="store_true", default=None,
                   help="average each fold's age over the scan and its left-right mirror image (2x the network time; "
                        "default: as the model card says)")
    p.add_argument("--allow-non-axial", action="store_true", help="accept sagittal/coronal acquisitions (not validated)")
    p.add_argument("--keep-failed-qc", action="store_true",
                   help="give ages to scans with a hard QC failure too (their age_flag column marks them); "
                        "default: such a row gets the error 'failed QC: ...' and no ages")
    p.add_argument("--out", required=True, help="results CSV (written atomically, and saved as cases finish)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    again.add_argument("--resume", action="store_true",
                       help="finish an earlier run into the same --out: skip the scans it did (same path, same "
                            "sha256 of the file) and run the others; the final table is in input order")
    p.add_argument("--dask", metavar="SCHEDULER",
                   help="run the scans as tasks on a dask.distributed cluster: a scheduler address "
                        "(tcp://host:8786) or local:N for N local one-thread workers (needs pip install '.[cluster]'; "
                        "see docs/batch.md)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not (args.overwrite or args.resume):
        print(f"error: {out} exists; pass --overwrite, --resume to finish the run that wrote it, or choose another --out",
              file=sys.stderr)
        return 2
    if args.dask and (args.saliency or args.report or args.regions):
        print("error: --saliency, --report and --regions are not available with --dask; run them without --dask",
              file=sys.stderr)
        return 2
    with contextlib.ExitStack() as cleanup:
        return _run(args, out, cleanup)


def _run(args: argparse.Namespace, out: Path, cleanup: contextlib.ExitStack) -> int:
    try:
        check_writable(out)  # before any work: a run whose results cannot be saved is refused
        cases = expand_inputs(args.inputs)
        ages = read_ages(args.ages) if args.ages else {}
        calibration = load_calibration(args.calibration) if args.calibration else None
        model = args.model or default_model_path()
        if model is None:
            raise ValueError("no model given and no bundled model found; pass --model PACKAGE_FOLDER "
                             "(train one with `brainage train`)")
        if not cases:
            raise ValueError("no NIfTI inputs found")
        settings = dict(
            device=args.device,
            precision=args.precision,
            calibration=calibration,
            skull_strip=args.skull_strip,
            allow_non_axial=args.allow_non_axial,
            keep_failed_qc=args.keep_failed_qc,
            mirror_average=args.mirror_average,
        )
        if args.dask:
            read_card(model)  # checked here; each Dask worker loads the package itself
            client = cleanup.enter_context(_dask_client(args.dask, {"package": str(model), **settings}))
            predictor = None
        else:
            predictor = Predictor(model, **settings)
        journal = RowJournal(out, resume=args.resume, overwrite=args.overwrite)
        cleanup.callback(journal.discard)  # kept only when this process is killed outright
        earlier = earlier_rows(out, [c.path for c in cases], journal.earlier) if args.resume else {}
    except (BrainAgeError, OSError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    saliency_dir = Path(args.saliency) if args.saliency else None
    extra: dict[str, dict] = {}

    report_dir = Path(args.report) if args.report else None

    def per_case(case, result) -> None:
        if args.regions:
            effects = predictor.region_effects(case)
            extra.setdefault(result.source, {}).update({f"region_{name}_y": round(value, 3) for name, value in effects.items()})
        if saliency_dir or report_dir:
            saliency_and_report(case, result)

    def saliency_and_report(case, result) -> None:
        sal = None
        try:
            sal = predictor.saliency(case, args.saliency_method)
            if saliency_dir:
                extra.setdefault(result.source, {}).update(write_saliency(sal, case, saliency_dir))
        except (BrainAgeError, OSError, RuntimeError, ValueError) as exc:
            result.qc_flags.append(f"saliency: failed: {exc}")
        if report_dir:
            try:
                paths = write_case_report(report_dir, result, case.volume, case.brain_mask, card=predictor.package.card,
                                          saliency=sal.on_input if sal else None, saliency_method=sal.method if sal else "",
                                          overwrite=args.overwrite)
                extra.setdefault(result.source, {})["report_path"] = str(paths["pdf"])
            except (OSError, ValueError) as exc:
                result.qc_flags.append(f"report: failed: {exc}")

    table = ResultsTable(out, [c.path for c in cases])
    for index, row in earlier.items():
        table.add(index, row)
    todo = [i for i in range(len(cases)) if i not in earlier]
    if args.resume:
        print(f"resume: {len(earlier)} of {len(cases)} scans already done in {out}; running the other {len(todo)}",
              file=sys.stderr)

    def finished(index: int, row: dict) -> None:
        table.add(index, row)
        journal.append(row)  # durable before the next case: a killed run keeps it for --resume

    def work() -> None:
        with tqdm(total=len(todo), desc="brain age", unit="scan") as bar:
            def progress(n: int) -> None:
                bar.update(n)
                table.save()  # the rows done so far, in case the run is stopped

            def save_row(j: int, r) -> None:
                case = cases[todo[j]]
                finished(todo[j], case_row({**r.to_row(), **extra.get(r.source, {})}, content_sha256(case.path), case.path))

            predictor.predict_many(
                [cases[i].path for i in todo],
                [age_for(cases[i], ages, args.age) for i in todo],
                batch_size=args.batch_size,
                progress=progress,
                on_result=per_case if saliency_dir or report_dir or args.regions else None,
                on_finished=save_row,
            )

    def work_on_dask() -> None:
        from ..batch_dask import predict_on_dask

        saved = time.monotonic()
        with tqdm(total=len(todo), desc="brain age (dask)", unit="scan") as bar:
            def on_row(index: int, row: dict) -> None:
                nonlocal saved
                finished(index, row)
                bar.update(1)
                if time.monotonic() - saved > DASK_SAVE_EVERY_S:
                    table.save()
                    saved = time.monotonic()

            predict_on_dask(client, [(i, cases[i].path, age_for(cases[i], ages, args.age)) for i in todo], on_row,
                            batch_size=args.batch_size)

    stopped = save_as_you_go(table, work_on_dask if args.dask else work)
    if table.written and table.saved == set(table.rows):
        journal.finish()  # every row is in the results file (else they were printed, see save_as_you_go)
    if stopped is not None:
        return stopped
    rows = [table.rows[i] for i in sorted(table.rows)]
    failed = [r for r in rows if r.get("error")]
    for r in failed:
        print(f"FAILED {r['source']}: {r['error']}", file=sys.stderr)
    print(f"{len(rows) - len(failed)} of {len(rows)} scans predicted; results in {out}")
    return 1 if failed else 0


@contextlib.contextmanager
def _dask_client(scheduler: str, settings: dict):
    """A Client (and LocalCluster for local:N) whose workers have loaded the model; closed on leaving."""
    from .. import batch_dask

    client, cluster = batch_dask.connect(scheduler)
    try:
        try:
            batch_dask.load_on_workers(client, settings)
        except Exception as exc:  # noqa: BLE001 - whatever stopped a worker from loading the model
            raise ValueError(f"the model could not be loaded on the Dask workers ({type(exc).__name__}: {exc})") from exc
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
