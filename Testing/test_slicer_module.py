"""The BrainAge Slicer module's Logic on a real MRML scene (PyPI slicer-core), its .ui, CMake lists and batch script.

What cannot run here: the Slicer application itself (module loading, PythonQt
widgets, parameterNodeWrapper GUI binding, PyTorchUtils installs).
"""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("slicer_core", reason="slicer-core is installed by `make test` (scripts/setup.sh)")

import slicer_env  # noqa: E402  (must come before `import slicer`)
import slicer  # noqa: E402
import vtk  # noqa: E402

from BrainAgeLib.io import load_volume, to_canonical, volume_from_kji  # noqa: E402
from BrainAgeLib.predict import Predictor, strip_skull  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def scene():
    return slicer_env.new_scene()


@pytest.fixture(scope="module")
def logic_module():
    import BrainAge

    return BrainAge


def _ijk_to_ras(node) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def test_logic_on_real_mrml_scene_matches_the_core(scene, logic_module, two_fold_package, mni_brain_path):
    node = slicer_env.load_volume_node(mni_brain_path, "mni")  # LAS file read by Slicer's ITK reader
    reference = to_canonical(load_volume(mni_brain_path))
    as_read = to_canonical(volume_from_kji(slicer.util.arrayFromVolume(node), _ijk_to_ras(node)))
    # Slicer may order voxels differently from nibabel; the same voxels sit at the same world positions
    np.testing.assert_allclose(as_read.affine, reference.affine, atol=1e-4)
    np.testing.assert_array_equal(as_read.data, reference.data)
    logic = logic_module.BrainAgeLogic()
    steps = []
    logic.progressCallback = lambda fraction, message: steps.append(fraction)
    outputs = logic.process(node, str(two_fold_package), chronologicalAge=65.0, skullStrip="none")
    core = Predictor(two_fold_package, skull_strip="none").predict_path(mni_brain_path, age=65.0)
    assert outputs.result.fold_ages == pytest.approx(core.fold_ages, abs=1e-3)
    assert steps == sorted(steps) and steps[-1] == 1.0
    # table node: the core's numbers, formatted
    table = outputs.table
    rows = {table.GetCellText(r, 0): table.GetCellText(r, 1) for r in range(table.GetNumberOfRows())}
    assert rows["Predicted brain age"].startswith(f"{core.predicted_age:.1f} y")
    assert rows["Chronological age"] == "65.0 y"
    # saliency volume on the input's exact geometry
    sal = outputs.saliency
    np.testing.assert_array_equal(_ijk_to_ras(sal), _ijk_to_ras(node))
    assert sal.GetImageData().GetDimensions() == node.GetImageData().GetDimensions()
    assert slicer.util.arrayFromVolume(sal).max() > 0
    # segmentation covers exactly the core's brain mask (Dice = 1)
    seg = outputs.segmentation
    segment_id = seg.GetSegmentation().GetNthSegmentID(0)
    assert seg.GetSegmentation().GetNthSegment(0).GetName() == "Brain"
    labelmap = slicer.util.arrayFromSegmentBinaryLabelmap(seg, segment_id, node) > 0
    labelmap = to_canonical(volume_from_kji(labelmap, _ijk_to_ras(node))).data > 0
    _, core_mask_volume, _, _ = strip_skull(load_volume(mni_brain_path), "none")
    core_mask = to_canonical(core_mask_volume).data > 0
    dice = 2 * np.sum(labelmap & core_mask) / (labelmap.sum() + core_mask.sum())
    assert dice == pytest.approx(1.0)


