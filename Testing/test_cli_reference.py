"""docs/cli.md is what scripts/make_cli_reference.py writes from the code, and nothing the code offers is
missing from it: flags, training settings, exit statuses, environment variables."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "cli.md"


@pytest.fixture(scope="module")
def generator() -> dict:
    return runpy.run_path(str(ROOT / "scripts" / "make_cli_reference.py"), run_name="make_cli_reference")


@pytest.fixture(scope="module")
def parsers(generator) -> dict[str, argparse.ArgumentParser]:
    return {**generator["brainage_parsers"](), "batch.py": generator["batch_module"]()["build_parser"]()}


def test_the_committed_reference_is_what_the_generator_writes(generator):
    assert DOC.read_text() == generator["render"](), "run: .venv/bin/python scripts/make_cli_reference.py"


def test_every_flag_in_the_code_is_in_the_reference(parsers):
    text = DOC.read_text()
    assert {"predict", "calibrate", "info", "skullstrip", "demo", "synth", "train", "evaluate"} <= set(parsers)
    missing = [f"{name} {flag}" for name, parser in parsers.items() for action in parser._actions
               for flag in action.option_strings if flag not in ("-h", "--help") and f"`{flag}`" not in text]
    assert not missing
    for name in parsers:
        section = f"## `brainage {name}`" if name not in ("brainage", "batch.py") else None
        assert section is None or section in text


def test_every_training_setting_has_a_meaning_in_the_reference():
    from BrainAgeTrainingLib.config import AUGMENT_HELP, SETTING_HELP, AugmentConfig, TrainConfig

    assert set(SETTING_HELP) == {f.name for f in dataclasses.fields(TrainConfig)} - {"augment"}
    assert set(AUGMENT_HELP) == {f.name for f in dataclasses.fields(AugmentConfig)}
    text = DOC.read_text()
    assert all(f"| `{key}` |" in text for key in SETTING_HELP)
    assert all(f"| `augment.{key}` |" in text for key in AUGMENT_HELP)
    assert '| `calibration_method` | `"extremes"` |' in text


def _read_variables() -> set[str]:
    """Environment variables read anywhere in the product's Python code and set-up scripts."""
    python = re.compile(r"""(?:environ\.get\(|environ\[|getenv\()\s*["']([A-Z0-9_]+)["']""")
    shell = re.compile(r"\$\{([A-Z0-9_]+):[-=]")
    names = set()
    for folder in ("BrainAge", "BrainAgeTraining"):
        for path in (ROOT / folder).rglob("*.py"):
            names |= set(python.findall(path.read_text()))
    for path in (ROOT / "scripts").glob("*.sh"):
        names |= set(shell.findall(path.read_text()))
    return names


def test_every_environment_variable_read_is_in_the_reference():
    from BrainAgeLib.cli.tables import ENVIRONMENT, SETUP_ENVIRONMENT

    read = _read_variables()
    assert {"BRAINAGE_CACHE", "BRAINAGE_SAMPLE_DATA", "BRAINAGE_DEFAULT_MODEL", "BRAINAGE_TORCH"} <= read
    assert read <= set(ENVIRONMENT) | set(SETUP_ENVIRONMENT)
    assert "ARGS" in SETUP_ENVIRONMENT and "$(ARGS)" in (ROOT / "Makefile").read_text()
    text = DOC.read_text()
    assert all(f"| `{name}` |" in text for name in [*ENVIRONMENT, *SETUP_ENVIRONMENT])


def _returned_statuses(path: Path, functions: set[str]) -> set[int]:
    """Integer exit statuses returned by ``functions`` in a module: literals, x if c else y, module constants."""
    tree = ast.parse(path.read_text())
    constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                 for t in n.targets if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)}
    constants |= {t.id: v.value for n in tree.body if isinstance(n, ast.Assign) and isinstance(n.value, ast.Tuple)
                  for target in n.targets if isinstance(target, ast.Tuple)
                  for t, v in zip(target.elts, n.value.elts) if isinstance(t, ast.Name) and isinstance(v, ast.Constant)}

    def values(node) -> set:
        if isinstance(node, ast.IfExp):
            return values(node.body) | values(node.orelse)
        if isinstance(node, ast.Constant):
            return {node.value}
        if isinstance(node, ast.Name) and node.id in constants:
            return {constants[node.id]}
        return set()

    found = set()
    for function in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name in functions):
        for node in ast.walk(function):
            if isinstance(node, ast.Return) and node.value is not None:
                found |= {v for v in values(node.value) if isinstance(v, int) and not isinstance(v, bool)}
    return found


def test_every_exit_status_the_code_returns_is_in_the_table():
    from BrainAgeLib.cli import COMMAND_MODULES
    from BrainAgeLib.cli.tables import EXIT_CODES

    for module in COMMAND_MODULES:
        package, _, command = module.split(".")
        folder = ROOT / ("BrainAge" if package == "BrainAgeLib" else "BrainAgeTraining") / package / "cli"
        returned = _returned_statuses(folder / f"{command}.py", {"run", "_run"})
        assert 0 in returned and returned <= set(EXIT_CODES[command]), (command, returned)
    batch = runpy.run_path(str(ROOT / "BrainAge" / "Scripts" / "batch.py"), run_name="batch")
    returned = _returned_statuses(ROOT / "BrainAge" / "Scripts" / "batch.py", {"main", "run"})
    assert {0, 1, 2, 3, 130} <= returned <= set(batch["EXIT_CODES"])


def test_help_shows_the_exit_statuses(parsers):
    assert "exit status: 0 every scan predicted" in " ".join(parsers["predict"].format_help().split())
    assert "3 packages were installed" in " ".join(parsers["batch.py"].format_help().split())


def test_the_scripts_docstrings_use_real_flags(parsers):
    """batch.py's usage text (once --age-csv) and train.py's hand-over to brainage train."""
    batch_doc = ast.get_docstring(ast.parse((ROOT / "BrainAge" / "Scripts" / "batch.py").read_text()))
    flags = {f for a in parsers["batch.py"]._actions for f in a.option_strings}
    slicer_flags = {"--no-main-window", "--python-script", "--python-code", "--testing"}
    assert "--ages" in batch_doc and set(re.findall(r"--[a-z][a-z-]+", batch_doc)) - slicer_flags <= flags
    assert 'main(["train", *sys.argv[1:]])' in (ROOT / "BrainAgeTraining" / "Scripts" / "train.py").read_text()


def test_readme_command_lines_use_real_flags(parsers):
    """Each `brainage COMMAND ...` line of the README's code blocks names only that command's flags."""
    text = (ROOT / "README.md").read_text()
    checked = 0
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for command in re.split(r"\n(?=\S)", block.replace("\\\n", " ")):
            match = re.match(r"(?:\S*/)?brainage (\w+)\b(.*)", command.strip())
            if match and match.group(1) in parsers:
                flags = {f for a in parsers[match.group(1)]._actions for f in a.option_strings}
                used = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", match.group(2).split("#")[0]))
                assert used <= flags, (match.group(1), used - flags)
                checked += 1
    assert checked >= 5
