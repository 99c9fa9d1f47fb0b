"""Write docs/cli.md from the code: every ``brainage`` sub-command and the two Scripts' argparse
definitions (flags, values, defaults, help), the exit statuses and environment variables of
BrainAgeLib.cli.tables, and the training settings of BrainAgeTrainingLib.config.

    .venv/bin/python scripts/make_cli_reference.py           # (re)write docs/cli.md
    .venv/bin/python scripts/make_cli_reference.py --check   # exit 1 when docs/cli.md is not up to date
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "cli.md"
BATCH = ROOT / "BrainAge" / "Scripts" / "batch.py"


def brainage_parsers() -> dict[str, argparse.ArgumentParser]:
    """``brainage`` and each of its sub-command parsers, by name."""
    from BrainAgeLib.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"brainage": parser, **commands.choices}


def batch_module() -> dict:
    """BrainAge/Scripts/batch.py's globals (its build_parser, EXIT_CODES), without running it."""
    return runpy.run_path(str(BATCH), run_name="batch")


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _help(action: argparse.Action, prog: str) -> str:
    """The help text with argparse's %(...)s placeholders filled in, as ``--help`` shows it."""
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    params = {k: v for k, v in dict(vars(action), prog=prog).items() if v is not argparse.SUPPRESS}
    if params.get("choices") is not None:
        params["choices"] = ", ".join(map(str, params["choices"]))
    return action.help % params if "%" in action.help else action.help


def _value(action: argparse.Action) -> str:
    if action.nargs == 0:
        return ""
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        return " \\| ".join(f"`{c}`" for c in action.choices)
    name = action.metavar or (action.dest.upper() if action.option_strings else action.dest)
    return {"+": f"{name} ...", "*": f"[{name} ...]", "?": f"[{name}]"}.get(action.nargs, name)


def _default(action: argparse.Action) -> str:
    value = action.default
    if value is None or value is argparse.SUPPRESS or action.nargs == 0 or value in ([], ""):
        return ""
    if isinstance(value, (list, tuple)):
        value = ",".join(map(str, value))
    return f"`{value}`"


