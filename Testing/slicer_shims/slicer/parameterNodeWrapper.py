"""Stand-in for Slicer's ``slicer.parameterNodeWrapper`` (tests only), imitating Slicer 5.10.0.

Imitated from Base/Python/slicer/parameterNodeWrapper/ at tag v5.10.0 (read, not copied):
- wrapper.py ``_processClass``/``_initMethod``: typed properties stored in the real
  vtkMRMLScriptedModuleNode; missing parameters are written with their defaults.
- serializers.py: NumberSerializer (float accepts int or float; int only int), StringSerializer,
  BoolSerializer, PathSerializer (``str(path)``; the empty default ``Path()`` is stored as "."),
  NodeSerializer (node reference; None allowed); validators.py WithinRange / Choice raise ValueError,
  IsInstance raises TypeError.
- guiConnectors.py ``createGuiConnector``: the connector is chosen by the widget's *exact* type and
  the unannotated datatype (CONNECTORS below, one row per upstream connector class); no match raises
  RuntimeError("Unable to create GUI connector ..."), as ``connectGui`` does in Slicer.
- wrapper.py ``_connectGui`` returns its tag (5.10; 5.8.1 returned None, set
  CONNECT_GUI_RETURNS_TAG = False to imitate it) and ``_disconnectGui(tag)`` drops that tag's connectors.
"""

import pathlib
import typing

import vtk

import slicer

#: Slicer 5.10 ``_connectGui`` returns the GUI tag; 5.8.1 did not ("BUG: Fix not returning GUI tag after connection").
CONNECT_GUI_RETURNS_TAG = True

PATH_TYPES = (pathlib.Path, pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePath, pathlib.PurePosixPath, pathlib.PureWindowsPath)


class WithinRange:
    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum

    def validate(self, value):
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"Value must be within range [{self.minimum}, {self.maximum}], is {value}")


class Choice:
    def __init__(self, choices):
        self.choices = list(choices)

    def validate(self, value):
        if value not in self.choices:
            raise ValueError(f"Value is {value}, but must be in one of the following: {self.choices}")


def _split(annotated):
    if typing.get_origin(annotated) is typing.Annotated:
        args = typing.get_args(annotated)
        return args[0], list(args[1:])
    return annotated, []


def _is_node_type(datatype):
    return isinstance(datatype, type) and issubclass(datatype, slicer.vtkMRMLNode)


class _Serializer:
    """Reads/writes one typed parameter of a vtkMRMLScriptedModuleNode (serializers.py)."""

    def __init__(self, datatype, annotations):
        self.type, self.validators = datatype, [a for a in annotations if hasattr(a, "validate")]
        if not (datatype in (int, float, str, bool) or datatype in PATH_TYPES or _is_node_type(datatype)):
            raise Exception(f"Unable to create serializer for type {datatype}")

    def default(self):
        if self.type in PATH_TYPES:
            return self.type()
        return {int: 0, float: 0, str: "", bool: False}.get(self.type)

    def validate(self, value):
        if _is_node_type(self.type):
            if value is not None and not isinstance(value, self.type):
                raise TypeError(f"Value must be of type '{self.type}', is type '{type(value)}' value '{value}'")
        else:
            allowed = (int, float) if self.type is float else self.type
            if value is None:
                raise ValueError("Value must not be None")
            if not isinstance(value, allowed):
                raise TypeError(f"Value must be of type '{allowed}', is type '{type(value)}' value '{value}'")
        for validator in self.validators:
            validator.validate(value)

    def write(self, node, name, value):
        self.validate(value)
        if _is_node_type(self.type):
            node.SetParameter(name, "")
            node.SetNodeReferenceID(name, value.GetID() if value is not None else None)
        else:
            node.SetParameter(name, str(value))

    def read(self, node, name):
        if _is_node_type(self.type):
            return node.GetNodeReference(name)
        text = node.GetParameter(name)
        if self.type is bool:
            return text == "True"
        return self.type(text)


# -- GUI connectors (guiConnectors.py) ------------------------------------------------------------

def _unbounded(annotations):
    return not any(isinstance(a, WithinRange) for a in annotations)


class _Connector:
    def __init__(self, widget, datatype, annotations, signal, read, write):
        self.widget, self._signal, self._read, self._write = widget, signal, read, write
        self._callback = None

    def onChanged(self, callback):
        if self._callback is not None:
            getattr(self.widget, self._signal).disconnect(self._callback)
        self._callback = callback
        if callback is not None:
            getattr(self.widget, self._signal).connect(callback)

    def read(self):
        return self._read()

    def write(self, value):
        self._write(value)


