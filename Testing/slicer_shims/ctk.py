"""CTK widget stand-ins on PySide6 (tests only), with the API BrainAge and Slicer's guiConnectors use.

Each class keeps its CTK name so ``type(widget) == ctk.ctkPathLineEdit`` checks behave as in Slicer.
Imitated (CTK as bundled with Slicer 5.10): ctkPathLineEdit (currentPath, currentPathChanged(QString),
filters, nameFilters), ctkSliderWidget (double value/minimum/maximum/singleStep/decimals,
valueChanged(double)), ctkCollapsibleButton (collapsed). The other classes only exist so that
``guiConnectors.canRepresent`` can name them.
"""

from PySide6 import QtCore, QtWidgets

from qt import PythonQtMixin


class ctkCollapsibleButton(PythonQtMixin, QtWidgets.QPushButton):
    def __init__(self, parent=None):
        super().__init__(parent)
        self._collapsed = False

    def _get_collapsed(self):
        return self._collapsed

    def _set_collapsed(self, value):
        self._collapsed = bool(value)

    collapsed = QtCore.Property(bool, _get_collapsed, _set_collapsed)


class ctkPathLineEdit(PythonQtMixin, QtWidgets.QLineEdit):
    Dirs, Files = 0x001, 0x002
    currentPathChanged = QtCore.Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._filters, self._nameFilters = self.Files, []
        self.textChanged.connect(self.currentPathChanged.emit)

    def _get_path(self):
        return QtWidgets.QLineEdit.text(self)

    def _set_path(self, value):
        QtWidgets.QLineEdit.setText(self, str(value))

    def setCurrentPath(self, value):
        self._set_path(value)

    def _get_filters(self):
        return self._filters

    def _set_filters(self, value):
        self._filters = int(value)

    def _get_name_filters(self):
        return list(self._nameFilters)

    def _set_name_filters(self, value):
        self._nameFilters = list(value)

    currentPath = QtCore.Property(str, _get_path, _set_path, notify=currentPathChanged)
    filters = QtCore.Property(int, _get_filters, _set_filters)
    nameFilters = QtCore.Property(list, _get_name_filters, _set_name_filters)


class ctkSliderWidget(PythonQtMixin, QtWidgets.QDoubleSpinBox):
    pass


def _placeholder(name, base=QtWidgets.QWidget):
    return type(name, (PythonQtMixin, base), {"__module__": __name__})


ctkCheckBox = _placeholder("ctkCheckBox", QtWidgets.QCheckBox)
ctkCheckablePushButton = _placeholder("ctkCheckablePushButton", QtWidgets.QPushButton)
ctkComboBox = _placeholder("ctkComboBox", QtWidgets.QComboBox)
ctkDoubleSpinBox = _placeholder("ctkDoubleSpinBox", QtWidgets.QDoubleSpinBox)
ctkDoubleSlider = _placeholder("ctkDoubleSlider")
ctkRangeWidget = _placeholder("ctkRangeWidget")
ctkDoubleRangeSlider = _placeholder("ctkDoubleRangeSlider")
ctkDirectoryButton = _placeholder("ctkDirectoryButton")
ctkColorPickerButton = _placeholder("ctkColorPickerButton")
