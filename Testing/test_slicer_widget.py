"""The BrainAge panel (BrainAgeWidget) on PySide6 stand-ins and a real MRML scene.

Guards issue 11: (1) parameter types Slicer's GUI connectors accept, (2) the panel opens without
torch/MONAI/nibabel/safetensors and offers the install, (8) one run at a time and Cancel,
(9) the shown model reaches the parameter node, (10) no connector pile-up over enter/exit.
"""

import importlib
import os
import pathlib
import re
import sys
import time
import typing
from pathlib import Path

import pytest

pytest.importorskip("slicer_core", reason="slicer-core is installed by `make test` (scripts/setup.sh)")
pytest.importorskip("PySide6")

import slicer_env  # noqa: E402  (must come before `import slicer`)
import slicer  # noqa: E402
import slicer_panel  # noqa: E402
from PySide6 import QtCore  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
UI = ROOT / "BrainAge" / "Resources" / "UI" / "BrainAge.ui"
PATHS = (pathlib.Path, pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePath, pathlib.PurePosixPath, pathlib.PureWindowsPath)

#: Widget class -> types Slicer 5.10's connector accepts, read in
#: Base/Python/slicer/parameterNodeWrapper/guiConnectors.py (tag v5.10.0), class named per row.
ACCEPTED = {
    "QCheckBox": ((bool,), "QCheckBoxToBoolConnector"),
    "QPushButton": ((bool,), "QCheckablePushButtonToBoolConnector"),
    "QSpinBox": ((int,), "QSliderOrSpinBoxToIntConnector"),
    "QSlider": ((int,), "QSliderOrSpinBoxToIntConnector"),
    "QDoubleSpinBox": ((float, int), "QDoubleSpinBoxCtkSliderWidgetToFloatIntConnector"),
    "ctkSliderWidget": ((float, int), "QDoubleSpinBoxCtkSliderWidgetToFloatIntConnector (bounded only)"),
    "QComboBox": ((int, float, str, bool), "QComboBoxToStringableConnector (Choice annotation required)"),
    "QLineEdit": ((str,), "QLineEditToStrConnector"),
    "QLabel": ((str,), "QLabelToStrConnector"),
    "ctkPathLineEdit": (PATHS, "ctkPathLineEditToPathConnector (pathlib types only)"),
    "ctkDirectoryButton": (PATHS, "ctkDirectoryButtonToPathConnector (pathlib types only)"),
}
BOUNDED = {"ctkSliderWidget"}  # "Cannot have a connection to ctkSliderWidget where the float types is unbounded."
NEEDS_CHOICE = {"QComboBox"}


def _bound_widgets():
    """(widget class, parameter name) for every .ui widget with a SlicerParameterName."""
    text = UI.read_text()
    return re.findall(r'<widget class="(\w+)" name="\w+">(?:(?!</widget>).)*?name="SlicerParameterName" stdset="0"><string>(\w+)<', text, re.S)


