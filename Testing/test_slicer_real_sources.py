"""Opt-in: the BrainAge panel against Slicer's own Python (parameterNodeWrapper, guiConnectors,
ScriptedLoadableModule, i18n) at a release tag, instead of the stand-ins.

Upstream code never enters this repository: stage it elsewhere, then point the test at it::

    git --git-dir=SLICER.git show v5.10.0:Base/Python/slicer/i18n.py > /tmp/slicer-real/v5.10.0/slicer/i18n.py
    (same for ScriptedLoadableModule.py and every file of parameterNodeWrapper/)
    BRAINAGE_SLICER_SOURCES=/tmp/slicer-real/v5.10.0 pytest Testing/test_slicer_real_sources.py

The widgets stay the PySide6 stand-ins (Slicer's PythonQt/CTK/qMRML are not installable here).
Each case runs in a fresh interpreter so the real modules replace the stand-ins.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SOURCES = os.environ.get("BRAINAGE_SLICER_SOURCES")
pytestmark = pytest.mark.skipif(not SOURCES, reason="set BRAINAGE_SLICER_SOURCES to a staged Slicer Base/Python tree")
TESTING = Path(__file__).resolve().parent

PRELUDE = textwrap.dedent('''
    import importlib, json, os, pathlib, sys, types
    sys.path.insert(0, {testing!r})
    import slicer_env, slicer, slicer_panel
    app = slicer_panel.qapp()
    slicer.app = slicer_panel.app_standin(app)
    import qt, ctk, qmrml
    for name in [n for n in sys.modules if n.split(".")[:2] in (["slicer", "parameterNodeWrapper"], ["slicer", "ScriptedLoadableModule"], ["slicer", "i18n"])]:
        del sys.modules[name]
    slicer.__path__.insert(0, os.path.join({sources!r}, "slicer"))
    for name in ("i18n", "parameterNodeWrapper", "ScriptedLoadableModule"):
        module = importlib.import_module("slicer." + name)
        assert module.__file__.startswith({sources!r}), module.__file__
    slicer_env.new_scene()
    report = {{}}
''')

PANEL = textwrap.dedent('''
    from PySide6 import QtCore
    for blocked in ("torch", "monai", "nibabel", "safetensors"):
        sys.modules[blocked] = None
    import BrainAge
    slicer.modules.brainage = types.SimpleNamespace(path=BrainAge.__file__)
    dialogs = slicer_panel.Dialogs()
    for name in slicer_panel.DIALOGS:
        setattr(slicer.util, name, dialogs._recorder(name))
    slicer.util.setSliceViewerLayers = lambda **kwargs: None
    widget = slicer_panel.mount_widget(BrainAge, slicer, qt)  # as Slicer's module panel: a parent first, setup() after
    report["standalone"] = BrainAge.BrainAgeWidget().ui.applyButton.text  # no parent: the base class calls setup()
    node = widget._parameterNode
    receivers = lambda: QtCore.QObject.receivers(widget.ui.ageSpinBox, QtCore.SIGNAL("valueChanged(double)"))
    report["wrapper_module"] = type(node).connectGui.__module__
    report["tag"] = widget._parameterNodeGuiTag
    report["stored_empty_path"] = node.parameterNode.GetParameter("calibrationPath")
    from BrainAgeLib.bundled_models import default_model_path
    default = default_model_path(widget.logic.registryPath())
    report["preselected"] = [str(node.modelPath), str(default) if default else "."]
    report["prompt_visible"] = widget.ui.requirementsFrame.isVisible()
    report["prompt"] = widget.ui.requirementsLabel.text
    report["apply_enabled"] = widget.ui.applyButton.enabled
    report["dialogs"] = dialogs.shown
    report["skull_items"] = [widget.ui.skullStripComboBox.itemText(i) for i in range(widget.ui.skullStripComboBox.count)]
    before = receivers()
    for _ in range(5):
        widget.exit()
        widget.enter()
    report["receivers"] = [before, receivers()]
    widget.ui.ageSpinBox.value = 71.5
    widget.ui.skullStripComboBox.currentIndex = 2
    report["gui_to_node"] = [node.chronologicalAge, node.skullStrip, node.parameterNode.GetParameter("skullStrip")]
    node.modelPath = pathlib.Path("/models/site-1")
    node.saliencyOpacity = 0.8
    report["node_to_gui"] = [widget.ui.modelPathLineEdit.currentPath, widget.ui.opacitySlider.value,
                             widget.ui.modelSelector.currentText]
    widget.ui.calibrationPathLineEdit.currentPath = "/sites/a.json"
    report["calibration"] = [str(node.calibrationPath), type(node.calibrationPath).__name__]
    print("REPORT", json.dumps(report))
''')

STR_PATH = textwrap.dedent('''
    from typing import Annotated
    from slicer.parameterNodeWrapper import parameterNodeWrapper
    @parameterNodeWrapper
    class OldParameters:
        modelPath: str = ""
    widget = ctk.ctkPathLineEdit()
    widget.setProperty("SlicerParameterName", "modelPath")
    ui = types.SimpleNamespace(modelPathLineEdit=widget)
    try:
        OldParameters(slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")).connectGui(ui)
        report["error"] = None
    except RuntimeError as exc:
        report["error"] = str(exc)
    print("REPORT", json.dumps(report))
''')


def _run(scenario):
    code = PRELUDE.format(testing=str(TESTING), sources=SOURCES) + scenario
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=TESTING, env=env, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len("REPORT "):])


def test_panel_binds_to_slicers_real_parameter_node_wrapper():
    report = _run(PANEL)
    assert report["wrapper_module"].startswith("slicer.parameterNodeWrapper")
    assert report["stored_empty_path"] == "."  # Slicer's PathSerializer: str(pathlib.Path()) is "."
    assert report["preselected"][0] == report["preselected"][1]  # the bundled default model, when the extension has one
    assert report["prompt_visible"] and "monai==1.6.1" in report["prompt"] and not report["apply_enabled"]
    assert report["dialogs"] == [] and report["standalone"] == "Apply"
    assert report["skull_items"] == ["hd-bet", "deepbet", "none"]
    assert report["receivers"][0] == report["receivers"][1]  # enter/exit add no connectors (5.8.1 returns no tag)
    assert report["gui_to_node"] == [71.5, "none", "none"]
    assert report["node_to_gui"] == ["/models/site-1", 0.8, "site-1 (folder)"]
    assert report["calibration"][0] == "/sites/a.json" and report["calibration"][1] in ("PosixPath", "WindowsPath")


def test_slicers_connector_refuses_a_str_path_on_ctkPathLineEdit():
    """What issue 11 point 1 found: a str parameter bound to a ctkPathLineEdit breaks connectGui."""
    report = _run(STR_PATH)
    assert report["error"] and "Unable to create GUI connector" in report["error"]