def _numeric(widget, datatype, annotations, slider_classes):
    if type(widget).__name__ in slider_classes and _unbounded(annotations):
        raise RuntimeError(f"Cannot have a connection to {type(widget).__name__} where the type is unbounded.")
    rng = next((a for a in annotations if isinstance(a, WithinRange)), None)
    if datatype is int and type(widget).__name__ in ("QSlider", "QSpinBox"):
        widget.setRange(rng.minimum if rng else -(2 ** 31), rng.maximum if rng else 2 ** 31 - 1)
    else:
        if datatype is int:
            widget.decimals = 0
        widget.minimum = rng.minimum if rng else float("-inf")
        widget.maximum = rng.maximum if rng else float("inf")

    def write(value):
        widget.value = int(value) if datatype is int else value

    return _Connector(widget, datatype, annotations, "valueChanged",
                      lambda: int(widget.value) if datatype is int else widget.value, write)


def _combo(widget, datatype, annotations):
    choice = next((a for a in annotations if isinstance(a, Choice)), None)
    if choice is None:
        raise RuntimeError("ComboBoxToStringableConnector requires the Choice annotation to be used.")
    widget.clear()
    for c in choice.choices:
        widget.addItem(str(c))

    def write(value):
        if value not in choice.choices:
            raise ValueError(f"Unable to find value {value} in choices {choice.choices}")
        widget.currentIndex = choice.choices.index(value)

    return _Connector(widget, datatype, annotations, "currentIndexChanged", lambda: choice.choices[widget.currentIndex], write)


def _text(widget, datatype, annotations):
    def write(value):
        if value != widget.text:
            widget.text = value

    return _Connector(widget, datatype, annotations, "textChanged", lambda: widget.text, write)


def _checked(widget, datatype, annotations, signal):
    widget.checkable = True if type(widget).__name__ == "QPushButton" else widget.checkable

    def write(value):
        widget.checked = value

    return _Connector(widget, datatype, annotations, signal, lambda: widget.checked, write)


def _path(widget, datatype, annotations, prop, signal):
    def write(value):
        setattr(widget, prop, str(value))

    return _Connector(widget, datatype, annotations, signal, lambda: datatype(getattr(widget, prop)), write)


def _node(widget, datatype, annotations):
    widget.nodeTypes = [datatype.__name__]
    return _Connector(widget, datatype, annotations, "currentNodeChanged", widget.currentNode, widget.setCurrentNode)


#: (upstream connector class in guiConnectors.py at v5.10.0, exact widget class names, accepts(datatype), factory)
CONNECTORS = (
    ("QCheckBoxToBoolConnector", ("QCheckBox", "ctkCheckBox"), lambda t: t is bool,
     lambda w, t, a: _checked(w, t, a, "stateChanged")),
    ("QCheckablePushButtonToBoolConnector", ("QPushButton",), lambda t: t is bool,
     lambda w, t, a: _checked(w, t, a, "toggled")),
    ("ctkCheckablePushButtonToBoolConnector", ("ctkCheckablePushButton",), lambda t: t is bool,
     lambda w, t, a: _checked(w, t, a, "toggled")),
    ("QSliderOrSpinBoxToIntConnector", ("QSlider", "QSpinBox"), lambda t: t is int,
     lambda w, t, a: _numeric(w, t, a, ("QSlider",))),
    ("QDoubleSpinBoxCtkSliderWidgetToFloatIntConnector",
     ("QDoubleSpinBox", "ctkSliderWidget", "qMRMLSliderWidget", "ctkDoubleSlider", "ctkDoubleSpinBox", "qMRMLSpinBox"),
     lambda t: t in (float, int), lambda w, t, a: _numeric(w, t, a, ("ctkSliderWidget", "qMRMLSliderWidget"))),
    ("QComboBoxToStringableConnector", ("QComboBox", "ctkComboBox"), lambda t: t in (int, float, str, bool), _combo),
    ("QLineEditToStrConnector", ("QLineEdit",), lambda t: t is str, _text),
    ("QLabelToStrConnector", ("QLabel",), lambda t: t is str, _text),
    ("ctkPathLineEditToPathConnector", ("ctkPathLineEdit",), lambda t: t in PATH_TYPES,
     lambda w, t, a: _path(w, t, a, "currentPath", "currentPathChanged")),
    ("ctkDirectoryButtonToPathConnector", ("ctkDirectoryButton",), lambda t: t in PATH_TYPES,
     lambda w, t, a: _path(w, t, a, "directory", "directoryChanged")),
    ("qMRMLNodeComboBoxToNodeConnector", ("qMRMLNodeComboBox",), _is_node_type, _node),
)