@pytest.fixture()
def brainage(monkeypatch, tmp_path):
    """The module on a fresh scene, with an empty model cache and registry (tests add models)."""
    slicer_env.new_scene()
    monkeypatch.setenv("BRAINAGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("BRAINAGE_DEFAULT_MODEL", raising=False)
    registry = tmp_path / "Resources" / "Models.json"
    registry.parent.mkdir()
    registry.write_text('{"models": []}')
    import BrainAge

    monkeypatch.setattr(BrainAge.BrainAgeLogic, "registryPath", lambda self: str(registry))
    return BrainAge


def test_every_bound_parameter_has_a_type_slicer_can_connect(brainage):
    hints = typing.get_type_hints(brainage.BrainAgeParameterNode, include_extras=True)
    bound = _bound_widgets()
    assert {name for _, name in bound} == set(hints), "every parameter is bound to exactly one widget"
    for widget_class, name in bound:
        plain, *annotations = typing.get_args(hints[name]) or (hints[name],)
        if widget_class == "qMRMLNodeComboBox":  # qMRMLNodeComboBoxToNodeConnector: MRML node classes
            assert issubclass(plain, slicer.vtkMRMLNode), name
            continue
        types_, connector = ACCEPTED[widget_class]
        assert plain in types_, f"{name}: {plain} on {widget_class}; Slicer's {connector} accepts {types_}"
        if widget_class in BOUNDED:
            assert any(type(a).__name__ == "WithinRange" for a in annotations), f"{name}: {connector}"
        if widget_class in NEEDS_CHOICE:
            assert any(type(a).__name__ == "Choice" for a in annotations), f"{name}: {connector}"


def test_the_stand_in_connectors_match_the_table():
    """The stand-in parameterNodeWrapper refuses exactly what the table (read from Slicer) refuses."""
    standin = importlib.import_module("slicer.parameterNodeWrapper")  # the slicer namespace holds its decorator

    for widget_class, (types_, _) in ACCEPTED.items():
        for candidate in (bool, int, float, str, pathlib.Path):
            assert standin.canRepresent(widget_class, candidate) == (candidate in types_), (widget_class, candidate)
    assert not standin.canRepresent("ctkPathLineEdit", str)  # issue 11 point 1: str paths broke setup()


def test_panel_opens_without_torch_monai_nibabel_safetensors_and_offers_install(brainage, monkeypatch):
    for module in ("torch", "monai", "nibabel", "safetensors"):
        monkeypatch.setitem(sys.modules, module, None)  # `import torch` now raises ImportError
    widget, dialogs = slicer_panel.open_panel(monkeypatch)
    assert dialogs.shown == []  # the panel never opens a dialog by itself
    assert widget.ui.requirementsFrame.isVisible()
    prompt = widget.ui.requirementsLabel.text
    for expected in ("PyTorch is not installed", "monai==1.6.1", "nibabel>=5.2", "safetensors>=0.4"):
        assert expected in prompt
    assert "captum" not in prompt  # only what is really missing is listed
    assert widget.ui.installButton.enabled and not widget.ui.applyButton.enabled
    assert all(sys.modules[m] is None for m in ("torch", "monai", "nibabel", "safetensors"))
    # Install asks first; declining installs nothing
    calls = []
    monkeypatch.setattr(widget.logic, "setupPythonRequirements", lambda *a, **k: calls.append(a) or True)
    widget.ui.installButton.click()
    assert dialogs.names() == ["confirmOkCancelDisplay"] and "monai==1.6.1" in dialogs.shown[0][1] and calls == []


def test_install_that_needs_a_restart_offers_it_from_the_panel_only(brainage, monkeypatch):
    monkeypatch.setitem(sys.modules, "monai", None)
    dialogs = slicer_panel.Dialogs()
    dialogs.answers = {"confirmOkCancelDisplay": True, "confirmYesNoDisplay": True}
    widget, _ = slicer_panel.open_panel(monkeypatch, dialogs)
    installed = []
    monkeypatch.setattr(slicer.util, "pip_install", installed.append)
    widget.ui.installButton.click()
    assert installed == [["monai==1.6.1"]]  # torch is fine here, so PyTorchUtils is not asked
    assert dialogs.names() == ["confirmOkCancelDisplay", "confirmYesNoDisplay", "restart"]


def _receivers(widget, signature):
    return QtCore.QObject.receivers(widget, QtCore.SIGNAL(signature))


@pytest.mark.parametrize("returns_tag", [True, False], ids=["slicer-5.10", "slicer-5.8-no-tag"])
def test_enter_and_exit_do_not_pile_up_gui_connectors(brainage, monkeypatch, returns_tag):
    standin = importlib.import_module("slicer.parameterNodeWrapper")  # the slicer namespace holds its decorator

    monkeypatch.setattr(standin, "CONNECT_GUI_RETURNS_TAG", returns_tag)
    widget, _ = slicer_panel.open_panel(monkeypatch)
    before = _receivers(widget.ui.ageSpinBox, "valueChanged(double)")
    for _ in range(5):
        widget.exit()
        widget.enter()
    assert _receivers(widget.ui.ageSpinBox, "valueChanged(double)") == before
    widget.ui.ageSpinBox.value = 71.5
    assert widget._parameterNode.chronologicalAge == 71.5
    # a new scene gives a new parameter node: the panel moves its one connection to it
    widget.onSceneStartClose(None, None)
    slicer.mrmlScene.Clear()
    widget.onSceneEndClose(None, None)
    assert widget._parameterNode.chronologicalAge == 0.0 and widget.ui.ageSpinBox.value == 0.0


def _fake_package(folder, name, demo=False):
    folder.mkdir(parents=True)
    (folder / "model_card.json").write_text(f'{{"name": "{name}", "version": "1", "synthetic_demo": {str(demo).lower()}}}')
    return folder


def test_the_only_model_is_selected_and_reaches_the_parameter_node(brainage, monkeypatch, tmp_path):
    only = _fake_package(tmp_path / "cache" / "models" / "site-1", "site")
    widget, _ = slicer_panel.open_panel(monkeypatch)
    combo = widget.ui.modelSelector
    assert combo.itemText(0) == "Select a model..." and combo.count == 2
    assert combo.currentIndex == 1 and str(widget._parameterNode.modelPath) == str(only)
    assert widget.ui.modelPathLineEdit.currentPath == str(only)
    combo.setCurrentIndex(0)  # the user deselects it ...
    assert str(widget._parameterNode.modelPath) == "."
    combo.setCurrentIndex(1)  # ... and can choose it again
    assert str(widget._parameterNode.modelPath) == str(only)


def test_bundled_default_is_preselected_and_demo_models_never_are(brainage, monkeypatch, tmp_path):
    _fake_package(tmp_path / "cache" / "models" / "demo-1", "demo", demo=True)
    cached = _fake_package(tmp_path / "cache" / "models" / "site-1", "site")
    bundled = _fake_package(tmp_path / "Resources" / "Models" / "ixi-1", "ixi")
    (tmp_path / "Resources" / "Models.json").write_text(
        '{"models": [{"name": "ixi", "version": "1", "path": "Models/ixi-1", "bundled": true, "default": true}]}')
    widget, _ = slicer_panel.open_panel(monkeypatch)
    labels = [widget.ui.modelSelector.itemText(i) for i in range(widget.ui.modelSelector.count)]
    assert labels == ["Select a model...", "ixi 1 (bundled)", "demo 1 (SYNTHETIC DEMO, not for clinical use)", "site 1"]
    assert str(widget._parameterNode.modelPath) == str(bundled.resolve())
    widget.ui.modelSelector.setCurrentIndex(3)
    assert str(widget._parameterNode.modelPath) == str(cached)
    # a folder typed into the path field shows up in the list
    widget.ui.modelPathLineEdit.currentPath = str(tmp_path / "elsewhere")
    assert widget.ui.modelSelector.currentText == "elsewhere (folder)"


def _pump(widget, until, timeout=180.0):
    """The Qt event loop of Slicer, stood in for by processEvents until ``until()`` holds."""
    app = slicer_panel.qapp()
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, f"still waiting; status: {widget.ui.statusLabel.text!r}"
        app.processEvents()
        time.sleep(0.01)


def _ready_panel(monkeypatch, package, scan, skull_strip="none", saliency="none"):
    widget, dialogs = slicer_panel.open_panel(monkeypatch)
    node = slicer_env.load_volume_node(scan, "colin")
    p = widget._parameterNode
    p.inputVolume, p.modelPath, p.skullStrip, p.saliencyMethod = node, Path(package), skull_strip, saliency
    return widget, dialogs, node


def test_apply_returns_at_once_and_the_work_runs_in_a_worker(brainage, monkeypatch, tmp_path, two_fold_package, colin_brain_path):
    """Issue 17: the GUI thread is back within 0.2 s of Apply; a worker process predicts; one run at a time."""
    widget, dialogs, node = _ready_panel(monkeypatch, two_fold_package, colin_brain_path, saliency="guided-backprop")
    assert widget.ui.applyButton.enabled
    import qt

    assert qt.Qt.WaitCursor  # the stand-in builds PySide6's enums on first use; Slicer's PythonQt has them loaded
    started = time.perf_counter()
    widget.onApplyButton()
    returned = time.perf_counter() - started
    job = widget.logic._job
    assert job is not None, dialogs.shown[0][1][:3000]
    assert job.process.pid != os.getpid() and job.process.poll() is None  # still working
    assert returned < 0.2, f"Apply blocked the GUI thread for {returned:.2f} s"
    assert not widget.ui.applyButton.enabled and widget.ui.cancelButton.enabled
    widget.onApplyButton()  # a click that reaches the panel during the run starts nothing
    assert widget.logic._job is job
    seen = []
    _pump(widget, lambda: seen.append(widget.ui.statusLabel.text) or not widget.logic.running)
    assert dialogs.shown == [], dialogs.shown
    assert any("Skull stripping" in text for text in seen) and widget.ui.statusLabel.text.startswith("Done in")
    assert "Predicted" in widget.ui.resultLabel.text and widget.ui.applyButton.enabled
    assert not widget.ui.cancelButton.enabled and not job.folder.exists()  # the job folder is removed
    assert widget.ui.saveReportButton.enabled  # issue 14: the case report from the panel
    paths = widget.logic.saveReport(str(tmp_path / "report"))
    assert paths["pdf"].read_bytes()[:5] == b"%PDF-" and paths["png"].stat().st_size > 10_000
    with pytest.raises(FileExistsError):
        widget.logic.saveReport(str(tmp_path / "report"))  # never overwrites a report silently
    # the worker's outputs equal an in-process run of the same Logic on the same node
    volume, case, _card = widget.logic.lastCase
    from BrainAgeLib.saliency.regions import REGIONS

    assert set(case.regions) == set(REGIONS)  # issue 15: the occlusion rows of the panel's table
    table = widget.ui.resultTableView.mrmlTableNode().GetTable()
    measures = [table.GetValue(i, 0).ToString() for i in range(table.GetNumberOfRows())]
    assert "Occluding ventricles" in measures
    direct = widget.logic.process(node, str(two_fold_package), skullStrip="none", saliencyMethod="guided-backprop")
    assert direct.result.fold_ages == pytest.approx(case.result.fold_ages, abs=1e-4)
    saliency_nodes = slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
    assert sum("saliency" in n.GetName() for n in saliency_nodes) == 2
    mask_worker = slicer.util.getNodesByClass("vtkMRMLSegmentationNode")
    assert len(mask_worker) == 2


def test_cancel_stops_the_worker_within_a_second(brainage, monkeypatch, two_fold_package, colin_brain_path):
    widget, dialogs, _node = _ready_panel(monkeypatch, two_fold_package, colin_brain_path)
    tables = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLTableNode")
    widget.onApplyButton()
    job = widget.logic._job
    _pump(widget, lambda: widget.ui.progressBar.value > 0)  # the worker is in its first stage
    clicked = time.monotonic()
    widget.ui.cancelButton.click()
    assert job.process.poll() is not None, "the worker still runs after Cancel"
    _pump(widget, lambda: not widget.logic.running, timeout=5)
    assert time.monotonic() - clicked < 1.0
    assert widget.ui.statusLabel.text == "Cancelled." and dialogs.shown == []
    assert slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLTableNode") == tables  # stopped before any output
    assert widget.ui.applyButton.enabled and not widget.ui.cancelButton.enabled and not job.folder.exists()


def test_a_failing_worker_shows_its_message_once(brainage, monkeypatch, tmp_path, colin_brain_path):
    widget, dialogs, _node = _ready_panel(monkeypatch, tmp_path / "no-such-model", colin_brain_path)
    widget.onApplyButton()
    _pump(widget, lambda: not widget.logic.running)
    assert dialogs.names() == ["errorDisplay"]
    message = dialogs.shown[0][1]
    assert "no-such-model" in message and "Traceback" not in message
    assert widget.ui.statusLabel.text == "Failed." and widget.ui.applyButton.enabled


def test_on_a_too_old_slicer_the_panel_says_so_and_installs_nothing(brainage, monkeypatch):
    """Slicer 5.8 (Python 3.9) cannot install MONAI 1.6.1: the panel opens, names the supported Slicer, offers no install."""
    from BrainAgeLib import requirements

    monkeypatch.setattr(requirements, "MIN_PYTHON", (sys.version_info.major, sys.version_info.minor + 1))
    widget, dialogs = slicer_panel.open_panel(monkeypatch)
    assert widget.ui.requirementsFrame.isVisible() and "3D Slicer 5.10 or later" in widget.ui.requirementsLabel.text
    assert not widget.ui.installButton.enabled and not widget.ui.applyButton.enabled
    installed = []
    monkeypatch.setattr(slicer.util, "pip_install", installed.append)
    widget.onApplyButton()
    assert dialogs.names() == ["errorDisplay"] and installed == []


def test_panel_files_parse_as_python_3_9():
    """So that Slicer 5.8 can load the module and show the message above instead of a syntax error."""
    import ast

    for path in ("BrainAge/BrainAge.py", "BrainAge/BrainAgeLib/requirements.py", "BrainAge/BrainAgeLib/model_list.py",
                 "BrainAge/BrainAgeLib/bundled_models.py", "BrainAge/BrainAgeLib/user_cache.py"):
        ast.parse((ROOT / path).read_text(), filename=path, feature_version=(3, 9))


class FakePyTorchUtilsLogic:
    """PyTorchUtilsLogic.installTorch's signature (SlicerPyTorch PyTorchUtils/PyTorchUtils.py); installs nothing."""

    calls = []
    installs = "2.9.1"

    def installTorch(self, askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None,
                     torchvisionVersionRequirement=None):
        self.calls.append((askConfirmation, torchVersionRequirement))
        FakePyTorchUtilsLogic.version = self.installs
        return object()


def test_an_old_torch_is_replaced_through_pytorchutils_not_pip(brainage, monkeypatch):
    import importlib.metadata
    import types

    real = importlib.metadata.version
    FakePyTorchUtilsLogic.calls, FakePyTorchUtilsLogic.version = [], "2.2.2"
    monkeypatch.setattr(importlib.metadata, "version", lambda name: FakePyTorchUtilsLogic.version if name == "torch" else real(name))
    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=FakePyTorchUtilsLogic))
    pip = []
    monkeypatch.setattr(slicer.util, "pip_install", pip.append)
    logic = brainage.BrainAgeLogic()
    assert "PyTorch 2.2.2 is installed but BrainAge needs torch>=2.8" in logic.requirementsProblems()
    ready = logic.setupPythonRequirements()
    assert FakePyTorchUtilsLogic.calls == [(False, ">=2.8")] and pip == []  # asked nobody; pip never touched torch
    assert ready is False  # torch 2.2.2 is already loaded in this process: the new one needs a restart
    assert logic.requirementsProblems() == []


def test_the_modules_self_test_installs_its_packages_first(brainage, monkeypatch):
    """BrainAgeTest (what `Slicer --testing` runs on the extensions dashboard) sets up requirements in setUp."""
    monkeypatch.setitem(sys.modules, "monai", None)
    pip = []
    monkeypatch.setattr(slicer.util, "pip_install", pip.append)
    test = brainage.BrainAgeTest("runTest")
    with pytest.raises(AssertionError, match="restart Slicer"):
        test.setUp()  # monai stays missing here, as if a restart were needed
    assert pip == [["monai==1.6.1"]]


def test_choosing_deepbet_lists_its_package_when_missing(brainage, monkeypatch):
    monkeypatch.setitem(sys.modules, "deepbet", None)
    widget, _ = slicer_panel.open_panel(monkeypatch)
    assert not widget.ui.requirementsFrame.isVisible()
    widget.ui.skullStripComboBox.setCurrentIndex(1)  # deepbet
    assert widget._parameterNode.skullStrip == "deepbet"
    assert widget.ui.requirementsFrame.isVisible() and "deepbet==1.0.2" in widget.ui.requirementsLabel.text
