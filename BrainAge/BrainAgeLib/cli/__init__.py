"""The ``brainage`` command line: one sub-command per job.

Each sub-command lives in its own module exposing ``register(subparsers)``,
which adds an argparse parser whose ``func`` default runs the job and returns
the process exit status.
"""

from __future__ import annotations

import argparse
import importlib

from .tables import EXIT_CODES, exit_status_text

#: Modules that register sub-commands, in the order shown by ``--help``.
#: A module that cannot be imported (an optional extra missing) is skipped.
COMMAND_MODULES = (
    "BrainAgeLib.cli.predict",
    "BrainAgeLib.cli.calibrate",
    "BrainAgeLib.cli.info",
    "BrainAgeLib.cli.skullstrip",
    "BrainAgeLib.cli.demo",
    "BrainAgeTrainingLib.cli.synth",
    "BrainAgeTrainingLib.cli.train",
    "BrainAgeTrainingLib.cli.evaluate",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brainage",
        description="Brain age from routine clinical axial T1 MRI (after Kim et al. 2025, npj Aging).",
        epilog=exit_status_text(EXIT_CODES["brainage"]) + ". Reference of every command: docs/cli.md",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and (exc.name == name or name.startswith(exc.name + ".")):
                continue  # that command is not written yet / not installed
            raise
        module.register(subparsers)
    for name, sub in subparsers.choices.items():
        if name in EXIT_CODES and not sub.epilog:
            sub.epilog = exit_status_text(EXIT_CODES[name])
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)

