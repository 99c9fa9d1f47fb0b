"""The one error of ``brainage evaluate``: its message says what is wrong and what to change."""

from __future__ import annotations

from BrainAgeLib.errors import BrainAgeError


class EvaluationError(BrainAgeError, ValueError):
    """The tables cannot be evaluated as asked (missing column, no controls, a group too small to test)."""
