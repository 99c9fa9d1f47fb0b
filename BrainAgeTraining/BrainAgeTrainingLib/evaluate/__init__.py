"""``brainage evaluate``: accuracy, site calibration and group statistics of a predictions table, as HTML + JSON.

One job per module: :mod:`.columns` (which column is what), :mod:`.tables` (reading, joining),
:mod:`.crossfit` (calibration on the controls), :mod:`.bootstrap` and :mod:`.accuracy` (metrics with CIs),
:mod:`.groups` (the paper's group tests), :mod:`.analysis` (all of it), :mod:`.figures`, :mod:`.html`,
:mod:`.outputs` (files).
"""

from .analysis import Evaluation, Options, evaluate
from .columns import Columns
from .errors import EvaluationError
from .outputs import write_outputs
from .tables import join_participants, read_table

__all__ = ["Columns", "Evaluation", "EvaluationError", "Options", "evaluate", "join_participants", "read_table",
           "write_outputs"]
