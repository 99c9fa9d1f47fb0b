"""BrainAge/Scripts/batch.py as ``Slicer --no-main-window --python-script`` runs it (issue 11, test 6).

The harness imitates qSlicerCoreApplication::handleCommandLineArguments (Slicer 5.10): the
script runs in the application's interpreter; ``sys.exit(code)`` ends the application with
that code (systemExitExceptionRaised -> terminate); an uncaught exception is printed and the
application keeps running, which a window-less Slicer does forever. Every modal dialog of
slicer.util would block such a Slicer, so the harness fails on any.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("slicer_core", reason="slicer-core is installed by `make test` (scripts/setup.sh)")

ROOT = Path(__file__).resolve().parents[1]
BATCH = ROOT / "BrainAge" / "Scripts" / "batch.py"

HARNESS = textwrap.dedent('''
    import os, runpy, sys, traceback, types
    sys.path.insert(0, {testing!r})
    import slicer_env, slicer
    slicer_env.new_scene()
    slicer.app = types.SimpleNamespace(processEvents=lambda: None, testingEnabled=lambda: False)
    for name in {blocked!r}:
        sys.modules[name] = None  # not installed in this Slicer
    def dialog(*args, **kwargs):
        print("MODAL DIALOG", args, flush=True)
        os._exit(99)  # a window-less Slicer would wait here forever
    for name in ("confirmOkCancelDisplay", "confirmYesNoDisplay", "errorDisplay", "warningDisplay",
                 "infoDisplay", "messageBox", "delayDisplay"):
        setattr(slicer.util, name, dialog)
    slicer.util.pip_install = lambda requirements: print("PIP", requirements, flush=True)
    sys.argv = [{script!r}] + {args!r}
    try:
        runpy.run_path({script!r}, run_name="__main__")
    except SystemExit as exc:
        print("EXIT", exc.code, flush=True)
        sys.exit(exc.code)
    except BaseException:
        traceback.print_exc()
    print("SLICER KEEPS RUNNING", flush=True)
''')


def run_in_slicer(tmp_path, args, blocked=()):
    code = HARNESS.format(testing=str(ROOT / "Testing"), blocked=list(blocked), script=str(BATCH), args=list(args))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    return proc.returncode, proc.stdout, proc.stderr


def test_missing_pytorch_extension_exits_2_without_a_dialog(tmp_path):
    code, out, err = run_in_slicer(tmp_path, ["--input", str(tmp_path), "--model", "m", "--out", "o.csv"],
                                   blocked=("torch", "PyTorchUtils"))
    assert code == 2 and "EXIT 2" in out, out + err
    assert "MODAL DIALOG" not in out and "SLICER KEEPS RUNNING" not in out
    assert "PyTorch extension" in err


def test_packages_that_need_a_restart_exit_3_without_asking(tmp_path):
    code, out, err = run_in_slicer(tmp_path, ["--input", str(tmp_path), "--model", "m", "--out", "o.csv"], blocked=("monai",))
    assert code == 3 and "PIP ['monai==1.6.1']" in out, out + err
    assert "MODAL DIALOG" not in out and "start Slicer again" in err


@pytest.mark.parametrize("args, expected", [
    (["--model", "m", "--out", "o.csv"], 2),  # argparse: --input missing
    (["--input", ".", "--ages", "/no/such/ages.csv", "--model", "m", "--out", "o.csv"], 2),  # an error inside main
    (["--help"], 0),
])
def test_every_other_way_out_ends_slicer_with_a_status(tmp_path, args, expected):
    code, out, err = run_in_slicer(tmp_path, args)
    assert code == expected and f"EXIT {expected}" in out, out + err
    assert "SLICER KEEPS RUNNING" not in out and "MODAL DIALOG" not in out
