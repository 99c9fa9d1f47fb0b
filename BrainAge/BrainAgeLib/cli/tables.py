"""What the ``brainage`` command tells a user beyond its flags: each sub-command's exit statuses (shown
under its ``--help``) and the environment variables BrainAge reads. docs/cli.md is generated from these
tables and the argparse definitions (scripts/make_cli_reference.py)."""

from __future__ import annotations

_INTERRUPTED = {
    4: "the results could not all be saved (disk full, folder turned read-only; the rows saved before are kept)",
    130: "interrupted by SIGINT (the rows done are saved, the other scans get a 'not run' row)",
    143: "interrupted by SIGTERM (as for 130)",
}

#: Exit status -> meaning, per sub-command ("brainage": the command itself). argparse's usage errors are 2 everywhere.
EXIT_CODES: dict[str, dict[int, str]] = {
    "brainage": {0: "the sub-command's own status (below)", 2: "no sub-command given, or a usage error (argparse)"},
    "predict": {0: "every scan predicted", 1: "some scans failed (their rows hold the error)",
                2: "usage, input, output or model error: nothing was predicted", **_INTERRUPTED},
    "calibrate": {0: "calibration written",
                  2: "unreadable or incomplete table, missing column, too few controls, or an unusable --package"},
    "info": {0: "card shown (weights verified unless --no-verify)", 2: "not a readable package, or a checksum differs"},
    "skullstrip": {0: "mask written", 1: "error: unreadable input, backend missing or failing, or outputs exist "
                   "without --overwrite", 3: "mask written but its QC flagged it (only with --strict)"},
    "demo": {0: "outputs written and the model input passed its QC",
             1: "the model input failed its QC (outputs still written), or an error such as missing sample heads"},
    "synth": {0: "cohort written", 1: "the folder holds a cohort (use --overwrite), a sample head is missing, or bad "
              "settings"},
    "train": {0: "training finished (or --print-config printed)",
              2: "invalid configuration or data, or a run folder in use (use --resume)"},
    "evaluate": {0: "report written", 2: "unreadable table, missing column, no controls, a group too small to test, "
                 "or a report already in --out"},
}

#: Environment variables the Python code reads -> meaning.
ENVIRONMENT: dict[str, str] = {
    "BRAINAGE_CACHE": "per-user cache folder: imported models (models/), the synthetic demo model, prepared "
                      "synthetic heads and the sha256 of weight files already verified (digests.json; default "
                      "~/.cache/slicer-brainage)",
    "BRAINAGE_DEFAULT_MODEL": "model package folder used when none is named (brainage predict, brainage demo), "
                              "instead of the bundled model",
    "BRAINAGE_SAMPLE_DATA": "folder with the sample heads (default sample_data/ of the source tree)",
    "WORLD_SIZE": "set by torchrun: number of training processes (brainage train)",
    "RANK": "set by torchrun: this training process's rank",
    "LOCAL_RANK": "set by torchrun: this process's GPU on its node",
}

#: Environment variables of the set-up (make, scripts/setup.sh, scripts/fetch_sample_data.sh) -> meaning.
SETUP_ENVIRONMENT: dict[str, str] = {
    "BRAINAGE_TORCH": "cpu: install the CPU-only torch build from the PyTorch index (default: plain pip, which "
                      "takes PyPI's wheel: the CUDA build on Linux x86-64)",
    "TORCH_INDEX_URL": "install torch from this package index instead (a mirror or a local folder)",
    "VENV": "virtual environment folder (default .venv)",
    "PYTHON": "Python that creates the environment, and downloads the sample heads when there is no .venv "
              "(default python3)",
    "ARGS": "arguments passed on by make demo, e.g. make demo ARGS=--synthetic-demo",
}


def exit_status_text(codes: dict[int, str]) -> str:
    """One line for a parser's epilog: 'exit status: 0 ...; 1 ...'."""
    return "exit status: " + "; ".join(f"{code} {meaning}" for code, meaning in codes.items())