def test_top_percent_label_and_clear_errors(scene, logic_module, two_fold_package, colin_brain_path):
    node = slicer_env.load_volume_node(colin_brain_path)
    logic = logic_module.BrainAgeLogic()
    outputs = logic.process(node, str(two_fold_package), skullStrip="none", saliencyTopPercent=5.0)
    label = slicer.util.arrayFromVolume(outputs.saliencyLabel)
    brain = slicer.util.arrayFromVolume(node) > 0
    share = label.sum() / max(1, (slicer.util.arrayFromVolume(outputs.saliency) > 0).sum())
    assert 0.03 < share < 0.07
    assert label[brain].sum() > 0
    with pytest.raises(ValueError, match="model package"):
        logic.process(node, "", skullStrip="none")
    empty = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    with pytest.raises(ValueError, match="image data"):
        logic.process(empty, str(two_fold_package))


def _widget_names_used_in_code() -> set:
    code = (ROOT / "BrainAge" / "BrainAge.py").read_text()
    return set(re.findall(r"self\.ui\.(\w+)", code))


def test_ui_loads_with_pyside6_and_has_every_widget_the_code_uses(scene):
    """slicer.util.loadUI / childWidgetVariables (real, from slicer-core) on the PySide6 stand-ins of Testing/slicer_shims."""
    pytest.importorskip("PySide6")
    import slicer_panel

    slicer_panel.qapp()
    import ctk  # noqa: F401  (stand-ins the loader creates)
    import qmrml  # noqa: F401

    widget = slicer.util.loadUI(str(ROOT / "BrainAge" / "Resources" / "UI" / "BrainAge.ui"))
    ui = slicer.util.childWidgetVariables(widget)
    missing = _widget_names_used_in_code() - set(vars(ui))
    assert not missing, f"widgets used in BrainAge.py but absent from the .ui: {missing}"
    assert type(ui.inputSelector).__name__ == "qMRMLNodeComboBox"
    widget.setMRMLScene(slicer.mrmlScene)  # the .ui's mrmlSceneChanged -> setMRMLScene connection
    assert ui.inputSelector.mrmlScene() is slicer.mrmlScene
    # every parameter of the parameter node is bound to a widget through SlicerParameterName
    text = (ROOT / "BrainAge" / "Resources" / "UI" / "BrainAge.ui").read_text()
    bound = set(re.findall(r'name="SlicerParameterName" stdset="0"><string>(\w+)<', text))
    code = (ROOT / "BrainAge" / "BrainAge.py").read_text()
    block = code[code.index("class BrainAgeParameterNode"):code.index("# Widget")]
    declared = set(re.findall(r"^    (\w+):", block, re.M))
    assert declared == bound
    assert ui.opacitySlider.maximum == 1.0


def _shipped_files(folder: Path) -> set:
    """Module files that ship: those git tracks (work in progress of others is not yet shipped), else all on disk."""
    suffixes = {".py", ".ui", ".png", ".json", ".safetensors"}
    proc = subprocess.run(["git", "ls-files", "--", "."], cwd=folder, capture_output=True, text=True)
    if proc.returncode == 0 and proc.stdout.strip():
        names = set(proc.stdout.split())
    else:
        names = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    return {n for n in names if Path(n).suffix in suffixes}


@pytest.mark.parametrize("module", ["BrainAge", "BrainAgeTraining"])
def test_cmake_lists_every_shipped_file(module):
    folder = ROOT / module
    cmake = folder / "CMakeLists.txt"
    if not cmake.exists():
        pytest.fail(f"{cmake} is missing")
    text = cmake.read_text().replace("${MODULE_NAME}", module)
    listed = set(re.findall(r"^\s+([\w./-]+\.(?:py|ui|png|json|safetensors))\s*$", text, re.M))
    assert listed == _shipped_files(folder), f"only in CMake: {listed - _shipped_files(folder)}; only on disk: {_shipped_files(folder) - listed}"