def options_table(parser: argparse.ArgumentParser) -> list[str]:
    """One row per argument: names, value, default, meaning (required ones say so)."""
    rows = ["| argument | value | default | meaning |", "|---|---|---|---|"]
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        names = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.metavar or action.dest}`"
        meaning = _help(action, parser.prog)
        if action.required and action.option_strings:
            meaning = f"**required.** {meaning}"
        rows.append(f"| {names} | {_value(action)} | {_default(action)} | {_cell(meaning)} |")
    for group in parser._mutually_exclusive_groups:
        rows.append("")
        rows.append("Only one of " + ", ".join(f"`{a.option_strings[0]}`" for a in group._group_actions) + ".")
    return rows


def usage(parser: argparse.ArgumentParser) -> str:
    """argparse's usage line, unwrapped (independent of the terminal's width)."""
    formatter = argparse.HelpFormatter(parser.prog, width=10_000)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="")
    return formatter.format_help().strip()


def exit_rows(codes: dict[int, str]) -> list[str]:
    return ["| exit status | meaning |", "|---|---|", *(f"| {code} | {_cell(text)} |" for code, text in codes.items())]


def command_section(title: str, parser: argparse.ArgumentParser, summary: str, codes: dict[int, str]) -> list[str]:
    lines = [f"## {title}", ""]
    for text in (summary, parser.description):
        if text:
            lines += [_cell(text), ""]
    lines += ["```", usage(parser), "```", "", *options_table(parser), "", *exit_rows(codes), ""]
    return lines


def _json(value) -> str:
    return f"`{json.dumps(value)}`"


def settings_section() -> list[str]:
    """The training settings of a --config file, from TrainConfig's fields and their one-line help."""
    from BrainAgeTrainingLib.config import AUGMENT_HELP, MACHINE_DEFAULTS, SETTING_HELP, AugmentConfig, TrainConfig

    defaults = TrainConfig().to_dict()
    lines = ["## Training settings (`brainage train --config FILE`)", "",
             "A YAML or JSON file sets any of these keys (unknown keys are an error); the command-line flags of "
             "`brainage train` override the file. The resolved settings are saved as `RUN_DIR/config.json`.", "",
             "| key | default | meaning |", "|---|---|---|"]
    for field in dataclasses.fields(TrainConfig):
        if field.name == "augment":
            for sub in dataclasses.fields(AugmentConfig):
                lines.append(f"| `augment.{sub.name}` | {_json(defaults['augment'][sub.name])} | "
                             f"{_cell(AUGMENT_HELP[sub.name])} |")
            continue
        default = f"{MACHINE_DEFAULTS[field.name]}" if field.name in MACHINE_DEFAULTS else _json(defaults[field.name])
        lines.append(f"| `{field.name}` | {default} | {_cell(SETTING_HELP[field.name])} |")
    return lines + [""]


def environment_section() -> list[str]:
    from BrainAgeLib.cli.tables import ENVIRONMENT, SETUP_ENVIRONMENT

    lines = ["## Environment variables", "", "Read by BrainAge (the commands, the Scripts and the Slicer modules):", "",
             "| variable | meaning |", "|---|---|"]
    lines += [f"| `{name}` | {_cell(text)} |" for name, text in ENVIRONMENT.items()]
    lines += ["", "Read by the set-up (`make`, `scripts/setup.sh`, `scripts/fetch_sample_data.sh`):", "",
              "| variable | meaning |", "|---|---|"]
    lines += [f"| `{name}` | {_cell(text)} |" for name, text in SETUP_ENVIRONMENT.items()]
    return lines + [""]


def render() -> str:
    from BrainAgeLib.cli.tables import EXIT_CODES

    parsers = brainage_parsers()
    main = parsers.pop("brainage")
    commands = next(a for a in main._actions if isinstance(a, argparse._SubParsersAction))
    summaries = {a.dest: a.help for a in commands._choices_actions}
    batch = batch_module()
    lines = ["# Command-line reference", "",
             "<!-- Generated by scripts/make_cli_reference.py from the argparse definitions; do not edit by hand. -->",
             "", "Every sub-command of `brainage`, the two scripts, the training settings and the environment "
             "variables. `brainage` is installed into `.venv` by `make` (`.venv/bin/brainage`, or "
             "`source .venv/bin/activate`), or by `pip install -e '.[skullstrip]'`. Every command prints its "
             "usage with `--help`; a usage error (unknown flag, missing argument) exits with status 2.", "",
             "Contents: " + ", ".join(f"[`brainage {name}`](#brainage-{name})" for name in parsers)
             + ", [`batch.py`](#brainagescriptsbatchpy), [`train.py`](#brainagetrainingscriptstrainpy), "
             "[training settings](#training-settings-brainage-train---config-file), "
             "[environment variables](#environment-variables).", ""]
    lines += ["## `brainage`", "", "```", usage(main), "```", "", *exit_rows(EXIT_CODES["brainage"]), ""]
    for name, parser in parsers.items():
        lines += command_section(f"`brainage {name}`", parser, summaries.get(name, ""), EXIT_CODES[name])
    lines += command_section("`BrainAge/Scripts/batch.py`", batch["build_parser"](),
                             "Batch brain age inside Slicer (`Slicer --no-main-window --python-script "
                             "BrainAge/Scripts/batch.py ...`, the module's Logic) or with plain Python (`python "
                             "BrainAge/Scripts/batch.py ...`, the core).", batch["EXIT_CODES"])
    lines += ["## `BrainAgeTraining/Scripts/train.py`", "",
              "`PythonSlicer BrainAgeTraining/Scripts/train.py ARGS` (or `python ...`) runs `brainage train ARGS` "
              "from an installed extension or a source tree: the same arguments, defaults and exit statuses as "
              "[`brainage train`](#brainage-train).", ""]
    lines += settings_section()
    lines += environment_section()
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare docs/cli.md with what would be written")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if OUT.read_text() != text:
            print(f"{OUT} is out of date: run python scripts/make_cli_reference.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
