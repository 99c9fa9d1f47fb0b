"""The worker process of one panel run: ``python case_worker.py JOB_DIR``.

Reads ``JOB_DIR/request.json`` and the scan (:func:`.case_run.save_input`), runs the case and
writes its outputs (:func:`.case_run.save_outputs`). Progress goes to stdout as lines
``BRAINAGE-PROGRESS <fraction> <text>``; a failure writes ``error.json`` (the message a user
reads) and exits 1. Run as a script, so it needs nothing but its own folder on disk.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

PROGRESS_PREFIX = "BRAINAGE-PROGRESS"
EXIT_OK, EXIT_FAILED = 0, 1


def progress_line(fraction: float, text: str) -> str:
    return f"{PROGRESS_PREFIX} {fraction:.4f} {text}"


def parse_progress(line: str) -> tuple[float, str] | None:
    """(fraction, text) from a progress line, None for any other output line."""
    if not line.startswith(PROGRESS_PREFIX + " "):
        return None
    try:
        fraction, _, text = line[len(PROGRESS_PREFIX) + 1:].partition(" ")
        return float(fraction), text
    except ValueError:
        return None


def run_job(job_dir: Path) -> None:
    """Do the work a request describes (raises on failure)."""
    from BrainAgeLib.calibration import load_calibration
    from BrainAgeLib.case_run import STAGES, load_input, run_case, save_outputs
    from BrainAgeLib.predict import Predictor

    def say(fraction: float, text: str) -> None:
        print(progress_line(fraction, text), flush=True)

    request = json.loads((job_dir / "request.json").read_text())
    say(*STAGES["load"])
    calibration = load_calibration(request["calibration"]) if request.get("calibration") else None
    predictor = Predictor(request["model"], device=request.get("device"), calibration=calibration,
                          skull_strip=request.get("skull_strip", "hd-bet"),
                          allow_non_axial=bool(request.get("allow_non_axial", False)),
                          keep_failed_qc=bool(request.get("keep_failed_qc", False)))
    volume = load_input(job_dir, request.get("name", ""))
    outputs = run_case(predictor, volume, request.get("age"), request.get("saliency_method"), say)
    save_outputs(job_dir, outputs)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: case_worker.py JOB_DIR", file=sys.stderr)
        return 2
    job_dir = Path(argv[0])
    try:
        run_job(job_dir)
    except Exception as exc:  # the parent shows the message; the traceback goes to its log
        traceback.print_exc(file=sys.stdout)
        (job_dir / "error.json").write_text(json.dumps({"error": str(exc) or type(exc).__name__, "type": type(exc).__name__}))
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the folder holding BrainAgeLib
    from BrainAgeLib.case_worker import main as _main  # the package's copy, not this __main__

    sys.exit(_main(sys.argv[1:]))
