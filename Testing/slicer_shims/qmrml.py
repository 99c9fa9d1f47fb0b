"""qMRML widget stand-ins on PySide6 (tests only), placed in the ``slicer`` namespace as in Slicer.

Imitated (Libs/MRML/Widgets at Slicer 5.10): qMRMLWidget (setMRMLScene, mrmlSceneChanged),
qMRMLNodeComboBox (nodeTypes, noneEnabled, showChildNodeTypes, currentNode, setCurrentNode,
currentNodeChanged(vtkMRMLNode*), list refreshed from the scene), qMRMLTableView (setMRMLTableNode).
The other classes only exist so that ``guiConnectors.canRepresent`` can name them.
"""

from PySide6 import QtCore, QtWidgets

import slicer
from qt import PythonQtMixin


class qMRMLWidget(PythonQtMixin, QtWidgets.QWidget):
    mrmlSceneChanged = QtCore.Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = None

    def setMRMLScene(self, scene):
        self._scene = scene
        self.mrmlSceneChanged.emit(scene)

    def mrmlScene(self):
        return self._scene


class qMRMLNodeComboBox(PythonQtMixin, QtWidgets.QComboBox):
    currentNodeChanged = QtCore.Signal(object)
    currentNodeIDChanged = QtCore.Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene, self._nodeTypes, self._noneEnabled, self._showChildren = None, [], False, True
        self._addEnabled, self._removeEnabled = True, True
        self._current = None
        self.currentIndexChanged.connect(self._onIndexChanged)

    # properties set from the .ui
    def _get_types(self):
        return list(self._nodeTypes)

    def _set_types(self, value):
        self._nodeTypes = list(value)
        self._refresh()

    nodeTypes = QtCore.Property(list, _get_types, _set_types)
    noneEnabled = QtCore.Property(bool, lambda s: s._noneEnabled, lambda s, v: (setattr(s, "_noneEnabled", bool(v)), s._refresh()))
    showChildNodeTypes = QtCore.Property(bool, lambda s: s._showChildren, lambda s, v: setattr(s, "_showChildren", bool(v)))
    addEnabled = QtCore.Property(bool, lambda s: s._addEnabled, lambda s, v: setattr(s, "_addEnabled", bool(v)))
    removeEnabled = QtCore.Property(bool, lambda s: s._removeEnabled, lambda s, v: setattr(s, "_removeEnabled", bool(v)))

    def setMRMLScene(self, scene):
        self._scene = scene
        self._refresh()

    def mrmlScene(self):
        return self._scene

    def _matches(self, node):
        if self._showChildren:
            return any(node.IsA(t) for t in self._nodeTypes)
        return node.GetClassName() in self._nodeTypes

    def _nodes(self):
        if self._scene is None:
            return []
        nodes = [self._scene.GetNthNode(i) for i in range(self._scene.GetNumberOfNodes())]
        return [n for n in nodes if n is not None and self._matches(n)]

    def _refresh(self):
        blocked = self.blockSignals(True)
        QtWidgets.QComboBox.clear(self)
        if self._noneEnabled:
            QtWidgets.QComboBox.addItem(self, "None", None)
        for node in self._nodes():
            QtWidgets.QComboBox.addItem(self, node.GetName(), node.GetID())
        index = QtWidgets.QComboBox.findData(self, self._current.GetID()) if self._current is not None else (0 if self._noneEnabled else -1)
        QtWidgets.QComboBox.setCurrentIndex(self, index)
        self.blockSignals(blocked)

    def _onIndexChanged(self, index):
        node_id = QtWidgets.QComboBox.itemData(self, index) if index >= 0 else None
        node = self._scene.GetNodeByID(node_id) if (self._scene is not None and node_id) else None
        if node is not self._current:
            self._current = node
            self.currentNodeChanged.emit(node)
            self.currentNodeIDChanged.emit(node.GetID() if node else "")

    def currentNode(self):
        return self._current

    def setCurrentNode(self, node):
        self._refresh()
        index = QtWidgets.QComboBox.findData(self, node.GetID()) if node is not None else (0 if self._noneEnabled else -1)
        QtWidgets.QComboBox.setCurrentIndex(self, index)
        self._onIndexChanged(index)


class qMRMLTableView(PythonQtMixin, QtWidgets.QTableView):
    def setMRMLTableNode(self, node):
        self._tableNode = node

    def mrmlTableNode(self):
        return getattr(self, "_tableNode", None)


def _placeholder(name):
    return type(name, (PythonQtMixin, QtWidgets.QWidget), {"__module__": __name__})


qMRMLSliderWidget = _placeholder("qMRMLSliderWidget")
qMRMLSpinBox = _placeholder("qMRMLSpinBox")
qMRMLRangeWidget = _placeholder("qMRMLRangeWidget")

for _cls in (qMRMLWidget, qMRMLNodeComboBox, qMRMLTableView, qMRMLSliderWidget, qMRMLSpinBox, qMRMLRangeWidget):
    setattr(slicer, _cls.__name__, _cls)