def canRepresent(widget_class_name, datatype):
    """Whether some upstream connector accepts this widget class for this (possibly annotated) datatype."""
    plain, _ = _split(datatype)
    return any(widget_class_name in classes and accepts(plain) for _, classes, accepts, _ in CONNECTORS)


def createGuiConnector(widget, datatype):
    plain, annotations = _split(datatype)
    for _, classes, accepts, factory in CONNECTORS:
        if type(widget).__name__ in classes and accepts(plain):
            return factory(widget, plain, annotations)
    raise RuntimeError(f"Unable to create GUI connector from datatype '{datatype}' to widget type '{type(widget)}'.")


# -- the wrapper (wrapper.py) ---------------------------------------------------------------------

def _init(self, parameterNode, prefix=None):
    self.parameterNode = parameterNode
    self._parameterGUIs, self._nextParameterGUIsTag, self._updatingGUI = {}, 0, False
    for name, (serializer, default) in self.allParameters.items():
        if not parameterNode.HasParameter(name):
            serializer.write(parameterNode, name, default)


def _property(name):
    return property(lambda self: self.getValue(name), lambda self, value: self.setValue(name, value))


def _updateGui(self):
    if self._updatingGUI:
        return
    self._updatingGUI = True
    try:
        for mapping in list(self._parameterGUIs.values()):
            for name, connector in mapping.items():
                connector.write(self.getValue(name))
    finally:
        self._updatingGUI = False


def _connectGui(self, gui):
    if hasattr(gui, "isWidgetType") and gui.isWidgetType():
        import qt

        widgets = gui.findChildren(qt.QWidget)
    else:
        widgets = list(vars(gui).values())
    mapping = {}
    for widget in widgets:
        name = widget.property("SlicerParameterName")
        if name:
            if name not in self.allParameters:
                raise ValueError(f"Cannot find a param with the given name: {name}")
            mapping[name] = createGuiConnector(widget, self.dataType(name))
    tag = self._nextParameterGUIsTag
    self._nextParameterGUIsTag += 1
    self._parameterGUIs[tag] = mapping
    for name, connector in mapping.items():
        connector.write(self.getValue(name))

        def callback(*args, name=name, connector=connector):
            if not self._updatingGUI:
                self.setValue(name, connector.read())

        connector.onChanged(callback)
    self.parameterNode.AddObserver(vtk.vtkCommand.ModifiedEvent, lambda caller, event: _updateGui(self))
    return tag if CONNECT_GUI_RETURNS_TAG else None


def _disconnectGui(self, tag):
    for connector in self._parameterGUIs.pop(tag, {}).values():
        connector.onChanged(None)


def parameterNodeWrapper(cls):
    hints = typing.get_type_hints(cls, include_extras=True)
    parameters, datatypes = {}, {}
    for name, annotated in hints.items():
        plain, annotations = _split(annotated)
        serializer = _Serializer(plain, annotations)
        default = getattr(cls, name) if hasattr(cls, name) else serializer.default()
        parameters[name], datatypes[name] = (serializer, default), annotated
        setattr(cls, name, _property(name))
    cls.allParameters = parameters
    cls.__init__ = _init
    cls.dataType = staticmethod(lambda name: datatypes[name])
    cls.getValue = lambda self, name: self.allParameters[name][0].read(self.parameterNode, name)
    cls.setValue = lambda self, name, value: self.allParameters[name][0].write(self.parameterNode, name, value)
    cls.default = lambda self, name: self.allParameters[name][1]
    cls.connectGui = _connectGui
    cls.disconnectGui = _disconnectGui
    cls.StartModify = lambda self: self.parameterNode.StartModify()
    cls.EndModify = lambda self, wasModified: self.parameterNode.EndModify(wasModified)
    cls.AddObserver = lambda self, event, callback, priority=0.0: self.parameterNode.AddObserver(event, callback, priority)
    cls.RemoveObserver = lambda self, tag: self.parameterNode.RemoveObserver(tag)
    cls.Modified = lambda self: self.parameterNode.Modified()
    return cls