def test_top_level_cmake_and_catalog_agree():
    import json

    top = (ROOT / "CMakeLists.txt").read_text()
    assert "project(BrainAge)" in top and 'set(EXTENSION_DEPENDS "PyTorch")' in top and 'EXTENSION_CATEGORY "Neuroimaging"' in top
    assert set(re.findall(r"add_subdirectory\((\w+)\)", top)) == {"BrainAge", "BrainAgeTraining"}
    catalog = json.loads((ROOT / "BrainAge.json").read_text())
    assert catalog["build_dependencies"] == ["PyTorch"] and catalog["category"] == "Neuroimaging"
    # Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json (Slicer v5.10.0): additionalProperties false
    assert set(catalog) <= {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
                            "build_subdirectory", "enabled", "tier"}
    from PIL import Image

    assert Image.open(ROOT / "BrainAge.png").size == (128, 128)


def test_conventions_of_the_supported_slicer():
    """CMake range of Slicer 5.10's extension template, contributors as 'Name (Organization)', versions stated."""
    import types

    top = (ROOT / "CMakeLists.txt").read_text()
    # Utilities/Templates/Extensions/Default/CMakeLists.txt at v5.10.0
    assert top.startswith("cmake_minimum_required(VERSION 3.20.6...3.22.6 FATAL_ERROR)")
    contributors = re.search(r'EXTENSION_CONTRIBUTORS "([^"]+)"', top).group(1).split(", ")
    import BrainAge
    import BrainAgeTraining

    helps = []
    for module in (BrainAge.BrainAge, BrainAgeTraining.BrainAgeTraining):
        parent = types.SimpleNamespace()
        module(parent)
        contributors += parent.contributors
        helps.append(parent.helpText)
    assert all(re.fullmatch(r"[^()]+ \([^()]+\)", c) for c in contributors), contributors
    description = re.search(r'EXTENSION_DESCRIPTION "([^"]+)"', top).group(1)
    readme = (ROOT / "README.md").read_text()
    for text in (description, readme, *helps):
        assert "3D Slicer 5.10 or later" in text


@pytest.fixture(scope="module")
def batch_inputs(tmp_path_factory, colin_brain_path, mni_brain_path):
    folder = tmp_path_factory.mktemp("batch")
    for name, src in (("a_colin.nii.gz", colin_brain_path), ("b_mni.nii.gz", mni_brain_path)):
        (folder / name).write_bytes(Path(src).read_bytes())
    (folder / "c_corrupt.nii.gz").write_bytes(b"\x1f\x8b\x08\x00broken")
    return folder


def test_batch_script_with_the_slicer_logic(scene, batch_inputs, two_fold_package, tmp_path):
    sys.path.insert(0, str(ROOT / "BrainAge" / "Scripts"))
    import batch

    out = tmp_path / "slicer.csv"
    status = batch.main(["--input", str(batch_inputs), "--model", str(two_fold_package), "--out", str(out), "--skull-strip", "none", "--engine", "slicer", "--saliency", str(tmp_path / "sal")])
    table = pd.read_csv(out)
    assert status == 1 and len(table) == 3
    assert table["error"].isna().tolist() == [True, True, False]
    assert (tmp_path / "sal" / "a_colin_saliency.nii.gz").is_file()
    assert slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 0  # nodes cleaned per case


def test_batch_script_with_plain_python(batch_inputs, two_fold_package, tmp_path):
    out = tmp_path / "core.csv"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "BrainAge" / "Scripts" / "batch.py"), "--input", str(batch_inputs), "--model", str(two_fold_package), "--out", str(out), "--skull-strip", "none"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 1, proc.stderr
    table = pd.read_csv(out)
    assert len(table) == 3 and table["error"].notna().sum() == 1
    assert "core engine" in proc.stdout


def test_the_panels_choices_are_the_librarys(logic_module):
    """BrainAge.py cannot import torch-backed modules when the panel opens, so it lists the choices itself."""
    from BrainAgeLib.saliency import DEFAULT_METHOD, METHODS
    from BrainAgeLib.skullstrip import BACKENDS

    assert logic_module.SALIENCY_METHODS == [*METHODS, "none"]
    assert logic_module.DEFAULT_SALIENCY == DEFAULT_METHOD
    assert set(logic_module.SKULL_STRIP_BACKENDS) == set(BACKENDS)
