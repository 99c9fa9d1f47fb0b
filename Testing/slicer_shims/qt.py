"""Slicer's PythonQt ``qt`` module imitated on PySide6 (tests only).

What is imitated, as PythonQt behaves in Slicer 5.10:
- Qt properties read and written as attributes (``button.enabled = False``, ``label.text``),
  with ``name`` as the alias of ``objectName`` that ``slicer.util.childWidgetVariables`` uses;
- ``obj.connect("clicked(bool)", slot)`` / ``obj.disconnect(...)`` by signature string;
- new-style signals (``button.clicked.connect``), which PySide6 has natively;
- ``QUiLoader`` creating the ctk / qMRML classes a .ui names (stand-ins from ``ctk`` and ``qmrml``),
  and wiring the .ui's ``mrmlSceneChanged(vtkMRMLScene*)`` -> ``setMRMLScene`` connections,
  which PySide6 cannot make for a ``vtkMRMLScene*`` argument.
Widget classes are exact types, as ``guiConnectors`` compares ``type(widget) == qt.QLineEdit``.
"""

import xml.etree.ElementTree as ET

from PySide6 import QtCore, QtGui, QtUiTools, QtWidgets


def _meta_property(obj, name):
    meta = QtCore.QObject.metaObject(obj)
    index = meta.indexOfProperty(name)
    return meta.property(index) if index >= 0 else None


class PythonQtMixin:
    """Attribute access to Qt properties and string-signature connect, as in PythonQt."""

    def __getattribute__(self, name):
        if name == "name":
            return QtCore.QObject.objectName(self)
        if name in ("connect", "disconnect"):  # shiboken would hand out QObject's static connect
            return getattr(PythonQtMixin, name).__get__(self)
        if name[:1] != "_":
            prop = _meta_property(self, name)
            if prop is not None:
                return prop.read(self)
        return super().__getattribute__(name)

    def __setattr__(self, name, value):
        if name == "name":
            QtCore.QObject.setObjectName(self, value)
            return
        if name[:1] != "_":
            prop = _meta_property(self, name)
            if prop is not None:
                if isinstance(value, tuple):  # PythonQt converts any sequence to a QStringList / QVariantList
                    value = list(value)
                if not prop.write(self, value):
                    raise AttributeError(f"cannot write Qt property {name!r} of {type(self).__name__}")
                return
        super().__setattr__(name, value)

    def connect(self, signature, slot):
        getattr(self, signature.split("(")[0]).connect(slot)
        return True

    def disconnect(self, signature, slot):
        getattr(self, signature.split("(")[0]).disconnect(slot)
        return True


_WIDGETS = (
    "QWidget", "QFrame", "QLabel", "QPushButton", "QToolButton", "QCheckBox", "QRadioButton", "QComboBox",
    "QLineEdit", "QTextEdit", "QPlainTextEdit", "QSpinBox", "QDoubleSpinBox", "QSlider", "QProgressBar",
    "QGroupBox", "QTableView", "QTableWidget", "QListWidget", "QTabWidget", "QStackedWidget",
)
for _name in _WIDGETS:
    globals()[_name] = type(_name, (PythonQtMixin, getattr(QtWidgets, _name)), {"__module__": __name__})


def standin_class(class_name):
    """The stand-in class a .ui names (qt, then ctk, then qMRML), or None."""
    import ctk
    import qmrml

    for module in (globals(), vars(ctk), vars(qmrml)):
        cls = module.get(class_name)
        if isinstance(cls, type) and issubclass(cls, QtWidgets.QWidget):
            return cls
    return None


class QUiLoader(QtUiTools.QUiLoader):
    """Creates stand-in classes for every widget class the .ui names."""

    def createWidget(self, className, parent=None, name=""):
        cls = standin_class(className)
        if cls is None:
            return super().createWidget(className, parent, name)
        widget = cls(parent)
        widget.setObjectName(name)
        return widget

    def load(self, device, parent=None):
        widget = super().load(device, parent)
        if widget is not None and isinstance(device, QtCore.QFile):
            _connect_scene_signals(widget, device.fileName())
        return widget


def _connect_scene_signals(root, path):
    """Wire <connection>s of mrmlSceneChanged(vtkMRMLScene*) the way uic does."""
    tree = ET.parse(path)
    for connection in tree.getroot().iter("connection"):
        signal, slot = connection.findtext("signal"), connection.findtext("slot")
        if signal != "mrmlSceneChanged(vtkMRMLScene*)" or slot != "setMRMLScene(vtkMRMLScene*)":
            continue
        sender_name, receiver_name = connection.findtext("sender"), connection.findtext("receiver")
        sender = root if QtCore.QObject.objectName(root) == sender_name else root.findChild(QtCore.QObject, sender_name)
        receiver = root.findChild(QtCore.QObject, receiver_name)
        if sender is not None and receiver is not None:
            sender.mrmlSceneChanged.connect(receiver.setMRMLScene)


def __getattr__(name):
    """Everything else (QFile, QTimer, QVBoxLayout, QMessageBox, ...) is PySide6's own class."""
    for module in (QtCore, QtGui, QtWidgets):
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(name)
